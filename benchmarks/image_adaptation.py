"""How much could adapting a model's priors to each image buy? A bound for per-tile prior heads.

    python benchmarks/image_adaptation.py [--model FLOW] [--part heads] [--on self] [--steps 20] [--lr 1e-3]

A codec could send, per tile, which of a few trained prior heads to use, or code the tile with priors
tuned to it. Before training such heads, this measures the most they could give: for each held-out
photograph (the central 128x128 crops of the validation split and of photos-unseen), a copy of the
model's prior networks (``--part heads``: only their last layers, which a bank of heads would differ
in; ``--part priors``: every prior network) is trained for ``--steps`` Adam steps on

* ``--on self``: the crop itself -- an optimistic bound, as if the side information were free;
* ``--on band``: a 64x256 band of the same photograph above the crop (no overlap) -- what heads
  trained on other images of the kind could at best carry over to it,

and the crop is coded again: the training path's code length, as the codec would choose its side
information (each crop in the shorter of its colour modes, each latent group at its best scale offset,
before their few bits), so that what the codec already adapts is not counted again.
Writes benchmarks/results/image_adaptation/PART-ON-STEPS-LR[-firstN].json and the table of all of
them, benchmarks/results/image_adaptation.md; docs/ablations.md quotes it.
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from common import PHOTO_FLOW, RESULTS, SHARED

from icnn_codec import priors
from icnn_codec.contexts import ConditionalPrior, CheckerboardTwin, QuadrantPasses, SublatticeContext
from icnn_codec.entropy import SCALE_OFFSETS
from icnn_codec.flow import IntegerFlow
from icnn_codec.planes import training_input
from icnn_codec.quant import QNet
from icnn_codec.training.ablation import EVAL_CROP, HOLDOUT_EVERY
from icnn_codec.training.data import ImageSet
from icnn_codec.training.runs import resolve_model

BAND = (64, 256)  # rows x columns of the adaptation band
FOLDER = RESULTS / "image_adaptation"


def prior_parameters(flow: IntegerFlow, part: str) -> list[torch.nn.Parameter]:
    """The parameters one adapts: every prior network's, or only their heads' (the last layer)."""
    nets = [m for m in flow.modules() if isinstance(m, (ConditionalPrior, CheckerboardTwin, QuadrantPasses,
                                                        SublatticeContext))]
    heads = [q.head for m in nets for q in m.modules() if isinstance(q, QNet)]
    chosen = [p for m in nets for p in m.parameters()] if part == "priors" else [p for h in heads for p in h.parameters()]
    return list({id(p): p for p in chosen}.values())  # nested contexts share networks: each parameter once


def crop_and_band(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    top, left = (h - EVAL_CROP) // 2, (w - EVAL_CROP) // 2
    crop = img[top : top + EVAL_CROP, left : left + EVAL_CROP]
    rows, cols = BAND
    b_top, b_left = max(0, top - rows), max(0, (w - cols) // 2)
    return crop, img[b_top : b_top + rows, b_left : b_left + cols]


def bits(flow: IntegerFlow, pixels: np.ndarray) -> torch.Tensor:
    """The training path's bpd, in the colour mode the codec would choose (with a colour stage)."""
    return flow.shorter_colour_mode_bits(training_input(pixels[None], "cpu")).sum() / pixels.size


def coded_bpd(flow: IntegerFlow, pixels: np.ndarray) -> float:
    """Bits per dimension with the codec's per-plane choices: colour mode and each group's scale offset."""
    x = training_input(pixels[None], "cpu")
    modes = [None] if flow.colour is None else [torch.tensor([False]), torch.tensor([True])]
    totals = []
    with torch.no_grad():
        for plain in modes:
            total = 0.0
            for g in flow(x, plain):
                total += min(float(priors.discretized_logistic_bits(g.z, g.mu, g.log_scale + d / 8).sum())
                             for d in SCALE_OFFSETS)
            totals.append(total)
    return min(totals) / pixels.size


def adapted_bpd(flow: IntegerFlow, crop: np.ndarray, target: np.ndarray, part: str, steps: int,
                lr: float) -> float:
    tuned = copy.deepcopy(flow)
    tuned.train()
    params = prior_parameters(tuned, part)
    for p in tuned.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        bits(tuned, target).backward()
        opt.step()
    tuned.eval()
    return coded_bpd(tuned, crop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(PHOTO_FLOW), help="a flow (default: the photo flow dc2b)")
    parser.add_argument("--part", choices=["heads", "priors"], default="heads")
    parser.add_argument("--on", choices=["self", "band"], default="self")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--limit", type=int, help="the first N photographs of each set")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = resolve_model(args.model)
    flow = model.flow
    flow.eval()
    _, held = ImageSet.open(SHARED / "data" / "photos" / "train").split_holdout(HOLDOUT_EVERY)
    sets = {"val": held, "unseen": ImageSet.open(SHARED / "data" / "photos-unseen")}
    out = {"model": f"{model.name} {model.fingerprint:04x}", "part": args.part, "on": args.on,
           "steps": args.steps, "lr": args.lr, "parameters": sum(p.numel() for p in prior_parameters(flow, args.part))}
    started = time.time()
    for name, images in sets.items():
        before, after = [], []
        for i, img in enumerate(list(images.images)[: args.limit]):
            crop, band = crop_and_band(img)
            before.append(coded_bpd(flow, crop))
            after.append(adapted_bpd(flow, crop, crop if args.on == "self" else band, args.part, args.steps, args.lr))
            print(f"{name} {i}: {before[-1]:.4f} -> {after[-1]:.4f}  ({time.time() - started:.0f} s)", flush=True)
        out[name] = {"before": float(np.mean(before)), "after": float(np.mean(after)),
                     "change": float(np.mean(after) / np.mean(before) - 1), "images": len(before)}
        print(name, out[name], flush=True)
    limited = "" if args.limit is None else f"-first{args.limit}"
    FOLDER.mkdir(parents=True, exist_ok=True)
    path = FOLDER / f"{args.part}-{args.on}-{args.steps}steps-lr{args.lr:g}{limited}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    (RESULTS / "image_adaptation.md").write_text(table() + "\n")
    print(path)


def table() -> str:
    """Every configuration measured so far, one row each."""
    rows = [json.loads(p.read_text()) for p in sorted(FOLDER.glob("*.json"))]
    models = sorted({r["model"] for r in rows})
    lines = [f"Prior networks tuned to each photograph, model `{'`, `'.join(models)}`: central 128x128 crops, "
             "training-path bpd with the codec's colour mode and scale offsets chosen per crop.", "",
             "| tuned | on | Adam steps | lr | photographs per set | validation | photos-unseen |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [f"{r[k]['before']:.4f} -> {r[k]['after']:.4f} ({r[k]['change']:+.2%})" for k in ("val", "unseen")]
        lines.append(f"| {r['part']} ({r['parameters']:,}) | {r['on']} | {r['steps']} | {r['lr']:g} | "
                     f"{r['val']['images']} / {r['unseen']['images']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
