"""Coding planes under the local AR (:mod:`icnn_codec.local_ar`), exactly, line by line.

A pixel's distribution needs the pixels above it within k // 2 columns and those to its left, so the
pixels on one line x + (k // 2 + 1) y = t depend only on earlier lines. The decoder runs the networks
once per line for all its pixels, of every plane in the batch, as 1x1 layers over gathered taps
(compiled loops, :mod:`icnn_codec.pointwise`: a line is too small for a framework's convolution),
and each plane's coder pops red, then green, then blue of the line (:mod:`icnn_codec.mixture`).
What a plane's coder holds, first to last:

1. its tile predictor's coefficients (int16, each a uniform symbol), when the model has one;
2. its scale offset (one uniform symbol: every log2 scale of the plane moves by it, in 1/8);
3. its pixels, line by line: for each colour the window symbol of every pixel on the line, then
   the value of those that fell outside their window.

The encoder pushes exactly the reverse. Nothing a plane's code holds depends on the other planes of
its batch: the networks' integers do not (the 8-bit scheme's sums are exact in any order), and each
plane's window is its own.
"""
from __future__ import annotations

from functools import lru_cache

import constriction
import numpy as np
import torch

from . import priors
from .backends import LATENT_LIMIT, IntConv
from .local_ar import ExactOutputs, LocalAR, TilePredictor, causal_mask
from .mixture import channel_distribution, component_weights, pixel_code_length, posterior_weights
from .pointwise import PointwiseLayer, gather, run
from .quant import QConv2d

