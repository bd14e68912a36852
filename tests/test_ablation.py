"""The ablation harness names each result by what makes it different, so no run overwrites another's."""
from __future__ import annotations

from pathlib import Path

import pytest

from icnn_codec.training.ablation import GROWN_LR, SCRATCH_LR, AblationResult, save_result


def result(variant: str, start: str, lr: float, new_lr: float | None) -> AblationResult:
    return AblationResult(variant=variant, description="", start=start, minutes=20, steps=1, batch_size=8, crop=128,
                          lr=lr, new_lr=new_lr, val_bpd_start=4.0, val_bpd=4.0, unseen_bpd_start=4.0, unseen_bpd=4.0,
                          mac_per_pixel=1, network_ms_256=1.0, flow={})


@pytest.mark.parametrize(("variant", "start", "lr", "new_lr", "name"), [
    ("baseline", "photo 11a6", GROWN_LR, None, "baseline-20min-11a6.json"),
    ("error-context", "photo 11a6", GROWN_LR, 1e-3, "error-context-20min-11a6.json"),
    ("lifting", "photo 11a6", GROWN_LR, 1e-4, "lifting-20min-newlr0.0001-11a6.json"),
    ("baseline", "v2b 885a", 5e-4, None, "baseline-20min-lr0.0005-885a.json"),
    ("colour-warm", "photo 11a6", 3e-4, None, "colour-warm-20min-lr0.0003-11a6.json"),
    ("small", "scratch", SCRATCH_LR, SCRATCH_LR, "small-20min.json"),
])
def test_a_result_is_named_by_variant_minutes_unusual_rates_and_the_starts_fingerprint(
        variant: str, start: str, lr: float, new_lr: float | None, name: str, tmp_path: Path) -> None:
    assert save_result(result(variant, start, lr, new_lr), tmp_path).name == name
