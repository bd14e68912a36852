"""Golden streams decode bit for bit, and the same image, model and tile size still give the
very same bytes: neither the stream format, nor the integer networks, nor the coder
(its integer tables included) may drift unnoticed.

Each golden stream in tests/data/golden is named SOURCE.FINGERPRINT.vN.icnn: SOURCE says which
image it holds (see SOURCES), FINGERPRINT which model wrote it, N the format version. Before 1.0
the codec reads only the current format and the models it ships, so the goldens are those of the
shipped models in the current format; a new format or model generation replaces them
(``python tests/test_golden_streams.py`` writes the ones missing for the default models).
"""
from __future__ import annotations

from pathlib import Path

import hashlib

import numpy as np
import pytest
from PIL import Image

import icnn_codec as ic
from icnn_codec.container import FORMAT_VERSION
from icnn_codec.zoo import find_model_by_fingerprint

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "golden"


def rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / name))


def rgba_tiles() -> np.ndarray:
    """The chelsea crop with a gradient alpha plane, coded as 3 x 3 tiles of 32."""
    alpha = np.add.outer(np.arange(80), np.arange(96)).astype(np.uint8)
    return np.dstack([rgb("chelsea-80x96.png"), alpha])


def grey() -> np.ndarray:
    return np.asarray(Image.open(DATA / "chelsea-80x96.png").convert("L"))


def noise_quadrant() -> np.ndarray:
    """A 64x64 photo crop whose bottom-right 32x32 tile is noise (from SHA-256, not an RNG whose
    stream could change): coded as tiles of 32, that tile is raw and the others are not."""
    image = rgb("chelsea-80x96.png")[:64, :64].copy()
    noise = np.frombuffer(b"".join(hashlib.sha256(bytes([i])).digest() for i in range(96)), np.uint8)
    image[32:, 32:] = noise.reshape(32, 32, 3)
    return image


# source -> (image, tile side): each golden is re-encoded from its source at its tile side
SOURCES = {
    "sample": (lambda: rgb("sample.png"), 256),  # 32x32 RGB, one tile, the thumbnail model
    "chelsea-80x96": (lambda: rgb("chelsea-80x96.png"), 256),  # a photo crop, the photo model
    "chelsea-80x96-rgba-tile32": (rgba_tiles, 32),  # the tile index and the alpha plane
    "chelsea-80x96-grey": (grey, 256),  # a grey image: three neighbours per position
    "noise-quadrant-64x64-tile32": (noise_quadrant, 32),  # a raw tile among coded ones
    "chelsea-70x84": (lambda: rgb("chelsea-80x96.png")[:70, :84], 256),  # sides of no round size
}


def golden_name(source: str, fingerprint: int, version: int = FORMAT_VERSION) -> str:
    return f"{source}.{fingerprint:04x}.v{version}.icnn"


def golden_streams() -> list[Path]:
    return sorted(GOLDEN.glob("*.icnn"))


def test_there_is_a_golden_stream_of_every_source_for_each_default_model_in_the_current_format():
    present = {p.name for p in golden_streams()}
    for source, (image, tile) in SOURCES.items():
        pixels = image()
        fp = ic.read_header(ic.compress(pixels, tile=tile)).model_fingerprint  # the default model for it
        assert golden_name(source, fp, FORMAT_VERSION) in present, f"run python tests/test_golden_streams.py to add {source}"


@pytest.mark.parametrize("path", golden_streams(), ids=lambda p: p.name)
def test_a_golden_stream_decodes_exactly_and_in_the_current_format_is_written_again_byte_for_byte(path: Path):
    source, fp = path.name.split(".")[:2]
    image, tile = SOURCES[source]
    stream, pixels = path.read_bytes(), image()
    model = find_model_by_fingerprint(int(fp, 16))
    assert model is not None, f"model {fp} is no longer installed: remove its goldens with it"
    assert path.name == golden_name(source, ic.read_header(stream).model_fingerprint)
    assert np.array_equal(ic.decompress(stream), pixels)
    assert ic.compress(pixels, model=model, tile=tile) == stream


def test_the_noise_tile_of_its_golden_stream_is_raw_and_the_photo_tiles_are_not():
    stream = (GOLDEN / golden_name("noise-quadrant-64x64-tile32", ic.load_model("cifar10").fingerprint)).read_bytes()
    kinds = ic.tile_kinds(stream)
    assert kinds[3] == "raw" and "raw" not in kinds[:3]


if __name__ == "__main__":
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for source, (image, tile) in SOURCES.items():
        stream = ic.compress(image(), tile=tile)  # the default model for its size
        header = ic.read_header(stream)
        path = GOLDEN / golden_name(source, header.model_fingerprint)
        if not path.exists():
            path.write_bytes(stream)
            print(f"wrote {path}")
