"""Fixed-budget ablations: every variant trained for the same wall-clock time from one common start.

A variant is a change of the flow's architecture that :func:`~icnn_codec.training.surgery.grow_from`
can make to a trained model so that the grown model codes (nearly) as the start did. Each run:

1. grows the variant from the start model (an installed model, a model file or a run folder);
2. measures the start's held-out bpd, then trains for ``minutes`` of wall-clock time (one process,
   ``threads`` torch threads; two variants can run side by side on a 2-core machine);
3. measures the EMA weights' bpd on the held-out crops: the central 128x128 crops of the photo
   set's hold-out split (every 10th photograph) and of ``photos-unseen`` (other sources:
   validation only, never trained on);
4. counts the networks' multiply-accumulates per pixel and times the exact path's networks
   (a 256x256 plane: what a decode spends on arithmetic, without the entropy coder).

The loss is the training path's code length, which the exact coder achieves up to its tables'
quantisation, so variants that have no exact coder yet (mixtures) are measured the same way.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..flow import FlowConfig, IntegerFlow
from ..layers import LiftingMix
from ..quant import QConv2d
from .data import ImageSet
from .loop import NegLogLikelihood, Processes, TrainState, evaluate_bpd, learning_rate, train_step
from .runs import TrainConfig, resolve_flow, resolve_model
from .surgery import grow_from, warm_start

HOLDOUT_EVERY = 10  # the photo model's validation split (benchmarks/photo_val.py)
EVAL_CROP = 128


@dataclass(frozen=True)
class Variant:
    description: str
    flow: dict = field(default_factory=dict)  # FlowConfig fields that differ from the start's
    # True: a small architecture trained from random weights (``SMALL`` with ``flow``'s changes), for
    # designs that cannot be grown from a trained model; compared with each other, not with the start.
    scratch: bool = False
    # A learning rate: a design the start cannot be grown into with the same code (a colour stage changes
    # every latent), started warm instead: the start's weights copied wherever they fit
    # (:func:`~icnn_codec.training.surgery.warm_start`), every parameter trained at this rate. Its change
    # is measured against the start model itself.
    warm_lr: float | None = None


# The small design the from-scratch variants change: about 30 k MAC per pixel, as the 8-bit issue's budget.
SMALL = {"levels": 3, "couplings": 2, "hidden": 48, "prior_hidden": 48, "prior_groups": 2, "top_context": True,
         "checkerboard": True}
SCRATCH_LR = 1e-3
GROWN_LR = 5e-5  # a grown variant's carried-over weights (its new parts: ``new_lr``)


VARIANTS: dict[str, Variant] = {
    "baseline": Variant("the start's architecture, trained on (the reference every variant is compared with)"),
    "mixture3": Variant("three-logistic mixtures in every conditional prior", {"mixtures": 3}),
    "error-context": Variant("later passes also see decoded groups' residuals z - floor(mu) and scales",
                             {"error_context": True}),
    "lifting": Variant("learned integer lifting 1x1 mixing instead of channel flips", {"mixing": "lifting"}),
    "couplings+2": Variant("two more additive couplings per level", {"couplings": "+2"}),
    "groups4": Variant("four channel groups per level instead of two (2, 1, 2, 1 at level 1): each group's "
                       "second part given its first", {"prior_groups": 4}),
    "volume-preserving": Variant("volume-preserving integer affine couplings: channel pairs scaled by K and 1/K "
                                 "(rounded lifting steps) before the translation", {"coupling": "volume-preserving"}),
    "quadrants1": Variant("level 1 codes each checkerboard half in two passes: a 2x2 block's four positions in turn",
                          {"quadrant_levels": 1}),
    "colour-warm": Variant("the start's architecture after a learned colour stage (YCoCg-R at first), every "
                           "network's weights copied from the start", {"colour_stage": True}, warm_lr=3e-4),
    "colour-choice": Variant("a colour stage's model trained for a choice per tile between the stage and the image's own "
                             "colours (start from a run with a colour stage)", {"colour_choice": True}),
    "small": Variant("small flow from scratch: 3 levels x 2 couplings, 48 wide, priors 48 wide", scratch=True),
    "small-nocouplings": Variant("small, from scratch, no couplings (a multi-scale context model), priors 80 wide",
                                 {"couplings": 0, "prior_hidden": 80}, scratch=True),
    "small-error-context": Variant("small, from scratch, with error contexts", {"error_context": True}, scratch=True),
    "small-mixture3": Variant("small, from scratch, three-logistic mixtures", {"mixtures": 3}, scratch=True),
    "small-lifting": Variant("small, from scratch, learned lifting mixing", {"mixing": "lifting"}, scratch=True),
    "small-groups4": Variant("small, from scratch, four channel groups per level", {"prior_groups": 4}, scratch=True),
    "small-quadrants1": Variant("small, from scratch, four passes per group at level 1", {"quadrant_levels": 1},
                                scratch=True),
    "small-colour": Variant("small, from scratch, a learned integer colour stage starting as YCoCg-R",
                            {"colour_stage": True}, scratch=True),
    "small-colour-error-context": Variant("small, from scratch, the colour stage and error contexts",
                                          {"colour_stage": True, "error_context": True}, scratch=True),
    "small-volume-preserving": Variant("small, from scratch, volume-preserving affine couplings",
                                       {"coupling": "volume-preserving"}, scratch=True),
}


@dataclass
class AblationResult:
    variant: str
    description: str
    start: str
    minutes: float
    steps: int
    batch_size: int
    crop: int
    lr: float
    new_lr: float | None  # the learning rate of the new (zero-initialised) parts; None: it has none
    val_bpd_start: float
    val_bpd: float
    unseen_bpd_start: float
    unseen_bpd: float
    mac_per_pixel: int
    network_ms_256: float  # exact path, the networks of one 256x256 plane
    flow: dict
    # With a colour stage: the trained weights' bpd when each crop takes the shorter of the stage and its own
    # colours (plus the bit that says which), as a codec offering that choice would code them.
    val_bpd_colour_choice: float | None = None
    unseen_bpd_colour_choice: float | None = None
    bf16_hidden: bool = False  # trained with the hidden layers in bfloat16

    @property
    def val_gain(self) -> float:
        return self.val_bpd / self.val_bpd_start - 1


def variant_flow(variant: Variant, start: FlowConfig) -> FlowConfig:
    if variant.scratch:
        start = FlowConfig(**SMALL)
    changes = {k: (getattr(start, k) + int(v) if isinstance(v, str) and v.startswith("+") else v)
               for k, v in variant.flow.items()}
    return FlowConfig.from_dict({**start.to_dict(), **changes})


def held_out_crops(shared: Path) -> dict[str, np.ndarray]:
    """The two evaluation sets: central crops of the validation split and of photos-unseen."""
    _, held = ImageSet.open(shared / "data" / "photos" / "train").split_holdout(HOLDOUT_EVERY)
    unseen = ImageSet.open(shared / "data" / "photos-unseen")
    return {"val": held.center_crops(EVAL_CROP), "unseen": unseen.center_crops(EVAL_CROP)}


def mac_per_pixel(flow: IntegerFlow, side: int = 128) -> int:
    """Multiply-accumulates per pixel of a plane in the networks (split heads count twice, as they run)."""
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, QConv2d):
            k = module.conv.kernel_size[0] * module.conv.kernel_size[1]
            total += output[0].numel() * module.conv.in_channels * k * (2 if module.split else 1)
        else:  # LiftingMix: two triangular steps
            c = output.shape[1]
            total += output[0].numel() // c * c * (c - 1)

    hooks = [m.register_forward_hook(count) for m in flow.modules() if isinstance(m, (QConv2d, LiftingMix))]
    try:
        with torch.no_grad():
            flow(torch.zeros(1, flow.cfg.in_channels, side, side))
    finally:
        for h in hooks:
            h.remove()
    return round(total / side**2)


def exact_network_ms(flow: IntegerFlow, side: int = 256, repeats: int = 3) -> float:
    """Best of ``repeats`` wall-clock times of the exact path's forward pass on one plane (ms)."""
    flow = copy.deepcopy(flow).eval()
    flow.freeze()
    x = torch.randint(-128, 128, (1, flow.cfg.in_channels, side, side)).double()
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            flow(x)
            best = min(best, time.perf_counter() - t)
    return 1000 * best


