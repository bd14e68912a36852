"""The codec: images in, streams out, and back, bit for bit.

An image is cut into square tiles (:mod:`icnn_codec.container`), each coded on its own into its
payload (:mod:`icnn_codec.payload`): the planes of its pixels (:mod:`icnn_codec.planes`) through
the flow, or its raw bytes where the model would spend more. Every tile carries a CRC-32 of its
pixels, its index and the header, so a decode is exact or a :class:`DecodeError`. Tiles of one
size share network evaluations (batches), and with ``jobs > 1`` the tiles are shared out among
worker threads.

The functions take the data positionally and every option by keyword.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from . import container, payload
from .container import MAX_PIXELS, Header, Tile, TileData
from .errors import DecodeError, OptionError
from .payload import TileKind, TileShape
from .planes import as_pixels
from .progress import Progress
from .zoo import Model, default_model_name, find_model_by_fingerprint, load_model

ModelLike = str | Path | Model | None
DEFAULT_TILE = 256  # chosen from benchmarks/tiling.py: the bpd cost of tiling against speed and memory
# Grey images (L, LA): a tile of 384 is a plane 128 positions wide, which needs no padding to the
# flow's block (256 would be 86, padded to 96), and holds fewer values than a colour tile of 256.
GREY_DEFAULT_TILE = 384
DEFAULT_BATCH = 64  # tiles per network evaluation, at most (see payload.BATCH_PIXELS)


@dataclass(frozen=True)
class TileToEncode:
    pixels: np.ndarray  # H x W x C uint8
    header: Header  # of the tile's image
    index: int  # the tile's index in that image


@dataclass(frozen=True)
class TileToDecode:
    data: TileData
    header: Header
    index: int

    @property
    def shape(self) -> TileShape:
        tile = self.header.tiles()[self.index]
        return TileShape(tile.height, tile.width, self.header.mode)


# -- encoding ---------------------------------------------------------------------------------
def encode_tiles(model: Model, tiles: list[TileToEncode], batch_size: int = DEFAULT_BATCH) -> list[TileData]:
    """Code tiles (any sizes, of any images) independently: each one's checksum and payload."""
    words = payload.encode_tiles(model, [t.pixels for t in tiles], batch_size)
    return [TileData(container.pixel_checksum(t.pixels, t.header, t.index), w) for t, w in zip(tiles, words)]


def default_tile(mode: str, block: int = 16) -> int:
    """The tile side used for an image of this mode (and a model of this block) unless one is asked for."""
    return GREY_DEFAULT_TILE if mode in ("L", "LA") and GREY_DEFAULT_TILE % block == 0 else DEFAULT_TILE


def compress_many(images: Iterable, /, *, model: ModelLike = None, batch_size: int = DEFAULT_BATCH,
                  tile: int | None = None, jobs: int = 1, progress: Progress | None = None) -> list[bytes]:
    """Compress images (numpy uint8 H x W or H x W x C with C in 1..4, or PIL images).

    ``model=None`` picks the default model for each image's size and mode (see :func:`default_model_name`);
    ``tile=None`` the default tile side for each image's mode (see :func:`default_tile`);
    ``jobs`` > 1 codes the tiles in that many threads; ``progress(done, total, "tiles")`` hears of
    every few tiles coded. Tiles of one size share network evaluations.
    """
    if tile is not None:
        container.check_tile_side(tile)
    items = [as_pixels(im) for im in images]
    given = load_model(model) if model is not None else None
    models = [given or load_model(default_model_name(px.shape[0], px.shape[1], mode)) for px, mode in items]
    tile_sides = [tile or default_tile(mode, m.block) for (_, mode), m in zip(items, models)]
    for side, m in {(side, m.fingerprint): (side, m) for side, m in zip(tile_sides, models)}.values():
        if side % m.block:
            raise OptionError(f"tile side {side} is not a multiple of model {m.name}'s block ({m.block})")
    headers = [Header(mode, px.shape[1], px.shape[0], m.fingerprint, side)
               for (px, mode), m, side in zip(items, models, tile_sides)]
    coded: dict[tuple[int, int], TileData] = {}
    total = sum(h.n_tiles for h in headers)
    for m in {m.fingerprint: m for m in models}.values():  # one fingerprint, the same integer networks
        keys = [(i, t) for i, h in enumerate(headers) if models[i].fingerprint == m.fingerprint for t in h.tiles()]
        tiles = [TileToEncode(_tile_pixels(items[i][0], t), headers[i], t.index) for i, t in keys]
        done = _run_tiles(encode_tiles, m, tiles, batch_size, jobs, _offset(progress, len(coded), total))
        coded.update({(i, t.index): d for (i, t), d in zip(keys, done)})
    return [container.pack(h, [coded[(i, t.index)] for t in h.tiles()]) for i, h in enumerate(headers)]


