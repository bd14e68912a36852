"""The decoder's compiled pointwise layers give the 8-bit scheme's integers, at the edge of its rules."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from icnn_codec.backends import SPLIT_BITS, reference_output, worst_case_input, worst_case_layer
from icnn_codec.pointwise import PointwiseLayer, gather


@pytest.mark.parametrize("c_in, c_out, role, out_frac, out_hi", [
    (72, 64, "first", 5, 255.0),
    (64, 64, "hidden", 4, 255.0),
    (64, 48, "hidden", 5, 127.0),
    (64, 30, "head", [4] * 15 + [3] * 15, None),
    (64, 30, "head", 10, None),  # shift 0: the raw accumulators come out
    (64, 30, "split head", [4] * 15 + [3] * 15, None),
    (64, 30, "split head", 4 + 6 + SPLIT_BITS, None),
])
def test_a_pointwise_layer_gives_the_int64_references_integers(c_in, c_out, role, out_frac, out_hi):
    gen = torch.Generator().manual_seed(c_in + c_out)
    layer = worst_case_layer(c_in, c_out, 1, out_frac, out_hi, role == "first", role == "split head", gen)
    x = worst_case_input(layer, 3, 9, 13, gen)  # every pixel count mod 4: the compiled loop takes four at a time
    want = reference_output(layer, x).permute(0, 2, 3, 1).reshape(-1, c_out).numpy()
    inputs = x.permute(0, 2, 3, 1).reshape(-1, c_in).numpy()
    for pixels in (len(inputs), 1, 2, 3, 5):
        assert np.array_equal(PointwiseLayer(layer)(inputs[:pixels]).astype(np.int64), want[:pixels])


def test_gather_reads_each_planes_taps_in_channel_then_tap_order_clamped():
    planes = np.arange(2 * 2 * 4 * 5, dtype=np.int64).reshape(2, 2, 4, 5) - 40
    ys, xs = np.array([1, 2]), np.array([2, 0])
    dy, dx = np.array([0, 1]), np.array([1, 2])
    out = gather(planes, ys, xs, dy, dx, 30)
    for b in range(2):
        for j in range(2):
            for c in range(2):
                for t in range(2):
                    expected = np.clip(planes[b, c, ys[j] + dy[t], xs[j] + dx[t]], -30, 30)
                    assert out[b * 2 + j, c * 2 + t] == expected
