"""Image files in and out: every frame, the metadata we keep, 16-bit grey samples.

The codec codes pixels; this module is the file side around it. :func:`read_image` turns a file's
bytes into an :class:`ImageDocument`: every frame as Pillow presents it when seeking (the composited
full-canvas frame of a GIF, APNG or animated WebP, each page of a TIFF), in one of the codec's modes
(8-bit L, LA, RGB, RGBA, or 16-bit grey), with frame timing, loop count and the file's
:class:`Metadata` (ICC profile, EXIF, XMP, PNG text, resolution, and a PNG's other ancillary chunks:
gamma, chromaticities, sRGB intent, cICP, significant bits, background and any private chunk). A file whose samples are deeper
than what Pillow hands us (a 16-bit RGB PNG, say, which Pillow reduces to 8 bits) is refused: bits
are never dropped silently. :func:`write_image` writes a document in a Pillow format, reads the
bytes back and compares: pixels the format cannot hold exactly are an error, metadata and timing it
cannot hold are listed in :attr:`WrittenImage.dropped` for the caller to warn about.

Imports only numpy, Pillow and the standard library (and the package's exceptions).
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .container import read_varint, varint
from .errors import DecodeError, IcnnError, OptionError, UnsupportedImageError

METADATA_VERSION = 1
MAX_METADATA_BYTES = 64 << 20  # inflated; a guard against deflate bombs in a forged stream
DEFAULT_MAX_PIXELS = 1 << 28  # all frames together, like the container's guard on a stream's size

MODES = ("L", "LA", "RGB", "RGBA", "I;16")  # what a document's frames hold; I;16 is 16-bit grey (uint16)
COMMENT_KEY = "Comment"  # the PNG keyword a GIF (or JPEG) comment is kept under
XMP_PNG_KEY = "XML:com.adobe.xmp"  # the iTXt keyword PNG uses for XMP
EXIF_PREFIX = b"Exif\x00\x00"

_ICC, _EXIF, _XMP, _DPI, _TEXT, _PNG_CHUNK = 1, 2, 3, 4, 5, 6  # item tags of the metadata serialisation
_PALETTE_FORMATS = ("GIF",)  # read back as palette images, so any mode may come back wider
_LOSSY_FORMATS = ("JPEG", "MPO", "JPEG2000", "AVIF", "HEIF")
_EXIF_IFDS = (0x8769, 0x8825)  # the Exif and GPS sub-IFDs, kept with IFD0
_EXIF_THUMBNAIL_IFD = 1
# TIFF tags that describe the file's layout, not the picture: never EXIF, never copied into a TIFF we
# write (they would clobber the writer's own). Resolution is Metadata.dpi.
_TIFF_LAYOUT_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 282, 283, 284, 296, 297,
    317, 320, 322, 323, 324, 325, 330, 338, 339, 340, 341, 347, 513, 514, 529, 530, 531, 532, 700, 34675,
    0xA005,
})
# Raw modes that unpack more than 8 bits a sample ("BGR;16" without a byte order is 5-6-5 packed).
_DEEP_RAWMODE = re.compile(r";(16[BLNR]|32)|^L;16$|^I;16")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_GIF_ICC_APP, _GIF_XMP_APP = b"ICCRGBG1012", b"XMP DataXMP"  # application extension ids (with auth code)
_XMP_MAGIC_TRAILER = bytes([1, *range(255, -1, -1)])  # follows XMP in a GIF, so block walkers skip it
_PNG_COLOUR_TYPES = {2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}
# PNG chunks a document holds in its own fields (pixels, frames, ICC, resolution, EXIF): every other
# ancillary chunk is kept as it is, in :attr:`Metadata.png_chunks`.
_PNG_CHUNKS_HELD = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"iCCP", b"pHYs", b"eXIf", b"acTL",
                              b"fcTL", b"fdAT"})
_PNG_TEXT = frozenset({b"tEXt", b"zTXt", b"iTXt"})  # held as Metadata.text, unless text cannot hold them as they are
_PNG_PALETTE_ONLY = frozenset({b"hIST"})  # describes the palette, which a document does not keep
_MODE_CHANNELS = {"L": "g", "I;16": "g", "LA": "ga", "RGB": "rgb", "RGBA": "rgba"}
_PNG_TYPE_CHANNELS = {0: "g", 2: "rgb", 3: "rgb", 4: "ga", 6: "rgba"}


class PngChunk(NamedTuple):
    """An ancillary PNG chunk kept as it is: its four-letter type, its data, and whether it came after the
    image data (chunks before it describe how to show the pixels, so they are written back before it)."""

    kind: str
    data: bytes
    after_image: bool = False


@dataclass
class Metadata:
    """What a file says about its pixels, kept alongside them: each item None (or empty) when absent."""

    icc: bytes | None = None  # the ICC profile
    exif: bytes | None = None  # TIFF-structured EXIF, without the "Exif\0\0" prefix some formats add
    xmp: bytes | None = None  # the XMP packet
    text: dict[str, str] = field(default_factory=dict)  # PNG tEXt/zTXt/iTXt (and GIF comments), file order
    dpi: tuple[float, float] | None = None  # horizontal, vertical
    png_chunks: list[PngChunk] = field(default_factory=list)  # a PNG's other ancillary chunks, file order

    @property
    def is_empty(self) -> bool:
        return not (self.icc or self.exif or self.xmp or self.text or self.dpi or self.png_chunks)

    def to_bytes(self) -> bytes:
        """Version byte, raw-deflated items (tag byte, varint length, payload), CRC-32 of all before it."""
        items = [(_ICC, self.icc), (_EXIF, self.exif), (_XMP, self.xmp)]
        if self.dpi is not None:
            items.append((_DPI, struct.pack(">dd", *_checked_dpi(self.dpi))))
        for key, value in self.text.items():
            encoded_key = str(key).encode("utf-8")
            items.append((_TEXT, varint(len(encoded_key)) + encoded_key + str(value).encode("utf-8")))
        for chunk in self.png_chunks:
            items.append((_PNG_CHUNK, bytes([bool(chunk.after_image)]) + _png_chunk_type(chunk.kind) + chunk.data))
        payload = b"".join(bytes([tag]) + varint(len(body)) + body for tag, body in items if body is not None)
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = bytes([METADATA_VERSION]) + compressor.compress(payload) + compressor.flush()
        return body + struct.pack(">I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> Metadata:
        """Inverse of :meth:`to_bytes`; DecodeError on anything else (a flipped bit, a bomb, a future version)."""
        data = bytes(data)
        if len(data) < 6:
            raise DecodeError("metadata chunk too short")
        body, (crc,) = data[:-4], struct.unpack(">I", data[-4:])
        if zlib.crc32(body) != crc:
            raise DecodeError("metadata chunk fails its checksum")
        if body[0] != METADATA_VERSION:
            raise DecodeError(f"metadata chunk version {body[0]} is not supported (this installation reads {METADATA_VERSION})")
        inflater = zlib.decompressobj(-15)
        try:
            payload = inflater.decompress(body[1:], MAX_METADATA_BYTES + 1)
        except zlib.error as exc:
            raise DecodeError(f"metadata chunk does not inflate ({exc})") from None
        if len(payload) > MAX_METADATA_BYTES:
            raise DecodeError(f"metadata chunk inflates to more than {MAX_METADATA_BYTES:,} bytes")
        if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
            raise DecodeError("metadata chunk is truncated or has trailing bytes")
        return cls._from_payload(payload)

    @classmethod
    def _from_payload(cls, payload: bytes) -> Metadata:
        meta = cls()
        seen: set[int] = set()
        pos = 0
        while pos < len(payload):
            tag = payload[pos]
            length, pos = read_varint(payload, pos + 1, "metadata item length")
            body, pos = payload[pos:pos + length], pos + length
            if len(body) != length:
                raise DecodeError("metadata item runs past the chunk's end")
            if tag == _TEXT:
                key_length, start = read_varint(body, 0, "metadata text key length")
                if start + key_length > len(body):
                    raise DecodeError("metadata text key runs past its item")
                key, value = _utf8(body[start:start + key_length]), _utf8(body[start + key_length:])
                if not key or key in meta.text:
                    raise DecodeError(f"metadata text key {key!r} is empty or repeated")
                meta.text[key] = value
                continue
            if tag == _PNG_CHUNK:
                if len(body) < 5 or body[0] > 1 or not _is_ancillary_chunk_type(body[1:5]):
                    raise DecodeError("metadata PNG chunk has no valid ancillary type")
                meta.png_chunks.append(PngChunk(body[1:5].decode("ascii"), body[5:], bool(body[0])))
                continue
            if tag in seen:
                raise DecodeError(f"metadata item {tag} repeated")
            seen.add(tag)
            if tag == _ICC:
                meta.icc = body
            elif tag == _EXIF:
                meta.exif = body
            elif tag == _XMP:
                meta.xmp = body
            elif tag == _DPI:
                try:
                    meta.dpi = _checked_dpi(struct.unpack(">dd", body))
                except (struct.error, UnsupportedImageError) as exc:
                    raise DecodeError(f"metadata resolution is not two positive numbers ({exc})") from None
            else:
                raise DecodeError(f"unknown metadata item {tag} (length {length})")
        for chunk in meta.png_chunks:
            if _held_by_document(chunk.kind.encode("ascii"), meta):
                raise DecodeError(f"metadata PNG chunk {chunk.kind} repeats what the metadata holds itself")
        return meta

    def summary(self) -> list[str]:
        """One line per item, for ``icnn info``."""
        lines = []
        if self.icc:
            description = _icc_description(self.icc)
            lines.append(f"ICC profile: {len(self.icc):,} bytes" + (f" ({description})" if description else ""))
        if self.exif:
            orientation = exif_orientation(self.exif)
            lines.append(f"EXIF: {len(self.exif):,} bytes" + (f", orientation {orientation}" if orientation else ""))
        if self.xmp:
            lines.append(f"XMP: {len(self.xmp):,} bytes")
        if self.dpi:
            lines.append(f"Resolution: {self.dpi[0]:g} x {self.dpi[1]:g} dpi")
        for key, value in self.text.items():
            shown = value if len(value) <= 60 else value[:57] + "..."
            lines.append(f"Text {key!r}: {shown!r}" + (f" ({len(value):,} characters)" if len(value) > 60 else ""))
        if self.png_chunks:
            lines.append("PNG chunks: " + ", ".join(f"{c.kind} ({len(c.data):,} byte{'s' * (len(c.data) != 1)})"
                                                   for c in self.png_chunks))
        return lines


@dataclass
class Frame:
    """One frame (or page): the full canvas as shown, H x W (L, 16-bit grey) or H x W x C, uint8 or uint16."""

    pixels: np.ndarray
    duration_ms: int | None = None  # how long it shows; None in a still image or a format without timing
    disposal: int | None = None  # the source's disposal method (APNG 0-2, GIF 0-3), as Pillow reports it
    blend: int | None = None  # APNG blend op (0 source, 1 over)

    @property
    def mode(self) -> str:
        return mode_of(self.pixels)


@dataclass
class ImageDocument:
    """Everything of an image file that we keep: its frames, in one mode, and its metadata."""

    frames: list[Frame]
    loop: int | None = None  # how many times the animation plays, 0 forever; None for a still image
    metadata: Metadata = field(default_factory=Metadata)
    format: str | None = None  # Pillow's name of the source format (PNG, GIF, WEBP, TIFF, ...)
    # APNG: frames[0] is the still image shown where APNG is not understood, not a frame of the animation
    default_image: bool = False

    @property
    def mode(self) -> str:
        return self.frames[0].mode


@dataclass
class WrittenImage:
    """An encoded file, and what of the document it could not keep (one line each, for a warning)."""

    data: bytes
    dropped: list[str]


def mode_of(pixels: np.ndarray) -> str:
    """The document mode (one of :data:`MODES`) of a frame's pixel array."""
    if pixels.dtype == np.uint16 and pixels.ndim == 2:
        return "I;16"
    if pixels.dtype == np.uint8 and pixels.ndim == 2:
        return "L"
    if pixels.dtype == np.uint8 and pixels.ndim == 3 and 2 <= pixels.shape[2] <= 4:
        return ("LA", "RGB", "RGBA")[pixels.shape[2] - 2]
    raise UnsupportedImageError(f"unsupported pixel array {pixels.dtype} {pixels.shape} (uint8 H x W [x 2..4] or uint16 H x W)")


