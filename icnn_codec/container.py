"""The stream container: a compact header, a tile index, then each tile's checksum and ANS words.

An image is cut into square tiles of ``tile`` pixels (the last row and column of tiles are
smaller), row-major. Each tile is coded on its own, so memory stays bounded, tiles can be coded
in parallel, and a decoder can seek to one tile. This module is the one place that says what a
stream's bytes are; what a tile's ANS words hold is :mod:`icnn_codec.payload`'s.

Supported format versions: only the current one (before 1.0 the codec reads just the format it
writes; see docs/format.md). Version 6, integers little-endian, varints unsigned LEB128
(canonical: no trailing zero bytes)::

    offset  size  field
    0       2     magic b"IC"
    2       1     high nibble: format version (6); low nibble: image mode (0 L, 1 LA, 2 RGB, 3 RGBA)
    3       2     model fingerprint (uint16; see icnn_codec.zoo.fingerprint)
    5       1-3   width, varint
    .       1-3   height, varint
    .       1-2   tile side / 8, varint (tile sides are multiples of 8, at most MAX_TILE)
    .       ...   only when there are 2+ tiles: the length in 32-bit words of every tile's
                  ANS data but the last, one varint each (the last runs to the end of the stream)
    then, for each tile:
            4     CRC-32 (zlib) of the header bytes above (magic to tile side), the tile's
                  index (uint32) and the tile's pixels (h x w x C uint8, row-major): a changed
                  header field fails every tile, and a tile moved, swapped or repeated fails
                  where it lands
            4n    the tile's ANS compressed words (uint32), as constriction's AnsCoder emits them

A 32x32 image is one tile: a 12-byte header (the tile's CRC included). Nothing is allocated
for an image before its stream has been checked to hold every tile's data, and the declared
size is capped (see :data:`MAX_PIXELS`), so a forged header cannot ask for absurd memory.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import DecodeError, OptionError

MAGIC = b"IC"
FORMAT_VERSION = 6  # the version written, and the only one read (pre-1.0 policy)
MODES = ("L", "LA", "RGB", "RGBA")
CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
MAX_SIDE = 2**20
TILE_UNIT = 8
MAX_TILE = 1024  # a tile's working memory in the network grows with its area
MAX_PIXELS = 2**28  # default refusal threshold for decoding (about 16k x 16k); decoders may raise it
MIN_TILE_BYTES = 8  # a tile holds at least its CRC and one ANS word


@dataclass(frozen=True)
class Tile:
    """One tile's place in the image: rows top:top+height, columns left:left+width."""

    index: int
    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class Header:
    mode: str
    width: int
    height: int
    model_fingerprint: int
    tile: int  # tile side in pixels

    @property
    def channels(self) -> int:
        return CHANNELS[self.mode]

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of tiles."""
        return -(-self.height // self.tile), -(-self.width // self.tile)

    @property
    def n_tiles(self) -> int:
        rows, cols = self.grid
        return rows * cols

    def tiles(self) -> list[Tile]:
        rows, cols = self.grid
        t = self.tile
        return [Tile(r * cols + c, r * t, c * t, min(t, self.height - r * t), min(t, self.width - c * t))
                for r in range(rows) for c in range(cols)]

    def to_bytes(self) -> bytes:
        return (
            MAGIC
            + bytes([(FORMAT_VERSION << 4) | MODES.index(self.mode)])
            + struct.pack("<H", self.model_fingerprint)
            + _varint(self.width)
            + _varint(self.height)
            + _varint(self.tile // TILE_UNIT)
        )


@dataclass(frozen=True)
class TileData:
    crc32: int
    words: np.ndarray  # uint32


def check_tile_side(tile: int) -> None:
    if not (TILE_UNIT <= tile <= MAX_TILE and tile % TILE_UNIT == 0):
        raise OptionError(f"tile side {tile} must be a multiple of {TILE_UNIT} from {TILE_UNIT} to {MAX_TILE}")


def pixel_checksum(pixels: np.ndarray, header: Header, tile_index: int) -> int:
    """CRC-32 of a tile's pixels, continued from the CRC-32 of the header bytes and the tile's index.

    Tiles are checked this way so that the header is covered too: no changed header field can
    pass as a valid stream, even one (like the tile size of a one-tile image) that would not
    change the pixels; nor can tiles of the same size trade places (every tile's CRC is right for
    its own pixels, so without its index a swap would pass).
    """
    start = zlib.crc32(struct.pack("<I", tile_index), zlib.crc32(header.to_bytes()))
    return zlib.crc32(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes(), start) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int, what: str, max_bytes: int = 5) -> tuple[int, int]:
    value = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            raise DecodeError(f"truncated stream (in the {what})")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i and byte == 0:
                raise DecodeError(f"malformed stream (non-canonical {what})")
            return value, pos + i + 1
    raise DecodeError(f"malformed stream ({what} too long)")


def pack(header: Header, tiles: list[TileData]) -> bytes:
    if len(tiles) != header.n_tiles:
        raise ValueError(f"{len(tiles)} tiles for a header with {header.n_tiles}")
    index = b"".join(_varint(len(t.words)) for t in tiles[:-1]) if len(tiles) > 1 else b""
    body = b"".join(struct.pack("<I", t.crc32) + np.asarray(t.words, dtype="<u4").tobytes() for t in tiles)
    return header.to_bytes() + index + body


def overhead_bytes(data: bytes) -> int:
    """Bytes of a stream that are not ANS words: header, tile index and tile checksums."""
    _, tiles = unpack(data, None)
    return len(data) - 4 * sum(len(t.words) for t in tiles)


def read_header(data: bytes) -> tuple[Header, int]:
    """The header and the offset just past it; DecodeError for anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) < 3 or bytes(data[:2]) != MAGIC:
        raise DecodeError("not an icnn stream (bad magic)")
    version, mode_code = data[2] >> 4, data[2] & 0x0F
    if version != FORMAT_VERSION:
        raise DecodeError(f"unsupported format version {version} (this codec reads version {FORMAT_VERSION})")
    if mode_code >= len(MODES):
        raise DecodeError(f"invalid image mode code {mode_code}")
    if len(data) < 5:
        raise DecodeError("truncated stream (in the header)")
    (fp,) = struct.unpack_from("<H", data, 3)
    width, pos = _read_varint(data, 5, "width", 3)
    height, pos = _read_varint(data, pos, "height", 3)
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise DecodeError(f"invalid image size {width}x{height}")
    units, pos = _read_varint(data, pos, "tile size", 2)
    if not 1 <= units <= MAX_TILE // TILE_UNIT:
        raise DecodeError(f"invalid tile size {units * TILE_UNIT}")
    return Header(MODES[mode_code], width, height, fp, units * TILE_UNIT), pos


