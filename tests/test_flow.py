"""The flow's optional parts keep the codec's promise: exact round trips, the same bits as trained."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import icnn_codec as ic
from icnn_codec.codec import exact_input
from icnn_codec.flow import FlowConfig, IntegerFlow, load_with_context_priors
from icnn_codec.zoo import flow_to_model


@pytest.fixture(scope="module")
def context_flow(model) -> IntegerFlow:
    flow = IntegerFlow(FlowConfig.from_dict({**model.flow.cfg.to_dict(), "prior_groups": 2}))
    load_with_context_priors(flow, model.flow)
    return flow


def test_a_context_prior_loaded_from_a_one_group_model_starts_with_the_same_code(model, context_flow, cifar_images):
    images = list(cifar_images[:16])
    with torch.no_grad():
        x = exact_input(images).float()
        assert torch.allclose(context_flow.nll_bits(x), model.flow.nll_bits(x), rtol=1e-6)  # float32 sums
    contextual = flow_to_model(context_flow, model.tables, "context")
    assert [len(s) for s in ic.compress_many(images, contextual)] == [len(s) for s in ic.compress_many(images, model)]


def test_a_context_prior_that_uses_its_context_round_trips_exactly(model, context_flow, cifar_images, photo):
    torch.manual_seed(0)
    with torch.no_grad():  # make the second group's prior depend on the first group for real
        for level in context_flow.levels:
            first = level.context_prior.net.body[0].conv.weight
            first[:, level.keep :] = torch.randn_like(first[:, level.keep :]) * 0.05
    contextual = flow_to_model(context_flow, model.tables, "context")
    images = [cifar_images[20], np.ascontiguousarray(photo[:48, :80])]
    streams = [ic.compress(im, contextual, tile=32) for im in images]
    assert all(np.array_equal(ic.decompress(s, contextual), im) for s, im in zip(streams, images))