def exif_orientation(exif: bytes) -> int | None:
    """The EXIF orientation tag (1-8), or None when absent or unreadable."""
    try:
        value = _load_exif(exif).get(0x0112)
    except Exception:  # Pillow's EXIF parser raises many kinds on bad bytes; for a summary, unreadable is absent
        return None
    return value if isinstance(value, int) else None


# --- reading ---------------------------------------------------------------------------------------


def read_image(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageDocument:
    """Every frame and the metadata of an image file Pillow reads; UnsupportedImageError if any of it
    cannot be kept exactly (a mode the codec lacks, samples deeper than Pillow gives, a file it cannot read).

    ``max_pixels`` bounds the pixels of all frames together (None: no bound) before each is decoded;
    Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) applies to each frame as well.
    """
    _refuse_deep_png(data)
    try:
        with Image.open(io.BytesIO(data)) as im:
            doc = _read_document(im, max_pixels)
    except (IcnnError, Image.DecompressionBombError):
        raise
    except (OSError, SyntaxError, ValueError, TypeError, EOFError, struct.error, zlib.error, IndexError, KeyError) as exc:
        # Pillow reports a bad file with any of these; one kind, one line, for the caller
        if isinstance(exc, UnidentifiedImageError):
            raise UnsupportedImageError("not an image file Pillow can read") from exc
        raise UnsupportedImageError(f"cannot read the image file: {exc}") from exc
    if doc.format == "GIF":
        icc, xmp = _gif_icc_and_xmp(data)
        doc.metadata.icc, doc.metadata.xmp = doc.metadata.icc or icc, doc.metadata.xmp or xmp
    if doc.format == "PNG":
        doc.metadata.png_chunks, texts = _png_chunks(data, doc.mode, doc.metadata)
        for key in texts:  # kept as their chunks, every one of them
            doc.metadata.text.pop(key, None)
    return doc


def _png_chunks(data: bytes, mode: str, meta: Metadata) -> tuple[list[PngChunk], set[str]]:
    """A PNG's ancillary chunks that Pillow does not read into the document (``meta``), which Pillow would
    drop, and the text keywords those chunks hold instead of ``meta.text``. The two chunks whose layout
    follows the colour type (background, significant bits) are put in the document mode's layout: a
    palette PNG becomes RGB or RGBA, a transparent grey or RGB one gains alpha, 1, 2 and 4-bit grey
    become 8-bit. An unknown critical chunk is refused, as the PNG standard asks."""
    listed = _png_chunk_list(data)
    keywords = [body.partition(b"\0")[0] for kind, body in listed if kind in _PNG_TEXT]
    repeated = {k for k in keywords if keywords.count(k) > 1}
    chunks, texts, palette, seen_image = [], set(), b"", False
    depth, colour_type = 8, None
    for kind, body in listed:
        if kind == b"IHDR" and len(body) == 13:
            depth, colour_type = body[8], body[9]
        elif kind == b"PLTE":
            palette = body
        elif kind in (b"IDAT", b"fdAT"):
            seen_image = True
        if kind in _PNG_TEXT:
            if _text_held(kind, body, meta, repeated):
                continue
            texts.add(body.partition(b"\0")[0].decode("latin-1"))
        elif _held_by_document(kind, meta):
            continue
        if not _is_ancillary_chunk_type(kind):
            raise UnsupportedImageError(f"PNG with an unknown critical chunk {kind.decode('latin-1')!r}: it may change what the pixels mean")
        if kind == b"bKGD":
            body = _background_in_mode(body, colour_type, depth, palette)
        elif kind == b"sBIT":
            body = _significant_bits_in_mode(body, colour_type, mode)
        chunks.append(PngChunk(kind.decode("ascii"), bytes(body), seen_image))
    return chunks, texts


def _png_chunk_list(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk of a PNG up to IEND; a truncated last chunk is left out (Pillow read
    the pixels before it)."""
    listed, pos = [], 8
    while pos + 12 <= len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        if pos + 12 + length > len(data):
            break
        listed.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            break
    return listed


def _text_held(kind: bytes, body: bytes, meta: Metadata, repeated: set[bytes]) -> bool:
    """Whether ``meta`` holds a text chunk as it is: Pillow read it into the text (or the XMP), no other
    text chunk has its keyword, and an iTXt has no language tag or translated keyword, which the text
    has no room for."""
    keyword, _, rest = body.partition(b"\0")
    key = keyword.decode("latin-1")
    if key == XMP_PNG_KEY:
        return meta.xmp is not None
    if keyword in repeated:
        return False
    if kind == b"iTXt":
        language_and_translation = rest[2:].split(b"\0", 2)
        if len(language_and_translation) < 3 or any(language_and_translation[:2]):
            return False
    return key in meta.text


def _background_in_mode(body: bytes, colour_type: int | None, depth: int, palette: bytes) -> bytes:
    """A bKGD chunk's colour as the document mode's PNG holds it (16-bit samples: grey, or R, G, B, at the
    document's depth); a chunk that does not fit its own file stays as it was."""
    if colour_type == 3 and len(body) == 1 and 3 * body[0] + 3 <= len(palette):
        return struct.pack(">HHH", *palette[3 * body[0]:3 * body[0] + 3])
    if colour_type == 0 and depth < 8 and len(body) == 2:  # Pillow scales 1, 2 and 4-bit grey to 8 bits
        return struct.pack(">H", min(255, struct.unpack(">H", body)[0] * 255 // (2**depth - 1)))
    return body


def _significant_bits_in_mode(body: bytes, colour_type: int | None, mode: str) -> bytes:
    """An sBIT chunk's bits per channel, for the channels of the document mode (alpha the PNG did not
    have is its transparency, exact at full depth); a chunk that does not fit its own file stays as it was."""
    source = _PNG_TYPE_CHANNELS.get(colour_type)
    if source is None or len(body) != len(source):
        return body
    bits = dict(zip(source, body))
    if source[0] == "g":
        bits.update(r=bits["g"], b=bits["g"])
    full = 16 if mode == "I;16" else 8
    return bytes(bits.get(c, full) for c in _MODE_CHANNELS[mode])


def _is_png_chunk_type(kind: bytes) -> bool:
    return len(kind) == 4 and all(65 <= c <= 90 or 97 <= c <= 122 for c in kind)


def _is_ancillary_chunk_type(kind: bytes) -> bool:
    """Four ASCII letters, the first lower-case: a chunk a decoder may ignore."""
    return _is_png_chunk_type(kind) and 97 <= kind[0] <= 122


def _held_by_document(kind: bytes, meta: Metadata) -> bool:
    """Whether the document holds what a chunk of this type says in its own fields. A resolution in
    another unit than the metre, or a profile Pillow could not inflate, is not: kept as a chunk."""
    if kind == b"pHYs":
        return meta.dpi is not None
    if kind == b"iCCP":
        return meta.icc is not None
    return kind in _PNG_CHUNKS_HELD


def _png_chunk_type(kind: str) -> bytes:
    encoded = kind.encode("ascii", "replace")
    if not _is_ancillary_chunk_type(encoded):
        raise UnsupportedImageError(f"{kind!r} is not an ancillary PNG chunk type (four ASCII letters, the first lower-case)")
    return encoded


def _gif_icc_and_xmp(data: bytes) -> tuple[bytes | None, bytes | None]:
    """The ICC profile and XMP packet of a GIF's application extensions (the first of each), which
    Pillow does not read: a walk over the GIF's blocks; a malformed file just yields what came before."""
    icc = xmp = None
    try:
        pos = 13 + ((3 << ((data[10] & 7) + 1)) if data[10] & 0x80 else 0)  # header, screen, global colours
        while data[pos] != 0x3B:  # the trailer
            if data[pos] == 0x2C:  # an image: descriptor, local colours, LZW code size, then its data blocks
                packed = data[pos + 9]
                pos += 11 + ((3 << ((packed & 7) + 1)) if packed & 0x80 else 0)
            elif data[pos] == 0x21 and data[pos + 1] == 0xFF and data[pos + 2] == 11:
                app, pos = data[pos + 3:pos + 14], pos + 14
                if app == _GIF_XMP_APP:  # the packet's bytes are the data, not length-prefixed blocks
                    end = data.find(_XMP_MAGIC_TRAILER, pos)
                    if end < 0:
                        break
                    xmp, pos = xmp or data[pos:end], end + len(_XMP_MAGIC_TRAILER)
                elif app == _GIF_ICC_APP:
                    profile, pos = _gif_blocks(data, pos)
                    icc = icc or profile
                    continue
            elif data[pos] == 0x21:  # any other extension: label, then data blocks
                pos += 2
            else:
                break
            _, pos = _gif_blocks(data, pos)
    except IndexError:
        pass
    return icc or None, xmp or None


def _with_gif_icc_and_xmp(gif: bytes, icc: bytes | None, xmp: bytes | None) -> bytes:
    """A GIF from Pillow's writer, which writes neither, with the ICC profile and XMP packet as
    application extensions after the global colour table (before any image, so they apply to all)."""
    extensions = b""
    if icc:
        extensions += b"\x21\xff\x0b" + _GIF_ICC_APP + b"".join(
            bytes([len(icc[i:i + 255])]) + icc[i:i + 255] for i in range(0, len(icc), 255)) + b"\0"
    if xmp:
        extensions += b"\x21\xff\x0b" + _GIF_XMP_APP + xmp + _XMP_MAGIC_TRAILER + b"\0"
    start = 13 + ((3 << ((gif[10] & 7) + 1)) if gif[10] & 0x80 else 0)
    return gif[:start] + extensions + gif[start:]


def _gif_blocks(data: bytes, pos: int) -> tuple[bytes, int]:
    """The joined data sub-blocks at ``pos`` and the position after their terminator."""
    parts = []
    while data[pos]:
        parts.append(data[pos + 1:pos + 1 + data[pos]])
        pos += 1 + data[pos]
    return b"".join(parts), pos + 1


def _refuse_deep_png(data: bytes) -> None:
    """Pillow reads 16-bit RGB, RGBA and grey+alpha PNGs as 8 bits a sample: refuse before it does."""
    if data[:8] == _PNG_MAGIC and data[12:16] == b"IHDR" and len(data) >= 26 and data[24] == 16 and data[25] != 0:
        kind = _PNG_COLOUR_TYPES.get(data[25], f"colour type {data[25]}")
        raise UnsupportedImageError(f"16-bit {kind} PNG: only 16-bit grey is supported (Pillow would keep 8 of the 16 bits)")


def _read_document(im: Image.Image, max_pixels: int | None) -> ImageDocument:
    n_frames = getattr(im, "n_frames", 1)
    frames, pixel_total, metadata = [], 0, Metadata()
    for index in range(n_frames):
        im.seek(index)
        pixel_total += im.width * im.height
        if max_pixels is not None and pixel_total > max_pixels:
            raise UnsupportedImageError(f"{n_frames} frame(s) of {im.width}x{im.height}: more than {max_pixels:,} pixels in all")
        rawmode = _tile_rawmode(im)  # how the file's samples unpack; loading clears it
        _refuse_deep_samples(im, rawmode)
        im.load()
        if index == 0:
            metadata = _read_metadata(im)  # the first frame's: a TIFF's later pages have their own tags
        animated = n_frames > 1
        frames.append(Frame(
            pixels=_frame_pixels(im, rawmode),
            duration_ms=_rounded(im.info.get("duration")) if animated else None,
            disposal=_disposal(im) if animated else None,
            blend=im.info.get("blend") if animated else None,
        ))
    if im.format == "PNG":  # chunks may follow the image data: read them once all is loaded
        trailing = _read_metadata(im)
        metadata = replace(metadata, **{name: getattr(metadata, name) or getattr(trailing, name) for name in ("icc", "exif", "xmp", "dpi")})
        metadata.text = _png_text(im)
    mode = _common_mode([frame.mode for frame in frames])
    if im.format == "WEBP" and mode == "RGBA" and all((frame.pixels[:, :, 3] == 255).all() for frame in frames):
        # libwebp flags alpha on an animation whose frames are all opaque (its sub-frames are not), and
        # writes an opaque RGBA image as RGB: in WebP, an opaque alpha plane is no information
        mode = "RGB"
        for frame in frames:
            frame.pixels = np.ascontiguousarray(frame.pixels[:, :, :3])
    for frame in frames:
        frame.pixels = _widen(frame.pixels, mode)
    default_image = im.format == "PNG" and n_frames > 1 and bool(getattr(im, "default_image", False))
    return ImageDocument(frames=frames, loop=_plays(im, n_frames), metadata=metadata, format=im.format,
                         default_image=default_image)


def _refuse_deep_samples(im: Image.Image, rawmode: str | None) -> None:
    """Refuse a frame Pillow would unpack from more than 8 bits a sample into an 8-bit mode."""
    if im.mode in _SIXTEEN_BIT_MODES or im.mode == "I":
        return  # kept at 16 bits (or refused by mode)
    bits = im.tag_v2.get(258, ()) if hasattr(im, "tag_v2") else ()  # TIFF BitsPerSample
    bits = bits if isinstance(bits, tuple) else (bits,)
    if (rawmode and _DEEP_RAWMODE.search(rawmode)) or any(isinstance(b, int) and b > 8 for b in bits):
        raise UnsupportedImageError(f"{im.format} with {max(bits, default=16)}-bit samples read as {im.mode}: "
                                    "only 8-bit and 16-bit grey images are supported")


def _tile_rawmode(im: Image.Image) -> str | None:
    if not im.tile:
        return None
    args = im.tile[0].args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return args if isinstance(args, str) else None


def _frame_pixels(im: Image.Image, rawmode: str | None) -> np.ndarray:
    """The loaded frame in a document mode: palette to RGB/RGBA, 1-bit to L, a transparent colour to alpha."""
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        if "transparency" in im.info:
            raise UnsupportedImageError("16-bit grey with a transparent grey level is not supported")
        pixels = np.asarray(im)
        if mode == "I" and not ((rawmode or "").startswith("I;16") and 0 <= pixels.min() and pixels.max() <= 0xFFFF):
            raise UnsupportedImageError("32-bit or signed integer samples are not supported (16-bit grey is)")
        return pixels.astype(np.uint16)  # native byte order, whatever the file's
    transparent = "transparency" in im.info
    target = {
        "1": "LA" if transparent else "L",
        "L": "LA" if transparent else "L",
        "P": "RGBA" if transparent else "RGB",
        "RGB": "RGBA" if transparent else "RGB",
        "PA": "RGBA",
        "RGBX": "RGB",  # X is padding
        "LA": "LA",
        "RGBA": "RGBA",
    }.get(mode)
    if target is None:
        raise UnsupportedImageError(f"unsupported image mode {mode!r} (8-bit L, LA, RGB, RGBA, palette and 16-bit grey are supported)")
    return np.asarray(im if mode == target else im.convert(target))


def _common_mode(modes: list[str]) -> str:
    """The narrowest mode every frame widens to exactly (L < LA, RGB < RGBA); 16-bit grey mixes with nothing."""
    if "I;16" in modes:
        if any(mode != "I;16" for mode in modes):
            raise UnsupportedImageError("frames mix 16-bit grey with 8-bit samples")
        return "I;16"
    colour = any(mode in ("RGB", "RGBA") for mode in modes)
    alpha = any(mode in ("LA", "RGBA") for mode in modes)
    return ("RGBA" if alpha else "RGB") if colour else ("LA" if alpha else "L")


def _widen(pixels: np.ndarray, mode: str) -> np.ndarray:
    """Pixels in a wider mode (grey repeated to RGB, an opaque alpha added): an exact, invertible map."""
    have = mode_of(pixels)
    if have == mode:
        return pixels
    if _common_mode([have, mode]) != mode:
        raise UnsupportedImageError(f"cannot widen {have} pixels to {mode}")
    planes = pixels[:, :, None] if pixels.ndim == 2 else pixels
    has_alpha = have in ("LA", "RGBA")
    colour = planes[:, :, :-1] if has_alpha else planes
    alpha = planes[:, :, -1:] if has_alpha else np.full(colour.shape[:2] + (1,), 255, np.uint8)
    if mode in ("RGB", "RGBA") and colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    return np.concatenate([colour, alpha] if mode in ("LA", "RGBA") else [colour], axis=2)


def _rounded(duration) -> int | None:
    # APNG delays are fractions of a second; Pillow writes whole milliseconds, so that is what we keep
    return None if duration is None else int(round(float(duration)))


def _disposal(im: Image.Image) -> int | None:
    if im.format == "GIF":
        return getattr(im, "disposal_method", None)
    return im.info.get("disposal")


def _plays(im: Image.Image, n_frames: int) -> int | None:
    """How many times the animation plays (0: forever). A GIF without a loop extension plays once; its
    NETSCAPE count says how many times it repeats after the first play (Pillow's reading)."""
    if n_frames < 2:
        return None
    loop = im.info.get("loop")
    if im.format == "GIF":
        return 1 if loop is None else 0 if loop == 0 else loop + 1
    return loop if isinstance(loop, int) else None


def _read_metadata(im: Image.Image) -> Metadata:
    info = im.info
    meta = Metadata(icc=info.get("icc_profile") or None, dpi=_positive_dpi(info.get("dpi")))
    xmp = info.get("xmp")
    meta.xmp = (xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)) if xmp else None
    if im.format == "TIFF":
        meta.exif = _tiff_exif(im)
        meta.dpi = _tiff_dpi(im)
    elif info.get("exif"):
        exif = bytes(info["exif"])
        meta.exif = exif[len(EXIF_PREFIX):] if exif.startswith(EXIF_PREFIX) else exif
    comment = info.get("comment")
    if comment and im.format != "PNG":
        meta.text[COMMENT_KEY] = comment.decode("latin-1") if isinstance(comment, bytes) else str(comment)
    return meta


def _png_text(im: Image.Image) -> dict[str, str]:
    return {key: str(value) for key, value in getattr(im, "text", {}).items() if key != XMP_PNG_KEY}


def _positive_dpi(dpi) -> tuple[float, float] | None:
    try:
        return _checked_dpi(dpi) if dpi else None
    except (UnsupportedImageError, TypeError, ValueError):
        return None  # a zero or nonsense resolution says nothing: not kept


def _checked_dpi(dpi) -> tuple[float, float]:
    x, y = (float(v) for v in dpi)
    if not (math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0):
        raise UnsupportedImageError(f"resolution {x:g} x {y:g} dpi is not positive and finite")
    return x, y


def _tiff_dpi(im: Image.Image) -> tuple[float, float] | None:
    """A TIFF's resolution, only when it has one (Pillow reports 1 x 1 dpi for a TIFF without)."""
    tags = im.tag_v2
    if 282 not in tags or 283 not in tags:
        return None
    unit = tags.get(296, 2)
    scale = {2: 1.0, 3: 2.54}.get(unit)  # inch, centimetre; 1 is an aspect ratio only
    return _positive_dpi((float(tags[282]) * scale, float(tags[283]) * scale)) if scale else None


def _tiff_exif(im: Image.Image) -> bytes | None:
    """A TIFF's picture tags (orientation, camera, dates, the Exif and GPS IFDs) as EXIF bytes."""
    exif = Image.Exif()
    for tag, value in im.tag_v2.items():
        if tag not in _TIFF_LAYOUT_TAGS and tag not in _EXIF_IFDS:
            exif[tag] = value
    source = im.getexif()
    for ifd in _EXIF_IFDS:
        if ifd in im.tag_v2 and (entries := source.get_ifd(ifd)):
            exif[ifd] = entries
    if not len(exif):
        return None
    data = exif.tobytes()
    return data[len(EXIF_PREFIX):] if data.startswith(EXIF_PREFIX) else data


# --- writing ---------------------------------------------------------------------------------------


def write_image(doc: ImageDocument, fmt: str) -> WrittenImage:
    """Encode ``doc`` losslessly as ``fmt`` (a Pillow format name: PNG, TIFF, WEBP, GIF, BMP, ...), all
    frames (PNG as APNG, WebP animated, GIF, multi-page TIFF) with timing, loop and disposal where the
    format has them and the metadata it can hold. The bytes are read back and compared: a format that
    cannot hold the frames or pixels exactly raises UnsupportedImageError; metadata or timing it cannot
    hold is listed in ``dropped``. An unknown or lossy format is an OptionError.
    """
    fmt, dropped = fmt.upper(), []
    if not doc.frames:
        raise UnsupportedImageError("an image needs at least one frame")
    mode = _common_mode([frame.mode for frame in doc.frames])  # one mode, as the formats want
    doc = replace(doc, frames=[replace(frame, pixels=_widen(frame.pixels, mode)) for frame in doc.frames])
    if doc.default_image and fmt != "PNG":
        doc = replace(doc, frames=doc.frames[1:], default_image=False)
        dropped.append(f"the APNG's default image (not a frame of the animation; {fmt} has no place for it)")
    fmt = _checked_format(fmt, len(doc.frames))
    if len({frame.pixels.shape[:2] for frame in doc.frames}) > 1 and fmt != "TIFF":
        raise UnsupportedImageError(f"{fmt} frames share one size; these differ (use TIFF)")
    images = [Image.fromarray(frame.pixels) for frame in doc.frames]
    options, save_dropped = _save_options(doc, fmt)
    dropped += save_dropped
    if len(images) > 1:
        options.update(save_all=True, append_images=images[1:])
    buffer = io.BytesIO()
    try:
        images[0].save(buffer, format=fmt, **options)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:  # Pillow (or libtiff) refusing
        raise UnsupportedImageError(f"{fmt} cannot hold this {doc.mode} image ({exc}); use PNG") from exc
    data = buffer.getvalue()
    if fmt == "GIF":
        data = _with_gif_icc_and_xmp(data, doc.metadata.icc, doc.metadata.xmp)
    if fmt == "PNG":
        chunks, chunks_dropped = _png_chunks_to_write(doc.metadata, doc.mode)
        data = _with_png_chunks(data, chunks)
        dropped += chunks_dropped
    with _no_bomb_guard():  # our own bytes, as large as the document already in memory
        try:
            back = read_image(data, max_pixels=None)
        except UnsupportedImageError:
            back = None
    expected = _as_pillow_reads(doc, fmt)
    if back is None or not _frames_held(expected, back, fmt, dropped):
        what = f"these {len(doc.frames)} {doc.mode} frames" if len(doc.frames) > 1 else f"this {doc.mode} image"
        raise UnsupportedImageError(f"{fmt} cannot hold {what} exactly; use PNG")
    dropped += _metadata_dropped(expected.metadata, back.metadata, fmt)
    if fmt == "PNG" and (lost := [c.kind for c in chunks if c not in back.metadata.png_chunks]):
        dropped.append(f"PNG chunks {', '.join(lost)} (not kept by PNG)")
    return WrittenImage(data=data, dropped=dropped)


def _checked_format(fmt: str, n_frames: int) -> str:
    Image.init()  # load every plugin, so SAVE and SAVE_ALL know them all
    fmt = fmt.upper()
    if fmt not in Image.SAVE:
        raise OptionError(f"Pillow cannot write {fmt!r} (use PNG, WEBP, TIFF, GIF, BMP, ...)")
    if fmt in _LOSSY_FORMATS:
        raise OptionError(f"refusing to write lossy {fmt}; use PNG")
    if n_frames > 1 and fmt not in Image.SAVE_ALL:
        raise UnsupportedImageError(f"{fmt} holds one frame and this image has {n_frames}; use PNG, WEBP, GIF or TIFF")
    return fmt


def _save_options(doc: ImageDocument, fmt: str) -> tuple[dict, list[str]]:
    """Pillow save options for the document's timing and metadata, and what is dropped on the way."""
    meta, options, dropped = doc.metadata, {}, []
    if doc.default_image:  # Pillow takes the first image as the default one and times the others
        options["default_image"] = True
    animation = doc.frames[1:] if doc.default_image else doc.frames
    if len(doc.frames) > 1:
        durations = [frame.duration_ms for frame in animation]
        if any(d is not None for d in durations):
            options["duration"] = [d or 0 for d in durations]
        disposals = [frame.disposal for frame in animation]
        if fmt in ("PNG", "GIF") and all(d is not None for d in disposals):
            limit = 2 if fmt == "PNG" else 3
            options["disposal"] = [d if 0 <= d <= limit else 0 for d in disposals]
        if fmt == "PNG":
            # frames are composited canvases: replacing the region (source) is exact, blending over is not
            options["blend"] = 0
        if doc.loop is not None:
            options["loop"] = _format_loop(doc.loop, fmt)
    if meta.icc:
        options["icc_profile"] = meta.icc
    if meta.dpi:
        options["dpi"] = meta.dpi
    if fmt == "WEBP":
        options.update(lossless=True, exact=True)
    if fmt == "TIFF":
        tags, tiff_dropped = _tiff_tags(meta)
        dropped += tiff_dropped
        if tags is not None:
            options["exif"] = tags
        if _tiff_deflate_available() and not (tags is not None and any(ifd in tags for ifd in _EXIF_IFDS)):
            options["compression"] = "tiff_adobe_deflate"  # libtiff, which cannot write the Exif and GPS IFDs
    else:
        if meta.exif:
            options["exif"] = meta.exif
        if meta.xmp:
            options["xmp"] = meta.xmp
    if fmt == "PNG":
        options["pnginfo"], png_dropped = _png_info(meta)
        dropped += png_dropped
    if fmt == "GIF" and COMMENT_KEY in meta.text:
        options["comment"] = meta.text[COMMENT_KEY].encode("latin-1", "replace")
    return options, dropped


def _format_loop(plays: int, fmt: str) -> int | None:
    """The Pillow ``loop`` option for a number of plays (0: forever); GIF counts repeats after the first."""
    if fmt == "GIF":
        return 0 if plays == 0 else plays - 1 if plays > 1 else None
    return plays


def _tiff_deflate_available() -> bool:
    from PIL import features

    return bool(features.check("libtiff"))


def _tiff_tags(meta: Metadata) -> tuple[Image.Exif | None, list[str]]:
    """EXIF picture tags (layout tags left out) and XMP as tag 700: Pillow's TIFF writer takes both as ``exif``."""
    tags, dropped = Image.Exif(), []
    if meta.exif:
        try:
            source = _load_exif(meta.exif)
            for tag, value in source.items():
                if tag in _EXIF_IFDS:  # the writer takes a sub-IFD from get_ifd, so it must be there
                    tags.get_ifd(tag).update(source.get_ifd(tag))
                    tags[tag] = tags.get_ifd(tag)
                elif tag not in _TIFF_LAYOUT_TAGS:
                    tags[tag] = value
        except Exception:  # Pillow's EXIF parser raises many kinds on bad bytes
            dropped.append("EXIF (unreadable, so not written into TIFF tags)")
    if meta.xmp:
        tags[700] = meta.xmp
    return (tags if len(tags) else None), dropped


def _png_info(meta: Metadata) -> tuple[PngImagePlugin.PngInfo, list[str]]:
    info, dropped = PngImagePlugin.PngInfo(), []
    for key, value in meta.text.items():
        if _png_keyword(key) and key != XMP_PNG_KEY:
            info.add_text(key, value, zip=len(value) > 1024)  # tEXt when Latin-1, else iTXt
        else:
            dropped.append(f"text {key!r} (not a valid PNG keyword)")
    if meta.xmp:
        try:
            info.add_itxt(XMP_PNG_KEY, meta.xmp.decode("utf-8"))
        except UnicodeDecodeError:
            dropped.append("XMP (not UTF-8, which PNG requires)")
    return info, dropped


def _with_png_chunks(png: bytes, chunks: list[PngChunk]) -> bytes:
    """A PNG from Pillow's writer, which writes few of them, with ``chunks``: those from before the image
    data right after the header, the others before the end."""
    def encoded(chunk: PngChunk) -> bytes:
        kind = _png_chunk_type(chunk.kind)
        return struct.pack(">I", len(chunk.data)) + kind + chunk.data + struct.pack(">I", zlib.crc32(kind + chunk.data))

    before = b"".join(encoded(c) for c in chunks if not c.after_image)
    after = b"".join(encoded(c) for c in chunks if c.after_image)
    header_end = 8 + 25  # signature, IHDR
    return png[:header_end] + before + png[header_end:-12] + after + png[-12:]


def _png_chunks_to_write(meta: Metadata, mode: str) -> tuple[list[PngChunk], list[str]]:
    """The kept chunks a PNG of ``mode`` can hold, and a line for each it cannot: a palette's histogram
    (the PNG has no palette), a background or significant bits of another colour type's layout, or
    one that would repeat what the writer writes from the document itself."""
    chunks, dropped = [], []
    sizes = {b"bKGD": 2 if _MODE_CHANNELS[mode][0] == "g" else 6, b"sBIT": len(_MODE_CHANNELS[mode])}
    for chunk in meta.png_chunks:
        kind = chunk.kind.encode("ascii", "replace")
        if kind in _PNG_PALETTE_ONLY:
            dropped.append(f"PNG {chunk.kind} chunk (it describes a palette, and the image is written without one)")
        elif kind in sizes and len(chunk.data) != sizes[kind]:
            dropped.append(f"PNG {chunk.kind} chunk (its {len(chunk.data)} bytes do not fit a PNG of mode {mode})")
        elif _held_by_document(kind, meta):
            dropped.append(f"PNG {chunk.kind} chunk (the document's own {chunk.kind} is written)")
        else:
            chunks.append(chunk)
    return chunks, dropped


def _png_keyword(key: str) -> bool:
    try:
        return 1 <= len(key.encode("latin-1")) <= 79 and "\0" not in key
    except UnicodeEncodeError:
        return False


@contextlib.contextmanager
def _no_bomb_guard() -> Iterator[None]:
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _as_pillow_reads(doc: ImageDocument, fmt: str) -> ImageDocument:
    """``doc`` as Pillow presents a file of ``fmt`` that holds it faithfully. Pillow's TIFF reader turns
    each page upright by its orientation (the EXIF tag, else XMP's) and drops the tag and XMP's
    tiff:Orientation: the file shows the same as the document, but reads back turned."""
    meta = doc.metadata
    if fmt != "TIFF" or not (meta.exif or meta.xmp):
        return doc
    frames = []
    for frame in doc.frames:
        im = Image.fromarray(frame.pixels)
        if meta.exif:
            im.info["exif"] = EXIF_PREFIX + meta.exif
        if meta.xmp:
            im.info["xmp"] = meta.xmp
        upright = ImageOps.exif_transpose(im)
        frames.append(replace(frame, pixels=np.asarray(upright).astype(frame.pixels.dtype)))
    return replace(doc, frames=frames, metadata=replace(meta, xmp=upright.info.get("xmp", meta.xmp)))


def _frames_held(doc: ImageDocument, back: ImageDocument, fmt: str, dropped: list[str]) -> bool:
    """Whether ``back`` (the written bytes, read again) shows ``doc``'s frames exactly. Timing and loop
    differences go to ``dropped``. Writers merge a frame identical to the one before into it (adding
    the durations): the animation shows the same, and that is noted too."""
    if not _mode_comes_back(doc.mode, back.mode, fmt):
        return False
    frames, durations = _merge_repeats(doc.frames) if len(back.frames) < len(doc.frames) else (doc.frames, None)
    if len(frames) != len(back.frames):
        return False
    if not all(_same_pixels(ours, theirs.pixels) for ours, theirs in zip(frames, back.frames)):
        return False
    if durations is not None:
        dropped.append(f"{len(doc.frames) - len(frames)} frame(s) repeating the one before, merged into it by the {fmt} writer")
    if len(doc.frames) > 1:
        wanted = durations or [frame.duration_ms for frame in doc.frames]
        got = [frame.duration_ms for frame in back.frames]
        if any(d is not None for d in wanted) and wanted != got:
            how = f"not kept by {fmt}" if all(d is None for d in got) else f"changed by {fmt}: {_first_change(wanted, got)}"
            dropped.append(f"frame durations ({how})")
        if doc.loop is not None and back.loop != doc.loop:
            how = f"not kept by {fmt}" if back.loop is None else f"{fmt} stores {_plays_text(back.loop)}"
            dropped.append(f"loop count ({_plays_text(doc.loop)}; {how})")
    return True


def _mode_comes_back(mode: str, back_mode: str, fmt: str) -> bool:
    """The mode read back is the document's, or narrower (a WebP of opaque RGBA reads as RGB), or, from a
    palette format, any: a grey image written as WebP would come back as RGB, not grey, and is refused."""
    try:
        wider = _common_mode([mode, back_mode])
    except UnsupportedImageError:
        return False
    return wider == mode or fmt in _PALETTE_FORMATS


def _same_pixels(frame: Frame, back: np.ndarray) -> bool:
    try:
        mode = _common_mode([frame.mode, mode_of(back)])
    except UnsupportedImageError:
        return False
    ours, theirs = _widen(frame.pixels, mode), _widen(back, mode)
    return ours.shape == theirs.shape and np.array_equal(ours, theirs)


def _merge_repeats(frames: list[Frame]) -> tuple[list[Frame], list[int | None]]:
    """Frames with each run of identical frames as one, and the run's summed durations."""
    merged: list[Frame] = []
    durations: list[int | None] = []
    for frame in frames:
        if merged and np.array_equal(merged[-1].pixels, frame.pixels):
            if frame.duration_ms is not None:
                durations[-1] = (durations[-1] or 0) + frame.duration_ms
            continue
        merged.append(frame)
        durations.append(frame.duration_ms)
    return merged, durations


def _first_change(wanted: list, got: list) -> str:
    index = next(i for i, (w, g) in enumerate(zip(wanted, got)) if w != g)
    return f"frame {index}: {wanted[index]} -> {got[index]} ms"


def _plays_text(plays: int) -> str:
    return "plays forever" if plays == 0 else f"plays {plays} time{'s' if plays > 1 else ''}"


def _metadata_dropped(meta: Metadata, back: Metadata, fmt: str) -> list[str]:
    """What of ``meta`` the written file does not give back, one line each."""
    dropped = []

    def note(label: str, present: bool) -> None:
        dropped.append(f"{label} ({'changed' if present else 'not kept'} by {fmt})")

    if meta.icc and back.icc != meta.icc:
        note("ICC profile", back.icc is not None)
    if meta.exif and not _same_exif(meta.exif, back.exif, ignore_orientation=fmt == "TIFF"):
        note("EXIF", back.exif is not None)
    if meta.xmp and back.xmp != meta.xmp:
        note("XMP", back.xmp is not None)
    if meta.dpi and not (back.dpi and all(math.isclose(a, b, rel_tol=1e-3) for a, b in zip(meta.dpi, back.dpi))):
        note("resolution (dpi)", back.dpi is not None)
    for key, value in meta.text.items():
        if back.text.get(key) != value:
            note(f"text {key!r}", key in back.text)
    if meta.png_chunks and fmt != "PNG":
        dropped.append(f"PNG chunks {', '.join(c.kind for c in meta.png_chunks)} (not kept by {fmt})")
    return dropped


def _same_exif(exif: bytes, back: bytes | None, ignore_orientation: bool) -> bool:
    """Same EXIF tags (IFD0 less layout tags, Exif and GPS IFDs, whether a thumbnail IFD is there): a
    TIFF keeps EXIF as its own tags, so the bytes come back rearranged, and without the orientation
    (see :func:`_as_pillow_reads`)."""
    if back == exif:
        return True
    try:
        ours, theirs = _exif_entries(exif), _exif_entries(back or b"")
    except Exception:  # unreadable EXIF that did not come back byte for byte: changed
        return False
    if ignore_orientation:
        ours.pop((0, 0x0112), None)
        theirs.pop((0, 0x0112), None)
    return ours == theirs


def _exif_entries(exif: bytes) -> dict:
    loaded = _load_exif(exif)
    entries: dict = {(0, tag): value for tag, value in loaded.items() if tag not in _TIFF_LAYOUT_TAGS and tag not in _EXIF_IFDS}
    for ifd in _EXIF_IFDS:
        entries.update({(ifd, tag): value for tag, value in loaded.get_ifd(ifd).items() if tag not in _TIFF_LAYOUT_TAGS})
    entries["thumbnail"] = bool(loaded.get_ifd(_EXIF_THUMBNAIL_IFD))
    return entries


def _load_exif(exif: bytes) -> Image.Exif:
    loaded = Image.Exif()
    loaded.load(exif if exif.startswith(EXIF_PREFIX) else EXIF_PREFIX + exif)
    return loaded


# --- small helpers ---------------------------------------------------------------------------------


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("metadata text is not UTF-8") from None


def _icc_description(icc: bytes) -> str | None:
    """The profile's 'desc' tag (v2 ASCII or v4 multi-localised text), or None if it has none we can read."""
    try:
        (count,) = struct.unpack_from(">I", icc, 128)
        for i in range(min(count, 256)):
            signature, offset, size = struct.unpack_from(">4sII", icc, 132 + 12 * i)
            if signature != b"desc":
                continue
            tag = icc[offset:offset + size]
            if tag[:4] == b"desc":
                (length,) = struct.unpack_from(">I", tag, 8)
                text = tag[12:12 + length].split(b"\0")[0].decode("latin-1")
            elif tag[:4] == b"mluc":
                length, start = struct.unpack_from(">II", tag, 20)
                text = tag[start:start + length].decode("utf-16-be")
            else:
                return None
            text = "".join(c for c in text if c.isprintable()).strip()
            return text[:80] or None
    except (struct.error, UnicodeDecodeError):
        return None
    return None