def unpack(data: bytes, max_pixels: int | None = MAX_PIXELS) -> tuple[Header, list[TileData]]:
    """Parse a whole stream into its header and tiles; DecodeError for anything malformed.

    Cheap checks come first: the declared size against ``max_pixels`` and the tile count
    against the bytes actually present, so no forged size makes the decoder allocate.
    """
    header, pos = read_header(data)
    data = bytes(data)
    if max_pixels is not None and header.width * header.height > max_pixels:
        raise DecodeError(f"image too large to decode ({header.width}x{header.height} > max_pixels={max_pixels})")
    n = header.n_tiles
    if n * MIN_TILE_BYTES > len(data) - pos:
        raise DecodeError(f"truncated stream ({n} tiles cannot fit in {len(data) - pos} bytes)")
    lengths = []
    for _ in range(n - 1):
        words, pos = _read_varint(data, pos, "tile index")
        if words == 0:
            raise DecodeError("malformed stream (empty tile)")
        lengths.append(words)
    rest = len(data) - pos - 4 * (n - 1) - 4 * sum(lengths)  # what the last tile has: CRC + words
    if rest < MIN_TILE_BYTES or (rest - 4) % 4:
        raise DecodeError("truncated stream (tile data does not match the tile index)")
    lengths.append((rest - 4) // 4)
    tiles = []
    for words in lengths:
        (crc,) = struct.unpack_from("<I", data, pos)
        tiles.append(TileData(crc, np.frombuffer(data, dtype="<u4", count=words, offset=pos + 4).astype(np.uint32)))
        pos += 4 + 4 * words
    return header, tiles
