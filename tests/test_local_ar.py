"""A local autoregressive model codes tiles exactly, each tile's code its own, from a model file."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import icnn_codec as ic
from icnn_codec import payload
from icnn_codec.errors import DecodeError, ModelError
from icnn_codec.local_ar import LocalAR
from icnn_codec.mixture import channel_distribution, value_counts, value_totals
from icnn_codec.priors import ExactParams, LogisticTables
from icnn_codec.wavefront import code_length
from icnn_codec.zoo import flow_to_model, read_model_file, save_model


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
    return flow_to_model(small_network(), LogisticTables.build(), "small-ar")


@pytest.fixture(scope="module")
def tables() -> LogisticTables:
    return LogisticTables.build()


def test_a_colours_window_and_its_outside_count_give_each_value_its_share_of_the_whole_row(tables):
    rng = np.random.default_rng(0)
    n, k = 40, 3
    means = rng.integers(-300 * 16, 560 * 16, (n, k))  # means beyond either end too
    ls8 = rng.integers(-8, 60, (n, k))
    weights = rng.integers(1, 2**16, (n, k))
    dist = channel_distribution(means, ls8, weights, tables, np.array([20, 20]))  # two tiles, each its own window
    assert len(set(dist.reach[:20])) == 1 and len(set(dist.reach[20:])) == 1
    params = ExactParams.from_grid(means, ls8)
    full = sum(weights[:, j, None] * value_counts(ExactParams(params.mu_floor[:, j], params.mu_frac[:, j], params.scale[:, j]),
                                                  tables, np.zeros(n, dtype=np.int64), 256) for j in range(k))
    for i in range(n):
        width = 2 * dist.reach[i] + 1
        window = full[i, dist.low[i] : dist.low[i] + width]
        row = dist.rows[i, : width + 1]
        assert np.array_equal(row[:width], window)
        assert row[width] == full[i].sum() - window.sum()
        assert dist.rows[i, width + 1 :].sum() == 0
    totals = sum(weights[:, j] * value_totals(ExactParams(params.mu_floor[:, j], params.mu_frac[:, j], params.scale[:, j]), tables)
                 for j in range(k))
    assert np.array_equal(full.sum(1), totals)


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


@pytest.mark.parametrize("shape", [(1, 1, 3), (9, 5, 3), (2, 40, 3), (40, 2, 3), (7, 7, 2)])
def test_tiny_and_thin_tiles_come_back_exactly_from_the_model(ar_model, shape):
    pixels = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    words = payload._model_words(ar_model, [pixels], 64)[0]
    tile = payload.CodedTile(payload.TileKind.MODEL, words.astype("<u4").tobytes())
    mode = {3: "RGB", 2: "LA"}[shape[2]]
    out = payload.decode_tiles(ar_model, payload.TileShape(shape[0], shape[1], mode), [tile])[0]
    assert np.array_equal(out, pixels)


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
    alone = payload._model_words(ar_model, [a], 64)[0]
    beside = payload._model_words(ar_model, [b, a, c], 64)[1]
    assert np.array_equal(alone, beside)


def test_the_coder_writes_what_the_code_length_says(ar_model, photo):
    image = photo[60:124, 100:164]
    words = payload._model_words(ar_model, [image], 64)[0]
    expected = code_length(ar_model.local_ar, ar_model.tables, image[None])
    assert abs(32 * len(words) - expected) < 0.01 * expected + 64


def test_a_model_file_holds_the_local_ar_as_integers_and_loads_to_the_same_fingerprint(ar_model, tmp_path):
    path = save_model(small_network(), tmp_path / "ar.npz", "ar", ar_model.tables, {"note": "test"})
    with np.load(path, allow_pickle=False) as z:
        assert {z[k].dtype.kind for k in z.files} <= {"i", "u"}
    loaded = read_model_file(path)
    assert loaded.kind == "local-ar" and loaded.fingerprint == ar_model.fingerprint
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
