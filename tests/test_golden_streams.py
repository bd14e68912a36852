"""Streams written by earlier versions decode bit for bit, and the same image, model and tile
size still give the very same bytes: neither the stream format, nor the integer networks, nor
the coder (constriction's quantisation included) may drift.

Each golden stream in tests/data/golden is named SOURCE.FINGERPRINT.icnn: SOURCE says which image
it holds, FINGERPRINT which model wrote it. A shipped model that is replaced stays installed as
``models/NAME-FINGERPRINT.npz`` so that these streams (and users' files) keep decoding. Goldens
are only ever added, never rewritten: ``python tests/test_golden_streams.py`` writes the ones
missing for the models installed now.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import icnn_codec as ic
from icnn_codec.zoo import find_model_by_fingerprint

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
SAMPLE = Path(__file__).resolve().parent / "data" / "sample.png"


def source_image(source: str) -> np.ndarray:
    """The images goldens are made of: the 32x32 sample, and a crop of scikit-image's chelsea."""
    if source == "sample":
        return np.asarray(Image.open(SAMPLE))
    if source == "chelsea-80x96":
        return np.ascontiguousarray(pytest.importorskip("skimage.data").chelsea()[:80, :96])
    raise ValueError(source)


def golden_streams() -> list[Path]:
    return sorted(GOLDEN.glob("*.icnn"))


def test_there_is_a_golden_stream_for_each_model_a_plain_compress_uses():
    fingerprints = {p.name.split(".")[1] for p in golden_streams()}
    assert {f"{ic.load_model(name).fingerprint:04x}" for name in ("cifar10", "photo")} <= fingerprints


@pytest.mark.parametrize("path", golden_streams(), ids=lambda p: p.name)
def test_a_golden_stream_decodes_exactly_and_is_written_again_byte_for_byte(path: Path):
    source, fp = path.name.split(".")[:2]
    stream, image = path.read_bytes(), source_image(source)
    model = find_model_by_fingerprint(int(fp, 16))
    assert model is not None, f"model {fp} is no longer installed: its streams cannot be decoded"
    assert np.array_equal(ic.decompress(stream), image)
    assert ic.compress(image, model, tile=ic.read_header(stream).tile) == stream


if __name__ == "__main__":
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for source in ("sample", "chelsea-80x96"):
        image = source_image(source)
        stream = ic.compress(image)  # the default model for its size
        path = GOLDEN / f"{source}.{ic.read_header(stream).model_fingerprint:04x}.icnn"
        if not path.exists():
            path.write_bytes(stream)
            print(f"wrote {path}")
