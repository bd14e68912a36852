"""Backward adaptation measured with the exact coder's code lengths: what a decoder could learn
from the groups it has already decoded in a tile, at no side-information cost.

    python benchmarks/adaptation.py [--model FLOW] [--crop 256]

Each 256x256 central crop of the validation photographs (every 10th file of
../shared/data/photos/train) and of ../shared/data/photos-unseen is one tile. Its latent groups are
taken in decoding order; before a group is coded, its means and/or scales are corrected from
statistics of the groups decoded before it in the same tile, as a decoder could do identically in
integer arithmetic. Every variant then codes the corrected groups as the codec does (each group's
scale offset chosen by the encoder and sent), so the figures are the codec's code lengths,
side information included:

* ``codec``: today's code (the reference);
* ``bias: white <- black, per channel``: a checkerboard's second half shifts each channel's means
  by the first half's mean residual in that channel (16 z - mu16, clipped at +-2 scales, shrunk
  towards 0 by 16 pseudo-counts);
* ``bias: per level and scale``: one running mean residual per (level, scale index // 4), from every
  group of that level decoded so far in the tile;
* ``scale: white <- black, per channel``: the second half's scales shifted per channel by the
  log-scale step (1/8, within +-4) that coded the first half's channel shortest;
* both per-channel corrections together.

Writes benchmarks/results/adaptation.md.
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Callable

import numpy as np
import torch

from common import PHOTO_FLOW, RESULTS, SHARED

import icnn_codec as ic
from icnn_codec import entropy
from icnn_codec.planes import exact_input
from icnn_codec.priors import COST_FRAC, LS_FRAC, MU_FRAC, ExactParams, LogisticTables
from icnn_codec.training.data import ImageSet

CLIP_SCALES = 2  # residuals beyond this many scales count as this many (outliers say little about bias)
PSEUDO_COUNTS = 16  # shrinkage of a context's mean residual towards 0
SCALE_STEPS = range(-4, 5)


class Group:
    """One latent group of one tile: (C, N) integer arrays, and its name's parts."""

    def __init__(self, name: str, z: np.ndarray, mu16: np.ndarray, ls8: np.ndarray) -> None:
        self.name = name
        self.level = name.split(" z")[0] if " z" in name else name
        self.family, _, self.half = name.rpartition(" ")
        self.z, self.mu16, self.ls8 = z, mu16, ls8

    def residual16(self) -> np.ndarray:
        """16 z - mu16, clipped at CLIP_SCALES scales."""
        limit = CLIP_SCALES * 2.0 ** (MU_FRAC + self.ls8 / 2**LS_FRAC)
        return np.clip(16 * self.z - self.mu16, -limit, limit)


Correction = Callable[[Group, list[Group], LogisticTables], tuple[np.ndarray, np.ndarray]]


def no_correction(g: Group, decoded: list[Group], tables: LogisticTables) -> tuple[np.ndarray, np.ndarray]:
    return g.mu16, g.ls8


def _first_half(g: Group, decoded: list[Group]) -> Group | None:
    if g.half != "white":
        return None
    return next((d for d in decoded if d.family == g.family and d.half == "black"), None)


def bias_from_black(g: Group, decoded: list[Group], tables: LogisticTables) -> tuple[np.ndarray, np.ndarray]:
    black = _first_half(g, decoded)
    if black is None:
        return g.mu16, g.ls8
    e = black.residual16()
    shift = np.round(e.sum(axis=1, keepdims=True) / (e.shape[1] + PSEUDO_COUNTS)).astype(np.int64)
    return g.mu16 + shift, g.ls8


def bias_by_level_scale(g: Group, decoded: list[Group], tables: LogisticTables) -> tuple[np.ndarray, np.ndarray]:
    sums: dict[int, float] = defaultdict(float)
    counts: dict[int, int] = defaultdict(int)
    for d in decoded:
        if d.level != g.level:
            continue
        e, key = d.residual16().ravel(), (d.ls8 >> 2).ravel()
        for k in np.unique(key):
            sums[int(k)] += float(e[key == k].sum())
            counts[int(k)] += int((key == k).sum())
    key = g.ls8 >> 2
    shift = np.zeros_like(g.mu16)
    for k in np.unique(key):
        if counts[int(k)]:
            shift[key == k] = round(sums[int(k)] / (counts[int(k)] + PSEUDO_COUNTS))
    return g.mu16 + shift, g.ls8


