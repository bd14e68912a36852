"""The multi-scale integer discrete flow: bijections and the priors of its latents, composed.

Level l: squeeze -> K x [channel flip -> additive coupling] -> factor out half the channels,
whose prior (a discretised logistic) is conditioned on the half that stays. What remains after
the last level gets a learned per-channel prior, optionally with a spatial context (its 2x2
sub-lattices coded one after another, each given those before). A level's factored-out latents
can have contexts too: channel groups (the second given the first) and a checkerboard (the
"white" positions given the "black" ones), each half of it split once more by quadrants.

``forward`` returns the latent groups in *encoding* order (level 1 first, the top last); the
ANS stack hands them back in the opposite order, which is the order ``decode`` needs them in:
the top first, then each level's factored-out latents given what has been decoded above it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn

from . import priors
from .contexts import (SUBLATTICES, CheckerboardTwin, ConditionalPrior, DecodeLatents, LatentGroup, QuadrantPasses,
                       SublatticeContext, TopPrior, code_group, decode_group, with_errors)
from .layers import (AdditiveCoupling, ChannelFlip, ColourLifting, LiftingMix, Sequential, Squeeze,
                     VolumePreservingCoupling)
from .quant import QConv2d, QNet


@dataclass
class FlowConfig:
    in_channels: int = 3
    levels: int = 3
    couplings: int = 4  # per level
    hidden: int = 96  # width of coupling networks
    kernels: list[int] = field(default_factory=lambda: [3, 1])  # hidden layers of a coupling net
    prior_hidden: int = 96
    prior_kernels: list[int] = field(default_factory=lambda: [3, 1])
    # A level's factored-out half is coded as this many channel groups (1, 2 or 4), each given the
    # groups before it as well (one more parallel pass each). Groups come from halving: 6 channels in
    # 4 groups are 2, 1, 2, 1, so the groups of 4 split those of 2.
    prior_groups: int = 1
    # True: the top latents are coded as the four sub-lattices of their 2x2 blocks, each with a
    # prior network of the sub-lattices before it (a spatial context; three more parallel passes).
    top_context: bool = False
    # True: each prior group of every level is coded in two passes over a checkerboard, the second
    # half of the positions given the first (a spatial context inside a level; one more pass each).
    checkerboard: bool = False
    # Logistics per latent in every conditional prior (1: one; more: a mixture with learned weights).
    mixtures: int = 1
    # True: passes that follow a decoded group also see its residuals z - floor(mu) and its scales
    # (checkerboard twins, the second channel group, the top's later sub-lattices).
    error_context: bool = False
    # The channel mixing before each coupling: "flip" (reverse the order) or "lifting" (a learned
    # integer-invertible 1x1 mixing, triangular lifting steps after the flip).
    mixing: str = "flip"
    # The couplings: "additive" (x_b + t) or "volume-preserving" (x_b's channel pairs scaled by K and
    # 1/K through rounded lifting steps, then + t; K from the same network as t).
    coupling: str = "additive"
    # The first this many levels code each checkerboard half in two passes more: a 2x2 block's four
    # positions in turn, the last given all eight neighbours (needs checkerboards; two more passes each).
    quadrant_levels: int = 0
    # True: a learned integer colour transform (lifting steps, starting as YCoCg-R) before the first level.
    colour_stage: bool = False
    # The codec codes each plane of a colour-stage model after the stage or in its own colours, whichever
    # is shorter (photographs whose channels carry independent noise code shorter unmixed). True: the
    # training path's code length is that choice's too (each image in its shorter mode, plus one bit).
    colour_choice: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "FlowConfig":
        return FlowConfig(**d)

    @property
    def block(self) -> int:
        """Height and width must be multiples of this."""
        return 2 ** (self.levels + int(self.top_context or self.checkerboard))


class Level(nn.Module):
    def __init__(self, channels_in: int, cfg: FlowConfig, quadrants: bool = False) -> None:
        super().__init__()
        c = channels_in * 4
        steps = [Squeeze()]
        if cfg.mixing not in ("flip", "lifting"):
            raise ValueError(f"mixing must be 'flip' or 'lifting', not {cfg.mixing!r}")
        couplings = {"additive": AdditiveCoupling, "volume-preserving": VolumePreservingCoupling}
        if cfg.coupling not in couplings:
            raise ValueError(f"coupling must be 'additive' or 'volume-preserving', not {cfg.coupling!r}")
        for _ in range(cfg.couplings):
            steps += [ChannelFlip() if cfg.mixing == "flip" else LiftingMix(c),
                      couplings[cfg.coupling](c, cfg.hidden, cfg.kernels)]
        self.transform = Sequential(steps)
        self.keep = c // 2
        c_z = c - self.keep
        self.group_sizes = channel_groups(c_z, cfg.prior_groups)
        k, errors = cfg.mixtures, cfg.error_context
        self.error_context = errors
        # Group i's prior sees h, the groups before it and (error context) their residuals and scales.
        before = [sum(self.group_sizes[:i]) for i in range(len(self.group_sizes))]
        conds = [self.keep + with_errors(b, errors) for b in before]
        priors_ = [ConditionalPrior(cc, size, cfg.prior_hidden, cfg.prior_kernels, k)
                   for cc, size in zip(conds, self.group_sizes)]
        twins = [CheckerboardTwin(cc, size, cfg.prior_hidden, cfg.prior_kernels, k, errors)
                 for cc, size in zip(conds, self.group_sizes)] if cfg.checkerboard else []
        # Model files store weights in ``qconvs()`` order, which is registration order: the first two
        # groups' priors, then their checkerboard twins, then any further groups' priors and twins,
        # so the networks of a model with fewer groups or no twins keep their places.
        self.prior = priors_[0]
        self.context_prior = priors_[1] if len(priors_) > 1 else None
        self.prior_twin = twins[0] if twins else None
        self.context_twin = twins[1] if len(twins) > 1 else None
        self.more_priors = nn.ModuleList(priors_[2:])
        self.more_twins = nn.ModuleList(twins[2:])
        if quadrants and not cfg.checkerboard:
            raise ValueError("quadrant passes split checkerboard halves: they need checkerboards")
        self.quadrants = nn.ModuleList(QuadrantPasses(cc, size, cfg.prior_hidden, cfg.prior_kernels, k, errors)
                                       for cc, size in zip(conds, self.group_sizes)) if quadrants else None

    def group_priors(self) -> list[tuple[ConditionalPrior, CheckerboardTwin | None]]:
        """Each channel group's prior and checkerboard twin (or None), in decoding order."""
        priors_ = [self.prior] + ([self.context_prior] if self.context_prior is not None else []) + list(self.more_priors)
        twins = ([self.prior_twin, self.context_twin] + list(self.more_twins)) if self.prior_twin is not None \
            else [None] * len(priors_)
        return list(zip(priors_, twins))

    def _each_group(self, h: torch.Tensor, run: Callable[..., tuple[torch.Tensor, torch.Tensor | None]]) -> list[torch.Tensor]:
        """Each channel group's latents in decoding order, from ``run(i, prior, twin, cond, extra, errors,
        quadrants)`` (coding or decoding group i given h, the groups before and their error context
        ``extra``; it returns the group's latents and, where ``errors`` asks, its own error context)."""
        seen, errors = [h], []
        pairs = self.group_priors()
        for i, (prior, twin) in enumerate(pairs):
            quadrants = None if self.quadrants is None else self.quadrants[i]
            z_i, error = run(i, prior, twin, _cat(seen), _cat(errors), self.error_context and i + 1 < len(pairs),
                             quadrants)
            seen.append(z_i)
            errors += [error] if error is not None else []
        return seen[1:]

    def latent_groups(self, h: torch.Tensor, z: torch.Tensor) -> list[LatentGroup]:
        """The factored-out latents z given h, in encoding order (the group decoded last first)."""
        parts = torch.split(z, self.group_sizes, dim=1)
        groups: list[LatentGroup] = []

        def code(i, prior, twin, cond, extra, errors, quadrants):
            coded, error = code_group(prior, twin, cond, parts[i], extra, errors, quadrants)
            groups[:0] = coded
            return parts[i], error

        self._each_group(h, code)
        return groups

    def decode_factored(self, h: torch.Tensor, decode_latents: DecodeLatents) -> torch.Tensor:
        return torch.cat(self._each_group(h, lambda _, prior, twin, cond, extra, errors, quadrants: decode_group(
            prior, twin, cond, decode_latents, extra, errors, quadrants)), dim=1)

    def group_names(self, level: str) -> list[str]:
        """Names of ``latent_groups``' groups, in the same order."""
        n = len(self.group_sizes)
        groups = [f"{level} z" if n == 1 else f"{level} z1" if i == 1 else f"{level} z2|z1" if i == 2
                  else f"{level} z{i}|z1-{i - 1}" for i in range(n, 0, -1)]
        if self.prior_twin is None:
            return groups
        if self.quadrants is not None:
            return [f"{name} {part}" for name in groups for part in ("white (1,0)", "white (0,1)", "black (1,1)",
                                                                     "black (0,0)")]
        return [f"{name} {colour}" for name in groups for colour in ("white", "black")]


