"""The flow's optional contexts and added couplings keep the codec's promise: they start as the
model they grow from, and once they are trained they still round-trip exactly."""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

import icnn_codec as ic
from icnn_codec import payload
from icnn_codec.contexts import QUADRANTS, checkerboard_half, checkerboard_merge, quadrant, quadrant_merge
from icnn_codec.flow import FlowConfig, IntegerFlow, channel_groups
from icnn_codec.layers import (SCALE_INDEX_LIMIT, SCALE_STEPS, SHEAR_FRAC, AdditiveCoupling, ColourLifting,
                               LiftingMix, VolumePreservingCoupling)
from icnn_codec.planes import exact_input
from icnn_codec.priors import LogisticTables
from icnn_codec.quant import QConv2d
from icnn_codec.training.surgery import grow_from, warm_start
from icnn_codec.zoo import flow_to_model

CONTEXTS = {"two prior groups": {"prior_groups": 2}, "top sub-lattices": {"top_context": True},
            "checkerboards": {"checkerboard": True}, "checkerboards in two groups": {"prior_groups": 2, "checkerboard": True},
            "two more couplings per level": {"couplings": 6},
            "error contexts": {"prior_groups": 2, "checkerboard": True, "top_context": True, "error_context": True},
            "learned lifting mixing": {"mixing": "lifting"},
            "volume-preserving couplings": {"coupling": "volume-preserving"},
            "quadrant passes at level 1": {"prior_groups": 2, "checkerboard": True, "error_context": True,
                                           "quadrant_levels": 1}}


def grown_flow(source: IntegerFlow, **changes) -> IntegerFlow:
    flow = IntegerFlow(FlowConfig.from_dict({**source.cfg.to_dict(), **changes}))
    grow_from(flow, source)
    return flow


@pytest.fixture(scope="module")
def plain() -> ic.Model:
    """A model without contexts (one prior group, no top context, no checkerboards), small, with
    random weights in every layer (zero-initialised heads would make every coupling the identity)."""
    with torch.random.fork_rng():
        torch.manual_seed(4044)
        flow = IntegerFlow(FlowConfig(levels=2, couplings=2, hidden=16, prior_hidden=16, prior_kernels=[3, 1, 3]))
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    model = flow_to_model(flow, LogisticTables.build(), "plain")
    assert model.flow.cfg.prior_groups == 1 and not model.flow.cfg.top_context and not model.flow.cfg.checkerboard
    return model


@pytest.fixture(scope="module", params=list(CONTEXTS))
def grown(request, plain) -> IntegerFlow:
    """The context-free model grown with some contexts or couplings."""
    return grown_flow(plain.flow, **CONTEXTS[request.param])


def couplings(flow: IntegerFlow) -> list[list[AdditiveCoupling | VolumePreservingCoupling]]:
    """Each level's couplings, in order."""
    return [[t for t in level.transform.transforms if isinstance(t, (AdditiveCoupling, VolumePreservingCoupling))]
            for level in flow.levels]


def grown_networks(flow: IntegerFlow, source: IntegerFlow) -> list[torch.nn.Module]:
    """What ``flow`` has that ``source`` lacks: context priors and the couplings beyond source's."""
    nets = [net for level in flow.levels for net in (level.context_prior, level.prior_twin, level.context_twin,
                                                     level.quadrants) if net is not None]
    old = 0 if flow.cfg.coupling != source.cfg.coupling else source.cfg.couplings  # scales: every coupling is new
    nets += [c for level in couplings(flow) for c in level[old:]]
    nets += flow.lifting_mixes() if source.cfg.mixing == "flip" else []
    return nets + ([flow.top_context] if flow.top_context is not None else [])


def test_a_flow_grown_with_a_context_starts_with_the_same_code(plain, grown, cifar_images, no_scale_offsets):
    images = list(cifar_images[:16])
    with torch.no_grad():
        x = exact_input(images).float()
        assert torch.allclose(grown.nll_bits(x), plain.flow.nll_bits(x), rtol=1e-6)  # float32 sums
    contextual = flow_to_model(grown, plain.tables, "context")
    # The same probabilities for every latent; split into more groups, the ANS words may round differently.
    for grown_stream, plain_stream in zip(ic.compress_many(images, model=contextual), ic.compress_many(images, model=plain)):
        assert abs(len(grown_stream) - len(plain_stream)) <= 4