OFFSETS = range(-16, 48)  # a plane's shift of every log2 scale, in 1/8
OFFSET_EVERY = 16  # the encoder chooses a plane's offset from every 16th row
ENCODE_CHUNK = 2**12  # the encoder builds the distributions of about this many pixels at once
_offset_model = constriction.stream.model.Uniform(len(OFFSETS))
_coefficient_model = constriction.stream.model.Uniform(2 * TilePredictor.LIMIT + 1)
_categorical = constriction.stream.model.Categorical(perfect=False)


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

    def __init__(self, model: LocalAR, tables: priors.LogisticTables, offset_every: int = OFFSET_EVERY) -> None:
        self.model, self.tables, self.offset_every = model, tables, offset_every
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
        if self.predictor is not None:  # its taps, as offsets into the decoder's canvas
            kp = self.predictor.kernel
            ptaps = np.flatnonzero(causal_mask(kp).numpy())
            self.pdy = torch.from_numpy(ptaps // kp - kp // 2 + self.r)
            self.pdx = torch.from_numpy(ptaps % kp - kp // 2 + self.r)

    # -- encoding ---------------------------------------------------------------------------
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
                if better not in OFFSETS or length(better) >= length(o):
                    break
                o = better
        return o

    def push(self, plane: np.ndarray, coder) -> None:
        """Push a uint8 plane (H, W, 3) onto its coder. Planes are coded one at a time: the encoder
        knows every pixel, so its networks run over the whole plane and nothing is gained by batches."""
        height, width, _ = plane.shape
        pixels = torch.from_numpy(plane.transpose(2, 0, 1)[None].astype(np.float64))
        fitted = self.predictor.fit(pixels) if self.predictor is not None else None
        with torch.no_grad():
            outputs = self.model.exact_outputs(pixels, fitted)
        values = plane.reshape(-1, 3).astype(np.int64)
        sampled = np.flatnonzero((np.arange(height)[:, None] % self.offset_every == 0).repeat(width, 1).ravel())
        offset = self.shortest_offset(values[sampled], outputs.take(sampled))
        line_list = lines(height, width, self.r)
        order = np.concatenate(line_list)
        values, outputs = values[order], outputs.take(order).offset(offset)
        sizes = np.array([len(line) for line in line_list])
        ends = np.cumsum(sizes)
        # the distributions of many lines at once (the encoder knows every pixel), pushed line by line
        # from the last; a chunk's rows are as wide as its widest window
        first = 0
        chunks = []
        while first < len(sizes):
            last = max(first + 1, int(np.searchsorted(ends, ends[first] - sizes[first] + ENCODE_CHUNK, side="right")))
            chunks.append((first, min(last, len(sizes))))
            first = chunks[-1][1]
        for a, b in reversed(chunks):
            part = slice(int(ends[a] - sizes[a]), int(ends[b - 1]))
            v, out, own_sizes = values[part], outputs.take(part), sizes[a:b]
            weights, dists = component_weights(out.logits), []
            for c in range(3):
                dists.append(channel_distribution(out.means(v - 128, c), out.ls8[:, :, c], weights, self.tables, own_sizes))
                weights = posterior_weights(weights, dists[c].counts_of(v[:, c]))
            symbols = [d.symbols(v[:, c]).astype(np.int32) for c, d in enumerate(dists)]
            outside = [d.outside(v[:, c]) for c, d in enumerate(dists)]
            starts = np.cumsum(own_sizes) - own_sizes
            for j in reversed(range(len(own_sizes))):
                own = slice(int(starts[j]), int(starts[j] + own_sizes[j]))
                for c in reversed(range(3)):
                    escaped = own.start + np.flatnonzero(outside[c][own])
                    if len(escaped):
                        rows, candidates = dists[c].beyond(escaped)
                        if rows.shape[1] > 1:  # else the one value outside a 255-wide window is implied
                            which = (candidates == v[escaped, c, None]).argmax(1)
                            coder.encode_reverse(which.astype(np.int32), _categorical, rows)
                    coder.encode_reverse(symbols[c][own], _categorical, dists[c].group_rows(own))
        coder.encode_reverse(np.array([offset - OFFSETS.start], dtype=np.int32), _offset_model)
        if fitted is not None:
            sent = fitted[0].numpy()[self.predictor.used()] + TilePredictor.LIMIT
            coder.encode_reverse(sent.astype(np.int32), _coefficient_model)

    # -- decoding ---------------------------------------------------------------------------
    def compiled(self) -> tuple[list[PointwiseLayer], PointwiseLayer]:
        """The network (first, hidden, head) and the linear predictor as the compiled loops run them."""
        if not hasattr(self, "_compiled"):
            self._compiled = ([PointwiseLayer(c) for c in (self.first, *self.layers)], PointwiseLayer(self.linear))
        return self._compiled

    def pop(self, coders: list, height: int, width: int) -> np.ndarray:
        """Pop one plane (height x width x 3, uint8) off each coder: (B, H, W, 3)."""
        b, r = len(coders), self.r
        network, linear_layer = self.compiled()
        residual_context = self.model.residual_context
        # centred samples, zero padding; then their residuals under the tile predictor, for a network
        # that reads them
        planes = np.zeros((b, 6 if residual_context else 3, height + r, width + 2 * r), dtype=np.int64)
        dy, dx = self.dy.numpy(), self.dx.numpy()
        taps = len(dy)
        tiles = colour = None
        if self.predictor is not None:
            used = self.predictor.used()
            tiles = np.zeros((b, *used.shape), dtype=np.int64)
            for i, coder in enumerate(coders):
                tiles[i, used] = coder.decode(_coefficient_model, int(used.sum())).astype(np.int64) - TilePredictor.LIMIT
            colour = self.predictor.colour_coefficients(torch.from_numpy(tiles))
            pdy, pdx = self.pdy.numpy(), self.pdx.numpy()
            near_weights = tiles[:, :, : 3 * len(pdy)].transpose(0, 2, 1).astype(np.float64)  # (B, taps, 3)
            constants = TilePredictor.CONSTANT * tiles[:, None, :, -1]
        offsets = np.array([int(coder.decode(_offset_model, 1)[0]) for coder in coders]) + OFFSETS.start
        for line in lines(height, width, r):
            y, x = line // width, line % width
            n = len(line)
            sizes = np.full(b, n)
            inputs = gather(planes, y, x, dy, dx, LATENT_LIMIT)  # (B n, channels taps)
            head = run(network, inputs)
            linear = run([linear_layer], inputs[:, : 3 * taps])
            sums = tile_colour = None
            if tiles is not None:
                near = gather(planes[:, :3], y, x, pdy, pdx, LATENT_LIMIT).reshape(b, n, -1)
                sums = (np.matmul(near, near_weights).astype(np.int64) + constants).reshape(b * n, 3)
                tile_colour = np.repeat(colour, n, axis=0)
            outputs = self.model.outputs_of(head, linear, sums, tile_colour).offset(np.repeat(offsets, n))
            weights, decoded = component_weights(outputs.logits), np.zeros((b * n, 3), dtype=np.int64)
            for c in range(3):
                dist = channel_distribution(outputs.means(decoded, c), outputs.ls8[:, :, c], weights, self.tables, sizes)
                value = np.empty(b * n, dtype=np.int64)
                for i, coder in enumerate(coders):
                    own = slice(i * n, (i + 1) * n)
                    value[own] = dist.low[own] + coder.decode(_categorical, dist.group_rows(own)).astype(np.int64)
                    escaped = own.start + np.flatnonzero(value[own] == dist.low[own] + 2 * dist.reach[own] + 1)
                    if len(escaped):
                        rows, candidates = dist.beyond(escaped)
                        which = coder.decode(_categorical, rows).astype(np.int64) if rows.shape[1] > 1 else np.zeros(len(rows), int)
                        value[escaped] = candidates[np.arange(len(which)), which]
                weights = posterior_weights(weights, dist.counts_of(value))
                decoded[:, c] = value - 128
                planes[:, c, y + r, x + r] = decoded[:, c].reshape(b, n)
                if residual_context:  # under the tile predictor, or else the linear one
                    predicted16 = outputs.tile16(decoded, c) if tiles is not None else linear[:, c]
                    planes[:, 3 + c, y + r, x + r] = (decoded[:, c] - (predicted16 >> priors.MU_FRAC)).reshape(b, n)
        return (planes[:, :3, r:, r : r + width] + 128).transpose(0, 2, 3, 1).astype(np.uint8)


def code_length(model: LocalAR, tables: priors.LogisticTables, planes: np.ndarray) -> float:
    """Bits the coder would spend on uint8 planes (B, H, W, 3) with their best scale offsets, side
    information included (up to the ANS coder's own rounding)."""
    wavefront = Wavefront(model, tables)
    total = 0.0
    for plane in planes:
        pixels = torch.from_numpy(plane.transpose(2, 0, 1)[None].astype(np.float64))
        with torch.no_grad():
            outputs = model.exact_outputs(pixels)
        values = plane.reshape(-1, 3).astype(np.int64)
        total += float(pixel_code_length(values, outputs.offset(wavefront.shortest_offset(values, outputs)), tables).sum())
        total += model.side_bits() + np.log2(len(OFFSETS))
    return total