def channel_groups(channels: int, groups: int) -> list[int]:
    """The sizes of ``groups`` channel groups of ``channels`` channels, by halving (first halves larger)."""
    if groups not in (1, 2, 4) or channels < groups:
        raise ValueError(f"prior_groups must be 1, 2 or 4 (at most the channels, {channels}), not {groups}")
    if groups == 1:
        return [channels]
    half = (channels + 1) // 2
    return channel_groups(half, groups // 2) + channel_groups(channels - half, groups // 2)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor | None:
    return None if not parts else parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class IntegerFlow(nn.Module):
    """Integer image (B, C, H, W), centred (pixel - 128) -> latent groups, and back."""

    def __init__(self, cfg: FlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        levels, c = [], cfg.in_channels
        for i in range(cfg.levels):
            level = Level(c, cfg, quadrants=i < cfg.quadrant_levels)
            levels.append(level)
            c = level.keep
        self.levels = nn.ModuleList(levels)
        if cfg.colour_stage and cfg.in_channels != 3:
            raise ValueError("a colour stage needs three channels")
        if cfg.colour_choice and not cfg.colour_stage:
            raise ValueError("a colour choice needs a colour stage")
        self.colour = ColourLifting() if cfg.colour_stage else None
        self.top = TopPrior(c)
        self.top_context = (SublatticeContext(c, cfg.prior_hidden, cfg.prior_kernels, cfg.mixtures, cfg.error_context)
                            if cfg.top_context else None)

    def qconvs(self) -> list[QConv2d]:
        return [m for m in self.modules() if isinstance(m, QConv2d)]

    def lifting_mixes(self) -> list[LiftingMix]:
        return [m for m in self.modules() if isinstance(m, LiftingMix)]

    def qnets(self) -> list[QNet]:
        return [m for m in self.modules() if isinstance(m, QNet)]

    def freeze(self) -> None:
        """Fix the integer parameters of the exact path from the current float parameters."""
        for m in self.qconvs():
            m.freeze()
        self.top.freeze()

    def forward(self, x: torch.Tensor, plain: torch.Tensor | None = None) -> list[LatentGroup]:
        """The latent groups of ``x``; ``plain`` (a bool per image) skips the colour stage for those images."""
        groups = []
        h = x if self.colour is None else self._colour(x, plain)
        for level in self.levels:
            y = level.transform(h)
            h, z = y[:, : level.keep], y[:, level.keep :]
            groups += level.latent_groups(h, z)
        if self.top_context is not None:
            return groups + self.top_context.latent_groups(h, self.top)
        return groups + [LatentGroup(h, *self.top(h))]

    def group_names(self) -> list[str]:
        """A name for each latent group of ``forward``, in the same (encoding) order."""
        names = []
        for i, level in enumerate(self.levels, start=1):
            names += level.group_names(f"level {i}")
        if self.top_context is None:
            return names + ["top"]
        return names + [f"top sub-lattice {k}" for k in reversed(range(SUBLATTICES))]

    def _colour(self, x: torch.Tensor, plain: torch.Tensor | None) -> torch.Tensor:
        y = self.colour(x)
        return y if plain is None else torch.where(plain.view(-1, *[1] * (x.dim() - 1)), x, y)

    def nll_bits(self, x: torch.Tensor, plain: torch.Tensor | None = None) -> torch.Tensor:
        """-log2 p(x) per image (training path). With a colour choice and no ``plain`` given, each image's
        shorter mode plus the bit that names it; gradients (if enabled) flow through the chosen mode only."""
        if self.colour is None or not self.cfg.colour_choice or plain is not None:
            total = x.new_zeros(x.shape[0])
            for g in self.forward(x, plain):
                total = total + priors.mixture_bits(g.z, g.mu, g.log_scale, g.logits).flatten(1).sum(1)
            return total
        return self.shorter_colour_mode_bits(x)

    def shorter_colour_mode_bits(self, x: torch.Tensor) -> torch.Tensor:
        """-log2 p(x) per image in the colour mode the codec would choose for it (the shorter, plus the bit
        that names it), whatever ``cfg.colour_choice`` says; gradients (if enabled) flow through that mode.
        Without a colour stage there is one mode and no bit: the plain ``nll_bits``."""
        if self.colour is None:
            return self.nll_bits(x)
        with torch.no_grad():
            coloured = self.nll_bits(x, torch.zeros(x.shape[0], dtype=torch.bool, device=x.device))
            unmixed = self.nll_bits(x, torch.ones(x.shape[0], dtype=torch.bool, device=x.device))
        if not torch.is_grad_enabled():
            return torch.minimum(coloured, unmixed) + 1
        return self.nll_bits(x, unmixed < coloured) + 1

    @torch.no_grad()
    def decode(
        self,
        batch: int,
        height: int,
        width: int,
        decode_latents: DecodeLatents,
        plain: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Rebuild the exact-path image from latents delivered by ``decode_latents(mu16, ls8)``,
        which is called once per latent group, top first; ``plain`` as in :meth:`forward`."""
        c = self.top.mu.numel()
        scale = 2**self.cfg.levels
        like = torch.zeros(batch, c, height // scale, width // scale, dtype=torch.float64)
        h = (decode_latents(*self.top(like)) if self.top_context is None
             else self.top_context.decode(like, self.top, decode_latents))
        for level in reversed(self.levels):
            z = level.decode_factored(h, decode_latents)
            h = level.transform.inverse(torch.cat([h, z], dim=1))
        if self.colour is None:
            return h
        x = self.colour.inverse(h)
        return x if plain is None else torch.where(plain.view(-1, 1, 1, 1), h, x)
