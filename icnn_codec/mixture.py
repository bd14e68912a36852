"""Exact mixtures of discretised logistics over the values 0..255, for the local AR's samples.

Each component is one of the codec's integer table rows (:class:`icnn_codec.priors.LogisticTables`),
cut to 0..255 with the mass beyond either end folded onto the end value; the components are mixed by
integer weights from base-2 logits on a 1/8 grid (a table of eight integers and shifts, no libm).
Each colour is coded in two steps: a narrow window of values around the heaviest component's mean,
with one more symbol for the mass outside it, then, for the few samples outside, their value among
the others. Integer sums only: the decoder finds exactly the encoder's counts.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import mixture_core, priors
from .local_ar import ExactOutputs, per_colour
from .wavefront_core import code_lengths  # compiled beside the decoder, whose colour means it shares

WEIGHT_BITS = 17  # components' weights are integers below 2**17


def component_weights(logits: np.ndarray) -> np.ndarray:
    """Integer weights (n, K) for base-2 logits on the 1/8 grid: 2**16 * 2**((l_k - max l) / 8), by a
    table of eight integers and shifts (no libm)."""
    return mixture_core.component_weights(_int64(logits))


NARROW_PART = 3  # a window reaches this part of its main logistic's table row either side of its mean (about 4 s)
NARROW_SHARE = 0.9  # and the window of a tile's line is as wide as this share of its samples want


def _int64(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


class ChannelDistribution(NamedTuple):
    """One colour of n pixels, coded in two steps: first a symbol among the 2 reach + 1 values of a
    narrow window from ``low`` and one symbol for all the values outside it (the mixture's mass
    there), then for a value outside, its place among those values. The two steps give each value
    the same share as the mixture over 0..255 (up to the coder's quantisation). The samples come in
    groups (a tile's line), each with its own reach: what one tile's code is never depends on the
    tiles decoded beside it."""

    components: np.ndarray  # (n, K, 8): each component's table row (see mixture_core.rows)
    weights: np.ndarray  # (n, K)
    low: np.ndarray  # (n,)
    reach: np.ndarray  # (n,)
    tables: priors.LogisticTables

    def outside(self, values: np.ndarray) -> np.ndarray:
        """Which values fall outside the window."""
        at = values - self.low
        return (at < 0) | (at > 2 * self.reach)

    def counts_of(self, values: np.ndarray) -> np.ndarray:
        """Each component's count (n, K) of the pixels' values."""
        return mixture_core.value_counts_of(_int64(values), self.components, self.tables.prefix)

    def totals(self) -> np.ndarray:
        """Each sample's mixture's count of all of 0..255 (n,)."""
        return mixture_core.totals(self.weights, self.components, self.tables.prefix)

    def cumulative(self, i: int) -> np.ndarray:
        """Sample i's mixture's counts of the values below each v = 0..256 (257,)."""
        return np.array([mixture_core.mixture_below(i, v, self.weights, self.components, self.tables.prefix)
                         for v in range(257)])

    def coded(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What the coder codes for each value (as :func:`icnn_codec.mixture_core.pop_colour` pops them): its window symbol's
        start and frequency out of 2**rans.PRECISION (n,), and for a value outside the window its
        place among the others (frequency 0: none)."""
        return mixture_core.colour_symbols(_int64(values), self.weights, self.components, self.low, self.reach,
                                           self.tables.prefix)


def channel_distribution(means: np.ndarray, ls8: np.ndarray, weights: np.ndarray, tables: priors.LogisticTables,
                         sizes: np.ndarray | None = None) -> ChannelDistribution:
    """The mixture of the components (means and scales (n, K)) under integer ``weights`` (n, K). Its
    window: around each sample's heaviest component's mean, a third of its table row either side, as
    wide for all of a group's samples as NARROW_SHARE of them want (what falls outside costs a second,
    rarer step); the groups are consecutive runs of ``sizes`` samples (None: one). Integers only: the
    window is part of what the decoder must find as the encoder did."""
    weights = _int64(weights)
    components = mixture_core.rows(_int64(means), _int64(ls8), tables.half_widths, tables.offsets, tables.prefix)
    sizes = np.array([len(means)]) if sizes is None else _int64(sizes)
    low, reach = mixture_core.windows(weights, components, sizes, NARROW_PART, NARROW_SHARE)
    return ChannelDistribution(components, weights, low, reach, tables)


def posterior_weights(weights: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The components' weights given a coded value (their counts of it), shifted back below 2**17."""
    return mixture_core.posterior(_int64(weights), counts, WEIGHT_BITS)


def pixel_code_length(values: np.ndarray, outputs: ExactOutputs, tables: priors.LogisticTables,
                      scale: np.ndarray | int = 0, shift: np.ndarray | int = 0) -> np.ndarray:
    """Bits (n, 3) of each sample of pixels (n, 3) as the exact coder codes them (up to the coder's
    own rounding of the counts): each colour in coding order (red, green given red, blue given both),
    its scales and means moved by a plane's adjustment (``scale``, ``shift``: one for all colours or
    one per colour, as :meth:`ExactOutputs.adjusted`)."""
    return code_lengths(_int64(values), *ExactOutputs._contiguous(*outputs), per_colour(scale), per_colour(shift),
                        WEIGHT_BITS, tables.half_widths, tables.offsets, tables.prefix)
