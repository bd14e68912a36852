"""Coding planes under the local AR (:mod:`icnn_codec.local_ar`), exactly, line by line.

A pixel's distribution needs the pixels above it within k // 2 columns and those to its left, so the
pixels on one line x + (k // 2 + 1) y = t depend only on earlier lines. The decoder runs the networks
once per line for all its pixels, of every plane in the batch, as 1x1 layers over gathered taps
(compiled loops, :mod:`icnn_codec.pointwise`: a line is too small for a framework's convolution),
and pops red, then green, then blue of the line off each tile's stream (:mod:`icnn_codec.mixture`,
:mod:`icnn_codec.rans`). What a plane's symbols are, in the order they are popped:

1. its tile predictor, when the model has one: each class's coefficients, colour by colour, as an
   exp-Golomb order (a uniform 4-bit symbol) and the coefficients' signed exp-Golomb codes of that
   order (:func:`icnn_codec.rans.exp_golomb`), then with two classes the activity threshold between
   them (a uniform 13-bit symbol);
2. its adjustment: for red, green and blue a scale offset (every log2 scale of the colour in the
   plane moves by it, in 1/8), then for each a mean shift (every mean of the colour moves by it, in
   1/8), all six as signed exp-Golomb codes of order 1: most planes need small ones;
3. with the tile predictor's residuals as context, the logit offset of :mod:`icnn_codec.adaptive`'s
   component (a uniform 3-bit symbol), the one component of every pixel that the plane itself trains;
4. its pixels, line by line: for each colour the window symbol of every pixel on the line, then
   the value of those that fell outside their window; green's and blue's mixtures end with
   :mod:`icnn_codec.repeat`'s components, whose shares the plane also learns as it is coded.

The encoder collects them in that order and codes them last to first. Nothing a plane's code holds depends on the other planes of
its batch: the networks' integers do not (the 8-bit scheme's sums are exact in any order), and each
plane's window is its own.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np
import torch

from . import adaptive, priors, rans
from .backends import IntConv
from .local_ar import ExactOutputs, LocalAR, TilePredictor, causal_mask
from .mixture import NARROW_PART, NARROW_SHARE, WEIGHT_BITS, pixel_code_length
from .pointwise import PointwiseLayer
from .quant import QConv2d
from .wavefront_core import decode_plane, plane_code_lengths, plane_symbols

OFFSETS = range(-16, 48)  # a colour's shift of every log2 scale of a plane, in 1/8
SHIFTS = range(-16, 17, 2)  # a colour's shift of every mean of a plane, in 1/16 (sent in eighths)
ADJUSTMENT_ORDER = 1  # the exp-Golomb order of the adjustment's codes
# The encoder chooses a plane's adjustment from every 17th pixel in raster order: a sample that meets
# every row and column phase (rows 0, 16, 32, ... would all be the first rows of JPEG's 8x8 blocks,
# or one colour of a camera's 2x2 mosaic, and choose scales for those rows only). A plane of at most
# SMALL_PLANE pixels makes its choices (the adjustment, the adaptive component's offset) on all of
# them: a thumbnail's sample would be a few dozen pixels, and choosing on all of them saves 0.017
# bpd on CIFAR-10 (docs/ablations.md).
SAMPLE_EVERY = 17
SMALL_PLANE = 2**12


def _adjustment_values(scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The six integers a plane's adjustment sends: its scale offsets, then its mean shifts in eighths."""
    return np.concatenate([scale, np.asarray(shift) // SHIFTS.step])


def adjustment_code(scale: np.ndarray, shift: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """A plane's adjustment, (3,) scale offsets and (3,) mean shifts, as (symbols, bits) pairs."""
    return rans.exp_golomb(_adjustment_values(scale, shift), ADJUSTMENT_ORDER)


def adjustment_bits(scale: np.ndarray, shift: np.ndarray) -> int:
    """Bits of :func:`adjustment_code`."""
    return rans.exp_golomb_length(_adjustment_values(scale, shift), ADJUSTMENT_ORDER)


MAX_ADJUSTMENT_BITS = adjustment_bits(np.full(3, OFFSETS[-1]), np.full(3, SHIFTS[0]))


def coefficient_code(coefficients: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """One colour's tile predictor coefficients as (symbols, bits) pairs: the exp-Golomb order that
    codes them shortest (a uniform symbol of ORDER_BITS), then their codes of that order."""
    order = min(range(2**rans.ORDER_BITS), key=lambda k: rans.exp_golomb_length(coefficients, k))
    return [(np.array([order]), rans.ORDER_BITS), *rans.exp_golomb(coefficients, order)]


class PlaneCode(NamedTuple):
    """What the encoder codes of a plane: its pixels (n, 3) in raster order; the outputs each is coded
    under (adjusted, with the adaptive component where the model has it); its side information as
    (symbols, bits) pairs in the order the decoder pops them; the repeat components' means (1/16
    grid) and weights (n, 3, sources; red's zero, :mod:`icnn_codec.repeat`); and each sample's bits
    (n, 3)."""

    values: np.ndarray
    outputs: ExactOutputs
    side: list[tuple[np.ndarray, int]]
    repeat16: np.ndarray
    repeat_weight: np.ndarray
    bits: np.ndarray


@lru_cache(maxsize=32)
def lines(height: int, width: int, reach: int) -> list[np.ndarray]:
    """The raster positions on each line x + (reach + 1) y = t, t ascending (on a narrow plane some
    lines are empty: left out)."""
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    t = (xs + (reach + 1) * ys).ravel()
    order = np.argsort(t, kind="stable")
    bounds = np.searchsorted(t[order], np.arange(t.max() + 2))
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


class Wavefront:
    """A frozen :class:`LocalAR`'s layers as the line-by-line decoder runs them, and its tables."""

    def __init__(self, model: LocalAR, tables: priors.LogisticTables, sample_every: int = SAMPLE_EVERY) -> None:
        self.model, self.tables, self.sample_every = model, tables, sample_every
        k = model.kernel
        self.r = k // 2
        taps = torch.from_numpy(np.flatnonzero(causal_mask(k).numpy()))
        self.dy, self.dx = taps // k, taps % k

        def gathered(layer: QConv2d) -> IntConv:  # the masked k x k layer as a 1x1 layer over its taps
            c = layer.kernel()
            w = c.w_int.flatten(2)[:, :, taps].flatten(1)[:, :, None, None]
            return IntConv(w, c.w_exp, c.b_int, c.in_frac, c.out_frac, c.out_lo, c.out_hi, c.signed_input, c.split)

        self.first, self.linear = gathered(model.first), gathered(model.linear)
        self.layers = [layer.kernel() for layer in (*model.hidden, model.head)]
        self.predictor = model.predictor
        # the adaptive component's contexts are the tile predictor's residuals
        self.adaptive = self.predictor is not None and model.residual_context
        if self.predictor is not None:  # its taps, as offsets into the decoder's canvas
            kp = self.predictor.kernel
            ptaps = np.flatnonzero(causal_mask(kp).numpy())
            self.pdy = torch.from_numpy(ptaps // kp - kp // 2 + self.r)
            self.pdx = torch.from_numpy(ptaps % kp - kp // 2 + self.r)

    # -- encoding ---------------------------------------------------------------------------
    def adjustment(self, values: np.ndarray, outputs: ExactOutputs) -> tuple[np.ndarray, np.ndarray]:
        """A plane's side information, (3,) scale offsets (in 1/8 of a log2 scale) and (3,) mean shifts
        (in 1/16), for the shortest code of these pixels: the offset best for all colours by descent
        from 0 in steps of 4 then 1 (a code length is near enough convex in it), then each colour's own
        best offset and, under those, its best shift (each colour judged on its own bits; the
        colours' choices interact a little through the mixture weights, so the whole is kept only if
        it is shorter than the one offset). Each choice counts its own code's bits too."""
        lengths: dict[tuple, np.ndarray] = {}

        def length(scale: tuple, shift: tuple = (0, 0, 0)) -> np.ndarray:  # bits of each colour
            if (scale, shift) not in lengths:
                side = [adjustment_bits(np.array([a]), np.array([b])) for a, b in zip(scale, shift)]
                lengths[scale, shift] = pixel_code_length(values, outputs, self.tables, scale, shift).sum(0) + side
            return lengths[scale, shift]

        o = 0
        for step in (4, 1):
            while True:
                better = min((o - step, o + step), key=lambda b: length((b,) * 3).sum())
                if better not in OFFSETS or length((better,) * 3).sum() >= length((o,) * 3).sum():
                    break
                o = better
        scale = tuple(each_colours_best(lambda d: length((d,) * 3), o, 1, OFFSETS))
        shift = tuple(each_colours_best(lambda d: length(scale, (d,) * 3), 0, SHIFTS.step, SHIFTS))
        if length(scale, shift).sum() >= length((o,) * 3).sum():
            scale, shift = (o,) * 3, (0, 0, 0)
        return np.array(scale), np.array(shift)

    def sample(self, pixels: int) -> slice:
        """The pixels of a plane of this many that its side information is chosen on: every
        ``sample_every``-th, or all of a plane of SMALL_PLANE or fewer, whatever ``sample_every`` is."""
        return slice(None, None, 1 if pixels <= SMALL_PLANE else self.sample_every)

    def plane_adjustment(self, values: np.ndarray, outputs: ExactOutputs) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`adjustment` for a whole plane's pixels (raster order), chosen on :meth:`sample`."""
        s = self.sample(len(values))
        return self.adjustment(values[s], outputs.take(s))

    def adaptive_offset(self, values: np.ndarray, outputs: ExactOutputs, bias16: np.ndarray, ls8: np.ndarray) -> int:
        """The logit offset of the adaptive component (:mod:`icnn_codec.adaptive`) for the shortest code
        of these pixels (their outputs already adjusted): by descent from 8 along ``adaptive.OFFSETS``."""
        lengths: dict[int, float] = {}

        def length(at: int) -> float:
            if at not in lengths:
                offset = adaptive.OFFSETS[at]
                lengths[at] = float(pixel_code_length(values, outputs.with_component(bias16, ls8, offset), self.tables).sum())
            return lengths[at]

        best = adaptive.OFFSETS.index(8)
        for step in (-1, 1):
            while 0 <= best + step < len(adaptive.OFFSETS) and length(best + step) < length(best):
                best += step
        return adaptive.OFFSETS[best]

    def prepared(self, plane: np.ndarray) -> tuple[np.ndarray, ExactOutputs, list[tuple[np.ndarray, int]]]:
        """A uint8 plane's (H, W, 3) pixels (n, 3), the outputs each is coded under (adjusted, with the
        adaptive component where the model has it) and its side information, as :class:`PlaneCode`."""
        height, width, _ = plane.shape
        pixels = torch.from_numpy(plane.transpose(2, 0, 1)[None].astype(np.float64))
        fitted = neighbours = None
        if self.predictor is not None:
            neighbours = self.predictor.neighbours(pixels - 128)
            fitted = self.predictor.fit(pixels, neighbours)
        with torch.no_grad():
            outputs = self.model.exact_outputs(pixels, fitted, neighbours)
        values = plane.reshape(-1, 3).astype(np.int64)
        scale, shift = self.plane_adjustment(values, outputs)
        side = []
        if fitted is not None:
            for coef in fitted.coef[0].numpy():
                for c, used in enumerate(self.predictor.used()):
                    side += coefficient_code(coef[c, used])
            if len(fitted.coef[0]) > 1:
                side.append((fitted.threshold.numpy(), TilePredictor.THRESHOLD_BITS))
        side += adjustment_code(scale, shift)
        outputs = outputs.adjusted(scale, shift)
        if self.adaptive:
            centred = values - 128
            tile16 = np.stack([outputs.tile16(centred, c) for c in range(3)], axis=1)
            bias16, ls8 = adaptive.plane_columns(centred, tile16, *line_table(height, width, self.r), width)
            s = self.sample(len(values))
            offset = self.adaptive_offset(values[s], outputs.take(s), bias16[s], ls8[s])
            outputs = outputs.with_component(bias16, ls8, offset)
            side.append((np.array([adaptive.OFFSETS.index(offset)]), adaptive.OFFSET_BITS))
        return values, outputs, side

    def plane_code(self, plane: np.ndarray) -> PlaneCode:
        """What the encoder codes of a uint8 plane (H, W, 3), and each sample's bits."""
        height, width, _ = plane.shape
        values, outputs, side = self.prepared(plane)
        bits, repeat16, repeat_weight = plane_code_lengths(values, *outputs, *line_table(height, width, self.r), width,
                                                           WEIGHT_BITS, self.tables.half_widths, self.tables.offsets,
                                                           self.tables.prefix)
        return PlaneCode(values, outputs, side, repeat16, repeat_weight, bits)

    def push(self, plane: np.ndarray, encoder: rans.Encoder) -> None:
        """Add a uint8 plane's (H, W, 3) symbols to the encoder, in the order the decoder pops them.
        Planes are coded one at a time: the encoder knows every pixel, so its networks and mixtures
        run over the whole plane and nothing is gained by batches."""
        height, width, _ = plane.shape
        values, outputs, side = self.prepared(plane)
        for symbols, bits in side:
            encoder.push_uniform(symbols, bits)
        encoder.push(*plane_symbols(values, *outputs, *line_table(height, width, self.r), width, WEIGHT_BITS,
                                    NARROW_PART, NARROW_SHARE, self.tables.half_widths, self.tables.offsets,
                                    self.tables.prefix))

    def encode(self, planes: list[np.ndarray], check: int = 0) -> bytes:
        """A tile's stream of its planes, popped in this order, ending in ``check`` (its checksum)."""
        encoder = rans.Encoder()
        for plane in planes:
            self.push(plane, encoder)
        return encoder.stream(check)

    # -- decoding ---------------------------------------------------------------------------
    @staticmethod
    def streams(streams: list[bytes]) -> rans.Streams:
        """Decoders of tiles' streams, to pop their planes in the order they were encoded."""
        return rans.Streams(streams)

    def compiled(self) -> tuple:
        """The layers as the compiled decoder takes them: the first, the hidden ones stacked, the head
        and the linear predictor, each (weights transposed, bias, scale, lo, hi)."""
        if not hasattr(self, "_compiled"):
            first, *hidden, head = [PointwiseLayer(c) for c in (self.first, *self.layers)]
            linear = PointwiseLayer(self.linear)
            if hidden:
                stacked = tuple(np.stack(arrays) for arrays in zip(*(layer.fields() for layer in hidden)))
            else:  # no hidden layer: empty stacks of the first layer's shapes
                stacked = tuple(np.zeros((0, *a.shape), dtype=a.dtype) for a in first.fields())
            self._compiled = (first.fields(), stacked, head.fields(), linear.fields())
        return self._compiled

    def pop(self, streams: rans.Streams, height: int, width: int) -> np.ndarray:
        """Pop one plane (height x width x 3, uint8) off each stream: (B, H, W, 3)."""
        b, r = len(streams), self.r
        # centred samples, zero padding; then their residuals under the tile predictor, for a network
        # that reads them
        planes = np.zeros((b, 6 if self.model.residual_context else 3, height + r, width + 2 * r), dtype=np.int64)
        pdy = pdx = np.zeros(0, dtype=np.int64)
        classes = self.predictor.classes(height, width) if self.predictor is not None else 1
        near_weights = np.zeros((b, classes, 0, 3))
        constants, colour = np.zeros((b, classes, 3), dtype=np.int64), np.zeros((b, classes, 3), dtype=np.int64)
        thresholds = np.zeros(b, dtype=np.int64)
        if self.predictor is not None:
            used = self.predictor.used()
            tiles = np.zeros((b, classes, *used.shape), dtype=np.int64)
            for i in range(b):
                for j in range(classes):
                    for c in range(3):
                        order = int(streams.pop_uniform(i, 1, rans.ORDER_BITS)[0])
                        tiles[i, j, c, used[c]] = streams.pop_exp_golomb(i, int(used[c].sum()), order)
                if classes > 1:
                    thresholds[i] = streams.pop_uniform(i, 1, TilePredictor.THRESHOLD_BITS)[0]
            colour = np.ascontiguousarray(self.predictor.colour_coefficients(torch.from_numpy(tiles)), dtype=np.int64)
            pdy, pdx = self.pdy.numpy(), self.pdx.numpy()
            near_weights = np.ascontiguousarray(tiles[:, :, :, : 3 * len(pdy)].transpose(0, 1, 3, 2), dtype=np.float64)
            constants = TilePredictor.CONSTANT * tiles[:, :, :, -1]
        scales = np.zeros((b, 3), dtype=np.int64)
        shifts = np.zeros((b, 3), dtype=np.int64)
        adaptive_offsets = np.zeros(b if self.adaptive else 0, dtype=np.int64)
        for i in range(b):
            scales[i] = streams.pop_exp_golomb(i, 3, ADJUSTMENT_ORDER)
            shifts[i] = SHIFTS.step * streams.pop_exp_golomb(i, 3, ADJUSTMENT_ORDER)
            if not (all(v in OFFSETS for v in scales[i]) and all(v in SHIFTS for v in shifts[i])):
                raise ValueError("a plane's adjustment out of range")
            if self.adaptive:
                adaptive_offsets[i] = adaptive.OFFSETS[int(streams.pop_uniform(i, 1, adaptive.OFFSET_BITS)[0])]
        positions, starts = line_table(height, width, r)
        decode_plane(planes, positions, starts, width, r, self.dy.numpy(), self.dx.numpy(), *self.compiled(),
                     self.model.components, self.model.residual_context, self.predictor is not None, pdy, pdx,
                     near_weights, constants, colour, thresholds, scales, shifts, adaptive_offsets, NARROW_PART, NARROW_SHARE, WEIGHT_BITS,
                     self.tables.half_widths, self.tables.offsets, self.tables.prefix, streams.words, streams.ends,
                     streams.states, streams.ats)
        return (planes[:, :3, r:, r : r + width] + 128).transpose(0, 2, 3, 1).astype(np.uint8)


def each_colours_best(bits: Callable[[int], np.ndarray], start: int, step: int, allowed: range) -> np.ndarray:
    """The value of ``allowed`` that gives each colour its fewest ``bits(value)`` (3,), found by walking
    from ``start`` in both directions by ``step`` while some colour's bits still fall."""
    best_value, best_bits = np.full(3, start), bits(start)
    for direction in (-step, step):
        value = start + direction
        while value in allowed:
            now = bits(value)
            better = now < best_bits
            if not better.any():
                break
            best_value[better], best_bits = value, np.minimum(now, best_bits)
            value += direction
    return best_value


@lru_cache(maxsize=32)
def line_table(height: int, width: int, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`lines` in two arrays: every line's positions one after another, and where each starts
    (and the last ends)."""
    parts = lines(height, width, reach)
    return np.concatenate(parts), np.concatenate([[0], np.cumsum([len(p) for p in parts])])


def code_length(model: LocalAR, tables: priors.LogisticTables, planes: np.ndarray) -> float:
    """Bits the coder would spend on uint8 planes (B, H, W, 3) with the side information the encoder
    chooses (up to the ANS coder's own rounding)."""
    wavefront = Wavefront(model, tables)
    total = 0.0
    for plane in planes:
        code = wavefront.plane_code(plane)
        total += float(code.bits.sum()) + sum(len(s) * bits for s, bits in code.side)
    return total
