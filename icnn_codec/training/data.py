"""Image collections for training, evaluation and benchmarks.

An ``.npz`` with ``images`` (N, H, W, C) uint8, or a folder of files Pillow reads. Batches are a
pure function of (seed, step): resuming a run replays exactly the data it would have seen.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..planes import grey_plane

HOLDOUT_EVERY = 10  # the photographs' validation split: every 10th image (benchmarks/photo_val.py)
EVAL_CROP = 128  # held-out crops: the central 128 x 128 of each photograph
IMAGE_SUFFIXES = {".png", ".webp", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}


def list_image_files(folder: str | Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _read_image(path: Path, mode: str | None) -> np.ndarray:
    with Image.open(path) as im:
        if mode is None:
            mode = "L" if im.mode in ("L", "1") else "RGB"
        a = np.asarray(im.convert(mode))
    return a[:, :, None] if a.ndim == 2 else a


class ImageSet:
    """A sequence of uint8 images (H, W, C); the same size (an npz) or not (a folder)."""

    def __init__(self, images: "np.ndarray | list[np.ndarray]", names: list[str], grey_planes: bool = False) -> None:
        self.images = images
        self.names = names
        # The images are grey planes (three horizontal neighbours per position, as the codec codes
        # grey): a mirror image must then reverse each position's channels too.
        self.grey_planes = grey_planes

    def as_grey_planes(self) -> "ImageSet":
        """The same images in grey (Pillow's L), as the planes the codec gives the model."""
        grey = [grey_plane(np.asarray(Image.fromarray(np.asarray(a)).convert("L")) if a.shape[2] != 1 else a[:, :, 0])
                for a in self.images]
        return ImageSet(grey, self.names, grey_planes=True)

    @staticmethod
    def open(path: str | Path, mode: str | None = "RGB") -> "ImageSet":
        """Images of a folder (converted to ``mode``; None: grey ones to L, as H x W x 1, the
        rest to RGB) or an .npz's ``images``."""
        path = Path(path)
        if path.is_dir():
            files = list_image_files(path)
            if not files:
                raise ValueError(f"{path}: no images")
            imgs = [_read_image(f, mode) for f in files]
            return ImageSet(imgs, [f.name for f in files])
        with np.load(path, allow_pickle=False) as z:
            if "images" not in z.files:
                raise ValueError(f"{path}: an .npz needs an 'images' array (N, H, W, C) uint8")
            arr = z["images"]
        if arr.dtype != np.uint8 or arr.ndim != 4:
            raise ValueError(f"{path}: 'images' must be (N, H, W, C) uint8, got {arr.dtype} {arr.shape}")
        return ImageSet(arr, [f"{path.name}[{i}]" for i in range(len(arr))])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.images[i]

    def first(self, n: int | None) -> np.ndarray:
        """The first n images stacked (they must share a size)."""
        sel = self.images[: n if n else len(self.images)]
        return np.stack(list(sel)) if isinstance(sel, list) else sel

    def split_holdout(self, every: int) -> tuple["ImageSet", "ImageSet"]:
        """(training part, held-out part): every ``every``-th image (the 10th, 20th, ... for 10) is held out.

        A fixed rule on the sorted order, so training, evaluation and the benchmarks agree on it.
        """
        if every < 2:
            raise ValueError(f"hold-out rule 'every {every}' keeps nothing to train on")
        held = [i for i in range(len(self)) if (i + 1) % every == 0]
        kept = [i for i in range(len(self)) if (i + 1) % every != 0]
        return self._take(kept), self._take(held)

    def _take(self, idx: list[int]) -> "ImageSet":
        imgs = self.images[idx] if isinstance(self.images, np.ndarray) else [self.images[i] for i in idx]
        return ImageSet(imgs, [self.names[i] for i in idx], self.grey_planes)

    def center_crops(self, size: int, n: int | None = None) -> np.ndarray:
        """The central size×size crop of each of the first n images (edge-padded if smaller), stacked."""
        out = []
        for img in list(self.images[: n if n else len(self.images)]):
            h, w = img.shape[:2]
            if h < size or w < size:
                img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="edge")
                h, w = img.shape[:2]
            top, left = (h - size) // 2, (w - size) // 2
            out.append(img[top : top + size, left : left + size])
        return np.stack(out)

    def subset(self, n: int | None) -> "ImageSet":
        return ImageSet(self.images[:n] if n else self.images, self.names[:n] if n else self.names, self.grey_planes)

    def _order(self, seed: int, epoch: int) -> np.ndarray:
        return _epoch_order(seed, epoch, len(self.images))

    def batch(self, seed: int, step: int, batch_size: int, crop: int) -> np.ndarray:
        """Batch number ``step``: images in a per-epoch shuffled order, random crops and flips."""
        n = len(self.images)
        rng = np.random.default_rng([seed, step, 1])
        out = np.empty((batch_size, crop, crop, self.images[0].shape[2]), np.uint8)
        for i, pos in enumerate(range(step * batch_size, (step + 1) * batch_size)):
            img = self.images[self._order(seed, pos // n)[pos % n]]
            h, w = img.shape[:2]
            if h < crop or w < crop:
                img = np.pad(img, ((0, max(0, crop - h)), (0, max(0, crop - w)), (0, 0)), mode="edge")
                h, w = img.shape[:2]
            top, left = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
            patch = img[top : top + crop, left : left + crop]
            mirror = patch[:, ::-1, ::-1] if self.grey_planes else patch[:, ::-1]
            out[i] = mirror if rng.integers(2) else patch
        return out


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled order of n images in one epoch (a batch's images span at most two epochs)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def held_out_crops(shared: Path) -> dict[str, np.ndarray]:
    """The photographs' two evaluation sets: central crops of the validation split and of photos-unseen."""
    _, held = ImageSet.open(shared / "data" / "photos" / "train").split_holdout(HOLDOUT_EVERY)
    unseen = ImageSet.open(shared / "data" / "photos-unseen")
    return {"val": held.center_crops(EVAL_CROP), "unseen": unseen.center_crops(EVAL_CROP)}
