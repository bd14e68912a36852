"""Streams do not depend on how the network was evaluated: backend, batch size, threads, process.

Every value that decides a bit is computed in exact integer arithmetic (the 8-bit scheme of
``quant.py``: every partial sum an integer within 2**24), so the bytes must be identical, not merely
close, on every backend that passed the canary.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import icnn_codec as ic
from icnn_codec import backends
from icnn_codec.backends import ACT_MAX, EXACT_BOUND, WEIGHT_MAX, split_halves
from icnn_codec.zoo import available_models

AVAILABLE = [name for name, b in backends.BACKENDS.items() if b.available()]


@pytest.fixture
def restore_backend():
    before = backends.use_backend(None)
    yield
    with backends._choice_lock:
        backends._chosen = before


def _coded(images: list[np.ndarray], threads: int, batch: int, **kw) -> list[bytes]:
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        return ic.compress_many(images, batch_size=batch, **kw)
    finally:
        torch.set_num_threads(saved)


def test_streams_are_byte_identical_across_backends_batching_and_threads(cifar_images, photo, restore_backend):
    thumbnails = list(cifar_images[:10])
    crop = [np.ascontiguousarray(photo[100:164, 200:296])]  # the photo model, its own layer shapes
    reference = _coded(thumbnails, 1, 1), _coded(crop, 1, 1, model="photo")
    assert len(AVAILABLE) >= 2  # float32 and float64 at least
    for name in AVAILABLE:
        backends.use_backend(name)
        for threads, batch in [(1, 1), (2, 5)]:
            assert _coded(thumbnails, threads, batch) == reference[0], (name, threads, batch)
        assert _coded(crop, 2, 1, model="photo") == reference[1], name


def test_another_process_on_a_forced_backend_decodes_the_streams_exactly(cifar_images, tmp_path):
    images = list(cifar_images[:12])
    streams = ic.compress_many(images, batch_size=12)
    np.savez(tmp_path / "case.npz", images=np.stack(images),
             streams=np.array([np.frombuffer(s, np.uint8) for s in streams], dtype=object), allow_pickle=True)
    code = (
        "import numpy as np, icnn_codec as ic, sys\n"
        "from icnn_codec import backends\n"
        f"z = np.load(r'{tmp_path / 'case.npz'}', allow_pickle=True)\n"
        "out = ic.decompress_many([s.tobytes() for s in z['streams']], batch_size=5)\n"
        "ok = all(np.array_equal(a, b) for a, b in zip(out, z['images']))\n"
        "sys.exit(0 if ok and backends.current_backend().name == 'float32' else 1)\n"
    )
    env = {**os.environ, backends.BACKEND_ENV: "float32"}
    assert subprocess.run([sys.executable, "-c", code], timeout=600, env=env).returncode == 0


@pytest.mark.parametrize("name", sorted(available_models()))
def test_every_channel_of_every_shipped_model_keeps_the_exactness_bound(name):
    model = ic.load_model(name)
    for conv in model.local_ar.qconvs():
        halves = split_halves(conv.w_int, conv.b_int) if conv.split else (conv.w_int, None, conv.b_int, None)
        for w, b in ((halves[0], halves[2]), (halves[1], halves[3])):
            if w is None:
                continue
            l1 = w.to(torch.int64).abs().flatten(1).sum(1)
            assert bool((ACT_MAX * l1 + b.to(torch.int64).abs() <= EXACT_BOUND).all())
            assert int(w.abs().max()) <= WEIGHT_MAX
