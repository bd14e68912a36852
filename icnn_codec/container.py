"""The stream container: what a stream's bytes are. This is the one place that says so; what a
tile's payload holds is :mod:`icnn_codec.payload`'s.

An image (each frame of an animation) is cut into square tiles of ``tile`` pixels (the last row
and column of tiles are smaller), row-major, and each tile is coded on its own: memory stays
bounded, tiles can be coded in parallel, and a decoder can seek to one tile.

Supported format versions: only the current one, 12 (before 1.0 the codec reads just the format
it writes). Integers little-endian; varints unsigned LEB128, canonical (no trailing zero bytes)::

    size   field
    2      magic b"IC"
    1      high nibble: format version (12); low nibble: image mode
           (0 L, 1 LA, 2 RGB, 3 RGBA; 4-7 the same with 16-bit samples)
    2      model fingerprint (uint16; see icnn_codec.zoo.fingerprint)
    1-3    width, varint
    1-3    height, varint
    1      flags: bit 0 an animation (frames follow), bit 1 a metadata chunk follows, bit 2 (with
           bit 0) the first frame is an APNG's default image, not part of the animation, bit 3
           the image is cut into tiles (without it, one tile covers the image)
    1-2    with bit 3: tile side / 8, varint (tile sides are multiples of 8, at most MAX_TILE,
           and less than the image's longer side)
    ...    with bit 0: frame count (varint, at least 2), plays + 1 (varint; plays 0: forever;
           0: none given, e.g. the pages of a TIFF), then per frame its duration in ms + 1
           (varint; 0: none given) and its disposal (1 byte; 255: none given)
    ...    with bit 1: the metadata chunk's length (varint) and the chunk (see
           icnn_codec.imagefile.Metadata: deflated, with its own CRC-32)
    ...    when there are 2+ tiles in all (frames x tiles per frame): the length in bytes of
           every tile's body but the last, one varint each (the last runs to the stream's end)
    then each tile's body, frame by frame, each frame's tiles row-major:
    1      the tile's kind (see icnn_codec.payload.TileKind)
    4      except for kind 0 (the model's code): the tile's checksum, CRC-32 (zlib) of the header
           (from the magic to the frame table, metadata excluded: it has its own check), the
           tile's number in the stream (uint32) and its pixels (h x w x C samples, row-major;
           16-bit samples little-endian): a changed header field fails every tile, and a tile
           moved, swapped or repeated fails where it lands. The model's code holds the same
           checksum as the state its entropy coder ends in (icnn_codec.rans: 33 bits of its
           state, where a state started from a constant would carry nothing)
    ...    the kind's payload

Nothing is allocated for an image before its stream has been checked to hold every tile's data,
and the declared size is capped (see :data:`MAX_PIXELS`), so a forged header cannot ask for
absurd memory.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import DecodeError, OptionError

MAGIC = b"IC"
FORMAT_VERSION = 12  # the version written, and the only one read (pre-1.0 policy)
MODES = ("L", "LA", "RGB", "RGBA", "L16", "LA16", "RGB16", "RGBA16")
CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "L16": 1, "LA16": 2, "RGB16": 3, "RGBA16": 4}
MAX_SIDE = 2**20
TILE_UNIT = 8
MAX_TILE = 1024  # a tile's working memory in the network grows with its area
MAX_PIXELS = 2**28  # default refusal threshold for decoding (all frames); decoders may raise it
MAX_FRAMES = 2**16
MIN_TILE_BYTES = 5  # a tile holds at least its kind and its checksum (or a coder's state of 5 bytes or more)
CHECKSUM_BYTES = 4
KIND_CHECKED_BY_STATE = 0  # the tile kind whose payload holds its checksum (payload.TileKind.MODEL)
NO_DISPOSAL = 255
_ANIMATION, _METADATA, _DEFAULT_IMAGE, _TILED = 0x01, 0x02, 0x04, 0x08


@dataclass(frozen=True)
class Tile:
    """One tile's place in a frame: rows top:top+height, columns left:left+width."""

    index: int  # within its frame
    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class FrameInfo:
    duration_ms: int | None = None
    disposal: int | None = None


@dataclass(frozen=True)
class Animation:
    frames: tuple[FrameInfo, ...]
    plays: int | None = 0  # 0: forever; None: not given (pages rather than an animation)
    default_image: bool = False  # frames[0] is an APNG's still image, not a frame of the animation


