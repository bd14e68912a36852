"""Model files load without executing code and carry everything the exact path needs."""
from __future__ import annotations

import numpy as np
import pytest

import icnn_codec as ic
from icnn_codec.zoo import available_models, fingerprint, model_arrays

SHIPPED = ["cifar10", "photo"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_are_plain_integer_arrays_under_25_mb(name):
    path = available_models()[name]
    assert path.stat().st_size < 25 * 2**20
    with np.load(path, allow_pickle=False) as z:  # would raise if anything were pickled
        kinds = {k: z[k].dtype.kind for k in z.files}
    assert set(kinds.values()) <= {"i", "u"}, kinds
    assert any(k.startswith("tables.") for k in kinds)


@pytest.mark.parametrize("name", SHIPPED)
def test_fingerprint_is_reproducible_from_the_loaded_model(name):
    model = ic.load_model(name)
    assert fingerprint(model_arrays(model.local_ar, model.tables, {})) == model.fingerprint


def test_photographs_get_the_photo_model_and_thumbnails_the_cifar_model(photo, cifar_images):
    assert ic.read_header(ic.compress(photo[:80, :80])).model_fingerprint == ic.load_model("photo").fingerprint
    assert ic.read_header(ic.compress(cifar_images[0])).model_fingerprint == ic.load_model("cifar10").fingerprint
    assert ic.read_header(ic.compress(photo[:80, :80], model="cifar10")).model_fingerprint == ic.load_model("cifar10").fingerprint


def test_grey_photographs_get_the_photo_model_as_runs_of_three_neighbours(photo):
    grey = np.ascontiguousarray(photo[:80, :80, 1])
    expected = ic.load_model("photo").fingerprint
    assert ic.read_header(ic.compress(grey)).model_fingerprint == expected
    assert ic.read_header(ic.compress(np.dstack([grey, grey]))).model_fingerprint == expected  # LA too


def test_a_model_file_of_a_retired_kind_is_a_one_line_error(tmp_path):
    from icnn_codec.zoo import read_model_file

    arrays = {"meta": np.frombuffer(b'{"format": "icnn-model", "version": 2, "name": "old-flow"}', np.uint8)}
    np.savez(tmp_path / "old-flow.npz", **arrays)  # a flow's file names no kind
    with pytest.raises(ic.ModelError, match="model kind 'flow' is not supported"):
        read_model_file(tmp_path / "old-flow.npz")


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ic.ModelError, match="unknown model"):
        ic.load_model("no-such-model")


def test_a_stream_of_a_model_that_is_not_installed_is_a_one_line_error_naming_it(cifar_images, tmp_path, monkeypatch):
    from icnn_codec import zoo

    stream = ic.compress(cifar_images[0], model="cifar10")
    monkeypatch.setenv("ICNN_MODELS", str(tmp_path))
    monkeypatch.setattr(zoo, "available_models", lambda: {})
    monkeypatch.setattr(zoo, "_cache", {})
    fp = ic.read_header(stream).model_fingerprint
    with pytest.raises(ic.DecodeError, match=f"needs model {fp:04x}, which is not installed") as err:
        ic.decompress(stream)
    assert "\n" not in str(err.value)


def test_an_installed_name_means_the_installed_model_wherever_the_codec_runs(tmp_path, monkeypatch, cifar_images):
    """A folder (or file) in the working directory named like a model does not stand in for it:
    neither the default choice nor a stream's model may depend on where the codec runs."""
    monkeypatch.chdir(tmp_path)
    for name in ("cifar10", "photo"):
        (tmp_path / name).mkdir()
    stream = ic.compress(cifar_images[0])
    assert ic.read_header(stream).model_fingerprint == ic.load_model("cifar10").fingerprint
    assert np.array_equal(ic.decompress(stream), cifar_images[0])
    with pytest.raises(ic.ModelError, match="is a folder"):
        ic.load_model("./cifar10")  # a path says: that folder, which is no model file


def test_a_damaged_model_file_is_a_model_error_and_does_not_stop_other_streams(tmp_path, monkeypatch, cifar_images):
    good = available_models()["cifar10"].read_bytes()
    (tmp_path / "a-broken.npz").write_bytes(good[: len(good) // 2])  # a copy cut short
    monkeypatch.setenv("ICNN_MODELS", str(tmp_path))
    with pytest.raises(ic.ModelError, match="cannot read model file"):
        ic.load_model("a-broken")
    stream = ic.compress(cifar_images[0])  # searching the installed models skips the broken one
    assert np.array_equal(ic.decompress(stream), cifar_images[0])
