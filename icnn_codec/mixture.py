"""Exact mixtures of discretised logistics over the values 0..255, for the local AR's samples.

Each component is one of the codec's integer table rows (:class:`icnn_codec.priors.LogisticTables`),
cut to 0..255 with the mass beyond either end folded onto the end value; the components are mixed by
integer weights from base-2 logits on a 1/8 grid (a table of eight integers and shifts, no libm).
Each colour is coded in two steps: a narrow window of values around the heaviest component's mean,
with one more count for the mass outside it, then, for the few samples outside, their value among
the others. Integer sums only: the decoder builds exactly the encoder's counts.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import priors
from .local_ar import ExactOutputs

POW2_EIGHTHS = np.array([65536, 60097, 55109, 50535, 46341, 42495, 38968, 35734])  # round(2**16 * 2**(-i / 8))
WEIGHT_BITS = 17  # components' weights are integers below 2**17


def component_weights(logits: np.ndarray) -> np.ndarray:
    """Integer weights (n, K) for base-2 logits on the 1/8 grid: 2**16 * 2**((l_k - max l) / 8), by a
    table of eight integers and shifts (no libm)."""
    d = logits.max(1, keepdims=True) - logits
    return POW2_EIGHTHS[d % 8] >> np.minimum(d // 8, 62)


PAD = 258  # counts of 1 either side of each padded table row: every value 0..255 falls in it


def padded_rows(tables: priors.LogisticTables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tables' rows without their escapes, each with PAD counts of 1 either side, in one flat int64
    array; where each (scale, fraction) row's offset 0 lies in it, (NUM_SCALES, 16); and sums over any
    run of the tables' counts (prefix[b] - prefix[a]). Made once per tables object."""
    if not hasattr(tables, "padded"):
        parts, zero, at = [], np.zeros((priors.NUM_SCALES, 2**priors.MU_FRAC), dtype=np.int64), 0
        for j, r in enumerate(tables.half_widths):
            block = tables.block(j)[:, : 2 * r + 1].astype(np.int64)
            ones = np.ones((len(block), PAD), dtype=np.int64)
            rows = np.concatenate([ones, block, ones], axis=1)
            zero[j] = at + np.arange(len(block)) * rows.shape[1] + PAD + r
            parts.append(rows.ravel())
            at += rows.size
        tables.padded = (np.concatenate(parts), zero, np.concatenate([[0], np.cumsum(tables.counts, dtype=np.int64)]))
    return tables.padded


def value_counts(params: priors.ExactParams, tables: priors.LogisticTables, low: np.ndarray, width: int) -> np.ndarray:
    """Each sample's counts (n, width), int64, of the values low .. low + width - 1 in its distribution
    over 0..255 from the codec's integer table row for its parameters: the row cut to 0..255, the
    counts beyond either end added to the end value's, every other value a count of 1, the row's escape
    dropped. Integer sums only, so an exact coder builds it everywhere."""
    padded, zero, prefix = padded_rows(tables)
    r = tables.half_widths[params.scale]
    m = np.minimum(np.maximum(params.mu_floor, -r - 1), 256 + r)  # a row wholly beyond an end folds the same from here
    rows = padded[(zero[params.scale, params.mu_frac] + low - m)[:, None] + np.arange(width)]
    centre = tables.offsets[params.scale] + params.mu_frac * (2 * r + 2) + r  # offset 0's count in tables.counts
    below = np.minimum(np.maximum(-m - 1, -r - 1), r)  # the last offset below value 0
    above = np.minimum(np.maximum(256 - m, -r), r + 1)  # the first offset above value 255
    rows[:, 0] += np.where(low == 0, prefix[centre + below + 1] - prefix[centre - r], 0)
    rows[:, -1] += np.where(low + width == 256, prefix[centre + r + 1] - prefix[centre + above], 0)
    return rows


