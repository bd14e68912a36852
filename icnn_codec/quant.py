"""Exact 8-bit fixed-point convolutions, with two paths: a float training path and an exact coding path.

Every value that decides a bit at decode time (a pixel's quantised mixture parameters) comes out of a
network built from :class:`QConv2d`. Its arithmetic is fixed point with
power-of-two scales (``docs/format.md``, "Exact 8-bit arithmetic", has every bound):

* a network's input is integers clamped to +-255 (centred samples), read as ``x / 2**INPUT_FRAC``;
* hidden activations are uint8 integers ``a`` standing for ``a / 2**f``, one ``f`` per layer;
* weights are integers ``|W| <= 64`` standing for ``W / 2**e_c`` (one exponent per output channel);
  a head's weights are split, ``W = 64 W_hi + W_lo`` (13 bits), each half an ordinary layer;
  the bias shares the accumulator's scale ``2**-(f_in + e_c)``;
* every output channel obeys the L1 rule ``255 sum|W| + |B| <= 2**24``, so every partial sum is an
  integer within 2**24, exact in float32 and int32 in any summation order;
* the accumulator is rescaled by a power of two, rounded half to even onto the output grid and
  clamped (to [0, 255] for hidden layers: a ReLU with a cap).

**Exact path** (inputs of dtype float64 holding integers): the layers run on the backend that
``backends.current_backend()`` chose (int8, float32 or float64; each admitted by a canary), all giving
the same integers. **Training path** (float32): the same quantisation simulated with straight-through
gradients. Under the L1 rule its float32 sums are exact too, so it computes what the decoder computes.
"""
from __future__ import annotations

import numba
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backends import (ACT_MAX, MAX_WEIGHT_EXP, MIN_WEIGHT_EXP, SPLIT_BITS, WEIGHT_MAX, IntConv,
                       channel_rule, current_backend)
from .errors import ModelError

