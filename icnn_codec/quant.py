"""Fixed-point convolutions with two paths: a float training path and an exact coding path.

Every value that decides a bit at decode time (a coupling's rounded translation, a prior's
quantised parameters) comes out of a network built from :class:`QConv2d`. Its arithmetic is
fixed point with power-of-two scales:

* activations are integers ``a`` standing for ``a / 2**frac``;
* weights are integers ``W`` (at most ``WEIGHT_BITS`` bits, sign included) standing for
  ``W / 2**e_c`` with one exponent ``e_c`` per output channel; biases share the
  accumulator's scale ``2**-(frac_in + e_c)``;
* the accumulator is rescaled by a power of two and rounded (``floor(x + 1/2)``) onto the
  output grid, then clamped (ReLU with a cap for hidden layers).

**Exact path** (inputs of dtype float64): tensors hold integers, convolution runs in float64.
All products and partial sums stay below 2**53 (the clamped inputs and 12-bit weights bound any
sum of products by about 2**36, and each accumulator, bias included, is checked against 2**52 at
run time), so every
summation order gives the same, exact, result: thread count, batch size, SIMD width, mkldnn or
not, CPU or GPU cannot change a single value. Scaling by a power of two and ``floor`` are exact.

**Training path** (float32): the same quantisation is simulated ("fake quantisation") with
straight-through gradients, so the trained network is the network the exact path runs, up to
float32 noise in the accumulator.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_BITS = 12  # |W| <= 2**11 - 1
MAX_WEIGHT_EXP = 20  # per-channel weight scale is 2**-e, 0 <= e <= 20
MAX_BIAS = 2.0**40
HIDDEN_FRAC = 6  # hidden activations on a 1/64 grid ...
HIDDEN_MAX = 2**14 - 1  # ... in [0, 256)
INPUT_FRAC = 6  # integer latents enter a network as x / 64 ...
INPUT_LIMIT = 2**12  # ... clamped to [-64, 64]
EXACT_LIMIT = 2.0**52  # every float64 accumulator must stay below this


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """floor(x + 1/2) with a straight-through gradient (the same rounding as the exact path)."""
    return x + (torch.floor(x + 0.5) - x).detach()


class _OntoGrid(torch.autograd.Function):
    """clamp(round_ste(y * scale), lo, hi) / scale in three in-place passes, with the gradient
    that composition has (straight through where the clamp lets the value pass, zero where it
    clamps). The unfused composition costs about ten passes over every activation, forward and
    backward, which made it as slow as the convolutions themselves in training on a CPU."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, scale: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        rounded = torch.mul(y, scale).add_(0.5).floor_()
        clamped = torch.clamp(rounded, lo, hi)
        ctx.save_for_backward(clamped == rounded)
        return clamped.div_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (passed,) = ctx.saved_tensors
        return grad * passed, None, None, None


def is_exact(x: torch.Tensor) -> bool:
    """float64 tensors carry the exact integer path; everything else is the training path."""
    return x.dtype == torch.float64


def quantize_input(x: torch.Tensor) -> torch.Tensor:
    """Integer latents -> network input: clamp to +-INPUT_LIMIT; exact ints, or value x/64 in training."""
    x = torch.clamp(x, -INPUT_LIMIT, INPUT_LIMIT)
    return x if is_exact(x) else x / 2**INPUT_FRAC


