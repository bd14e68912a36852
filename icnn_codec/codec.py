"""The codec: images in, streams out, and back, bit for bit.

An image is cut into square tiles (:mod:`icnn_codec.container`), each coded on its own into its
payload (:mod:`icnn_codec.payload`): the planes of its pixels (:mod:`icnn_codec.planes`) under
the model, or a classic coding where the model would spend more. Every tile carries a CRC-32 of its
pixels, its index and the header, so a decode is exact or a :class:`DecodeError`. Tiles of one
size share network evaluations (batches), and the tiles are shared out among worker threads
(``jobs``: by default one per core).

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
from .container import MAX_PIXELS, Animation, FrameInfo, Header, Stream, Tile, TileData
from .errors import DecodeError, UnsupportedImageError
from .imagefile import Frame, ImageDocument, Metadata
from .payload import CodedTile, TileKind, TileShape
from .planes import as_pixels
from .progress import Progress
from .zoo import Model, default_model_name, find_model_by_fingerprint, load_model

ModelLike = str | Path | Model | None
DEFAULT_TILE = 256  # chosen from benchmarks/tiling.py: the bpd cost of tiling against speed and memory
# Grey images (L, LA): a tile of 384 is a plane 128 positions wide (three grey pixels a position),
# and holds fewer values than a colour tile of 256.
GREY_DEFAULT_TILE = 384
DEFAULT_BATCH = 64  # tiles per network evaluation, at most (see payload.BATCH_PIXELS)


@dataclass(frozen=True)
class TileToEncode:
    pixels: np.ndarray  # H x W x C, uint8 or uint16
    header: Header  # of the tile's image
    number: int  # the tile's number in that stream (frame by frame)

    @property
    def area(self) -> int:
        return self.pixels.shape[0] * self.pixels.shape[1]


@dataclass(frozen=True)
class TileToDecode:
    data: TileData
    header: Header
    number: int

    @property
    def place(self) -> Tile:
        return self.header.tiles()[self.number % self.header.n_tiles]

    @property
    def area(self) -> int:
        return self.place.height * self.place.width

    @property
    def shape(self) -> TileShape:
        return TileShape(self.place.height, self.place.width, self.header.mode)


@dataclass
class _Image:
    """What one stream holds, before coding: its frames' pixels (one shape and mode) and the rest."""

    frames: list[np.ndarray]
    mode: str
    animation: Animation | None = None
    metadata: bytes = b""


# -- encoding ---------------------------------------------------------------------------------
def encode_tiles(model: Model, tiles: list[TileToEncode], batch_size: int = DEFAULT_BATCH) -> list[TileData]:
    """Code tiles (any sizes, of any images) independently: each one's checksum, kind and payload.
    (``batch_size`` is the decoder's: the encoder codes each tile on its own.)"""
    checksums = [container.pixel_checksum(t.pixels, t.header, t.number) for t in tiles]
    coded = payload.encode_tiles(model, [t.pixels for t in tiles], checksums)
    return [TileData(c.kind, None if c.kind == container.KIND_CHECKED_BY_STATE else crc, c.payload)
            for crc, c in zip(checksums, coded)]


def default_tile(mode: str) -> int:
    """The tile side used for an image of this mode unless one is asked for."""
    return GREY_DEFAULT_TILE if mode in ("L", "LA", "L16", "LA16") else DEFAULT_TILE


def compress_many(images: Iterable, /, *, model: ModelLike = None, batch_size: int = DEFAULT_BATCH,
                  tile: int | None = None, jobs: int | None = None, progress: Progress | None = None) -> list[bytes]:
    """Compress images (numpy uint8 or uint16 H x W or H x W x C with C in 1..4, or PIL images).

    ``model=None`` picks the default model for each image's size (see :func:`default_model_name`);
    ``tile=None`` the default tile side for each image's mode (see :func:`default_tile`);
    ``jobs``: threads coding the tiles (None: one per core, as JPEG XL's encoder does);
    ``progress(done, total, "tiles")`` hears of every few tiles coded. Tiles of one size share network evaluations.
    """
    return _compress([_Image([px], mode) for px, mode in map(as_pixels, images)], model, batch_size, tile, jobs, progress)


