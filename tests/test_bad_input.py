"""Anything that is not a valid stream is a DecodeError, quickly, and never wrong pixels."""
from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import icnn_codec as ic
from icnn_codec import container
from icnn_codec.tools.fuzz import MUTATIONS, fuzz

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"


@pytest.fixture(scope="module")
def corpus(cifar_images, photo):
    rng = np.random.default_rng(7)
    images = [cifar_images[i] for i in range(4)] + [
        rng.integers(0, 256, (9, 10, 2), dtype=np.uint8),
        np.ascontiguousarray(photo[:40, :48, 0]),
        np.dstack([photo[:20, :30], np.full((20, 30), 200, np.uint8)]),
    ]
    streams = [ic.compress(im) for im in images] + [ic.compress(photo[:40, :72], tile=16)]  # 3 x 5 tiles
    images.append(photo[:40, :72])
    noise = np.random.default_rng(8).integers(0, 256, (24, 40, 3), dtype=np.uint8)  # a raw tile
    streams.append(ic.compress(noise))
    images.append(noise)
    return streams, images


def test_hundreds_of_mutated_streams_decode_exactly_or_fail_cleanly(corpus):
    # Only a decode that never ends counts as a hang here: on a loaded machine a slow one is not
    # a failure (benchmarks/fuzz.py reports the slowest decode).
    report = fuzz(*corpus, n=400, seed=2026, hang_seconds=300)
    assert report.failed == 0, report.failures
    assert report.outcomes["clean_error"] > 300
    assert set(report.by_mutation) == set(MUTATIONS)  # every kind of damage was tried


def forged(width: int, height: int, tile: int = 256, tail: bytes = b"\0" * 16, mode: str = "RGB",
           model: str | None = None) -> bytes:
    h = container.Header(mode, width, height, ic.load_model(model).fingerprint, tile)
    return h.to_bytes() + tail


@pytest.mark.parametrize("size", [(2**20, 2**20), (60000, 60000), (2**20, 1), (5000, 4000)])
def test_absurd_declared_sizes_are_refused_before_any_allocation(size):
    stream = forged(*size)  # outside the measurement: it loads the model
    tracemalloc.start()
    with pytest.raises(ic.DecodeError, match="too large|truncated"):
        ic.decompress(stream)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10 * 2**20


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_stream_that_runs_dry_stops_at_once(mode):
    """One word for a whole 1024 x 1024 tile: refused after the first few symbols, not decoded."""
    tail = bytes([0]) + (2**32 + 12345).to_bytes(5, "little")  # kind: model, a state and no word
    with pytest.raises(ic.DecodeError, match="ran out of words"):  # not a checksum failure after a whole tile
        ic.decompress(forged(1024, 1024, tile=1024, tail=tail, mode=mode, model="photo"))


def test_a_large_image_can_be_allowed_explicitly(cifar_images):
    data = ic.compress(cifar_images[0])
    with pytest.raises(ic.DecodeError, match="too large"):
        ic.decompress(data, max_pixels=1000)
    assert np.array_equal(ic.decompress(data, max_pixels=None), cifar_images[0])


def test_a_stream_for_a_model_that_is_not_installed_names_it(cifar_images):
    data = bytearray(ic.compress(cifar_images[0]))
    data[3:5] = struct.pack("<H", ic.read_header(bytes(data)).model_fingerprint ^ 0x5A5A)
    with pytest.raises(ic.DecodeError, match="not installed"):
        ic.decompress(bytes(data))
