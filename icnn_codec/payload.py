"""A tile's payload: what one tile holds, and in which order. This is the one place that says so.

Every tile has a *kind* (a byte in the container) and a payload:

* ``MODEL``: the model's code, a stream of :mod:`icnn_codec.rans`'s coder (its final state, then
  its words) coded from the tile's checksum, the state its decoder must end in: each plane of the
  tile (:mod:`icnn_codec.planes`), the colour plane first, then the alpha plane, as
  :mod:`icnn_codec.wavefront` codes it: its tile predictor, its adjustment, its pixels line by line.
* ``RAW``, ``FLAT``, ``PALETTE``, ``FILTERED``: the classic codings of :mod:`icnn_codec.classic`,
  which win on graphics (few colours, flat areas, sharp edges) where the model loses.
* ``SPLIT16``: a tile of 16-bit samples, as two 8-bit tiles: the length of the first part
  (varint), then the high bytes' kind and payload (any 8-bit kind), then the low bytes' kind and
  payload (a classic kind: low bytes are mostly noise to the model).

The encoder codes each 8-bit tile both ways and keeps the shorter: a tile of few colours first
classically, and through the model only when that costs more than :data:`MODEL_WORTH_TRYING` bits
a value; any other tile through the model and classically (the classic coders' slow trials
skipped where they cannot beat the model: a smooth gradient has many colours and yet is a
classic coder's, not the model's). Tiles of one
size and mode share network evaluations (batches): :func:`encode_tiles` and :func:`decode_tiles`
take lists of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Iterable, Sequence

import numpy as np

from . import classic
from .classic import ClassicKind
from .container import CHANNELS, CHECKSUM_BYTES, KIND_CHECKED_BY_STATE, read_varint, varint
from .errors import DecodeError
from .planes import pixels_of, plane_shapes, planes_of
from .zoo import Model

# The decoder runs the local AR's networks a line at a time: many tiles share each of its many
# small evaluations (its working memory is a few canvases a tile).
BATCH_PIXELS = 2**21
# Graphics have few distinct pixels: their tiles are coded classically first, and through the model
# only when that costs more than MODEL_WORTH_TRYING bits a value.
FEW_COLOURS = 256
MODEL_WORTH_TRYING = 1.0


class TileKind(IntEnum):
    """A tile's kind byte (part of the stream format)."""

    MODEL = KIND_CHECKED_BY_STATE
    RAW = 1
    FLAT = 2
    PALETTE = 3
    FILTERED = 4
    SPLIT16 = 5


_CLASSIC = {TileKind.RAW: ClassicKind.RAW, TileKind.FLAT: ClassicKind.FLAT, TileKind.PALETTE: ClassicKind.PALETTE,
            TileKind.FILTERED: ClassicKind.FILTERED}
_OF_CLASSIC = {v: k for k, v in _CLASSIC.items()}


@dataclass(frozen=True)
class TileShape:
    """What tiles must share to be decoded in one batch."""

    height: int
    width: int
    mode: str  # a container mode: L, LA, RGB, RGBA or their 16-bit forms

    @property
    def channels(self) -> int:
        return CHANNELS[self.mode]

    @property
    def mode8(self) -> str:
        """The mode of the tile's 8-bit parts."""
        return self.mode[:-2] if self.mode.endswith("16") else self.mode


@dataclass(frozen=True)
class CodedTile:
    kind: TileKind
    payload: bytes


