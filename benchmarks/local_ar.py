"""A local autoregressive model, trained for a fixed budget beside the flow's harness.

    python benchmarks/local_ar.py [--minutes 20] [--kernel 7] [--width 128] [--blocks 2] [--components 10]
        [--eval-every MIN] [--lr-halflife STEPS] [--checkpoint FILE] [--threads 1]
    python benchmarks/local_ar.py --decode-time [--kernel 7] [--width 128] [--blocks 2]
    python benchmarks/local_ar.py --table

The question it answers for model v2 (issue #23): is the multi-scale flow the family to train,
or does a small model that sees each pixel's decoded neighbours at full resolution get more out of
each MAC and each CPU hour? The model is NeLLoC's shape: one masked k x k convolution (the pixels
above and to the left within k // 2, never the pixel itself), then residual blocks of 1x1
convolutions, then a mixture of discretised logistics per pixel whose green mean leans on red and
whose blue mean leans on red and green (PixelCNN++'s coupling of a pixel's colours). It is trained
from random weights on the same crops as `benchmarks/ablate.py` and measured on the same held-out
central 128x128 crops (validation split and photos-unseen), by the training path's code length: a
figure to set beside the harness's rows, not a codec (there is no exact table or decoder for it).

Results: benchmarks/results/local_ar/kK-wW-bB-cC-Nmin.json; docs/ablations.md quotes them.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import RESULTS, SHARED
from torch import nn

from icnn_codec.training.ablation import HOLDOUT_EVERY, held_out_crops
from icnn_codec.training.data import ImageSet

FOLDER = RESULTS / "local_ar"
CIFAR10_HOLDOUT_EVERY = 100
HALF_STEP = 1 / 255  # half the distance between two sample values on the [-1, 1] scale


class CausalConv(nn.Conv2d):
    """A k x k convolution that sees only the rows above and the pixels to the left in its own row."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int) -> None:
        super().__init__(channels_in, channels_out, kernel, padding=kernel // 2)
        mask = torch.zeros(kernel, kernel)
        mask[: kernel // 2] = 1
        mask[kernel // 2, : kernel // 2] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class LocalAR(nn.Module):
    """Mixture parameters for every pixel from its causal k x k neighbourhood."""

    def __init__(self, kernel: int = 7, width: int = 128, blocks: int = 2, components: int = 10) -> None:
        super().__init__()
        self.components = components
        self.first = CausalConv(3, width, kernel)
        self.blocks = nn.ModuleList(nn.Sequential(nn.ELU(), nn.Conv2d(width, width, 1), nn.ELU(), nn.Conv2d(width, width, 1))
                                    for _ in range(blocks))
        self.head = nn.Sequential(nn.ELU(), nn.Conv2d(width, 10 * components, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)

    def mac_per_pixel(self) -> int:
        width = self.first.out_channels
        first = int(self.first.mask.sum()) * 3 * width
        return first + len(self.blocks) * 2 * width * width + width * 10 * self.components


def bits_per_pixel(x: torch.Tensor, params: torch.Tensor, components: int) -> torch.Tensor:
    """Code length in bits of each pixel's three samples (x on [-1, 1], (B, 3, H, W)) under the mixture."""
    b, _, h, w = x.shape
    logits = params[:, :components]
    p = params[:, components:].reshape(b, 9, components, h, w)
    means, log_scales, coeffs = p[:, 0:3], p[:, 3:6].clamp(min=-7.0), torch.tanh(p[:, 6:9])
    xs = x.unsqueeze(2)
    means = torch.stack([means[:, 0], means[:, 1] + coeffs[:, 0] * xs[:, 0],
                         means[:, 2] + coeffs[:, 1] * xs[:, 0] + coeffs[:, 2] * xs[:, 1]], dim=1)
    centred = xs - means
    inv_scale = torch.exp(-log_scales)
    upper, lower = inv_scale * (centred + HALF_STEP), inv_scale * (centred - HALF_STEP)
    log_cdf_upper = upper - F.softplus(upper)  # the lowest value takes the whole lower tail
    log_sf_lower = -F.softplus(lower)  # the highest the whole upper tail
    mass = torch.sigmoid(upper) - torch.sigmoid(lower)
    middle = inv_scale * centred
    log_density = middle - log_scales - 2 * F.softplus(middle) + math.log(HALF_STEP * 2)  # where mass underflows
    log_mass = torch.where(mass > 1e-5, torch.log(mass.clamp(min=1e-12)), log_density)
    log_p = torch.where(xs < -0.999, log_cdf_upper, torch.where(xs > 0.999, log_sf_lower, log_mass))
    log_mix = log_p.sum(1) + F.log_softmax(logits, dim=1)
    return -torch.logsumexp(log_mix, dim=1) / math.log(2)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) on [-1, 1]."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def held_out_bpd(model: LocalAR, crops: torch.Tensor, batch: int = 8) -> float:
    total = 0.0
    for i in range(0, len(crops), batch):
        x = to_unit(crops[i : i + batch])
        total += float(bits_per_pixel(x, model(x), model.components).sum())
    return total / (crops.numel())


def train(kernel: int, width: int, blocks: int, components: int, minutes: float, lr: float, batch_size: int,
          crop: int, eval_every: float | None = None, lr_halflife: float | None = None,
          checkpoint: Path | None = None, cifar10: Path | None = None, seed: int = 0) -> dict:
    """Train for ``minutes`` of wall-clock time in all (measuring stops the clock), resuming from and
    saving to ``checkpoint`` (every five minutes) when one is given."""
    torch.manual_seed(seed)
    if cifar10 is None:
        images, _ = ImageSet.open(SHARED / "data" / "photos" / "train").split_holdout(HOLDOUT_EVERY)
        evals = {k: torch.from_numpy(v) for k, v in held_out_crops(SHARED).items()}
    else:  # held out as `icnn train --holdout-every 100` holds them out
        images, held = ImageSet.open(cifar10).split_holdout(CIFAR10_HOLDOUT_EVERY)
        evals = {"held_out": torch.from_numpy(held.first(None))}
    model = LocalAR(kernel, width, blocks, components)
    ema = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    step, curve, trained = 0, [], 0.0
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint)
        model.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["optimizer"])
        step, curve, trained = saved["step"], saved["curve"], saved["seconds"]
        print(f"resumed at step {step}, {trained / 60:.1f} min trained", file=sys.stderr, flush=True)
    start, saved_at = time.monotonic() - trained, time.monotonic()

    def save() -> None:
        if checkpoint is not None:
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(), "step": step,
                        "curve": curve, "seconds": time.monotonic() - start}, checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)

    while time.monotonic() - start < minutes * 60:
        elapsed = time.monotonic() - start
        if eval_every and elapsed >= (len(curve) + 1) * eval_every * 60:  # the clock stops while it measures
            curve.append({"minutes": (len(curve) + 1) * eval_every, "steps": step,
                          **{f"{k}_bpd": held_out_bpd(ema, v) for k, v in evals.items()}})
            print(f"held out after {curve[-1]['minutes']:g} min: {curve[-1]}", file=sys.stderr, flush=True)
            start = time.monotonic() - elapsed
        if time.monotonic() - saved_at > 300:
            save()
            saved_at = time.monotonic()
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 ** (step / lr_halflife) if lr_halflife else lr
        x = to_unit(torch.from_numpy(images.batch(seed, step, batch_size, crop)))
        loss = bits_per_pixel(x, model(x), model.components).mean() / 3
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for e, p in zip(ema.parameters(), model.parameters()):
                e.mul_(decay).add_(p, alpha=1 - decay)
        step += 1
        if step % 100 == 0:
            print(f"step {step}  {time.monotonic() - start:.0f} s  train bpd {loss.item():.4f}", file=sys.stderr, flush=True)
    save()
    plane = torch.zeros(1, 3, 256, 256)
    t0 = time.perf_counter()
    with torch.no_grad():
        ema(plane)
    parallel_ms = (time.perf_counter() - t0) * 1000
    return {"kernel": kernel, "width": width, "blocks": blocks, "components": model.components, "minutes": minutes,
            "lr": lr, "lr_halflife": lr_halflife, "batch_size": batch_size, "crop": crop, "steps": step,
            "data": "photos" if cifar10 is None else "cifar10", **{f"{k}_bpd": held_out_bpd(ema, v) for k, v in evals.items()},
            "mac_per_pixel": ema.mac_per_pixel(), "parallel_forward_ms_256": parallel_ms,
            "parameters": sum(p.numel() for p in ema.parameters()), "curve": curve}


