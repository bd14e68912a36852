"""The codec: images in, streams out, and back, bit for bit.

An image is cut into square tiles (:mod:`icnn_codec.container`), each coded on its own. A tile
is coded as one or two *planes* of three channels through the flow: the colour plane (RGB, or
the grey channel) and, for LA/RGBA, the alpha plane. A grey or alpha channel becomes a plane by
taking three horizontally adjacent pixels as its three channels (neighbours are as alike as the
colours of one pixel, so the colour model codes them well; format version 2 repeated the grey
level three times, which cost about twice as much). The flow codes the part of a plane whose
sides are multiples of its block, or, where a side's rest is longer than half a block, the side
padded by repeating edge pixels; short rests are strips coded by prediction after it
(:mod:`icnn_codec.strips`; format 4). The encoder may shift the scales of each latent group of a
plane by a step count it sends first (format 5; see :mod:`icnn_codec.entropy`). Each plane's
latents and strips go onto one ANS stack per tile, alpha plane first, so the decoder pops the
colour plane first. Last comes the tile's kind: when the model's code is longer than the tile's
raw bytes, the tile is stored as those bytes instead, so no image costs much more than its size. Tiles of one size share
network evaluations (batches), and with ``jobs > 1`` the tiles are shared out among worker
threads.
"""
from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Sequence

import constriction
import numpy as np
import torch

from . import container, entropy, strips
from .container import FORMAT_VERSION, MAX_PIXELS, Header, Tile, TileData
from .errors import DecodeError, OptionError, UnsupportedImageError
from .priors import ExactParams
from .zoo import Model, default_model_name, find_model_by_fingerprint, load_model

ModelLike = "str | Model | None"
PIL_MODES = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "1": "L", "P": None, "PA": "RGBA"}
CHANNEL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
DEFAULT_TILE = 256  # chosen from benchmarks/tiling.py: the bpd cost of tiling against speed and memory
# Grey images (L, LA): a tile of 384 is a plane 128 positions wide, which needs no padding to the
# flow's block (256 would be 86, padded to 96), and holds fewer values than a colour tile of 256.
GREY_DEFAULT_TILE = 384
Progress = Callable[[int, int], None]  # (tiles done, tiles in all), called as tiles finish
BATCH_PIXELS = 2**16  # pixels per network evaluation: bounds working memory (float64 im2col buffers)


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


GREY_GROUP = 3  # horizontally adjacent grey (or alpha) pixels coded as one position's channels


def grey_plane(channel: np.ndarray, version: int = FORMAT_VERSION) -> np.ndarray:
    """H x W grey or alpha channel -> H x W' x 3 plane for the colour model."""
    if version < 3:
        return np.repeat(channel[:, :, None], 3, axis=2)
    h, w = channel.shape
    padded = np.pad(channel, ((0, 0), (0, -w % GREY_GROUP)), mode="edge")
    return padded.reshape(h, -1, GREY_GROUP)


def grey_channel(plane: np.ndarray, width: int, version: int = FORMAT_VERSION) -> np.ndarray:
    """Inverse of :func:`grey_plane`: H x W' x 3 -> H x width x 1."""
    if version < 3:
        return plane[:, :, :1]
    return plane.reshape(plane.shape[0], -1)[:, :width, None]


def planes_of(pixels: np.ndarray, version: int = FORMAT_VERSION) -> list[np.ndarray]:
    """H x W x C -> [colour plane, (alpha plane)], each H x W' x 3."""
    c = pixels.shape[2]
    planes = [pixels[:, :, :3] if c >= 3 else grey_plane(pixels[:, :, 0], version)]
    if c in (2, 4):
        planes.append(grey_plane(pixels[:, :, -1], version))
    return planes