def test_a_context_in_use_round_trips_exactly(plain, grown, cifar_images, photo):
    flow = copy.deepcopy(grown)
    torch.manual_seed(0)
    with torch.no_grad():  # make the new priors depend on their context, and the new couplings move latents, for real
        for net in grown_networks(flow, plain.flow):
            for conv in (m for m in net.modules() if isinstance(m, QConv2d)):
                conv.conv.weight.add_(torch.randn_like(conv.conv.weight) * 0.05)
            for mix in (m for m in net.modules() if isinstance(m, LiftingMix)):
                mix.upper.add_(torch.randn_like(mix.upper) * 0.3)
                mix.lower.add_(torch.randn_like(mix.lower) * 0.3)
    contextual = flow_to_model(flow, plain.tables, "context")
    images = [cifar_images[20], np.ascontiguousarray(photo[:45, :77])]  # padded to the model's block
    with torch.no_grad():
        x = exact_input(images[:1]).float()
        assert not torch.allclose(flow.nll_bits(x), plain.flow.nll_bits(x), rtol=1e-5)  # the context changed the code
    streams = [ic.compress(im, model=contextual, tile=32) for im in images]
    assert all(np.array_equal(ic.decompress(s, model=contextual), im) for s, im in zip(streams, images))


def test_a_volume_preserving_coupling_scales_channel_pairs_by_k_and_1_over_k_and_undoes_exactly():
    torch.manual_seed(1)
    layer = VolumePreservingCoupling(12, 16, [3, 1])
    with torch.no_grad():
        layer.net.head.conv.bias[6:].copy_(torch.tensor([SCALE_INDEX_LIMIT, -SCALE_STEPS, 3.0]))  # K = 4, 1/2, 2**(3/16)
    x = torch.randint(-200, 200, (2, 12, 8, 8)).double()
    for conv in layer.net.qconvs():
        conv.freeze()
    y = layer(x)
    assert torch.equal(y[:, :6], x[:, :6])
    for pair, k in enumerate((4.0, 0.5, 2 ** (3 / 16))):  # (u, v) -> about (K u, v / K), up to the shears' rounding
        u, v = x[:, 6 + pair], x[:, 9 + pair]
        assert (y[:, 6 + pair] - k * u).abs().max() <= 1 + 12 * k
        assert (y[:, 9 + pair] - v / k).abs().max() <= 2
    assert torch.equal(layer.inverse(y), x)
    with torch.no_grad():  # random weights: scales and translations vary from place to place
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    for conv in layer.net.qconvs():
        conv.freeze()
    y = layer(x)
    assert not torch.equal(y, x) and torch.equal(layer.inverse(y), x)
    with torch.no_grad():  # the training path computes what the exact path does
        assert torch.equal(layer(x.float()).double(), y)


def test_the_colour_stage_starts_as_ycocg_r_and_a_flow_with_it_round_trips(cifar_images, photo):
    x = torch.randint(-128, 128, (2, 3, 5, 7)).double()
    r, g, b = x.unbind(1)
    co = r - b
    t = b + torch.round(co / 2)
    cg = g - t
    expected = torch.stack([co, cg, t + torch.round(cg / 2)], 1)  # YCoCg-R, rounding half to even
    stage = ColourLifting()
    assert torch.equal(stage(x), expected) and torch.equal(stage.inverse(expected), x)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        flow = IntegerFlow(FlowConfig(levels=2, couplings=2, hidden=16, prior_hidden=16, colour_stage=True))
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    model = flow_to_model(flow, LogisticTables.build(), "colour")
    assert not torch.equal(model.flow.colour.integer_coefficients(), ColourLifting().integer_coefficients())
    images = [cifar_images[3], np.ascontiguousarray(photo[:37, :50])]
    assert all(np.array_equal(ic.decompress(ic.compress(im, model=model), model=model), im) for im in images)


