"""Bijections on integer tensors, each with ``forward`` and ``inverse``.

Every layer maps integers to integers exactly: a squeeze only moves values, a channel flip
only reorders them, an additive coupling adds an integer translation computed from the half it
leaves untouched, a volume-preserving coupling also scales pairs of channels by K and 1/K through
rounded lifting steps. The same code runs the training path (float32, straight-through rounding)
and the exact path (float64 holding integers), see :mod:`icnn_codec.quant`.
"""
from __future__ import annotations

import decimal

import torch
from torch import nn

from .quant import HIDDEN_FRAC, QConv2d, QNet, is_exact, round_ste

TRANSLATION_LIMIT = 2.0**15  # a coupling moves a latent by at most this much


class Transform(nn.Module):
    """An invertible map between integer tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def inverse(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Squeeze(Transform):
    """Space to depth: (B, C, H, W) -> (B, 4C, H/2, W/2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, c * 4, h // 2, w // 2)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        b, c4, h, w = y.shape
        y = y.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(b, c4 // 4, h * 2, w * 2)


class ChannelFlip(Transform):
    """Reverse the channel order: the fixed channel mixing between couplings."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flip(x, dims=[1])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return torch.flip(y, dims=[1])


LIFT_FRAC = 8  # lifting coefficients on a 1/256 grid ...
LIFT_LIMIT = 4.0  # ... within +-4


def lifting_grid(w: torch.Tensor, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Lifting coefficients ``w`` on their grid (1/2**LIFT_FRAC, within +-LIFT_LIMIT) where ``mask`` allows
    them: for the exact path (x float64) the grid integers, for the training path their values with a
    straight-through gradient."""
    scale = 2.0**LIFT_FRAC
    w = w.to(x.dtype)
    q = torch.clamp(torch.round(w * scale) if is_exact(x) else round_ste(w * scale), -LIFT_LIMIT * scale,
                    LIFT_LIMIT * scale)
    return q * mask.to(x.dtype) / (1.0 if is_exact(x) else scale)


class LiftingMix(Transform):
    """A learned integer-invertible 1x1 channel mixing: the channel flip, then an upper and a lower
    triangular lifting step, x_i += round(sum_{j>i} U_ij x_j), then x_i += round(sum_{j<i} L_ij x_j).
    Each step changes a channel by a rounded function of channels it leaves alone, so it undoes
    exactly, one channel at a time. Zero coefficients (the start) make it the flip. The coefficients
    are integers over 2**LIFT_FRAC; on the exact path the sums are exact in float64."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.upper = nn.Parameter(torch.zeros(channels, channels))
        self.lower = nn.Parameter(torch.zeros(channels, channels))
        self.register_buffer("upper_mask", torch.ones(channels, channels).triu(1), persistent=False)
        self.register_buffer("lower_mask", torch.ones(channels, channels).tril(-1), persistent=False)

    def integer_coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, L): the coefficients' integers (over 2**LIFT_FRAC), as a model file stores them."""
        with torch.no_grad():
            return self._coefficients(torch.zeros(0, dtype=torch.float64))

    def load_integer_coefficients(self, upper, lower) -> None:
        with torch.no_grad():
            self.upper.copy_(torch.as_tensor(upper, dtype=torch.float64) / 2**LIFT_FRAC)
            self.lower.copy_(torch.as_tensor(lower, dtype=torch.float64) / 2**LIFT_FRAC)

    def _coefficients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return lifting_grid(self.upper, self.upper_mask, x), lifting_grid(self.lower, self.lower_mask, x)

    @staticmethod
    def _shift(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """round(sum_j w_ij x_j): exact path, integer coefficients and sums (exact in float64 below 2**53),
        one division by a power of two and rounding half to even; training path, the same, simulated."""
        if is_exact(x):
            return torch.round(torch.einsum("ij,bjhw->bihw", w, x) / 2.0**LIFT_FRAC)
        return round_ste(torch.einsum("ij,bjhw->bihw", w, x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upper, lower = self._coefficients(x)
        x = torch.flip(x, dims=[1])
        x = x + self._shift(upper, x)
        return x + self._shift(lower, x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        upper, lower = self._coefficients(y)
        y = y.clone()
        for i in range(1, y.shape[1]):  # lower step: channel i from the channels before it, already restored
            y[:, i] -= self._shift(lower[i : i + 1, :i], y[:, :i])[:, 0]
        for i in reversed(range(y.shape[1] - 1)):  # upper step: from the channels after it
            y[:, i] -= self._shift(upper[i : i + 1, i + 1 :], y[:, i + 1 :])[:, 0]
        return torch.flip(y, dims=[1])


YCOCG_R_STEPS = ((0, 2, -1.0), (2, 0, 0.5), (1, 2, -1.0), (2, 1, 0.5))  # (target, source, coefficient)


class ColourLifting(Transform):
    """A learned integer colour transform of (R, G, B): four lifting steps, each adding to one channel a
    rounded weighted sum of the other two, initialised as YCoCg-R (Co = R - B; B += Co/2; Cg = G - B;
    B += Cg/2, leaving Co, Cg, Y). Each step changes one channel from the others, so it undoes exactly.
    Coefficients are integers over 2**LIFT_FRAC, as in :class:`LiftingMix`."""

    def __init__(self) -> None:
        super().__init__()
        start = torch.zeros(len(YCOCG_R_STEPS), 3)
        for step, (_, source, c) in enumerate(YCOCG_R_STEPS):
            start[step, source] = c
        self.coefficients = nn.Parameter(start)
        mask = torch.ones(len(YCOCG_R_STEPS), 3)
        for step, (target, _, _) in enumerate(YCOCG_R_STEPS):
            mask[step, target] = 0
        self.register_buffer("mask", mask, persistent=False)

    def integer_coefficients(self) -> torch.Tensor:
        with torch.no_grad():
            return self._coefficients(torch.zeros(0, dtype=torch.float64))

    def load_integer_coefficients(self, c) -> None:
        with torch.no_grad():
            self.coefficients.copy_(torch.as_tensor(c, dtype=torch.float64) / 2**LIFT_FRAC)

    def _coefficients(self, x: torch.Tensor) -> torch.Tensor:
        return lifting_grid(self.coefficients, self.mask, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self._coefficients(x)
        channels = list(x.unbind(1))
        for step, (target, _, _) in enumerate(YCOCG_R_STEPS):
            channels[target] = channels[target] + LiftingMix._shift(c[step : step + 1], torch.stack(channels, 1))[:, 0]
        return torch.stack(channels, 1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        c = self._coefficients(y)
        channels = list(y.unbind(1))
        for step in reversed(range(len(YCOCG_R_STEPS))):
            target = YCOCG_R_STEPS[step][0]
            channels[target] = channels[target] - LiftingMix._shift(c[step : step + 1], torch.stack(channels, 1))[:, 0]
        return torch.stack(channels, 1)


def translation_head(c_in: int, c_out: int, in_frac: int) -> QConv2d:
    """Output layer of a coupling network: integer translations, zero-initialised (ReZero-like:
    every coupling starts as the identity). Its weights are split (13 bits): a head's precision matters."""
    return QConv2d(c_in, c_out, 3, in_frac, 0, -TRANSLATION_LIMIT, TRANSLATION_LIMIT, zero_init=True, split=True)


class AdditiveCoupling(Transform):
    """(x_a, x_b) -> (x_a, x_b + round(NN(x_a))): exactly invertible on integers."""

    def __init__(self, channels: int, hidden: int, kernels: list[int]) -> None:
        super().__init__()
        self.split = channels // 2
        self.net = QNet(self.split, hidden, kernels, translation_head(hidden, channels - self.split, HIDDEN_FRAC))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        return torch.cat([x_a, x_b + self.net(x_a)], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y[:, : self.split], y[:, self.split :]
        return torch.cat([y_a, y_b - self.net(y_a)], dim=1)


SCALE_STEPS = 16  # a volume-preserving coupling's scales are 2**(q / 16) ...
SCALE_INDEX_LIMIT = 32  # ... for integers |q| <= 32: x4 at most
SHEAR_FRAC = 12  # its lifting coefficients are integers over 2**12


def _shear_coefficients(q: int) -> tuple[int, int, int]:
    """The lifting coefficients (over 2**SHEAR_FRAC) that scale a pair (u, v) to about (K u, v / K),
    K = 2**(q / SCALE_STEPS): v += u; u += (K - 1) v; v -= u / K; u += (K - K**2) v, the last three
    rounded. Computed in decimal (software) arithmetic, so the table is the same on every machine."""
    with decimal.localcontext() as ctx:
        ctx.prec = 40
        k = decimal.Decimal(2) ** (decimal.Decimal(q) / SCALE_STEPS)
        one = 2**SHEAR_FRAC
        return tuple(int((c * one).to_integral_value(decimal.ROUND_HALF_EVEN)) for c in (k - 1, -1 / k, k - k * k))


SHEAR_TABLE = torch.tensor([_shear_coefficients(q) for q in range(-SCALE_INDEX_LIMIT, SCALE_INDEX_LIMIT + 1)],
                           dtype=torch.float64)  # (65, 3): row q + 32


def _shear(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """round(c v) with c on the 2**-SHEAR_FRAC grid: on the exact path c is the grid integer and the
    product, exact in float64, is divided by a power of two and rounded half to even."""
    if is_exact(v):
        return torch.round(c * v / 2.0**SHEAR_FRAC)
    return round_ste(c * v)


class VolumePreservingCoupling(Transform):
    """(x_a, x_b) -> (x_a, S(x_b) + t): an integer affine coupling whose scales keep the volume. x_b's
    channels are paired (i with i + n); a network of x_a gives each pair a scale index q, and four
    rounded lifting steps (shears) take the pair to about (K u, v / K), K = 2**(q/16), then a translation
    t is added as in the additive coupling. Each shear changes one member by a rounded function of
    the other, so every step undoes exactly; q = 0 makes the shears the identity and the layer the
    additive coupling (a grown model starts with its source's code)."""

    def __init__(self, channels: int, hidden: int, kernels: list[int]) -> None:
        super().__init__()
        self.split = channels // 2
        c_b = channels - self.split
        self.pairs = c_b // 2
        head = QConv2d(hidden, c_b + self.pairs, 3, HIDDEN_FRAC, 0,
                       [-TRANSLATION_LIMIT] * c_b + [-SCALE_INDEX_LIMIT] * self.pairs,
                       [TRANSLATION_LIMIT] * c_b + [SCALE_INDEX_LIMIT] * self.pairs, zero_init=True, split=True)
        self.net = QNet(self.split, hidden, kernels, head)
        self.register_buffer("table", SHEAR_TABLE.clone(), persistent=False)

    def _translation_and_coefficients(self, x_a: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.net(x_a)
        c_b = out.shape[1] - self.pairs
        q = out[:, c_b:]
        index = (q.detach() + SCALE_INDEX_LIMIT).long()
        rows = self.table.to(q.dtype)[index]  # (B, P, H, W, 3)
        if is_exact(x_a):
            coefficients = [rows[..., i] for i in range(3)]
        else:  # the table's values, with the gradient of the unrounded coefficients of K = 2**(q / 16)
            k = torch.pow(2.0, q / SCALE_STEPS)
            smooth = [k - 1, -1 / k, k - k * k]
            coefficients = [rows[..., i] / 2**SHEAR_FRAC + s - s.detach() for i, s in enumerate(smooth)]
        return out[:, :c_b], coefficients

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        t, (c1, c2, c3) = self._translation_and_coefficients(x_a)
        n = self.pairs
        u, v, rest = x_b[:, :n], x_b[:, n : 2 * n], x_b[:, 2 * n :]
        v = v + u
        u = u + _shear(v, c1)
        v = v + _shear(u, c2)
        u = u + _shear(v, c3)
        return torch.cat([x_a, torch.cat([u, v, rest], dim=1) + t], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y[:, : self.split], y[:, self.split :]
        t, (c1, c2, c3) = self._translation_and_coefficients(y_a)
        y_b = y_b - t
        n = self.pairs
        u, v, rest = y_b[:, :n], y_b[:, n : 2 * n], y_b[:, 2 * n :]
        u = u - _shear(v, c3)
        v = v - _shear(u, c2)
        u = u - _shear(v, c1)
        v = v - u
        return torch.cat([y_a, u, v, rest], dim=1)


class Sequential(Transform):
    """Composition of transforms; inverse runs them backwards."""

    def __init__(self, transforms: list[Transform]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for t in reversed(self.transforms):
            y = t.inverse(y)
        return y
