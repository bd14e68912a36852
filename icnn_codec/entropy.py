"""Entropy coding of integer latents under the exact prior tables (constriction's ANS stack).

For one latent group of one image, the *decoding* order is:

1. the in-window symbols, scale index by scale index (ascending), each group in position
   order, with per-symbol rows of the integer table for (scale, mu fraction);
2. the escapes: for every position whose symbol was the escape, the value ``z - floor(mu)``
   zig-zagged to 32 bits and coded as two uniform 16-bit halves.

ANS is a stack, so encoding pushes these in the reverse order. Every table row has a count of
at least 1 for every symbol and for the escape: any integer can be coded.
"""
from __future__ import annotations

import constriction
import numpy as np

from .priors import COST_FRAC, ExactParams, LogisticTables

_categorical = constriction.stream.model.Categorical(perfect=False)
_half_word = constriction.stream.model.Uniform(2**16)
ESCAPE_LIMIT = 2**32  # zig-zagged escape values must fit in two 16-bit halves


def _zigzag(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    return np.where(u % 2 == 0, u // 2, -(u + 1) // 2)


def _scale_groups(scale: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(scale index, positions in ascending order) for each scale present, scales ascending."""
    order = np.argsort(scale, kind="stable")
    sorted_scales = scale[order]
    bounds = np.flatnonzero(np.diff(sorted_scales)) + 1
    return [(int(scale[idx[0]]), idx) for idx in np.split(order, bounds) if idx.size]


def encode_latents(coder, z: np.ndarray, params: ExactParams, tables: LogisticTables) -> None:
    """Push one group's latents (flat int64 arrays) onto the ANS stack."""
    k = z - params.mu_floor
    r = tables.half_widths[params.scale]
    escaped = np.abs(k) > r
    symbols = np.where(escaped, 2 * r + 1, k + r).astype(np.int32)
    if escaped.any():
        u = _zigzag(k[escaped])
        if (u >= ESCAPE_LIMIT).any():
            raise OverflowError("latent out of the codable range")
        halves = np.stack([u >> 16, u & 0xFFFF], axis=1).ravel().astype(np.int32)
        coder.encode_reverse(halves, _half_word)
    for j, pos in reversed(_scale_groups(params.scale)):
        probs = tables.block(j)[params.mu_frac[pos]]
        coder.encode_reverse(np.ascontiguousarray(symbols[pos]), _categorical, np.ascontiguousarray(probs))


def decode_latents(coder, params: ExactParams, tables: LogisticTables) -> np.ndarray:
    """Pop one group's latents (flat int64) off the ANS stack."""
    n = params.scale.size
    k = np.empty(n, dtype=np.int64)
    escaped = np.zeros(n, dtype=bool)
    for j, pos in _scale_groups(params.scale):
        probs = tables.block(j)[params.mu_frac[pos]]
        r = int(tables.half_widths[j])
        sym = coder.decode(_categorical, np.ascontiguousarray(probs)).astype(np.int64)
        k[pos] = sym - r
        escaped[pos] = sym == 2 * r + 1
    count = int(escaped.sum())
    if count:
        halves = coder.decode(_half_word, 2 * count).astype(np.int64).reshape(count, 2)
        k[escaped] = _unzigzag((halves[:, 0] << 16) | halves[:, 1])
    return params.mu_floor + k


def code_length(z: np.ndarray, params: ExactParams, tables: LogisticTables) -> np.ndarray:
    """What ``encode_latents`` would spend on ``z``, in units of 2**-COST_FRAC bits (the tables'
    -log2 shares, 32 bits more per escape): integer arithmetic, so the same on every machine.
    Summed over the last axis (params may have more leading axes than z, e.g. one per trial)."""
    k = z - params.mu_floor
    r = tables.half_widths[params.scale]
    escaped = np.abs(k) > r
    symbol = np.where(escaped, 2 * r + 1, k + r)
    where = tables.offsets[params.scale] + params.mu_frac * (2 * r + 2) + symbol
    return tables.costs[where].sum(axis=-1) + escaped.sum(axis=-1) * (32 << COST_FRAC)


# -- scale offsets -------------------------------------------------------------------------------
# A plane's latent groups may each have their scales shifted by an offset of 8 log2 s that the
# encoder picks (the one that codes the group shortest) and sends before them: an image that is
# smoother or noisier than the model expects gets narrower or wider priors. The offsets go out
# only where they save more than they cost (4 bits each), behind one flag symbol.
SCALE_OFFSETS = (0, -1, 1, -2, 2, -3, 3, -4, 4, -5, 5, -6, 6, -7, 7, -8)  # nearest to 0 first: ties keep the smaller
_offset_symbol = constriction.stream.model.Uniform(len(SCALE_OFFSETS))
_offsets_flag = constriction.stream.model.Uniform(2)
OFFSET_BITS = 4


def choose_scale_offsets(groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]], tables: LogisticTables) -> list[int]:
    """The offset for each (z, mu16, ls8) group of a plane: each group's shortest, or all 0 where
    sending them would not pay."""
    found = [_shortest_offset(z, mu16, ls8, tables) for z, mu16, ls8 in groups]
    saved = sum(at_zero - best for _, at_zero, best in found)
    if saved <= (OFFSET_BITS * len(groups)) << COST_FRAC:
        return [0] * len(groups)
    return [offset for offset, _, _ in found]


def _shortest_offset(z: np.ndarray, mu16: np.ndarray, ls8: np.ndarray, tables: LogisticTables) -> tuple[int, int, int]:
    """(offset, length at 0, length at the offset) for one group, by descent from 0.

    A group's code length is close to convex in the offset (a log-scale error costs about its
    square), so walking from 0 towards the shorter neighbour until the length stops falling finds
    the least with 3-5 evaluations instead of all 16. Ties keep the offset nearer 0.
    """
    def lengths(offsets: list[int]) -> list[int]:
        shifts = np.array(offsets)[:, None]
        return [int(v) for v in code_length(z, ExactParams.from_grid(mu16, ls8 + shifts), tables)]

    at_zero, below, above = lengths([0, -1, 1])
    if min(below, above) >= at_zero:
        return 0, at_zero, at_zero
    step, best, offset = (-1, below, -1) if below <= above else (1, above, 1)
    lowest, highest = min(SCALE_OFFSETS), max(SCALE_OFFSETS)
    while lowest <= offset + step <= highest:
        [length] = lengths([offset + step])
        if length >= best:
            break
        best, offset = length, offset + step
    return offset, at_zero, best


def coded_length(groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]], offsets: list[int],
                 tables: LogisticTables) -> int:
    """What a plane's (z, mu16, ls8) groups cost under ``offsets``, with the offsets' own symbols, in
    units of 2**-COST_FRAC bits."""
    total = sum(int(code_length(z, ExactParams.from_grid(mu16, ls8 + d), tables)) for (z, mu16, ls8), d in zip(groups, offsets))
    return total + ((1 + (OFFSET_BITS * len(offsets) if any(offsets) else 0)) << COST_FRAC)


def encode_scale_offsets(coder, offsets: list[int]) -> None:
    """Push a plane's offsets (all 0: one flag symbol), to be popped before its groups."""
    if any(offsets):
        coder.encode_reverse(np.array([SCALE_OFFSETS.index(d) for d in offsets], dtype=np.int32), _offset_symbol)
    coder.encode_reverse(np.array([int(any(offsets))], dtype=np.int32), _offsets_flag)


def decode_scale_offsets(coder, count: int) -> list[int]:
    if not int(coder.decode(_offsets_flag, 1)[0]):
        return [0] * count
    return [SCALE_OFFSETS[i] for i in coder.decode(_offset_symbol, count)]