def test_the_shear_table_is_the_identity_at_scale_index_0_and_monotone_in_k():
    from icnn_codec.layers import SHEAR_TABLE
    one = 2**SHEAR_FRAC
    assert SHEAR_TABLE[SCALE_INDEX_LIMIT].tolist() == [0, -one, 0]  # K = 1: u += 0, v -= u, u += 0
    k_minus_1 = SHEAR_TABLE[:, 0]
    assert (k_minus_1.diff() > 0).all() and k_minus_1[-1] == 3 * one and k_minus_1[0] == -one * 3 / 4


def test_channel_groups_halve_so_that_four_groups_split_two():
    assert channel_groups(6, 1) == [6]
    assert channel_groups(6, 2) == [3, 3]
    assert channel_groups(6, 4) == [2, 1, 2, 1]
    assert channel_groups(12, 4) == [3, 3, 3, 3]
    for bad in (3, 8):
        with pytest.raises(ValueError, match="prior_groups must be 1, 2 or 4"):
            channel_groups(12, bad)


def test_four_groups_grown_from_two_start_with_the_same_code(plain, cifar_images):
    two = grown_flow(plain.flow, prior_groups=2)
    four = grown_flow(two, prior_groups=4)
    assert [level.group_sizes for level in four.levels] == [[2, 1, 2, 1], [3, 3, 3, 3]]
    with torch.no_grad():
        x = exact_input(list(cifar_images[:16])).float()
        assert torch.allclose(four.nll_bits(x), two.nll_bits(x), rtol=1e-6)


def test_four_groups_grown_from_two_with_checkerboards_start_near_its_code_and_round_trip(plain, cifar_images, photo):
    two = grown_flow(plain.flow, prior_groups=2, checkerboard=True)
    four = grown_flow(two, prior_groups=4, error_context=True)  # a half's twin loses the other half's black latents
    with torch.no_grad():
        x = exact_input(list(cifar_images[:16])).float()
        assert torch.allclose(four.nll_bits(x), two.nll_bits(x), rtol=0.02)
        for level in four.levels:  # make every group's prior depend on its context, for real
            for prior, twin in level.group_priors()[1:]:
                for conv in (m for net in (prior, twin) for m in net.modules() if isinstance(m, QConv2d)):
                    conv.conv.weight.add_(torch.randn_like(conv.conv.weight) * 0.05)
    model = flow_to_model(four, plain.tables, "four groups")
    assert len(four.group_names()) == len(set(four.group_names())) == 2 * 2 * 4 + 1
    images = [cifar_images[21], np.ascontiguousarray(photo[:45, :77])]
    streams = [ic.compress(im, model=model, tile=32) for im in images]
    assert all(np.array_equal(ic.decompress(s, model=model), im) for s, im in zip(streams, images))


def test_a_model_cannot_be_grown_into_one_with_fewer_parts_or_other_layers(plain):
    richer = grown_flow(plain.flow, prior_groups=2, top_context=True)
    with pytest.raises(ValueError, match="parts this one lacks"):
        grown_flow(richer, top_context=False)
    for other in ({"couplings": plain.flow.cfg.couplings - 2}, {"prior_kernels": [3, 1]}, {"hidden": 96}):
        with pytest.raises(ValueError, match="only contexts, couplings, mixtures, learned mixing and coupling scales can be added"):
            grown_flow(plain.flow, **other)
    with pytest.raises(ValueError, match="in pairs"):  # one more channel flip would move the factored-out half
        grown_flow(plain.flow, couplings=plain.flow.cfg.couplings + 1)
    with pytest.raises(ValueError, match="prior groups before checkerboards"):  # no exact split of a twin exists
        grown_flow(grown_flow(plain.flow, checkerboard=True), prior_groups=2)


def test_a_colour_stage_cannot_be_grown_but_starts_warm_with_every_network_copied(plain):
    with pytest.raises(ValueError, match="only contexts"):  # it changes every latent: no same-code start
        grown_flow(plain.flow, colour_stage=True)
    flow = IntegerFlow(FlowConfig.from_dict({**plain.flow.cfg.to_dict(), "colour_stage": True}))
    assert warm_start(flow, plain.flow) == ["colour.coefficients"]
    source = plain.flow.state_dict()
    assert all(torch.equal(v, source[k]) for k, v in flow.state_dict().items() if not k.startswith("colour."))
    assert torch.equal(flow.colour.integer_coefficients(), ColourLifting().integer_coefficients())


