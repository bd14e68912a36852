"""Model files load without executing code and carry everything the exact path needs."""
from __future__ import annotations

import numpy as np

import icnn_codec as ic
from icnn_codec.zoo import model_arrays, fingerprint


def test_shipped_model_is_plain_integer_arrays(model):
    with np.load(model.path, allow_pickle=False) as z:  # would raise if anything were pickled
        kinds = {k: z[k].dtype.kind for k in z.files}
    assert set(kinds.values()) <= {"i", "u"}, kinds
    assert any(k.startswith("tables.") for k in kinds)


def test_fingerprint_is_reproducible_from_the_loaded_model(model):
    assert fingerprint(model_arrays(model.flow, model.tables, {})) == model.fingerprint


def test_unknown_model_name_is_a_clear_error():
    import pytest

    with pytest.raises(ic.ModelError, match="unknown model"):
        ic.load_model("no-such-model")
