"""Model surgery: start a larger architecture from a trained model with exactly its code.

Contexts (two prior groups, top sub-lattices, checkerboards) and couplings are added to a trained
flow so that the grown flow codes every image as the source did; training can then only add what
the new parts tell.
"""
from __future__ import annotations

import torch

from .. import priors
from ..contexts import ConditionalPrior, SublatticeContext, TopPrior
from ..flow import IntegerFlow
from ..quant import QNet


class NewElements:
    """Which elements of a grown flow's parameters are new (not carried over from the source): a
    training step may move them faster (:func:`icnn_codec.training.loop.train_step`)."""

    def __init__(self, flow: IntegerFlow) -> None:
        self.masks = {p: torch.ones_like(p, dtype=torch.bool) for p in flow.parameters()}

    def copied(self, p: torch.Tensor, index=...) -> None:
        if p in self.masks:
            self.masks[p][index] = False


def grow_from(flow: IntegerFlow, source: IntegerFlow) -> dict[torch.nn.Parameter, torch.Tensor]:
    """Start ``flow`` from ``source``'s weights, adding the contexts that ``flow`` has and
    ``source`` lacks (two prior groups, a top context, checkerboards, error contexts), any couplings
    beyond ``source``'s, learned lifting mixing in place of flips, and mixture priors, so that both
    give the same code at first (mixtures: nearly the same); training can then only add what the new
    parts tell. Other differences are an error.

    New couplings go after a level's existing ones and start as the identity (zero heads). They
    come in pairs: each brings a channel flip, and only an even number of flips leaves the
    factored-out half where it was.

    Returns each parameter's mask of new elements (zero-initialised inputs and outputs, new layers).
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
    growable = {"prior_groups": 0, "top_context": False, "checkerboard": False, "couplings": 0, "mixtures": 1,
                "error_context": False, "mixing": "flip"}
    if added_couplings < 0 or {**flow.cfg.to_dict(), **growable} != {**source.cfg.to_dict(), **growable} \
            or (source.cfg.mixtures != flow.cfg.mixtures and source.cfg.mixtures != 1) \
            or (source.cfg.error_context and not flow.cfg.error_context) \
            or (source.cfg.mixing != flow.cfg.mixing and source.cfg.mixing != "flip"):
        raise ValueError("cannot start this architecture from that model: only contexts, couplings, mixtures and "
                         "learned mixing can be added")
    state = flow.state_dict()
    regrouped = tuple(f"levels.{i}.prior." for i in range(len(source.levels)))  # split, not copied
    loaded = {k: v for k, v in source.state_dict().items() if not (regroup and k.startswith(regrouped))}
    if set(loaded) - set(state):
        raise ValueError("cannot start this architecture from that model: it has parts this one lacks")
    # Networks whose shapes changed (more inputs, mixture heads) are copied below, net by net.
    same = {k: v for k, v in loaded.items() if v.shape == state[k].shape}
    state.update(same)
    flow.load_state_dict(state)
    new = NewElements(flow)
    params = dict(flow.named_parameters())
    for k in same:
        if k in params:
            new.copied(params[k])
    reshaped = {k.rsplit(".net.", 1)[0] for k, v in loaded.items() if v.shape != state[k].shape}
    modules, source_modules = dict(flow.named_modules()), dict(source.named_modules())
    for name in sorted(reshaped):
        copy_prior_with_new_parts(modules[name], source_modules[name], new)
    if regroup:
        _split_priors_into_groups(flow, source, new)
    if new_top:
        start_sublattices_from_top(flow.top_context, flow.top, new)
    if new_twins:
        for level in flow.levels:
            for prior, twin in ((level.prior, level.prior_twin), (level.context_prior, level.context_twin)):
                if twin is not None:
                    copy_net_with_new_inputs(twin.prior.net, prior.net, new=new)
    return new.masks


MIXTURE_START = ((0.0, 0.0), (1.0, -6.0), (-0.5, -6.0))  # (log2-scale shift, logit) of the first components


def copy_prior_with_new_parts(prior: ConditionalPrior, source: ConditionalPrior, new: NewElements | None = None) -> None:
    """``prior`` from ``source``'s network, with zero weights on inputs ``source`` lacks; a one-logistic
    source's head becomes component 0 of a mixture whose other components are the same logistic, wider
    or narrower, at a small weight (so the code barely changes, and the components are not symmetric)."""
    if source.mixtures == prior.mixtures:
        copy_net_with_new_inputs(prior.net, source.net, new=new)
        return
    c, k = prior.c_z, prior.mixtures
    rows, shift, logit = [], torch.zeros(3 * k * c), torch.zeros(3 * k * c)
    for m in range(k):
        ls_shift, w = MIXTURE_START[m] if m < len(MIXTURE_START) else (0.5 * m, -6.0)
        rows += list(range(c))  # every component's mean: the source's
        shift[k * c + m * c : k * c + (m + 1) * c] = ls_shift
        logit[2 * k * c + m * c : 2 * k * c + (m + 1) * c] = w
    rows += [c + i for m in range(k) for i in range(c)]  # scales
    copy_net_with_new_inputs(prior.net, source.net, head_rows=rows, new=new)
    with torch.no_grad():
        prior.net.head.conv.bias.add_(shift + logit)


def _split_priors_into_groups(flow: IntegerFlow, source: IntegerFlow, new: NewElements) -> None:
    """The first group's prior keeps the source prior's rows for z1; the context prior gets the
    source prior's network with zero weights on its new inputs (z1) and the rows for z2."""
    for level, src in zip(flow.levels, source.levels):
        c_z, s = src.prior.c_z, level.split
        rows = {"prior": list(range(s)) + list(range(c_z, c_z + s)),
                "context_prior": list(range(s, c_z)) + list(range(c_z + s, 2 * c_z))}
        for name, idx in rows.items():
            copy_net_with_new_inputs(getattr(level, name).net, src.prior.net, head_rows=idx, new=new)


