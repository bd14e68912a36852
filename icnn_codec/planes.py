"""Pixels and planes: what the model is given of an image, and how the pixels come back.

The model codes *planes* of three channels. An image (or a tile of one) is one or two planes: the
colour plane (RGB, or the grey channel) and, for LA and RGBA, the alpha plane. A grey or alpha
channel becomes a plane by taking three horizontally adjacent pixels as one position's three
channels: neighbours are as alike as the colours of one pixel, so the colour model codes them
well.
"""
from __future__ import annotations

import numpy as np

from .container import MAX_SIDE
from .errors import UnsupportedImageError

PIL_MODES = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "1": "L", "P": None, "PA": "RGBA",
             "I;16": "L16", "I;16L": "L16", "I;16B": "L16", "I;16N": "L16"}
CHANNEL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
GREY_GROUP = 3  # horizontally adjacent grey (or alpha) pixels coded as one position's channels


def as_pixels(image) -> tuple[np.ndarray, str]:
    """An image (numpy uint8 or uint16 H x W / H x W x C, or a PIL image) -> (H x W x C array, mode):
    mode L, LA, RGB or RGBA for 8-bit samples, L16, LA16, RGB16 or RGBA16 for 16-bit ones."""
    if hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image
        mode = image.mode
        if mode == "P":
            mode = "RGBA" if "transparency" in image.info else "RGB"
        elif PIL_MODES.get(mode) is None:
            raise UnsupportedImageError(f"unsupported image mode {image.mode!r} (8-bit L, LA, RGB, RGBA, palette "
                                        "and 16-bit grey images are supported)")
        else:
            mode = PIL_MODES[mode]
        image = np.asarray(image, dtype=np.uint16) if mode == "L16" else np.asarray(image.convert(mode))
    arr = np.asarray(image)
    if arr.dtype not in (np.uint8, np.uint16):
        raise UnsupportedImageError(f"unsupported pixel type {arr.dtype} (8-bit or 16-bit unsigned samples only)")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in CHANNEL_MODES:
        raise UnsupportedImageError(f"unsupported image shape {arr.shape} (H x W or H x W x 1..4)")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise UnsupportedImageError(f"empty image {arr.shape}")
    if arr.shape[0] > MAX_SIDE or arr.shape[1] > MAX_SIDE:
        raise UnsupportedImageError(f"image too large {arr.shape}")
    mode = CHANNEL_MODES[arr.shape[2]] + ("16" if arr.dtype == np.uint16 else "")
    return np.ascontiguousarray(arr), mode


def grey_plane(channel: np.ndarray) -> np.ndarray:
    """H x W grey or alpha channel -> H x ceil(W/3) x 3 plane (the last group edge-padded)."""
    h, w = channel.shape
    padded = np.pad(channel, ((0, 0), (0, -w % GREY_GROUP)), mode="edge")
    return padded.reshape(h, -1, GREY_GROUP)


def grey_channel(plane: np.ndarray, width: int) -> np.ndarray:
    """Inverse of :func:`grey_plane`: H x W' x 3 -> H x width x 1."""
    return plane.reshape(plane.shape[0], -1)[:, :width, None]


def planes_of(pixels: np.ndarray) -> list[np.ndarray]:
    """H x W x C -> [colour plane, (alpha plane)], each H x W' x 3."""
    c = pixels.shape[2]
    planes = [pixels[:, :, :3] if c >= 3 else grey_plane(pixels[:, :, 0])]
    if c in (2, 4):
        planes.append(grey_plane(pixels[:, :, -1]))
    return planes


def plane_shapes(height: int, width: int, mode: str) -> list[tuple[int, int]]:
    """(height, width) of each plane that :func:`planes_of` makes of an image of this size and mode."""
    grey = (height, -(-width // GREY_GROUP))
    colour = (height, width) if mode in ("RGB", "RGBA") else grey
    return [colour, grey] if mode in ("LA", "RGBA") else [colour]


def pixels_of(planes: list[np.ndarray], mode: str, width: int) -> np.ndarray:
    """Inverse of :func:`planes_of`: the planes -> H x W x C (H x W for L)."""
    colour = planes[0] if mode in ("RGB", "RGBA") else grey_channel(planes[0], width)
    parts = [colour] + ([grey_channel(planes[1], width)] if mode in ("LA", "RGBA") else [])
    out = np.concatenate(parts, axis=2)
    return out[:, :, 0] if mode == "L" else out
