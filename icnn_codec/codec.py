"""The codec: images in, streams out, and back, bit for bit.

An image is coded as one or two *planes* of three channels through the flow: the colour plane
(RGB, or a grey level repeated three times) and, for LA/RGBA, the alpha plane (repeated three
times). A plane is padded to a multiple of the flow's block by repeating edge pixels, then runs
the exact integer path; its latents go onto one ANS stack per image, alpha plane first, so the
decoder pops the colour plane first.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import constriction
import numpy as np
import torch

from . import container, entropy
from .container import Header
from .errors import DecodeError, UnsupportedImageError
from .priors import ExactParams
from .zoo import Model, find_model_by_fingerprint, load_model

ModelLike = "str | Model | None"
PIL_MODES = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "1": "L", "P": None, "PA": "RGBA"}
CHANNEL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


# -- images in and out ------------------------------------------------------------------------
def as_pixels(image) -> tuple[np.ndarray, str]:
    """An image (numpy uint8 HxW / HxWxC, or a PIL image) -> (H x W x C uint8 array, mode)."""
    if hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image
        mode = image.mode
        if mode == "P":
            mode = "RGBA" if "transparency" in image.info else "RGB"
        elif mode not in PIL_MODES or PIL_MODES[mode] is None:
            raise UnsupportedImageError(f"unsupported image mode {image.mode!r} (8-bit L, LA, RGB, RGBA and palette images are supported)")
        else:
            mode = PIL_MODES[mode]
        image = np.asarray(image.convert(mode))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise UnsupportedImageError(f"unsupported pixel type {arr.dtype} (8-bit images only)")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in CHANNEL_MODES:
        raise UnsupportedImageError(f"unsupported image shape {arr.shape} (H x W or H x W x 1..4)")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise UnsupportedImageError(f"empty image {arr.shape}")
    if arr.shape[0] > container.MAX_SIDE or arr.shape[1] > container.MAX_SIDE:
        raise UnsupportedImageError(f"image too large {arr.shape}")
    return np.ascontiguousarray(arr), CHANNEL_MODES[arr.shape[2]]


def planes_of(pixels: np.ndarray) -> list[np.ndarray]:
    """H x W x C -> [colour plane, (alpha plane)], each H x W x 3."""
    c = pixels.shape[2]
    colour = pixels[:, :, :3] if c >= 3 else np.repeat(pixels[:, :, :1], 3, axis=2)
    planes = [colour]
    if c in (2, 4):
        planes.append(np.repeat(pixels[:, :, -1:], 3, axis=2))
    return planes


def pixels_of(planes: list[np.ndarray], mode: str) -> np.ndarray:
    colour = planes[0] if mode in ("RGB", "RGBA") else planes[0][:, :, :1]
    parts = [colour] + ([planes[1][:, :, :1]] if mode in ("LA", "RGBA") else [])
    out = np.concatenate(parts, axis=2)
    return out[:, :, 0] if mode == "L" else out


def padded_size(height: int, width: int, block: int) -> tuple[int, int]:
    return -(-height // block) * block, -(-width // block) * block


def pad_plane(plane: np.ndarray, block: int) -> np.ndarray:
    h, w = plane.shape[:2]
    hp, wp = padded_size(h, w, block)
    return np.pad(plane, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")


def exact_input(planes: Sequence[np.ndarray]) -> torch.Tensor:
    """Padded H x W x 3 uint8 planes -> exact-path batch (B, 3, H, W) float64, centred."""
    x = torch.from_numpy(np.stack(planes)).permute(0, 3, 1, 2).to(torch.float64)
    return x - 128.0


# -- encoding ---------------------------------------------------------------------------------
def _encode_planes(model: Model, planes: list[np.ndarray], coders: list, batch_size: int) -> None:
    """Push each plane's latents onto its coder (planes share one padded size)."""
    for start in range(0, len(planes), batch_size):
        with torch.no_grad():
            groups = model.flow(exact_input(planes[start : start + batch_size]))
        for b in range(groups[0].z.shape[0]):
            for g in groups:
                params = ExactParams.from_grid(g.mu[b].numpy().ravel(), g.log_scale[b].numpy().ravel())
                entropy.encode_latents(coders[start + b], g.z[b].numpy().ravel().astype(np.int64), params, model.tables)