def weight_exponents(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel e such that max|w_c| * 2**e < 2**(WEIGHT_BITS-1); exact (frexp, no log)."""
    peak = weight.detach().abs().flatten(1).amax(dim=1)
    _, exp = torch.frexp(peak)  # peak < 2**exp
    e = (WEIGHT_BITS - 1) - exp.to(torch.int64)
    e = torch.where(peak > 0, e, torch.full_like(e, MAX_WEIGHT_EXP))
    return torch.clamp(e, 0, MAX_WEIGHT_EXP)


class QConv2d(nn.Module):
    """A convolution whose output lands on a fixed-point grid, exactly reproducible.

    ``out_frac`` (per output channel) is the output grid's fractional bits; ``out_lo/out_hi``
    the clamp, in output-grid integers. ``in_frac`` is the input grid's fractional bits.
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
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2)
        if zero_init:
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)
        self.in_frac = in_frac

        def per_channel(v):
            t = torch.as_tensor(v, dtype=torch.float64)
            return t.expand(c_out).clone() if t.dim() == 0 else t

        self.register_buffer("out_frac", per_channel(out_frac).to(torch.int64), persistent=False)
        self.register_buffer("out_lo", per_channel(out_lo), persistent=False)
        self.register_buffer("out_hi", per_channel(out_hi), persistent=False)
        # Frozen integer parameters for the exact path (set by freeze() or by loading a model).
        self.register_buffer("w_int", None, persistent=False)
        self.register_buffer("w_exp", None, persistent=False)
        self.register_buffer("b_int", None, persistent=False)

    # -- quantisation of the parameters -------------------------------------------------
    def integer_parameters(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W_int, e, b_int) from the float parameters; elementwise and exact."""
        w = self.conv.weight.detach().double()
        e = weight_exponents(w)
        lim = 2 ** (WEIGHT_BITS - 1) - 1
        w_int = torch.clamp(torch.floor(w * torch.pow(2.0, e).view(-1, 1, 1, 1) + 0.5), -lim, lim)
        b_scale = torch.pow(2.0, (e + self.in_frac).double())
        b_int = torch.clamp(torch.floor(self.conv.bias.detach().double() * b_scale + 0.5), -MAX_BIAS, MAX_BIAS)
        return w_int, e, b_int

    def freeze(self) -> None:
        """Fix the integer parameters that the exact path uses."""
        self.w_int, self.w_exp, self.b_int = self.integer_parameters()

    def load_integer_parameters(self, w_int, w_exp, b_int) -> None:
        """Set the exact parameters from a model file, and the float ones to what they stand for."""
        self.w_int = torch.as_tensor(w_int, dtype=torch.float64)
        self.w_exp = torch.as_tensor(w_exp, dtype=torch.int64)
        self.b_int = torch.as_tensor(b_int, dtype=torch.float64)
        with torch.no_grad():
            self.conv.weight.copy_(self.w_int / torch.pow(2.0, self.w_exp.double()).view(-1, 1, 1, 1))
            self.conv.bias.copy_(self.b_int / torch.pow(2.0, (self.w_exp + self.in_frac).double()))

    # -- the two paths -------------------------------------------------------------------
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self._exact(a) if is_exact(a) else self._fake_quant(a)

    def _fake_quant(self, a: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight
        e = weight_exponents(w)
        lim = 2 ** (WEIGHT_BITS - 1) - 1
        scale = torch.pow(2.0, e.float()).view(-1, 1, 1, 1)
        w_q = torch.clamp(round_ste(w * scale), -lim, lim) / scale
        b_scale = torch.pow(2.0, (e + self.in_frac).float())
        b_q = round_ste(self.conv.bias * b_scale) / b_scale
        y = F.conv2d(a, w_q, b_q, padding=self.conv.padding)
        out_scale = torch.pow(2.0, self.out_frac.float()).view(1, -1, 1, 1)
        lo = self.out_lo.float().view(1, -1, 1, 1)
        hi = self.out_hi.float().view(1, -1, 1, 1)
        return _OntoGrid.apply(y, out_scale, lo, hi)

    def _exact(self, a: torch.Tensor) -> torch.Tensor:
        """Integer in, integer out (on the output grid), every step exact in float64."""
        if self.w_int is None:
            raise RuntimeError("QConv2d.freeze() must run before the exact path")
        acc = exact_conv2d(a, self.w_int, self.b_int)
        # Bound check: |acc| <= sum|a||W| + |b|; one cheap reduction guards exactness.
        if acc.numel() and float(acc.abs().max()) >= EXACT_LIMIT:
            raise ArithmeticError("fixed-point accumulator out of the exact range")
        shift = (self.out_frac - self.in_frac - self.w_exp).double().view(1, -1, 1, 1)
        y = torch.floor(acc * torch.pow(2.0, shift) + 0.5)
        return torch.clamp(y, self.out_lo.view(1, -1, 1, 1), self.out_hi.view(1, -1, 1, 1))


def exact_conv2d(a: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A 'same' convolution of integer-valued float64 tensors as one matrix product per kernel tap.

    The sum is the one F.conv2d computes, in another order (exact either way, all partial sums
    being integers below 2**53), but without float64 convolution's im2col buffer, which is
    kernel-area times the input: that buffer set the codec's memory per tile.
    """
    n, c, h, wd = a.shape
    k = w.shape[-1]
    pad = k // 2
    padded = F.pad(a, (pad, pad, pad, pad)) if pad else a
    out = b.view(1, -1, 1).repeat(n, 1, h * wd)
    for i in range(k):
        for j in range(k):
            tap = padded[:, :, i : i + h, j : j + wd].reshape(n, c, h * wd)
            out.add_(torch.matmul(w[:, :, i, j], tap))
    return out.view(n, -1, h, wd)


def hidden_conv(c_in: int, c_out: int, kernel_size: int, in_frac: int) -> QConv2d:
    """A hidden layer: ReLU with a cap, on the hidden grid."""
    return QConv2d(c_in, c_out, kernel_size, in_frac, HIDDEN_FRAC, 0.0, float(HIDDEN_MAX))


class QNet(nn.Module):
    """conv3x3 -> [conv(k) -> ReLU]* -> head: the network inside couplings and priors.

    Input: integer latents (clamped, read as x/64). Output: values on the head's grid, returned
    in real units in training and as output-grid integers on the exact path.
    """

    def __init__(self, c_in: int, hidden: int, kernels: list[int], head: QConv2d) -> None:
        super().__init__()
        layers = []
        frac, c = INPUT_FRAC, c_in
        for k in kernels:
            layers.append(hidden_conv(c, hidden, k, frac))
            frac, c = HIDDEN_FRAC, hidden
        self.body = nn.ModuleList(layers)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = quantize_input(x)
        for layer in self.body:
            a = layer(a)
        return self.head(a)

    def qconvs(self) -> list[QConv2d]:
        return [*self.body, self.head]