@dataclass(frozen=True)
class Header:
    mode: str
    width: int
    height: int
    model_fingerprint: int
    tile_side: int  # in pixels (a Tile is one tile's place); one tile's, if it covers the image
    animation: Animation | None = None
    has_metadata: bool = False

    def __post_init__(self) -> None:
        if self.tile_side >= max(self.width, self.height):  # one tile: the side of the image's
            object.__setattr__(self, "tile_side", one_tile_side(self.width, self.height))
        elif self.tile_side < TILE_UNIT or self.tile_side % TILE_UNIT:
            raise ValueError(f"tile side {self.tile_side} is not a whole number of {TILE_UNIT}s")

    @property
    def tiled(self) -> bool:
        """Whether the image is cut into more than one tile (a frame's)."""
        return self.tile_side < max(self.width, self.height)

    @property
    def channels(self) -> int:
        return CHANNELS[self.mode]

    @property
    def sample_bits(self) -> int:
        return 16 if self.mode.endswith("16") else 8

    @property
    def n_frames(self) -> int:
        return len(self.animation.frames) if self.animation else 1

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of tiles in a frame."""
        return -(-self.height // self.tile_side), -(-self.width // self.tile_side)

    @property
    def n_tiles(self) -> int:
        """Tiles per frame."""
        rows, cols = self.grid
        return rows * cols

    def tiles(self) -> list[Tile]:
        rows, cols = self.grid
        t = self.tile_side
        return [Tile(r * cols + c, r * t, c * t, min(t, self.height - r * t), min(t, self.width - c * t))
                for r in range(rows) for c in range(cols)]

    def to_bytes(self) -> bytes:
        """The header's bytes up to the frame table (what every tile's CRC covers)."""
        flags = (_ANIMATION if self.animation else 0) | (_METADATA if self.has_metadata else 0)
        flags |= _DEFAULT_IMAGE if self.animation and self.animation.default_image else 0
        flags |= _TILED if self.tiled else 0
        out = (MAGIC + bytes([(FORMAT_VERSION << 4) | MODES.index(self.mode)]) + struct.pack("<H", self.model_fingerprint)
               + varint(self.width) + varint(self.height) + bytes([flags]))
        if self.tiled:
            out += varint(self.tile_side // TILE_UNIT)
        if self.animation:
            out += varint(len(self.animation.frames)) + varint(_plus_one(self.animation.plays))
            for f in self.animation.frames:
                out += varint(_plus_one(f.duration_ms)) + bytes([NO_DISPOSAL if f.disposal is None else f.disposal])
        return out


def _plus_one(n: int | None) -> int:
    """An optional count as a varint's value: 0 for None, n + 1 otherwise."""
    return 0 if n is None else n + 1


def _minus_one(v: int) -> int | None:
    return None if v == 0 else v - 1


@dataclass(frozen=True)
class TileData:
    kind: int
    crc32: int | None  # None where the payload holds it (KIND_CHECKED_BY_STATE)
    payload: bytes


@dataclass(frozen=True)
class Stream:
    header: Header
    metadata: bytes  # the metadata chunk (empty when there is none)
    tiles: list[TileData]  # frame by frame


