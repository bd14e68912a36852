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

from . import mixture_core, priors
from .local_ar import ExactOutputs

POW2_EIGHTHS = np.array([65536, 60097, 55109, 50535, 46341, 42495, 38968, 35734])  # round(2**16 * 2**(-i / 8))
WEIGHT_BITS = 17  # components' weights are integers below 2**17


def component_weights(logits: np.ndarray) -> np.ndarray:
    """Integer weights (n, K) for base-2 logits on the 1/8 grid: 2**16 * 2**((l_k - max l) / 8), by a
    table of eight integers and shifts (no libm)."""
    d = logits.max(1, keepdims=True) - logits
    return POW2_EIGHTHS[d % 8] >> np.minimum(d // 8, 62)


def _table_arrays(tables: priors.LogisticTables) -> tuple[np.ndarray, ...]:
    """What the compiled loops read of the tables: half widths, block offsets, counts, prefix sums."""
    return tables.half_widths, tables.offsets, tables.counts, tables.prefix


NARROW_PART = 3  # a window reaches this part of its main logistic's table row either side of its mean (about 4 s)
NARROW_SHARE = 0.9  # and the window of a tile's line is as wide as this share of its samples want


class ChannelDistribution(NamedTuple):
    """One colour of n pixels, coded in two steps. First the mixture's counts (float64 integers) over a
    narrow window of 2 reach + 1 values from ``low``, then one count for all the values outside it:
    the mixture's mass there. A value outside is then coded among those values by their counts
    (:meth:`beyond`). The two steps give each value the same share as one row over 0..255. The
    samples come in groups (a tile's line), each with its own reach: what one tile's code is never
    depends on the tiles decoded beside it."""

    buffer: np.ndarray  # every sample's row, 2 reach + 2 wide, one after another
    row_at: np.ndarray  # (n,) where each sample's row starts in it
    totals: np.ndarray  # (n,) each row's sum: the mixture's counts of all of 0..255
    components: priors.ExactParams  # (n, K)
    weights: np.ndarray
    low: np.ndarray
    reach: np.ndarray  # (n,)
    tables: priors.LogisticTables

    def group_rows(self, part: slice) -> np.ndarray:
        """The rows (m, 2 reach + 2) of one group's samples (a view of the buffer)."""
        width, at = 2 * int(self.reach[part.start]) + 2, int(self.row_at[part.start])
        return self.buffer[at : at + (part.stop - part.start) * width].reshape(-1, width)

    def row(self, i: int) -> np.ndarray:
        return self.buffer[self.row_at[i] : self.row_at[i] + 2 * self.reach[i] + 2]

    def symbols(self, values: np.ndarray) -> np.ndarray:
        """What the first step codes for each value: its place in the window, or the last symbol."""
        return np.where(self.outside(values), 2 * self.reach + 1, values - self.low)

    def outside(self, values: np.ndarray) -> np.ndarray:
        """Which values fall outside the window (coded as the last symbol, then among the others)."""
        at = values - self.low
        return (at < 0) | (at > 2 * self.reach)

    def counts_of(self, values: np.ndarray) -> np.ndarray:
        """Each component's count (n, K) of the pixels' values."""
        p = self.components
        return mixture_core.value_counts_of(np.ascontiguousarray(values, dtype=np.int64), p.mu_floor, p.mu_frac, p.scale,
                                            *_table_arrays(self.tables))

    def beyond(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the samples ``index`` of one group (values outside the window): the mixture's counts of
        the values outside it, (m, 255 - 2 reach) float64, and those values."""
        p = self.components
        return mixture_core.outside_rows(index, self.weights, p.mu_floor, p.mu_frac, p.scale, self.low,
                                         2 * int(self.reach[index[0]]) + 1, *_table_arrays(self.tables))


def channel_distribution(means: np.ndarray, ls8: np.ndarray, weights: np.ndarray, tables: priors.LogisticTables,
                         sizes: np.ndarray | None = None) -> ChannelDistribution:
    """The mixture of the components (means and scales (n, K)) under integer ``weights`` (n, K). Its
    window: around each sample's heaviest component's mean, a third of its table row either side, as
    wide for all of a group's samples as NARROW_SHARE of them want (what falls outside costs a second,
    rarer step); the groups are consecutive runs of ``sizes`` samples (None: one). Integers only: the
    window is part of what the decoder must find as the encoder did."""
    weights = np.ascontiguousarray(weights, dtype=np.int64)
    mu_floor, mu_frac, scale, low, reach, totals, row_at, buffer = mixture_core.distribution(
        np.ascontiguousarray(means, dtype=np.int64), np.ascontiguousarray(ls8, dtype=np.int64), weights,
        np.array([len(means)]) if sizes is None else np.asarray(sizes, dtype=np.int64),
        NARROW_PART, NARROW_SHARE, *_table_arrays(tables))
    return ChannelDistribution(buffer, row_at, totals, priors.ExactParams(mu_floor, mu_frac, scale), weights, low, reach,
                               tables)


def posterior_weights(weights: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The components' weights given a coded value (their counts of it), shifted back below 2**17."""
    return mixture_core.posterior(np.ascontiguousarray(weights, dtype=np.int64), counts, WEIGHT_BITS)


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
            bits[part, c] = np.log2(dist.totals) - np.log2(count)
    return bits


