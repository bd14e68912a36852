"""Where the exact convolutions run: the backends, the canary that admits them, the choice.

A decode-time convolution (see ``quant.py``) is fixed by integers: uint8 activations (or signed inputs
clamped to +-255), weights ``|W| <= 64`` with a power-of-two exponent per output channel, integer
biases, and every output channel within the *L1 rule* ``255 * sum|W| + |B| <= 2**24``. Under that
rule every partial sum of every summation order is an integer of magnitude at most 2**24, so three
kinds of kernel compute the same integers:

* ``int8``: oneDNN's quantised convolution (uint8 x int8, int32 accumulators, the power-of-two
  rescale, the rounding half to even and the clamp fused); the fastest, where it is present;
* ``float32``: ``F.conv2d`` on float32 integers (NNPACK off, oneDNN's fp32 precision pinned to
  "ieee"); always present;
* ``float64``: sums far below 2**53; the last resort.

A backend is used only after the *canary* — worst-case layers at the edge of the rule, rounding
ties, both input extremes — has given the exact integers on it in this process. The first use
picks the fastest that passes; ``$ICNN_CONV_BACKEND`` forces one (it must pass too). No backend
passing is an error: never wrong output.
"""
from __future__ import annotations

import hashlib
import os
import threading

import torch
import torch.nn.functional as F

from .errors import ModelError

INPUT_LIMIT = 255  # signed network inputs: integers clamped to +-255 (read as x / 2**INPUT_FRAC)
ACT_MAX = 255  # hidden activations are uint8
WEIGHT_MAX = 64  # 2 * 255 * 64 <= 2**15 - 1: AVX2's saturating 16-bit pair sums (vpmaddubsw) stay exact
EXACT_BOUND = 2**24  # every |partial sum| at most this: every float32 addition is exact
SPLIT_BITS = 6  # a split head's weights are 2**6 * W_hi + W_lo, each half an ordinary layer
MIN_WEIGHT_EXP, MAX_WEIGHT_EXP = -16, 30  # every scale a normal float32
BACKEND_ENV = "ICNN_CONV_BACKEND"