def copy_net_with_new_inputs(net: QNet, source: QNet, head_rows: list[int] | None = None,
                             new: NewElements | None = None) -> None:
    """Make ``net`` compute what ``source`` does (its head's ``head_rows`` outputs, or all, as its first
    outputs; any further ones start at zero) while its first layer's extra inputs, which ``source``
    lacks, get zero weights (and its activation grids)."""
    net.set_hidden_fracs(source.hidden_fracs())
    with torch.no_grad():
        for conv, src_conv in zip(net.qconvs(), source.qconvs()):
            w, bias = src_conv.conv.weight, src_conv.conv.bias
            if conv is net.head and head_rows is not None:
                w, bias = w[head_rows], bias[head_rows]
            conv.conv.weight.zero_()
            conv.conv.bias.zero_()
            conv.conv.weight[: w.shape[0], : w.shape[1]] = w
            conv.conv.bias[: bias.shape[0]] = bias
            if new is not None:
                new.copied(conv.conv.weight, (slice(0, w.shape[0]), slice(0, w.shape[1])))
                new.copied(conv.conv.bias, slice(0, bias.shape[0]))


def start_sublattices_from_top(context: SublatticeContext, top: TopPrior, new: NewElements | None = None) -> None:
    """Make every sub-lattice's prior the top prior exactly (zero head weights, the top's mean and
    scale as the head's biases), so a flow grown with this context starts with its code."""
    mu16, ls8 = top.integer_parameters()
    with torch.no_grad():
        for prior in context.nets:
            prior.net.head.conv.weight.zero_()
            prior.net.head.conv.bias.copy_(torch.cat([mu16 / 2**priors.MU_FRAC, ls8 / 2**priors.LS_FRAC]))
            if new is not None:
                new.copied(prior.net.head.conv.bias)