def plane_shapes(height: int, width: int, mode: str, version: int = FORMAT_VERSION) -> list[tuple[int, int]]:
    """(height, width) of each plane that :func:`planes_of` makes of an image of this size and mode."""
    grey = (height, width if version < 3 else -(-width // GREY_GROUP))
    colour = (height, width) if mode in ("RGB", "RGBA") else grey
    return [colour, grey] if mode in ("LA", "RGBA") else [colour]


def pixels_of(planes: list[np.ndarray], mode: str, width: int, version: int = FORMAT_VERSION) -> np.ndarray:
    colour = planes[0] if mode in ("RGB", "RGBA") else grey_channel(planes[0], width, version)
    parts = [colour] + ([grey_channel(planes[1], width, version)] if mode in ("LA", "RGBA") else [])
    out = np.concatenate(parts, axis=2)
    return out[:, :, 0] if mode == "L" else out


def padded_size(height: int, width: int, block: int) -> tuple[int, int]:
    return -(-height // block) * block, -(-width // block) * block


def flow_shape(height: int, width: int, block: int, version: int = FORMAT_VERSION) -> tuple[int, int]:
    """The part of a plane (top left) that goes through the flow; the rest is strips (format 4)."""
    if version < 4:
        return height, width
    return strips.flow_side(height, block), strips.flow_side(width, block)


def pad_plane(plane: np.ndarray, block: int) -> np.ndarray:
    h, w = plane.shape[:2]
    hp, wp = padded_size(h, w, block)
    return np.pad(plane, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")


def exact_input(planes: Sequence[np.ndarray]) -> torch.Tensor:
    """Padded H x W x 3 uint8 planes -> exact-path batch (B, 3, H, W) float64, centred."""
    x = torch.from_numpy(np.stack(planes)).permute(0, 3, 1, 2).to(torch.float64)
    return x - 128.0


# -- tiles ------------------------------------------------------------------------------------
def tile_pixels(pixels: np.ndarray, tile: Tile) -> np.ndarray:
    return pixels[tile.top : tile.top + tile.height, tile.left : tile.left + tile.width]


def _batches(n_items: int, pixels_each: int, batch_size: int) -> Iterable[slice]:
    step = max(1, min(batch_size, BATCH_PIXELS // max(1, pixels_each)))
    return (slice(i, i + step) for i in range(0, n_items, step))


# -- encoding ---------------------------------------------------------------------------------
def _encode_planes(model: Model, planes: list[np.ndarray], coders: list, batch_size: int, version: int) -> None:
    """Push each plane's latents onto its coder (planes share one padded size), then (format 5)
    the scale offsets of its groups."""
    for batch in _batches(len(planes), planes[0].shape[0] * planes[0].shape[1], batch_size):
        with torch.no_grad():
            groups = model.flow(exact_input(planes[batch]))
        for b, coder in enumerate(coders[batch]):
            grid = [(g.z[b].numpy().ravel().astype(np.int64), g.mu[b].numpy().ravel(), g.log_scale[b].numpy().ravel().astype(np.int64))
                    for g in groups]
            offsets = entropy.choose_scale_offsets(grid, model.tables) if version >= 5 else [0] * len(grid)
            for (z, mu16, ls8), offset in zip(grid, offsets):
                entropy.encode_latents(coder, z, ExactParams.from_grid(mu16, ls8 + offset), model.tables)
            if version >= 5:
                entropy.encode_scale_offsets(coder, offsets)


def encode_blocks(model: Model, blocks: Sequence[tuple[np.ndarray, Header, int]], batch_size: int = 64) -> list[TileData]:
    """Code pixel blocks (H x W x C uint8, any sizes, each with its image's header and its tile
    index there) independently."""
    coders = [constriction.stream.stack.AnsCoder() for _ in blocks]
    # Alpha planes are pushed first (popped last), so group the planes by (push round, size).
    # A plane's strips are pushed just before its flow part, so they are popped just after it.
    rounds: dict[tuple, list[tuple[int, np.ndarray, np.ndarray, tuple[int, int]]]] = defaultdict(list)
    for i, (px, header, _) in enumerate(blocks):
        planes = planes_of(px, header.version)
        for order, plane in enumerate(reversed(planes)):
            flow_h, flow_w = flow_shape(*plane.shape[:2], model.block, header.version)
            padded = pad_plane(plane[:flow_h, :flow_w], model.block)
            rounds[(order if len(planes) == 2 else 1, padded.shape, header.version)].append((i, padded, plane, (flow_h, flow_w)))
    for key in sorted(rounds, key=lambda k: k[0]):
        idx, padded, planes, flow_shapes = zip(*rounds[key])
        for i, plane, (flow_h, flow_w) in zip(idx, planes, flow_shapes):
            strips.encode_strips(coders[i], plane, flow_h, flow_w, model.tables)
        _encode_planes(model, list(padded), [coders[i] for i in idx], batch_size, version=key[2])
    return [TileData(container.pixel_checksum(px, h, tile_index=index), _tile_words(px, h, c)) for (px, h, index), c in zip(blocks, coders)]


def _tile_words(pixels: np.ndarray, header: Header, coder) -> np.ndarray:
    """The tile's words: the model's code, or (version 3) its stored bytes where those are shorter."""
    if header.version < 3:
        return coder.get_compressed()
    entropy.encode_tile_kind(coder, entropy.TILE_MODEL)
    words = coder.get_compressed()
    if 4 * len(words) > pixels.size:  # only then can storing be shorter
        stored = entropy.stored_tile_words(pixels)
        if len(stored) < len(words):
            return stored
    return words


def default_tile(mode: str, block: int = 16) -> int:
    """The tile side used for an image of this mode (and a model of this block) unless one is asked for."""
    return GREY_DEFAULT_TILE if mode in ("L", "LA") and GREY_DEFAULT_TILE % block == 0 else DEFAULT_TILE


def compress_many(images: Iterable, model: ModelLike = None, batch_size: int = 64,
                  tile: int | None = None, jobs: int = 1, progress: Progress | None = None) -> list[bytes]:
    """Compress images (numpy uint8 or PIL). Tiles of one size share network evaluations.

    ``model=None`` picks the default model for each image's size and mode (see :func:`default_model_name`);
    ``tile=None`` the default tile side for each image's mode (see :func:`default_tile`);
    ``jobs`` > 1 codes the tiles in that many threads; ``progress(done, total)`` hears of every
    few tiles coded.
    """
    if tile is not None:
        container.check_tile_side(tile)
    items = [as_pixels(im) for im in images]
    given = load_model(model) if model is not None else None  # once: a run folder loads anew each time
    models = [given or load_model(default_model_name(px.shape[0], px.shape[1], mode)) for px, mode in items]
    tile_sides = [tile or default_tile(mode, m.block) for (_, mode), m in zip(items, models)]
    for side, m in {(side, m.fingerprint): (side, m) for side, m in zip(tile_sides, models)}.values():
        if side % m.block:
            raise OptionError(f"tile side {side} is not a multiple of model {m.name}'s block ({m.block})")
    headers = [Header(mode, px.shape[1], px.shape[0], m.fingerprint, side)
               for (px, mode), m, side in zip(items, models, tile_sides)]
    tiles = [h.tiles() for h in headers]
    coded: dict[tuple[int, int], TileData] = {}
    total = sum(map(len, tiles))
    for m in {m.fingerprint: m for m in models}.values():  # one fingerprint, the same integer networks
        keys = [(i, t.index) for i, (h, ts) in enumerate(zip(headers, tiles)) if models[i].fingerprint == m.fingerprint
                for t in ts]
        blocks = [(tile_pixels(items[i][0], tiles[i][j]), headers[i], j) for i, j in keys]
        coded.update(zip(keys, _run_tiles(encode_blocks, m, blocks, batch_size, jobs, _offset(progress, len(coded), total))))
    return [container.pack(h, [coded[(i, t.index)] for t in ts]) for i, (h, ts) in enumerate(zip(headers, tiles))]


def compress(image, model: ModelLike = None, tile: int | None = None, jobs: int = 1,
             progress: Progress | None = None) -> bytes:
    """Compress one image (numpy uint8 H x W or H x W x C with C in 1..4, or a PIL image)."""
    return compress_many([image], model, tile=tile, jobs=jobs, progress=progress)[0]


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


def _decode_same_shape(model: Model, shape: tuple[int, int, str, int], tiles: list[tuple[TileData, Header, int]]) -> list[np.ndarray]:
    """Decode tiles that share a size, mode and format version, in one batch of network evaluations."""
    height, width, mode, version = shape
    coders = [constriction.stream.stack.AnsCoder(np.ascontiguousarray(t.words)) for t, _, _ in tiles]
    kinds = [_pop_tile_kind(c, version) for c in coders]
    coded = [b for b, kind in enumerate(kinds) if kind == entropy.TILE_MODEL]
    pixels: list = [None] * len(tiles)
    for b, kind in enumerate(kinds):
        if kind == entropy.TILE_STORED:
            pixels[b] = entropy.decode_stored(coders[b], height * width * container.CHANNELS[mode]).reshape(height, width, -1)
    if coded:
        planes = _decode_planes(model, [coders[b] for b in coded], plane_shapes(height, width, mode, version), version)
        for i, b in enumerate(coded):
            pixels[b] = pixels_of([p[i] for p in planes], mode, width, version)
    for b, ((tile, header, index), coder) in enumerate(zip(tiles, coders)):
        if not coder.is_empty():
            raise DecodeError("corrupt stream (data left over after the last symbol)")
        if container.pixel_checksum(pixels[b], header, tile_index=index) != tile.crc32:
            raise DecodeError("corrupt stream (pixel checksum mismatch)")
    return pixels


def _pop_tile_kind(coder, version: int) -> int:
    """A tile's kind, popped off its coder (format 3); format 2 tiles are all model-coded."""
    return entropy.decode_tile_kind(coder) if version >= 3 else entropy.TILE_MODEL


def _decode_planes(model: Model, coders: list, shapes: list[tuple[int, int]], version: int) -> list[np.ndarray]:
    """Run the flow backwards for each plane (colour first) of every coder's tile: H x W' x 3 uint8 each."""

    n_groups = len(model.flow.group_names())
    offsets: list[list[int]] = []  # each coder's scale offsets of the plane being decoded

    def pop_latents(mu16: torch.Tensor, ls8: torch.Tensor) -> torch.Tensor:
        out = []
        for b, coder in enumerate(coders):
            # Every symbol costs some bits, so a valid stream never runs dry before its last group;
            # a forged one stops here rather than decoding a whole tile from nothing.
            if coder.is_empty():
                raise DecodeError("corrupt stream (tile data ran out)")
            params = ExactParams.from_grid(mu16[b].numpy().ravel(), ls8[b].numpy().ravel().astype(np.int64) + offsets[b].pop())
            out.append(torch.from_numpy(entropy.decode_latents(coder, params, model.tables).astype(np.float64)))
        return torch.stack(out).view(mu16.shape)

    planes = []
    for height, width in shapes:
        flow_h, flow_w = flow_shape(height, width, model.block, version)
        hp, wp = padded_size(flow_h, flow_w, model.block)
        # Offsets are listed in encoding order, so popping the last gives the next group decoded.
        offsets = [entropy.decode_scale_offsets(c, n_groups) if version >= 5 else [0] * n_groups for c in coders]
        x = model.flow.decode(len(coders), hp, wp, pop_latents) + 128.0
        x = x[:, :, :flow_h, :flow_w]
        if float(x.min()) < 0 or float(x.max()) > 255:
            raise DecodeError("corrupt stream (pixel values out of range)")
        flow_parts = x.permute(0, 2, 3, 1).numpy().astype(np.uint8)
        if (flow_h, flow_w) == (height, width):
            planes.append(flow_parts)
        else:
            planes.append(np.stack([strips.decode_strips(coder, part, height, width, model.tables)
                                    for coder, part in zip(coders, flow_parts)]))
    return planes


def _decode_guarded(model: Model, shape: tuple[int, int, str, int], tiles: list[tuple[TileData, Header, int]]) -> list[np.ndarray]:
    try:
        return _decode_same_shape(model, shape, tiles)
    except DecodeError:
        raise
    except Exception as exc:  # the coder or the exact path met data no valid stream holds
        raise DecodeError(f"corrupt stream ({type(exc).__name__}: {exc})") from exc


def decode_blocks(model: Model, blocks: Sequence[tuple[tuple[int, int, str, int], tuple[TileData, Header, int]]],
                  batch_size: int = 64) -> list[np.ndarray]:
    """Decode ((height, width, mode, version), (tile data, header, tile index)) blocks; one shape
    shares evaluations."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (shape, _) in enumerate(blocks):
        groups[shape].append(i)
    results: list = [None] * len(blocks)
    for shape, idx in groups.items():
        for batch in _batches(len(idx), shape[0] * shape[1], batch_size):
            chunk = idx[batch]
            try:
                decoded = _decode_guarded(model, shape, [blocks[i][1] for i in chunk])
            except DecodeError:
                if len(chunk) == 1:
                    raise
                # Find the bad block(s) one by one so the error is the right one's.
                decoded = [_decode_guarded(model, shape, [blocks[i][1]])[0] for i in chunk]
            for i, px in zip(chunk, decoded):
                results[i] = px
    return results


def _parse(data: bytes, model: ModelLike, max_pixels: int | None) -> tuple[Header, list[TileData], Model]:
    header, tiles = container.unpack(data, max_pixels)
    return header, tiles, model_for(header, model)


def _shape(header: Header, tile: Tile) -> tuple[int, int, str, int]:
    """What tiles must share to be decoded in one batch."""
    return tile.height, tile.width, header.mode, header.version


def decompress_many(datas: Iterable[bytes], batch_size: int = 64, model: ModelLike = None, jobs: int = 1,
                    max_pixels: int | None = MAX_PIXELS, progress: Progress | None = None) -> list[np.ndarray]:
    """Decompress streams; tiles of one model, size and mode share network evaluations.

    Streams larger than ``max_pixels`` are refused (None: no limit) before anything is decoded;
    ``progress(done, total)`` hears of every few tiles decoded.
    """
    given = load_model(model) if model is not None else None  # once: a run folder loads anew each time
    parsed = [_parse(d, given, max_pixels) for d in datas]
    images = [np.empty((h.height, h.width, h.channels), np.uint8) for h, _, _ in parsed]
    filled = [0] * len(parsed)
    total, before = sum(h.n_tiles for h, _, _ in parsed), 0
    for m in {p[2].fingerprint: p[2] for p in parsed}.values():  # one fingerprint, the same integer networks
        keys = [(i, t) for i, (h, _, pm) in enumerate(parsed) if pm.fingerprint == m.fingerprint for t in h.tiles()]
        blocks = [(_shape(parsed[i][0], t), (parsed[i][1][t.index], parsed[i][0], t.index)) for i, t in keys]
        decoded = _run_tiles(decode_blocks, m, blocks, batch_size, jobs, _offset(progress, before, total))
        before += len(keys)
        for (i, t), px in zip(keys, decoded):
            images[i][t.top : t.top + t.height, t.left : t.left + t.width] = px.reshape(t.height, t.width, -1)
            filled[i] += 1
    if any(n != h.n_tiles for n, (h, _, _) in zip(filled, parsed)):  # np.empty holds garbage: never return it
        raise RuntimeError("internal error: a tile was not decoded")
    return [im[:, :, 0] if h.mode == "L" else im for im, (h, _, _) in zip(images, parsed)]


def decompress(data: bytes, model: ModelLike = None, jobs: int = 1, max_pixels: int | None = MAX_PIXELS,
               progress: Progress | None = None) -> np.ndarray:
    """Decompress one stream to a uint8 array: H x W for L images, H x W x C otherwise."""
    return decompress_many([data], model=model, jobs=jobs, max_pixels=max_pixels, progress=progress)[0]


def decompress_tile(data: bytes, index: int, model: ModelLike = None) -> np.ndarray:
    """Decode one tile only (see :meth:`Header.tiles` for where it lies); the rest is not decoded."""
    header, tiles, m = _parse(data, model, None)
    if not 0 <= index < header.n_tiles:
        raise IndexError(f"tile {index} of {header.n_tiles}")
    tile = header.tiles()[index]
    px = decode_blocks(m, [(_shape(header, tile), (tiles[index], header, index))])[0]
    return px[:, :, 0] if header.mode == "L" and px.ndim == 3 else px


def read_header(data: bytes) -> Header:
    """The header fields of a stream (no decoding)."""
    return container.read_header(data)[0]


def tile_kinds(data: bytes) -> list[str]:
    """How each tile was coded: "model", or "stored" (its raw bytes, where the model's code was
    longer). Reads one symbol per tile; DecodeError for a malformed stream."""
    header, tiles = container.unpack(data, None)
    try:
        kinds = [_pop_tile_kind(constriction.stream.stack.AnsCoder(np.ascontiguousarray(t.words)), header.version)
                 for t in tiles]
    except ValueError as exc:  # the coder refuses words no valid stream holds (e.g. a final zero word)
        raise DecodeError(f"corrupt stream ({exc})") from None
    return ["stored" if k == entropy.TILE_STORED else "model" for k in kinds]


# -- parallel tiles ---------------------------------------------------------------------------
CHUNK_TILES = 4  # tiles per task: small, so no thread holds much more than its working set


def _run_tiles(work: Callable, model: Model, items: list, batch_size: int, jobs: int,
               progress: Progress | None = None) -> list:
    """``work(model, items, batch_size)``, over ``jobs`` threads when there is more than one tile;
    ``progress(done, len(items))`` after each chunk of tiles.

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
            progress(done, len(items))
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


def _offset(progress: Progress | None, before: int, total: int) -> Progress | None:
    """A model's share of a call's tiles, reported as progress through all of them."""
    return None if progress is None else (lambda done, _: progress(before + done, total))


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
