"""Streams do not depend on how the network was evaluated: batch size, threads, kernels.

Every value that decides a bit is computed in exact integer arithmetic (float64 holding
integers far below 2**53), so the bytes must be identical, not merely close.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

import icnn_codec as ic
from icnn_codec.codec import exact_input


def test_streams_are_byte_identical_across_batching_threads_and_kernels(cifar_images, tmp_path):
    images = list(cifar_images[:64])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_by_one = [ic.compress(im) for im in images]
        torch.set_num_threads(2)
        batched = ic.compress_many(images, batch_size=64)
        torch.backends.mkldnn.enabled = False
        other_kernels = ic.compress_many(images, batch_size=5)
    finally:
        torch.backends.mkldnn.enabled = True
        torch.set_num_threads(threads)
    assert one_by_one == batched == other_kernels

    # A separate process (fresh interpreter, its own thread pool) decodes them exactly.
    np.savez(tmp_path / "case.npz", images=np.stack(images),
             streams=np.array([np.frombuffer(s, np.uint8) for s in batched], dtype=object), allow_pickle=True)
    code = (
        "import numpy as np, icnn_codec as ic, sys\n"
        f"z = np.load(r'{tmp_path / 'case.npz'}', allow_pickle=True)\n"
        "out = ic.decompress_many([s.tobytes() for s in z['streams']], batch_size=3)\n"
        "sys.exit(0 if all(np.array_equal(a, b) for a, b in zip(out, z['images'])) else 1)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=600).returncode == 0


def test_training_path_simulates_the_exact_path(cifar_images, model):
    """The float32 training graph and the exact path give the same latents and prior grids."""
    x = exact_input(list(cifar_images[:16]))
    with torch.no_grad():
        exact = model.flow(x)
        trained = model.flow(x.float())
    for e, t in zip(exact, trained):
        assert torch.equal(e.z, t.z.double())
        assert torch.equal(e.mu, t.mu.double() * 16) and torch.equal(e.log_scale, t.log_scale.double() * 8)