def compress(image, /, *, model: ModelLike = None, tile: int | None = None, jobs: int | None = None,
             progress: Progress | None = None) -> bytes:
    """Compress one image (numpy uint8 or uint16 H x W or H x W x C with C in 1..4, or a PIL image)."""
    return compress_many([image], model=model, tile=tile, jobs=jobs, progress=progress)[0]


def compress_document(document: ImageDocument, /, *, model: ModelLike = None, tile: int | None = None, jobs: int | None = None,
                      strip: bool = False, progress: Progress | None = None) -> bytes:
    """Compress every frame of a document (see :func:`icnn_codec.imagefile.read_image`) with its
    durations, loop count and disposal, and its metadata (unless ``strip``)."""
    frames = [as_pixels(f.pixels) for f in document.frames]
    if not frames:
        raise UnsupportedImageError("an image with no frames")
    if len({(px.shape, mode) for px, mode in frames}) > 1:
        raise UnsupportedImageError("frames of different sizes or modes (an icnn stream holds frames of one size)")
    animation = None
    if len(frames) > 1:
        animation = Animation(tuple(FrameInfo(f.duration_ms, f.disposal) for f in document.frames),
                              document.loop, document.default_image)
    metadata = b"" if strip or document.metadata.is_empty else document.metadata.to_bytes()
    image = _Image([px for px, _ in frames], frames[0][1], animation, metadata)
    return _compress([image], model, DEFAULT_BATCH, tile, jobs, progress)[0]


def _compress(images: list[_Image], model: ModelLike, batch_size: int, tile: int | None, jobs: int | None,
              progress: Progress | None) -> list[bytes]:
    if tile is not None:
        container.check_tile_side(tile)
    given = load_model(model) if model is not None else None
    models = [given or load_model(default_model_name(im.frames[0].shape[0], im.frames[0].shape[1])) for im in images]
    tile_sides = [tile or default_tile(im.mode) for im in images]
    headers = [Header(im.mode, im.frames[0].shape[1], im.frames[0].shape[0], m.fingerprint, side, im.animation,
                      bool(im.metadata)) for im, m, side in zip(images, models, tile_sides)]
    coded: dict[tuple[int, int], TileData] = {}
    total = sum(h.n_tiles * h.n_frames for h in headers)
    for m in {m.fingerprint: m for m in models}.values():  # one fingerprint, the same integer networks
        keys = [(i, f, t) for i, h in enumerate(headers) if models[i].fingerprint == m.fingerprint
                for f in range(h.n_frames) for t in h.tiles()]
        tiles = [TileToEncode(_tile_pixels(images[i].frames[f], t), headers[i], f * headers[i].n_tiles + t.index)
                 for i, f, t in keys]
        done = _run_tiles(encode_tiles, m, tiles, batch_size, jobs, _offset(progress, len(coded), total))
        coded.update({(i, tile.number): d for (i, _, _), tile, d in zip(keys, tiles, done)})
    return [container.pack(h, [coded[(i, n)] for n in range(h.n_tiles * h.n_frames)], images[i].metadata)
            for i, h in enumerate(headers)]


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
        for batch in payload.batches(len(idx), shape.height * shape.width, batch_size, payload.BATCH_PIXELS):
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
    decoded = payload.decode_tiles(model, shape, [CodedTile(t.data.kind, t.data.payload) for t in tiles])
    for (px, end), t in zip(decoded, tiles):
        stored = [check for check in (t.data.crc32, end) if check is not None]  # beside the payload, in its code
        crc = container.pixel_checksum(px, t.header, t.number)
        if not stored or any(check != crc for check in stored):
            raise DecodeError("corrupt stream (pixel checksum mismatch)")
    return [px for px, _ in decoded]


