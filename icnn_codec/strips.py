"""Remainder strips: the rows and columns of a plane beyond the flow's block, coded by
prediction from their decoded neighbours instead of being padded.

The flow codes planes whose sides are multiples of its block (16 for models with contexts).
Padding a plane of another size by repeating its edge pixels would cost nearly as much per padded
position as per real one: a 481 x 321 photo in tiles of 256 would spend 5-6 % of its bits on the 15
padded columns and 15 padded rows of its edge tiles (``benchmarks/strips.py``). So when a side's
rest is at most half a block, the flow codes the side rounded down and the rest is a *strip*:
columns right of what the flow decoded, then rows below everything above (the bottom strip is
coded as columns of the transposed plane, so one predictor serves both). A longer rest is padded:
its few padded positions cost less than the many strip positions would.

A strip is coded one column at a time, each column in two passes, its even rows then its odd
rows, each pass channel by channel (green, then red and blue), every step vectorised over the
column's rows. The predictions are integer arithmetic on decoded pixels:

* even rows: the pixel to the left;
* odd rows: the mean of "above and below" and "left plus the horizontal change above and below";
* red and blue add green's prediction error (the channels of a pixel move together);
* the scale: log2 of the local activity (the gradients around the pixel), plus an offset that the
  encoder picks per strip (the one that codes it shortest) and sends first.

The prior of each pixel is then a discretised logistic with that mean and scale, coded with the
model's exact tables (:mod:`icnn_codec.entropy`), like a latent. On the photo benchmark's
strips that is about 4.6 bits per value, where the flow codes the rest at about 3.3.
"""
from __future__ import annotations

from typing import Callable, Generator

import constriction
import numpy as np

from . import entropy
from .errors import DecodeError
from .priors import MU_FRAC, ExactParams, LogisticTables

STRIP_OFFSETS = (-36, -32, -28, -24, -20)  # the scale offset (8 log2 units) an encoder picks from
_offset_symbol = constriction.stream.model.Uniform(len(STRIP_OFFSETS))
CHANNEL_ORDER = (1, 0, 2)  # green first: red and blue are predicted with its error
ONE = 2**MU_FRAC  # predictions are on the prior's 1/16 grid of means

Where = tuple[np.ndarray, int, int]  # (rows, column, channel) of the new columns a step codes
Steps = Generator[tuple[Where, np.ndarray, np.ndarray], np.ndarray, np.ndarray]


def _log2_8(v: np.ndarray) -> np.ndarray:
    """8 log2 v for integers v >= 1, piecewise linear between powers of two (exact: frexp)."""
    mantissa, exponent = np.frexp(v.astype(np.float64))  # v = mantissa 2**exponent, mantissa in [1/2, 1)
    return 8 * (exponent.astype(np.int64) - 1) + np.floor(16 * mantissa - 8).astype(np.int64)


