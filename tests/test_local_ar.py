"""A local autoregressive model codes tiles exactly, each tile's code its own, from a model file."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import icnn_codec as ic
from icnn_codec import adaptive, mixture_core, payload, rans
from icnn_codec.errors import DecodeError, ModelError
from icnn_codec.local_ar import ExactOutputs, LocalAR, MaskedQConv2d
from icnn_codec.mixture import NARROW_PART, NARROW_SHARE, channel_distribution, pixel_code_length, posterior_weights
from icnn_codec.priors import ExactParams, LogisticTables
from icnn_codec.wavefront import (ADJUSTMENT_ORDER, MAX_ADJUSTMENT_BITS, Wavefront, adjustment_bits, adjustment_code,
                                  code_length)
from icnn_codec.zoo import network_to_model, read_model_file, save_model


def small_network(seed: int = 0) -> LocalAR:
    """A small local AR with random (not trained) weights: every output varies from pixel to pixel."""
    torch.manual_seed(seed)
    net = LocalAR(kernel=7, width=16, depth=2, components=3, tile_predictor=5, residual_context=True)
    with torch.no_grad():
        net.head.conv.weight.normal_(0, 0.05)
        net.first.conv.weight.normal_(0, 0.1)
    return net


@pytest.fixture(scope="module")
def ar_model() -> ic.Model:
    return network_to_model(small_network(), LogisticTables.build(), "small-ar")


@pytest.fixture(scope="module")
def tables() -> LogisticTables:
    return LogisticTables.build()


def full_row(mu_floor: int, mu_frac: int, scale: int, tables: LogisticTables) -> np.ndarray:
    """The definition of a component's counts of 0..255 (int64): its table row's count at each value
    the row reaches, 1 at every other, and the row's mass beyond either end added to that end."""
    r = tables.half_widths[scale]
    row = tables.block(scale)[mu_frac, : 2 * r + 1].astype(np.int64)
    values = mu_floor + np.arange(-r, r + 1)
    counts = np.ones(256, dtype=np.int64)
    counts[values[(values >= 0) & (values <= 255)]] = 0
    np.add.at(counts, np.clip(values, 0, 255), row)
    return counts


