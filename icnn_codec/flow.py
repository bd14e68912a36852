"""The multi-scale integer discrete flow: bijections and the priors of its latents, composed.

Level l: squeeze -> K x [channel flip -> additive coupling] -> factor out half the channels,
whose prior (a discretised logistic) is conditioned on the half that stays. What remains after
the last level gets a learned per-channel prior, optionally with a spatial context (its 2x2
sub-lattices coded one after another, each given those before). A level's factored-out latents
can have contexts too: channel groups (the second given the first) and a checkerboard (the
"white" positions given the "black" ones).

``forward`` returns the latent groups in *encoding* order (level 1 first, the top last); the
ANS stack hands them back in the opposite order, which is the order ``decode`` needs them in:
the top first, then each level's factored-out latents given what has been decoded above it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from . import priors
from .contexts import (SUBLATTICES, CheckerboardTwin, ConditionalPrior, DecodeLatents, LatentGroup, SublatticeContext,
                       TopPrior, code_group, decode_group, with_errors)
from .layers import AdditiveCoupling, ChannelFlip, LiftingMix, Sequential, Squeeze
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
    # 2: a level's factored-out half is coded as two channel groups, the second conditioned on
    # the first as well (a context decoded in one more parallel pass); 1: one group.
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
    def __init__(self, channels_in: int, cfg: FlowConfig) -> None:
        super().__init__()
        c = channels_in * 4
        steps = [Squeeze()]
        if cfg.mixing not in ("flip", "lifting"):
            raise ValueError(f"mixing must be 'flip' or 'lifting', not {cfg.mixing!r}")
        for _ in range(cfg.couplings):
            steps += [ChannelFlip() if cfg.mixing == "flip" else LiftingMix(c), AdditiveCoupling(c, cfg.hidden, cfg.kernels)]
        self.transform = Sequential(steps)
        self.keep = c // 2
        c_z = c - self.keep
        if cfg.prior_groups not in (1, 2):
            raise ValueError(f"prior_groups must be 1 or 2, not {cfg.prior_groups}")
        # z = [z1, z2]: p(z1 | h) p(z2 | h, z1), or p(z | h) in one group.
        self.split = c_z // 2 if cfg.prior_groups == 2 else c_z
        k, errors = cfg.mixtures, cfg.error_context
        self.error_context = errors
        self.prior = ConditionalPrior(self.keep, self.split, cfg.prior_hidden, cfg.prior_kernels, k)
        self.context_prior = (ConditionalPrior(self.keep + with_errors(self.split, errors), c_z - self.split,
                                               cfg.prior_hidden, cfg.prior_kernels, k)
                              if cfg.prior_groups == 2 else None)
        # The checkerboard twins of the two priors. Model files store weights in ``qconvs()`` order:
        # without a checkerboard the twins are None, and they are registered after the priors, so
        # the networks of a model without them keep their places.
        def twin(c_cond: int, c_group: int) -> CheckerboardTwin | None:
            return (CheckerboardTwin(c_cond, c_group, cfg.prior_hidden, cfg.prior_kernels, k, errors)
                    if cfg.checkerboard else None)

        self.prior_twin = twin(self.keep, self.split)
        # The second group's twin sees z1's error context as well, after the black half's.
        self.context_twin = (twin(self.keep + with_errors(self.split, errors), c_z - self.split)
                             if self.context_prior is not None else None)

    def latent_groups(self, h: torch.Tensor, z: torch.Tensor) -> list[LatentGroup]:
        """The factored-out latents z given h, in encoding order (the group decoded last first)."""
        z1 = z[:, : self.split]
        wants_errors = self.error_context and self.context_prior is not None
        first, errors = code_group(self.prior, self.prior_twin, h, z1, errors=wants_errors)
        if self.context_prior is None:
            return first
        second, _ = code_group(self.context_prior, self.context_twin, torch.cat([h, z1], dim=1), z[:, self.split :], errors)
        return second + first

    def decode_factored(self, h: torch.Tensor, decode_latents: DecodeLatents) -> torch.Tensor:
        wants_errors = self.error_context and self.context_prior is not None
        z1, errors = decode_group(self.prior, self.prior_twin, h, decode_latents, errors=wants_errors)
        if self.context_prior is None:
            return z1
        z2, _ = decode_group(self.context_prior, self.context_twin, torch.cat([h, z1], dim=1), decode_latents, errors)
        return torch.cat([z1, z2], dim=1)

    def group_names(self, level: str) -> list[str]:
        """Names of ``latent_groups``' groups, in the same order."""
        groups = [f"{level} z2|z1", f"{level} z1"] if self.context_prior is not None else [f"{level} z"]
        if self.prior_twin is None:
            return groups
        return [f"{name} {colour}" for name in groups for colour in ("white", "black")]


class IntegerFlow(nn.Module):
    """Integer image (B, C, H, W), centred (pixel - 128) -> latent groups, and back."""

    def __init__(self, cfg: FlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        levels, c = [], cfg.in_channels
        for _ in range(cfg.levels):
            level = Level(c, cfg)
            levels.append(level)
            c = level.keep
        self.levels = nn.ModuleList(levels)
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

    def forward(self, x: torch.Tensor) -> list[LatentGroup]:
        groups = []
        h = x
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

    def nll_bits(self, x: torch.Tensor) -> torch.Tensor:
        """-log2 p(x) per image (training path)."""
        total = x.new_zeros(x.shape[0])
        for g in self.forward(x):
            total = total + priors.mixture_bits(g.z, g.mu, g.log_scale, g.logits).flatten(1).sum(1)
        return total

    @torch.no_grad()
    def decode(
        self,
        batch: int,
        height: int,
        width: int,
        decode_latents: DecodeLatents,
    ) -> torch.Tensor:
        """Rebuild the exact-path image from latents delivered by ``decode_latents(mu16, ls8)``,
        which is called once per latent group, top first."""
        c = self.top.mu.numel()
        scale = 2**self.cfg.levels
        like = torch.zeros(batch, c, height // scale, width // scale, dtype=torch.float64)
        h = (decode_latents(*self.top(like)) if self.top_context is None
             else self.top_context.decode(like, self.top, decode_latents))
        for level in reversed(self.levels):
            z = level.decode_factored(h, decode_latents)
            h = level.transform.inverse(torch.cat([h, z], dim=1))
        return h
