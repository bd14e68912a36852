"""The repeat components: green and blue as a neighbour had them, relative to the colour before.

In calm parts of a photograph, and wherever chroma went through JPEG's subsampling, the difference
between a pixel's colours is often exactly its left or upper neighbour's: green - red and blue -
green repeat (on the validation split's calm photographs, from the left, for two pixels in three).
The network's logistics and the tile predictor's means are smooth, so they spread such a sample's
mass over two or three values; each of these components puts nearly all of its own on the one value
a repetition gives, x_c(S) - x_{c-1}(S) + x_{c-1} for the neighbour S (SOURCES: the left one, then
the upper one), as the narrowest logistic of the tables (about 96 % on that value).

Their shares of each mixture are learnt as a tile is coded, per colour and per context (how much the
colour difference varies among the decoded neighbours W, N, NW, NE): after each sample, each share
moves 1/2**RATE_SHIFT of the way to its component's posterior share of the coded value's mass (one
step of online EM). A pixel's weight for component j is the other components' weights' sum times
share_j / (1 - the shares' sum). Integer arithmetic throughout; the lines of a plane are the unit,
as for :mod:`icnn_codec.adaptive`: a line's pixels all take the shares as the lines before left
them, then update them in the line's order. Red has none (a repetition there is rare: 0.1 % in the
ablation).
"""
from __future__ import annotations

import numba
import numpy as np

from . import priors

CONTEXTS = 16
SOURCES = ((0, -1), (-1, 0))  # (dy, dx) of the neighbour each component repeats: W, N
SHARE_ONE = 2**16  # shares are on a 2**-16 grid
SHARE_START = 3277  # about 0.05 each
SHARE_LOW, SHARE_HIGH = 64, SHARE_ONE - 1024  # each share's bounds, and the most their sum may reach
RATE_SHIFT = 5
LOG2_SCALE8 = int(priors.ls_bounds_q()[0])  # the tables' narrowest logistic
_POSTERIOR_BITS = 40  # a posterior's mass and total are shifted below this before the division


@numba.njit(cache=True, nogil=True)
def new_shares(planes: int) -> np.ndarray:
    """Fresh shares (planes, 3 colours, CONTEXTS, len(SOURCES)) int64 (red's unused)."""
    return np.full((planes, 3, CONTEXTS, len(SOURCES)), SHARE_START, dtype=np.int64)


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
def mean16(canvas, c: int, y: int, x: int, earlier: int, j: int) -> int:
    """Component j's value of colour c on the means' 1/16 grid: its neighbour's colour difference plus
    the pixel's own colour c - 1 (``earlier``, centred), within 0..255."""
    dy, dx = SOURCES[j]
    value = difference(canvas, c, y + dy, x + dx) + earlier + 128
    return min(max(value, 0), 255) * 2**priors.MU_FRAC


@numba.njit(cache=True, nogil=True, inline="always")
def weight(shares, j: int, others: int) -> int:
    """Component j's weight beside the other components' weights' sum ``others``, from a context's
    shares (len(SOURCES),)."""
    return others * shares[j] // (SHARE_ONE - shares.sum())


@numba.njit(cache=True, nogil=True, inline="always")
def update(shares, own, mass: int) -> None:
    """Move a context's shares (len(SOURCES),) towards each component's part ``own[j]`` of the coded
    value's ``mass`` (the mixture's counts of it: weights times counts, summed); each within
    SHARE_LOW..SHARE_HIGH, and the later ones cut so that their sum is at most SHARE_HIGH."""
    shift = 0
    while mass >> (shift + _POSTERIOR_BITS):
        shift += 1
    room = SHARE_HIGH
    for j in range(len(shares)):
        posterior = ((own[j] >> shift) << 16) // max(mass >> shift, 1)
        share = shares[j] + ((posterior - shares[j]) >> RATE_SHIFT)
        shares[j] = min(max(share, SHARE_LOW), room - SHARE_LOW * (len(shares) - 1 - j))
        room -= shares[j]
