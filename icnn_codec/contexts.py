"""Conditional priors and the contexts that feed them: which decoded latents each prior sees.

A prior gives every latent of a group a discretised logistic whose mean and scale a network
computes from what the decoder already has. The structures here decide what that is:

* :class:`ConditionalPrior` -- p(z | h): a level's factored-out latents given the half that stays
  (and, with two channel groups, the second group given the first as well);
* :class:`CheckerboardTwin` -- a group's "white" positions given its "black" ones (one more pass);
* :class:`QuadrantPasses` -- each checkerboard half split once more: a 2x2 block's four positions
  coded in turn (two more passes);
* :class:`TopPrior` and :class:`SublatticeContext` -- the latents left after the last level: a
  learned per-channel prior, or their 2x2 sub-lattices coded in turn, each given those before.

Groups are listed in *encoding* order (the group decoded last comes first), since the ANS coder
is a stack: see :mod:`icnn_codec.payload`.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from . import priors
from .layers import Squeeze
from .quant import HIDDEN_FRAC, QConv2d, QNet, is_exact, round_ste

INITIAL_LOG2_SCALE = 2.0  # priors start wide (s = 4) so early training is stable

DecodeLatents = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (mu16, ls8) -> the group's latents


class PriorParams(NamedTuple):
    """A group's prior parameters: on the training path mu and log2 s (on their grids), on the exact
    path the grid integers mu16 = 16 mu and ls8 = 8 log2 s. With a mixture of K logistics each is
    (B, K*C, H, W), component-major, and ``logits`` holds the components' base-2 weight logits."""

    mu: torch.Tensor
    log_scale: torch.Tensor
    logits: torch.Tensor | None = None

    def half(self, colour: int) -> "PriorParams":
        """The parameters at one colour of the checkerboard."""
        return self.part(lambda t: checkerboard_half(t, colour))

    def part(self, where: Callable[[torch.Tensor], torch.Tensor]) -> "PriorParams":
        """The parameters at the positions ``where`` picks."""
        return PriorParams(*(None if t is None else where(t) for t in self))


class LatentGroup(NamedTuple):
    """Latents and their prior parameters (see :class:`PriorParams`)."""

    z: torch.Tensor
    mu: torch.Tensor
    log_scale: torch.Tensor
    logits: torch.Tensor | None = None


def with_errors(channels: int, error_context: bool) -> int:
    """Inputs that decoded latents of ``channels`` channels give a later pass: the latents, and with an
    error context their residuals and scales as well."""
    return channels * (3 if error_context else 1)


def error_inputs(z: torch.Tensor, params: PriorParams) -> torch.Tensor:
    """The error context of decoded latents: their residuals z - floor(mu) and their scales' grid
    integers 8 log2 s (the first component's, for a mixture), as (B, 2C, H, W) integers on both paths.
    A later pass reads from them where its neighbours were surprising and how wide their priors were."""
    c = z.shape[1]
    mu, ls = params.mu[:, :c], params.log_scale[:, :c]
    if is_exact(z):
        return torch.cat([z - torch.floor(mu / 2**priors.MU_FRAC), ls], dim=1)
    return torch.cat([z - torch.floor(mu), torch.round(ls * 2**priors.LS_FRAC)], dim=1).detach()


def prior_head(c_in: int, c_z: int, mixtures: int = 1) -> QConv2d:
    """Means, log2 scales and (for a mixture) weight logits of ``mixtures`` logistics per latent."""
    mu_lo, mu_hi = priors.mu_bounds_q()
    ls_lo, ls_hi = priors.ls_bounds_q()
    n = mixtures * c_z
    lg = priors.LOGIT_LIMIT * 2**priors.LOGIT_FRAC
    logits = n if mixtures > 1 else 0
    head = QConv2d(
        c_in, 2 * n + logits, 3, HIDDEN_FRAC,
        out_frac=[priors.MU_FRAC] * n + [priors.LS_FRAC] * n + [priors.LOGIT_FRAC] * logits,
        out_lo=[mu_lo] * n + [ls_lo] * n + [-lg] * logits,
        out_hi=[mu_hi] * n + [ls_hi] * n + [lg] * logits,
        zero_init=True,
        split=True,  # 13-bit weights: the head's precision is worth the second half's MACs
    )
    with torch.no_grad():
        head.conv.bias[n : 2 * n] = INITIAL_LOG2_SCALE
    return head