@torch.no_grad()
def wavefront_decode_ms(model: LocalAR, planes: int = 1, side: int = 256) -> float:
    """Milliseconds for the networks of a decoder that runs the model pixel by pixel, as a decoder must:
    a pixel needs the ones above it within k // 2 columns and the ones left of it, so the pixels on
    one line x + (k // 2 + 1) y = t need only earlier lines and are decoded together (side +
    (k // 2 + 1)(side - 1) lines a plane, ``planes`` planes in one batch). The coder's calls and the
    exact arithmetic are not counted: a lower bound on what decoding this model would cost."""
    k = model.first.kernel_size[0]
    r = k // 2
    taps = model.first.mask.flatten().nonzero().squeeze(1)
    first = (model.first.weight.flatten(2)[:, :, taps]).flatten(1)  # (width, 3 * taps)
    canvas = torch.zeros(planes, 3, side + r, side + 2 * r)
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    line = (xs + (r + 1) * ys).flatten()
    order = torch.argsort(line, stable=True)
    bounds = torch.searchsorted(line[order], torch.arange(int(line.max()) + 2))
    dy, dx = taps // k, taps % k
    pixels = torch.rand(planes, 3, side, side) * 2 - 1
    t0 = time.perf_counter()
    for t in range(len(bounds) - 1):
        pos = order[bounds[t]:bounds[t + 1]]
        y, x = pos // side, pos % side
        patch = canvas[:, :, y[:, None] + dy, x[:, None] + dx]  # (planes, 3, n, taps), rows from r above
        h = F.linear(patch.permute(0, 2, 1, 3).flatten(2), first, model.first.bias)
        for block in model.blocks:
            h = h + F.linear(F.elu(F.linear(F.elu(h), block[1].weight.flatten(1), block[1].bias)),
                             block[3].weight.flatten(1), block[3].bias)
        F.linear(F.elu(h), model.head[1].weight.flatten(1), model.head[1].bias)
        canvas[:, :, y + r, x + r] = pixels[:, :, y, x]  # the decoded values would go here
    return (time.perf_counter() - t0) * 1000


