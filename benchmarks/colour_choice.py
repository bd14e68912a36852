"""A colour transform chosen per tile: what a model with a colour stage would gain if each tile's
encoder picked the best of a few fixed colour transforms instead of the learned one.

    python benchmarks/colour_choice.py MODEL      (a model with a colour stage: file or run folder)

Each central 128x128 crop of the validation photographs and of photos-unseen (the ablation
harness's crops) is one tile; its code length is the training path's, under the model with its
colour stage's coefficients replaced by each candidate in turn. The choice costs log2(candidates)
bits a tile. Writes benchmarks/results/colour_choice.md.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from common import RESULTS, SHARED

from icnn_codec.layers import LIFT_FRAC, YCOCG_R_STEPS, ColourLifting
from icnn_codec.planes import exact_input
from icnn_codec.training.ablation import held_out_crops
from icnn_codec.training.runs import resolve_model


def candidates(learned: torch.Tensor) -> dict[str, torch.Tensor]:
    """Integer coefficients (steps x 3, over 2**LIFT_FRAC) of each candidate transform."""
    one = 2**LIFT_FRAC
    subtract_green = torch.zeros_like(learned)
    subtract_green[0, 1] = -one  # R -= G
    subtract_green[1, 1] = -one  # B -= G
    assert [YCOCG_R_STEPS[0][0], YCOCG_R_STEPS[1][0]] == [0, 2]  # the steps' targets those rows assume
    return {"learned": learned, "YCoCg-R": ColourLifting().integer_coefficients(),
            "RGB (none)": torch.zeros_like(learned), "subtract green": subtract_green}


def per_tile_bits(model, crops: np.ndarray, coefficients: torch.Tensor) -> np.ndarray:
    model.flow.colour.load_integer_coefficients(coefficients)
    out = []
    with torch.no_grad():
        for start in range(0, len(crops), 16):
            out.append(model.flow.nll_bits(exact_input(crops[start : start + 16]).float()).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = resolve_model(args.model)
    if model.flow.colour is None:
        parser.error(f"{args.model} has no colour stage")
    learned = model.flow.colour.integer_coefficients().clone()
    options = candidates(learned)
    lines = [f"Per-tile colour transforms, model {model.name} ({model.fingerprint:04x}), central 128x128 crops, "
             f"training-path bpd (the choice costs log2 {len(options)} bits a tile).", "",
             "| crops | " + " | ".join(options) + " | best per tile | tiles not on the learned one |",
             "|---|" + "---:|" * (len(options) + 2)]
    for name, crops in held_out_crops(SHARED).items():
        crops = np.asarray(crops)
        bits = np.stack([per_tile_bits(model, crops, c) for c in options.values()])  # (candidates, tiles)
        dims = crops[0].size
        best = (bits.min(axis=0) + math.log2(len(options))) / dims
        cells = [f"{b.mean() / dims:.4f}" for b in bits]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {best.mean():.4f} ({best.mean() / (bits[0].mean() / dims) - 1:+.2%}) "
                     f"| {int((bits.argmin(axis=0) != 0).sum())} of {len(crops)} |")
    model.flow.colour.load_integer_coefficients(learned)
    (RESULTS / "colour_choice.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