@pytest.fixture(scope="module")
def colour_choice_flow() -> IntegerFlow:
    with torch.random.fork_rng():
        torch.manual_seed(6)
        flow = IntegerFlow(FlowConfig(levels=2, couplings=2, hidden=16, prior_hidden=16, prior_groups=2,
                                      top_context=True, checkerboard=True, error_context=True, colour_stage=True,
                                      colour_choice=True))
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    return flow


def test_a_colour_choice_counts_each_image_in_its_shorter_mode_and_one_bit(colour_choice_flow, cifar_images):
    x = exact_input(cifar_images[:6]).float()
    every = torch.ones(6, dtype=torch.bool)
    with torch.no_grad():
        coloured, unmixed = colour_choice_flow.nll_bits(x, ~every), colour_choice_flow.nll_bits(x, every)
        chosen = colour_choice_flow.nll_bits(x)
    assert torch.equal(chosen, torch.minimum(coloured, unmixed) + 1)
    assert not torch.equal(coloured, unmixed)
    trained = colour_choice_flow.nll_bits(x)  # with gradients: the chosen mode's, recomputed
    assert torch.allclose(trained, chosen)
    trained.sum().backward()
    assert colour_choice_flow.colour.coefficients.grad is not None


def test_in_its_own_colours_a_colour_stage_model_codes_as_its_networks_alone_would(colour_choice_flow, cifar_images):
    no_stage = IntegerFlow(replace(colour_choice_flow.cfg, colour_stage=False, colour_choice=False))
    no_stage.load_state_dict({k: v for k, v in colour_choice_flow.state_dict().items() if not k.startswith("colour.")})
    x = exact_input(cifar_images[:2]).float()
    with torch.no_grad():
        assert torch.equal(colour_choice_flow.nll_bits(x, torch.ones(2, dtype=torch.bool)), no_stage.nll_bits(x))


def model_coded(model: ic.Model, tiles: list[np.ndarray]) -> list[payload.CodedTile]:
    """The model's code for every tile (a random-weight model would lose some to the classic codings)."""
    return [payload.CodedTile(payload.TileKind.MODEL, words.astype("<u4").tobytes())
            for words in payload._model_words(model, tiles, batch_size=64)]


def colour_modes(coded: list[payload.CodedTile]) -> list[int]:
    """Each tile's colour mode: the first symbol its decoder pops."""
    return [int(payload._coder(c.payload).decode(payload._colour_mode, 1)[0]) for c in coded]


def test_a_colour_stage_models_encoder_codes_each_plane_in_its_shorter_mode_and_it_round_trips(
        colour_choice_flow, cifar_images):
    model = flow_to_model(colour_choice_flow, LogisticTables.build(), "choice")
    grey = np.repeat(cifar_images[:3].mean(axis=3, keepdims=True).astype(np.uint8), 3, axis=3)  # one colour: mixing helps
    unrelated = np.stack([cifar_images[3:6, ..., 0], cifar_images[6:9, ..., 1], cifar_images[9:12, ..., 2]], axis=3)
    tiles = [*grey, *unrelated, *cifar_images[12:16]]
    coded = model_coded(model, tiles)
    modes = colour_modes(coded)
    assert modes[:3] == [0, 0, 0] and 1 in modes[3:6]  # the colour stage for grey, own colours for unrelated channels
    decoded = payload.decode_tiles(model, payload.TileShape(32, 32, "RGB"), coded)
    assert all(np.array_equal(d, t) for d, t in zip(decoded, tiles))
    # A large plane is judged on a central probe; its mode must still round-trip.
    large = [np.ascontiguousarray(np.tile(t, (6, 6, 1))) for t in (grey[0], unrelated[0])]
    coded = model_coded(model, large)
    assert colour_modes(coded) == modes[:1] + modes[3:4]
    one_by_one = [payload._model_words(model, [t], batch_size=1)[0].astype("<u4").tobytes() for t in large]
    assert one_by_one == [c.payload for c in coded]  # the probes share a batch: no byte depends on it
    decoded = payload.decode_tiles(model, payload.TileShape(192, 192, "RGB"), coded)
    assert all(np.array_equal(d, t) for d, t in zip(decoded, large))