class IntConv:
    """A convolution fixed by integers: what every backend runs.

    ``w_int`` (c_out, c_in, k, k) and ``b_int`` hold integers (float64), ``w_exp`` the per-channel
    weight exponents (W stands for W / 2**e); ``in_frac``: the input grid 2**-in_frac;
    ``out_frac``, ``out_lo``, ``out_hi``: per output channel, the output grid and its clamp in
    grid integers. ``signed_input``: the input is signed integers (|x| <= 255), not uint8 activations.
    ``split``: the weights reach 2**SPLIT_BITS * 64 and run as two halves (a head).
    """

    def __init__(self, w_int: torch.Tensor, w_exp: torch.Tensor, b_int: torch.Tensor, in_frac: int,
                 out_frac: torch.Tensor, out_lo: torch.Tensor, out_hi: torch.Tensor,
                 signed_input: bool = False, split: bool = False) -> None:
        self.w_int, self.b_int = w_int.double(), b_int.double()
        self.w_exp = w_exp.to(torch.int64)
        self.in_frac = int(in_frac)
        self.out_frac, self.out_lo, self.out_hi = out_frac.to(torch.int64), out_lo.double(), out_hi.double()
        self.signed_input, self.split = signed_input, split
        self.padding = self.w_int.shape[-1] // 2
        if not l1_rule_holds(self.w_int, self.b_int, split):
            raise ModelError("a convolution breaks the 8-bit scheme's exactness bound")
        if not (bool((self.w_exp >= MIN_WEIGHT_EXP).all()) and bool((self.w_exp <= MAX_WEIGHT_EXP).all())):
            raise ModelError("a convolution's weight exponents are out of range")
        # A hidden layer: one grid, clamp [0, hi] with hi <= 255 (uint8 out); anything else is a head.
        self.is_hidden = bool((self.out_lo == 0).all() and (self.out_hi == self.out_hi[0]).all()
                              and self.out_hi[0] <= ACT_MAX and (self.out_frac == self.out_frac[0]).all())
        self.packed: dict = {}  # each backend's prepared weights

    def __getstate__(self) -> dict:  # a copy prepares its own kernels (oneDNN's packed weights don't copy)
        return {**self.__dict__, "packed": {}}

    @property
    def c_out(self) -> int:
        return self.w_int.shape[0]

    def shift(self) -> torch.Tensor:
        """Per output channel: output = round(acc * 2**-shift)."""
        return self.in_frac + self.w_exp - self.out_frac

    def kernel_parameters(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the kernels run: (W, e, B); a split layer as [W_hi; W_lo] (2 c_out outputs, exponents
        [e - SPLIT_BITS; e]), joined as acc = 2**SPLIT_BITS acc_hi + acc_lo."""
        if not self.split:
            return self.w_int, self.w_exp, self.b_int
        w_hi, w_lo, b_hi, b_lo = split_halves(self.w_int, self.b_int)
        return torch.cat([w_hi, w_lo]), torch.cat([self.w_exp - SPLIT_BITS, self.w_exp]), torch.cat([b_hi, b_lo])


def split_halves(w_int: torch.Tensor, b_int: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """W = 2**SPLIT_BITS * W_hi + W_lo with |W_lo| <= 2**(SPLIT_BITS - 1) (the same for B): exact."""
    unit = 2**SPLIT_BITS
    w_hi, b_hi = torch.round(w_int / unit), torch.round(b_int / unit)
    return w_hi, w_int - unit * w_hi, b_hi, b_int - unit * b_hi


def channel_rule(w_int: torch.Tensor, b_int: torch.Tensor, split: bool = False) -> torch.Tensor:
    """Per output channel: 255 * sum|W| + |B| <= 2**24 (for each half of a split layer), in int64."""
    halves = split_halves(w_int, b_int) if split else (w_int, None, b_int, None)
    ok = torch.ones(w_int.shape[0], dtype=torch.bool, device=w_int.device)
    for w_part, b_part in ((halves[0], halves[2]), (halves[1], halves[3])):
        if w_part is not None:
            l1 = w_part.to(torch.int64).abs().flatten(1).sum(1)
            ok &= ACT_MAX * l1 + b_part.to(torch.int64).abs() <= EXACT_BOUND
    return ok


def l1_rule_holds(w_int: torch.Tensor, b_int: torch.Tensor, split: bool = False) -> bool:
    """The exactness precondition: the L1 rule on every channel (every half) and |W| <= 64 per kernel."""
    halves = split_halves(w_int, b_int)[:2] if split else (w_int,)
    return bool(channel_rule(w_int, b_int, split).all()) and all(bool((h.abs() <= WEIGHT_MAX).all()) for h in halves)


def clamp_signed(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, -INPUT_LIMIT, INPUT_LIMIT)


def _requantise(acc: torch.Tensor, layer: IntConv) -> torch.Tensor:
    """Accumulators (integers <= 2**24 in float32, or float64) -> clamp(round_half_even(acc * 2**-shift)):
    a power-of-two product of an exact value, then rint: exact. A split layer's halves join in float64
    (|2**6 acc_hi + acc_lo| < 2**31)."""
    if layer.split:
        acc = acc[:, : layer.c_out].double() * 2**SPLIT_BITS + acc[:, layer.c_out :].double()
    view = (1, -1, 1, 1)
    scale = torch.pow(2.0, -layer.shift().to(acc.dtype)).view(view)
    return torch.clamp(torch.round(acc * scale), layer.out_lo.to(acc.dtype).view(view),
                       layer.out_hi.to(acc.dtype).view(view))


class Backend:
    """One way to run an IntConv. ``signed_inputs``/``activations`` turn integers into the backend's input
    tensors; ``conv`` returns a hidden layer's output as the next layer's input, and a head's as
    integers in a float tensor."""

    name = "?"

    def available(self) -> bool:
        return True

    def signed_inputs(self, x: torch.Tensor) -> torch.Tensor:
        return clamp_signed(x).float().contiguous(memory_format=torch.channels_last)

    def activations(self, a: torch.Tensor) -> torch.Tensor:
        return a.float().contiguous(memory_format=torch.channels_last)

    def conv(self, layer: IntConv, a: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Float32Backend(Backend):
    """F.conv2d in float32 on integers: exact in any summation order under the L1 rule, provided the
    convolution sums products in float32 (NNPACK's Winograd is switched off around it; oneDNN's
    reduced-precision fp32 modes are pinned to "ieee")."""

    name = "float32"

    def conv(self, layer: IntConv, a: torch.Tensor) -> torch.Tensor:
        if self.name not in layer.packed:
            w, _, b = layer.kernel_parameters()
            layer.packed[self.name] = (w.float().contiguous(memory_format=torch.channels_last), b.float())
        w, b = layer.packed[self.name]
        with _ieee_float32():
            acc = F.conv2d(a.float().contiguous(memory_format=torch.channels_last), w, b, padding=layer.padding)
        return _requantise(acc, layer)


_precision_lock = threading.Lock()


class _ieee_float32:
    """NNPACK off and oneDNN's fp32 precision "ieee" for the enclosed convolution (a process-wide
    setting, restored after; the lock keeps tile threads from restoring it under each other)."""

    depth = 0

    def __enter__(self) -> None:
        with _precision_lock:
            if _ieee_float32.depth == 0:
                _ieee_float32.saved = _mkldnn_precision()
                _set_mkldnn_precision("ieee")
            _ieee_float32.depth += 1
        self.nnpack = torch.backends.nnpack.flags(enabled=False)
        self.nnpack.__enter__()

    def __exit__(self, *exc) -> None:
        self.nnpack.__exit__(*exc)
        with _precision_lock:
            _ieee_float32.depth -= 1
            if _ieee_float32.depth == 0:
                _set_mkldnn_precision(_ieee_float32.saved)


def _mkldnn_precision() -> str | None:
    conv = getattr(torch.backends.mkldnn, "conv", None)
    return getattr(conv, "fp32_precision", None)


def _set_mkldnn_precision(value: str | None) -> None:
    if value is not None and _mkldnn_precision() is not None:
        torch.backends.mkldnn.conv.fp32_precision = value


class Int8Backend(Backend):
    """oneDNN's quantised convolution: uint8 activations x int8 weights into int32, the rescale by powers
    of two in float32 (exact: integers <= 2**24), rounding half to even and the clamp fused. Hidden layers
    return uint8; heads return the accumulator on its real scale in float32, requantised here. Latents
    enter as two uint8 planes relu(x), relu(-x) against weights [W, -W] (the "sign split")."""

    name = "int8"

    def available(self) -> bool:
        return (torch.backends.mkldnn.is_available() and hasattr(torch.ops, "onednn")
                and hasattr(torch.ops.onednn, "qconv_pointwise") and hasattr(torch.ops.onednn, "qconv_prepack"))

    def signed_inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = clamp_signed(x)
        return torch.cat([x.clamp(min=0), (-x).clamp(min=0)], dim=1).to(torch.uint8).contiguous(
            memory_format=torch.channels_last)

    def activations(self, a: torch.Tensor) -> torch.Tensor:
        return a.to(torch.uint8).contiguous(memory_format=torch.channels_last)

    def _pack(self, layer: IntConv) -> tuple:
        """The layer's weights prepared once for any input shape (oneDNN's x_shape left open: measured as
        fast as packing per shape, and a long-running process holds one copy per layer)."""
        key = self.name
        if key not in layer.packed:
            w_int, w_exp, b_int = layer.kernel_parameters()
            if layer.signed_input:
                w_int = torch.cat([w_int, -w_int], dim=1)
            w_scale = torch.pow(2.0, -w_exp.double()).float()
            x_scale = 2.0**-layer.in_frac
            p = layer.padding
            packed = torch.ops.onednn.qconv_prepack(w_int.to(torch.int8), w_scale, x_scale, 0, [1, 1], [p, p],
                                                    [1, 1], 1, None)
            bias = (b_int * torch.pow(2.0, -(w_exp + layer.in_frac).double())).float()  # exact: |B| <= 2**24
            zero_points = torch.zeros(w_scale.numel(), dtype=torch.int64)
            layer.packed[key] = (packed, w_scale, x_scale, bias, zero_points)
        return layer.packed[key]

    def conv(self, layer: IntConv, a: torch.Tensor) -> torch.Tensor:
        if a.dtype != torch.uint8:
            a = self.signed_inputs(a) if layer.signed_input else self.activations(a)
        packed, w_scale, x_scale, bias, zero_points = self._pack(layer)
        p = layer.padding
        args = (a, x_scale, 0, packed, w_scale, zero_points, bias, [1, 1], [p, p], [1, 1], 1)
        if layer.is_hidden:
            f_out, hi = int(layer.out_frac[0]), float(layer.out_hi[0])
            if hi == ACT_MAX:  # saturation to uint8 is the clamp
                return torch.ops.onednn.qconv_pointwise(*args, 2.0**-f_out, 0, None, "none", [], "")
            # the clip acts on the real value before the output scale: [0, hi * 2**-f_out], exact
            return torch.ops.onednn.qconv_pointwise(*args, 2.0**-f_out, 0, None, "hardtanh",
                                                    [0.0, hi * 2.0**-f_out], "")
        real = torch.ops.onednn.qconv_pointwise(*args, 1.0, 0, torch.float32, "none", [], "")
        if layer.split:  # the halves' real values: 2**6 acc_hi * 2**-(f+e) and acc_lo * 2**-(f+e)
            real = real[:, : layer.c_out].double() + real[:, layer.c_out :].double()
        view = (1, -1, 1, 1)
        y = torch.round(real * torch.pow(2.0, layer.out_frac.to(real.dtype)).view(view))
        return torch.clamp(y, layer.out_lo.to(real.dtype).view(view), layer.out_hi.to(real.dtype).view(view))


class Float64Backend(Backend):
    """float64 convolution: exact because every sum stays far below 2**53; slow."""

    name = "float64"

    def signed_inputs(self, x: torch.Tensor) -> torch.Tensor:
        return clamp_signed(x).double()

    def activations(self, a: torch.Tensor) -> torch.Tensor:
        return a.double()

    def conv(self, layer: IntConv, a: torch.Tensor) -> torch.Tensor:
        if self.name not in layer.packed:
            w, _, b = layer.kernel_parameters()
            layer.packed[self.name] = (w.double(), b.double())
        w, b = layer.packed[self.name]
        with torch.backends.nnpack.flags(enabled=False):
            acc = F.conv2d(a.double(), w, b, padding=layer.padding)
        return _requantise(acc, layer)


BACKENDS: dict[str, Backend] = {b.name: b for b in (Int8Backend(), Float32Backend(), Float64Backend())}  # fastest first


# -- the reference and the canary ---------------------------------------------------------------
def reference_output(layer: IntConv, x: torch.Tensor) -> torch.Tensor:
    """The ground truth in int64 alone: acc = sum W a + B, then round half to even of acc * 2**-shift,
    then the clamp (signed inputs clamped first for a first layer)."""
    a = (clamp_signed(x) if layer.signed_input else x).to(torch.int64)
    w, b = layer.w_int.to(torch.int64), layer.b_int.to(torch.int64)
    n, c, h, wd = a.shape
    k, pad = w.shape[-1], layer.padding
    padded = F.pad(a, (pad, pad, pad, pad))
    acc = b.view(1, -1, 1).repeat(n, 1, h * wd)
    for i in range(k):
        for j in range(k):
            acc += torch.matmul(w[:, :, i, j], padded[:, :, i : i + h, j : j + wd].reshape(n, c, h * wd))
    acc = acc.view(n, -1, h, wd)
    s = layer.shift().view(1, -1, 1, 1)
    sr = torch.clamp(s, min=0)
    q = torch.div(acc, 2**sr, rounding_mode="floor")
    r = acc - q * 2**sr
    half = torch.where(sr > 0, 2 ** (sr - 1), torch.zeros_like(sr))
    up = (r > half) | ((r == half) & (sr > 0) & (q % 2 == 1))
    y = torch.where(s <= 0, acc * 2 ** torch.clamp(-s, min=0), q + up.to(torch.int64))
    view = (1, -1, 1, 1)
    return torch.clamp(y, layer.out_lo.view(view).to(torch.int64), layer.out_hi.view(view).to(torch.int64))


def worst_case_layer(c_in: int, c_out: int, k: int, out_frac: int | list[int], out_hi: float | None,
                     signed_input: bool, split: bool, gen: torch.Generator) -> IntConv:
    """A layer at the edge of the rules: every channel's 255 * sum|W| + |B| at 2**24 or just below,
    all-positive, all-negative and mixed channels, biases of both signs, channels with all weight at
    +-64, and channels whose bias puts outputs on rounding ties (x.5, odd and even x). ``out_hi`` None:
    a head. ``split``: these weights are the high half; the low half is +-31 with the same signs."""
    n_w = c_in * k * k
    w = torch.empty(c_out, n_w, dtype=torch.float64)
    b = torch.empty(c_out, dtype=torch.float64)
    for c in range(c_out):
        l1 = min((EXACT_BOUND - (2**14 + 1 + c)) // ACT_MAX, WEIGHT_MAX * n_w)
        mag = torch.full((n_w,), l1 // n_w, dtype=torch.float64)
        mag[: l1 % n_w] += 1
        if c % 7 == 6:
            mag = torch.zeros(n_w, dtype=torch.float64)
            mag[: l1 // WEIGHT_MAX] = WEIGHT_MAX
        kind = c % 3
        sign = (torch.ones(n_w) if kind == 0 else -torch.ones(n_w) if kind == 1
                else torch.where(torch.rand(n_w, generator=gen) < 0.5, -1.0, 1.0)).double()
        w[c] = mag[torch.randperm(n_w, generator=gen)] * sign
        b[c] = (EXACT_BOUND - ACT_MAX * int(mag.sum())) * (1 if c % 2 else -1)
    if split:
        half = 2 ** (SPLIT_BITS - 1) - 1
        w = w * 2**SPLIT_BITS + torch.where(w < 0, -half, half) * (torch.rand(w.shape, generator=gen) < 0.9)
        b = b * 2**SPLIT_BITS + half * torch.sign(b)
    w_exp = torch.full((c_out,), 6 + (SPLIT_BITS if split else 0), dtype=torch.int64)
    frac = torch.as_tensor(out_frac, dtype=torch.int64).expand(c_out).clone()
    lo, hi = (0.0, out_hi) if out_hi is not None else (-(2.0**30), 2.0**30)
    in_frac = 6 if signed_input else 4
    shift = in_frac + w_exp - frac
    for c, s in enumerate(shift.tolist()):
        if c % 5 == 4 and s > 0:  # where the input is zero the output is B * 2**-s: a tie
            b[c] = (2 * (c % 4) + 1) * 2 ** (s - 1) * (1 if c % 2 else -1)
    return IntConv(w.view(c_out, c_in, k, k), w_exp, b, in_frac, frac, torch.full((c_out,), lo),
                   torch.full((c_out,), hi), signed_input, split)


def worst_case_input(layer: IntConv, n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """Mostly the largest input (so all-positive channels reach 2**24), a block of the smallest, a block
    of random values, and a zero corner whose output is the bias alone."""
    lo, hi = (-INPUT_LIMIT, INPUT_LIMIT) if layer.signed_input else (0, ACT_MAX)
    c = layer.w_int.shape[1]
    x = torch.full((n, c, h, w), float(hi))
    x[:, :, h // 2 :, : w // 2] = lo
    x[:, :, : h // 2, w // 2 :] = torch.randint(lo, hi + 1, (n, c, h // 2, w - w // 2), generator=gen).float()
    x[:, :, -3:, -4:] = 0
    return x


# (c_in, c_out, k, role, out_frac, out_hi): kinds of layer the networks run (k x k and 1x1, heads split or not)
CANARY_SHAPES = [
    (12, 48, 3, "first", 5, 255.0),
    (48, 48, 3, "hidden", 4, 255.0),
    (48, 48, 1, "hidden", 5, 255.0),
    (48, 48, 3, "hidden", 4, 127.0),
    (96, 24, 3, "head", [4] * 12 + [3] * 12, None),
    (96, 48, 3, "head", 10, None),  # shift 0: the raw accumulators come out
    (96, 24, 3, "split head", [4] * 12 + [3] * 12, None),
    (96, 48, 3, "split head", 4 + 6 + SPLIT_BITS, None),  # shift 0
    # the local AR's: the causal 7x7 layer over samples and residuals, its 1x1 layers, the head of five
    # logistics (means 1/16, log2 scales 1/8, colour coefficients 1/64; logits 1/8), the linear predictor
    (6, 64, 7, "first", 5, 255.0),
    (64, 64, 1, "hidden", 5, 255.0),
    (64, 50, 1, "split head", ([4] * 3 + [3] * 3 + [6] * 3) * 5 + [3] * 5, None),
    (3, 3, 7, "signed split head", 4, None),
]
CANARY_SIZES = [(1, 9, 13), (3, 16, 16)]


def canary_cases(seed: int = 0) -> list[tuple[IntConv, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for c_in, c_out, k, role, out_frac, out_hi in CANARY_SHAPES:
        layer = worst_case_layer(c_in, c_out, k, out_frac, out_hi, role in ("first", "signed split head"),
                                 role.endswith("split head"), gen)
        cases += [(layer, worst_case_input(layer, n, h, w, gen)) for n, h, w in CANARY_SIZES]
    return cases


def _digest(outputs: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in outputs:
        h.update(t.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


# The int64 reference's outputs on canary_cases(), so a start-up does not recompute them (2 s). Should a
# torch version draw other random cases, the digest differs and the reference is computed after all.
EXPECTED_DIGEST = "d619950b2489a118a6f4e775cbc13e365ebc062357234949de26c222f9dbcba3"


def canary(backend: Backend) -> list[str]:
    """Run the worst cases through ``backend``; what differs from the int64 reference (empty: it passes).
    A backend that raises or differs anywhere fails."""
    if not backend.available():
        return [f"{backend.name}: not available here"]
    cases = canary_cases()
    got = []
    try:
        for layer, x in cases:
            a = backend.signed_inputs(x) if layer.signed_input else backend.activations(x)
            got.append(backend.conv(layer, a).to(torch.int64))
    except Exception as err:  # a backend that cannot run a layer fails
        return [f"{backend.name}: {type(err).__name__}: {err}"]
    if _digest(got) == EXPECTED_DIGEST:
        return []
    failures = []
    for (layer, x), out in zip(cases, got):
        want = reference_output(layer, x)
        bad = int((out != want).sum()) if out.shape == want.shape else want.numel()
        if bad:
            failures.append(f"{backend.name}: layer {tuple(layer.w_int.shape)} on {tuple(x.shape)}: "
                            f"{bad} of {want.numel()} outputs differ")
    return failures


_chosen: Backend | None = None
_choice_lock = threading.Lock()


def current_backend() -> Backend:
    """The backend this process runs its exact convolutions on, chosen at first use: ``$ICNN_CONV_BACKEND``
    if set (an unknown name, or one that fails the canary, is an error), else the fastest that passes."""
    global _chosen
    with _choice_lock:
        if _chosen is None:
            _chosen = _choose(os.environ.get(BACKEND_ENV, "").strip())
        return _chosen


def _choose(forced: str) -> Backend:
    if forced:
        if forced not in BACKENDS:
            raise ModelError(f"convolution backend '{forced}' is unknown (known: {', '.join(BACKENDS)}; "
                             f"from {BACKEND_ENV} or the API)")
        failures = canary(BACKENDS[forced])
        if failures:
            raise ModelError(f"convolution backend '{forced}' does not compute exactly here ({failures[0]})")
        return BACKENDS[forced]
    for backend in BACKENDS.values():
        if not canary(backend):
            return backend
    raise ModelError("no convolution backend computes exactly here")


def use_backend(name: str | None) -> Backend | None:
    """Run this process's exact convolutions on backend ``name`` from now on (it must pass the canary:
    otherwise a ModelError, and the choice is unchanged); None forgets the choice, so the next use
    chooses again (``$ICNN_CONV_BACKEND``, else the fastest). Returns the backend in use before."""
    global _chosen
    backend = _choose(name) if name is not None else None
    with _choice_lock:
        before, _chosen = _chosen, backend
    return before
