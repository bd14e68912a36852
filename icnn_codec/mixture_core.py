"""The compiled loops under :mod:`icnn_codec.mixture`: each sample's window counts, one sample at a time.

The decoder builds the distributions of a line of a few hundred samples at a time, thousands of
times per tile; as NumPy array operations that is mostly interpreter time, so these loops run
compiled (numba). They compute exactly what ``mixture``'s NumPy definitions say (integer arithmetic
only: shifts, sums and table reads), which the tests check against those definitions.
"""
from __future__ import annotations

import numba
import numpy as np

from . import priors

_SCALE_BASE = priors.LOG2_S_MIN * 2**priors.LS_FRAC
_LAST_SCALE = priors.NUM_SCALES - 1
_FRACTIONS = 2**priors.MU_FRAC


@numba.njit(cache=True, nogil=True)
def add_component(out, low: int, weight, mu_floor: int, mu_frac: int, scale: int, half_widths, offsets, table,
                  prefix):
    """Add ``weight`` times one component's counts of the values low .. low + len(out) - 1 to ``out``,
    and return the sum of those counts. A value's count is the component's table row's count where the
    row reaches it, else 1; value 0's also holds the row's mass below 0, and 255's its mass above 255."""
    r = half_widths[scale]
    m = min(max(mu_floor, -r - 1), 256 + r)  # a row wholly beyond an end folds the same from here
    at = offsets[scale] + mu_frac * (2 * r + 2) + r - m  # value v's count is table[at + v] where reached
    width = out.shape[0]
    first = min(max(m - r - low, 0), width)  # the window's first value the row reaches
    stop = min(max(m + r + 1 - low, 0), width)  # and the first beyond it
    for j in range(first):
        out[j] += weight
    for j in range(first, stop):
        out[j] += weight * table[at + low + j]
    for j in range(stop, width):
        out[j] += weight
    inside = prefix[at + low + stop] - prefix[at + low + first] + width - (stop - first)
    centre = at + m
    if low == 0:
        below = min(max(-m - 1, -r - 1), r)  # the last offset below value 0
        folded = prefix[centre + below + 1] - prefix[centre - r]
        out[0] += weight * folded
        inside += folded
    if low + width == 256:
        above = min(max(256 - m, -r), r + 1)  # the first offset above value 255
        folded = prefix[centre + r + 1] - prefix[centre + above]
        out[width - 1] += weight * folded
        inside += folded
    return inside


@numba.njit(cache=True, nogil=True)
def component_total(mu_floor: int, mu_frac: int, scale: int, half_widths, offsets, prefix) -> int:
    """A component's counts summed over 0..255 (as ``mixture.value_totals``)."""
    r = half_widths[scale]
    m = min(max(mu_floor, -r - 1), 256 + r)
    centre = offsets[scale] + mu_frac * (2 * r + 2) + r
    reached = max(min(255, m + r) - max(0, m - r) + 1, 0)
    return prefix[centre + r + 1] - prefix[centre - r] + 256 - reached


@numba.njit(cache=True, nogil=True)
def distribution(mu16, ls8, weights, sizes, narrow_part: int, narrow_share: float, half_widths, offsets, table, prefix):
    """The arrays of a ``mixture.ChannelDistribution`` for means and scales (n, K) on their grids and
    integer weights (n, K), the samples in consecutive groups of ``sizes``: the components' mu_floor,
    mu_frac and scale index, each sample's low, reach and total count, where its row starts in the
    rows' buffer, and that buffer (float64: each group's rows, one after another, as wide as its
    window and one more)."""
    n, k = mu16.shape
    mu_floor = mu16 >> priors.MU_FRAC
    mu_frac = mu16 & (_FRACTIONS - 1)
    scale = np.minimum(np.maximum(ls8 - _SCALE_BASE, 0), _LAST_SCALE)
    want = np.empty(n, dtype=np.int64)
    main = np.empty(n, dtype=np.int64)
    for i in range(n):
        best = 0
        for c in range(1, k):
            if weights[i, c] > weights[i, best]:
                best = c
        main[i] = best
        want[i] = min(max(half_widths[scale[i, best]] // narrow_part, 2), 127)
    reach = np.empty(n, dtype=np.int64)
    row_at = np.empty(n, dtype=np.int64)
    start = at = 0
    for size in sizes:
        ordered = np.sort(want[start : start + size])
        r = ordered[int(narrow_share * (size - 1))]
        for i in range(start, start + size):
            reach[i] = r
            row_at[i] = at
            at += 2 * r + 2
        start += size
    low = np.empty(n, dtype=np.int64)
    totals = np.zeros(n, dtype=np.float64)
    buffer = np.zeros(at, dtype=np.float64)
    for i in range(n):
        width = 2 * reach[i] + 1
        low[i] = min(max(mu_floor[i, main[i]] - reach[i], 0), 255 - 2 * reach[i])
        row = buffer[row_at[i] : row_at[i] + width + 1]
        for c in range(k):
            w = np.float64(weights[i, c])  # exact: every count and sum is an integer below 2**53
            inside = add_component(row[:width], low[i], w, mu_floor[i, c], mu_frac[i, c], scale[i, c], half_widths,
                                   offsets, table, prefix)
            total = component_total(mu_floor[i, c], mu_frac[i, c], scale[i, c], half_widths, offsets, prefix)
            row[width] += w * (total - inside)
        totals[i] = row.sum()
    return mu_floor, mu_frac, scale, low, reach, totals, row_at, buffer


@numba.njit(cache=True, nogil=True)
def value_counts_of(values, mu_floor, mu_frac, scale, half_widths, offsets, table, prefix):
    """Each component's count (n, K) of each sample's value (as ``mixture.value_counts``)."""
    n, k = mu_floor.shape
    counts = np.empty((n, k), dtype=np.int64)
    one = np.empty(1, dtype=np.int64)
    for i in range(n):
        for c in range(k):
            one[0] = 0
            add_component(one, values[i], 1, mu_floor[i, c], mu_frac[i, c], scale[i, c], half_widths, offsets, table, prefix)
            counts[i, c] = one[0]
    return counts


@numba.njit(cache=True, nogil=True)
def outside_rows(index, weights, mu_floor, mu_frac, scale, low, width: int, half_widths, offsets, table, prefix):
    """For the samples ``index`` whose values fall outside their windows of ``width`` values from
    ``low``: the mixture's counts (m, 256 - width) float64 of the values outside, and those values."""
    m, k = len(index), mu_floor.shape[1]
    rows = np.zeros((m, 256 - width), dtype=np.float64)
    values = np.empty((m, 256 - width), dtype=np.int64)
    full = np.empty(256, dtype=np.int64)
    for a in range(m):
        i = index[a]
        for j in range(256 - width):
            values[a, j] = j + width if j >= low[i] else j
        for c in range(k):
            full[:] = 0
            add_component(full, 0, 1, mu_floor[i, c], mu_frac[i, c], scale[i, c], half_widths, offsets, table, prefix)
            for j in range(256 - width):
                rows[a, j] += weights[i, c] * full[values[a, j]]
    return rows, values


@numba.njit(cache=True, nogil=True)
def posterior(weights, counts, weight_bits: int):
    """weights * counts, each sample's shifted back below 2**weight_bits (as ``mixture.posterior_weights``)."""
    n, k = weights.shape
    out = weights * counts
    for i in range(n):
        top = out[i].max()
        bits = 0
        while top >> bits:
            bits += 1
        shift = max(bits - weight_bits, 0)
        for c in range(k):
            out[i, c] >>= shift
    return out
