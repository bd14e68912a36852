"""Exact integer layers over a few hundred pixels at a time, compiled: the wavefront decoder's network.

The decoder runs the local AR's layers once per line, on the line's pixels alone (a few dozen per
tile). A framework's convolution costs more to call than to compute at that size, so the decoder
runs the layers here, as loops compiled by numba over the taps gathered from its canvas. They
compute the 8-bit scheme's integers (:mod:`icnn_codec.backends`): acc = sum W x + B, then
clamp(round_half_even(acc 2**-shift)). Under the scheme's L1 rule every partial sum of a hidden
layer is an integer of magnitude at most 2**24, so float32 sums are exact in any order; heads, whose
weights may reach 2**12, sum in float64 (|acc| < 2**31).
"""
from __future__ import annotations

import numba
import numpy as np

from .backends import IntConv


@numba.njit(cache=True, nogil=True)
def layer(x, wt, bias, scale, lo, hi):
    """clamp(rint((x @ wt + bias) * scale), lo, hi) for x (P, I) and wt (I, O) of one float dtype.
    Four pixels at a time, each weight row read once for all four: the sums are vectorised along the
    outputs (no reordering of any sum is needed for that)."""
    pixels, outputs = x.shape[0], wt.shape[1]
    out = np.empty((pixels, outputs), dtype=wt.dtype)
    acc = np.empty((4, outputs), dtype=wt.dtype)
    for first in range(0, pixels, 4):
        block = min(4, pixels - first)
        for a in range(block):
            acc[a, :] = bias
        for i in range(wt.shape[0]):
            w = wt[i]
            if block == 4:
                v0, v1, v2, v3 = x[first, i], x[first + 1, i], x[first + 2, i], x[first + 3, i]
                for o in range(outputs):
                    acc[0, o] += v0 * w[o]
                    acc[1, o] += v1 * w[o]
                    acc[2, o] += v2 * w[o]
                    acc[3, o] += v3 * w[o]
            else:
                for a in range(block):
                    v = x[first + a, i]
                    for o in range(outputs):
                        acc[a, o] += v * w[o]
        for a in range(block):
            for o in range(outputs):
                out[first + a, o] = min(max(np.rint(acc[a, o] * scale[o]), lo[o]), hi[o])
    return out


@numba.njit(cache=True, nogil=True)
def gather(planes, ys, xs, dy, dx, limit: int):
    """Inputs (B n, C taps) float32 of the pixels (ys, xs) (n,) of every plane (B, C, H, W): plane b's
    pixel j is row b n + j, channel c's tap t its column c taps + t, read at (y + dy, x + dx),
    clamped to +-limit."""
    b, channels = planes.shape[0], planes.shape[1]
    n, taps = len(ys), len(dy)
    out = np.empty((b * n, channels * taps), dtype=np.float32)
    for i in range(b):
        for j in range(n):
            for c in range(channels):
                for t in range(taps):
                    v = planes[i, c, ys[j] + dy[t], xs[j] + dx[t]]
                    out[i * n + j, c * taps + t] = min(max(v, -limit), limit)
    return out


class PointwiseLayer:
    """One 1x1 :class:`IntConv` as the compiled loop runs it: weights transposed, in float32 for a
    hidden layer (uint8 activations) or float64 for a head."""

    def __init__(self, conv: IntConv) -> None:
        if conv.w_int.shape[2:] != (1, 1):
            raise ValueError("a pointwise layer needs a 1x1 convolution")
        dtype = np.float32 if conv.is_hidden and not conv.split else np.float64
        self.dtype = dtype
        self.wt = np.ascontiguousarray(conv.w_int[:, :, 0, 0].numpy().T, dtype=dtype)
        self.bias = conv.b_int.numpy().astype(dtype)
        self.scale = np.ldexp(1.0, -conv.shift().numpy()).astype(dtype)
        self.lo, self.hi = conv.out_lo.numpy().astype(dtype), conv.out_hi.numpy().astype(dtype)

    def fields(self) -> tuple[np.ndarray, ...]:
        """(weights transposed, bias, scale, lo, hi): what :func:`layer` takes."""
        return self.wt, self.bias, self.scale, self.lo, self.hi

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return layer(x.astype(self.dtype, copy=False), *self.fields())
