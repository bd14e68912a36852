"""Pillow support: ``Image.open("x.icnn")`` and ``im.save("x.icnn")``, registered when
``icnn_codec`` is imported (:func:`register` does it again, e.g. after Pillow's registry was reset).

Opening reads the header only (size, mode, frame count); the pixels are decoded when Pillow
loads them. The magic ``IC`` is also an OS/2 icon's, so a file is taken as a stream only when
its third byte names this format version and a valid mode as well.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFile

from . import codec
from .container import FORMAT_VERSION, MAGIC, MODES
from .imagefile import read_image

FORMAT = "ICNN"
EXTENSION = ".icnn"
_PIL_MODES = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "L16": "I;16"}


def _accept(prefix: bytes) -> bool:
    return len(prefix) >= 3 and prefix[:2] == MAGIC and prefix[2] >> 4 == FORMAT_VERSION and (prefix[2] & 0x0F) < len(MODES)


class IcnnImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "icnn lossless image stream"

    def _open(self) -> None:
        data = self.fp.read()
        header = codec.read_header(data)  # a DecodeError (ValueError) tells Pillow this is no icnn stream
        if header.mode not in _PIL_MODES:
            raise SyntaxError(f"icnn mode {header.mode} has no Pillow mode")
        self._data = data
        self._frames: list[np.ndarray] | None = None
        self._frame = 0
        self._mode = _PIL_MODES[header.mode]
        self._size = (header.width, header.height)
        self.n_frames = header.n_frames
        self.is_animated = header.n_frames > 1
        self.tile = []
        if header.animation:
            self._set_timing(header, 0)
            if header.animation.plays is not None:
                self.info["loop"] = header.animation.plays

    def seek(self, frame: int) -> None:
        if not self._seek_check(frame):
            return
        self._frame = frame
        self._im = None  # loaded again, from the decoded frames
        self._set_timing(codec.read_header(self._data), frame)

    def _set_timing(self, header, frame: int) -> None:
        duration = header.animation.frames[frame].duration_ms if header.animation else None
        if duration is not None:
            self.info["duration"] = duration

    def tell(self) -> int:
        return self._frame

    def load(self):
        if self._frames is None:
            document = codec.decompress_document(self._data)
            self._frames = [f.pixels for f in document.frames]
            meta = document.metadata
            for key, value in (("icc_profile", meta.icc), ("exif", meta.exif), ("xmp", meta.xmp), ("dpi", meta.dpi)):
                if value:
                    self.info[key] = value
            self.info.update(meta.text)
        if self._im is None or getattr(self, "_loaded_frame", None) != self._frame:
            self.im = Image.fromarray(self._frames[self._frame], self._mode).im
            self._loaded_frame = self._frame
        return Image.Image.load(self)


def _save(im: Image.Image, fp, filename, save_all: bool = False) -> None:
    """Write ``im`` (all its frames with save_all) as an icnn stream: through a PNG or TIFF of it,
    so frames, durations and the metadata Pillow carries are read as ``icnn compress`` reads files."""
    buffer = io.BytesIO()
    frames = [im] + list(im.encoderinfo.get("append_images", [])) if save_all else [im]
    options = {k: im.encoderinfo[k] for k in ("icc_profile", "exif", "dpi", "duration", "loop") if k in im.encoderinfo}
    for key in ("icc_profile", "exif", "dpi"):
        if key not in options and im.info.get(key):
            options[key] = im.info[key]
    if len(frames) > 1:
        options.update(save_all=True, append_images=frames[1:])
    frames[0].save(buffer, format="PNG", **options)
    fp.write(codec.compress_document(read_image(buffer.getvalue())))


def _save_all(im: Image.Image, fp, filename) -> None:
    _save(im, fp, filename, save_all=True)


def register() -> None:
    """Make Pillow open and save .icnn files."""
    Image.register_open(FORMAT, IcnnImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_save_all(FORMAT, _save_all)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, "image/x-icnn")
