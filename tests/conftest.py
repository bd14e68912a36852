"""Shared fixtures: real images (CIFAR-10 test images, scikit-image's photographs) and models."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ICNN_SHARED", REPO.parent / "shared"))
CIFAR_TEST = SHARED / "data" / "cifar10" / "test1k.npz"


@pytest.fixture(scope="session")
def cifar_images() -> np.ndarray:
    """The CIFAR-10 test1k images (1000, 32, 32, 3) uint8."""
    if not CIFAR_TEST.exists():
        pytest.skip(f"CIFAR-10 test images not found at {CIFAR_TEST} (set ICNN_SHARED)")
    with np.load(CIFAR_TEST) as z:
        return z["images"]


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photograph at full size (scikit-image's 'chelsea', 300x451 RGB)."""
    data = pytest.importorskip("skimage.data")
    return data.chelsea()


@pytest.fixture
def model_only(monkeypatch):
    """Every tile is coded by the model: the classic coders are never tried."""
    from icnn_codec import payload
    from icnn_codec.classic import ClassicKind

    monkeypatch.setattr(payload, "FEW_COLOURS", 0)
    monkeypatch.setattr(payload.classic, "encode_classic", lambda pixels, size_to_beat=None: (ClassicKind.RAW, pixels.tobytes()))


@pytest.fixture(scope="session")
def model():
    import icnn_codec

    return icnn_codec.load_model()


@pytest.fixture(scope="session")
def sums_to_one():
    """Whether a local AR's code lengths for a 1x1 image, over all 256^3 colours, make a distribution."""
    torch = pytest.importorskip("torch")

    def check(model) -> bool:
        values = torch.stack(torch.meshgrid(*[torch.arange(256)] * 3, indexing="ij"), -1).reshape(-1, 3, 1, 1).float()
        with torch.no_grad():
            total = sum(float(torch.exp2(-model.bits(chunk)).sum()) for chunk in values.split(2**20))
        return abs(total - 1) < 1e-3

    return check