def _decode_streams(streams: list[Stream], model: ModelLike, batch_size: int, jobs: int | None,
                    progress: Progress | None) -> list[list[np.ndarray]]:
    """Every frame of every stream, H x W x C each."""
    given = load_model(model) if model is not None else None
    models = [model_for(s.header, given) for s in streams]
    frames = [[np.empty((s.header.height, s.header.width, s.header.channels),
                        np.uint16 if s.header.sample_bits == 16 else np.uint8) for _ in range(s.header.n_frames)]
              for s in streams]
    filled = [0] * len(streams)
    total, before = sum(s.header.n_tiles * s.header.n_frames for s in streams), 0
    for m in {m.fingerprint: m for m in models}.values():  # one fingerprint, the same integer networks
        keys = [(i, n) for i, s in enumerate(streams) if models[i].fingerprint == m.fingerprint
                for n in range(s.header.n_tiles * s.header.n_frames)]
        tiles = [TileToDecode(streams[i].tiles[n], streams[i].header, n) for i, n in keys]
        decoded = _run_tiles(decode_tiles, m, tiles, batch_size, jobs, _offset(progress, before, total))
        before += len(keys)
        for (i, n), tile, px in zip(keys, tiles, decoded):
            t = tile.place
            frames[i][n // tile.header.n_tiles][t.top : t.top + t.height, t.left : t.left + t.width] = px.reshape(t.height, t.width, -1)
            filled[i] += 1
    if any(n != s.header.n_tiles * s.header.n_frames for n, s in zip(filled, streams)):  # np.empty holds garbage
        raise RuntimeError("internal error: a tile was not decoded")
    return frames


def _as_returned(pixels: np.ndarray) -> np.ndarray:
    return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels


def decompress_many(datas: Iterable[bytes], /, *, model: ModelLike = None, batch_size: int = DEFAULT_BATCH,
                    jobs: int | None = None, max_pixels: int | None = MAX_PIXELS, progress: Progress | None = None) -> list[np.ndarray]:
    """Decompress streams to arrays (uint8, or uint16 for 16-bit samples; H x W for grey images,
    H x W x C otherwise); tiles of one model, size and mode share network evaluations.

    Streams larger than ``max_pixels`` are refused (None: no limit) before anything is decoded;
    ``progress(done, total, "tiles")`` hears of every few tiles decoded. A stream of several
    frames is refused: :func:`decompress_document` gives them all.
    """
    streams = [container.unpack(d, max_pixels) for d in datas]
    for s in streams:
        if s.header.n_frames > 1:
            raise UnsupportedImageError(f"the stream holds {s.header.n_frames} frames: decompress_document gives them all")
    return [_as_returned(f[0]) for f in _decode_streams(streams, model, batch_size, jobs, progress)]


def decompress(data: bytes, /, *, model: ModelLike = None, jobs: int | None = None, max_pixels: int | None = MAX_PIXELS,
               progress: Progress | None = None) -> np.ndarray:
    """Decompress one stream to an array: H x W for grey images, H x W x C otherwise."""
    return decompress_many([data], model=model, jobs=jobs, max_pixels=max_pixels, progress=progress)[0]


def decompress_document(data: bytes, /, *, model: ModelLike = None, jobs: int | None = None, max_pixels: int | None = MAX_PIXELS,
                        progress: Progress | None = None) -> ImageDocument:
    """Every frame of a stream with its duration and disposal, the loop count and the metadata."""
    stream = container.unpack(data, max_pixels)
    metadata = Metadata.from_bytes(stream.metadata) if stream.metadata else Metadata()
    pixels = _decode_streams([stream], model, DEFAULT_BATCH, jobs, progress)[0]
    animation = stream.header.animation
    if animation is None:
        return ImageDocument([Frame(_as_returned(pixels[0]), None, None)], None, metadata, None)
    frames = [Frame(_as_returned(px), info.duration_ms, info.disposal) for px, info in zip(pixels, animation.frames)]
    return ImageDocument(frames, animation.plays, metadata, None, animation.default_image)


def decompress_tile(data: bytes, index: int, /, *, model: ModelLike = None) -> np.ndarray:
    """Decode one tile only (see :meth:`Header.tiles` for where it lies; frames after the first
    number on); the rest is not decoded."""
    stream = container.unpack(data, None)
    m = model_for(stream.header, model)
    if not 0 <= index < len(stream.tiles):
        raise IndexError(f"tile {index} of {len(stream.tiles)}")
    return _as_returned(decode_tiles(m, [TileToDecode(stream.tiles[index], stream.header, index)])[0])


def read_header(data: bytes, /) -> Header:
    """The header fields of a stream (no decoding)."""
    return container.read_header(data)[0]


def read_metadata(data: bytes, /) -> Metadata:
    """The metadata a stream keeps (no pixels decoded); DecodeError if its chunk is damaged."""
    stream = container.unpack(data, None)
    return Metadata.from_bytes(stream.metadata) if stream.metadata else Metadata()


def tile_kinds(data: bytes, /) -> list[str]:
    """How each tile was coded: "model", "raw", "flat", "palette", "filtered" or "split16"."""
    return [_kind_name(t.kind) for t in container.unpack(data, None).tiles]


def _kind_name(kind: int) -> str:
    try:
        return TileKind(kind).name.lower()
    except ValueError:
        raise DecodeError(f"corrupt stream (unknown tile kind {kind})") from None


# -- parallel tiles ---------------------------------------------------------------------------
CHUNK_TILES = 4  # tiles per task: small, so no thread holds much more than its working set


def _run_tiles(work: Callable, model: Model, items: list, batch_size: int, jobs: int | None,
               progress: Callable[[int], None] | None = None) -> list:
    """``work(model, items, batch_size)``, over ``jobs`` threads when there is more than one tile;
    ``progress(tiles done)`` after each chunk of tiles.

    Threads, not processes: they share the model and the interpreter, so each job costs only its
    working set (one batch of tiles), and the network's float64 convolutions release the GIL.
    Results do not depend on ``jobs``: every tile is coded on its own, by exact arithmetic.
    """
    largest = max(it.area for it in items)
    jobs = min(max(1, default_jobs() if jobs is None else jobs), len(items))
    if jobs == 1 and progress is None:
        return work(model, items, batch_size)
    # A chunk of tiles is one batch of network evaluations at most (small tiles share one), or
    # CHUNK_TILES large ones.
    per_batch = max(CHUNK_TILES, min(batch_size, payload.BATCH_PIXELS // largest))
    done = 0

    def finished(part: list) -> list:
        nonlocal done
        done += len(part)
        if progress is not None:
            progress(done)
        return part

    if jobs == 1:
        size = max(CHUNK_TILES, batch_size)
        return [r for i in range(0, len(items), size) for r in finished(work(model, items[i : i + size], batch_size))]
    cut = [[share[k : k + per_batch] for k in range(0, len(share), per_batch)] for share in _shares(items, jobs)]
    chunks = [c[n] for n in range(max(map(len, cut))) for c in cut if n < len(c)]  # the jobs' chunks in turn
    results: list = [None] * len(items)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // jobs))  # the jobs are the parallelism: don't oversubscribe
    try:
        with ThreadPoolExecutor(jobs, thread_name_prefix="icnn-tiles") as pool:
            futures = [pool.submit(work, model, [items[i] for i in chunk], batch_size) for chunk in chunks]
            for chunk, future in zip(chunks, futures):
                for i, r in zip(chunk, finished(future.result())):
                    results[i] = r
    finally:
        torch.set_num_threads(threads)
    return results


def _shares(items: list, jobs: int) -> list[list[int]]:
    """The items' indices for each job, each job's area about equal (a tile takes time about in
    proportion to its area). Tiles of one area (one shape, nearly always) stay in one job where the
    group fits in what is left of a fair share, as they share its network evaluations; a larger
    group is dealt out tile by tile, each to the job with the least area so far."""
    groups: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item.area, []).append(i)
    fair = sum(item.area for item in items) / jobs
    shares: list[list[int]] = [[] for _ in range(jobs)]
    loads = [0] * jobs
    for area, group in sorted(groups.items(), key=lambda g: -g[0] * len(g[1])):
        j = loads.index(min(loads))
        if loads[j] + area * len(group) <= fair:
            shares[j] += group
            loads[j] += area * len(group)
            continue
        for i in group:
            j = loads.index(min(loads))
            shares[j].append(i)
            loads[j] += area
    return shares


def _offset(progress: Progress | None, before: int, total: int) -> Callable[[int], None] | None:
    """A model's share of a call's tiles, reported as progress through all of them."""
    return None if progress is None else (lambda done: progress(before + done, total, "tiles"))


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
