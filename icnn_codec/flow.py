"""The multi-scale integer discrete flow and its priors.

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
from typing import Callable, NamedTuple

import torch
from torch import nn

from . import priors
from .layers import AdditiveCoupling, ChannelFlip, Sequential, Squeeze
from .quant import HIDDEN_FRAC, QConv2d, QNet, is_exact, round_ste

INITIAL_LOG2_SCALE = 2.0  # priors start wide (s = 4) so early training is stable


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

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "FlowConfig":
        return FlowConfig(**d)

    @property
    def block(self) -> int:
        """Height and width must be multiples of this."""
        return 2 ** (self.levels + int(self.top_context or self.checkerboard))


class LatentGroup(NamedTuple):
    """Latents and their prior parameters: on the training path mu and log2 s (on their grids);
    on the exact path the grid integers mu16 = 16 mu and ls8 = 8 log2 s."""

    z: torch.Tensor
    mu: torch.Tensor
    log_scale: torch.Tensor


def prior_head(c_in: int, c_z: int) -> QConv2d:
    mu_lo, mu_hi = priors.mu_bounds_q()
    ls_lo, ls_hi = priors.ls_bounds_q()
    head = QConv2d(
        c_in, 2 * c_z, 3, HIDDEN_FRAC,
        out_frac=[priors.MU_FRAC] * c_z + [priors.LS_FRAC] * c_z,
        out_lo=[mu_lo] * c_z + [ls_lo] * c_z,
        out_hi=[mu_hi] * c_z + [ls_hi] * c_z,
        zero_init=True,
    )
    with torch.no_grad():
        head.conv.bias[c_z:] = INITIAL_LOG2_SCALE
    return head


class ConditionalPrior(nn.Module):
    """p(z | h): a discretised logistic per latent with mean and scale from a network of h."""

    def __init__(self, c_cond: int, c_z: int, hidden: int, kernels: list[int]) -> None:
        super().__init__()
        self.c_z = c_z
        self.net = QNet(c_cond, hidden, kernels, prior_head(hidden, c_z))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(h)
        return out[:, : self.c_z], out[:, self.c_z :]


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
    black latents (white ones zeroed): each white latent has decoded neighbours on four sides
    (fewer at a tile's border). Every white position sees the same pattern (known 4-neighbours,
    zeros on itself and its diagonals), so one convolution, read at the white positions, serves."""

    def __init__(self, c_cond: int, c_z: int, hidden: int, kernels: list[int]) -> None:
        super().__init__()
        self.prior = ConditionalPrior(c_cond + c_z, c_z, hidden, kernels)

    def forward(self, cond: torch.Tensor, black: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters at every position (read them at the white ones) given the black half."""
        return self.prior(torch.cat([cond, checkerboard_merge(black, torch.zeros_like(black))], dim=1))


def code_group(prior: ConditionalPrior, twin: CheckerboardTwin | None, cond: torch.Tensor, z: torch.Tensor) -> list[LatentGroup]:
    """One prior group's latents in encoding order: without a twin p(z | cond); with one, the
    white half given the black half, then the black half (decoded first)."""
    mu, ls = prior(cond)
    if twin is None:
        return [LatentGroup(z, mu, ls)]
    black = LatentGroup(*(checkerboard_half(t, 0) for t in (z, mu, ls)))
    mu_w, ls_w = twin(cond, black.z)
    white = LatentGroup(*(checkerboard_half(t, 1) for t in (z, mu_w, ls_w)))
    return [white, black]


def decode_group(prior: ConditionalPrior, twin: CheckerboardTwin | None, cond: torch.Tensor, decode_latents: Callable) -> torch.Tensor:
    """The inverse of ``code_group``: the group's latents from ``decode_latents``."""
    mu, ls = prior(cond)
    if twin is None:
        return decode_latents(mu, ls)
    black = decode_latents(checkerboard_half(mu, 0), checkerboard_half(ls, 0))
    mu_w, ls_w = twin(cond, black)
    white = decode_latents(checkerboard_half(mu_w, 1), checkerboard_half(ls_w, 1))
    return checkerboard_merge(black, white)


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
        mu16 = torch.clamp(torch.floor(self.mu.detach().double() * 2**priors.MU_FRAC + 0.5), mu_lo, mu_hi)
        ls8 = torch.clamp(torch.floor(self.log_scale.detach().double() * 2**priors.LS_FRAC + 0.5), ls_lo, ls_hi)
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
    the sub-lattices before it, so most top latents see decoded neighbours on every side.

    The top latents are a coarse image (1/8 of the resolution for 3 levels) whose neighbours
    predict each other well; the per-channel prior alone cannot use that.
    """

    def __init__(self, channels: int, hidden: int, kernels: list[int]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(ConditionalPrior(k * channels, channels, hidden, kernels) for k in range(1, SUBLATTICES))

    @staticmethod
    def split(h: torch.Tensor) -> list[torch.Tensor]:
        b, c, height, width = h.shape
        parts = Squeeze()(h).view(b, c, SUBLATTICES, height // 2, width // 2)
        return [parts[:, :, k] for k in range(SUBLATTICES)]

    @staticmethod
    def merge(parts: list[torch.Tensor]) -> torch.Tensor:
        b, c, height, width = parts[0].shape
        return Squeeze().inverse(torch.stack(parts, dim=2).view(b, c * SUBLATTICES, height, width))

    def latent_groups(self, h: torch.Tensor, top: "TopPrior") -> list[LatentGroup]:
        """The top latents in encoding order (the sub-lattice decoded last first)."""
        parts = self.split(h)
        groups = [LatentGroup(parts[0], *top(parts[0]))]
        for k, net in enumerate(self.nets, start=1):
            groups.append(LatentGroup(parts[k], *net(torch.cat(parts[:k], dim=1))))
        return groups[::-1]

    def decode(self, like: torch.Tensor, top: "TopPrior", decode_latents: Callable) -> torch.Tensor:
        parts = [decode_latents(*top(self.split(like)[0]))]
        for net in self.nets:
            parts.append(decode_latents(*net(torch.cat(parts, dim=1))))
        return self.merge(parts)

    def start_from(self, top: "TopPrior") -> None:
        """Make every sub-lattice's prior the top prior exactly (zero head weights, the top's mean
        and scale as the head's biases), so a flow grown with this context starts with its code."""
        mu16, ls8 = top.integer_parameters()
        with torch.no_grad():
            for prior in self.nets:
                prior.net.head.conv.weight.zero_()
                prior.net.head.conv.bias.copy_(torch.cat([mu16 / 2**priors.MU_FRAC, ls8 / 2**priors.LS_FRAC]))


class Level(nn.Module):
    def __init__(self, channels_in: int, cfg: FlowConfig) -> None:
        super().__init__()
        c = channels_in * 4
        steps = [Squeeze()]
        for _ in range(cfg.couplings):
            steps += [ChannelFlip(), AdditiveCoupling(c, cfg.hidden, cfg.kernels)]
        self.transform = Sequential(steps)
        self.keep = c // 2
        c_z = c - self.keep
        if cfg.prior_groups not in (1, 2):
            raise ValueError(f"prior_groups must be 1 or 2, not {cfg.prior_groups}")
        # z = [z1, z2]: p(z1 | h) p(z2 | h, z1), or p(z | h) in one group.
        self.split = c_z // 2 if cfg.prior_groups == 2 else c_z
        self.prior = ConditionalPrior(self.keep, self.split, cfg.prior_hidden, cfg.prior_kernels)
        self.context_prior = (ConditionalPrior(self.keep + self.split, c_z - self.split, cfg.prior_hidden, cfg.prior_kernels)
                              if cfg.prior_groups == 2 else None)
        # The checkerboard twins of the two priors. Model files store weights in ``qconvs()`` order:
        # without a checkerboard the twins are None, and they are registered after the priors, so
        # older models load unchanged.
        twin = (lambda c_cond, c_group: CheckerboardTwin(c_cond, c_group, cfg.prior_hidden, cfg.prior_kernels)
                if cfg.checkerboard else None)
        self.prior_twin = twin(self.keep, self.split)
        self.context_twin = twin(self.keep + self.split, c_z - self.split) if self.context_prior is not None else None

    def latent_groups(self, h: torch.Tensor, z: torch.Tensor) -> list[LatentGroup]:
        """The factored-out latents z given h, in encoding order (the group decoded last first)."""
        z1 = z[:, : self.split]
        first = code_group(self.prior, self.prior_twin, h, z1)
        if self.context_prior is None:
            return first
        return code_group(self.context_prior, self.context_twin, torch.cat([h, z1], dim=1), z[:, self.split :]) + first

    def decode_factored(self, h: torch.Tensor, decode_latents: Callable) -> torch.Tensor:
        z1 = decode_group(self.prior, self.prior_twin, h, decode_latents)
        if self.context_prior is None:
            return z1
        return torch.cat([z1, decode_group(self.context_prior, self.context_twin, torch.cat([h, z1], dim=1), decode_latents)], dim=1)

    def group_names(self, level: str) -> list[str]:
        """Names of ``latent_groups``' groups, in the same order."""
        groups = [f"{level} z2|z1", f"{level} z1"] if self.context_prior is not None else [f"{level} z"]
        if self.prior_twin is None:
            return groups
        return [f"{name} {colour}" for name in groups for colour in ("white", "black")]


def grow_from(flow: "IntegerFlow", source: "IntegerFlow") -> None:
    """Start ``flow`` from ``source``'s weights, adding the contexts that ``flow`` has and
    ``source`` lacks (two prior groups, a top context, checkerboards) and any couplings beyond
    ``source``'s, so that both give the same code at first; training can then only add what the
    contexts and the new couplings tell. Other differences are an error.

    New couplings go after a level's existing ones and start as the identity (zero heads). They
    come in pairs: each brings a channel flip, and only an even number of flips leaves the
    factored-out half where it was.
    """
    regroup = source.cfg.prior_groups == 1 and flow.cfg.prior_groups == 2
    if regroup and source.cfg.checkerboard:
        # The source's twin sees z2's black latents, which the first group's twin cannot: no exact split.
        raise ValueError("cannot start this architecture from that model: add prior groups before checkerboards")
    new_top = flow.top_context is not None and source.top_context is None
    new_twins = flow.cfg.checkerboard and not source.cfg.checkerboard
    added_couplings = flow.cfg.couplings - source.cfg.couplings
    if added_couplings % 2:
        raise ValueError("cannot start this architecture from that model: couplings can only be added in pairs")
    growable = {"prior_groups": 0, "top_context": False, "checkerboard": False, "couplings": 0}
    if added_couplings < 0 or {**flow.cfg.to_dict(), **growable} != {**source.cfg.to_dict(), **growable}:
        raise ValueError("cannot start this architecture from that model: only contexts and couplings can be added")
    state = flow.state_dict()
    regrouped = tuple(f"levels.{i}.prior." for i in range(len(source.levels)))  # split, not copied
    loaded = {k: v for k, v in source.state_dict().items() if not (regroup and k.startswith(regrouped))}
    if set(loaded) - set(state):
        raise ValueError("cannot start this architecture from that model: it has parts this one lacks")
    state.update(loaded)
    flow.load_state_dict(state)
    if regroup:
        _split_priors_into_groups(flow, source)
    if new_top:
        flow.top_context.start_from(flow.top)
    if new_twins:
        for level in flow.levels:
            for prior, twin in ((level.prior, level.prior_twin), (level.context_prior, level.context_twin)):
                if twin is not None:
                    copy_net_with_new_inputs(twin.prior.net, prior.net)


def _split_priors_into_groups(flow: "IntegerFlow", source: "IntegerFlow") -> None:
    """The first group's prior keeps the source prior's rows for z1; the context prior gets the
    source prior's network with zero weights on its new inputs (z1) and the rows for z2."""
    for level, src in zip(flow.levels, source.levels):
        c_z, s = src.prior.c_z, level.split
        rows = {"prior": list(range(s)) + list(range(c_z, c_z + s)),
                "context_prior": list(range(s, c_z)) + list(range(c_z + s, 2 * c_z))}
        for name, idx in rows.items():
            copy_net_with_new_inputs(getattr(level, name).net, src.prior.net, head_rows=idx)


def copy_net_with_new_inputs(net: QNet, source: QNet, head_rows: list[int] | None = None) -> None:
    """Make ``net`` compute what ``source`` does (its head's ``head_rows`` outputs, or all) while
    its first layer's extra inputs, which ``source`` lacks, get zero weights."""
    with torch.no_grad():
        for conv, src_conv in zip(net.qconvs(), source.qconvs()):
            w, bias = src_conv.conv.weight, src_conv.conv.bias
            if conv is net.head and head_rows is not None:
                w, bias = w[head_rows], bias[head_rows]
            conv.conv.weight.zero_()
            conv.conv.weight[:, : w.shape[1]] = w
            conv.conv.bias.copy_(bias)


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
        self.top_context = SublatticeContext(c, cfg.prior_hidden, cfg.prior_kernels) if cfg.top_context else None

    def qconvs(self) -> list[QConv2d]:
        return [m for m in self.modules() if isinstance(m, QConv2d)]

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
            total = total + priors.discretized_logistic_bits(g.z, g.mu, g.log_scale).flatten(1).sum(1)
        return total

    @torch.no_grad()
    def decode(
        self,
        batch: int,
        height: int,
        width: int,
        decode_latents: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
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
