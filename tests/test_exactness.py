"""Streams do not depend on how the network was evaluated: batch size, threads, summation order.

Every value that decides a bit is computed in exact integer arithmetic (float64 holding
integers far below 2**53), so the bytes must be identical, not merely close.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

import icnn_codec as ic
from icnn_codec import container
from icnn_codec.planes import exact_input
from icnn_codec.quant import HIDDEN_MAX, exact_conv2d


def test_streams_are_byte_identical_across_batching_and_threads(cifar_images, tmp_path):
    images = list(cifar_images[:64])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_by_one = [ic.compress(im) for im in images]
        other_batches = ic.compress_many(images, batch_size=5)
        torch.set_num_threads(2)
        batched = ic.compress_many(images, batch_size=64)
    finally:
        torch.set_num_threads(threads)
    assert one_by_one == batched == other_batches

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


def test_the_exact_convolution_gives_the_integers_of_another_summation_order(model):
    """The coder's convolution (one matrix product per kernel tap) and torch's float64 conv2d add
    the same integer products in different orders; at the largest sum a layer can form both must
    still give the same integers, to the last bit."""
    conv = next(c for c in model.flow.qconvs() if c.w_int.shape[1] >= 64 and c.w_int.shape[-1] == 3)
    w, b = conv.w_int, conv.b_int
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, HIDDEN_MAX + 1, (2, w.shape[1], 12, 12), generator=gen).double()
    # The largest sum the layer can form: for the output channel with the most positive weight,
    # the inputs under its kernel at their largest where a weight is positive and zero elsewhere
    # (all inputs at their largest would let positive and negative products cancel).
    positive = w.clamp(min=0).sum(dim=(1, 2, 3))
    o = int(positive.argmax())
    a[0] = HIDDEN_MAX
    a[0, :, 5:8, 5:8] = HIDDEN_MAX * (w[o] > 0)
    ours = exact_conv2d(a, w, b)
    theirs = F.conv2d(a, w, b, padding=1)
    largest = b[o] + HIDDEN_MAX * positive[o]
    assert ours[0, o, 6, 6] == largest > 2**30  # the sums are large, not a trivial case
    assert torch.equal(ours, theirs)


def test_exact_path_codes_within_two_hundredths_of_a_bit_of_the_trained_model(cifar_images, model, model_only):
    """Training simulates the fixed-point network in float32, whose accumulators differ from the
    exact ones in the last bits; a rounding near a boundary can then fall the other way. The
    cost of coding with the exact path, ANS included, must stay under 0.02 bits per dimension."""
    images = list(cifar_images[100:164])
    streams = ic.compress_many(images)
    payload_bits = 8 * sum(len(s) - container.overhead_bytes(s) for s in streams)
    with torch.no_grad():
        nll_bits = float(model.flow.nll_bits(exact_input(images).float()).sum())
    dims = 64 * 32 * 32 * 3
    assert 0 <= (payload_bits - nll_bits) / dims < 0.02