def compress(image, /, *, model: ModelLike = None, tile: int | None = None, jobs: int = 1,
             progress: Progress | None = None) -> bytes:
    """Compress one image (numpy uint8 H x W or H x W x C with C in 1..4, or a PIL image)."""
    return compress_many([image], model=model, tile=tile, jobs=jobs, progress=progress)[0]


def _tile_pixels(pixels: np.ndarray, tile: Tile) -> np.ndarray:
    return pixels[tile.top : tile.top + tile.height, tile.left : tile.left + tile.width]


# -- decoding ---------------------------------------------------------------------------------
def model_for(header: Header, model: ModelLike = None) -> Model:
    """The model a stream needs: the given one (which must be it) or the installed one it names."""
    if model is not None:
        m = load_model(model)
        if m.fingerprint != header.model_fingerprint:
            raise DecodeError(f"stream was made with model {header.model_fingerprint:04x}, not {m.name} ({m.fingerprint:04x})")
        return m
    m = find_model_by_fingerprint(header.model_fingerprint)
    if m is None:
        raise DecodeError(f"stream needs model {header.model_fingerprint:04x}, which is not installed "
                          "(this version decodes streams of the models it ships)")
    return m


def decode_tiles(model: Model, tiles: list[TileToDecode], batch_size: int = DEFAULT_BATCH) -> list[np.ndarray]:
    """Decode tiles, each checked against its checksum; tiles of one shape share evaluations."""
    by_shape: dict[TileShape, list[int]] = {}
    for i, t in enumerate(tiles):
        by_shape.setdefault(t.shape, []).append(i)
    results: list = [None] * len(tiles)
    for shape, idx in by_shape.items():
        for batch in payload.batches(len(idx), shape.height * shape.width, batch_size):
            chunk = [tiles[i] for i in idx[batch]]
            try:
                decoded = _decode_checked(model, shape, chunk)
            except DecodeError:
                if len(chunk) == 1:
                    raise
                # Find the bad tile(s) one by one so the error is the right one's.
                decoded = [_decode_checked(model, shape, [t])[0] for t in chunk]
            for i, px in zip(idx[batch], decoded):
                results[i] = px
    return results


def _decode_checked(model: Model, shape: TileShape, tiles: list[TileToDecode]) -> list[np.ndarray]:
    pixels = payload.decode_tiles(model, shape, [t.data.words for t in tiles])
    for px, t in zip(pixels, tiles):
        if container.pixel_checksum(px, t.header, t.index) != t.data.crc32:
            raise DecodeError("corrupt stream (pixel checksum mismatch)")
    return pixels


def decompress_many(datas: Iterable[bytes], /, *, model: ModelLike = None, batch_size: int = DEFAULT_BATCH,
                    jobs: int = 1, max_pixels: int | None = MAX_PIXELS, progress: Progress | None = None) -> list[np.ndarray]:
    """Decompress streams to uint8 arrays (H x W for L images, H x W x C otherwise); tiles of one
    model, size and mode share network evaluations.

    Streams larger than ``max_pixels`` are refused (None: no limit) before anything is decoded;
    ``progress(done, total, "tiles")`` hears of every few tiles decoded.
    """
    given = load_model(model) if model is not None else None
    parsed = [container.unpack(d, max_pixels) for d in datas]
    models = [model_for(h, given) for h, _ in parsed]
    images = [np.empty((h.height, h.width, h.channels), np.uint8) for h, _ in parsed]
    filled = [0] * len(parsed)
    total, before = sum(h.n_tiles for h, _ in parsed), 0
    for m in {m.fingerprint: m for m in models}.values():  # one fingerprint, the same integer networks
        keys = [(i, t) for i, (h, _) in enumerate(parsed) if models[i].fingerprint == m.fingerprint for t in h.tiles()]
        tiles = [TileToDecode(parsed[i][1][t.index], parsed[i][0], t.index) for i, t in keys]
        decoded = _run_tiles(decode_tiles, m, tiles, batch_size, jobs, _offset(progress, before, total))
        before += len(keys)
        for (i, t), px in zip(keys, decoded):
            images[i][t.top : t.top + t.height, t.left : t.left + t.width] = px.reshape(t.height, t.width, -1)
            filled[i] += 1
    if any(n != h.n_tiles for n, (h, _) in zip(filled, parsed)):  # np.empty holds garbage: never return it
        raise RuntimeError("internal error: a tile was not decoded")
    return [im[:, :, 0] if h.mode == "L" else im for im, (h, _) in zip(images, parsed)]


