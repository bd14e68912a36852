"""The training path's logistics: proper distributions, over the integers and over the samples."""
from __future__ import annotations

import pytest
import torch

from icnn_codec.local_ar import edge_logistic_bits
from icnn_codec.priors import discretized_logistic_bits


@pytest.mark.parametrize(("mu", "log2_s"), [(3.25, 0.0), (-20.0, 3.0), (0.5, -1.0)])
def test_a_discretised_logistic_assigns_probabilities_that_sum_to_one_over_the_integers(mu, log2_s):
    z = torch.arange(-600, 601, dtype=torch.float64)  # every integer in reach
    p = torch.pow(2.0, -discretized_logistic_bits(z, torch.full_like(z, mu), torch.full_like(z, log2_s)))
    assert p.sum().item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("mu", "log2_s"), [(128.0, 2.0), (250.5, 3.0), (-10.0, 1.0), (300.0, 0.0)])
def test_the_local_ars_logistic_folds_the_tails_onto_0_and_255_and_sums_to_one_over_the_samples(mu, log2_s):
    z = torch.arange(256, dtype=torch.float64)
    p = torch.pow(2.0, -edge_logistic_bits(z, torch.full_like(z, mu), torch.full_like(z, log2_s)))
    assert p.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert p[0] >= p[1] if mu < 0 else p[255] >= p[254] if mu > 255 else True
