"""The local autoregressive model's research harness: fixed-budget runs, measurements, exports.

    python benchmarks/local_ar.py [--minutes 20] [--kernel 7] [--width 128] [--blocks 2] [--components 10]
        [--exact-ready [--tile-predictor K [--residual-context]]] [--eval-every MIN] [--lr-halflife STEPS]
        [--cooldown-from STEP [--cooldown-halflife STEPS]] [--checkpoint FILE [--init-from MODEL.npz]] [--threads 1]
    python benchmarks/local_ar.py --measure --checkpoint FILE [--full-images] [the run's options]
    python benchmarks/local_ar.py --export models/NAME.npz --checkpoint FILE [the run's options]
    python benchmarks/local_ar.py --files MODEL.npz [--tile N] [--limit N]
    python benchmarks/local_ar.py --decode-time [--kernel 7] [--width 128] [--blocks 2]
    python benchmarks/local_ar.py --table

It answered model v2's question (issue #23): a small model that sees each pixel's decoded
neighbours at full resolution gets more out of each MAC and each CPU hour than the multi-scale flow
did, and every shipped model is now one. The model is NeLLoC's shape: one masked k x k convolution (the pixels
above and to the left within k // 2, never the pixel itself), then residual blocks of 1x1
convolutions, then a mixture of discretised logistics per pixel whose green mean leans on red and
whose blue mean leans on red and green (PixelCNN++'s coupling of a pixel's colours). It is trained
from random weights on random crops of the photographs' training split and measured on held-out
central 128x128 crops (validation split and photos-unseen), by the training path's code length.

``--exact-ready`` trains the codec's own model instead (:class:`icnn_codec.local_ar.LocalAR`: the
same shape in the exact 8-bit arithmetic, one or a few logistics per pixel), which the codec codes
with :mod:`icnn_codec.wavefront`; ``--measure`` gives its held-out figures as that coder's code
lengths as well, and ``--export`` writes a checkpoint's EMA weights as a model file.

``--tile-predictor K`` adapts the means to each image: :class:`TilePredictor`, a linear predictor
from the causal K x K neighbours and the pixel's earlier colours that the encoder fits to the
tile (here: the crop) by least squares and sends (16 bits a coefficient, charged in every figure),
gives the base the network's means correct. ``--residual-context`` also feeds the network the
neighbours' residuals under it (without a tile predictor: under the model's global linear one):
the prediction errors of decoded neighbours, the contexts adaptive classic codecs lean on.

Results: benchmarks/results/local_ar/[x]kK-wW-bB-cC-Nmin.json; docs/ablations.md quotes them.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import RESULTS, SHARED
from torch import nn

import icnn_codec
from icnn_codec.local_ar import LocalAR, causal_mask, edge_logistic_bits
from icnn_codec.mixture import pixel_code_length
from icnn_codec.priors import LogisticTables
from icnn_codec.wavefront import Wavefront, adjustment_bits
from icnn_codec.zoo import save_model
from icnn_codec.training.data import HOLDOUT_EVERY, ImageSet, held_out_crops
from icnn_codec.training.loop import learning_rate
from icnn_codec.training.runs import TrainConfig

FOLDER = RESULTS / "local_ar"
CIFAR10_HOLDOUT_EVERY = 100
HALF_STEP = 1 / 255  # half the distance between two sample values on the [-1, 1] scale


class CausalConv(nn.Conv2d):
    """A k x k convolution that sees only the rows above and the pixels to the left in its own row."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int) -> None:
        super().__init__(channels_in, channels_out, kernel, padding=kernel // 2)
        self.register_buffer("mask", causal_mask(kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class FloatLocalAR(nn.Module):
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

    def bits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Code length in bits of each pixel of uint8-valued (B, 3, H, W) images, (B, H, W)."""
        x = pixels / 127.5 - 1
        return bits_per_pixel(x, self(x), self.components)


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


def local_model(kernel: int, width: int, blocks: int, components: int, exact_ready: bool, tile_predictor: int = 0,
                residual_context: bool = False) -> FloatLocalAR | LocalAR:
    """The float model, or the exact-ready one (``blocks`` then counts its 1x1 layers)."""
    if exact_ready:
        return LocalAR(kernel, width, blocks, components, tile_predictor, residual_context)
    return FloatLocalAR(kernel, width, blocks, components)


@torch.no_grad()
def held_out_bpd(model: FloatLocalAR | LocalAR, crops: torch.Tensor, batch: int = 8) -> float:
    total = 0.0
    for i in range(0, len(crops), batch):
        total += float(model.bits(crops[i : i + batch].permute(0, 3, 1, 2).float()).sum())
    return total / (crops.numel())


def exact_held_out_bpd(model: LocalAR, crops: torch.Tensor) -> tuple[float, float]:
    """What the codec's exact arithmetic and integer tables would write for the crops, in bpd: as the
    model gives the scales, and with the scale offsets and mean shifts the coder chooses for each crop
    (side information); with a tile predictor, its coefficients counted in both."""
    frozen = copy.deepcopy(model)
    frozen.freeze()
    coder = Wavefront(frozen, LogisticTables.build())
    plain = adapted = 0.0
    for crop in crops:
        values = crop.reshape(-1, 3).numpy().astype(np.int64)
        outputs = frozen.exact_outputs(crop.permute(2, 0, 1)[None].double())
        side = frozen.side_bits(*crop.shape[:2])  # the tile predictor, and (adapted) the adjustment
        plain += float(pixel_code_length(values, outputs, coder.tables).sum()) + side
        scale, shift = coder.plane_adjustment(values, outputs)
        adapted += float(pixel_code_length(values, outputs, coder.tables, scale, shift).sum()) + side + adjustment_bits(scale, shift)
    return plain / crops.numel(), adapted / crops.numel()


def train(kernel: int, width: int, blocks: int, components: int, minutes: float, lr: float, batch_size: int,
          crop: int, eval_every: float | None = None, lr_halflife: float | None = None,
          checkpoint: Path | None = None, cifar10: Path | None = None, exact_ready: bool = False, tile_predictor: int = 0,
          residual_context: bool = False, seed: int = 0, init_from: Path | None = None,
          cooldown: tuple[int, float] | None = None) -> dict:
    """Train for ``minutes`` of wall-clock time in all (measuring stops the clock), resuming from and
    saving to ``checkpoint`` (every five minutes) when one is given. Without a checkpoint to resume,
    ``init_from`` (a local AR model file of the same options) gives the starting weights: a run
    continued on a new machine from its last export, with a fresh optimiser and clock. ``cooldown``
    (step, half-life): from that step on the learning rate also halves every half-life (an annealing
    phase, continuous where it starts)."""
    torch.manual_seed(seed)
    if cifar10 is None:
        images, _ = ImageSet.open(SHARED / "data" / "photos" / "train").split_holdout(HOLDOUT_EVERY)
        evals = {k: torch.from_numpy(v) for k, v in held_out_crops(SHARED).items()}
    else:  # held out as `icnn train --holdout-every 100` holds them out
        images, held = ImageSet.open(cifar10).split_holdout(CIFAR10_HOLDOUT_EVERY)
        evals = {"held_out": torch.from_numpy(held.first(None))}
    model = local_model(kernel, width, blocks, components, exact_ready, tile_predictor, residual_context)
    if init_from is not None and not (checkpoint is not None and checkpoint.exists()):
        model.load_state_dict(icnn_codec.load_model(init_from).local_ar.state_dict())
        print(f"started from {init_from}", file=sys.stderr, flush=True)
    ema = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = TrainConfig(lr=lr, warmup=0, lr_halflife=lr_halflife or math.inf,  # icnn train's schedule, no warm-up
                           cooldown_from=cooldown[0] if cooldown else 0, cooldown_halflife=cooldown[1] if cooldown else 1)
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
            group["lr"] = learning_rate(schedule, step)
        loss = model.bits(torch.from_numpy(images.batch(seed, step, batch_size, crop)).permute(0, 3, 1, 2).float()).mean() / 3
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
        ema.bits(plane)
    parallel_ms = (time.perf_counter() - t0) * 1000
    return {"kernel": kernel, "width": width, "blocks": blocks, "components": model.components, "minutes": minutes,
            "lr": lr, "lr_halflife": lr_halflife, "cooldown": cooldown, "batch_size": batch_size, "crop": crop, "steps": step,
            "exact_ready": exact_ready, "tile_predictor": tile_predictor, "residual_context": residual_context,
            "data": "photos" if cifar10 is None else "cifar10", **{f"{k}_bpd": held_out_bpd(ema, v) for k, v in evals.items()},
            "mac_per_pixel": ema.mac_per_pixel(), "parallel_forward_ms_256": parallel_ms,
            "parameters": sum(p.numel() for p in ema.parameters()), "curve": curve,
            **({f"{k}_bpd_exact{suffix}": bpd for k, v in evals.items()
                for suffix, bpd in zip(("", "_offsets"), exact_held_out_bpd(ema, v))} if exact_ready and not tile_predictor else {})}


@torch.no_grad()
def wavefront_decode_ms(model: FloatLocalAR, planes: int = 1, side: int = 256) -> float:
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


def bench_sets() -> dict[str, dict[str, np.ndarray]]:
    """The photographs of the three benchmark sets that `icnn bench` compares codecs on (photo_val.py,
    photos.py, photos_unseen.py), by the names their results files give them."""
    from photos import photos
    _, held = ImageSet.open(SHARED / "data" / "photos" / "train").split_holdout(HOLDOUT_EVERY)
    unseen = ImageSet.open(SHARED / "data" / "photos-unseen")
    stem = lambda names: [n.rsplit(".", 1)[0] for n in names]  # noqa: E731
    return {"photo_val": dict(zip(stem(held.names), held.images)), "photos": photos(),
            "photos_unseen": dict(zip(stem(unseen.names), unseen.images))}


@torch.no_grad()
def full_image_bits(model: LocalAR, image: np.ndarray) -> float:
    """An exact-ready model's code length for a whole (H, W, 3) image in bits by the training path:
    the best scale offset for it (every 2/8 from -1 to 3), its side information counted."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    mu, log2_s, logits = model.parameters_of(x)
    best = math.inf
    for offset in range(-8, 25, 2):
        bits = edge_logistic_bits(x.unsqueeze(1), mu, log2_s + offset / 8).sum(2)
        if logits is not None:
            log2_w = torch.log_softmax(logits * math.log(2.0), dim=1) / math.log(2.0)
            bits = -torch.logsumexp((log2_w - bits) * math.log(2.0), dim=1, keepdim=True) / math.log(2.0)
        best = min(best, float(bits.sum()) + adjustment_bits(np.full(3, offset), np.zeros(3, dtype=np.int64)))
    return best + model.side_bits(*image.shape[:2])


def last_bench(name: str) -> tuple[list[str], dict[str, list[int]]]:
    """A benchmark set's image names and each codec's file sizes, from its last results."""
    bench = json.loads((RESULTS / f"{name}.json").read_text())["datasets"][0]
    return bench["image_names"], {r["codec"]: r["image_bytes"] for r in bench["results"] if r.get("image_bytes")}


def full_image_figures(model: LocalAR) -> dict:
    """bpd of the benchmark sets' whole photographs, against JPEG XL's and the shipped photo model's
    files in the sets' last benchmark results."""
    figures = {}
    for name, images in bench_sets().items():
        image_names, files = last_bench(name)
        totals = {"model": 0.0, "jpegxl": 0.0, "icnn:photo": 0.0}
        dims = 0
        for i, image_name in enumerate(image_names):
            image = np.asarray(images[image_name.rsplit(".", 1)[0]])
            totals["model"] += full_image_bits(model, image)
            for codec in ("jpegxl", "icnn:photo"):
                totals[codec] += 8 * files[codec][i]
            dims += image.size
            print(f"{name} {image_name}: {totals['model'] / dims:.4f} so far", file=sys.stderr, flush=True)
        figures[name] = {k: v / dims for k, v in totals.items()}
    return figures


def coded_figures(model_file: Path, tile: int | None = None, limit: int | None = None, batch: int = 8) -> dict:
    """The benchmark sets' whole photographs coded by the codec with a local AR model file (every tile
    coded both ways, as `icnn compress` does), every decode checked: bpd of the real files and the
    speeds, against JPEG XL's and the shipped photo model's files in the sets' last benchmark results."""
    model = icnn_codec.load_model(model_file)
    figures = {}
    for name, images in bench_sets().items():
        image_names, files = last_bench(name)
        names = image_names[:limit]
        pixels = [np.ascontiguousarray(images[n.rsplit(".", 1)[0]]) for n in names]
        coded, seconds = [], {"encode": 0.0, "decode": 0.0}
        for i in range(0, len(pixels), batch):
            part = pixels[i : i + batch]
            t0 = time.perf_counter()
            streams = icnn_codec.compress_many(part, model=model, tile=tile)
            t1 = time.perf_counter()
            back = icnn_codec.decompress_many(streams, model=model)
            seconds["encode"] += t1 - t0
            seconds["decode"] += time.perf_counter() - t1
            if not all(np.array_equal(a, b) for a, b in zip(part, back)):
                raise SystemExit(f"{name}: a decode was not exact")
            coded += [len(s) for s in streams]
            print(f"{name}: {i + len(part)} of {len(pixels)}, {8 * sum(coded) / sum(p.size for p in pixels[: len(coded)]):.4f} bpd",
                  file=sys.stderr, flush=True)
        dims = sum(p.size for p in pixels)
        figures[name] = {"images": len(names), "model": 8 * sum(coded) / dims,
                         **{c: 8 * sum(files[c][: len(names)]) / dims for c in ("jpegxl", "icnn:photo")},
                         "encode_mb_s": dims / 1e6 / seconds["encode"], "decode_mb_s": dims / 1e6 / seconds["decode"],
                         "exact": True, "image_names": names, "image_bytes": coded}
    return figures


def checkpoint_model(args: argparse.Namespace, exact_ready: bool) -> tuple[FloatLocalAR | LocalAR, dict]:
    """The model of the run's options with a checkpoint's EMA weights, and the checkpoint."""
    model = local_model(args.kernel, args.width, args.blocks, args.components, exact_ready, args.tile_predictor,
                        args.residual_context)
    saved = torch.load(args.checkpoint)
    model.load_state_dict(saved["ema"])
    return model, saved


def table() -> str:
    """Every saved run, photographs first; a run measured along the way has a row for each measurement.
    Exact-ready runs measured at the end also have the coder's code lengths, with a scale offset per crop."""
    rows = [json.loads(p.read_text()) for p in sorted(FOLDER.glob("*k*-w*min*.json"))]
    lines = ["| data | form | kernel | width | blocks | logistics | minutes | steps | val bpd (CIFAR-10: held out) | "
             "unseen bpd | as coded, offsets: val / unseen | MAC/pixel | parameters |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["data"], r.get("exact_ready", False), r["mac_per_pixel"], r["components"])):
        for point in [*r["curve"], r]:
            first = point.get("val_bpd", point.get("held_out_bpd"))
            unseen = f"{point['unseen_bpd']:.4f}" if "unseen_bpd" in point else ""
            coded = f"{point['val_bpd_exact_offsets']:.4f} / {point['unseen_bpd_exact_offsets']:.4f}" \
                if "val_bpd_exact_offsets" in point else ""
            form = "exact 8-bit" if r.get("exact_ready") else "float"
            if r.get("tile_predictor"):
                form += f", tile predictor {r['tile_predictor']}x{r['tile_predictor']}"
            if r.get("residual_context"):
                form += ", residuals"
            lines.append(f"| {r['data']} | {form} | {r['kernel']} | "
                         f"{r['width']} | {r['blocks']} | {r['components']} | {point['minutes']:g} | {point['steps']} | "
                         f"{first:.4f} | {unseen} | {coded} | {r['mac_per_pixel']:,} | {r['parameters']:,} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--kernel", type=int, default=7)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=2, help="residual blocks (with --exact-ready: 1x1 layers)")
    parser.add_argument("--components", type=int, default=10, help="logistics in each pixel's mixture")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr-halflife", type=float, help="halve the learning rate every this many steps")
    parser.add_argument("--cooldown-from", type=int, default=0, metavar="STEP",
                        help="from this step on, also halve the learning rate every --cooldown-halflife steps")
    parser.add_argument("--cooldown-halflife", type=float, default=2500.0)
    parser.add_argument("--checkpoint", type=Path, help="resume from this file if it exists, and save to it")
    parser.add_argument("--cifar10", type=Path, help="train on this CIFAR-10 .npz instead, measured on every 100th image")
    parser.add_argument("--eval-every", type=float, help="also measure the held-out crops every this many minutes")
    parser.add_argument("--decode-time", action="store_true",
                        help="time the networks of a pixel-by-pixel decoder of this architecture instead of training it")
    parser.add_argument("--exact-ready", action="store_true",
                        help="the model in the codec's exact 8-bit arithmetic, its parameters on the codec's grids")
    parser.add_argument("--measure", action="store_true",
                        help="measure the --checkpoint's EMA weights on the held-out crops (exact-ready: as coded too) "
                             "and save the figures as the run's result")
    parser.add_argument("--tile-predictor", type=int, default=0, metavar="K",
                        help="with --exact-ready: each crop's own least-squares predictor from its causal K x K neighbours "
                        "gives the means' base (side information)")
    parser.add_argument("--residual-context", action="store_true",
                        help="the network also sees the neighbours' residuals under the tile predictor (without one: "
                        "under the model's global linear predictor)")
    parser.add_argument("--full-images", action="store_true",
                        help="with --measure: also the whole photographs of photo_val, photos and photos_unseen, "
                        "against JPEG XL's files in their last benchmark results")
    parser.add_argument("--export", type=Path, metavar="FILE", help="write the --checkpoint's EMA weights (exact-ready) "
                        "into this model file, named by its stem")
    parser.add_argument("--files", type=Path, metavar="MODEL",
                        help="code the benchmark sets' whole photographs with this local AR model file through the codec "
                        "(real files, every decode checked)")
    parser.add_argument("--tile", type=int, help="with --files: this tile side (default: the codec's)")
    parser.add_argument("--limit", type=int, help="with --files: only the first N photographs of each set")
    parser.add_argument("--init-from", type=Path, metavar="MODEL",
                        help="with --exact-ready and no checkpoint to resume: start from this local AR model file")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    name = (f"{'x' if args.exact_ready else ''}k{args.kernel}-w{args.width}-b{args.blocks}-c{args.components}"
            f"{f'-tp{args.tile_predictor}' if args.tile_predictor else ''}{'-rc' if args.residual_context else ''}"
            f"{f'-crop{args.crop}-bs{args.batch_size}' if (args.crop, args.batch_size) != (64, 16) and not args.cifar10 else ''}")
    if args.table:
        print(table())
    elif args.files:
        torch.set_num_threads(args.threads)
        figures = {"model_file": args.files.name, "fingerprint": f"{icnn_codec.load_model(args.files).fingerprint:04x}",
                   "tile": args.tile, "sets": coded_figures(args.files, args.tile, args.limit)}
        FOLDER.mkdir(parents=True, exist_ok=True)
        suffix = (f"-tile{args.tile}" if args.tile else "") + (f"-first{args.limit}" if args.limit else "")
        (FOLDER / f"files-{args.files.stem}{suffix}.json").write_text(json.dumps(figures, indent=1) + "\n")
        print(json.dumps(figures))
    elif args.export:
        model, saved = checkpoint_model(args, exact_ready=True)
        training = {"run": args.checkpoint.stem, "steps": saved["step"], "minutes": round(saved["seconds"] / 60),
                    "trained_on": ("the CIFAR-10 training images less every 100th (benchmarks/local_ar.py --cifar10)"
                                   if args.cifar10 else
                                   f"random {args.crop}x{args.crop} crops of the photographs' training split "
                                   "(benchmarks/local_ar.py)"),
                    "curve": saved["curve"]}
        save_model(model, args.export, args.export.stem, LogisticTables.build(), training)
        print(f"{args.checkpoint} -> {args.export}")
    elif args.measure:
        torch.set_num_threads(args.threads)
        model, saved = checkpoint_model(args, args.exact_ready)
        minutes = round(saved["seconds"] / 60)
        figures = {"kernel": args.kernel, "width": args.width, "blocks": args.blocks, "components": model.components,
                   "tile_predictor": args.tile_predictor, "residual_context": args.residual_context,
                   "minutes": minutes, "steps": saved["step"], "exact_ready": args.exact_ready, "data": "photos",
                   "mac_per_pixel": model.mac_per_pixel(), "parameters": sum(p.numel() for p in model.parameters()),
                   "curve": saved["curve"]}
        for k, v in {k: torch.from_numpy(v) for k, v in held_out_crops(SHARED).items()}.items():
            figures[f"{k}_bpd"] = held_out_bpd(model, v)
            if args.exact_ready:
                figures[f"{k}_bpd_exact"], figures[f"{k}_bpd_exact_offsets"] = exact_held_out_bpd(model, v)
        if args.full_images:
            figures["full_images"] = full_image_figures(model)
        FOLDER.mkdir(parents=True, exist_ok=True)
        (FOLDER / f"{name}-{minutes}min.json").write_text(json.dumps(figures, indent=1) + "\n")
        print(json.dumps(figures))
    elif args.decode_time:
        torch.set_num_threads(args.threads)
        model = FloatLocalAR(args.kernel, args.width, args.blocks, args.components)
        timing = {"kernel": args.kernel, "width": args.width, "blocks": args.blocks, "components": args.components,
                  "mac_per_pixel": model.mac_per_pixel(), "threads": args.threads,
                  **{f"wavefront_ms_256_planes{n}": min(wavefront_decode_ms(model, n) for _ in range(2)) for n in (1, 8)}}
        FOLDER.mkdir(parents=True, exist_ok=True)
        (FOLDER / f"decode-{name}.json").write_text(json.dumps(timing, indent=1) + "\n")
        print(json.dumps(timing))
    else:
        torch.set_num_threads(args.threads)
        result = train(args.kernel, args.width, args.blocks, args.components, args.minutes, args.lr, args.batch_size, args.crop,
                       args.eval_every, args.lr_halflife, args.checkpoint, args.cifar10, args.exact_ready,
                       args.tile_predictor, args.residual_context, init_from=args.init_from,
                       cooldown=(args.cooldown_from, args.cooldown_halflife) if args.cooldown_from else None)
        FOLDER.mkdir(parents=True, exist_ok=True)
        path = FOLDER / f"{name}-{args.minutes:g}min{'-cifar10' if args.cifar10 else ''}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result))
