"""The stream container: a compact header, then the ANS words.

Byte layout (format version 1), all integers little-endian::

    offset  size  field
    0       2     magic b"IC"
    2       1     high nibble: format version (1); low nibble: image mode
                  (0 L, 1 LA, 2 RGB, 3 RGBA)
    3       2     model fingerprint (uint16; see icnn_codec.zoo.fingerprint)
    5       1-5   width, unsigned LEB128 varint
    .       1-5   height, unsigned LEB128 varint
    .       4     CRC-32 (zlib) of the decoded pixels: H x W x C uint8, row-major
    .       4n    ANS compressed words (uint32), as constriction's AnsCoder emits them

A 32x32 image has an 11-byte header.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import DecodeError

MAGIC = b"IC"
FORMAT_VERSION = 1
MODES = ("L", "LA", "RGB", "RGBA")
CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
MAX_SIDE = 2**20


@dataclass(frozen=True)
class Header:
    mode: str
    width: int
    height: int
    model_fingerprint: int
    crc32: int
    version: int = FORMAT_VERSION

    @property
    def channels(self) -> int:
        return CHANNELS[self.mode]

    def to_bytes(self) -> bytes:
        return (
            MAGIC
            + bytes([(self.version << 4) | MODES.index(self.mode)])
            + struct.pack("<H", self.model_fingerprint)
            + _varint(self.width)
            + _varint(self.height)
            + struct.pack("<I", self.crc32)
        )


def pixel_checksum(pixels: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(5):
        if pos + i >= len(data):
            raise DecodeError("truncated header")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i and byte == 0:
                raise DecodeError("malformed header (non-canonical size)")
            return value, pos + i + 1
    raise DecodeError("malformed header (size too long)")


def pack(header: Header, words: np.ndarray) -> bytes:
    return header.to_bytes() + np.asarray(words, dtype="<u4").tobytes()


def unpack(data: bytes) -> tuple[Header, np.ndarray]:
    """Parse a stream; raise DecodeError for anything that is not a well-formed one."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 3 or data[:2] != MAGIC:
        raise DecodeError("not an icnn stream (bad magic)")
    version, mode_code = data[2] >> 4, data[2] & 0x0F
    if version != FORMAT_VERSION:
        raise DecodeError(f"unsupported format version {version} (this codec reads version {FORMAT_VERSION})")
    if mode_code >= len(MODES):
        raise DecodeError(f"invalid image mode code {mode_code}")
    if len(data) < 5:
        raise DecodeError("truncated header")
    (fp,) = struct.unpack_from("<H", data, 3)
    width, pos = _read_varint(data, 5)
    height, pos = _read_varint(data, pos)
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise DecodeError(f"invalid image size {width}x{height}")
    if len(data) < pos + 4:
        raise DecodeError("truncated header")
    (crc,) = struct.unpack_from("<I", data, pos)
    payload = data[pos + 4 :]
    if len(payload) == 0 or len(payload) % 4:
        raise DecodeError("truncated stream (payload is not whole 32-bit words)")
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    return Header(MODES[mode_code], width, height, fp, crc, version), words