class ConditionalPrior(nn.Module):
    """p(z | h): a discretised logistic (or a mixture of them) per latent, its parameters from a
    network of h."""

    def __init__(self, c_cond: int, c_z: int, hidden: int, kernels: list[int], mixtures: int = 1) -> None:
        super().__init__()
        self.c_z, self.mixtures = c_z, mixtures
        self.net = QNet(c_cond, hidden, kernels, prior_head(hidden, c_z, mixtures))

    def forward(self, h: torch.Tensor) -> PriorParams:
        out = self.net(h)
        n = self.c_z * self.mixtures
        return PriorParams(out[:, :n], out[:, n : 2 * n], out[:, 2 * n :] if self.mixtures > 1 else None)


def _colour_index(like: torch.Tensor, colour: int) -> torch.Tensor:
    """For (B, C, H, W/2, 2) pairs of columns: the index within each pair of ``colour``'s position
    (row r: (r + colour) mod 2)."""
    b, c, height, half, _ = like.shape
    rows = torch.arange(height, device=like.device)
    return ((rows + colour) % 2).view(1, 1, height, 1, 1).expand(b, c, height, half, 1)


def checkerboard_half(t: torch.Tensor, colour: int) -> torch.Tensor:
    """The positions of (B, C, H, W) whose row + column is even (colour 0, "black") or odd
    (colour 1, "white"), as a (B, C, H, W/2) tensor in raster order."""
    b, c, height, width = t.shape
    pairs = t.reshape(b, c, height, width // 2, 2)
    return torch.gather(pairs, 4, _colour_index(pairs, colour)).squeeze(4)


def checkerboard_merge(black: torch.Tensor, white: torch.Tensor) -> torch.Tensor:
    """The inverse of ``checkerboard_half``: the black and white halves back into one tensor."""
    b, c, height, half = black.shape
    pairs = black.new_zeros(b, c, height, half, 2)
    for colour, part in enumerate((black, white)):
        pairs.scatter_(4, _colour_index(pairs, colour), part.unsqueeze(4))
    return pairs.view(b, c, height, 2 * half)


class CheckerboardTwin(nn.Module):
    """The prior of a group's white positions, given what its black positions' prior sees plus the
    black latents (white ones zeroed), and with an error context their residuals and scales too: each
    white latent has decoded neighbours on four sides (fewer at a tile's border). Every white position
    sees the same pattern (known 4-neighbours, zeros on itself and its diagonals), so one convolution,
    read at the white positions, serves."""

    def __init__(self, c_cond: int, c_z: int, hidden: int, kernels: list[int], mixtures: int = 1,
                 error_context: bool = False) -> None:
        super().__init__()
        self.error_context = error_context
        self.prior = ConditionalPrior(c_cond + with_errors(c_z, error_context), c_z, hidden, kernels, mixtures)

    def forward(self, cond: torch.Tensor, black: torch.Tensor, black_params: PriorParams,
                extra: torch.Tensor | None = None) -> PriorParams:
        """Parameters at every position (read them at the white ones) given the black half (and
        ``extra``, the group prior's own error context)."""
        errors = checkerboard_merge(*_with_zeros(error_inputs(black, black_params))) if self.error_context else None
        return self.prior(self.inputs(cond, checkerboard_merge(*_with_zeros(black)), errors, extra))

    def inputs(self, cond: torch.Tensor, known: torch.Tensor, errors: torch.Tensor | None,
               extra: torch.Tensor | None) -> torch.Tensor:
        """The network's input: cond, the known latents (zeros elsewhere), then with an error context
        ``extra`` and the known latents' error context (zeros elsewhere)."""
        later = [t for t in (extra, errors) if t is not None] if self.error_context else []
        return torch.cat([cond, known] + later, dim=1)


def _with_zeros(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return t, torch.zeros_like(t)


QUADRANTS = ((0, 0), (1, 1), (0, 1), (1, 0))  # a 2x2 block's (row, column) in decoding order: black, then white


def quadrant(t: torch.Tensor, k: int) -> torch.Tensor:
    """The positions of (B, C, H, W) at ``QUADRANTS[k]`` of every 2x2 block: (B, C, H/2, W/2)."""
    r, c = QUADRANTS[k]
    return t[:, :, r::2, c::2]


def quadrant_merge(parts: list[torch.Tensor | None]) -> torch.Tensor:
    """The inverse of ``quadrant``: parts[k] at quadrant k (None: zeros there)."""
    like = next(p for p in parts if p is not None)
    b, c, h, w = like.shape
    out = like.new_zeros(b, c, 2 * h, 2 * w)
    for k, part in enumerate(parts):
        if part is not None:
            r, col = QUADRANTS[k]
            out[:, :, r::2, col::2] = part
    return out


class QuadrantPasses(nn.Module):
    """A group's two checkerboard passes split once more, four passes over each 2x2 block: the black
    positions at (0, 0), then those at (1, 1) given them (``black``: the group prior's inputs, the
    first black latents and their error context), the white ones at (0, 1) under the checkerboard
    twin (which sees every black latent), then those at (1, 0) given the twin's inputs and the first
    white latents (``white``). The last pass sees all eight neighbours; with zero weights on their new
    inputs the two new networks are the group prior and the twin, so a model grown with them starts
    with its code."""

    def __init__(self, c_cond: int, c_z: int, hidden: int, kernels: list[int], mixtures: int = 1,
                 error_context: bool = False) -> None:
        super().__init__()
        self.error_context = error_context
        seen = with_errors(c_z, error_context)
        self.black = ConditionalPrior(c_cond + seen, c_z, hidden, kernels, mixtures)
        self.white = ConditionalPrior(c_cond + 2 * seen, c_z, hidden, kernels, mixtures)


# (params, where: the positions of a full tensor that the pass codes, or None for all) -> the pass's latents
Latents = Callable[[PriorParams, "Callable[[torch.Tensor], torch.Tensor] | None"], torch.Tensor]


def _group_passes(prior: ConditionalPrior, twin: CheckerboardTwin | None, quadrants: QuadrantPasses | None,
                  cond: torch.Tensor, latents: Latents, extra: torch.Tensor | None, errors: bool
                  ) -> tuple[list[tuple[torch.Tensor, PriorParams]], Callable[[list[torch.Tensor]], torch.Tensor],
                             torch.Tensor | None]:
    """A group's passes in decoding order, each (latents, params) with its latents from ``latents``
    (the known ones when coding, the decoded ones when decoding), the function that merges the passes'
    tensors into the group's, and the group's error context when ``errors`` asks for it (else None)."""
    cond_extra = cond if extra is None else torch.cat([cond, extra], dim=1)
    params = prior(cond_extra)
    if twin is None:
        z = latents(params, None)
        return [(z, params)], lambda parts: parts[0], error_inputs(z, params) if errors else None
    if quadrants is not None:
        passes = _quadrant_passes(params, twin, quadrants, cond, cond_extra, latents, extra)
        merge = quadrant_merge
    else:
        black_params = params.half(0)
        black = latents(black_params, lambda t: checkerboard_half(t, 0))
        white_params = twin(cond, black, black_params, extra).half(1)
        passes = [(black, black_params), (latents(white_params, lambda t: checkerboard_half(t, 1)), white_params)]
        merge = lambda parts: checkerboard_merge(*parts)  # noqa: E731
    return passes, merge, merge([error_inputs(z, p) for z, p in passes]) if errors else None


def _quadrant_passes(params: PriorParams, twin: CheckerboardTwin, quadrants: QuadrantPasses, cond: torch.Tensor,
                     cond_extra: torch.Tensor, latents: Latents, extra: torch.Tensor | None
                     ) -> list[tuple[torch.Tensor, PriorParams]]:
    """The four passes of :class:`QuadrantPasses`, in decoding order."""
    passes: list[tuple[torch.Tensor, PriorParams]] = []
    zs: list[torch.Tensor | None] = []
    es: list[torch.Tensor | None] = []

    def decoded(k: int, full: PriorParams) -> None:
        p = full.part(lambda t: quadrant(t, k))
        z = latents(p, lambda t: quadrant(t, k))
        passes.append((z, p))
        zs.append(z)
        es.append(error_inputs(z, p) if quadrants.error_context else None)

    def known(parts: list[torch.Tensor | None]) -> list[torch.Tensor]:
        return [quadrant_merge(parts)] if any(p is not None for p in parts) else []

    decoded(0, params)
    decoded(1, quadrants.black(torch.cat([cond_extra] + known(zs) + known(es), dim=1)))
    twin_inputs = twin.inputs(cond, quadrant_merge(zs), quadrant_merge(es) if quadrants.error_context else None, extra)
    decoded(2, twin.prior(twin_inputs))
    decoded(3, quadrants.white(torch.cat([twin_inputs] + known([None, None, zs[2]]) + known([None, None, es[2]]),
                                         dim=1)))
    return passes


def code_group(prior: ConditionalPrior, twin: CheckerboardTwin | None, cond: torch.Tensor, z: torch.Tensor,
               extra: torch.Tensor | None = None, errors: bool = False, quadrants: QuadrantPasses | None = None
               ) -> tuple[list[LatentGroup], torch.Tensor | None]:
    """One prior group's latents in encoding order (without a twin p(z | cond, extra); with one, the
    white half given the black half, then the black half, decoded first; with quadrants, four passes),
    and (``errors``) their error context. ``extra``: an error context of earlier groups, the last of
    the prior's inputs."""
    passes, _, error_context = _group_passes(
        prior, twin, quadrants, cond, lambda _, where: z if where is None else where(z), extra, errors)
    return [LatentGroup(z_pass, *params) for z_pass, params in reversed(passes)], error_context


def decode_group(prior: ConditionalPrior, twin: CheckerboardTwin | None, cond: torch.Tensor,
                 decode_latents: DecodeLatents, extra: torch.Tensor | None = None, errors: bool = False,
                 quadrants: QuadrantPasses | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The inverse of ``code_group``: the group's latents from ``decode_latents``, and their error context."""
    passes, merge, error_context = _group_passes(
        prior, twin, quadrants, cond, lambda params, _: decode_latents(params.mu, params.log_scale), extra, errors)
    return merge([z for z, _ in passes]), error_context


class TopPrior(nn.Module):
    """A learned per-channel discretised logistic for the latents left after the last level."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.full((channels,), 4.0))
        self.register_buffer("mu16", None, persistent=False)
        self.register_buffer("ls8", None, persistent=False)

    def integer_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        mu_lo, mu_hi = priors.mu_bounds_q()
        ls_lo, ls_hi = priors.ls_bounds_q()
        mu16 = torch.clamp(torch.round(self.mu.detach().double() * 2**priors.MU_FRAC), mu_lo, mu_hi)
        ls8 = torch.clamp(torch.round(self.log_scale.detach().double() * 2**priors.LS_FRAC), ls_lo, ls_hi)
        return mu16, ls8

    def freeze(self) -> None:
        self.mu16, self.ls8 = self.integer_parameters()

    def load_integer_parameters(self, mu16, ls8) -> None:
        self.mu16 = torch.as_tensor(mu16, dtype=torch.float64)
        self.ls8 = torch.as_tensor(ls8, dtype=torch.float64)
        with torch.no_grad():
            self.mu.copy_(self.mu16 / 2**priors.MU_FRAC)
            self.log_scale.copy_(self.ls8 / 2**priors.LS_FRAC)

    def forward(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1)
        if is_exact(like):
            mu, ls = self.mu16.view(shape), self.ls8.view(shape)
        else:
            mu_lo, mu_hi = priors.mu_bounds_q()
            mu = torch.clamp(round_ste(self.mu * 2**priors.MU_FRAC), mu_lo, mu_hi) / 2**priors.MU_FRAC
            ls = round_ste(self.log_scale * 2**priors.LS_FRAC) / 2**priors.LS_FRAC
            ls = torch.clamp(ls, priors.LOG2_S_MIN, priors.LOG2_S_MAX)
            mu, ls = mu.view(shape), ls.view(shape)
        return mu.expand_as(like), ls.expand_as(like)


SUBLATTICES = 4  # positions in a 2x2 block, in raster order


class SublatticeContext(nn.Module):
    """A spatial context for the top latents: the four sub-lattices of their 2x2 blocks are coded
    in turn, the first under the per-channel top prior, each next one under a conditional prior of
    the sub-lattices before it (and, with an error context, of their residuals and scales), so most
    top latents see decoded neighbours on every side.

    The top latents are a coarse image (1/8 of the resolution for 3 levels) whose neighbours
    predict each other well; the per-channel prior alone cannot use that.
    """

    def __init__(self, channels: int, hidden: int, kernels: list[int], mixtures: int = 1,
                 error_context: bool = False) -> None:
        super().__init__()
        self.error_context = error_context
        self.nets = nn.ModuleList(ConditionalPrior(k * with_errors(channels, error_context), channels, hidden, kernels, mixtures)
                                  for k in range(1, SUBLATTICES))

    @staticmethod
    def split(h: torch.Tensor) -> list[torch.Tensor]:
        b, c, height, width = h.shape
        parts = Squeeze()(h).view(b, c, SUBLATTICES, height // 2, width // 2)
        return [parts[:, :, k] for k in range(SUBLATTICES)]

    @staticmethod
    def merge(parts: list[torch.Tensor]) -> torch.Tensor:
        b, c, height, width = parts[0].shape
        return Squeeze().inverse(torch.stack(parts, dim=2).view(b, c * SUBLATTICES, height, width))

    def _passes(self, first: PriorParams, latents: Callable[[int, PriorParams], torch.Tensor]
                ) -> list[tuple[torch.Tensor, PriorParams]]:
        """The four sub-lattices in decoding order, each (latents, params), its latents from
        ``latents(k, params)`` (the known ones when coding, the decoded ones when decoding)."""
        passes, errors = [], []
        params = first
        for k in range(SUBLATTICES):
            if k:
                parts = [z for z, _ in passes]
                params = self.nets[k - 1](torch.cat(parts + errors if self.error_context else parts, dim=1))
            z = latents(k, params)
            passes.append((z, params))
            if self.error_context:
                errors.append(error_inputs(z, params))
        return passes

    def latent_groups(self, h: torch.Tensor, top: "TopPrior") -> list[LatentGroup]:
        """The top latents in encoding order (the sub-lattice decoded last first)."""
        parts = self.split(h)
        passes = self._passes(PriorParams(*top(parts[0])), lambda k, _: parts[k])
        return [LatentGroup(z, *params) for z, params in reversed(passes)]

    def decode(self, like: torch.Tensor, top: "TopPrior", decode_latents: DecodeLatents) -> torch.Tensor:
        passes = self._passes(PriorParams(*top(self.split(like)[0])),
                              lambda _, params: decode_latents(params.mu, params.log_scale))
        return self.merge([z for z, _ in passes])