def batches(n_items: int, pixels_each: int, batch_size: int, pixels: int = BATCH_PIXELS) -> Iterable[slice]:
    """Slices of at most ``batch_size`` items and about ``pixels`` pixels each."""
    step = max(1, min(batch_size, pixels // max(1, pixels_each)))
    return (slice(i, i + step) for i in range(0, n_items, step))


# -- encoding ---------------------------------------------------------------------------------
def encode_tiles(model: Model, tiles: Sequence[np.ndarray], checksums: Sequence[int]) -> list[CodedTile]:
    """Each tile's kind and payload. Tiles are H x W x C blocks of any sizes, uint8 or uint16; a
    tile's model code ends, when decoded, in its checksum (see :mod:`icnn_codec.container`), which
    the container then leaves out."""
    parts: list[np.ndarray] = []  # the 8-bit blocks that may go through the model
    for pixels in tiles:
        parts.append((pixels >> 8).astype(np.uint8) if pixels.dtype == np.uint16 else pixels)
    # a 16-bit tile stores its checksum whatever codes its high bytes; an 8-bit tile only if classic
    classic_extra = [0 if pixels.dtype == np.uint16 else CHECKSUM_BYTES for pixels in tiles]
    coded = _encode_8bit(model, parts, checksums, classic_extra)
    out = []
    for pixels, high in zip(tiles, coded):
        if pixels.dtype != np.uint16:
            out.append(high)
            continue
        low_kind, low_payload = classic.encode_classic((pixels & 0xFF).astype(np.uint8))
        first = bytes([high.kind]) + high.payload
        out.append(CodedTile(TileKind.SPLIT16, varint(len(first)) + first + bytes([_OF_CLASSIC[low_kind]]) + low_payload))
    return out


def _encode_8bit(model: Model, tiles: Sequence[np.ndarray], checksums: Sequence[int],
                 classic_extra: Sequence[int]) -> list[CodedTile]:
    """The shorter of the model's and the classic coders' coding of each 8-bit tile, a classic coding
    charged ``classic_extra`` bytes more (the checksum it needs beside it, where the model's code
    holds it)."""
    chosen: list[CodedTile | None] = [None] * len(tiles)
    classic_first: dict[int, CodedTile] = {}  # graphics: coded classically before the model
    for i, pixels in enumerate(tiles):
        if FEW_COLOURS and classic.has_few_colours(pixels, FEW_COLOURS):
            kind, payload = classic.encode_classic(pixels)
            classic_first[i] = CodedTile(_OF_CLASSIC[kind], payload)
            if 8 * len(payload) <= MODEL_WORTH_TRYING * pixels.size:
                chosen[i] = classic_first[i]
    todo = [i for i, c in enumerate(chosen) if c is None]
    for i, stream in zip(todo, _model_streams(model, [tiles[i] for i in todo], [checksums[i] for i in todo])):
        coded = CodedTile(TileKind.MODEL, stream)
        if i in classic_first:
            other = classic_first[i]
        else:
            kind, payload = classic.encode_classic(tiles[i], size_to_beat=len(coded.payload) - classic_extra[i])
            other = CodedTile(_OF_CLASSIC[kind], payload)
        chosen[i] = other if len(other.payload) + classic_extra[i] < len(coded.payload) else coded
    return chosen


def _model_streams(model: Model, tiles: Sequence[np.ndarray], checksums: Sequence[int]) -> list[bytes]:
    """Each tile's stream under the model, coded from its checksum."""
    return [model.wavefront().encode(planes_of(pixels), crc) for pixels, crc in zip(tiles, checksums)]


# -- decoding ---------------------------------------------------------------------------------
def decode_tiles(model: Model, shape: TileShape, tiles: Sequence[CodedTile]) -> list[tuple[np.ndarray, int | None]]:
    """The pixels (H x W x C, uint8 or uint16 as the mode says) of tiles of one shape, the
    model-coded ones in one batch of network evaluations, each with the state its model code ended
    in (its checksum, if the data is sound; None for a tile coded classically). Any malformed data is
    a DecodeError."""
    try:
        return _decode_tiles(model, shape, tiles)
    except DecodeError:
        raise
    except Exception as exc:  # the coder or the exact path met data no valid stream holds
        raise DecodeError(f"corrupt stream ({type(exc).__name__}: {exc})") from exc


def _decode_tiles(model: Model, shape: TileShape, tiles: Sequence[CodedTile]) -> list[tuple[np.ndarray, int | None]]:
    wide = shape.mode.endswith("16")
    parts = [_split16(t) if wide else (t, None) for t in tiles]
    high = _decode_8bit(model, shape, [p[0] for p in parts])
    if not wide:
        return high
    lows = [_decode_classic(shape, low) for _, low in parts]
    return [((h.astype(np.uint16) << 8) | lo, end) for (h, end), lo in zip(high, lows)]


def _split16(tile: CodedTile) -> tuple[CodedTile, CodedTile]:
    """The high and low parts of a SPLIT16 tile."""
    if tile.kind != TileKind.SPLIT16:
        raise DecodeError("corrupt stream (a 16-bit tile that is not split into bytes)")
    length, pos = read_varint(tile.payload, 0, "16-bit tile")
    first, second = tile.payload[pos : pos + length], tile.payload[pos + length :]
    if len(first) != length or not first or not second:
        raise DecodeError("corrupt stream (a 16-bit tile's parts do not match their lengths)")
    return CodedTile(_kind(first[0]), first[1:]), CodedTile(_kind(second[0]), second[1:])


def _kind(byte: int) -> TileKind:
    try:
        return TileKind(byte)
    except ValueError:
        raise DecodeError(f"corrupt stream (unknown tile kind {byte})") from None


def _decode_classic(shape: TileShape, tile: CodedTile) -> np.ndarray:
    if tile.kind not in _CLASSIC:
        raise DecodeError(f"corrupt stream (a tile part of kind {tile.kind.name} where a classic coding belongs)")
    return classic.decode_classic(_CLASSIC[tile.kind], tile.payload, shape.height, shape.width, shape.channels)


def _decode_8bit(model: Model, shape: TileShape, tiles: Sequence[CodedTile]) -> list[tuple[np.ndarray, int | None]]:
    pixels: list = [None] * len(tiles)
    ends: list[int | None] = [None] * len(tiles)
    coded = []
    for b, tile in enumerate(tiles):
        kind = _kind(tile.kind)
        if kind == TileKind.MODEL:
            coded.append(b)
        elif kind in _CLASSIC:
            pixels[b] = _decode_classic(shape, tile)
        else:
            raise DecodeError(f"corrupt stream (a tile of kind {kind.name} in an {shape.mode} image)")
    if coded:
        streams = model.wavefront().streams([tiles[b].payload for b in coded])
        planes = [model.wavefront().pop(streams, h, w) for h, w in plane_shapes(shape.height, shape.width, shape.mode8)]
        if not streams.all_read():
            raise DecodeError("corrupt stream (data left over after the last symbol)")
        for i, b in enumerate(coded):
            pixels[b] = pixels_of([p[i] for p in planes], shape.mode8, shape.width).reshape(shape.height, shape.width, -1)
            ends[b] = int(streams.checks()[i])
    return list(zip(pixels, ends))

