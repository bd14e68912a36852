"""Discretised logistic priors: the training loss, and exact integer probability tables.

A value ``z`` has the prior P(z) = sigmoid((z + 1/2 - mu)/s) - sigmoid((z - 1/2 - mu)/s).
Its parameters live on fixed grids so that the coder can index precomputed integer tables
instead of evaluating ``exp`` at decode time (whose last bit differs between libms, SIMD
widths and GPUs):

* ``mu`` on a 1/16 grid: ``mu16 = round(16 mu)``; the table depends only on its fraction
  ``f = mu16 mod 16``, the window is centred on ``floor(mu)``;
* ``log2 s`` on a 1/8 grid from -3 to 7: scale index ``j = round(8 log2 s) + 24``, 81 levels.

Training uses the same grids (straight-through rounding), so the loss is the code length the
exact coder achieves, up to the tables' 24-bit quantisation.
"""
from __future__ import annotations

import functools

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MU_FRAC = 4
LS_FRAC = 3
LOG2_S_MIN = -3
LOG2_S_MAX = 7
NUM_SCALES = (LOG2_S_MAX - LOG2_S_MIN) * 2**LS_FRAC + 1
MU_LIMIT = 2.0**20  # |mu| bound, pixel units
TABLE_PRECISION = 24  # counts of each table row sum to about 2**24
TAIL_WIDTH = 12.5  # a row covers floor(mu) +- (TAIL_WIDTH * s + 2); beyond it, an escape symbol


def mu_bounds_q() -> tuple[float, float]:
    """Clamp bounds of mu16 (output-grid integers of a prior head)."""
    return -MU_LIMIT * 2**MU_FRAC, MU_LIMIT * 2**MU_FRAC


def ls_bounds_q() -> tuple[float, float]:
    """Clamp bounds of ls8 = round(8 log2 s)."""
    return LOG2_S_MIN * 2**LS_FRAC, LOG2_S_MAX * 2**LS_FRAC


def scale_of_index(j: np.ndarray | int) -> np.ndarray:
    return np.power(2.0, np.asarray(j, dtype=np.float64) / 2**LS_FRAC + LOG2_S_MIN)


def half_width(j: int) -> int:
    return int(math.ceil(TAIL_WIDTH * float(scale_of_index(j)))) + 2


def discretized_logistic_bits(z: torch.Tensor, mu: torch.Tensor, log2_s: torch.Tensor) -> torch.Tensor:
    """-log2 P(z) elementwise (training path; mu, log2_s already on their grids)."""
    inv_s = torch.pow(2.0, -log2_s)
    centred = z - mu
    a = (centred + 0.5) * inv_s
    b = (centred - 0.5) * inv_s
    # sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(-1/s)): stable for any z.
    log_p = F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(-inv_s))
    return -log_p / math.log(2.0)


LOGIT_FRAC = 3  # a mixture's component weights: log2-domain logits on a 1/8 grid ...
LOGIT_LIMIT = 16.0  # ... within +-16


@dataclass(frozen=True)
class ExactParams:
    """Integer parameters of a batch of logistics (numpy int64, any shape): their table rows."""

    mu_floor: np.ndarray  # floor(mu)
    mu_frac: np.ndarray  # 16 * (mu - floor(mu)), in 0..15
    scale: np.ndarray  # scale index j, 0..NUM_SCALES-1

    @staticmethod
    def from_grid(mu16: np.ndarray, ls8: np.ndarray) -> "ExactParams":
        mu16 = np.asarray(mu16).astype(np.int64)
        ls8 = np.asarray(ls8).astype(np.int64)
        return ExactParams(
            mu_floor=mu16 >> MU_FRAC,
            mu_frac=mu16 & (2**MU_FRAC - 1),
            scale=np.clip(ls8 - LOG2_S_MIN * 2**LS_FRAC, 0, NUM_SCALES - 1),
        )


class LogisticTables:
    """Integer probability tables, one row per (scale index, mu fraction).

    Row (j, f) holds counts for offsets k = -R_j..R_j from floor(mu), then one escape count
    for anything outside. Every count is >= 1, so every integer can be coded. The counts are
    computed once (float64, when a model is exported) and stored in the model file as
    integers; coding only ever reads them.
    """

    def __init__(self, counts: np.ndarray, offsets: np.ndarray) -> None:
        self.counts = np.ascontiguousarray(counts, dtype=np.uint32)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)  # start of scale j's block
        if self.offsets.shape != (NUM_SCALES + 1,) or self.offsets[0] != 0 or self.counts.shape != (self.offsets[-1],):
            raise ValueError("probability tables do not match this version's grids")
        # Row widths are read off the stored layout, not recomputed with pow and ceil: a last-bit
        # difference in a libm could otherwise change a width, and with it every code.
        sizes = np.diff(self.offsets)
        self.half_widths = sizes // (2 * 2**MU_FRAC) - 1
        if np.any(sizes != 2**MU_FRAC * (2 * self.half_widths + 2)) or np.any(self.half_widths < 2) \
                or np.any(np.diff(self.half_widths) < 0):
            raise ValueError("probability tables do not match this version's grids")
        self._blocks = [
            self.counts[self.offsets[j] : self.offsets[j + 1]].reshape(2**MU_FRAC, -1).astype(np.float64)
            for j in range(NUM_SCALES)
        ]

    @functools.cached_property
    def prefix(self) -> np.ndarray:
        """Sums over any run of the counts: prefix[b] - prefix[a] (int64)."""
        return np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])

    @staticmethod
    def build() -> "LogisticTables":
        blocks, offsets = [], [0]
        total = 2.0**TABLE_PRECISION
        for j in range(NUM_SCALES):
            s = float(scale_of_index(j))
            r = half_width(j)
            k = np.arange(-r, r + 1, dtype=np.float64)
            frac = np.arange(2**MU_FRAC, dtype=np.float64)[:, None] / 2**MU_FRAC
            upper = 1.0 / (1.0 + np.exp(-(k + 0.5 - frac) / s))
            lower = 1.0 / (1.0 + np.exp(-(k - 0.5 - frac) / s))
            p = upper - lower
            tail = np.clip(1.0 - p.sum(axis=1, keepdims=True), 0.0, 1.0)
            row = np.concatenate([p, tail], axis=1)
            counts = np.maximum(1, np.floor(row * total + 0.5)).astype(np.uint32)
            blocks.append(counts.ravel())
            offsets.append(offsets[-1] + counts.size)
        return LogisticTables(np.concatenate(blocks), np.array(offsets))

    def block(self, j: int) -> np.ndarray:
        """Rows of scale index j: float64 (16, 2 R_j + 2), exact small integers."""
        return self._blocks[j]
