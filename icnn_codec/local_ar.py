"""The local autoregressive model: each pixel's distribution from its decoded neighbours.

A masked k x k fixed-point convolution reads the causal neighbours (the rows above within k // 2,
the pixels to the left) of the centred samples, and with ``residual_context`` their residuals under
the tile's predictor too; 1x1 fixed-point layers follow (uint8 activations, a ReLU with a cap); a
13-bit head gives, per pixel and for each of a few logistics, each colour's mean on the 1/16 grid,
log2 scale on the 1/8 grid, colour coefficients (green's mean leans on red, blue's on red and green)
and weight logits. Every mean starts from :class:`TilePredictor`, a linear predictor the encoder
fits to each tile by least squares and sends: what adapts the model to the image.

Everything that decides a bit is integer arithmetic (the 8-bit scheme of :mod:`icnn_codec.quant`,
and integer sums of products for the predictor), so :mod:`icnn_codec.wavefront` decodes exactly what
was encoded. The same module trains (the float path of ``quant``'s layers).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import priors
from .backends import current_backend
from .quant import BATCHED_PIXELS, HIDDEN_FRAC, INPUT_FRAC, QConv2d, hidden_conv, integer_parameters


def causal_mask(kernel: int) -> torch.Tensor:
    """The taps of a k x k kernel that a pixel's decoded neighbours fill: the rows above, and the pixels
    to the left in its own row."""
    mask = torch.zeros(kernel, kernel)
    mask[: kernel // 2] = 1
    mask[kernel // 2, : kernel // 2] = 1
    return mask


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

    def integer_parameters(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The masked weights' integers: nothing outside the mask is ever frozen or exported."""
        return integer_parameters(self.conv.weight * self.mask, self.conv.bias, self.in_frac, self.split)

    def _convolve(self, a: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Training path: the causal taps gathered into (B, C x taps, H x W) and one batched product, about
        twice as fast as the convolution, which multiplies the masked half of the kernel too."""
        batch, _, height, width = a.shape
        if height * width < BATCHED_PIXELS:
            return super()._convolve(a, w, b)  # the framework's convolution
        r = self.conv.kernel_size[0] // 2
        rows, cols = self.mask.nonzero().unbind(1)
        padded = F.pad(a, (r, r, r, r))
        taps = torch.stack([padded[:, :, y : y + height, x : x + width] for y, x in zip(rows.tolist(), cols.tolist())], 2)
        w = w[:, :, rows, cols].flatten(1).expand(batch, -1, -1)
        return torch.baddbmm(b.unsqueeze(1).expand(batch, -1, height * width), w, taps.flatten(1, 2).flatten(2)
                             ).view(batch, -1, height, width)


def edge_logistic_bits(z: torch.Tensor, mu: torch.Tensor, log2_s: torch.Tensor) -> torch.Tensor:
    """-log2 P(z) for samples 0..255 under discretised logistics on the codec's grids, the mass below 0
    and above 255 folded onto the two end values (an exact table row can fold it by integer sums)."""
    inside = priors.discretized_logistic_bits(z, mu, log2_s)
    inv_s = torch.pow(2.0, -log2_s)
    low = -F.logsigmoid((0.5 - mu) * inv_s) / math.log(2)
    high = -F.logsigmoid((mu - 254.5) * inv_s) / math.log(2)
    return torch.where(z < 0.5, low, torch.where(z > 254.5, high, inside))


class LocalAR(nn.Module):
    """The local AR in the codec's exact 8-bit arithmetic: what the decoder runs bit for bit.

    A masked k x k fixed-point convolution of the centred samples (x - 128, read as x / 64), ``depth``
    1x1 layers (uint8 activations, ReLU with a cap, no residual sums), and a 13-bit head giving, for
    each of ``components`` logistics of a pixel, each sample's mean on the 1/16 grid and log2 scale on
    the 1/8 grid (the codec's tables) and three colour coefficients on a 1/64 grid: green's mean moves
    by a (r - 128), blue's by b (r - 128) + c (g - 128), each term floored onto the mean's grid; with
    several, weight logits on a 1/8 grid (``priors.LOGIT_FRAC``), the weights their base-2 softmax. A linear masked k x k
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

    def config(self) -> dict:
        """The architecture, as a model file records it (:meth:`from_config` builds it again)."""
        return {"kernel": self.kernel, "width": self.first.conv.out_channels, "depth": len(self.hidden),
                "components": self.components, "tile_predictor": self.tile_predictor,
                "residual_context": self.residual_context}

    @classmethod
    def from_config(cls, config: dict) -> "LocalAR":
        return cls(**config)

    def qconvs(self) -> list[QConv2d]:
        """The fixed-point layers in a model file's order."""
        return [self.first, *self.hidden, self.head, self.linear]

    def bits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Training path: each pixel's code length in bits (B, H, W) for uint8-valued (B, 3, H, W) images,
        the tile predictor's coefficients spread over the pixels."""
        mu, log2_s, logits = self.parameters_of(pixels)
        bits = edge_logistic_bits(pixels.unsqueeze(1), mu, log2_s).sum(2)  # (B, K, H, W)
        side = self.side_bits(*pixels.shape[2:]) / (pixels.shape[2] * pixels.shape[3])  # spread over the crop's pixels
        if logits is None:
            return bits[:, 0] + side
        log2_w = torch.log_softmax(logits * math.log(2.0), dim=1) / math.log(2.0)
        return -torch.logsumexp((log2_w - bits) * math.log(2.0), dim=1) / math.log(2.0) + side

    def side_bits(self, height: int, width: int) -> int:
        """Side information a height x width crop carries: its tile predictor."""
        return self.predictor.side_bits(height, width) if self.tile_predictor else 0

    def parameters_of(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Training path: each component's means and log2 scales (B, K, 3, H, W) on their grids, and
        the components' weight logits (B, K, H, W; None for one)."""
        a = (pixels - 128) / 2**INPUT_FRAC
        linear = self.linear(a)
        base = 128
        if self.tile_predictor:
            fit = self.predictor.fit(pixels)
            labels = self.predictor.labels(pixels - 128, fit)
            predicted = self.predictor.predict16(pixels, fit, labels).float() / 2**priors.MU_FRAC
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
        for layer in self.qconvs():
            layer.freeze()

    @torch.no_grad()
    def exact_outputs(self, pixels: torch.Tensor, tile: "TileFit | None" = None,
                      neighbours: torch.Tensor | None = None) -> "ExactOutputs":
        """The exact integer outputs (after ``freeze``) for every pixel of (B, 3, H, W) images, pixels in
        raster order of each image, the images one after another; ``tile``: each image's tile predictor
        (:meth:`TilePredictor.fit`'s, when the model has one and none is given); ``neighbours``: its
        :meth:`TilePredictor.neighbours`, if the caller has them."""
        centred = pixels.double() - 128
        a = centred
        flat = lambda t: t.long().permute(0, 2, 3, 1).reshape(-1, t.shape[1]).numpy()  # noqa: E731
        sums = colour = None
        linear = self.linear(centred)
        predicted16 = linear.long()
        if self.predictor is not None:
            neighbours = self.predictor.neighbours(centred) if neighbours is None else neighbours
            tile = self.predictor.fit(pixels, neighbours) if tile is None else tile
            labels = self.predictor.labels(centred, tile)
            tile_sums = self.predictor.sums(pixels, tile, labels, neighbours)
            predicted16 = self.predictor.predict16(pixels, tile, labels, tile_sums)
            sums = flat(tile_sums)
            colour = self.predictor.pixel_colour_coefficients(tile, labels).reshape(-1, 3).numpy()
        if self.residual_context:
            a = torch.cat([a, centred - (predicted16 >> priors.MU_FRAC)], dim=1)
        # layer to layer in the backend's own tensors (uint8 activations on int8), as the backends run them
        backend = current_backend()
        h = backend.signed_inputs(a) if self.first.signed_input else backend.activations(a)
        for layer in (self.first, *self.hidden, self.head):
            h = backend.conv(layer.kernel(), h)
        return self.outputs_of(flat(h), flat(linear), sums, colour)

    def outputs_of(self, head: np.ndarray, linear: np.ndarray, tile_sum: np.ndarray | None = None,
                   tile_colour: np.ndarray | None = None) -> "ExactOutputs":
        """The head's (n, 9K [+ K]) and the linear predictor's (n, 3) integers as prior parameters, with
        the tile predictor's neighbour sums and colour coefficients (n, 3) where the model has one."""
        k = self.components
        per = head[:, : 9 * k].reshape(-1, k, 9)
        logits = head[:, 9 * k :] if k > 1 else np.zeros((len(head), 1), dtype=np.int64)
        none = np.zeros((len(head), 3), dtype=np.int64)
        return ExactOutputs(*ExactOutputs._contiguous(
            linear[:, None] + per[:, :, 0:3] + 128 * 2**priors.MU_FRAC, per[:, :, 3:6], per[:, :, 6:9], logits,
            none if tile_sum is None else tile_sum, none if tile_colour is None else tile_colour))

    def mac_per_pixel(self) -> int:
        width, taps = self.first.conv.out_channels, int(self.first.mask.sum())
        outputs = self.head.conv.out_channels
        predictor = self.predictor.coefficients() if self.tile_predictor else 0
        return (taps * self.first.conv.in_channels * width + len(self.hidden) * width * width + 2 * width * outputs
                + 2 * taps * 3 * 3 + predictor)


class TileFit(NamedTuple):
    """A plane's tile predictor as the encoder fits and sends it: its coefficients (B, classes, 3,
    inputs) int64 and each plane's activity threshold between its two classes (B,) int64 (0 with
    one class); and, where the fit found them, each pixel's class (B, HW), which
    :meth:`TilePredictor.labels` would find again."""

    coef: torch.Tensor
    threshold: torch.Tensor
    labels: torch.Tensor | None = None


class TilePredictor:
    """A tile's own linear predictors of every sample, sent as side information: what adapts the model's
    means to one image. Each colour is predicted from the causal k x k neighbours' three colours (zero
    outside the tile), the pixel's colours before it, and a constant (on a 1/16 grid), by coefficients
    on a 1/4096 grid (int16; the codec sends them as exp-Golomb codes, training charges BITS each)
    that the encoder fits to the tile (:meth:`fit`).
    A plane of CLASSES_FROM pixels or more has two such predictors, one for the pixels whose causal
    activity (:meth:`activity`) is at most the threshold it sends, one for the rest: calm and busy
    parts of a photograph want different predictors, and a small plane cannot pay for two. The
    prediction is exact: an integer sum of products shifted onto the means' 1/16 grid, floored."""

    FRAC = 12
    CONSTANT = 2 ** (FRAC - priors.MU_FRAC)  # the constant's coefficient is on the means' 1/16 grid
    LIMIT = 2**15 - 1
    BITS = 16
    CLASSES = 2
    CLASSES_FROM = 2**15  # pixels in a plane
    THRESHOLD_BITS = 13  # an activity is at most 3 colours x 3 differences x 510 < 2**13
    ROBUST_STEPS = 4  # reweighting steps after least squares (docs/ablations.md: 8 gain 0.06 % more)
    ROBUST_SAMPLE = 3  # on every 3rd diagonal's pixels (odd: every 2x2 phase)
    ROBUST_FLOOR = 0.5  # errors below this weigh as this

    def __init__(self, kernel: int) -> None:
        self.kernel = kernel
        self.taps = causal_mask(kernel).flatten().bool()
        self.inputs = 3 * int(self.taps.sum()) + 3  # per colour: neighbours, two colour slots, a constant

    def coefficients(self) -> int:
        """How many a class's predictor sends (colour c uses c of the three colour slots)."""
        return 3 * self.inputs - 2 - 1

    def classes(self, height: int, width: int) -> int:
        return self.CLASSES if height * width >= self.CLASSES_FROM else 1

    def side_bits(self, height: int, width: int) -> int:
        """What a height x width plane sends for its predictors."""
        k = self.classes(height, width)
        return k * self.coefficients() * self.BITS + (self.THRESHOLD_BITS if k > 1 else 0)

    def neighbours(self, centred: torch.Tensor) -> torch.Tensor:
        """(B, HW, 3 taps) causal neighbours of centred (B, 3, H, W) samples, zero outside the tile."""
        b, _, h, w = centred.shape
        r = self.kernel // 2
        cols = F.unfold(F.pad(centred.double(), (r, r, r, r)), self.kernel).view(b, 3, -1, h * w)[:, :, self.taps]
        return cols.reshape(b, -1, h * w).transpose(1, 2)

    @staticmethod
    def activity(centred: torch.Tensor) -> torch.Tensor:
        """Each pixel's causal activity (B, HW) int64: |N - NW| + |W - NW| + |NE - N| summed over the
        colours of centred (B, 3, H, W) samples, zero outside the tile."""
        x = F.pad(centred.double(), (1, 1, 1, 0))
        n, nw, ne, w = x[:, :, :-1, 1:-1], x[:, :, :-1, :-2], x[:, :, :-1, 2:], x[:, :, 1:, :-2]
        return ((n - nw).abs() + (w - nw).abs() + (ne - n).abs()).sum(1).flatten(1).long()

    @staticmethod
    def labels(centred: torch.Tensor, fit: TileFit) -> torch.Tensor:
        """Each pixel's class (B, HW) int64: 1 where its activity is above its plane's threshold."""
        if fit.labels is not None:
            return fit.labels
        if fit.coef.shape[1] == 1:
            return torch.zeros(centred.shape[0], centred.shape[2] * centred.shape[3], dtype=torch.long)
        return (TilePredictor.activity(centred) > fit.threshold[:, None]).long()

    def fit(self, pixels: torch.Tensor, neighbours: torch.Tensor | None = None, ridge: float = 1.0) -> TileFit:
        """Each tile's predictors, their coefficients rounded onto the grid (colour c's unused colour
        slots zero), the threshold the median activity. Least squares first, then ROBUST_STEPS of
        iteratively reweighted least squares towards least absolute errors (weights 1 / max(|e|,
        ROBUST_FLOOR)) on the pixels of every ROBUST_SAMPLE-th diagonal: squares let a tile's few edges
        pull the predictor off its many calm pixels, where a sample costs a bit or two and a small bias costs
        much (what a logistic's code length punishes is nearer the absolute error). ``neighbours``:
        :meth:`neighbours` of the centred pixels, if the caller has them."""
        x = pixels.double() - 128
        b, _, h, w = x.shape
        k = self.classes(h, w)
        flat = x.reshape(b, 3, h * w).transpose(1, 2)
        nb = self.neighbours(x) if neighbours is None else neighbours
        threshold = torch.zeros(b, dtype=torch.long)
        labels = torch.zeros(b, h * w, dtype=torch.long)
        if k > 1:
            activity = self.activity(x)
            threshold = torch.quantile(activity.double(), 0.5, dim=1).floor().long()
            labels = (activity > threshold[:, None]).long()  # as :meth:`labels`
        coef = torch.zeros(b, k, 3, self.inputs, dtype=torch.float64)
        # one Gram matrix of [neighbours, red, green, blue, constant] a class: colour c's system is the
        # block of the neighbours, the colours before it and the constant, against colour c
        a = torch.cat([nb, flat, torch.full_like(flat[:, :, :1], self.CONSTANT)], dim=2)
        n = nb.shape[2]
        for j in range(k):
            gram = (a * (labels == j)[:, :, None]).transpose(1, 2) @ a + ridge * torch.eye(a.shape[2], dtype=a.dtype)
            for c in range(3):
                rows = torch.tensor([*range(n + c), n + 3])
                solved = torch.linalg.solve(gram[:, rows][:, :, rows], gram[:, rows, n + c : n + c + 1])[:, :, 0]
                coef[:, j, c, : n + c] = solved[:, :-1]
                coef[:, j, c, -1] = solved[:, -1]
        if self.ROBUST_STEPS:
            self._refine(coef, a, flat, labels, (h, w), ridge)
        return TileFit(torch.round(coef * 2**self.FRAC).clamp(-self.LIMIT, self.LIMIT).long(), threshold, labels)

    def _refine(self, coef: torch.Tensor, a: torch.Tensor, flat: torch.Tensor, labels: torch.Tensor,
                shape: tuple[int, int], ridge: float) -> None:
        """:meth:`fit`'s reweighting, in place on the float coefficients (B, classes, 3, inputs), on the
        pixels of every ROBUST_SAMPLE-th diagonal (odd: a sample of every row, column and 2x2 phase,
        such as a camera mosaic's, for any width)."""
        (h, w), n = shape, a.shape[2] - 4
        sample = torch.nonzero((torch.arange(h)[:, None] + torch.arange(w)[None]).flatten() % self.ROBUST_SAMPLE == 0)[:, 0]
        # the three colours' systems at once, over all of [neighbours, red, green, blue, constant]: a colour's
        # unused inputs (itself and the colours after it) are held at zero by rows and columns of the identity
        used = torch.ones(3, n + 4, dtype=torch.bool)
        used[0, n:n + 3] = used[1, n + 1:n + 3] = used[2, n + 2] = False
        pair = used[:, :, None] & used[:, None, :]
        identity = torch.eye(n + 4, dtype=a.dtype)
        for i in range(len(coef)):
            for j in range(coef.shape[1]):
                members = sample[labels[i, sample] == j]
                inputs, target = a[i, members], flat[i, members]  # (m, n + 4), (m, 3)
                solved = torch.zeros(3, n + 4, dtype=a.dtype)
                solved[:, :n + 2], solved[:, n + 3] = coef[i, j, :, :n + 2], coef[i, j, :, -1]
                for _ in range(self.ROBUST_STEPS):
                    weights = 1 / (target - inputs @ solved.T).abs().clamp(min=self.ROBUST_FLOOR)  # (m, 3)
                    weighted = (weights[:, :, None] * inputs[:, None]).flatten(1)  # (m, 3 (n + 4)): one product
                    gram = (inputs.T @ weighted).view(n + 4, 3, n + 4).transpose(0, 1)
                    gram = torch.where(pair, gram + ridge * identity, identity)
                    rhs = torch.where(used, (inputs.T @ (weights * target)).T, 0.0)
                    solved = torch.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
                coef[i, j, :, :n + 2], coef[i, j, :, -1] = solved[:, :n + 2], solved[:, n + 3]

    def sums(self, pixels: torch.Tensor, fit: TileFit, labels: torch.Tensor,
             neighbours: torch.Tensor | None = None) -> torch.Tensor:
        """The neighbours' and the constant's part of each prediction on the 1/4096 grid, (B, 3, H, W)
        int64, each pixel's by its class's predictor (exact: every partial sum is an integer far below
        2**53)."""
        b, _, h, w = pixels.shape
        nb = self.neighbours(pixels.double() - 128) if neighbours is None else neighbours
        n = nb.shape[2]
        out = torch.zeros(b, h * w, 3, dtype=torch.float64)
        for j in range(fit.coef.shape[1]):
            coef = fit.coef[:, j].double()
            part = nb @ coef[:, :, :n].transpose(1, 2) + self.CONSTANT * coef[:, None, :, -1]
            out = torch.where((labels == j)[:, :, None], part, out)
        return out.transpose(1, 2).reshape(b, 3, h, w).long()

    def used(self) -> np.ndarray:
        """Which of a class's (3, inputs) coefficients a tile sends."""
        used = np.ones((3, self.inputs), dtype=bool)
        used[0, -3:-1] = used[1, -2] = False
        return used

    @staticmethod
    def colour_coefficients(coef: torch.Tensor) -> torch.Tensor:
        """Each class's colour coefficients (B, classes, 3): green's on red, blue's on red and green."""
        return coef[:, :, [1, 2, 2], [-3, -3, -2]]

    def pixel_colour_coefficients(self, fit: TileFit, labels: torch.Tensor) -> torch.Tensor:
        """Each pixel's colour coefficients (B, HW, 3), its class's."""
        colour = self.colour_coefficients(fit.coef)
        return torch.gather(colour, 1, labels[:, :, None].expand(-1, -1, 3))

    def predict16(self, pixels: torch.Tensor, fit: TileFit, labels: torch.Tensor,
                  sums: torch.Tensor | None = None) -> torch.Tensor:
        """Every sample's prediction, centred, on the 1/16 grid: (sums + colour terms) >> 8 (``sums``:
        :meth:`sums`, if the caller has them)."""
        x = pixels.long() - 128
        b, _, h, w = x.shape
        total = self.sums(pixels, fit, labels) if sums is None else sums
        colour = self.pixel_colour_coefficients(fit, labels).transpose(1, 2).reshape(b, 3, h, w)
        terms = torch.zeros_like(total)
        terms[:, 1] = colour[:, 0] * x[:, 0]
        terms[:, 2] = colour[:, 1] * x[:, 0] + colour[:, 2] * x[:, 1]
        return (total + terms) >> (self.FRAC - priors.MU_FRAC)


def per_colour(value: np.ndarray | int) -> np.ndarray:
    """A plane's adjustment (one value for all colours, or one per colour) as (3,) int64."""
    return np.ascontiguousarray(np.broadcast_to(np.asarray(value, dtype=np.int64), (3,)))


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
        return ExactOutputs(*self._contiguous(*(t[index] for t in self)))

    def adjusted(self, scale: np.ndarray | int, shift: np.ndarray | int = 0) -> "ExactOutputs":
        """Every component's log2 scales moved by ``scale`` (in 1/8) and its means by ``shift`` (in 1/16):
        one for all colours or one per colour (3,), as a plane's side information sets them."""
        return self._replace(ls8=self.ls8 + per_colour(scale)[None, None, :], mu16=self.mu16 + per_colour(shift)[None, None, :])

    def with_component(self, bias16: np.ndarray, ls8: np.ndarray, logit_offset: int) -> "ExactOutputs":
        """One more component (:mod:`icnn_codec.adaptive`'s), last: its means the tile predictor's
        prediction plus ``bias16`` (n, 3; no colour coefficients of its own), its log2 scales ``ls8``
        (n, 3), its logit the heaviest component's plus ``logit_offset``."""
        n = len(self.mu16)
        return ExactOutputs(np.concatenate([self.mu16, (bias16 + 128 * 2**priors.MU_FRAC)[:, None, :]], axis=1),
                            np.concatenate([self.ls8, ls8[:, None, :]], axis=1),
                            np.concatenate([self.coef, np.zeros((n, 1, 3), dtype=np.int64)], axis=1),
                            np.concatenate([self.logits, self.logits.max(1, keepdims=True) + logit_offset], axis=1),
                            self.tile_sum, self.tile_colour)

    def means(self, centred: np.ndarray, c: int) -> np.ndarray:
        """Colour c's means (n, K) given the pixels' earlier colours (centred samples, (n, >= c)): green's
        moves by (a r) >> 2, blue's by (b r + c g) >> 2, on the mean's 1/16 grid (a, b, c on 1/64), and
        by the tile predictor's prediction."""
        from .wavefront_core import colour_means  # compiled: the decoder's own definition

        return colour_means(c, *self._contiguous(self.mu16, self.coef, self.tile_sum, self.tile_colour, centred))

    def tile16(self, centred: np.ndarray, c: int) -> np.ndarray:
        """The tile predictor's prediction of colour c (n,), centred, on the 1/16 grid."""
        from .wavefront_core import tile_predictions16  # compiled: the decoder's own definition

        return tile_predictions16(c, *self._contiguous(self.tile_sum, self.tile_colour, centred))

    @staticmethod
    def _contiguous(*arrays: np.ndarray) -> list[np.ndarray]:
        return [np.ascontiguousarray(a, dtype=np.int64) for a in arrays]