def decompress(data: bytes, /, *, model: ModelLike = None, jobs: int = 1, max_pixels: int | None = MAX_PIXELS,
               progress: Progress | None = None) -> np.ndarray:
    """Decompress one stream to a uint8 array: H x W for L images, H x W x C otherwise."""
    return decompress_many([data], model=model, jobs=jobs, max_pixels=max_pixels, progress=progress)[0]


def decompress_tile(data: bytes, index: int, /, *, model: ModelLike = None) -> np.ndarray:
    """Decode one tile only (see :meth:`Header.tiles` for where it lies); the rest is not decoded."""
    header, tiles = container.unpack(data, None)
    m = model_for(header, model)
    if not 0 <= index < header.n_tiles:
        raise IndexError(f"tile {index} of {header.n_tiles}")
    px = decode_tiles(m, [TileToDecode(tiles[index], header, index)])[0]
    return px[:, :, 0] if header.mode == "L" and px.ndim == 3 else px


def read_header(data: bytes, /) -> Header:
    """The header fields of a stream (no decoding)."""
    return container.read_header(data)[0]


def tile_kinds(data: bytes, /) -> list[str]:
    """How each tile was coded: "model", or "stored" (its raw bytes, where the model's code was
    longer). Reads one symbol per tile; DecodeError for a malformed stream."""
    _, tiles = container.unpack(data, None)
    return ["stored" if payload.tile_kind(t.words) == TileKind.STORED else "model" for t in tiles]


# -- parallel tiles ---------------------------------------------------------------------------
CHUNK_TILES = 4  # tiles per task: small, so no thread holds much more than its working set


def _run_tiles(work: Callable, model: Model, items: list, batch_size: int, jobs: int,
               progress: Callable[[int], None] | None = None) -> list:
    """``work(model, items, batch_size)``, over ``jobs`` threads when there is more than one tile;
    ``progress(tiles done)`` after each chunk of tiles.

    Threads, not processes: they share the model and the interpreter, so each job costs only its
    working set (one batch of tiles), and the network's float64 convolutions release the GIL.
    Results do not depend on ``jobs``: every tile is coded on its own, by exact arithmetic.
    """
    jobs = min(max(1, jobs), len(items))
    if jobs == 1 and progress is None:
        return work(model, items, batch_size)
    size = CHUNK_TILES if jobs > 1 else max(CHUNK_TILES, batch_size)  # one job: keep whole batches
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    done = 0

    def finished(part: list) -> list:
        nonlocal done
        done += len(part)
        if progress is not None:
            progress(done)
        return part

    if jobs == 1:
        return [r for chunk in chunks for r in finished(work(model, chunk, batch_size))]
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // jobs))  # the jobs are the parallelism: don't oversubscribe
    try:
        with ThreadPoolExecutor(jobs, thread_name_prefix="icnn-tiles") as pool:
            futures = [pool.submit(work, model, chunk, batch_size) for chunk in chunks]
            return [r for f in futures for r in finished(f.result())]
    finally:
        torch.set_num_threads(threads)


def _offset(progress: Progress | None, before: int, total: int) -> Callable[[int], None] | None:
    """A model's share of a call's tiles, reported as progress through all of them."""
    return None if progress is None else (lambda done: progress(before + done, total, "tiles"))


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