INPUT_FRAC = 6  # signed integer inputs (centred samples, residuals) enter a network as x / 64 ...
HIDDEN_MAX = ACT_MAX  # hidden activations are uint8 ...
HIDDEN_FRAC = 5  # ... on a 2**-5 grid
BATCHED_PIXELS = 64  # training: images of this many pixels or more take batched products, not convolutions


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even (the exact path's rule) with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


@numba.njit(cache=True, nogil=True)
def _onto_grid(y, scale, lo, hi, out, passed):
    """out = clamp(rint(y * scale), lo, hi) / scale for y (B, C, N) and per-channel scale, lo, hi (C,),
    in one pass, and passed: where the clamp let the value through."""
    for b in range(y.shape[0]):
        for c in range(y.shape[1]):
            s, low, high = scale[c], lo[c], hi[c]
            for i in range(y.shape[2]):
                r = np.rint(y[b, c, i] * s)
                v = min(max(r, low), high)
                passed[b, c, i] = v == r
                out[b, c, i] = v / s


@numba.njit(cache=True, nogil=True)
def _passed_gradient(grad, passed, out):
    """out = grad where passed, else 0 (one pass; torch.where with a scalar takes five times as long)."""
    for i in range(grad.size):
        out[i] = grad[i] if passed[i] else 0.0


class _OntoGrid(torch.autograd.Function):
    """clamp(round(y * scale), lo, hi) / scale (half to even), with the gradient that composition has:
    straight through where the clamp lets the value pass, zero where it clamps. ``scale``, ``lo``,
    ``hi``: (C,) for y (B, C, H, W). On a CPU in one compiled pass each way (five to eight times as
    fast as the framework's elementwise passes)."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, scale: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        y = y.detach().float().contiguous()
        if y.device.type != "cpu":
            view = (1, -1, 1, 1)
            rounded = torch.mul(y, scale.view(view)).round_()
            out = torch.clamp(rounded, lo.view(view), hi.view(view))
            ctx.save_for_backward(out == rounded)
            return out.div_(scale.view(view))
        out, passed = torch.empty_like(y), torch.empty_like(y, dtype=torch.bool)
        per_channel = lambda t: t.view(y.shape[0], y.shape[1], -1).numpy()  # noqa: E731
        _onto_grid(per_channel(y), scale.numpy(), lo.numpy(), hi.numpy(), per_channel(out), per_channel(passed))
        ctx.save_for_backward(passed)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (passed,) = ctx.saved_tensors
        if grad.device.type != "cpu":
            return grad * passed, None, None, None
        grad = grad.float().contiguous()
        out = torch.empty_like(grad)
        _passed_gradient(grad.view(-1).numpy(), passed.view(-1).numpy(), out.view(-1).numpy())
        return out, None, None, None


def is_exact(x: torch.Tensor) -> bool:
    """float64 tensors carry the exact integer path; everything else is the training path."""
    return x.dtype == torch.float64


def integer_parameters(w: torch.Tensor, b: torch.Tensor, in_frac: int, split: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W, e, B) for float weights ``w`` (c_out, c_in, k, k) and biases ``b``: W and B float64 holding
    integers, e int64. e_c is the largest exponent at which max|w_c| rounds to at most one above the weight
    limit L (64; 64 * 2**SPLIT_BITS for a split head; the one above is clamped to L), lowered by one,
    repeatedly, for a channel that would break the L1 rule. Elementwise and exact (frexp, powers of two):
    training and freezing agree. The "one above" makes the integers a fixed point: those of a loaded model
    come back unchanged (with "at most L", a peak rounded to L/2 would come back as L at e + 1)."""
    w, b = w.detach().double(), b.detach().double()
    limit = WEIGHT_MAX * 2 ** (SPLIT_BITS if split else 0)
    peak = w.abs().flatten(1).amax(dim=1)
    _, p = torch.frexp(peak)  # peak < 2**p
    e = (limit.bit_length() - 1) - p.to(torch.int64)  # peak * 2**e < limit
    e = e + (torch.round(peak * torch.pow(2.0, (e + 1).double())) <= limit + 1).to(torch.int64)
    e = torch.clamp(torch.where(peak > 0, e, torch.full_like(e, MAX_WEIGHT_EXP)), MIN_WEIGHT_EXP, MAX_WEIGHT_EXP)
    while True:
        w_int = torch.clamp(torch.round(w * torch.pow(2.0, e.double()).view(-1, 1, 1, 1)), -limit, limit)
        b_int = torch.round(b * torch.pow(2.0, (e + in_frac).double()))
        over = ~channel_rule(w_int, b_int, split)
        if not over.any():
            return w_int, e, b_int
        if (e[over] <= MIN_WEIGHT_EXP).any():
            raise ModelError("a convolution's parameters cannot meet the 8-bit scheme's exactness bound")
        e = torch.where(over, e - 1, e)


class QConv2d(nn.Module):
    """A convolution whose output lands on a fixed-point grid, exactly reproducible.

    ``in_frac``: the input grid's fractional bits. ``out_frac`` (per output channel): the output
    grid's; ``out_lo``/``out_hi``: the clamp, in output-grid integers. ``signed_input``: the input is
    signed integers (a network's first layer); ``split``: 13-bit weights run as two halves (heads).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int,
        in_frac: int,
        out_frac: list[int] | int,
        out_lo: list[float] | float,
        out_hi: list[float] | float,
        zero_init: bool = False,
        signed_input: bool = False,
        split: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2)
        if zero_init:
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)
        self.signed_input = signed_input
        self.split = split

        def per_channel(v):
            t = torch.as_tensor(v, dtype=torch.float64)
            return t.expand(c_out).clone() if t.dim() == 0 else t

        # The grids are state (checkpoints and EMA copies keep them): a layer's biases mean nothing on
        # another grid.
        self.register_buffer("in_grid", torch.tensor(int(in_frac), dtype=torch.int64))
        self.register_buffer("out_frac", per_channel(out_frac).to(torch.int64))
        self.register_buffer("out_lo", per_channel(out_lo), persistent=False)
        self.register_buffer("out_hi", per_channel(out_hi), persistent=False)
        # Frozen integer parameters for the exact path (set by freeze() or by loading a model).
        self.register_buffer("w_int", None, persistent=False)
        self.register_buffer("w_exp", None, persistent=False)
        self.register_buffer("b_int", None, persistent=False)
        self._kernel: IntConv | None = None

    @property
    def in_frac(self) -> int:
        """The input grid's fractional bits (2**-in_frac)."""
        return int(self.in_grid)

    # -- quantisation of the parameters -------------------------------------------------
    def integer_parameters(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W_int, e, b_int) from the float parameters; elementwise and exact."""
        return integer_parameters(self.conv.weight, self.conv.bias, self.in_frac, self.split)

    def freeze(self) -> None:
        """Fix the integer parameters that the exact path uses."""
        self._set_integers(*self.integer_parameters())

    def load_integer_parameters(self, w_int, w_exp, b_int) -> None:
        """Set the exact parameters from a model file (refused unless they meet the exactness bound), and
        the float ones to what they stand for."""
        self._set_integers(torch.as_tensor(w_int, dtype=torch.float64), torch.as_tensor(w_exp, dtype=torch.int64),
                           torch.as_tensor(b_int, dtype=torch.float64))
        with torch.no_grad():
            self.conv.weight.copy_(self.w_int / torch.pow(2.0, self.w_exp.double()).view(-1, 1, 1, 1))
            self.conv.bias.copy_(self.b_int / torch.pow(2.0, (self.w_exp + self.in_frac).double()))

    def _set_integers(self, w_int: torch.Tensor, w_exp: torch.Tensor, b_int: torch.Tensor) -> None:
        self._kernel = IntConv(w_int, w_exp, b_int, self.in_frac, self.out_frac, self.out_lo, self.out_hi,
                               self.signed_input, self.split)  # checks the bounds
        self.w_int, self.w_exp, self.b_int = self._kernel.w_int, self._kernel.w_exp, self._kernel.b_int

    def kernel(self) -> IntConv:
        """The frozen integers as the backends run them."""
        if self._kernel is None:
            raise ModelError("QConv2d.freeze() must run before the exact path")
        return self._kernel

    # -- the two paths -------------------------------------------------------------------
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if is_exact(a):
            backend = current_backend()
            x = backend.signed_inputs(a) if self.signed_input else backend.activations(a)
            return backend.conv(self.kernel(), x).double()
        return self._fake_quant(a)

    def _fake_quant(self, a: torch.Tensor) -> torch.Tensor:
        w, b = self.conv.weight, self.conv.bias
        _, e, _ = integer_parameters(w, b, self.in_frac, self.split)
        limit = WEIGHT_MAX * 2 ** (SPLIT_BITS if self.split else 0)
        w_scale = torch.pow(2.0, e.float()).view(-1, 1, 1, 1)
        b_scale = torch.pow(2.0, (e + self.in_frac).float())
        w_q = torch.clamp(round_ste(w * w_scale), -limit, limit) / w_scale
        b_q = round_ste(b * b_scale) / b_scale
        y = self._convolve(a, w_q, b_q)
        return _OntoGrid.apply(y, torch.pow(2.0, self.out_frac.float()), self.out_lo.float(), self.out_hi.float())

    def _convolve(self, a: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The training path's convolution. A 1x1 one over images of BATCHED_PIXELS or more as a batched
        matrix product over (B, C, H*W): three to four times as fast as the framework's convolution,
        forward and backward, on a CPU (on smaller images the product per image costs more than the
        framework's one product for all); under the L1 rule both sums are exact, so the result is the same."""
        batch, _, height, width = a.shape
        if self.conv.kernel_size != (1, 1) or height * width < BATCHED_PIXELS:
            return F.conv2d(a, w, b, padding=self.conv.padding)
        w = w.flatten(1).expand(batch, -1, -1)
        return torch.baddbmm(b.unsqueeze(1).expand(batch, -1, height * width), w, a.flatten(2)).view(batch, -1, height, width)


def hidden_conv(c_in: int, c_out: int, kernel_size: int, in_frac: int) -> QConv2d:
    """A hidden layer: ReLU with a cap, uint8 on the hidden grid."""
    return QConv2d(c_in, c_out, kernel_size, in_frac, HIDDEN_FRAC, 0.0, float(HIDDEN_MAX))
