"""Mixture priors: a proper distribution over the integers, the one-logistic prior as their special
case, and refused by the codec until they have an exact coder."""
from __future__ import annotations

import math

import pytest
import torch

from icnn_codec.errors import ModelError
from icnn_codec.flow import FlowConfig, IntegerFlow
from icnn_codec.priors import LogisticTables, discretized_logistic_bits, mixture_bits
from icnn_codec.training.ablation import mac_per_pixel, variant_flow, VARIANTS
from icnn_codec.training.surgery import grow_from
from icnn_codec.zoo import flow_to_model

SMALL = dict(levels=2, couplings=2, hidden=8, prior_hidden=8)


def test_a_mixture_assigns_probabilities_that_sum_to_one_over_the_integers():
    z = torch.arange(-400, 401, dtype=torch.float32).view(1, 1, -1, 1)  # one channel, every integer in reach
    mu = torch.tensor([3.25, -20.0, 0.5]).view(1, 3, 1, 1).expand(1, 3, z.shape[2], 1)
    ls = torch.tensor([0.0, 3.0, -1.0]).view(1, 3, 1, 1).expand_as(mu)
    logits = torch.tensor([1.0, -2.0, 0.0]).view(1, 3, 1, 1).expand_as(mu)
    p = torch.pow(2.0, -mixture_bits(z, mu, ls, logits).double())
    assert p.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_a_mixture_of_identical_components_is_that_one_logistic():
    z = torch.randint(-50, 50, (2, 4, 5, 5)).float()
    mu, ls = torch.randn(2, 4, 5, 5) * 3, torch.rand(2, 4, 5, 5) * 4 - 1
    logits = torch.randn(2, 8, 5, 5)
    mixed = mixture_bits(z, mu.repeat(1, 2, 1, 1), ls.repeat(1, 2, 1, 1), logits)
    assert torch.allclose(mixed, discretized_logistic_bits(z, mu, ls), atol=1e-4)
    assert torch.equal(mixture_bits(z, mu, ls, None), discretized_logistic_bits(z, mu, ls))


def test_a_flow_grown_with_mixtures_starts_close_to_its_source_but_cannot_be_exported_yet():
    torch.manual_seed(0)
    source = IntegerFlow(FlowConfig(**SMALL))
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    flow = IntegerFlow(FlowConfig(**SMALL, mixtures=3))
    grow_from(flow, source)
    x = torch.randint(-128, 128, (2, 3, 16, 16)).float()
    with torch.no_grad():
        grown, plain = flow.nll_bits(x), source.nll_bits(x)
    # The source's logistic is component 0 at weight 1 / (1 + 2 * 2**-6): no latent costs more than -log2 of that
    # beyond its source code (and the wider component may well cost less).
    assert torch.all(grown <= plain + x[0].numel() * math.log2(1 + 2 * 2**-6) + 1e-2)
    assert not torch.equal(grown, plain)
    with pytest.raises(ModelError, match="no exact coder"):
        flow_to_model(flow, LogisticTables.build(), "mixture")


def test_an_ablation_variant_changes_only_what_it_names():
    start = FlowConfig(**SMALL)
    assert variant_flow(VARIANTS["couplings+2"], start).couplings == 4
    assert variant_flow(VARIANTS["mixture3"], start) == FlowConfig(**SMALL, mixtures=3)
    assert variant_flow(VARIANTS["baseline"], start) == start


def test_mac_per_pixel_counts_every_convolution_and_lifting_step():
    cfg = FlowConfig(levels=1, couplings=1, hidden=4, kernels=[1], prior_hidden=4, prior_kernels=[1])
    flow = IntegerFlow(cfg)
    # After the squeeze, on a quarter of the pixels: the coupling 6 -> 4 (1x1) -> 6 (3x3, split: twice);
    # the prior 6 -> 4 (1x1) -> 12 (3x3, split).
    per_position = 6 * 4 + 4 * 6 * 9 * 2 + 6 * 4 + 4 * 12 * 9 * 2
    assert mac_per_pixel(flow, side=16) == round(per_position / 4)
    lifting = IntegerFlow(FlowConfig(**{**cfg.to_dict(), "mixing": "lifting"}))
    assert mac_per_pixel(lifting, side=16) == round((per_position + 12 * 11) / 4)
