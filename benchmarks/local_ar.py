"""A local autoregressive model, trained for a fixed budget beside the flow's harness.

    python benchmarks/local_ar.py [--minutes 20] [--kernel 7] [--width 128] [--blocks 2] [--components 10]
        [--exact-ready [--tile-predictor K [--residual-context]]] [--eval-every MIN] [--lr-halflife STEPS]
        [--checkpoint FILE] [--threads 1]
    python benchmarks/local_ar.py --measure --checkpoint FILE [--full-images] [the run's options]
    python benchmarks/local_ar.py --decode-time [--kernel 7] [--width 128] [--blocks 2]
    python benchmarks/local_ar.py --table

The question it answers for model v2 (issue #23): is the multi-scale flow the family to train,
or does a small model that sees each pixel's decoded neighbours at full resolution get more out of
each MAC and each CPU hour? The model is NeLLoC's shape: one masked k x k convolution (the pixels
above and to the left within k // 2, never the pixel itself), then residual blocks of 1x1
convolutions, then a mixture of discretised logistics per pixel whose green mean leans on red and
whose blue mean leans on red and green (PixelCNN++'s coupling of a pixel's colours). It is trained
from random weights on the same crops as `benchmarks/ablate.py` and measured on the same held-out
central 128x128 crops (validation split and photos-unseen), by the training path's code length.

``--exact-ready`` trains the same shape in the codec's exact 8-bit arithmetic instead
(:class:`ExactReadyAR`: fixed-point layers, parameters on the codec's grids, one or a few logistics
per pixel). :class:`WavefrontCoder` is a prototype exact coder for it (integer table rows cut to
0..255 and mixed by integer weights, a scale offset per image, pixels decoded line by line), and
``--measure`` gives its held-out figures as that coder's code lengths as well.

``--tile-predictor K`` adapts the means to each image: :class:`TilePredictor`, a linear predictor
from the causal K x K neighbours and the pixel's earlier colours that the encoder fits to the
tile (here: the crop) by least squares and sends (16 bits a coefficient, charged in every figure),
gives the base the network's means correct. ``--residual-context`` also feeds the network the
neighbours' residuals under it (without a tile predictor: under the model's global linear one):
the prediction errors of decoded neighbours, the contexts adaptive classic codecs lean on.

Results: benchmarks/results/local_ar/[x]kK-wW-bB-cC-Nmin.json; docs/ablations.md quotes them.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from common import RESULTS, SHARED
from torch import nn

from icnn_codec import priors
from icnn_codec.quant import HIDDEN_FRAC, INPUT_FRAC, QConv2d, hidden_conv
from icnn_codec.training.ablation import HOLDOUT_EVERY, held_out_crops
from icnn_codec.training.data import ImageSet

FOLDER = RESULTS / "local_ar"
CIFAR10_HOLDOUT_EVERY = 100
HALF_STEP = 1 / 255  # half the distance between two sample values on the [-1, 1] scale


def causal_mask(kernel: int) -> torch.Tensor:
    """The taps of a k x k kernel that a pixel's decoded neighbours fill: the rows above, and the pixels
    to the left in its own row."""
    mask = torch.zeros(kernel, kernel)
    mask[: kernel // 2] = 1
    mask[kernel // 2, : kernel // 2] = 1
    return mask


class CausalConv(nn.Conv2d):
    """A k x k convolution that sees only the rows above and the pixels to the left in its own row."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int) -> None:
        super().__init__(channels_in, channels_out, kernel, padding=kernel // 2)
        self.register_buffer("mask", causal_mask(kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class LocalAR(nn.Module):
    """Mixture parameters for every pixel from its causal k x k neighbourhood."""

    def __init__(self, kernel: int = 7, width: int = 128, blocks: int = 2, components: int = 10) -> None:
        super().__init__()
        self.components = components
        self.first = CausalConv(3, width, kernel)
        self.blocks = nn.ModuleList(nn.Sequential(nn.ELU(), nn.Conv2d(width, width, 1), nn.ELU(), nn.Conv2d(width, width, 1))
                                    for _ in range(blocks))
        self.head = nn.Sequential(nn.ELU(), nn.Conv2d(width, 10 * components, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)

    def mac_per_pixel(self) -> int:
        width = self.first.out_channels
        first = int(self.first.mask.sum()) * 3 * width
        return first + len(self.blocks) * 2 * width * width + width * 10 * self.components

    def bits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Code length in bits of each pixel of uint8-valued (B, 3, H, W) images, (B, H, W)."""
        x = pixels / 127.5 - 1
        return bits_per_pixel(x, self(x), self.components)


class MaskedQConv2d(QConv2d):
    """A fixed-point k x k convolution (see ``quant.QConv2d``) whose weights outside the causal mask
    (the rows above, the pixels to the left) are held at zero."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("mask", causal_mask(self.conv.kernel_size[0]))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.conv.weight.mul_(self.mask)
        return super().forward(a)


def edge_logistic_bits(z: torch.Tensor, mu: torch.Tensor, log2_s: torch.Tensor) -> torch.Tensor:
    """-log2 P(z) for samples 0..255 under discretised logistics on the codec's grids, the mass below 0
    and above 255 folded onto the two end values (an exact table row can fold it by integer sums)."""
    inside = priors.discretized_logistic_bits(z, mu, log2_s)
    inv_s = torch.pow(2.0, -log2_s)
    low = -F.logsigmoid((0.5 - mu) * inv_s) / math.log(2)
    high = -F.logsigmoid((mu - 254.5) * inv_s) / math.log(2)
    return torch.where(z < 0.5, low, torch.where(z > 254.5, high, inside))


class ExactReadyAR(nn.Module):
    """The local AR in the codec's exact 8-bit arithmetic: what a decoder could run bit for bit.

    A masked k x k fixed-point convolution of the centred samples (x - 128, read as x / 64), ``depth``
    1x1 layers (uint8 activations, ReLU with a cap, no residual sums), and a 13-bit head giving, for
    each of ``components`` logistics of a pixel, each sample's mean on the 1/16 grid and log2 scale on
    the 1/8 grid (the codec's tables) and three colour coefficients on a 1/64 grid: green's mean moves
    by a (r - 128), blue's by b (r - 128) + c (g - 128), each term floored onto the mean's grid; with
    several, weight logits on the base-2 grid of ``priors.mixture_bits``. A linear masked k x k
    predictor (13-bit weights) adds to every mean, so the network learns a correction to it."""

    def __init__(self, kernel: int = 7, width: int = 64, depth: int = 4, components: int = 1,
                 tile_predictor: int = 0, residual_context: bool = False) -> None:
        super().__init__()
        self.components = components
        self.kernel, self.tile_predictor, self.residual_context = kernel, tile_predictor, residual_context
        self.predictor = TilePredictor(tile_predictor) if tile_predictor else None
        mu_lo, mu_hi = priors.mu_bounds_q()
        ls_lo, ls_hi = priors.ls_bounds_q()
        lg = priors.LOGIT_LIMIT * 2**priors.LOGIT_FRAC
        logits = components if components > 1 else 0
        self.first = MaskedQConv2d(6 if residual_context else 3, width, kernel, INPUT_FRAC, HIDDEN_FRAC, 0.0, 255.0,
                                   signed_input=True)
        self.hidden = nn.ModuleList(hidden_conv(width, width, 1, HIDDEN_FRAC) for _ in range(depth))
        self.head = QConv2d(width, 9 * components + logits, 1, HIDDEN_FRAC,
                            out_frac=([priors.MU_FRAC] * 3 + [priors.LS_FRAC] * 3 + [6] * 3) * components
                            + [priors.LOGIT_FRAC] * logits,
                            out_lo=([mu_lo] * 3 + [ls_lo] * 3 + [-64.0] * 3) * components + [-lg] * logits,
                            out_hi=([mu_hi] * 3 + [ls_hi] * 3 + [64.0] * 3) * components + [lg] * logits,
                            zero_init=True, split=True)
        self.linear = MaskedQConv2d(3, 3, kernel, INPUT_FRAC, priors.MU_FRAC, mu_lo, mu_hi, zero_init=True,
                                    signed_input=True, split=True)
        with torch.no_grad():
            for k in range(components):  # wide at first, the components' scales spread apart
                self.head.conv.bias[9 * k + 3 : 9 * k + 6] = 2.0 + k - (components - 1) / 2
            r = kernel // 2
            for c in range(3 * (not tile_predictor)):  # start from the mean of the left and upper neighbours
                self.linear.conv.weight[c, c, r, r - 1] = self.linear.conv.weight[c, c, r - 1, r] = 32.0

    def bits(self, pixels: torch.Tensor) -> torch.Tensor:
        mu, log2_s, logits = self.parameters_of(pixels)
        bits = edge_logistic_bits(pixels.unsqueeze(1), mu, log2_s).sum(2)  # (B, K, H, W)
        side = self.side_bits() / (pixels.shape[2] * pixels.shape[3])  # spread over the crop's pixels
        if logits is None:
            return bits[:, 0] + side
        log2_w = torch.log_softmax(logits * math.log(2.0), dim=1) / math.log(2.0)
        return -torch.logsumexp((log2_w - bits) * math.log(2.0), dim=1) / math.log(2.0) + side

    def side_bits(self) -> int:
        """Side information a crop carries: its tile predictor's coefficients."""
        return self.predictor.side_bits() if self.tile_predictor else 0

    def parameters_of(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Training path: each component's means and log2 scales (B, K, 3, H, W) on their grids, and
        the components' weight logits (B, K, H, W; None for one)."""
        a = (pixels - 128) / 2**INPUT_FRAC
        linear = self.linear(a)
        base = 128
        if self.tile_predictor:
            predicted = self.predictor.predict16(pixels, self.predictor.fit(pixels)).float() / 2**priors.MU_FRAC
            base = base + predicted.unsqueeze(1)
        else:  # the residuals are the global linear predictor's
            predicted = linear.detach()
        if self.residual_context:
            a = torch.cat([a, (pixels - 128 - torch.floor(predicted)) / 2**INPUT_FRAC], dim=1)  # integer residuals
        h = self.first(a)
        for layer in self.hidden:
            h = layer(h)
        out = self.head(h)
        b, _, height, width = out.shape
        k = self.components
        per = out[:, : 9 * k].reshape(b, k, 9, height, width)
        mu = linear.unsqueeze(1) + per[:, :, 0:3] + base
        log2_s, coef = per[:, :, 3:6], per[:, :, 6:9]
        r, g = pixels[:, None, 0:1] - 128, pixels[:, None, 1:2] - 128
        floor_ste = lambda t: t + (torch.floor(t) - t).detach()  # noqa: E731
        shift = torch.cat([torch.zeros_like(mu[:, :, :1]), floor_ste(coef[:, :, 0:1] * r * 16) / 16,
                           floor_ste((coef[:, :, 1:2] * r + coef[:, :, 2:3] * g) * 16) / 16], dim=2)
        return mu + shift, log2_s, out[:, 9 * k :] if k > 1 else None

    def freeze(self) -> None:
        """Fix the integer parameters of every layer for the exact path."""
        for layer in (self.first, *self.hidden, self.head, self.linear):
            with torch.no_grad():
                layer.conv.weight.mul_(getattr(layer, "mask", 1))
            layer.freeze()

    @torch.no_grad()
    def exact_outputs(self, pixels: torch.Tensor, tile: torch.Tensor | None = None) -> "ExactOutputs":
        """The exact integer outputs (after ``freeze``) for every pixel of (B, 3, H, W) images, pixels in
        raster order of each image, the images one after another; ``tile``: each image's tile predictor
        (:meth:`TilePredictor.fit`'s, when the model has one and none is given)."""
        centred = pixels.double() - 128
        a = centred
        flat = lambda t: t.long().permute(0, 2, 3, 1).reshape(-1, t.shape[1]).numpy()  # noqa: E731
        sums = colour = None
        linear = self.linear(centred)
        predicted16 = linear.long()
        if self.predictor is not None:
            tile = self.predictor.fit(pixels) if tile is None else tile
            predicted16 = self.predictor.predict16(pixels, tile)
            sums = flat(self.predictor.sums(pixels, tile))
            colour = np.repeat(self.predictor.colour_coefficients(tile), pixels.shape[2] * pixels.shape[3], axis=0)
        if self.residual_context:
            a = torch.cat([a, centred - (predicted16 >> priors.MU_FRAC)], dim=1)
        h = self.first(a)
        for layer in self.hidden:
            h = layer(h)
        return self.outputs_of(flat(self.head(h)), flat(linear), sums, colour)

    def outputs_of(self, head: np.ndarray, linear: np.ndarray, tile_sum: np.ndarray | None = None,
                   tile_colour: np.ndarray | None = None) -> "ExactOutputs":
        """The head's (n, 9K [+ K]) and the linear predictor's (n, 3) integers as prior parameters, with
        the tile predictor's neighbour sums and colour coefficients (n, 3) where the model has one."""
        k = self.components
        per = head[:, : 9 * k].reshape(-1, k, 9)
        logits = head[:, 9 * k :] if k > 1 else np.zeros((len(head), 1), dtype=np.int64)
        none = np.zeros((len(head), 3), dtype=np.int64)
        return ExactOutputs(linear[:, None] + per[:, :, 0:3] + 128 * 2**priors.MU_FRAC, per[:, :, 3:6], per[:, :, 6:9], logits,
                            none if tile_sum is None else tile_sum, none if tile_colour is None else tile_colour)

    def mac_per_pixel(self) -> int:
        width, taps = self.first.conv.out_channels, int(self.first.mask.sum())
        outputs = self.head.conv.out_channels
        predictor = self.predictor.coefficients() if self.tile_predictor else 0
        return (taps * self.first.conv.in_channels * width + len(self.hidden) * width * width + 2 * width * outputs
                + 2 * taps * 3 * 3 + predictor)


class TilePredictor:
    """A tile's own linear predictor of every sample, sent as side information: what adapts the model's
    means to one image. Each colour is predicted from the causal k x k neighbours' three colours (zero
    outside the tile), the pixel's colours before it, and a constant (on a 1/16 grid), by coefficients on a 1/4096 grid
    (int16, sent as 16 bits each) that the encoder fits to the tile by least squares. The prediction
    is exact: an integer sum of products shifted onto the means' 1/16 grid, floored."""

    FRAC = 12
    CONSTANT = 2 ** (FRAC - priors.MU_FRAC)  # the constant's coefficient is on the means' 1/16 grid
    LIMIT = 2**15 - 1
    BITS = 16

    def __init__(self, kernel: int) -> None:
        self.kernel = kernel
        self.taps = causal_mask(kernel).flatten().bool()
        self.inputs = 3 * int(self.taps.sum()) + 3  # per colour: neighbours, two colour slots, a constant

    def coefficients(self) -> int:
        """How many a tile sends (colour c uses c of the three colour slots)."""
        return 3 * self.inputs - 2 - 1

    def side_bits(self) -> int:
        return self.coefficients() * self.BITS

    def neighbours(self, centred: torch.Tensor) -> torch.Tensor:
        """(B, HW, 3 taps) causal neighbours of centred (B, 3, H, W) samples, zero outside the tile."""
        b, _, h, w = centred.shape
        r = self.kernel // 2
        cols = F.unfold(F.pad(centred.double(), (r, r, r, r)), self.kernel).view(b, 3, -1, h * w)[:, :, self.taps]
        return cols.reshape(b, -1, h * w).transpose(1, 2)

    def fit(self, pixels: torch.Tensor, ridge: float = 1.0) -> torch.Tensor:
        """Each tile's coefficients (B, 3, inputs) int64, by ridge-regularised least squares, rounded
        onto the grid; colour c's unused colour slots are zero."""
        x = pixels.double() - 128
        b, _, h, w = x.shape
        flat = x.reshape(b, 3, h * w).transpose(1, 2)
        nb = self.neighbours(x)
        coef = torch.zeros(b, 3, self.inputs, dtype=torch.float64)
        for c in range(3):
            a = torch.cat([nb, flat[:, :, :c], torch.full_like(flat[:, :, :1], self.CONSTANT)], dim=2)
            gram = a.transpose(1, 2) @ a + ridge * torch.eye(a.shape[2], dtype=a.dtype)
            solved = torch.linalg.solve(gram, a.transpose(1, 2) @ flat[:, :, c : c + 1])[:, :, 0]
            coef[:, c, : nb.shape[2] + c] = solved[:, :-1]
            coef[:, c, -1] = solved[:, -1]
        return torch.round(coef * 2**self.FRAC).clamp(-self.LIMIT, self.LIMIT).long()

    def sums(self, pixels: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        """The neighbours' and the constant's part of each prediction on the 1/4096 grid, (B, 3, H, W)
        int64 (exact: every partial sum is an integer far below 2**53)."""
        x = pixels.double() - 128
        b, _, h, w = x.shape
        nb = self.neighbours(x)
        n = nb.shape[2]
        out = nb @ coef[:, :, :n].double().transpose(1, 2) + self.CONSTANT * coef[:, None, :, -1].double()
        return out.transpose(1, 2).reshape(b, 3, h, w).long()

    def used(self) -> np.ndarray:
        """Which of the (3, inputs) coefficients a tile sends."""
        used = np.ones((3, self.inputs), dtype=bool)
        used[0, -3:-1] = used[1, -2] = False
        return used

    def colour_coefficients(self, coef: torch.Tensor) -> np.ndarray:
        """Each tile's colour coefficients (B, 3): green's on red, blue's on red and green."""
        return coef[:, [1, 2, 2], [-3, -3, -2]].numpy()

    def predict16(self, pixels: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        """Every sample's prediction, centred, on the 1/16 grid: (sums + colour terms) >> 8."""
        x = pixels.long() - 128
        total = self.sums(pixels, coef)
        n = coef.shape[2] - 3
        colour = torch.zeros_like(total)
        for c in (1, 2):
            for j in range(c):
                colour[:, c] += coef[:, c, n + j, None, None] * x[:, j]
        return (total + colour) >> (self.FRAC - priors.MU_FRAC)


class ExactOutputs(NamedTuple):
    """A model's exact outputs for n pixels (int64): each component's means before the colour terms
    (mu16 = 16 mu) and log2 scales (ls8 = 8 log2 s), (n, K, 3); its colour coefficients (a 1/64
    grid), (n, K, 3); its weight logits (a 1/8 grid, base 2), (n, K); the tile predictor's sums of the
    neighbours and the constant (n, 3) and its colour coefficients (green's on red, blue's on red and
    green; n, 3), both on its 1/4096 grid (zero without one)."""

    mu16: np.ndarray
    ls8: np.ndarray
    coef: np.ndarray
    logits: np.ndarray
    tile_sum: np.ndarray
    tile_colour: np.ndarray

    def take(self, index: np.ndarray) -> "ExactOutputs":
        return ExactOutputs(*(t[index] for t in self))

    def offset(self, ls8: np.ndarray | int) -> "ExactOutputs":
        """Every scale moved by ``ls8`` (per pixel, or one for all)."""
        return self._replace(ls8=self.ls8 + np.reshape(ls8, (-1, 1, 1)))

    def means(self, centred: np.ndarray, c: int) -> np.ndarray:
        """Colour c's means (n, K) given the pixels' earlier colours (centred samples, (n, >= c)): green's
        moves by (a r) >> 2, blue's by (b r + c g) >> 2, on the mean's 1/16 grid (a, b, c on 1/64)."""
        shift = 0
        if c >= 1:
            shift = self.coef[:, :, 0 if c == 1 else 1] * centred[:, None, 0]
        if c == 2:
            shift = shift + self.coef[:, :, 2] * centred[:, None, 1]
        return self.mu16[:, :, c] + (shift >> 2) + self.tile16(centred, c)[:, None]

    def tile16(self, centred: np.ndarray, c: int) -> np.ndarray:
        """The tile predictor's prediction of colour c (n,), centred, on the 1/16 grid."""
        total = self.tile_sum[:, c]
        if c >= 1:
            total = total + self.tile_colour[:, 0 if c == 1 else 1] * centred[:, 0]
        if c == 2:
            total = total + self.tile_colour[:, 2] * centred[:, 1]
        return total >> (TilePredictor.FRAC - priors.MU_FRAC)


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
    m = np.clip(params.mu_floor, -r - 1, 256 + r)  # a row wholly beyond an end folds the same from here
    rows = padded[(zero[params.scale, params.mu_frac] + low - m)[:, None] + np.arange(width)]
    centre = tables.offsets[params.scale] + params.mu_frac * (2 * r + 2) + r  # offset 0's count in tables.counts
    below = np.clip(-m - 1, -r - 1, r)  # the last offset below value 0
    above = np.clip(256 - m, -r, r + 1)  # the first offset above value 255
    rows[:, 0] += np.where(low == 0, prefix[centre + below + 1] - prefix[centre - r], 0)
    rows[:, -1] += np.where(low + width == 256, prefix[centre + r + 1] - prefix[centre + above], 0)
    return rows


def value_totals(params: priors.ExactParams, tables: priors.LogisticTables) -> np.ndarray:
    """The sum of :func:`value_counts` over all of 0..255 (n,): the whole row, and 1 for each value
    the row does not reach."""
    _, _, prefix = padded_rows(tables)
    r = tables.half_widths[params.scale]
    m = np.clip(params.mu_floor, -r - 1, 256 + r)
    centre = tables.offsets[params.scale] + params.mu_frac * (2 * r + 2) + r
    reached = np.clip(np.minimum(255, m + r) - np.maximum(0, m - r) + 1, 0, None)
    return prefix[centre + r + 1] - prefix[centre - r] + 256 - reached


NARROW_PART = 3  # a window reaches this part of its main logistic's table row either side of its mean (about 4 s)
NARROW_SHARE = 0.9  # and the window of a coder call is as wide as this share of its samples want


def take(params: priors.ExactParams, index: np.ndarray) -> priors.ExactParams:
    return priors.ExactParams(params.mu_floor[index], params.mu_frac[index], params.scale[index])


class ChannelDistribution(NamedTuple):
    """One colour of n pixels, coded in two steps. First the mixture's counts (float64 integers,
    (n, 2 reach + 2)) over a narrow window of values from ``low``, then one count for all the values
    outside it: the mixture's mass there. A value outside is then coded among those values by their
    counts (:meth:`beyond`). The two steps give each value the same share as one row over 0..255."""

    rows: np.ndarray
    parts: list[np.ndarray]
    components: list[priors.ExactParams]
    weights: np.ndarray
    low: np.ndarray
    reach: int
    tables: priors.LogisticTables

    def outside(self, values: np.ndarray) -> np.ndarray:
        """Which values fall outside the window (coded as the last symbol, then among the others)."""
        at = values - self.low
        return (at < 0) | (at > 2 * self.reach)

    def counts_of(self, values: np.ndarray) -> np.ndarray:
        """Each component's count (n, K) of the pixels' values."""
        at, outside = values - self.low, self.outside(values)
        n = np.arange(len(values))
        counts = np.stack([p[n, np.where(outside, 0, at)] for p in self.parts], axis=1)
        if outside.any():
            counts[outside] = np.stack([value_counts(take(k, outside), self.tables, values[outside], 1)[:, 0]
                                        for k in self.components], axis=1)
        return counts

    def beyond(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the samples ``index`` (whose values are outside the window): the mixture's counts of the
        values outside it, (m, 255 - 2 reach) float64, and those values."""
        width = 2 * self.reach + 1
        low = self.low[index]
        rest = np.arange(256 - width)[None]
        values = rest + np.where(rest >= low[:, None], width, 0)
        zeros = np.zeros(len(index), dtype=np.int64)
        full = sum(self.weights[index, k, None] * value_counts(take(c, index), self.tables, zeros, 256)
                   for k, c in enumerate(self.components))
        return np.take_along_axis(full, values, axis=1).astype(np.float64), values


def channel_distribution(means: np.ndarray, ls8: np.ndarray, weights: np.ndarray, tables: priors.LogisticTables
                         ) -> ChannelDistribution:
    """The mixture of the components (means and scales (n, K)) under integer ``weights`` (n, K). Its
    window: around each sample's heaviest component's mean, a third of its table row either side, as
    wide for all as NARROW_SHARE of them want (what falls outside costs a second, rarer step). Integers
    only: the window is part of what the decoder must find as the encoder did."""
    params = priors.ExactParams.from_grid(means, ls8)
    n = np.arange(len(means))
    main = weights.argmax(1)
    want = np.clip(tables.half_widths[params.scale[n, main]] // NARROW_PART, 2, 127)
    reach = int(np.sort(want)[int(NARROW_SHARE * (len(want) - 1))]) if len(want) else 2
    low = np.clip(params.mu_floor[n, main] - reach, 0, 255 - 2 * reach)
    components = [priors.ExactParams(*(t[:, k] for t in (params.mu_floor, params.mu_frac, params.scale)))
                  for k in range(means.shape[1])]
    parts = []
    for c in components:
        inside = value_counts(c, tables, low, 2 * reach + 1)
        parts.append(np.concatenate([inside, (value_totals(c, tables) - inside.sum(1))[:, None]], axis=1))
    rows = sum(weights[:, k, None] * p for k, p in enumerate(parts))
    return ChannelDistribution(rows.astype(np.float64), parts, components, weights, low, reach, tables)


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


class WavefrontCoder:
    """An exact encoder and decoder of whole images for an :class:`ExactReadyAR` (frozen): a prototype
    that measures what decoding this family costs with the coder's calls and the integer arithmetic.

    A pixel needs the ones above it within k // 2 columns and those to its left, so the pixels on one
    line x + (k // 2 + 1) y = t depend only on earlier lines: the decoder runs the networks once per
    line for all its pixels, of every image in the batch, as 1x1 layers over gathered taps, and pops
    red, then green, then blue of the line off one ANS stack (the encoder pushes them in reverse).
    Each image has a scale offset (side information) that the encoder chooses."""

    OFFSETS = range(-16, 48)  # an image's shift of every log2 scale, in 1/8

    def __init__(self, model: ExactReadyAR) -> None:
        from icnn_codec.backends import IntConv
        self.model, self.tables = model, priors.LogisticTables.build()
        k = model.first.conv.kernel_size[0]
        self.r = k // 2
        self.taps = model.first.mask.flatten().nonzero().squeeze(1)

        def gathered(layer: QConv2d) -> IntConv:  # the masked k x k layer as a 1x1 layer over its taps
            c = layer.kernel()
            w = c.w_int.flatten(2)[:, :, self.taps].flatten(1)[:, :, None, None]
            return IntConv(w, c.w_exp, c.b_int, c.in_frac, c.out_frac, c.out_lo, c.out_hi, c.signed_input, c.split)

        self.first, self.linear = gathered(model.first), gathered(model.linear)
        self.hidden = [layer.kernel() for layer in (*model.hidden, model.head)]
        self.dy, self.dx = self.taps // k, self.taps % k
        self.predictor = model.predictor
        if self.predictor is not None:  # its taps, as offsets into the decoder's canvas
            kp = self.predictor.kernel
            taps = causal_mask(kp).flatten().nonzero().squeeze(1)
            assert kp <= k, "the tile predictor reaches no further than the network"
            self.pdy, self.pdx = taps // kp - kp // 2 + self.r, taps % kp - kp // 2 + self.r

    def lines(self, height: int, width: int) -> list[np.ndarray]:
        """The raster positions on each line x + (r + 1) y = t, t ascending."""
        ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        t = (xs + (self.r + 1) * ys).ravel()
        order = np.argsort(t, kind="stable")
        bounds = np.searchsorted(t[order], np.arange(t.max() + 2))
        return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def shortest_offset(self, values: np.ndarray, outputs: ExactOutputs) -> int:
        """The scale offset with the shortest code for these pixels, by descent from 0 in steps of 4
        then 1 (a code length is near enough convex in the offset)."""
        lengths: dict[int, float] = {}

        def length(o: int) -> float:
            if o not in lengths:
                lengths[o] = float(pixel_code_length(values, outputs.offset(o), self.tables).sum())
            return lengths[o]

        o = 0
        for step in (4, 1):
            while True:
                better = min((o - step, o + step), key=length)
                if better not in self.OFFSETS or length(better) >= length(o):
                    break
                o = better
        return o

    def encode(self, pixels: np.ndarray, every: int = 16) -> bytes:
        """uint8 (B, 3, H, W) -> bytes; each image's offset chosen on its every ``every``-th row."""
        import constriction
        b, _, height, width = pixels.shape
        images = torch.from_numpy(pixels.astype(np.float64))
        tiles = self.predictor.fit(images) if self.predictor is not None else None
        outputs = self.model.exact_outputs(images, tiles)
        values = pixels.transpose(0, 2, 3, 1).reshape(-1, 3).astype(np.int64)
        sampled = (np.arange(height)[:, None] % every == 0).repeat(width, 1).ravel()
        offsets = []
        for i in range(b):
            image = slice(i * height * width, (i + 1) * height * width)
            offsets.append(self.shortest_offset(values[image][sampled], outputs.take(image).take(sampled)))
        outputs = outputs.offset(np.repeat(offsets, height * width))
        coder = constriction.stream.stack.AnsCoder()
        categorical = constriction.stream.model.Categorical(perfect=False)
        for line in reversed(self.lines(height, width)):
            index = (np.arange(b)[:, None] * height * width + line).ravel()
            v = values[index]
            for c, (dist, _) in reversed(list(enumerate(pixel_distributions(v, outputs.take(index), self.tables)))):
                at, escaped = v[:, c] - dist.low, dist.outside(v[:, c])
                if escaped.any():  # which of the values outside the window
                    rows, candidates = dist.beyond(np.flatnonzero(escaped))
                    which = (candidates == v[escaped, c, None]).argmax(1)
                    if rows.shape[1] > 1:  # else the one value outside a 255-wide window is implied
                        coder.encode_reverse(which.astype(np.int32), categorical, rows)
                coder.encode_reverse(np.where(escaped, 2 * dist.reach + 1, at).astype(np.int32), categorical, dist.rows)
        coder.encode_reverse(np.array(offsets, dtype=np.int32) - self.OFFSETS.start,
                             constriction.stream.model.Uniform(len(self.OFFSETS)))
        if tiles is not None:
            sent = tiles.numpy()[:, self.predictor.used()].ravel() + TilePredictor.LIMIT
            coder.encode_reverse(sent.astype(np.int32), constriction.stream.model.Uniform(2 * TilePredictor.LIMIT + 1))
        return coder.get_compressed().tobytes()

    @torch.no_grad()
    def decode(self, data: bytes, shape: tuple[int, int, int, int]) -> np.ndarray:
        import constriction

        from icnn_codec.backends import current_backend
        backend = current_backend()
        b, _, height, width = shape
        r = self.r
        canvas = torch.zeros(b, 3, height + r, width + 2 * r, dtype=torch.float64)  # centred samples, zero padding
        residuals = torch.zeros_like(canvas)  # under the tile predictor, for a network that reads them
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype=np.uint32).copy())
        categorical = constriction.stream.model.Categorical(perfect=False)
        tiles = None
        if self.predictor is not None:
            used = self.predictor.used()
            sent = coder.decode(constriction.stream.model.Uniform(2 * TilePredictor.LIMIT + 1), b * int(used.sum()))
            tiles = torch.zeros(b, *used.shape, dtype=torch.int64)
            tiles[:, torch.from_numpy(used)] = torch.from_numpy(sent.astype(np.int64) - TilePredictor.LIMIT).view(b, -1)
            colour = self.predictor.colour_coefficients(tiles)
        offsets = coder.decode(constriction.stream.model.Uniform(len(self.OFFSETS)), b).astype(np.int64) + self.OFFSETS.start
        gather = lambda plane, y, x: plane[:, :, y[:, None] + self.dy, x[:, None] + self.dx].permute(1, 3, 0, 2)  # noqa: E731
        for line in self.lines(height, width):
            y, x = torch.from_numpy(line // width), torch.from_numpy(line % width)
            n = b * len(line)
            patch = gather(canvas, y, x)  # (3, taps, B, n)
            a = backend.latents(patch.reshape(1, -1, 1, n))  # (1, 3 taps, 1, B n)
            first_in = a
            if self.model.residual_context:
                first_in = backend.latents(torch.cat([patch, gather(residuals, y, x)]).reshape(1, -1, 1, n))
            h = backend.conv(self.first, first_in)
            for layer in self.hidden:
                h = backend.conv(layer, h)
            head = h.double().view(h.shape[1], -1).T.long().numpy()
            linear = backend.conv(self.linear, a).double().view(3, -1).T.long().numpy()
            sums = tile_colour = None
            if tiles is not None:
                near = canvas[:, :, y[:, None] + self.pdy, x[:, None] + self.pdx].permute(0, 2, 1, 3).reshape(b, len(line), -1)
                k = near.shape[2]
                total = near @ tiles[:, :, :k].double().transpose(1, 2) + TilePredictor.CONSTANT * tiles[:, None, :, -1].double()
                sums, tile_colour = total.reshape(n, 3).long().numpy(), np.repeat(colour, len(line), axis=0)
            outputs = self.model.outputs_of(head, linear, sums, tile_colour).offset(np.repeat(offsets, len(line)))
            weights, decoded = component_weights(outputs.logits), np.zeros((b * len(line), 3), dtype=np.int64)
            for c in range(3):
                dist = channel_distribution(outputs.means(decoded, c), outputs.ls8[:, :, c], weights, self.tables)
                value = dist.low + coder.decode(categorical, dist.rows).astype(np.int64)
                escaped = value == dist.low + 2 * dist.reach + 1
                if escaped.any():
                    rows, candidates = dist.beyond(np.flatnonzero(escaped))
                    which = coder.decode(categorical, rows).astype(np.int64) if rows.shape[1] > 1 else np.zeros(len(rows), int)
                    value[escaped] = candidates[np.arange(len(which)), which]
                weights = posterior_weights(weights, dist.counts_of(value))
                decoded[:, c] = value - 128
                canvas[:, c, y + r, x + r] = torch.from_numpy(decoded[:, c]).double().view(b, -1)
                if self.model.residual_context:  # under the tile predictor, or else the linear one
                    predicted16 = outputs.tile16(decoded, c) if tiles is not None else linear[:, c]
                    residual = decoded[:, c] - (predicted16 >> priors.MU_FRAC)
                    residuals[:, c, y + r, x + r] = torch.from_numpy(residual).double().view(b, -1)
        return (canvas[:, :, r:, r : r + width] + 128).numpy().astype(np.uint8)


def bits_per_pixel(x: torch.Tensor, params: torch.Tensor, components: int) -> torch.Tensor:
    """Code length in bits of each pixel's three samples (x on [-1, 1], (B, 3, H, W)) under the mixture."""
    b, _, h, w = x.shape
    logits = params[:, :components]
    p = params[:, components:].reshape(b, 9, components, h, w)
    means, log_scales, coeffs = p[:, 0:3], p[:, 3:6].clamp(min=-7.0), torch.tanh(p[:, 6:9])
    xs = x.unsqueeze(2)
    means = torch.stack([means[:, 0], means[:, 1] + coeffs[:, 0] * xs[:, 0],
                         means[:, 2] + coeffs[:, 1] * xs[:, 0] + coeffs[:, 2] * xs[:, 1]], dim=1)
    centred = xs - means
    inv_scale = torch.exp(-log_scales)
    upper, lower = inv_scale * (centred + HALF_STEP), inv_scale * (centred - HALF_STEP)
    log_cdf_upper = upper - F.softplus(upper)  # the lowest value takes the whole lower tail
    log_sf_lower = -F.softplus(lower)  # the highest the whole upper tail
    mass = torch.sigmoid(upper) - torch.sigmoid(lower)
    middle = inv_scale * centred
    log_density = middle - log_scales - 2 * F.softplus(middle) + math.log(HALF_STEP * 2)  # where mass underflows
    log_mass = torch.where(mass > 1e-5, torch.log(mass.clamp(min=1e-12)), log_density)
    log_p = torch.where(xs < -0.999, log_cdf_upper, torch.where(xs > 0.999, log_sf_lower, log_mass))
    log_mix = log_p.sum(1) + F.log_softmax(logits, dim=1)
    return -torch.logsumexp(log_mix, dim=1) / math.log(2)


def local_model(kernel: int, width: int, blocks: int, components: int, exact_ready: bool, tile_predictor: int = 0,
                residual_context: bool = False) -> LocalAR | ExactReadyAR:
    """The float model, or the exact-ready one (``blocks`` then counts its 1x1 layers)."""
    if exact_ready:
        return ExactReadyAR(kernel, width, blocks, components, tile_predictor, residual_context)
    return LocalAR(kernel, width, blocks, components)


@torch.no_grad()
def held_out_bpd(model: LocalAR | ExactReadyAR, crops: torch.Tensor, batch: int = 8) -> float:
    total = 0.0
    for i in range(0, len(crops), batch):
        total += float(model.bits(crops[i : i + batch].permute(0, 3, 1, 2).float()).sum())
    return total / (crops.numel())


def exact_held_out_bpd(model: ExactReadyAR, crops: torch.Tensor) -> tuple[float, float]:
    """What the codec's exact arithmetic and integer tables would write for the crops, in bpd: as the
    model gives the scales, and with each crop's best scale offset (side information, as the prototype
    coder sends it); with a tile predictor, its coefficients counted in both."""
    frozen = copy.deepcopy(model)
    frozen.freeze()
    coder = WavefrontCoder(frozen)
    plain = adapted = 0.0
    for crop in crops:
        values = crop.reshape(-1, 3).numpy().astype(np.int64)
        outputs = frozen.exact_outputs(crop.permute(2, 0, 1)[None].double())
        side = frozen.side_bits()  # the tile predictor's coefficients, and (adapted) the offset
        plain += float(pixel_code_length(values, outputs, coder.tables).sum()) + side
        adapted += float(pixel_code_length(values, outputs.offset(coder.shortest_offset(values, outputs)), coder.tables).sum())
        adapted += side + math.log2(len(coder.OFFSETS))
    return plain / crops.numel(), adapted / crops.numel()


def train(kernel: int, width: int, blocks: int, components: int, minutes: float, lr: float, batch_size: int,
          crop: int, eval_every: float | None = None, lr_halflife: float | None = None,
          checkpoint: Path | None = None, cifar10: Path | None = None, exact_ready: bool = False, tile_predictor: int = 0,
          residual_context: bool = False, seed: int = 0) -> dict:
    """Train for ``minutes`` of wall-clock time in all (measuring stops the clock), resuming from and
    saving to ``checkpoint`` (every five minutes) when one is given."""
    torch.manual_seed(seed)
    if cifar10 is None:
        images, _ = ImageSet.open(SHARED / "data" / "photos" / "train").split_holdout(HOLDOUT_EVERY)
        evals = {k: torch.from_numpy(v) for k, v in held_out_crops(SHARED).items()}
    else:  # held out as `icnn train --holdout-every 100` holds them out
        images, held = ImageSet.open(cifar10).split_holdout(CIFAR10_HOLDOUT_EVERY)
        evals = {"held_out": torch.from_numpy(held.first(None))}
    model = local_model(kernel, width, blocks, components, exact_ready, tile_predictor, residual_context)
    ema = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    step, curve, trained = 0, [], 0.0
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint)
        model.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["optimizer"])
        step, curve, trained = saved["step"], saved["curve"], saved["seconds"]
        print(f"resumed at step {step}, {trained / 60:.1f} min trained", file=sys.stderr, flush=True)
    start, saved_at = time.monotonic() - trained, time.monotonic()

    def save() -> None:
        if checkpoint is not None:
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(), "step": step,
                        "curve": curve, "seconds": time.monotonic() - start}, checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)

    while time.monotonic() - start < minutes * 60:
        elapsed = time.monotonic() - start
        if eval_every and elapsed >= (len(curve) + 1) * eval_every * 60:  # the clock stops while it measures
            curve.append({"minutes": (len(curve) + 1) * eval_every, "steps": step,
                          **{f"{k}_bpd": held_out_bpd(ema, v) for k, v in evals.items()}})
            print(f"held out after {curve[-1]['minutes']:g} min: {curve[-1]}", file=sys.stderr, flush=True)
            start = time.monotonic() - elapsed
        if time.monotonic() - saved_at > 300:
            save()
            saved_at = time.monotonic()
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 ** (step / lr_halflife) if lr_halflife else lr
        loss = model.bits(torch.from_numpy(images.batch(seed, step, batch_size, crop)).permute(0, 3, 1, 2).float()).mean() / 3
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for e, p in zip(ema.parameters(), model.parameters()):
                e.mul_(decay).add_(p, alpha=1 - decay)
        step += 1
        if step % 100 == 0:
            print(f"step {step}  {time.monotonic() - start:.0f} s  train bpd {loss.item():.4f}", file=sys.stderr, flush=True)
    save()
    plane = torch.zeros(1, 3, 256, 256)
    t0 = time.perf_counter()
    with torch.no_grad():
        ema.bits(plane)
    parallel_ms = (time.perf_counter() - t0) * 1000
    return {"kernel": kernel, "width": width, "blocks": blocks, "components": model.components, "minutes": minutes,
            "lr": lr, "lr_halflife": lr_halflife, "batch_size": batch_size, "crop": crop, "steps": step,
            "exact_ready": exact_ready, "tile_predictor": tile_predictor, "residual_context": residual_context,
            "data": "photos" if cifar10 is None else "cifar10", **{f"{k}_bpd": held_out_bpd(ema, v) for k, v in evals.items()},
            "mac_per_pixel": ema.mac_per_pixel(), "parallel_forward_ms_256": parallel_ms,
            "parameters": sum(p.numel() for p in ema.parameters()), "curve": curve,
            **({f"{k}_bpd_exact{suffix}": bpd for k, v in evals.items()
                for suffix, bpd in zip(("", "_offsets"), exact_held_out_bpd(ema, v))} if exact_ready and not tile_predictor else {})}


@torch.no_grad()
def wavefront_decode_ms(model: LocalAR, planes: int = 1, side: int = 256) -> float:
    """Milliseconds for the networks of a decoder that runs the model pixel by pixel, as a decoder must:
    a pixel needs the ones above it within k // 2 columns and the ones left of it, so the pixels on
    one line x + (k // 2 + 1) y = t need only earlier lines and are decoded together (side +
    (k // 2 + 1)(side - 1) lines a plane, ``planes`` planes in one batch). The coder's calls and the
    exact arithmetic are not counted: a lower bound on what decoding this model would cost."""
    k = model.first.kernel_size[0]
    r = k // 2
    taps = model.first.mask.flatten().nonzero().squeeze(1)
    first = (model.first.weight.flatten(2)[:, :, taps]).flatten(1)  # (width, 3 * taps)
    canvas = torch.zeros(planes, 3, side + r, side + 2 * r)
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    line = (xs + (r + 1) * ys).flatten()
    order = torch.argsort(line, stable=True)
    bounds = torch.searchsorted(line[order], torch.arange(int(line.max()) + 2))
    dy, dx = taps // k, taps % k
    pixels = torch.rand(planes, 3, side, side) * 2 - 1
    t0 = time.perf_counter()
    for t in range(len(bounds) - 1):
        pos = order[bounds[t]:bounds[t + 1]]
        y, x = pos // side, pos % side
        patch = canvas[:, :, y[:, None] + dy, x[:, None] + dx]  # (planes, 3, n, taps), rows from r above
        h = F.linear(patch.permute(0, 2, 1, 3).flatten(2), first, model.first.bias)
        for block in model.blocks:
            h = h + F.linear(F.elu(F.linear(F.elu(h), block[1].weight.flatten(1), block[1].bias)),
                             block[3].weight.flatten(1), block[3].bias)
        F.linear(F.elu(h), model.head[1].weight.flatten(1), model.head[1].bias)
        canvas[:, :, y + r, x + r] = pixels[:, :, y, x]  # the decoded values would go here
    return (time.perf_counter() - t0) * 1000


def bench_sets() -> dict[str, dict[str, np.ndarray]]:
    """The photographs of the three benchmark sets that `icnn bench` compares codecs on (photo_val.py,
    photos.py, photos_unseen.py), by the names their results files give them."""
    from photos import photos
    _, held = ImageSet.open(SHARED / "data" / "photos" / "train").split_holdout(HOLDOUT_EVERY)
    unseen = ImageSet.open(SHARED / "data" / "photos-unseen")
    stem = lambda names: [n.rsplit(".", 1)[0] for n in names]  # noqa: E731
    return {"photo_val": dict(zip(stem(held.names), held.images)), "photos": photos(),
            "photos_unseen": dict(zip(stem(unseen.names), unseen.images))}


@torch.no_grad()
def full_image_bits(model: ExactReadyAR, image: np.ndarray) -> float:
    """An exact-ready model's code length for a whole (H, W, 3) image in bits by the training path:
    the best scale offset for it (every 2/8 from -1 to 3) and its side information counted."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    mu, log2_s, logits = model.parameters_of(x)
    best = math.inf
    for offset in range(-8, 25, 2):
        bits = edge_logistic_bits(x.unsqueeze(1), mu, log2_s + offset / 8).sum(2)
        if logits is not None:
            log2_w = torch.log_softmax(logits * math.log(2.0), dim=1) / math.log(2.0)
            bits = -torch.logsumexp((log2_w - bits) * math.log(2.0), dim=1, keepdim=True) / math.log(2.0)
        best = min(best, float(bits.sum()))
    return best + model.side_bits() + math.log2(len(WavefrontCoder.OFFSETS))


def full_image_figures(model: ExactReadyAR) -> dict:
    """bpd of the benchmark sets' whole photographs, against JPEG XL's and the shipped photo model's
    files in the sets' last benchmark results."""
    figures = {}
    for name, images in bench_sets().items():
        bench = json.loads((RESULTS / f"{name}.json").read_text())["datasets"][0]
        files = {r["codec"]: r["image_bytes"] for r in bench["results"] if r.get("image_bytes")}
        totals = {"model": 0.0, "jpegxl": 0.0, "icnn:photo": 0.0}
        dims = 0
        for i, image_name in enumerate(bench["image_names"]):
            image = np.asarray(images[image_name.rsplit(".", 1)[0]])
            totals["model"] += full_image_bits(model, image)
            for codec in ("jpegxl", "icnn:photo"):
                totals[codec] += 8 * files[codec][i]
            dims += image.size
            print(f"{name} {image_name}: {totals['model'] / dims:.4f} so far", file=sys.stderr, flush=True)
        figures[name] = {k: v / dims for k, v in totals.items()}
    return figures


def table() -> str:
    """Every saved run, photographs first; a run measured along the way has a row for each measurement.
    Exact-ready runs measured at the end also have the coder's code lengths, with a scale offset per crop."""
    rows = [json.loads(p.read_text()) for p in sorted(FOLDER.glob("*k*-w*min*.json"))]
    lines = ["| data | form | kernel | width | blocks | logistics | minutes | steps | val bpd (CIFAR-10: held out) | "
             "unseen bpd | as coded, offsets: val / unseen | MAC/pixel | parameters |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["data"], r.get("exact_ready", False), r["mac_per_pixel"], r["components"])):
        for point in [*r["curve"], r]:
            first = point.get("val_bpd", point.get("held_out_bpd"))
            unseen = f"{point['unseen_bpd']:.4f}" if "unseen_bpd" in point else ""
            coded = f"{point['val_bpd_exact_offsets']:.4f} / {point['unseen_bpd_exact_offsets']:.4f}" \
                if "val_bpd_exact_offsets" in point else ""
            form = "exact 8-bit" if r.get("exact_ready") else "float"
            if r.get("tile_predictor"):
                form += f", tile predictor {r['tile_predictor']}x{r['tile_predictor']}"
            if r.get("residual_context"):
                form += ", residuals"
            lines.append(f"| {r['data']} | {form} | {r['kernel']} | "
                         f"{r['width']} | {r['blocks']} | {r['components']} | {point['minutes']:g} | {point['steps']} | "
                         f"{first:.4f} | {unseen} | {coded} | {r['mac_per_pixel']:,} | {r['parameters']:,} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--kernel", type=int, default=7)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=2, help="residual blocks (with --exact-ready: 1x1 layers)")
    parser.add_argument("--components", type=int, default=10, help="logistics in each pixel's mixture")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr-halflife", type=float, help="halve the learning rate every this many steps")
    parser.add_argument("--checkpoint", type=Path, help="resume from this file if it exists, and save to it")
    parser.add_argument("--cifar10", type=Path, help="train on this CIFAR-10 .npz instead, measured on every 100th image")
    parser.add_argument("--eval-every", type=float, help="also measure the held-out crops every this many minutes")
    parser.add_argument("--decode-time", action="store_true",
                        help="time the networks of a pixel-by-pixel decoder of this architecture instead of training it")
    parser.add_argument("--exact-ready", action="store_true",
                        help="the model in the codec's exact 8-bit arithmetic, its parameters on the codec's grids")
    parser.add_argument("--measure", action="store_true",
                        help="measure the --checkpoint's EMA weights on the held-out crops (exact-ready: as coded too) "
                             "and save the figures as the run's result")
    parser.add_argument("--tile-predictor", type=int, default=0, metavar="K",
                        help="with --exact-ready: each crop's own least-squares predictor from its causal K x K neighbours "
                        "gives the means' base (side information)")
    parser.add_argument("--residual-context", action="store_true",
                        help="the network also sees the neighbours' residuals under the tile predictor (without one: "
                        "under the model's global linear predictor)")
    parser.add_argument("--full-images", action="store_true",
                        help="with --measure: also the whole photographs of photo_val, photos and photos_unseen, "
                        "against JPEG XL's files in their last benchmark results")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    name = (f"{'x' if args.exact_ready else ''}k{args.kernel}-w{args.width}-b{args.blocks}-c{args.components}"
            f"{f'-tp{args.tile_predictor}' if args.tile_predictor else ''}{'-rc' if args.residual_context else ''}"
            f"{f'-crop{args.crop}-bs{args.batch_size}' if (args.crop, args.batch_size) != (64, 16) and not args.cifar10 else ''}")
    if args.table:
        print(table())
    elif args.measure:
        torch.set_num_threads(args.threads)
        model = local_model(args.kernel, args.width, args.blocks, args.components, args.exact_ready, args.tile_predictor,
                            args.residual_context)
        saved = torch.load(args.checkpoint)
        model.load_state_dict(saved["ema"])
        minutes = round(saved["seconds"] / 60)
        figures = {"kernel": args.kernel, "width": args.width, "blocks": args.blocks, "components": model.components,
                   "tile_predictor": args.tile_predictor, "residual_context": args.residual_context,
                   "minutes": minutes, "steps": saved["step"], "exact_ready": args.exact_ready, "data": "photos",
                   "mac_per_pixel": model.mac_per_pixel(), "parameters": sum(p.numel() for p in model.parameters()),
                   "curve": saved["curve"]}
        for k, v in {k: torch.from_numpy(v) for k, v in held_out_crops(SHARED).items()}.items():
            figures[f"{k}_bpd"] = held_out_bpd(model, v)
            if args.exact_ready:
                figures[f"{k}_bpd_exact"], figures[f"{k}_bpd_exact_offsets"] = exact_held_out_bpd(model, v)
        if args.full_images:
            figures["full_images"] = full_image_figures(model)
        FOLDER.mkdir(parents=True, exist_ok=True)
        (FOLDER / f"{name}-{minutes}min.json").write_text(json.dumps(figures, indent=1) + "\n")
        print(json.dumps(figures))
    elif args.decode_time:
        torch.set_num_threads(args.threads)
        model = LocalAR(args.kernel, args.width, args.blocks, args.components)
        timing = {"kernel": args.kernel, "width": args.width, "blocks": args.blocks, "components": args.components,
                  "mac_per_pixel": model.mac_per_pixel(), "threads": args.threads,
                  **{f"wavefront_ms_256_planes{n}": min(wavefront_decode_ms(model, n) for _ in range(2)) for n in (1, 8)}}
        FOLDER.mkdir(parents=True, exist_ok=True)
        (FOLDER / f"decode-{name}.json").write_text(json.dumps(timing, indent=1) + "\n")
        print(json.dumps(timing))
    else:
        torch.set_num_threads(args.threads)
        result = train(args.kernel, args.width, args.blocks, args.components, args.minutes, args.lr, args.batch_size, args.crop,
                       args.eval_every, args.lr_halflife, args.checkpoint, args.cifar10, args.exact_ready,
                       args.tile_predictor, args.residual_context)
        FOLDER.mkdir(parents=True, exist_ok=True)
        path = FOLDER / f"{name}-{args.minutes:g}min{'-cifar10' if args.cifar10 else ''}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result))
