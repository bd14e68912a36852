"""Mixture priors: a proper distribution over the integers, the one-logistic prior as their special
case."""
from __future__ import annotations

import pytest
import torch

from icnn_codec.priors import discretized_logistic_bits, mixture_bits


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
