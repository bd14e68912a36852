"""Streams written by earlier versions decode bit for bit, and the same image, model and tile
size still give the very same bytes: neither the stream format, nor the integer networks, nor
the coder (constriction's quantisation included) may drift.

Each golden stream in tests/data/golden is named SOURCE.FINGERPRINT.icnn: SOURCE says which image
it holds (see SOURCES), FINGERPRINT which model wrote it. A shipped model that is replaced stays
installed as ``models/NAME-FINGERPRINT.npz`` so that these streams (and users' files) keep
decoding. Goldens are only ever added, never rewritten: ``python tests/test_golden_streams.py``
writes the ones missing for the default models installed now.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import icnn_codec as ic
from icnn_codec.zoo import default_model_name, find_model_by_fingerprint

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "golden"


def rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / name))


def rgba_tiles() -> np.ndarray:
    """The chelsea crop with a gradient alpha plane, coded as 3 x 3 tiles of 32."""
    alpha = np.add.outer(np.arange(80), np.arange(96)).astype(np.uint8)
    return np.dstack([rgb("chelsea-80x96.png"), alpha])


# source -> (image, tile side): each golden is re-encoded from its source at its tile side
SOURCES = {
    "sample": (lambda: rgb("sample.png"), 256),  # 32x32 RGB, one tile, the thumbnail model
    "chelsea-80x96": (lambda: rgb("chelsea-80x96.png"), 256),  # a photo crop, the photo model
    "chelsea-80x96-rgba-tile32": (rgba_tiles, 32),  # the tile index and the alpha plane
}


def golden_streams() -> list[Path]:
    return sorted(GOLDEN.glob("*.icnn"))


def test_there_is_a_golden_stream_of_every_source_for_each_default_model():
    present = {tuple(p.name.split(".")[:2]) for p in golden_streams()}
    for source, (image, tile) in SOURCES.items():
        pixels = image()
        fp = ic.load_model(default_model_name(*pixels.shape[:2])).fingerprint
        assert (source, f"{fp:04x}") in present, f"run python tests/test_golden_streams.py to add {source}"


@pytest.mark.parametrize("path", golden_streams(), ids=lambda p: p.name)
def test_a_golden_stream_decodes_exactly_and_is_written_again_byte_for_byte(path: Path):
    source, fp = path.name.split(".")[:2]
    image, tile = SOURCES[source]
    stream, pixels = path.read_bytes(), image()
    model = find_model_by_fingerprint(int(fp, 16))
    assert model is not None, f"model {fp} is no longer installed: its streams cannot be decoded"
    assert ic.read_header(stream).tile == tile
    assert np.array_equal(ic.decompress(stream), pixels)
    assert ic.compress(pixels, model, tile=tile) == stream


if __name__ == "__main__":
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for source, (image, tile) in SOURCES.items():
        stream = ic.compress(image(), tile=tile)  # the default model for its size
        path = GOLDEN / f"{source}.{ic.read_header(stream).model_fingerprint:04x}.icnn"
        if not path.exists():
            path.write_bytes(stream)
            print(f"wrote {path}")