def test_a_colour_choice_needs_a_colour_stage_and_can_be_added_to_a_trained_one(colour_choice_flow):
    with pytest.raises(ValueError, match="needs a colour stage"):
        IntegerFlow(FlowConfig(colour_choice=True))
    source = IntegerFlow(replace(colour_choice_flow.cfg, colour_choice=False))
    source.load_state_dict(colour_choice_flow.state_dict())
    grown = grown_flow(source, colour_choice=True)
    assert grown.cfg.colour_choice and all(torch.equal(v, source.state_dict()[k]) for k, v in grown.state_dict().items())


def test_every_latent_group_has_its_own_name_in_coding_order(plain, grown, cifar_images):
    x = exact_input(list(cifar_images[:1])).float()
    for flow in (plain.flow, grown):
        names = flow.group_names()
        with torch.no_grad():
            assert len(names) == len(set(names)) == len(flow(x))
        assert names[-1] in ("top", "top sub-lattice 0")  # decoded first
        for i, name in enumerate(names):
            if name.endswith(" white"):
                assert names[i + 1] == name.replace("white", "black")  # decoded just before its white half


def test_a_checkerboard_splits_positions_by_the_parity_of_row_plus_column_and_merges_back():
    t = torch.arange(2 * 3 * 4 * 6, dtype=torch.float64).view(2, 3, 4, 6)
    black, white = checkerboard_half(t, 0), checkerboard_half(t, 1)
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(6), indexing="ij")
    even = (rows + cols) % 2 == 0
    assert black.shape == white.shape == (2, 3, 4, 3)
    assert torch.equal(black.flatten(2), t[:, :, even].view(2, 3, -1))  # raster order within each colour
    assert torch.equal(white.flatten(2), t[:, :, ~even].view(2, 3, -1))
    assert torch.equal(checkerboard_merge(black, white), t)


def test_quadrants_split_each_checkerboard_half_in_two_black_first_and_merge_back():
    t = torch.arange(2 * 3 * 4 * 6, dtype=torch.float64).view(2, 3, 4, 6)
    parts = [quadrant(t, k) for k in range(4)]
    assert [p.shape for p in parts] == [(2, 3, 2, 3)] * 4
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(6), indexing="ij")
    for k, colour in enumerate((0, 0, 1, 1)):  # (0, 0) and (1, 1) are black, (0, 1) and (1, 0) white
        r, c = QUADRANTS[k]
        at = (rows % 2 == r) & (cols % 2 == c)
        assert torch.equal(parts[k].flatten(2), t[:, :, at].view(2, 3, -1))
        assert (((rows + cols) % 2 == colour) | ~at).all()
    assert torch.equal(quadrant_merge(parts), t)
    assert torch.equal(quadrant_merge([None, parts[1], None, None]), torch.where((rows % 2 == 1) & (cols % 2 == 1), t, 0))


def test_checkerboards_double_the_padding_block_as_the_top_context_does():
    plain = FlowConfig(levels=2)
    assert plain.block == 4
    assert FlowConfig(levels=2, checkerboard=True).block == FlowConfig(levels=2, top_context=True).block == 8