def value_totals(params: priors.ExactParams, tables: priors.LogisticTables) -> np.ndarray:
    """The sum of :func:`value_counts` over all of 0..255 (n,): the whole row, and 1 for each value
    the row does not reach."""
    _, _, prefix = padded_rows(tables)
    r = tables.half_widths[params.scale]
    m = np.minimum(np.maximum(params.mu_floor, -r - 1), 256 + r)
    centre = tables.offsets[params.scale] + params.mu_frac * (2 * r + 2) + r
    reached = np.maximum(np.minimum(255, m + r) - np.maximum(0, m - r) + 1, 0)
    return prefix[centre + r + 1] - prefix[centre - r] + 256 - reached


NARROW_PART = 3  # a window reaches this part of its main logistic's table row either side of its mean (about 4 s)
NARROW_SHARE = 0.9  # and the window of a tile's line is as wide as this share of its samples want


def take(params: priors.ExactParams, index: np.ndarray) -> priors.ExactParams:
    return priors.ExactParams(params.mu_floor[index], params.mu_frac[index], params.scale[index])


def _flat(params: priors.ExactParams) -> priors.ExactParams:
    return priors.ExactParams(params.mu_floor.ravel(), params.mu_frac.ravel(), params.scale.ravel())


class ChannelDistribution(NamedTuple):
    """One colour of n pixels, coded in two steps. First the mixture's counts (float64 integers, each
    sample's row as wide as its window, 2 reach + 2) over a narrow window of values from ``low``, then
    one count for all the values outside it: the mixture's mass there. A value outside is then coded
    among those values by their counts (:meth:`beyond`). The two steps give each value the same share
    as one row over 0..255. The samples come in groups (a tile's line), each with its own reach: what
    one tile's code is never depends on the tiles decoded beside it."""

    rows: np.ndarray  # (n, 2 max(reach) + 2): sample i's row is rows[i, : 2 reach[i] + 2]
    parts: np.ndarray  # (n, K, 2 max(reach) + 2): each component's counts, before the weights
    components: priors.ExactParams  # (n, K)
    weights: np.ndarray
    low: np.ndarray
    reach: np.ndarray  # (n,)
    tables: priors.LogisticTables

    def group_rows(self, part: slice) -> np.ndarray:
        """The rows of one group's samples, cut to its window."""
        return np.ascontiguousarray(self.rows[part, : 2 * int(self.reach[part.start]) + 2])

    def symbols(self, values: np.ndarray) -> np.ndarray:
        """What the first step codes for each value: its place in the window, or the last symbol."""
        return np.where(self.outside(values), 2 * self.reach + 1, values - self.low)

    def outside(self, values: np.ndarray) -> np.ndarray:
        """Which values fall outside the window (coded as the last symbol, then among the others)."""
        at = values - self.low
        return (at < 0) | (at > 2 * self.reach)

    def counts_of(self, values: np.ndarray) -> np.ndarray:
        """Each component's count (n, K) of the pixels' values."""
        outside = self.outside(values)
        counts = self.parts[np.arange(len(values)), :, np.where(outside, 0, values - self.low)]
        if outside.any():
            k = self.parts.shape[1]
            escaped = _flat(take(self.components, outside))
            counts[outside] = value_counts(escaped, self.tables, np.repeat(values[outside], k), 1).reshape(-1, k)
        return counts

    def beyond(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the samples ``index`` of one group (values outside the window): the mixture's counts of
        the values outside it, (m, 255 - 2 reach) float64, and those values."""
        width = 2 * int(self.reach[index[0]]) + 1
        low = self.low[index]
        rest = np.arange(256 - width)[None]
        values = rest + np.where(rest >= low[:, None], width, 0)
        k = self.parts.shape[1]
        counts = value_counts(_flat(take(self.components, index)), self.tables, np.zeros(len(index) * k, dtype=np.int64), 256)
        full = (self.weights[index, :, None] * counts.reshape(len(index), k, 256)).sum(1)
        return np.take_along_axis(full, values, axis=1).astype(np.float64), values


def group_reach(want: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Each sample's reach (n,): the NARROW_SHARE quantile (the sorted value at floor(share (m - 1)))
    of what the m samples of its group want, the groups consecutive runs of ``sizes``."""
    ids = np.repeat(np.arange(len(sizes)), sizes)
    ordered = want[np.lexsort((want, ids))]
    starts = np.cumsum(sizes) - sizes
    return np.repeat(ordered[starts + (NARROW_SHARE * (sizes - 1)).astype(np.int64)], sizes)


def channel_distribution(means: np.ndarray, ls8: np.ndarray, weights: np.ndarray, tables: priors.LogisticTables,
                         sizes: np.ndarray | None = None) -> ChannelDistribution:
    """The mixture of the components (means and scales (n, K)) under integer ``weights`` (n, K). Its
    window: around each sample's heaviest component's mean, a third of its table row either side, as
    wide for all of a group's samples as NARROW_SHARE of them want (what falls outside costs a second,
    rarer step); the groups are consecutive runs of ``sizes`` samples (None: one). Integers only: the
    window is part of what the decoder must find as the encoder did."""
    params = priors.ExactParams.from_grid(means, ls8)
    n, k = means.shape
    at = np.arange(n)
    main = weights.argmax(1)
    want = np.minimum(np.maximum(tables.half_widths[params.scale[at, main]] // NARROW_PART, 2), 127)
    reach = group_reach(want, np.array([n]) if sizes is None else sizes)
    low = np.minimum(np.maximum(params.mu_floor[at, main] - reach, 0), 255 - 2 * reach)
    flat = _flat(params)
    totals = value_totals(flat, tables).reshape(n, k)
    reaches = np.unique(reach)
    parts = np.zeros((n, k, 2 * int(reaches[-1]) + 2), dtype=np.int64)
    for r in reaches:  # the samples of one reach at a time: rows as wide as their window
        index = np.flatnonzero(reach == r) if len(reaches) > 1 else at
        samples = flat if len(reaches) == 1 else take(flat, (index[:, None] * k + np.arange(k)).ravel())
        width = 2 * int(r) + 1
        inside = value_counts(samples, tables, np.repeat(low[index], k), width).reshape(-1, k, width)
        parts[index, :, :width] = inside
        parts[index, :, width] = totals[index] - inside.sum(2)
    rows = (weights[:, :, None] * parts).sum(1)
    return ChannelDistribution(rows.astype(np.float64), parts, params, weights, low, reach, tables)


def posterior_weights(weights: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The components' weights given a coded value (their counts of it), shifted back below 2**17."""
    w = weights * counts
    _, bits = np.frexp(w.max(1).astype(np.float64))  # exact: w < 2**41
    return w >> np.maximum(bits.astype(np.int64) - WEIGHT_BITS, 0)[:, None]


def pixel_distributions(values: np.ndarray, outputs: ExactOutputs, tables: priors.LogisticTables
                        ) -> list[tuple[ChannelDistribution, np.ndarray]]:
    """For pixels whose values (n, 3) are known: each colour's distribution, in coding order (red, green
    given red, blue given both), with the mixture's count of the value."""
    weights, out = component_weights(outputs.logits), []
    for c in range(3):
        dist = channel_distribution(outputs.means(values - 128, c), outputs.ls8[:, :, c], weights, tables)
        counts = dist.counts_of(values[:, c])
        out.append((dist, (weights * counts).sum(1)))
        weights = posterior_weights(weights, counts)
    return out


def pixel_code_length(values: np.ndarray, outputs: ExactOutputs, tables: priors.LogisticTables, chunk: int = 2**14
                      ) -> np.ndarray:
    """Bits (n, 3) of each sample of pixels (n, 3) as the exact coder codes them (up to the coder's
    own rounding of the counts)."""
    bits = np.empty(values.shape)
    for i in range(0, len(values), chunk):
        part = slice(i, i + chunk)
        for c, (dist, count) in enumerate(pixel_distributions(values[part], outputs.take(part), tables)):
            bits[part, c] = np.log2(dist.rows.sum(1)) - np.log2(count)
    return bits