def test_a_colours_window_and_its_outside_count_give_each_value_its_share_of_the_whole_row(tables):
    rng = np.random.default_rng(0)
    n, k = 40, 3
    means = rng.integers(-300 * 16, 560 * 16, (n, k))  # means beyond either end too
    ls8 = rng.integers(-8, 60, (n, k))
    weights = rng.integers(1, 2**16, (n, k))
    dist = channel_distribution(means, ls8, weights, tables, np.array([20, 20]))  # two tiles, each its own window
    assert len(set(dist.reach[:20])) == 1 and len(set(dist.reach[20:])) == 1
    params = ExactParams.from_grid(means, ls8)
    parts = np.array([[full_row(params.mu_floor[i, j], params.mu_frac[i, j], params.scale[i, j], tables) for j in range(k)]
                      for i in range(n)])  # (n, K, 256)
    full = (weights[:, :, None] * parts).sum(1)
    values = rng.integers(0, 256, n)
    values[:3] = [0, 255, dist.low[2] + 2 * dist.reach[2] + 1]  # both ends, and beyond a window
    assert np.array_equal(dist.counts_of(values), parts[np.arange(n), :, values])
    assert np.array_equal(dist.totals(), full.sum(1))
    for i in (0, 7, 25):
        assert np.array_equal(dist.cumulative(i), np.concatenate([[0], np.cumsum(full[i])]))
    # each value's share as coded: its window symbol's, times its share among the values outside
    shares = np.empty((n, 256))
    for v in range(256):
        window_start, window_freq, outside_start, outside_freq = dist.coded(np.full(n, v))
        outside = dist.outside(np.full(n, v))
        assert (window_freq >= 1).all() and (outside_freq[outside & (dist.reach < 127)] >= 1).all()
        shares[:, v] = window_freq / rans.TOTAL * np.where(outside & (dist.reach < 127), outside_freq / rans.TOTAL, 1.0)
    assert np.allclose(shares.sum(1), 1.0, atol=1e-12)
    true = full / full.sum(1, keepdims=True)
    likely = true > 2**-10
    assert np.allclose(shares[likely], true[likely], rtol=0.01)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_value_pops_back_as_it_was_pushed_whatever_its_window(tables, seed):
    """The decoder finds each window symbol by a walk from the window's centre and each value outside
    by bisection: every value of 0..255 comes back, under mixtures with means beyond either end,
    narrow and 255-wide windows, in two tiles' groups."""
    rng = np.random.default_rng(seed)
    n, k = 512, 3
    means = rng.integers(-300 * 16, 560 * 16, (n, k))
    ls8 = np.concatenate([rng.integers(60, 90, (n // 2, k)), rng.integers(-24, 8, (n // 2, k))])  # wide, narrow
    weights = rng.integers(1, 2**16, (n, k))
    sizes = np.array([256, 256])
    dist = channel_distribution(means, ls8, weights, tables, sizes)
    values = rng.permutation(np.tile(np.arange(256), 2))
    window_start, window_freq, outside_start, outside_freq = dist.coded(values)
    encoders = [rans.Encoder(), rans.Encoder()]
    for g, part in enumerate((slice(0, 256), slice(256, 512))):  # the window symbols, then the values outside
        encoders[g].push(window_start[part], window_freq[part])
        outside = np.flatnonzero(outside_freq[part])
        encoders[g].push(outside_start[part][outside], outside_freq[part][outside])
    streams = rans.Streams([e.stream() for e in encoders])
    popped, counts = mixture_core.pop_colour(means, ls8, weights, sizes, NARROW_PART, NARROW_SHARE, tables.half_widths,
                                             tables.offsets, tables.prefix, streams.words, streams.ends, streams.states,
                                             streams.ats)
    assert np.array_equal(popped, values) and np.array_equal(counts, dist.counts_of(values))
    assert (dist.reach == 127).any() and (dist.reach < 10).any()


def test_a_lines_window_is_as_wide_as_nine_in_ten_of_its_samples_want(tables):
    rng = np.random.default_rng(3)
    n, k = 30, 2
    ls8 = rng.integers(0, 60, (n, k))
    weights = rng.integers(1, 2**16, (n, k))
    dist = channel_distribution(rng.integers(0, 256 * 16, (n, k)), ls8, weights, tables)
    main = ExactParams.from_grid(np.zeros((n, k), dtype=np.int64), ls8).scale[np.arange(n), weights.argmax(1)]
    want = np.clip(tables.half_widths[main] // 3, 2, 127)
    assert set(dist.reach) == {np.sort(want)[int(0.9 * (n - 1))]}
    assert (dist.low >= 0).all() and (dist.low + 2 * dist.reach <= 255).all()


def test_a_coded_value_moves_the_weights_to_the_components_that_gave_it_mass_kept_below_2_to_17():
    weights = np.array([[2**16, 2**16, 1], [2**16, 300, 5]])
    counts = np.array([[2**24, 2**20, 2**24], [0, 7, 1]])
    out = posterior_weights(weights, counts)
    assert out.max() < 2**17 and out[0, 0] == 2**16 and out[0, 1] == 2**12 and out[0, 2] == 1
    assert list(out[1]) == [0, 2100, 5]


def test_each_colour_of_a_plane_gets_its_own_scale_offset_and_mean_shift(ar_model, tables):
    """A plane's adjustment fits each colour: wider scales for the colour that is noisier than the model
    says, narrower for the one that is calmer, a mean shift towards a colour's bias; and the plane's
    code under it is shorter than under the model's own scales and means."""
    n, rng = 4096, np.random.default_rng(5)
    zeros = np.zeros((n, 1, 3), dtype=np.int64)
    outputs = ExactOutputs(zeros + 128 * 16, zeros + 16, zeros, np.zeros((n, 1), dtype=np.int64), zeros[:, 0], zeros[:, 0])
    spread = np.array([1.0, 2.0, 8.0])  # log2 scale 2 is the model's; red calmer, blue wider
    u = rng.uniform(1e-9, 1, (n, 3))
    values = np.clip(np.round(128 + 2 * spread * np.log(u / (1 - u)) + np.array([0, 3, 0])), 0, 255).astype(np.int64)
    scale, shift = ar_model.wavefront().adjustment(values, outputs)
    assert scale[0] < 0 < scale[2] and abs(scale[1]) <= 1
    assert shift[1] > 0 and shift[0] == 0  # (blue: too wide for its mean to be known to a sixteenth)
    assert pixel_code_length(values, outputs.adjusted(scale, shift), tables).sum() < pixel_code_length(values, outputs, tables).sum()


def test_a_plane_of_4096_pixels_or_fewer_is_adjusted_on_all_of_them_a_larger_one_on_every_17th(ar_model):
    wavefront = ar_model.wavefront()
    assert wavefront.sample(32 * 32) == wavefront.sample(4096) == slice(None, None, 1)
    assert wavefront.sample(4097) == wavefront.sample(256 * 256) == slice(None, None, 17)


def test_an_adjustment_is_sent_in_short_codes_for_small_values_and_comes_back(ar_model):
    assert adjustment_bits(np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64)) == 6 * 2
    assert adjustment_bits(np.array([1, -2, 0]), np.array([2, -2, 0])) == 4 + 4 + 2 + 4 + 2 + 2  # shifts in eighths
    scale, shift = np.array([47, -16, 3]), np.array([16, -16, -6])  # the extremes, and a common pair
    encoder = rans.Encoder()
    for symbols, bits in adjustment_code(scale, shift):
        encoder.push_uniform(symbols, bits)
    streams = rans.Streams([encoder.stream()])
    assert np.array_equal(streams.pop_exp_golomb(0, 6, ADJUSTMENT_ORDER), np.concatenate([scale, shift // 2]))
    assert streams.all_ended()
    assert MAX_ADJUSTMENT_BITS >= adjustment_bits(scale, shift)


@pytest.mark.parametrize("shape, tile", [((40, 37, 3), None), ((40, 37, 3), 16), ((33, 30, 4), None), ((31, 29), None)])
def test_images_of_any_size_and_mode_come_back_exactly(ar_model, photo, shape, tile, model_only):
    image = photo[100 : 100 + shape[0], 200 : 200 + shape[1]]
    if len(shape) == 2:
        image = image[:, :, 1]
    elif shape[2] == 4:
        image = np.dstack([image, np.random.default_rng(1).integers(0, 256, shape[:2], dtype=np.uint8)])
    data = ic.compress(image, model=ar_model, tile=tile)
    assert "model" in ic.tile_kinds(data)
    assert np.array_equal(ic.decompress(data, model=ar_model), image)


def test_a_large_plane_has_a_predictor_for_its_calm_pixels_and_one_for_its_busy_ones(ar_model, photo):
    """From CLASSES_FROM pixels a plane sends two predictors and the median of its pixels' causal
    activity: each pixel is predicted by its class's; the decoder finds every class from the decoded
    neighbours as the encoder did. A smaller plane cannot pay for two and sends one."""
    predictor = ar_model.local_ar.predictor
    assert predictor.classes(128, 256) == 2 and predictor.classes(128, 255) == 1  # 2**15 pixels
    image = np.ascontiguousarray(photo[60:252, 100:284])  # 192 x 184: 35,328 pixels, one tile
    pixels = torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float64))
    fit = predictor.fit(pixels)
    activity = predictor.activity(pixels - 128)[0]
    assert fit.coef.shape[1] == 2 and fit.threshold[0] == int(np.floor(np.median(activity.numpy())))
    labels = predictor.labels(pixels - 128, fit)[0]
    assert 0.4 < labels.double().mean() < 0.6 and not torch.equal(fit.coef[0, 0], fit.coef[0, 1])
    data = ic.compress(image, model=ar_model, tile=192)
    assert ic.tile_kinds(data) == ["model"]
    assert np.array_equal(ic.decompress(data, model=ar_model), image)
    assert np.array_equal(ic.decompress(ic.compress(image[:128, :160], model=ar_model, tile=192), model=ar_model),
                          image[:128, :160])


def test_the_tile_predictor_fits_the_many_calm_pixels_not_the_few_outliers(ar_model, photo):
    """Green is red plus 3 on every pixel of this plane but one in fifty, where it is far off: least
    squares would bend the predictor towards those; the fit reweights them away and finds green's
    coefficient on red and its constant nearly exact, so the calm pixels' residuals are about zero."""
    predictor = ar_model.local_ar.predictor
    red = photo[100:164, 200:264, 0].astype(np.int64)
    green = red + 3
    outliers = np.random.default_rng(5).random(red.shape) < 0.02
    green[outliers] = np.where(red[outliers] < 128, 255, 0)
    image = np.dstack([red, np.clip(green, 0, 255), photo[100:164, 200:264, 2]]).astype(np.uint8)
    pixels = torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float64))
    fit = predictor.fit(pixels)
    labels = predictor.labels(pixels - 128, fit)
    residual = image[:, :, 1].astype(np.int64) - 128 - predictor.predict16(pixels, fit, labels)[0, 1].numpy() / 16
    calm = ~outliers
    calm[:3], calm[:, :3] = False, False  # neighbours outside the tile count as zero
    assert abs(np.median(residual[calm])) < 0.25 and np.mean(np.abs(residual[calm]) < 1) > 0.9
    predictor.ROBUST_STEPS = 0
    try:
        squares = predictor.fit(pixels)
    finally:
        del predictor.ROBUST_STEPS
    plain = image[:, :, 1].astype(np.int64) - 128 - predictor.predict16(pixels, squares, labels)[0, 1].numpy() / 16
    assert np.mean(np.abs(plain[calm])) > 2 * np.mean(np.abs(residual[calm]))


@pytest.mark.parametrize("shape", [(1, 1, 3), (9, 5, 3), (2, 40, 3), (40, 2, 3), (7, 7, 2)])
def test_tiny_and_thin_tiles_come_back_exactly_from_the_model(ar_model, shape):
    pixels = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    stream = payload._model_streams(ar_model, [pixels], [12345])[0]
    tile = payload.CodedTile(payload.TileKind.MODEL, stream)
    mode = {3: "RGB", 2: "LA"}[shape[2]]
    out, end = payload.decode_tiles(ar_model, payload.TileShape(shape[0], shape[1], mode), [tile])[0]
    assert np.array_equal(out, pixels) and end == 12345


def test_a_tile_decodes_alone_as_in_the_whole_image(ar_model, photo, model_only):
    image = photo[:48, :64]
    data = ic.compress(image, model=ar_model, tile=16)
    whole = ic.decompress(data, model=ar_model, jobs=2)
    assert np.array_equal(whole, image)
    for tile in ic.read_header(data).tiles():
        alone = ic.decompress_tile(data, tile.index, model=ar_model)
        assert np.array_equal(alone, image[tile.top : tile.top + tile.height, tile.left : tile.left + tile.width])


def test_a_tiles_code_does_not_depend_on_the_tiles_coded_beside_it(ar_model, photo):
    a, b, c = photo[:24, :24], photo[100:124, 300:324], np.zeros((24, 24, 3), dtype=np.uint8) + 200
    alone = payload._model_streams(ar_model, [a], [7])[0]
    beside = payload._model_streams(ar_model, [b, a, c], [1, 7, 2])[1]
    assert alone == beside


def test_the_coder_writes_what_the_code_length_says(ar_model, photo):
    image = photo[60:124, 100:164]
    stream = payload._model_streams(ar_model, [image], [2**32 - 1])[0]  # a checksum of 32 bits
    expected = code_length(ar_model.local_ar, ar_model.tables, image[None])
    assert abs(8 * len(stream) - 32 - expected) < 0.01 * expected + 16


def test_a_model_file_holds_the_local_ar_as_integers_and_loads_to_the_same_fingerprint(ar_model, tmp_path):
    path = save_model(small_network(), tmp_path / "ar.npz", "ar", ar_model.tables, {"note": "test"})
    with np.load(path, allow_pickle=False) as z:
        assert {z[k].dtype.kind for k in z.files} <= {"i", "u"}
    loaded = read_model_file(path)
    assert loaded.meta["kind"] == "local-ar" and loaded.fingerprint == ar_model.fingerprint
    assert loaded.local_ar.config() == ar_model.local_ar.config()


def test_a_model_file_whose_causal_layer_reads_undecoded_pixels_is_refused(ar_model, tmp_path):
    path = save_model(small_network(), tmp_path / "ar.npz", "ar", ar_model.tables)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["conv0.w"] = arrays["conv0.w"].copy()
    arrays["conv0.w"][0, 0, 3, 3] = 1  # the pixel itself
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelError, match="not decoded yet"):
        read_model_file(tmp_path / "bad.npz")


def test_a_damaged_model_tile_is_a_decode_error_never_wrong_pixels(ar_model, photo, model_only):
    image = photo[:32, :32]
    data = bytearray(ic.compress(image, model=ar_model))
    for cut in (8, len(data) // 2):
        try:
            out = ic.decompress(bytes(data[:-cut]), model=ar_model)
        except DecodeError:
            continue
        assert np.array_equal(out, image)
    data[-5] ^= 0x40
    with pytest.raises(DecodeError):
        ic.decompress(bytes(data), model=ar_model)


def perturbed(seed: int = 0, **config) -> LocalAR:
    """A local AR whose every parameter is moved off its initial value (random, not trained)."""
    torch.manual_seed(seed)
    net = LocalAR(**config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def push_and_pop(wavefront: Wavefront, planes: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    """Each plane's stream under the wavefront coder, and the planes decoded from them together."""
    coded = [wavefront.encode([plane]) for plane in planes]
    streams = wavefront.streams(coded)
    decoded = wavefront.pop(streams, *planes.shape[1:3])
    assert streams.all_ended()
    return coded, decoded


def test_the_training_path_sees_only_decoded_pixels_and_makes_a_distribution(sums_to_one):
    """A changed sample changes no earlier pixel's code length (raster order, colours in order), only
    pixels within the kernel's reach, and every context's code lengths make a distribution over the
    colours (the tails folded onto 0 and 255)."""
    model = perturbed(kernel=5, width=16, depth=2)
    pixels = torch.randint(0, 256, (1, 3, 9, 9)).float()
    with torch.no_grad():
        before = model.bits(pixels)[0]
        for c in range(3):
            changed = pixels.clone()
            changed[0, c, 4, 4] = 255 - changed[0, c, 4, 4]
            moved = (model.bits(changed)[0] != before).nonzero().tolist()
            assert moved and all((y, x) >= (4, 4) for y, x in moved)
            assert all(y <= 6 and abs(x - 4) <= 2 for y, x in moved)
    assert sums_to_one(model)
    assert sums_to_one(LocalAR(kernel=3, width=8, depth=1, components=2))


def test_the_causal_layer_trains_on_the_decoded_neighbours_taps_alone(monkeypatch):
    """The masked k x k layer trains as one product over the gathered causal taps: the masked
    convolution's values, its gradients within the mask, and none outside it."""
    model = perturbed(kernel=5, width=16, depth=1)
    pixels = torch.randint(0, 256, (2, 3, 8, 9)).float()  # 72 pixels: the gathered product (BATCHED_PIXELS)
    layer = model.first
    a = (pixels - 128) / 64
    out = layer(a)
    (grad,) = torch.autograd.grad(out.square().sum(), layer.conv.weight)
    monkeypatch.setattr(MaskedQConv2d, "_convolve", lambda self, a, w, b: F.conv2d(a, w, b, padding=self.conv.padding))
    reference = layer(a)
    (by_convolution,) = torch.autograd.grad(reference.square().sum(), layer.conv.weight)
    assert torch.equal(out, reference)
    assert torch.allclose(grad, by_convolution * layer.mask, rtol=1e-5, atol=1e-6)
    assert not grad[:, :, 2, 2:].any() and not grad[:, :, 3:].any()


@pytest.mark.parametrize(("components", "tile_predictor", "residual_context"),
                         [(1, 0, False), (2, 0, False), (1, 0, True), (1, 3, False), (2, 5, True)])
def test_the_coder_codes_exactly_what_the_model_trains_on(components, tile_predictor, residual_context, tables):
    """Frozen, the exact integer path gives the training path's grid values; the integer table rows
    (cut to 0..255, mixed by integer weights) give its code lengths to within the tables' rounding;
    and the wavefront coder gives back every pixel, with narrow and full windows, escapes and end
    values: with one or two logistics, the residual context, and each plane's own tile predictor."""
    model = perturbed(kernel=5, width=16, depth=2, components=components, tile_predictor=tile_predictor,
                      residual_context=residual_context)
    ramp = torch.arange(9.0).view(1, 1, 9, 1) * 20 + torch.arange(9.0) * 8 + torch.tensor([0.0, 40, 80]).view(1, 3, 1, 1)
    pixels = (ramp + torch.randint(-3, 4, (1, 3, 9, 9))).clamp(0, 255)  # a smooth image: most samples near their means
    with torch.no_grad():
        mu, log2_s, _ = model.parameters_of(pixels)
        bits = model.bits(pixels).numpy().ravel() - model.side_bits(9, 9) / 81  # spread over the pixels there
    model.freeze()
    outputs = model.exact_outputs(pixels)
    values = pixels[0].permute(1, 2, 0).reshape(-1, 3).numpy().astype(np.int64)
    for c in range(3):
        assert np.array_equal(outputs.means(values - 128, c), (mu[0, :, c] * 16).flatten(1).T.numpy())
        assert np.array_equal(outputs.ls8[:, :, c], (log2_s[0, :, c] * 8).flatten(1).T.numpy())
    exact = pixel_code_length(values, outputs, tables).sum(1)
    near = ((pixels[:, None] - mu).abs() < 10 * torch.exp2(log2_s)).flatten(1, 2).all(1).numpy().ravel()  # no tail cut
    assert near.sum() >= 10 and np.abs(exact - bits)[near].max() < 0.01
    wavefront = Wavefront(model, tables, sample_every=1)  # adjusted on every pixel: never longer than unadjusted
    planes = torch.cat([pixels, pixels.flip(3)]).permute(0, 2, 3, 1).numpy().astype(np.uint8)
    coded, decoded = push_and_pop(wavefront, planes)
    assert np.array_equal(decoded, planes)
    flipped = pixels.flip(3)
    exact_flipped = pixel_code_length(flipped[0].permute(1, 2, 0).reshape(-1, 3).numpy().astype(np.int64),
                                      model.exact_outputs(flipped), tables).sum()
    assert 8 * sum(map(len, coded)) < exact.sum() + exact_flipped + 2 * (16 + MAX_ADJUSTMENT_BITS + adaptive.OFFSET_BITS + model.side_bits(9, 9))
    noise = np.random.default_rng(3).integers(0, 256, (2, 9, 9, 3), dtype=np.uint8)  # far from the means: values escape
    for log2_scale in (2.0, 0.0, 7.0):  # narrow windows, and the widest (255 values)
        model.head.conv.bias.data[3 : 9 * components : 9] = log2_scale
        model.freeze()
        wavefront = Wavefront(model, tables)
        for sample in (planes, noise, np.full_like(noise, 255), np.zeros_like(noise)):
            assert np.array_equal(push_and_pop(wavefront, sample)[1], sample)


def test_training_resumes_from_a_model_file_with_the_same_integers(ar_model, tmp_path):
    """A run continued from its last export (benchmarks/local_ar.py --init-from) starts from exactly
    the exported network: loaded into a fresh model and frozen again, it exports the same file."""
    path = save_model(small_network(), tmp_path / "ar.npz", "ar", ar_model.tables)
    fresh = LocalAR(**ar_model.local_ar.config())
    fresh.load_state_dict(read_model_file(path).local_ar.state_dict())
    again = save_model(fresh, tmp_path / "again.npz", "ar", ar_model.tables)
    assert read_model_file(again).fingerprint == read_model_file(path).fingerprint