def test_the_training_path_rounds_onto_the_output_grid_and_passes_gradients_only_where_it_does_not_clamp():
    torch.manual_seed(0)
    conv = QConv2d(4, 3, 3, in_frac=6, out_frac=[2, 4, 6], out_lo=[-8.0, 0.0, -64.0], out_hi=[8.0, 64.0, 64.0])
    a = torch.randn(2, 4, 5, 5, requires_grad=True)
    out = conv(a)
    scale = torch.tensor([4.0, 16.0, 64.0]).view(1, 3, 1, 1)
    lo, hi = torch.tensor([-8.0, 0.0, -64.0]).view(1, 3, 1, 1), torch.tensor([8.0, 64.0, 64.0]).view(1, 3, 1, 1)
    # What it stands for: the unfused composition of rounding (straight through) and clamping.
    a_ref = a.detach().clone().requires_grad_(True)
    conv_out = torch.nn.functional.conv2d(a_ref, *_quantised_weights(conv), padding=1)
    reference = torch.clamp(conv_out * scale + (torch.round(conv_out * scale) - conv_out * scale).detach(), lo, hi) / scale

    assert torch.equal(out, reference)
    assert torch.all(out * scale == torch.round(out * scale))  # on the grid
    clamped = (out * scale == lo) | (out * scale == hi)
    assert clamped.any() and (~clamped).any()
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    (reference * weights).sum().backward()
    assert torch.equal(a.grad, a_ref.grad)


def _quantised_weights(conv: QConv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The float weights and bias the training path convolves with (the exact path's integers)."""
    w_int, e, b_int = conv.integer_parameters()
    return (w_int / torch.pow(2.0, e.double()).view(-1, 1, 1, 1)).float(), (b_int / torch.pow(2.0, (e + conv.in_frac).double())).float()


def test_a_converted_models_activation_grids_survive_checkpoints_and_growth(flow_model, cifar_images):
    """The shipped flow's hidden layers each have their own grid: a state_dict (checkpoints, EMA) and
    surgery must carry it, or the biases would stand for other values."""
    source = flow_model.flow
    fracs = [net.hidden_fracs() for net in source.qnets()]
    assert len({f for fs in fracs for f in fs}) > 1  # calibrated, not one default
    copy_ = IntegerFlow(source.cfg)
    copy_.load_state_dict(source.state_dict())
    assert [net.hidden_fracs() for net in copy_.qnets()] == fracs
    grown = grown_flow(source, couplings=source.cfg.couplings + 2)
    x = exact_input(list(cifar_images[:2])).float()
    with torch.no_grad():
        assert torch.equal(grown.nll_bits(x), source.nll_bits(x))


def test_growing_reports_the_new_elements_those_the_source_had_no_weights_for(plain):
    flow = IntegerFlow(FlowConfig.from_dict({**plain.flow.cfg.to_dict(), "checkerboard": True, "error_context": True}))
    new = grow_from(flow, plain.flow)
    for level in flow.levels:
        first = level.prior_twin.prior.net.body[0].conv.weight
        assert not new[first][:, : level.keep].any()  # the prior's own inputs: copied
        assert new[first][:, level.keep :].all()  # the black half's latents, residuals and scales: new
        assert not any(new[p].any() for p in level.prior.parameters())
        assert not any(new[p].any() for p in level.transform.parameters())


def test_a_training_step_moves_new_elements_as_many_times_further_as_their_boost_says(plain, cifar_images):
    from icnn_codec.training.data import ImageSet
    from icnn_codec.training.loop import NegLogLikelihood, Processes, TrainState, train_step
    from icnn_codec.training.runs import TrainConfig

    images = ImageSet(cifar_images[:8], [str(i) for i in range(8)])
    cfg = TrainConfig(batch_size=4, crop=16, lr=1e-3, warmup=1)
    moves = []
    for factor in (1.0, 10.0):
        flow = grown_flow(plain.flow, checkerboard=True, error_context=True)
        first = flow.levels[0].prior_twin.prior.net.body[0].conv.weight
        mask = torch.zeros_like(first)
        mask[:, -4:] = 1
        state = TrainState(flow, copy.deepcopy(flow), torch.optim.Adam(flow.parameters(), lr=cfg.lr),
                           boost={first: 1 + mask * (factor - 1)})
        before = first.detach().clone()
        train_step(state, NegLogLikelihood(flow), images, cfg, Processes(), "cpu")
        moves.append(first.detach() - before)
    plain_move, boosted_move = moves
    assert plain_move[:, -4:].abs().sum() > 0
    assert torch.allclose(boosted_move[:, -4:], 10 * plain_move[:, -4:], rtol=1e-4, atol=1e-9)
    assert torch.allclose(boosted_move[:, :-4], plain_move[:, :-4], rtol=1e-4, atol=1e-9)
