"""The adaptive component: one more logistic in every pixel's mixture, learnt from the tile itself.

The network's components are fixed by training; this one adapts as a plane is decoded. Its mean is
the tile predictor's prediction plus the mean error of the pixels coded before in the same context,
its log2 scale the one their mean absolute error implies. A pixel's context (one of CONTEXTS, per
colour) is the size of its decoded neighbours' residuals under the tile predictor, W and N counted
twice, NW and NE once, on a log2 scale: how busy the neighbourhood is. Each tile keeps, per colour and
context, the sum of its errors e16 = 16 x - prediction (the means' 1/16 grid), of their absolute
values and their count, halved when the count reaches HALVE_AFTER, so the statistics follow the tile.

Its weight is the network's heaviest logit moved by an offset each plane sends (the encoder chooses
it). All of it is integer arithmetic, so encoder and decoder find the same component; the lines of a
plane are the unit (:mod:`icnn_codec.wavefront`): a line's pixels all take the statistics as the
lines before left them, and then add theirs, in the line's order.

It helps most on the colours coded second and third, where one network for all photographs
under-fits each photograph's own relation between its colours (docs/ablations.md).
"""
from __future__ import annotations

import numba
import numpy as np

from . import priors

CONTEXTS = 12
HALVE_AFTER = 256
PRIOR_COUNT = 4  # a context starts as if it had seen this many errors of PRIOR_ABS16 each: wide
PRIOR_ABS16 = 256
# A logistic of scale s has mean absolute error 2 ln 2 s; the scale on a 2**-16 grid is
# sum |e16| * SCALE_NUMERATOR // count (SCALE_NUMERATOR = round(2**16 / (16 * 2 ln 2))).
SCALE_NUMERATOR = 2955
LS_LOW, LS_HIGH = (int(b) for b in priors.ls_bounds_q())
# The component's logit above the heaviest one's, in 1/8 (a plane sends which, in OFFSET_BITS): from
# next to nothing (2**-8 of that one's weight, for a plane the component does not fit) to 16 times it.
OFFSETS = (-64, -16, -8, 0, 8, 16, 24, 32)
OFFSET_BITS = 3


def _thresholds() -> np.ndarray:
    """T[j] = ceil(2**(16 + (LS_LOW + j - 1/2) / 8)) for each log2 scale LS_LOW + j on the 1/8 grid:
    a scale of s_fixed / 2**16 rounds to the largest one whose threshold s_fixed reaches. Exact
    integer roots (t**16 >= 2**(256 + 2 (LS_LOW + j) - 1)), nothing from libm."""
    out = []
    for ls8 in range(LS_LOW, LS_HIGH + 1):
        power = 256 + 2 * ls8 - 1
        lo, hi = 1, 1 << 40
        while lo < hi:  # the least t with t**16 >= 2**power
            mid = (lo + hi) // 2
            if mid**16 >= 1 << power:
                hi = mid
            else:
                lo = mid + 1
        out.append(lo)
    return np.array(out, dtype=np.int64)


THRESHOLDS = _thresholds()


@numba.njit(cache=True, nogil=True)
def new_statistics(planes: int) -> np.ndarray:
    """Fresh statistics (planes, 3 colours, CONTEXTS, 3: sum of e16, sum of |e16|, count)."""
    stats = np.zeros((planes, 3, CONTEXTS, 3), dtype=np.int64)
    for i in range(planes):
        for c in range(3):
            for q in range(CONTEXTS):
                stats[i, c, q, 1] = PRIOR_COUNT * PRIOR_ABS16
                stats[i, c, q, 2] = PRIOR_COUNT
    return stats


@numba.njit(cache=True, nogil=True, inline="always")
def context(residuals, y: int, x: int) -> int:
    """A pixel's context from the residual canvas of its colour (zero outside the tile; y, x in the
    canvas's coordinates): the bit length of 2 |W| + 2 |N| + |NW| + |NE|, at most CONTEXTS - 1."""
    a = (2 * abs(residuals[y, x - 1]) + 2 * abs(residuals[y - 1, x]) + abs(residuals[y - 1, x - 1])
         + abs(residuals[y - 1, x + 1]))
    q = 0
    while a > 0 and q < CONTEXTS - 1:
        a >>= 1
        q += 1
    return q


@numba.njit(cache=True, nogil=True, inline="always")
def log2_scale8(stats, q: int) -> int:
    """The component's log2 scale on the 1/8 grid from a context's statistics (3,): LS_LOW plus how
    many of THRESHOLDS[1:] the scale on a 2**-16 grid reaches (by bisection)."""
    s_fixed = stats[q, 1] * SCALE_NUMERATOR // stats[q, 2]
    lo, hi = 1, len(THRESHOLDS)
    while lo < hi:
        mid = (lo + hi) >> 1
        if THRESHOLDS[mid] <= s_fixed:
            lo = mid + 1
        else:
            hi = mid
    return LS_LOW + lo - 1


@numba.njit(cache=True, nogil=True, inline="always")
def bias16(stats, q: int) -> int:
    """The context's mean error on the 1/16 grid, rounded (half up)."""
    return (2 * stats[q, 0] + stats[q, 2]) // (2 * stats[q, 2])


@numba.njit(cache=True, nogil=True, inline="always")
def update(stats, q: int, e16: int) -> None:
    """Add one error to a context's statistics, halving them when the count reaches HALVE_AFTER (even:
    the halved count is exact)."""
    stats[q, 0] += e16
    stats[q, 1] += abs(e16)
    stats[q, 2] += 1
    if stats[q, 2] >= HALVE_AFTER:
        stats[q, 0] >>= 1
        stats[q, 1] >>= 1
        stats[q, 2] >>= 1


@numba.njit(cache=True, nogil=True)
def plane_columns(centred, tile16, positions, line_starts, width: int):
    """The encoder's pass over a whole plane: the component's mean offset (bias, on the 1/16 grid)
    and log2 scale of every pixel and colour, (n, 3) each in raster order, as the decoder will find
    them line by line. ``centred``: the samples - 128 (n, 3); ``tile16``: the tile predictor's
    prediction of each (given the pixel's earlier colours), centred, on the 1/16 grid."""
    n = centred.shape[0]
    height = n // width
    residuals = np.zeros((3, height + 1, width + 2), dtype=np.int64)
    for p in range(n):
        for c in range(3):
            residuals[c, p // width + 1, p % width + 1] = centred[p, c] - (tile16[p, c] >> priors.MU_FRAC)
    stats = new_statistics(1)[0]
    bias = np.empty((n, 3), dtype=np.int64)
    ls8 = np.empty((n, 3), dtype=np.int64)
    qs = np.empty(n, dtype=np.int64)
    for t in range(len(line_starts) - 1):
        line = positions[line_starts[t] : line_starts[t + 1]]
        for c in range(3):
            for j in range(len(line)):
                p = line[j]
                q = context(residuals[c], p // width + 1, p % width + 1)
                qs[j] = q
                bias[p, c] = bias16(stats[c], q)
                ls8[p, c] = log2_scale8(stats[c], q)
            for j in range(len(line)):
                p = line[j]
                update(stats[c], qs[j], 16 * centred[p, c] - tile16[p, c])
    return bias, ls8
