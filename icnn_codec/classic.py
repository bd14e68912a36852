"""Classic block coders: lossless codings of a block of pixels for content where the model loses.

The model is good on photographs and poor on graphics (screenshots, icons, charts, scans): a
flat tile or a two-colour drawing costs it far more than PNG would. These coders are the encoder's
other choice for a tile. A block is an H x W x C uint8 array (C = 1..4; 1 grey, 2 grey + alpha,
3 RGB, 4 RGBA); its size and channel count are known to the decoder from the stream, so a payload
carries none of them.

Kinds (their numbers and payload layouts are part of the stream format):

* ``RAW``: the pixels' bytes, row-major, H x W x C of them.
* ``FLAT``: one pixel's C bytes; every pixel of the block has that value.
* ``PALETTE``: at most 256 distinct pixels. Payload: an options byte, the colour count less one, then
  one compressed stream of the palette (count x C bytes) followed by the rows of colour indices,
  packed 1, 2, 4 or 8 bits to an index as PNG packs them (by the count: <= 2, <= 4, <= 16, more;
  most significant bits first, each row padded to a byte), each row PNG-filtered with a left
  neighbour one byte back (as PNG does below 8 bits a pixel).
* ``FILTERED``: an options byte, then one compressed stream of the block's rows, PNG-filtered with C
  bytes per pixel; with the SUBTRACT_GREEN option (C >= 3) the rows hold R - G, G, B - G (mod 256).

A PNG-filtered row is a filter-type byte (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth; PNG's definitions)
followed by the row's residuals. The options byte's low two bits name the compressor (0: raw DEFLATE,
1: raw LZMA2 with a dictionary of max(4096, stream size) bytes, 2: bzip2; all Python's standard
library), the next bit the transform; other bits must be zero. The stream must decompress to exactly
the size the block implies and end there. Every decompressor is capped at that size, so a forged
payload costs no more memory or time than an honest one, and anything malformed is a ``DecodeError``.

The encoder tries the applicable kinds under a few filter strategies and compressors and keeps the
smallest payload (RAW when nothing is smaller). DEFLATE and bzip2 trials are cheap; LZMA trials
(PRESET_EXTREME) take most of the time, so only the two streams the cheap trials rank best get one,
and a caller that already holds a coding of the block (the model's) can pass its size so that they
are skipped when they cannot plausibly beat it. Photographic blocks, whose streams have no repeats
for a compressor to find, get fewer trials: ranked by a fast DEFLATE probe, only the best two
streams get bzip2 and the best of those LZMA, under a tighter floor on what LZMA can gain.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Iterator
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from .errors import DecodeError, UnsupportedImageError


class ClassicKind(IntEnum):
    """How a block was coded; stable numbers that go into streams."""

    RAW = 0
    FLAT = 1
    PALETTE = 2
    FILTERED = 3


class _Compressor(IntEnum):
    DEFLATE = 0
    LZMA = 1
    BZIP2 = 2


_COMPRESSOR_BITS = 0x03
_SUBTRACT_GREEN = 0x04  # FILTERED only

_NONE, _SUB, _UP, _AVERAGE, _PAETH = range(5)
_N_FILTERS = 5

# The LZMA2 dictionary is sized from the block (both ends know it) rather than the preset's 64 MiB:
# a decoder allocates all of it up front, and a dictionary larger than the data gains nothing.
_MIN_LZMA_DICT = 4096
_LZMA_PRESET = 9 | lzma.PRESET_EXTREME

# bzip2 is the cheap trial for every stream; DEFLATE only for palette streams (small, and where its
# lack of a header pays): on filtered rows it won 1 of 344 benchmark tiles, by 2 bytes, and it is the
# slowest of the cheap trials on photographic tiles.
_CHEAP_COMPRESSORS = {
    ClassicKind.PALETTE: (_Compressor.DEFLATE, _Compressor.BZIP2),
    ClassicKind.FILTERED: (_Compressor.BZIP2,),
}
# LZMA (PRESET_EXTREME) is the slow trial: it gets the streams that the cheap compressors ranked
# best. On the graphics benchmark's 256-pixel tiles, LZMA on the best two came within 0.1 % of LZMA
# on all of them (mean size / PNG 0.6606 against 0.6599), for about a third of the time.
_LZMA_TRIALS = 2


# Photographic blocks: their streams are noise-like residuals, where a fast DEFLATE probe ranks
# the streams as the slow compressors would. Measured on 256-pixel tiles of photographs and
# graphics (benchmarks/classic_trials.py): bzip2 on the probe's best two and LZMA on the best of
# those (under a tighter floor on LZMA's gain) came within 0.01 % of the full search on photos and
# 0.14 % on graphics.
_PHOTO_BZIP2_TRIALS = 2
_PHOTO_LZMA_TRIALS = 1
# A block is photographic when LZ77 gains nothing on symbol statistics: the probe's best is at least
# this much above the best stream's order-0 entropy (photo tiles: >= 1.02; graphics: median 0.87).
_PHOTOGRAPHIC_PROBE_RATIO = 1.1


def _lzma_gain_bound(cheap_fraction_of_raw: float, photographic: bool = False) -> float:
    """A floor under (LZMA's best payload) / (the cheap trials' best), by how compressible a block is.

    Least ratios measured (graphics benchmark's 256-pixel and whole-image blocks; 108 photo tiles):
    0.60 where the cheap best was under 1/10 of the raw size, 0.75 under 1/4, 0.90 above (photos:
    never under 0.90). The floors leave a margin under those. Photographic blocks
    (benchmarks/classic_trials.py): 0.915 on photos, 0.919 on photos-unseen; 0.847 on graphics
    tiles, but there the model's coding was never under 0.95 of bzip2's, so the floor skipped none.
    """
    if cheap_fraction_of_raw < 0.1:
        return 0.5
    if cheap_fraction_of_raw < 0.25:
        return 0.7
    return 0.9 if photographic else 0.85


def encode_classic(pixels: np.ndarray, *, size_to_beat: int | None = None) -> tuple[ClassicKind, bytes]:
    """The smallest classic coding found for an H x W x C uint8 block: (kind, payload).

    ``size_to_beat``: the size of a coding the caller already has (the model's). The LZMA trials,
    the slow ones, are skipped when the cheap trials' best is so large that LZMA could not plausibly
    come under it; the result is still exact, but may then be larger than a full search's.
    """
    pixels = _checked_block(pixels)
    if (pixels == pixels[0, 0]).all():
        return ClassicKind.FLAT, pixels[0, 0].tobytes()
    best = (ClassicKind.RAW, pixels.tobytes())
    candidates = list(_candidates(pixels))
    trials, lzma_trials, photographic = list(range(len(candidates))), _LZMA_TRIALS, False
    if len(candidates) > _PHOTO_BZIP2_TRIALS:
        probes, order0 = zip(*(probe(c.stream) for c in candidates))
        photographic = min(probes) >= _PHOTOGRAPHIC_PROBE_RATIO * min(order0)
        if photographic:
            trials = [int(i) for i in np.argsort(probes, kind="stable")[:_PHOTO_BZIP2_TRIALS]]
            lzma_trials = _PHOTO_LZMA_TRIALS
    cheap_sizes = {}
    for i in trials:
        smallest = min((_payload(candidates[i], compressor) for compressor in _CHEAP_COMPRESSORS[candidates[i].kind]),
                       key=len)
        cheap_sizes[i] = len(smallest)
        if len(smallest) < len(best[1]):
            best = (candidates[i].kind, smallest)
    if size_to_beat is None or size_to_beat >= len(best[1]) * _lzma_gain_bound(len(best[1]) / pixels.size, photographic):
        for i in sorted(cheap_sizes, key=cheap_sizes.get)[:lzma_trials]:
            payload = _payload(candidates[i], _Compressor.LZMA)
            if len(payload) < len(best[1]):
                best = (candidates[i].kind, payload)
    return best


def probe(stream: bytes) -> tuple[int, float]:
    """Two cheap estimates of what a stream compresses to: zlib level 1's size (which finds repeats)
    and its order-0 entropy in bytes (symbol statistics alone). (Probing only the first quarter of a
    tile's rows took graphics tiles for photographic twice as often.)"""
    counts = np.bincount(np.frombuffer(stream, np.uint8), minlength=256)
    p = counts[counts > 0] / len(stream)
    return len(zlib.compress(stream, 1)), float(-(p * np.log2(p)).sum() * len(stream) / 8)


def decode_classic(kind: int, payload: bytes, height: int, width: int, channels: int) -> np.ndarray:
    """The H x W x C uint8 block a payload codes; DecodeError if the payload is not a valid one."""
    if height < 1 or width < 1 or not 1 <= channels <= 4:
        raise DecodeError(f"invalid classic block shape {height}x{width}x{channels}")
    payload = bytes(payload)
    if kind == ClassicKind.RAW:
        if len(payload) != height * width * channels:
            raise DecodeError("corrupt classic tile: raw payload of the wrong size")
        return np.frombuffer(payload, np.uint8).reshape(height, width, channels).copy()
    if kind == ClassicKind.FLAT:
        if len(payload) != channels:
            raise DecodeError("corrupt classic tile: flat payload of the wrong size")
        return np.broadcast_to(np.frombuffer(payload, np.uint8), (height, width, channels)).copy()
    if kind == ClassicKind.PALETTE:
        return _decode_palette(payload, height, width, channels)
    if kind == ClassicKind.FILTERED:
        return _decode_filtered(payload, height, width, channels)
    raise DecodeError(f"corrupt classic tile: unknown kind {kind}")


def _checked_block(pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or not 1 <= pixels.shape[2] <= 4 or 0 in pixels.shape:
        raise UnsupportedImageError(f"a classic block is H x W x C uint8 with C in 1..4, not {pixels.dtype} "
                                    f"{'x'.join(map(str, pixels.shape))}")
    return np.ascontiguousarray(pixels)


# ---------------------------------------------------------------------------------------------
# Trials


class _Candidate(NamedTuple):
    kind: ClassicKind
    options: int  # the options byte less the compressor bits
    prefix: bytes  # payload bytes between the options byte and the compressed stream
    stream: bytes  # what gets compressed


def _payload(candidate: _Candidate, compressor: _Compressor) -> bytes:
    return bytes([candidate.options | compressor]) + candidate.prefix + _compress(candidate.stream, compressor)


def _candidates(pixels: np.ndarray) -> Iterator[_Candidate]:
    """The uncompressed streams worth a trial, each with its payload header.

    Which filter strategy wins depends on the content: on screenshots, unfiltered rows let the
    compressor find repeated glyphs and widgets; on gradients and drawings, filtered residuals win.
    """
    height, width, channels = pixels.shape
    palette = _small_palette(pixels)
    if palette is not None:
        colours, indices = palette
        packed = _pack_indices(indices, _index_bits(len(colours)))
        for strategy in ("none", "adaptive"):
            stream = colours.tobytes() + _filter_rows(packed, 1, strategy)
            yield _Candidate(ClassicKind.PALETTE, 0, bytes([len(colours) - 1]), stream)
    for subtract_green in (False, True) if channels >= 3 else (False,):
        source = _subtract_green(pixels) if subtract_green else pixels
        rows = source.reshape(height, width * channels)
        for strategy in ("none", "adaptive", "paeth"):
            stream = _filter_rows(rows, channels, strategy)
            options = _SUBTRACT_GREEN if subtract_green else 0
            yield _Candidate(ClassicKind.FILTERED, options, b"", stream)


# ---------------------------------------------------------------------------------------------
# PNG filters


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _filter_rows(rows: np.ndarray, bpp: int, strategy: str) -> bytes:
    """PNG's byte stream of ``rows`` (H x row bytes): each row preceded by its filter type.

    Strategies: "none", "paeth" (every row), "adaptive" (per row, PNG's heuristic: the filter whose
    residuals, read as signed bytes, have the least sum of absolute values).
    """
    x = rows.astype(np.int16)
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]
    b = np.zeros_like(x)
    b[1:] = x[:-1]
    c = np.zeros_like(x)
    c[1:] = a[:-1]
    if strategy == "none":
        types, residuals = np.full(len(x), _NONE, np.uint8), x
    elif strategy == "paeth":
        types, residuals = np.full(len(x), _PAETH, np.uint8), x - _paeth(a, b, c)
    else:
        all_residuals = np.stack([x, x - a, x - b, x - ((a + b) >> 1), x - _paeth(a, b, c)]).astype(np.uint8)
        cost = np.abs(all_residuals.view(np.int8)).sum(axis=2, dtype=np.int32)
        types = np.argmin(cost, axis=0).astype(np.uint8)
        residuals = all_residuals[types, np.arange(len(x))]
    return np.concatenate([types[:, None], residuals.astype(np.uint8)], axis=1).tobytes()


def _unfilter_rows(stream: bytes, height: int, row_bytes: int, bpp: int) -> np.ndarray:
    """Inverse of ``_filter_rows``: H x row bytes uint8; a filter type above 4 is a DecodeError."""
    data = np.frombuffer(stream, np.uint8).reshape(height, row_bytes + 1)
    types = data[:, 0]
    if types.max() >= _N_FILTERS:
        raise DecodeError("corrupt classic tile: unknown row filter")
    residuals = data[:, 1:].astype(np.int16)
    if np.isin(types, (_AVERAGE, _PAETH)).any():
        return _unfilter_by_diagonals(types, residuals, bpp)
    return _unfilter_by_rows(types, residuals, bpp)


def _unfilter_by_rows(types: np.ndarray, residuals: np.ndarray, bpp: int) -> np.ndarray:
    """None, Sub and Up rows: one vector operation a row (Sub: a running sum in each byte lane)."""
    height, row_bytes = residuals.shape
    lanes = -(-row_bytes // bpp) * bpp
    out = np.zeros((height, row_bytes), np.int16)
    previous = out[0]
    for i in range(height):
        if types[i] == _SUB:
            padded = np.zeros(lanes, np.int32)
            padded[:row_bytes] = residuals[i]
            out[i] = (np.cumsum(padded.reshape(-1, bpp), axis=0) & 0xFF).reshape(-1)[:row_bytes]
        elif types[i] == _UP:
            out[i] = (residuals[i] + previous) & 0xFF
        else:
            out[i] = residuals[i]
        previous = out[i]
    return out.astype(np.uint8)


def _unfilter_by_diagonals(types: np.ndarray, residuals: np.ndarray, bpp: int) -> np.ndarray:
    """Any mix of filters, one anti-diagonal of pixels at a time.

    A pixel depends only on its left, upper and upper-left neighbours, so all pixels with the same
    row + column can be decoded together: height + width vector steps instead of one per pixel.
    """
    height, row_bytes = residuals.shape
    width = -(-row_bytes // bpp)
    res = np.zeros((height, width * bpp), np.int16)
    res[:, :row_bytes] = residuals
    res = res.reshape(height, width, bpp)
    # A row and a column of zeros above and left of the block: PNG's neighbours off the edge.
    out = np.zeros((height + 1, width + 1, bpp), np.int16)
    row_types = types.astype(np.int16)[:, None]
    for diagonal in range(height + width - 1):
        i = np.arange(max(0, diagonal - width + 1), min(height, diagonal + 1))
        j = diagonal - i
        a, b, c = out[i + 1, j], out[i, j + 1], out[i, j]
        t = row_types[i]
        prediction = np.where(t == _SUB, a, 0)
        prediction = np.where(t == _UP, b, prediction)
        prediction = np.where(t == _AVERAGE, (a + b) >> 1, prediction)
        prediction = np.where(t == _PAETH, _paeth(a, b, c), prediction)
        out[i + 1, j + 1] = (res[i, j] + prediction) & 0xFF
    return out[1:, 1:].reshape(height, width * bpp)[:, :row_bytes].astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Compressors


def _lzma_filters(stream_size: int) -> list[dict]:
    return [{"id": lzma.FILTER_LZMA2, "dict_size": max(_MIN_LZMA_DICT, stream_size)}]


def _compress(stream: bytes, compressor: _Compressor) -> bytes:
    if compressor == _Compressor.DEFLATE:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
        return packer.compress(stream) + packer.flush()
    if compressor == _Compressor.LZMA:
        filters = _lzma_filters(len(stream))
        filters[0]["preset"] = _LZMA_PRESET
        return lzma.compress(stream, format=lzma.FORMAT_RAW, filters=filters)
    return bz2.compress(stream, 9)


def _decompress(data: bytes, compressor: int, stream_size: int) -> bytes:
    """Exactly ``stream_size`` bytes from ``data``, a compressed stream that ends where ``data`` ends."""
    try:
        if compressor == _Compressor.DEFLATE:
            unpacker = zlib.decompressobj(-15)
            out = unpacker.decompress(data, stream_size)
            if not unpacker.eof:  # a valid stream may still hold its end-of-block code
                out += unpacker.decompress(unpacker.unconsumed_tail, 1)
            complete = unpacker.eof and not unpacker.unused_data
        elif compressor in (_Compressor.LZMA, _Compressor.BZIP2):
            if compressor == _Compressor.LZMA:
                unpacker = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=_lzma_filters(stream_size))
            else:
                unpacker = bz2.BZ2Decompressor()
            out = unpacker.decompress(data, stream_size)
            if not unpacker.eof and len(out) == stream_size:
                out += unpacker.decompress(b"", 1)
            complete = unpacker.eof and not unpacker.unused_data
        else:
            raise DecodeError("corrupt classic tile: unknown compressor")
    except (zlib.error, lzma.LZMAError, OSError, EOFError) as error:
        raise DecodeError(f"corrupt classic tile: {error}") from None
    if not complete or len(out) != stream_size:
        raise DecodeError("corrupt classic tile: compressed data does not fill the block exactly")
    return out


# ---------------------------------------------------------------------------------------------
# Palette


def _packed_pixels(pixels: np.ndarray) -> np.ndarray:
    """H x W uint32: each pixel's channels as one number."""
    packed = np.zeros(pixels.shape[:2], np.uint32)
    for ch in range(pixels.shape[2]):
        packed = (packed << 8) | pixels[:, :, ch]
    return packed


def _colours_within(packed: np.ndarray, limit: int) -> bool:
    # A cheap look first: a photographic block shows more than 256 values in its first rows.
    return np.unique(packed[: -(-4096 // packed.shape[1])]).size <= limit


def has_few_colours(pixels: np.ndarray, limit: int = 256) -> bool:
    """Whether an H x W x C uint8 block has at most ``limit`` distinct pixels."""
    packed = _packed_pixels(pixels)
    return _colours_within(packed, limit) and np.unique(packed).size <= limit


def _small_palette(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(colours, index of every pixel) if the block has at most 256 distinct pixels, else None.

    Colours are in the order of their packed values (for grey, dark to light), so that indices of
    similar colours are near each other, which helps the filters.
    """
    height, width, channels = pixels.shape
    packed = _packed_pixels(pixels)
    if not _colours_within(packed, 256):
        return None
    colours, inverse = np.unique(packed, return_inverse=True)
    if colours.size > 256:
        return None
    shifts = np.arange(channels - 1, -1, -1, dtype=np.uint32) * 8
    palette = ((colours[:, None] >> shifts) & 0xFF).astype(np.uint8)
    return palette, inverse.reshape(height, width).astype(np.uint8)


def _index_bits(n_colours: int) -> int:
    return 1 if n_colours <= 2 else 2 if n_colours <= 4 else 4 if n_colours <= 16 else 8


def _pack_indices(indices: np.ndarray, bits: int) -> np.ndarray:
    """Rows of indices packed ``bits`` to an index, most significant first, each row padded to a byte."""
    if bits == 8:
        return indices
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint8)
    bit_planes = (indices[:, :, None] >> shifts) & 1
    return np.packbits(bit_planes.reshape(len(indices), -1), axis=1)


def _unpack_indices(packed: np.ndarray, width: int, bits: int) -> np.ndarray:
    if bits == 8:
        return packed
    bit_planes = np.unpackbits(packed, axis=1, count=width * bits).reshape(len(packed), width, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint8)
    return (bit_planes * weights).sum(axis=2, dtype=np.uint8)


def _decode_palette(payload: bytes, height: int, width: int, channels: int) -> np.ndarray:
    if len(payload) < 3:
        raise DecodeError("corrupt classic tile: palette payload too short")
    options, n_colours = payload[0], payload[1] + 1
    _check_options(options, allowed_transforms=0)
    bits = _index_bits(n_colours)
    row_bytes = -(-width * bits // 8)
    palette_size = n_colours * channels
    stream = _decompress(payload[2:], options & _COMPRESSOR_BITS, palette_size + height * (row_bytes + 1))
    palette = np.frombuffer(stream, np.uint8, palette_size).reshape(n_colours, channels)
    indices = _unpack_indices(_unfilter_rows(stream[palette_size:], height, row_bytes, 1), width, bits)
    if indices.max() >= n_colours:
        raise DecodeError("corrupt classic tile: colour index beyond the palette")
    return palette[indices]


# ---------------------------------------------------------------------------------------------
# Filtered pixels


def _subtract_green(pixels: np.ndarray) -> np.ndarray:
    out = pixels.copy()
    out[:, :, 0] -= pixels[:, :, 1]
    out[:, :, 2] -= pixels[:, :, 1]
    return out


def _add_green(pixels: np.ndarray) -> np.ndarray:
    out = pixels.copy()
    out[:, :, 0] += pixels[:, :, 1]
    out[:, :, 2] += pixels[:, :, 1]
    return out


def _decode_filtered(payload: bytes, height: int, width: int, channels: int) -> np.ndarray:
    if len(payload) < 2:
        raise DecodeError("corrupt classic tile: filtered payload too short")
    options = payload[0]
    _check_options(options, allowed_transforms=_SUBTRACT_GREEN if channels >= 3 else 0)
    row_bytes = width * channels
    stream = _decompress(payload[1:], options & _COMPRESSOR_BITS, height * (row_bytes + 1))
    pixels = _unfilter_rows(stream, height, row_bytes, channels).reshape(height, width, channels)
    return _add_green(pixels) if options & _SUBTRACT_GREEN else pixels


def _check_options(options: int, allowed_transforms: int) -> None:
    if options & ~(_COMPRESSOR_BITS | allowed_transforms) or options & _COMPRESSOR_BITS > max(_Compressor):
        raise DecodeError("corrupt classic tile: unknown options")
