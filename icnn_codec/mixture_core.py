"""The compiled loops under :mod:`icnn_codec.mixture`: a mixture's cumulative counts, and coding by them.

The decoder codes a line of a few dozen samples at a time, thousands of times per tile, so these
loops run compiled (numba). Nothing builds a row of counts: a component's counts of all values
below v (:func:`component_below`) take two reads of the tables' prefix sums, so the mixture's
cumulative count at any value is a sum over its few components, and the coder finds a symbol by
bisection (a few such sums) instead of summing the window. Integer arithmetic only, but for the
quantisation of cumulative counts to the coder's 2**PRECISION (one IEEE float64 product, floored:
correctly rounded everywhere).
"""
from __future__ import annotations

import numba
import numpy as np

from . import priors, rans

_SCALE_BASE = priors.LOG2_S_MIN * 2**priors.LS_FRAC
_LAST_SCALE = priors.NUM_SCALES - 1
_FRACTIONS = 2**priors.MU_FRAC
POW2_EIGHTHS = np.array([65536, 60097, 55109, 50535, 46341, 42495, 38968, 35734])  # round(2**16 * 2**(-i / 8))


@numba.njit(cache=True, nogil=True)
def component_weights(logits):
    """Integer weights (n, K) for base-2 logits on the 1/8 grid: 2**16 * 2**((l_k - max l) / 8), by a
    table of eight integers and shifts (no libm)."""
    n, k = logits.shape
    out = np.empty((n, k), dtype=np.int64)
    for p in range(n):
        top = logits[p].max()
        for j in range(k):
            d = top - logits[p, j]
            out[p, j] = POW2_EIGHTHS[d % 8] >> min(d // 8, 62)
    return out


# A component's table row, as the loops read it: (at, first, last, base, below, above, m, r): value
# v's count is table[at + v] where the row reaches v (first <= v <= last), 1 elsewhere; base is
# prefix[at + first]; below and above are the row's masses beyond 0 and 255 (folded onto them);
# m is its mean's floor (folded into -r - 1 .. 256 + r), r its half width.
AT, FIRST, LAST, BASE, BELOW, ABOVE, MEAN, HALF = range(8)


@numba.njit(cache=True, nogil=True)
def rows(mu16, ls8, half_widths, offsets, prefix):
    """Each component's table row (n, K, 8) for means and log2 scales (n, K) on their grids."""
    n, k = mu16.shape
    out = np.empty((n, k, 8), dtype=np.int64)
    for i in range(n):
        for c in range(k):
            scale = min(max(ls8[i, c] - _SCALE_BASE, 0), _LAST_SCALE)
            r = half_widths[scale]
            m = min(max(mu16[i, c] >> priors.MU_FRAC, -r - 1), 256 + r)  # a row wholly beyond an end folds the same
            centre = offsets[scale] + (mu16[i, c] & (_FRACTIONS - 1)) * (2 * r + 2) + r  # offset 0's count
            at = centre - m
            first, last = max(0, m - r), min(255, m + r)
            below = min(max(-m - 1, -r - 1), r)  # the last offset below value 0
            above = min(max(256 - m, -r), r + 1)  # the first offset above value 255
            out[i, c, AT], out[i, c, FIRST], out[i, c, LAST], out[i, c, BASE] = at, first, last, prefix[at + first]
            out[i, c, BELOW] = prefix[centre + below + 1] - prefix[centre - r]
            out[i, c, ABOVE] = prefix[centre + r + 1] - prefix[centre + above]
            out[i, c, MEAN], out[i, c, HALF] = m, r
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def component_below(v: int, components, i: int, c: int, prefix) -> int:
    """Sample i's component c's counts of the values 0 .. v - 1 (0 <= v <= 256). A value's count is its
    table row's count where the row reaches it, else 1; value 0's also holds the row's mass below 0,
    and 255's its mass above 255. (Read field by field: a view of the row would cost more.)"""
    if v <= 0:
        return 0
    first = components[i, c, FIRST]
    top = min(components[i, c, LAST], v - 1)
    total = v + components[i, c, BELOW]
    if top >= first:
        total += prefix[components[i, c, AT] + top + 1] - components[i, c, BASE] - (top - first + 1)
    if v == 256:
        total += components[i, c, ABOVE]
    return total


@numba.njit(cache=True, nogil=True, inline="always")
def component_count(v: int, components, i: int, c: int, prefix) -> int:
    """Sample i's component c's count of value v (0..255): ``component_below(v + 1) -
    component_below(v)``, read directly (its table row's count where the row reaches v, else 1; value
    0 also holds the mass below 0, 255 the mass above 255)."""
    count = 1
    if components[i, c, FIRST] <= v <= components[i, c, LAST]:
        count = prefix[components[i, c, AT] + v + 1] - prefix[components[i, c, AT] + v]
    if v == 0:
        count += components[i, c, BELOW]
    if v == 255:
        count += components[i, c, ABOVE]
    return count


@numba.njit(cache=True, nogil=True, inline="always")
def mixture_count(i: int, v: int, weights, components, prefix) -> int:
    """Sample i's mixture's count of value v: its components' under their weights."""
    total = 0
    for c in range(weights.shape[1]):
        total += weights[i, c] * component_count(v, components, i, c, prefix)
    return total


@numba.njit(cache=True, nogil=True)
def mixture_below(i: int, v: int, weights, components, prefix) -> int:
    """Sample i's mixture's counts of the values 0 .. v - 1: its components' under their weights
    (exact: below 2**44)."""
    total = 0
    for c in range(weights.shape[1]):
        total += weights[i, c] * component_below(v, components, i, c, prefix)
    return total


@numba.njit(cache=True, nogil=True, inline="always")
def value_mass(i: int, weights, counts) -> int:
    """Sample i's mixture's count of its value: its components' counts of it (``counts``, (n, K))
    under their weights."""
    total = 0
    for c in range(weights.shape[1]):
        total += weights[i, c] * counts[i, c]
    return total


@numba.njit(cache=True, nogil=True)
def windows(weights, components, sizes, narrow_part: int, narrow_share: float):
    """Each sample's window (low, reach): around the
    heaviest component's mean, as wide as a third of its row either side for NARROW_SHARE of the
    group's samples (the groups: consecutive runs of ``sizes``), within 0..255."""
    n, k = weights.shape
    want, main = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    for i in range(n):
        best = 0
        for c in range(1, k):
            if weights[i, c] > weights[i, best]:
                best = c
        main[i] = best
        want[i] = min(max(components[i, best, HALF] // narrow_part, 2), 127)
    reach = np.empty(n, dtype=np.int64)
    first = 0
    for size in sizes:
        reach[first : first + size] = np.sort(want[first : first + size])[int(narrow_share * (size - 1))]
        first += size
    low = np.empty(n, dtype=np.int64)
    for i in range(n):
        low[i] = min(max(components[i, main[i], MEAN] - reach[i], 0), 255 - 2 * reach[i])
    return low, reach


@numba.njit(cache=True, nogil=True)
def _quantised(count: int, total: int, symbols: int, j: int) -> int:
    """The coder's cumulative frequency before symbol j of ``symbols``, whose cumulative count is
    ``count`` of ``total``: j + floor(count (2**PRECISION - symbols) / total), the last symbol's end
    2**PRECISION. Every symbol gets at least 1."""
    if j >= symbols:
        return rans.TOTAL
    return j + np.int64(count * ((rans.TOTAL - symbols) / total))


@numba.njit(cache=True, nogil=True)
def _masses(i: int, width: int, outside: bool, low, weights, components, prefix) -> tuple[int, int, int]:
    """Sample i's mixture's total count, its count below the window and (for the values outside the
    window) the window's own count."""
    total = mixture_below(i, 256, weights, components, prefix)
    below = mixture_below(i, low[i], weights, components, prefix)
    inside = mixture_below(i, low[i] + width, weights, components, prefix) - below if outside else 0
    return total, below, inside


@numba.njit(cache=True, nogil=True)
def _before(i: int, j: int, width: int, outside: bool, low, weights, components, prefix, masses) -> int:
    """The coder's cumulative frequency before symbol j of sample i: among its window symbols (the
    window's values low .. low + width - 1, then one for all the others), or among the values outside
    its window, in order (``outside``); ``masses``: :func:`_masses`."""
    total, below, inside = masses
    if not outside:
        count = total if j > width else mixture_below(i, low[i] + j, weights, components, prefix) - below
        return _quantised(count, total, width + 1, j)
    if j >= 256 - width:
        return rans.TOTAL
    count = mixture_below(i, j if j <= low[i] else j + width, weights, components, prefix) - (0 if j <= low[i] else inside)
    return _quantised(count, total - inside, 256 - width, j)


@numba.njit(cache=True, nogil=True)
def _find_window(slot: int, i: int, width: int, low, weights, components, prefix, masses) -> tuple[int, int, int]:
    """The window symbol whose frequencies hold ``slot``, with its start and frequency (as
    :func:`_before` gives them). A window's values cluster at its centre (the main logistic's mean),
    so the search starts there with one mixture sum and walks out a value at a time, each step one
    value's count added to the cumulative one (the same integers :func:`_before` sums)."""
    total, below, _ = masses
    j = (width - 1) >> 1
    cum = mixture_below(i, low[i] + j, weights, components, prefix)  # the counts below value low + j
    q = _quantised(cum - below, total, width + 1, j)
    if q <= slot:
        while j < width:
            cum += mixture_count(i, low[i] + j, weights, components, prefix)
            end = _quantised(cum - below, total, width + 1, j + 1)
            if end > slot:
                return j, q, end - q
            j, q = j + 1, end
        return width, q, rans.TOTAL - q  # the symbol for every value outside the window
    while True:
        j -= 1
        cum -= mixture_count(i, low[i] + j, weights, components, prefix)
        start = _quantised(cum - below, total, width + 1, j)
        if start <= slot:
            return j, start, q - start
        q = start


@numba.njit(cache=True, nogil=True)
def _find_outside(slot: int, i: int, width: int, low, weights, components, prefix, masses) -> tuple[int, int, int]:
    """The symbol among the values outside the window whose frequencies hold ``slot``, with its start
    and frequency, by bisection (each probe a whole mixture sum; the symbol's end is kept from the
    probe that found it rather than summed again)."""
    lo, hi = 0, 256 - width
    start, end = 0, rans.TOTAL  # the cumulative frequencies before lo and before hi
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        q = _before(i, mid, width, True, low, weights, components, prefix, masses)
        if q <= slot:
            lo, start = mid, q
        else:
            hi, end = mid, q
    return lo, start, end - start


@numba.njit(cache=True, nogil=True)
def value_counts_of(values, components, prefix):
    """Each component's count (n, K) of each sample's value."""
    n, k = components.shape[:2]
    counts = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        for c in range(k):
            counts[i, c] = component_count(values[i], components, i, c, prefix)
    return counts


@numba.njit(cache=True, nogil=True)
def totals(weights, components, prefix):
    """Each sample's mixture's count of all of 0..255."""
    out = np.empty(weights.shape[0], dtype=np.int64)
    for i in range(weights.shape[0]):
        out[i] = mixture_below(i, 256, weights, components, prefix)
    return out


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


@numba.njit(cache=True, nogil=True)
def colour_symbols(values, weights, components, low, reach, prefix):
    """What the coder codes for each sample's value (as :func:`pop_colour` pops it): the window
    symbol's start and frequency (n,), and for a value outside its window that value's among the
    others (frequency 0: none; a 255-wide window leaves one value, which needs no symbol)."""
    n = len(values)
    starts, freqs = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    outside_starts, outside_freqs = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for i in range(n):
        width = 2 * reach[i] + 1
        s = values[i] - low[i]
        outside = s < 0 or s >= width
        masses = _masses(i, width, outside and width < 255, low, weights, components, prefix)
        if outside:
            s = width
            if width < 255:
                j = values[i] if values[i] < low[i] else values[i] - width
                outside_starts[i] = _before(i, j, width, True, low, weights, components, prefix, masses)
                outside_freqs[i] = _before(i, j + 1, width, True, low, weights, components, prefix, masses) - outside_starts[i]
        if outside:
            starts[i] = _before(i, s, width, False, low, weights, components, prefix, masses)
            freqs[i] = rans.TOTAL - starts[i]
        else:  # the symbol's end from its value's count, as pop_colour's walk finds it
            total, below, _ = masses
            cum = mixture_below(i, values[i], weights, components, prefix)
            starts[i] = _quantised(cum - below, total, width + 1, s)
            cum += mixture_count(i, values[i], weights, components, prefix)
            freqs[i] = _quantised(cum - below, total, width + 1, s + 1) - starts[i]
    return starts, freqs, outside_starts, outside_freqs


@numba.njit(cache=True, nogil=True)
def pop_colour(means, ls8, weights, sizes, narrow_part: int, narrow_share: float, half_widths, offsets, prefix, words,
               ends, states, ats):
    """Decode one colour of a line: group g (sizes[g] samples, a tile's) off stream g, which ends at
    words[ends[g]], its decoder at states[g] with its next word at[g]. For each group, the window
    symbol of every sample, then the values of those outside their windows. The values (n,) and each
    component's count of them (n, K)."""
    components = rows(means, ls8, half_widths, offsets, prefix)
    low, reach = windows(weights, components, sizes, narrow_part, narrow_share)
    n = means.shape[0]
    values = np.empty(n, dtype=np.int64)
    first = 0
    for g in range(len(sizes)):
        state, next_word, end = states[g : g + 1], ats[g : g + 1], ends[g]
        width = 2 * reach[first] + 1
        for outside in (False, True):
            for i in range(first, first + sizes[g]):
                if outside and (values[i] != low[i] + width or width == 255):
                    if values[i] == low[i] + width:  # the one value a 255-wide window leaves
                        values[i] = 255 if low[i] == 0 else 0
                    continue
                masses = _masses(i, width, outside, low, weights, components, prefix)
                if outside:
                    s, start, freq = _find_outside(rans.slot(state), i, width, low, weights, components, prefix, masses)
                else:
                    s, start, freq = _find_window(rans.slot(state), i, width, low, weights, components, prefix, masses)
                rans.advance(words, end, state, next_word, start, freq)
                values[i] = (s if s < low[i] else s + width) if outside else low[i] + s
        first += sizes[g]
    return values, value_counts_of(values, components, prefix)