def one_tile_side(width: int, height: int) -> int:
    """The tile side of an image that is one tile: its longer side, rounded up to a whole TILE_UNIT."""
    return -(-max(width, height) // TILE_UNIT) * TILE_UNIT


def check_tile_side(tile: int) -> None:
    if not (TILE_UNIT <= tile <= MAX_TILE and tile % TILE_UNIT == 0):
        raise OptionError(f"tile side {tile} must be a multiple of {TILE_UNIT} from {TILE_UNIT} to {MAX_TILE}")


def pixel_checksum(pixels: np.ndarray, header: Header, number: int) -> int:
    """CRC-32 of a tile's samples, continued from the CRC-32 of the header bytes and the tile's
    number in the stream.

    Tiles are checked this way so that the header is covered too: no changed header field can
    pass as a valid stream, even one (like the tile size of a one-tile image) that would not
    change the pixels; nor can tiles of the same size trade places (every tile's CRC is right for
    its own pixels, so without its number a swap would pass).
    """
    start = zlib.crc32(struct.pack("<I", number), zlib.crc32(header.to_bytes()))
    dtype = "<u2" if header.sample_bits == 16 else np.uint8
    return zlib.crc32(np.ascontiguousarray(pixels, dtype=dtype).tobytes(), start) & 0xFFFFFFFF


def varint(n: int) -> bytes:
    """``n`` as an unsigned LEB128 varint."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, pos: int, what: str, max_bytes: int = 5) -> tuple[int, int]:
    """(value, position after it) of a canonical varint; DecodeError naming ``what`` otherwise."""
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


def pack(header: Header, tiles: list[TileData], metadata: bytes = b"") -> bytes:
    if len(tiles) != header.n_tiles * header.n_frames:
        raise ValueError(f"{len(tiles)} tiles for a header with {header.n_frames} x {header.n_tiles}")
    if bool(metadata) != header.has_metadata:
        raise ValueError("the header's metadata flag does not match the metadata given")
    meta = varint(len(metadata)) + metadata if metadata else b""
    if any((t.crc32 is None) != (t.kind == KIND_CHECKED_BY_STATE) for t in tiles):
        raise ValueError(f"a tile's checksum is stored unless its kind is {KIND_CHECKED_BY_STATE}, and only then")
    bodies = [bytes([t.kind]) + (b"" if t.crc32 is None else struct.pack("<I", t.crc32)) + t.payload for t in tiles]
    index = b"".join(varint(len(b)) for b in bodies[:-1])
    return header.to_bytes() + meta + index + b"".join(bodies)


def read_header(data: bytes) -> tuple[Header, int]:
    """The header (frame table included) and the offset just past it; DecodeError for anything
    malformed."""
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
    width, pos = read_varint(data, 5, "width", 3)
    height, pos = read_varint(data, pos, "height", 3)
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise DecodeError(f"invalid image size {width}x{height}")
    if pos >= len(data):
        raise DecodeError("truncated stream (in the header)")
    flags, pos = data[pos], pos + 1
    if flags & ~(_ANIMATION | _METADATA | _DEFAULT_IMAGE | _TILED) or (flags & _DEFAULT_IMAGE and not flags & _ANIMATION):
        raise DecodeError(f"malformed stream (unknown header flags {flags:#04x})")
    tile_side = one_tile_side(width, height)
    if flags & _TILED:
        units, pos = read_varint(data, pos, "tile size", 2)
        tile_side = units * TILE_UNIT
        if not (1 <= units <= MAX_TILE // TILE_UNIT and tile_side < max(width, height)):
            raise DecodeError(f"invalid tile size {tile_side}")
    elif tile_side > MAX_TILE:
        raise DecodeError(f"invalid image size {width}x{height} for one tile")
    animation = None
    if flags & _ANIMATION:
        count, pos = read_varint(data, pos, "frame count", 3)
        if not 2 <= count <= MAX_FRAMES:
            raise DecodeError(f"invalid frame count {count}")
        if len(data) - pos < 2 * count:
            raise DecodeError(f"truncated stream ({count} frames cannot fit)")
        plays, pos = read_varint(data, pos, "play count", 3)
        frames = []
        for _ in range(count):
            duration, pos = read_varint(data, pos, "frame duration", 5)
            if pos >= len(data):
                raise DecodeError("truncated stream (in the frame table)")
            disposal, pos = data[pos], pos + 1
            frames.append(FrameInfo(_minus_one(duration), None if disposal == NO_DISPOSAL else disposal))
        animation = Animation(tuple(frames), _minus_one(plays), bool(flags & _DEFAULT_IMAGE))
    header = Header(MODES[mode_code], width, height, fp, tile_side, animation, bool(flags & _METADATA))
    return header, pos


def unpack(data: bytes, max_pixels: int | None = MAX_PIXELS) -> Stream:
    """Parse a whole stream into its header, metadata chunk and tiles; DecodeError for anything
    malformed.

    Cheap checks come first: the declared size against ``max_pixels`` and the tile count
    against the bytes actually present, so no forged size makes the decoder allocate.
    """
    header, pos = read_header(data)
    data = bytes(data)
    if max_pixels is not None and header.width * header.height * header.n_frames > max_pixels:
        raise DecodeError(f"image too large to decode ({header.n_frames} x {header.width}x{header.height} "
                          f"> max_pixels={max_pixels})")
    metadata = b""
    if header.has_metadata:
        length, pos = read_varint(data, pos, "metadata length")
        if length == 0 or pos + length > len(data):
            raise DecodeError("truncated stream (in the metadata chunk)")
        metadata, pos = data[pos : pos + length], pos + length
    n = header.n_tiles * header.n_frames
    if n * MIN_TILE_BYTES > len(data) - pos:
        raise DecodeError(f"truncated stream ({n} tiles cannot fit in {len(data) - pos} bytes)")
    lengths = []
    for _ in range(n - 1):
        length, pos = read_varint(data, pos, "tile index")
        if length < MIN_TILE_BYTES:
            raise DecodeError("malformed stream (a tile shorter than its checksum and kind)")
        lengths.append(length)
    rest = len(data) - pos - sum(lengths)  # what the last tile has
    if rest < MIN_TILE_BYTES:
        raise DecodeError("truncated stream (tile data does not match the tile index)")
    lengths.append(rest)
    tiles = []
    for length in lengths:
        kind = data[pos]
        if kind == KIND_CHECKED_BY_STATE:
            tiles.append(TileData(kind, None, data[pos + 1 : pos + length]))
        else:
            (crc,) = struct.unpack_from("<I", data, pos + 1)
            tiles.append(TileData(kind, crc, data[pos + 1 + CHECKSUM_BYTES : pos + length]))
        pos += length
    return Stream(header, metadata, tiles)


def overhead_bytes(data: bytes) -> int:
    """Bytes of a stream that are not tile payloads: header, metadata, tile index, checksums stored
    beside payloads, kinds."""
    stream = unpack(data, None)
    return len(data) - sum(len(t.payload) for t in stream.tiles)