def column_steps(known: np.ndarray, count: int) -> Steps:
    """The coding steps of ``count`` new columns right of ``known`` (n x m x 3 int64, m >= 1).

    Yields each step's place in the new columns and its prior parameters (mu16, and ls8 before
    the strip's offset), one per row of the step's rows; expects the step's values sent back;
    returns the new columns (n x count x 3).
    """
    n = known.shape[0]
    left2, left = known[:, max(0, known.shape[1] - 2)], known[:, -1]
    new = np.zeros((n, count, 3), dtype=np.int64)
    above = np.maximum(np.arange(n) - 1, 0)
    below = np.minimum(np.arange(n) + 1, n - 1)
    for c in range(count):
        column = new[:, c]
        for parity in (0, 1):
            rows = np.arange(parity, n, 2)
            if parity == 0:
                # Nothing of this column is known yet: the left neighbour, and how much the left
                # column changes across and along it.
                base = ONE * left[rows]
                activity = np.abs(left[rows] - left2[rows]).sum(1) + np.abs(left[above[rows]] - left[below[rows]]).sum(1) // 2
            else:
                # The even rows above and below are known (the last odd row has only the one above).
                up = above[rows]
                down = np.where(below[rows] % 2 == 0, below[rows], up)
                u, d, ul, dl = column[up], column[down], left[up], left[down]
                base = (ONE // 2 * (u + d) + ONE * left[rows] + ONE // 2 * ((u - ul) + (d - dl))) // 2
                activity = (np.abs(u - d).sum(1) + np.abs((u - ul) - (d - dl)).sum(1) // 2
                            + np.abs(left[rows] - left2[rows]).sum(1) // 2)
            ls8 = _log2_8(activity + 1)
            green_error = np.zeros(rows.size, dtype=np.int64)
            for ch in CHANNEL_ORDER:
                mu16 = base[:, ch] + green_error
                values = yield (rows, c, ch), mu16, ls8
                column[rows, ch] = values
                if ch == CHANNEL_ORDER[0]:
                    green_error = ONE * values - base[:, ch]
        left2, left = left, column
    return new


def _run(steps: Steps, value_of: Callable[[Where, np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Drive ``steps``, answering each (where, mu16, ls8) with ``value_of(where, mu16, ls8)``; the new columns."""
    try:
        params = next(steps)
        while True:
            params = steps.send(value_of(*params))
    except StopIteration as done:
        return done.value


def _strip_parts(plane: np.ndarray, flow_h: int, flow_w: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(known, new columns) of the plane's strips in decoding order: right, then bottom (transposed)."""
    parts = []
    if flow_w < plane.shape[1]:
        parts.append((plane[:flow_h, :flow_w], plane[:flow_h, flow_w:]))
    if flow_h < plane.shape[0]:
        parts.append((plane[:flow_h].transpose(1, 0, 2), plane[flow_h:].transpose(1, 0, 2)))
    return parts


def _strip_code(known: np.ndarray, new: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A strip's steps as (values, mu16, ls8 before the offset) in decoding order."""
    recorded = []

    def true_values(where: Where, mu16: np.ndarray, ls8: np.ndarray) -> np.ndarray:
        recorded.append((new[where], mu16, ls8))
        return recorded[-1][0]

    _run(column_steps(known, new.shape[1]), true_values)
    return recorded


def _push_strip(coder, known: np.ndarray, new: np.ndarray, tables: LogisticTables,
                offsets: tuple[int, ...] = STRIP_OFFSETS) -> None:
    """Push one strip, with the scale offset (of ``offsets``) that codes it shortest (by the tables'
    integer code lengths: the same choice on every machine, without coding it once per offset)."""
    steps = _strip_code(known, new)
    shifts = np.array(offsets)[:, None]
    lengths = sum(entropy.code_length(values, ExactParams.from_grid(mu16, ls8 + shifts), tables)
                  for values, mu16, ls8 in steps)
    offset = offsets[int(np.argmin(lengths))]
    for values, mu16, ls8 in reversed(steps):
        entropy.encode_latents(coder, values, ExactParams.from_grid(mu16, ls8 + offset), tables)
    coder.encode_reverse(np.array([STRIP_OFFSETS.index(offset)], dtype=np.int32), _offset_symbol)


def strip_bits(plane: np.ndarray, flow_h: int, flow_w: int, tables: LogisticTables) -> int:
    """The exact code length in bits of the strips of ``plane`` beyond its flow part."""
    coder = constriction.stream.stack.AnsCoder()
    encode_strips(coder, plane, flow_h, flow_w, tables)
    return coder.num_bits()


def encode_strips(coder, plane: np.ndarray, flow_h: int, flow_w: int, tables: LogisticTables) -> None:
    """Push the strips of ``plane`` (H x W x 3 uint8) beyond its flow part (``flow_h`` x ``flow_w``)."""
    pixels = plane.astype(np.int64)
    for known, new in reversed(_strip_parts(pixels, flow_h, flow_w)):
        _push_strip(coder, known, np.ascontiguousarray(new), tables)


def decode_strips(coder, flow_part: np.ndarray, height: int, width: int, tables: LogisticTables) -> np.ndarray:
    """The whole plane (height x width x 3 uint8): ``flow_part`` (decoded by the flow) and its strips."""
    plane = np.zeros((height, width, 3), dtype=np.int64)
    flow_h, flow_w = flow_part.shape[:2]
    plane[:flow_h, :flow_w] = flow_part

    def pop(where: Where, mu16: np.ndarray, ls8: np.ndarray) -> np.ndarray:
        values = entropy.decode_latents(coder, ExactParams.from_grid(mu16, ls8 + offset), tables)
        if values.size and (values.min() < 0 or values.max() > 255):
            raise DecodeError("corrupt stream (pixel values out of range)")
        return values

    for known, new in _strip_parts(plane, flow_h, flow_w):  # views: each strip lands in ``plane``
        offset = STRIP_OFFSETS[int(coder.decode(_offset_symbol, 1)[0])]
        new[...] = _run(column_steps(known, new.shape[1]), pop)
    return plane.astype(np.uint8)
