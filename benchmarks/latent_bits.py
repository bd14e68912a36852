"""Where a model's bits go: the share of each latent group (level, channel group, top sub-lattice).

    python benchmarks/latent_bits.py [FLOW ...]      (default: the photo flow dc2b, cifar10)

Each model is measured on images like those it is the default for: ``photo`` (and any other
model whose name is not cifar10) on the central 256x256 crops of the photo validation split
(every 10th file of ../shared/data/photos/train), ``cifar10`` on the first 200 CIFAR-10 test1k
images. The figures are the model's own -log2 p on the float training path. They show where
modelling effort pays: a group with many bits per latent is weakly predicted by its context.

The last two columns bound what per-image side information could save in each group (forward
adaptation, before its cost): each image's channels given the best shift of log2 s (1/8 steps
within +-1/2, as the codec's scale offsets but per channel), and that plus the mean residual
added to every mean (on the means' 1/16 grid).
Writes benchmarks/results/latent_bits.md.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from common import PHOTO_FLOW, RESULTS, SHARED

import icnn_codec as ic
from icnn_codec import priors
from icnn_codec.planes import exact_input
from icnn_codec.training.data import ImageSet

PHOTO_CROP = 256
CIFAR_IMAGES = 200


def evaluation_images(model_name: str) -> tuple[str, list[np.ndarray]]:
    if model_name == "cifar10":
        with np.load(SHARED / "data" / "cifar10" / "test1k.npz") as z:
            return f"the first {CIFAR_IMAGES} CIFAR-10 test1k images", list(z["images"][:CIFAR_IMAGES])
    _, held = ImageSet.open(SHARED / "data" / "photos" / "train").split_holdout(10)
    crops = held.center_crops(PHOTO_CROP, len(held.images))
    return f"central {PHOTO_CROP}x{PHOTO_CROP} crops of the {len(crops)} validation photos", list(crops)


def latent_bits_table(model_name: str) -> str:
    model = ic.load_model(model_name)
    described, images = evaluation_images(model_name)
    names = model.flow.group_names()
    bits, scaled, shifted, counts = (np.zeros(len(names)) for _ in range(4))
    with torch.no_grad():
        for start in range(0, len(images), 16):
            for i, g in enumerate(model.flow(exact_input(images[start : start + 16]).float())):
                bits[i] += float(priors.discretized_logistic_bits(g.z, g.mu, g.log_scale).sum())
                mean_residual = torch.round((g.z - g.mu).mean(dim=(2, 3), keepdim=True) * 16) / 16
                scaled[i] += best_scale_bits(g.z, g.mu, g.log_scale)
                shifted[i] += best_scale_bits(g.z, g.mu + mean_residual, g.log_scale)
                counts[i] += g.z.numel()
    dims = counts.sum()
    lines = [f"Model `{model_name}` ({model.fingerprint:04x}) on {described}: {bits.sum() / dims:.3f} nll bpd; with "
             f"per-image scale shifts {scaled.sum() / dims:.3f}, and mean shifts {shifted.sum() / dims:.3f}.", "",
             "| latent group | share of latents | bits per latent | share of bits | per-image scale | and mean |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, b, sc, sh, n in zip(names, bits, scaled, shifted, counts):
        lines.append(f"| {name} | {n / dims:.1%} | {b / n:.3f} | {b / bits.sum():.1%} | {sc / n:.3f} | {sh / n:.3f} |")
    return "\n".join(lines)


def best_scale_bits(z: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor) -> float:
    """Bits of (B, C, H, W) latents when each image's channel takes its best log2-scale shift."""
    trials = [priors.discretized_logistic_bits(z, mu, log_scale + d / 8).sum(dim=(2, 3)) for d in range(-4, 5)]
    return float(torch.stack(trials).min(dim=0).values.sum())


if __name__ == "__main__":
    torch.set_num_threads(2)
    tables = [latent_bits_table(name) for name in (sys.argv[1:] or [str(PHOTO_FLOW), "cifar10"])]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latent_bits.md").write_text("\n\n".join(tables) + "\n")
    print("\n\n".join(tables))