def table() -> str:
    """Every saved run, photographs first; a run measured along the way has a row for each measurement."""
    rows = [json.loads(p.read_text()) for p in sorted(FOLDER.glob("k*.json"))]
    lines = ["| data | kernel | width | blocks | logistics | minutes | steps | val bpd (CIFAR-10: held out) | unseen bpd | "
             "MAC/pixel | parameters |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["data"], r["mac_per_pixel"])):
        for point in [*r["curve"], r]:
            first = point.get("val_bpd", point.get("held_out_bpd"))
            unseen = f"{point['unseen_bpd']:.4f}" if "unseen_bpd" in point else ""
            lines.append(f"| {r['data']} | {r['kernel']} | {r['width']} | {r['blocks']} | {r['components']} | "
                         f"{point['minutes']:g} | {point['steps']} | {first:.4f} | {unseen} | {r['mac_per_pixel']:,} | "
                         f"{r['parameters']:,} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--kernel", type=int, default=7)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--components", type=int, default=10, help="logistics in each pixel's mixture")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr-halflife", type=float, help="halve the learning rate every this many steps")
    parser.add_argument("--checkpoint", type=Path, help="resume from this file if it exists, and save to it")
    parser.add_argument("--cifar10", type=Path, help="train on this CIFAR-10 .npz instead, measured on every 100th image")
    parser.add_argument("--eval-every", type=float, help="also measure the held-out crops every this many minutes")
    parser.add_argument("--decode-time", action="store_true",
                        help="time the networks of a pixel-by-pixel decoder of this architecture instead of training it")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    name = f"k{args.kernel}-w{args.width}-b{args.blocks}-c{args.components}"
    if args.table:
        print(table())
    elif args.decode_time:
        torch.set_num_threads(args.threads)
        model = LocalAR(args.kernel, args.width, args.blocks, args.components)
        timing = {"kernel": args.kernel, "width": args.width, "blocks": args.blocks, "components": args.components,
                  "mac_per_pixel": model.mac_per_pixel(), "threads": args.threads,
                  **{f"wavefront_ms_256_planes{n}": min(wavefront_decode_ms(model, n) for _ in range(2)) for n in (1, 8)}}
        FOLDER.mkdir(parents=True, exist_ok=True)
        (FOLDER / f"decode-{name}.json").write_text(json.dumps(timing, indent=1) + "\n")
        print(json.dumps(timing))
    else:
        torch.set_num_threads(args.threads)
        result = train(args.kernel, args.width, args.blocks, args.components, args.minutes, args.lr, args.batch_size, args.crop,
                       args.eval_every, args.lr_halflife, args.checkpoint, args.cifar10)
        FOLDER.mkdir(parents=True, exist_ok=True)
        path = FOLDER / f"{name}-{args.minutes:g}min{'-cifar10' if args.cifar10 else ''}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result))
