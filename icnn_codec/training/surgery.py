"""Model surgery: start a larger architecture from a trained model with exactly its code.

Contexts (two prior groups, top sub-lattices, checkerboards) and couplings are added to a trained
flow so that the grown flow codes every image as the source did; training can then only add what
the new parts tell.
"""
from __future__ import annotations

import torch

from .. import priors
from ..contexts import SublatticeContext, TopPrior
from ..flow import IntegerFlow
from ..quant import QNet


def grow_from(flow: IntegerFlow, source: IntegerFlow) -> None:
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
        start_sublattices_from_top(flow.top_context, flow.top)
    if new_twins:
        for level in flow.levels:
            for prior, twin in ((level.prior, level.prior_twin), (level.context_prior, level.context_twin)):
                if twin is not None:
                    copy_net_with_new_inputs(twin.prior.net, prior.net)


def _split_priors_into_groups(flow: IntegerFlow, source: IntegerFlow) -> None:
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
    its first layer's extra inputs, which ``source`` lacks, get zero weights (and its activation grids)."""
    net.set_hidden_fracs(source.hidden_fracs())
    with torch.no_grad():
        for conv, src_conv in zip(net.qconvs(), source.qconvs()):
            w, bias = src_conv.conv.weight, src_conv.conv.bias
            if conv is net.head and head_rows is not None:
                w, bias = w[head_rows], bias[head_rows]
            conv.conv.weight.zero_()
            conv.conv.weight[:, : w.shape[1]] = w
            conv.conv.bias.copy_(bias)


def start_sublattices_from_top(context: SublatticeContext, top: TopPrior) -> None:
    """Make every sub-lattice's prior the top prior exactly (zero head weights, the top's mean and
    scale as the head's biases), so a flow grown with this context starts with its code."""
    mu16, ls8 = top.integer_parameters()
    with torch.no_grad():
        for prior in context.nets:
            prior.net.head.conv.weight.zero_()
            prior.net.head.conv.bias.copy_(torch.cat([mu16 / 2**priors.MU_FRAC, ls8 / 2**priors.LS_FRAC]))