def compress_many(images: Iterable, model: ModelLike = None, batch_size: int = 64) -> list[bytes]:
    """Compress images (numpy uint8 or PIL); the network runs in batches of same-size planes."""
    m = load_model(model)
    items = [as_pixels(im) for im in images]
    coders = [constriction.stream.stack.AnsCoder() for _ in items]
    # Alpha planes are pushed first (popped last), so group the planes by (push round, size).
    rounds: dict[tuple, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for i, (px, _) in enumerate(items):
        planes = planes_of(px)
        for order, plane in enumerate(reversed(planes)):
            padded = pad_plane(plane, m.block)
            rounds[(order if len(planes) == 2 else 1, padded.shape)].append((i, padded))
    for key in sorted(rounds, key=lambda k: k[0]):
        idx, planes = zip(*rounds[key])
        _encode_planes(m, list(planes), [coders[i] for i in idx], batch_size)
    out = []
    for (px, mode), coder in zip(items, coders):
        header = Header(mode, px.shape[1], px.shape[0], m.fingerprint, container.pixel_checksum(px))
        out.append(container.pack(header, coder.get_compressed()))
    return out


def compress(image, model: ModelLike = None) -> bytes:
    """Compress one image (numpy uint8 H x W or H x W x C with C in 1..4, or a PIL image)."""
    return compress_many([image], model)[0]


# -- decoding ---------------------------------------------------------------------------------
def model_for(header: Header, model: ModelLike = None) -> Model:
    if model is not None:
        m = load_model(model)
        if m.fingerprint != header.model_fingerprint:
            raise DecodeError(f"stream was made with model {header.model_fingerprint:04x}, not {m.name} ({m.fingerprint:04x})")
        return m
    m = find_model_by_fingerprint(header.model_fingerprint)
    if m is None:
        raise DecodeError(f"stream needs model {header.model_fingerprint:04x}, which is not installed")
    return m


def _decode_batch(model: Model, headers: list[Header], words: list[np.ndarray]) -> list[np.ndarray]:
    """Decode streams that share a model, size and mode, in one batch of network evaluations."""
    h0 = headers[0]
    hp, wp = padded_size(h0.height, h0.width, model.block)
    coders = [constriction.stream.stack.AnsCoder(np.ascontiguousarray(w)) for w in words]

    def pop_latents(mu16: torch.Tensor, ls8: torch.Tensor) -> torch.Tensor:
        out = []
        for b, coder in enumerate(coders):
            params = ExactParams.from_grid(mu16[b].numpy().ravel(), ls8[b].numpy().ravel())
            out.append(torch.from_numpy(entropy.decode_latents(coder, params, model.tables).astype(np.float64)))
        return torch.stack(out).view(mu16.shape)

    n_planes = 2 if h0.mode in ("LA", "RGBA") else 1
    planes = []
    for _ in range(n_planes):
        x = model.flow.decode(len(coders), hp, wp, pop_latents) + 128.0
        x = x[:, :, : h0.height, : h0.width]
        if float(x.min()) < 0 or float(x.max()) > 255:
            raise DecodeError("corrupt stream (pixel values out of range)")
        planes.append(x.permute(0, 2, 3, 1).numpy().astype(np.uint8))
    results = []
    for b, (header, coder) in enumerate(zip(headers, coders)):
        if not coder.is_empty():
            raise DecodeError("corrupt stream (data left over after the last symbol)")
        pixels = pixels_of([p[b] for p in planes], header.mode)
        if container.pixel_checksum(pixels) != header.crc32:
            raise DecodeError("corrupt stream (pixel checksum mismatch)")
        results.append(pixels)
    return results


def _decode_guarded(model: Model, headers: list[Header], words: list[np.ndarray]) -> list[np.ndarray]:
    try:
        return _decode_batch(model, headers, words)
    except DecodeError:
        raise
    except Exception as exc:  # the coder or the exact path met data no valid stream holds
        raise DecodeError(f"corrupt stream ({type(exc).__name__}: {exc})") from exc


def decompress_many(datas: Iterable[bytes], batch_size: int = 64, model: ModelLike = None) -> list[np.ndarray]:
    """Decompress streams; streams of one model, size and mode share network evaluations."""
    parsed = []
    for data in datas:
        header, words = container.unpack(data)
        parsed.append((header, words, model_for(header, model)))
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (h, _, m) in enumerate(parsed):
        groups[(m.fingerprint, h.width, h.height, h.mode)].append(i)
    results: list = [None] * len(parsed)
    for idx in groups.values():
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            m = parsed[chunk[0]][2]
            try:
                decoded = _decode_guarded(m, [parsed[i][0] for i in chunk], [parsed[i][1] for i in chunk])
            except DecodeError:
                if len(chunk) == 1:
                    raise
                # Find the bad stream(s) one by one so the error names the right one.
                decoded = [_decode_guarded(m, [parsed[i][0]], [parsed[i][1]])[0] for i in chunk]
            for i, px in zip(chunk, decoded):
                results[i] = px
    return results


def decompress(data: bytes, model: ModelLike = None) -> np.ndarray:
    """Decompress one stream to a uint8 array: H x W for L images, H x W x C otherwise."""
    return decompress_many([data], model=model)[0]


def read_header(data: bytes) -> Header:
    """The header fields of a stream (no decoding)."""
    return container.unpack(data)[0]