def scale_from_black(g: Group, decoded: list[Group], tables: LogisticTables) -> tuple[np.ndarray, np.ndarray]:
    black = _first_half(g, decoded)
    if black is None:
        return g.mu16, g.ls8
    lengths = np.stack([entropy.code_length(black.z, ExactParams.from_grid(black.mu16, black.ls8 + d), tables)
                        for d in SCALE_STEPS])  # (steps, C)
    best = np.array(SCALE_STEPS)[np.argmin(lengths, axis=0)]
    return g.mu16, g.ls8 + best[:, None]


def both_from_black(g: Group, decoded: list[Group], tables: LogisticTables) -> tuple[np.ndarray, np.ndarray]:
    mu16, _ = bias_from_black(g, decoded, tables)
    _, ls8 = scale_from_black(g, decoded, tables)
    return mu16, ls8


VARIANTS: dict[str, Correction] = {
    "codec": no_correction,
    "bias: white <- black, per channel": bias_from_black,
    "bias: per level and scale": bias_by_level_scale,
    "scale: white <- black, per channel": scale_from_black,
    "bias and scale: white <- black, per channel": both_from_black,
}


def tile_groups(model, crops: np.ndarray) -> list[list[Group]]:
    """Each crop's latent groups in decoding order (the reverse of the encoder's push order)."""
    names = model.flow.group_names()
    tiles = []
    for start in range(0, len(crops), 8):
        with torch.no_grad():
            groups = model.flow(exact_input(crops[start : start + 8]))
        for b in range(groups[0].z.shape[0]):
            tile = [Group(name, *(t[b].numpy().reshape(t.shape[1], -1).astype(np.int64)
                                  for t in (g.z, g.mu, g.log_scale)))
                    for name, g in zip(names, groups)]
            tiles.append(tile[::-1])
    return tiles


def coded_length(tile: list[Group], correction: Correction, tables: LogisticTables) -> int:
    """The tile's code length (2**-COST_FRAC bits) with ``correction`` applied and scale offsets as the codec
    chooses and sends them."""
    corrected, decoded = [], []
    for g in tile:
        mu16, ls8 = correction(g, decoded, tables)
        corrected.append((g.z.ravel(), mu16.ravel(), ls8.ravel()))
        decoded.append(g)
    return entropy.coded_length(corrected, entropy.choose_scale_offsets(corrected, tables), tables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(PHOTO_FLOW), help="a flow (default: the photo flow dc2b)")
    parser.add_argument("--crop", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = ic.load_model(args.model)
    _, held = ImageSet.open(SHARED / "data" / "photos" / "train").split_holdout(10)
    sets = {"validation": held.center_crops(args.crop),
            "photos-unseen": ImageSet.open(SHARED / "data" / "photos-unseen").center_crops(args.crop)}
    lines = [f"Backward adaptation, model `{args.model}` ({model.fingerprint:04x}), central {args.crop}x{args.crop} "
             f"crops, exact code lengths in bpd (scale offsets and their side information included).", "",
             "| variant | " + " | ".join(sets) + " |", "|---|" + "---:|" * len(sets)]
    lengths: dict[str, dict[str, float]] = defaultdict(dict)
    for set_name, crops in sets.items():
        tiles = tile_groups(model, np.asarray(crops))
        dims = crops[0].size * len(crops)
        for variant, correction in VARIANTS.items():
            bits = sum(coded_length(t, correction, model.tables) for t in tiles) / 2**COST_FRAC
            lengths[variant][set_name] = bits / dims
            print(f"{set_name}: {variant}: {bits / dims:.4f} bpd", flush=True)
    for variant, by_set in lengths.items():
        cells = [f"{by_set[s]:.4f}" + ("" if variant == "codec" else f" ({by_set[s] / lengths['codec'][s] - 1:+.2%})")
                 for s in sets]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "adaptation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
