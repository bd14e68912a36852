"""Post-training conversion of a model of file version 1 (12-bit weights, 14-bit activations, float64
arithmetic) into the exact 8-bit scheme of ``quant.py`` (file version 2), without training.

The float weights a version-1 file stands for are kept; what changes is their quantisation: weights
to |W| <= 64 per output channel (heads: 13-bit split weights), the latents' clamp to +-255, and each
hidden layer's uint8 activation grid 2**-f, chosen here by *calibration*: the f in 1..8 whose
``clamp(round(y 2**f), 0, 255) / 2**f`` has the least squared error on that layer's outputs over
training images (the version-1 network's own activations, on its 1/64 grid).

    python -m icnn_codec.training.convert OLD.npz NEW.npz --photos DIR [--grey] [--crops 36]
    python -m icnn_codec.training.convert OLD.npz NEW.npz --cifar DIR
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..flow import FlowConfig, IntegerFlow
from ..planes import training_input
from ..priors import LogisticTables
from ..quant import HIDDEN_MAX, MAX_FRAC, MIN_FRAC
from ..zoo import save_model
from .data import ImageSet

V1_FRAC = 6  # version 1: every network input and hidden activation on a 1/64 grid ...
V1_HIDDEN_MAX = 2**14 - 1  # ... hidden ones up to 256
SAMPLES_PER_BATCH = 100_000  # activations kept per layer and calibration batch


def read_version1(path: str | Path) -> tuple[IntegerFlow, LogisticTables, dict]:
    """A version-1 model file as a float flow (weights = what its integers stand for), its tables, its meta."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    if meta.get("version") != 1:
        raise ValueError(f"{path}: model file version {meta.get('version')}, not 1")
    flow = IntegerFlow(FlowConfig.from_dict(meta["config"]))
    with torch.no_grad():
        for i, conv in enumerate(flow.qconvs()):
            w = torch.from_numpy(arrays[f"conv{i}.w"].astype(np.float64))
            e = torch.from_numpy(arrays[f"conv{i}.e"].astype(np.float64))
            b = torch.from_numpy(arrays[f"conv{i}.b"].astype(np.float64))
            conv.conv.weight.copy_(w / torch.pow(2.0, e).view(-1, 1, 1, 1))
            conv.conv.bias.copy_(b / torch.pow(2.0, e + V1_FRAC))
    flow.top.load_integer_parameters(arrays["top.mu16"].astype(np.float64), arrays["top.ls8"].astype(np.float64))
    return flow, LogisticTables(arrays["tables.counts"], arrays["tables.offsets"]), meta


def best_frac(samples: torch.Tensor) -> int:
    """The uint8 grid 2**-f with the least squared error on ``samples`` (ties: the finer grid)."""
    errors = {f: float(((torch.clamp(torch.round(samples * 2**f), 0, HIDDEN_MAX) / 2**f - samples) ** 2).mean())
              for f in range(MIN_FRAC, MAX_FRAC + 1)}
    return min(sorted(errors, reverse=True), key=errors.get)


def calibrate(flow: IntegerFlow, batches: list[np.ndarray]) -> list[list[int]]:
    """Set every hidden layer's activation grid from its outputs on ``batches`` (image planes) in the
    version-1 arithmetic's activations; returns the grids chosen, per network."""
    nets = flow.qnets()
    for net in nets:  # version 1's activations while sampling: 1/64 grid up to 256
        net.set_hidden_fracs([V1_FRAC] * len(net.body))
        for layer in net.body:
            layer.out_hi.fill_(V1_HIDDEN_MAX)
    samples: dict[int, list[torch.Tensor]] = defaultdict(list)
    gen = torch.Generator().manual_seed(0)

    def keep(module, _inputs, out):
        t = out.detach().flatten()
        samples[id(module)].append(t[torch.randint(0, t.numel(), (min(t.numel(), SAMPLES_PER_BATCH),), generator=gen)])

    hooks = [layer.register_forward_hook(keep) for net in nets for layer in net.body]
    try:
        with torch.no_grad():
            for batch in batches:
                flow.nll_bits(training_input(batch))
    finally:
        for h in hooks:
            h.remove()
    chosen = []
    for net in nets:
        for layer in net.body:
            layer.out_hi.fill_(HIDDEN_MAX)
        fracs = [best_frac(torch.cat(samples[id(layer)])) for layer in net.body]
        net.set_hidden_fracs(fracs)
        chosen.append(fracs)
    return chosen


def convert(old: str | Path, new: str | Path, calibration: np.ndarray, how: str, batch: int = 9) -> Path:
    """Convert the version-1 model file ``old`` into ``new`` (the 8-bit scheme), calibrated on
    ``calibration`` (N, H, W, 3 uint8 planes); ``how`` says what the images were, for the model's record."""
    flow, tables, meta = read_version1(old)
    fracs = calibrate(flow, [calibration[i : i + batch] for i in range(0, len(calibration), batch)])
    counts = {f: sum(fs.count(f) for fs in fracs) for f in range(MIN_FRAC, MAX_FRAC + 1) if any(f in fs for fs in fracs)}
    training = {
        "converted": {
            "from": f"{meta.get('name', '?')} (model file version 1: 12-bit weights, float64 arithmetic)",
            "how": "post-training quantisation to the exact 8-bit scheme, no training: weights |W| <= 64 per output "
                   "channel (heads 13-bit, split), latents clamped to +-255, uint8 activations on a per-layer grid "
                   "2**-f chosen by least squared error on calibration images (icnn_codec/training/convert.py)",
            "calibration": how,
            "activation_grids": {f"2**-{f}": n for f, n in counts.items()},
        },
        "before": meta.get("training", {}),
    }
    return save_model(flow, new, meta.get("name", Path(new).stem), tables, training)


def photo_crops(folder: str | Path, n: int, size: int = 128, grey: bool = False) -> tuple[np.ndarray, str]:
    """Central crops of ``n`` training photos (every 10th file is held out, as in training), spread evenly."""
    kept, _ = ImageSet.open(folder).split_holdout(10)
    pick = kept._take([int(i) for i in np.linspace(0, len(kept) - 1, n)])
    if grey:
        pick = pick.as_grey_planes()
    kind = "grey planes of " if grey else ""
    return pick.center_crops(size), f"{kind}central {size}x{size} crops of {n} training photos of {folder} " \
                                     f"(every 10th file held out, the rest sampled evenly)"


def cifar_images(folder: str | Path, n: int) -> tuple[np.ndarray, str]:
    """The first ``n`` CIFAR-10 training images (sheet 0 of ``folder``/train)."""
    sheet = np.asarray(Image.open(Path(folder) / "train" / "sheet00.webp").convert("RGB"))
    images = sheet.reshape(25, 32, 40, 32, 3).transpose(0, 2, 1, 3, 4).reshape(1000, 32, 32, 3)
    return np.ascontiguousarray(images[:n]), f"the first {n} CIFAR-10 training images"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--photos", help="folder of training photos")
    source.add_argument("--cifar", help="the CIFAR-10 folder (train/sheet00.webp)")
    parser.add_argument("--grey", action="store_true", help="calibrate on grey planes")
    parser.add_argument("--crops", type=int, default=36)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.photos:
        images, how = photo_crops(args.photos, args.crops, grey=args.grey)
        batch = 9
    else:
        images, how = cifar_images(args.cifar, 16 * args.crops)
        batch = 64
    path = convert(args.old, args.new, images, how, batch)
    print(f"{path}: converted ({how})")


if __name__ == "__main__":
    main()
