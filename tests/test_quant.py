"""The exact 8-bit arithmetic: every backend computes the integers of the int64 reference, the training
path computes what the decoder computes, the bounds are kept by construction or refused, and a backend
is used only after the canary has found it exact."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from icnn_codec import backends
from icnn_codec.backends import EXACT_BOUND, BACKENDS, IntConv, reference_output
from icnn_codec.errors import ModelError
from icnn_codec.quant import INPUT_FRAC, QConv2d, _OntoGrid

AVAILABLE = [b for b in BACKENDS.values() if b.available()]


def random_layer(kind: str, seed: int = 0) -> QConv2d:
    gen = torch.Generator().manual_seed(seed)
    if kind == "first":
        layer = QConv2d(12, 32, 3, INPUT_FRAC, 5, 0.0, 255.0, signed_input=True)
    elif kind == "hidden":
        layer = QConv2d(32, 32, 1, 5, 4, 0.0, 255.0)
    else:
        layer = QConv2d(32, 8, 3, 4, [4] * 4 + [3] * 4, -(2.0**15), 2.0**15, split=kind == "split head")
    with torch.no_grad():
        layer.conv.weight.copy_(torch.randn(layer.conv.weight.shape, generator=gen) * 0.3)
        layer.conv.bias.copy_(torch.randn(layer.conv.bias.shape, generator=gen))
    layer.freeze()
    return layer


def random_input(layer: QConv2d, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (2, layer.conv.in_channels, 11, 7)
    if layer.signed_input:
        return torch.randint(-300, 300, shape, generator=gen).float()  # beyond +-255: the clamp is part of it
    return torch.randint(0, 256, shape, generator=gen).float()


@pytest.mark.parametrize("kind", ["first", "hidden", "head", "split head"])
@pytest.mark.parametrize("backend", AVAILABLE, ids=lambda b: b.name)
def test_every_backend_computes_the_int64_reference(kind, backend):
    layer = random_layer(kind)
    x = random_input(layer)
    a = backend.signed_inputs(x) if layer.signed_input else backend.activations(x)
    assert torch.equal(backend.conv(layer.kernel(), a).to(torch.int64), reference_output(layer.kernel(), x))


@pytest.mark.parametrize("kind", ["first", "hidden", "head"])
def test_the_training_path_computes_what_the_decoder_computes(kind):
    # Under the L1 rule the float32 training path's sums are exact too (integers times one power of two
    # per channel): fake quantisation is not an approximation of the coding path, it is the coding path.
    layer = random_layer(kind)
    x = random_input(layer)
    real_in = torch.clamp(x, -255, 255) / 2**INPUT_FRAC if layer.signed_input else x / 2**layer.in_frac
    trained = layer(real_in) * torch.pow(2.0, layer.out_frac.float()).view(1, -1, 1, 1)
    assert torch.equal(trained.to(torch.int64), reference_output(layer.kernel(), x))


def test_the_grid_rounding_is_the_clamped_rounding_with_a_straight_through_gradient():
    """y * scale rounded half to even, clamped, scaled back; the gradient passes unchanged where the clamp
    lets a value through (its bounds included) and is zero where it clamps."""
    gen = torch.Generator().manual_seed(0)
    y = (torch.randn(2, 4, 5, 6, generator=gen) * 8).requires_grad_()
    y.data[0, 0, 0, :4] = torch.tensor([0.0, 255 / 32, 0.5 / 32, 1.5 / 32])  # bounds, and ties to even
    scale, lo, hi = torch.tensor([32.0, 32, 16, 4]), torch.tensor([0.0, 0, -100, -3]), torch.tensor([255.0, 7, 100, 3])
    grad = torch.randn(y.shape, generator=gen)
    out = _OntoGrid.apply(y, scale, lo, hi)
    (by_rule,) = torch.autograd.grad(out, y, grad)
    view = (1, -1, 1, 1)
    rounded = torch.round(y * scale.view(view))
    composed = torch.clamp(y * scale.view(view) + (rounded - y * scale.view(view)).detach(), lo.view(view), hi.view(view))
    (reference,) = torch.autograd.grad(composed / scale.view(view), y, grad)
    assert torch.equal(out, composed / scale.view(view))
    assert torch.equal(by_rule, reference)
    assert (by_rule == 0).any() and (by_rule != 0).any()


@pytest.mark.parametrize("kind", ["first", "hidden", "head"])
def test_the_training_paths_products_are_the_convolution_forward_and_backward(kind, monkeypatch):
    """1x1 layers train as batched matrix products, faster than the framework's convolution: the same
    values (sums exact under the L1 rule), and the same gradients within float32 rounding."""
    layer = random_layer(kind)
    x = random_input(layer)
    real_in = (torch.clamp(x, -255, 255) / 2**INPUT_FRAC if layer.signed_input else x / 2**layer.in_frac).requires_grad_()
    out = layer(real_in)
    grads = torch.autograd.grad(out.square().sum(), [real_in, *layer.parameters()])
    monkeypatch.setattr(QConv2d, "_convolve", lambda self, a, w, b: F.conv2d(a, w, b, padding=self.conv.padding))
    reference = layer(real_in)
    assert torch.equal(out, reference)
    for g, r in zip(grads, torch.autograd.grad(reference.square().sum(), [real_in, *layer.parameters()])):
        assert torch.allclose(g, r, rtol=1e-5, atol=1e-5 * r.abs().max().item())


def test_weights_that_would_break_the_exactness_bound_lose_a_bit_instead():
    layer = QConv2d(160, 4, 3, 4, 4, 0.0, 255.0)
    with torch.no_grad():
        layer.conv.weight.fill_(1.0)  # every weight at the peak: 255 * 1440 * 64 > 2**24
        layer.conv.bias.zero_()
    layer.freeze()
    assert bool((255 * layer.w_int.abs().flatten(1).sum(1) <= EXACT_BOUND).all())
    assert int(layer.w_int.abs().max()) == 32  # one bit fewer than the natural 64


def test_the_exactness_rule_is_computed_where_the_weights_are():
    # Training on a GPU checks the rule on the weights' device ("meta" stands in for one here).
    w, b = torch.ones(4, 160, 3, 3, device="meta"), torch.zeros(4, device="meta")
    for split in (False, True):
        assert backends.channel_rule(w, b, split).device == w.device

def test_integers_beyond_the_exactness_bound_are_refused():
    layer = QConv2d(160, 1, 3, 4, 4, 0.0, 255.0)
    with pytest.raises(ModelError, match="exactness bound"):
        layer.load_integer_parameters(torch.full((1, 160, 3, 3), 64.0), torch.zeros(1, dtype=torch.int64), torch.zeros(1))
    with pytest.raises(ModelError, match="exactness bound"):  # a weight beyond 64, however small the sum
        layer.load_integer_parameters(torch.full((1, 160, 3, 3), 0.0).index_fill_(1, torch.tensor([0]), 65.0),
                                      torch.zeros(1, dtype=torch.int64), torch.zeros(1))


def test_a_loaded_models_integers_come_back_unchanged_from_its_float_weights():
    layer = random_layer("split head")
    w, e, b = layer.w_int.clone(), layer.w_exp.clone(), layer.b_int.clone()
    layer.load_integer_parameters(w, e, b)
    for got, want in zip(layer.integer_parameters(), (w, e, b)):
        assert torch.equal(got, want)


@pytest.mark.parametrize("backend", AVAILABLE, ids=lambda b: b.name)
def test_requantisation_rounds_half_to_even(backend):
    # shift = in_frac + e - out_frac = 1: the outputs are acc / 2, the accumulators the biases 0..15
    layer = IntConv(torch.zeros(16, 8, 1, 1), torch.ones(16, dtype=torch.int64), torch.arange(16.0), 0,
                    torch.zeros(16), torch.zeros(16), torch.full((16,), 255.0))
    out = backend.conv(layer, backend.activations(torch.zeros(1, 8, 1, 1))).flatten().tolist()
    assert out == [round(v / 2) for v in range(16)]  # Python's round: half to even


@pytest.mark.parametrize("backend", AVAILABLE, ids=lambda b: b.name)
def test_every_available_backend_passes_the_canary(backend):
    assert backends.canary(backend) == []


def test_the_canarys_digest_is_the_int64_references():
    assert backends._digest([backends.reference_output(layer, x) for layer, x in backends.canary_cases()]) \
        == backends.EXPECTED_DIGEST


@pytest.mark.parametrize("name", ["photo", "cifar10"])
def test_every_kind_of_layer_a_shipped_model_runs_is_among_the_canarys(name):
    import icnn_codec

    tried = {(layer.w_int.shape[1], layer.w_int.shape[2], layer.signed_input, layer.split)
             for layer, _ in backends.canary_cases()}
    for conv in icnn_codec.load_model(name).local_ar.qconvs():
        assert (conv.conv.in_channels, conv.conv.kernel_size[0], conv.signed_input, conv.split) in tried


class BFloat16Sums(backends.Float32Backend):
    name = "bfloat16"

    def conv(self, layer, a):
        w, _, b = layer.kernel_parameters()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            acc = F.conv2d(a.float(), w.float(), b.float(), padding=layer.padding)
        return backends._requantise(acc.float(), layer)


class Float16Sums(backends.Float32Backend):
    name = "float16"

    def conv(self, layer, a):
        w, _, b = layer.kernel_parameters()
        acc = F.conv2d(a.half().float().half().float(), w.half().float(), b.half().float(), padding=layer.padding)
        return backends._requantise(acc, layer)


@pytest.mark.parametrize("inexact", [BFloat16Sums(), Float16Sums()], ids=lambda b: b.name)
def test_the_canary_rejects_a_backend_that_rounds_its_operands_or_sums(inexact):
    failures = backends.canary(inexact)
    assert failures and all(f.startswith(inexact.name) for f in failures)


@pytest.fixture
def fresh_choice(monkeypatch):
    before = backends.use_backend(None)
    yield monkeypatch
    with backends._choice_lock:
        backends._chosen = before


def test_the_environment_forces_a_backend(fresh_choice):
    fresh_choice.setenv(backends.BACKEND_ENV, "float32")
    assert backends.current_backend().name == "float32"


def test_an_unknown_forced_backend_is_a_one_line_error(fresh_choice):
    fresh_choice.setenv(backends.BACKEND_ENV, "int4")
    with pytest.raises(ModelError, match="unknown") as err:
        backends.current_backend()
    assert "\n" not in str(err.value)


def test_a_forced_backend_that_fails_the_canary_is_an_error_not_a_fallback(fresh_choice):
    fresh_choice.setitem(BACKENDS, "bfloat16", BFloat16Sums())
    fresh_choice.setenv(backends.BACKEND_ENV, "bfloat16")
    with pytest.raises(ModelError, match="does not compute exactly"):
        backends.current_backend()


def test_without_a_forced_backend_the_fastest_exact_one_is_chosen(fresh_choice):
    fresh_choice.delenv(backends.BACKEND_ENV, raising=False)
    assert backends.current_backend() is next(b for b in BACKENDS.values() if not backends.canary(b))


def test_the_float32_backend_is_available_everywhere():
    assert BACKENDS["float32"].available() and BACKENDS["float64"].available()
