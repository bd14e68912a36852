"""The repeat component: green and blue as the pixel to the left had them, relative to the colour before.

In calm parts of a photograph, and wherever chroma went through JPEG's subsampling, the difference
between a pixel's colours is often exactly its left neighbour's: green - red and blue - green repeat
(on the validation split's calm photographs for two pixels in three). The network's logistics and
the tile predictor's means are smooth, so they spread such a sample's mass over two or three values;
this component puts nearly all of its own on the one value the repetition gives, x_c(W) - x_{c-1}(W)
+ x_{c-1}, as the narrowest logistic of the tables (about 96 % on that value).

Its share of each mixture is learnt as a tile is coded, per colour and per context (how much the
colour difference varies among the decoded neighbours W, N, NW, NE): after each sample, the share
moves 1/2**RATE_SHIFT of the way to the component's posterior share of the coded value's mass (one
step of online EM). A pixel's weight for it is the other components' weights' sum times share / (1 -
share). Integer arithmetic throughout; the lines of a plane are the unit, as for
:mod:`icnn_codec.adaptive`: a line's pixels all take the shares as the lines before left them, then
update them in the line's order. Red has none (the repetition there is rare and the component gained
0.07 % in the ablation).
"""
from __future__ import annotations

import numba
import numpy as np

from . import priors

CONTEXTS = 16
SHARE_ONE = 2**16  # shares are on a 2**-16 grid
SHARE_START = 6554  # about 0.1
SHARE_LOW, SHARE_HIGH = 64, SHARE_ONE - 1024
RATE_SHIFT = 5
LOG2_SCALE8 = int(priors.ls_bounds_q()[0])  # the tables' narrowest logistic
_POSTERIOR_BITS = 40  # a posterior's mass and total are shifted below this before the division


@numba.njit(cache=True, nogil=True)
def new_shares(planes: int) -> np.ndarray:
    """Fresh shares (planes, 3 colours, CONTEXTS) int64 (red's unused)."""
    return np.full((planes, 3, CONTEXTS), SHARE_START, dtype=np.int64)


@numba.njit(cache=True, nogil=True, inline="always")
def difference(canvas, c: int, y: int, x: int) -> int:
    """Colour c less colour c - 1 at (y, x) of a canvas of centred samples (colours first, zero
    outside the tile)."""
    return canvas[c, y, x] - canvas[c - 1, y, x]


@numba.njit(cache=True, nogil=True, inline="always")
def context(canvas, c: int, y: int, x: int) -> int:
    """A pixel's context for colour c: |W - N| + |N - NW| + |NE - N| of the neighbours' colour
    differences, at most CONTEXTS - 1."""
    west, north = difference(canvas, c, y, x - 1), difference(canvas, c, y - 1, x)
    north_west, north_east = difference(canvas, c, y - 1, x - 1), difference(canvas, c, y - 1, x + 1)
    return min(abs(west - north) + abs(north - north_west) + abs(north_east - north), CONTEXTS - 1)


@numba.njit(cache=True, nogil=True, inline="always")
def mean16(canvas, c: int, y: int, x: int, earlier: int) -> int:
    """The repeated value of colour c on the means' 1/16 grid: W's colour difference plus the pixel's
    own colour c - 1 (``earlier``, centred), within 0..255."""
    value = difference(canvas, c, y, x - 1) + earlier + 128
    return min(max(value, 0), 255) * 2**priors.MU_FRAC


@numba.njit(cache=True, nogil=True, inline="always")
def weight(share: int, others: int) -> int:
    """The component's weight beside the other components' weights' sum ``others``."""
    return others * share // (SHARE_ONE - share)


@numba.njit(cache=True, nogil=True, inline="always")
def update(shares, q: int, own: int, mass: int) -> None:
    """Move context q's share towards the component's part ``own`` of the coded value's ``mass`` (the
    mixture's counts of it: weights times counts, summed)."""
    shift = 0
    while mass >> (shift + _POSTERIOR_BITS):
        shift += 1
    posterior = ((own >> shift) << 16) // max(mass >> shift, 1)
    share = shares[q] + ((posterior - shares[q]) >> RATE_SHIFT)
    shares[q] = min(max(share, SHARE_LOW), SHARE_HIGH)