def run_ablation(name: str, *, shared: Path, start: str, minutes: float = 20.0, threads: int = 1,
                 batch_size: int = 8, crop: int = 128, lr: float | None = None, new_lr: float = 1e-3, seed: int = 0,
                 bf16_hidden: bool = False, progress: Callable[[str], None] = print) -> AblationResult:
    """Train variant ``name`` from ``start`` for ``minutes`` of wall-clock time and measure it.

    ``lr`` (default: the variant's kind's) is the rate of the weights that the start gave; ``new_lr`` that of a
    grown variant's new parts; ``bf16_hidden`` trains with the hidden layers in bfloat16 (evaluation stays exact)."""
    variant = VARIANTS[name]
    torch.set_num_threads(threads)
    source_model = None if variant.scratch else resolve_model(start)
    source = None if source_model is None else resolve_flow(source_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        flow = IntegerFlow(variant_flow(variant, FlowConfig() if source is None else source.cfg))
    if variant.warm_lr is not None:
        warm_start(flow, source)
        new = {}
    else:
        new = {} if source is None else grow_from(flow, source)
    if source is None:
        start, lr, warmup = "scratch", lr or SCRATCH_LR, 100
    else:  # the start named by its fingerprint too: the model behind a name changes when a new one ships
        start, lr, warmup = f"{source_model.name} {source_model.fingerprint:04x}", lr or variant.warm_lr or GROWN_LR, 20
    evals = held_out_crops(shared)
    before = {k: evaluate_bpd(flow if variant.warm_lr is None else source, v, batch_size=16) for k, v in evals.items()}
    progress(f"{name}: start val {before['val']:.4f}, unseen {before['unseen']:.4f}")
    cfg = TrainConfig(steps=10**9, batch_size=batch_size, lr=lr, warmup=warmup, lr_halflife=10**6, crop=crop, seed=seed,
                      bf16_hidden=bf16_hidden, flow=flow.cfg.to_dict())
    images, _ = ImageSet.open(shared / "data" / "photos" / "train").split_holdout(HOLDOUT_EVERY)
    state = TrainState(flow, copy.deepcopy(flow), torch.optim.Adam(flow.parameters(), lr=lr), history={},
                       boost={p: 1 + m.float() * (new_lr / lr - 1) for p, m in new.items() if m.any()})
    loss = NegLogLikelihood(flow)
    deadline = time.time() + 60 * minutes
    while time.time() < deadline:
        train_step(state, loss, images, cfg, Processes(), "cpu")
        if state.step % 20 == 0:
            progress(f"{name}: step {state.step}  bpd {state.running:.4f}  lr {learning_rate(cfg, state.step):.1e}  "
                     f"{(deadline - time.time()) / 60:.1f} min left")
    after = {k: evaluate_bpd(state.ema, v, batch_size=16) for k, v in evals.items()}
    choice = {}
    if state.ema.colour is not None:
        chooser = copy.deepcopy(state.ema)
        chooser.cfg = replace(chooser.cfg, colour_choice=True)
        choice = {k: evaluate_bpd(chooser, v, batch_size=16) for k, v in evals.items()}
        progress(f"{name}: with a colour choice per crop: val {choice['val']:.4f}, unseen {choice['unseen']:.4f}")
    result = AblationResult(
        variant=name, description=variant.description, start=str(start), minutes=minutes, steps=state.step,
        batch_size=batch_size, crop=crop, lr=lr, new_lr=new_lr if state.boost else None, val_bpd_start=before["val"], val_bpd=after["val"],
        unseen_bpd_start=before["unseen"], unseen_bpd=after["unseen"], mac_per_pixel=mac_per_pixel(state.ema),
        network_ms_256=exact_network_ms(state.ema), flow=flow.cfg.to_dict(),
        val_bpd_colour_choice=choice.get("val"), unseen_bpd_colour_choice=choice.get("unseen"), bf16_hidden=bf16_hidden)
    progress(f"{name}: {state.step} steps; val {before['val']:.4f} -> {after['val']:.4f}, "
             f"unseen {before['unseen']:.4f} -> {after['unseen']:.4f}; {result.mac_per_pixel} MAC/pixel, "
             f"networks {result.network_ms_256:.0f} ms per 256x256 plane")
    return result


def save_result(result: AblationResult, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if result.start == "scratch":
        lr = ""
    else:  # a rate other than the kind's usual one is part of the name, so a run at the usual one keeps its own file
        warm = VARIANTS[result.variant].warm_lr is not None
        lr = f"-lr{result.lr:g}" if warm or result.lr != GROWN_LR else ""
        lr += "" if result.new_lr in (None, 1e-3) else f"-newlr{result.new_lr:g}"
    start = "" if result.start == "scratch" else "-" + result.start.split()[-1]  # the start's fingerprint
    precision = "-bf16" if result.bf16_hidden else ""
    path = folder / f"{result.variant}-{result.minutes:g}min{lr}{precision}{start}.json"
    path.write_text(json.dumps(asdict(result), indent=1) + "\n")
    return path
