"""Training: resumable, data-parallel (torchrun), quantisation-aware.

A run lives in a folder::

    RUN/config.json      architecture and training arguments (fixed at the run's start, but for the
                         total steps and a cooldown: an annealing phase a resume may add)
    RUN/tables.npz       the prior's integer probability tables (fixed at the run's start)
    RUN/checkpoint.pt    weights, EMA weights, optimizer, step (rewritten atomically)
    RUN/log.jsonl        one line per log interval: step, bpd, lr, steps/s; evaluations too

Running ``train`` again on the same folder resumes at the saved step with the same optimizer
state and the same position in the data order (the order and the crops are functions of the
seed and the step alone). ``--steps`` is the run's total. The loss is the code length in bits
per dimension of the fixed-point model the codec runs (see :mod:`icnn_codec.quant`).
"""
from __future__ import annotations

import copy
import gc
import json
import math
import os
import pickle
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .data import ImageSet
from .flow import FlowConfig, IntegerFlow
from .priors import LogisticTables

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64  # global, split across processes
    lr: float = 1e-3
    warmup: int = 200
    lr_halflife: int = 20000  # lr halves every this many steps after warm-up
    cooldown_from: int = 0  # >0: from this step on the lr also halves every cooldown_halflife steps
    cooldown_halflife: int = 1000
    ema: float = 0.999
    crop: int = 32
    holdout_every: int = 0  # >1: every n-th image of DATA is held out of training and evaluated on
    eval_crop: int = 0  # >0: evaluate on central crops of this size (for data of mixed sizes)
    grey: bool = False  # train on the grey planes the codec makes of grey images (a grey model)
    eval_data: str | None = None  # evaluation images (--eval), kept so that a resumed run goes on evaluating
    seed: int = 0
    eval_every: int = 500
    eval_images: int = 500
    checkpoint_every: int = 200
    log_every: int = 20
    flow: dict = field(default_factory=lambda: FlowConfig().to_dict())


class NegLogLikelihood(nn.Module):
    """Wraps a flow so DDP sees the loss as the module's forward."""

    def __init__(self, flow: IntegerFlow) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flow.nll_bits(x)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / max(1, cfg.warmup))
    lr = cfg.lr * warm * 0.5 ** (max(0, step - cfg.warmup) / cfg.lr_halflife)
    if cfg.cooldown_from:  # continuous at cooldown_from: a run may decide late to anneal
        lr *= 0.5 ** (max(0, step - cfg.cooldown_from) / cfg.cooldown_halflife)
    return lr


def to_input(batch_uint8: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """(N, H, W, C) uint8 -> centred float (N, C, H, W) on the training path."""
    x = torch.from_numpy(np.ascontiguousarray(batch_uint8)).to(device)
    return x.permute(0, 3, 1, 2).float() - 128.0


@torch.no_grad()
def evaluate_bpd(flow: IntegerFlow, images: np.ndarray, batch_size: int = 100, device: str = "cpu") -> float:
    """Model bpd (training path, fixed-point simulated) on full images of one size."""
    flow.eval()
    bits, dims = 0.0, 0
    for i in range(0, len(images), batch_size):
        x = to_input(images[i : i + batch_size], device)
        bits += float(flow.nll_bits(x).sum())
        dims += x.numel()
    return bits / dims


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def check_config(cfg: TrainConfig) -> None:
    """ValueError (one line for the CLI) for a config no training step can run with."""
    block = FlowConfig.from_dict(cfg.flow).block
    if cfg.crop <= 0 or cfg.crop % block:
        raise ValueError(f"crop {cfg.crop} must be a positive multiple of {block} (the model's block: 2 ** levels, or 2 ** (levels + 1) with a top context or checkerboards)")
    if cfg.batch_size <= 0:
        raise ValueError(f"batch size {cfg.batch_size} must be positive")
    if cfg.holdout_every == 1 or cfg.holdout_every < 0:
        raise ValueError(f"hold-out every {cfg.holdout_every}: use 0 (none) or 2 and more")
    if cfg.eval_crop < 0 or cfg.eval_crop % block:
        raise ValueError(f"eval crop {cfg.eval_crop} must be 0 or a multiple of {block}")
    if cfg.cooldown_from < 0 or cfg.cooldown_halflife <= 0:
        raise ValueError(f"cooldown from step {cfg.cooldown_from}, halving every {cfg.cooldown_halflife} steps: "
                         "the step must be 0 (none) or more, the half-life positive")


def init_run(run_dir: Path, cfg: TrainConfig) -> TrainConfig:
    """Create the run folder, or read back the config it was started with."""
    cfg_path = run_dir / "config.json"
    if cfg_path.exists():
        saved = TrainConfig(**json.loads(cfg_path.read_text()))
        # What a resume may change: the total, where to evaluate, and a cooldown (an
        # annealing phase decided once the run has plateaued).
        saved.steps = cfg.steps
        if cfg.cooldown_from:
            saved.cooldown_from, saved.cooldown_halflife = cfg.cooldown_from, cfg.cooldown_halflife
        saved.eval_data = cfg.eval_data or saved.eval_data
        cfg = saved
    check_config(cfg)  # before anything is written: a bad start must not fix a run's config
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "tables.npz").exists():
        from .zoo import save_tables_file

        save_tables_file(LogisticTables.build(), run_dir / "tables.npz")
    cfg_path.write_text(json.dumps(asdict(cfg), indent=1))
    return cfg


def load_checkpoint(run_dir: Path) -> dict | None:
    p = run_dir / CHECKPOINT
    return torch.load(p, map_location="cpu", weights_only=True) if p.exists() else None


def _load_run(run_dir: Path, weights: str) -> tuple[IntegerFlow, dict, TrainConfig, LogisticTables]:
    """A run's flow with its EMA ("ema") or raw ("model") weights, its checkpoint, config and
    tables; a ModelError for a run folder that cannot give them (missing or damaged files)."""
    from .errors import ModelError
    from .zoo import load_tables_file

    if weights not in ("ema", "model"):
        raise ValueError("weights must be 'ema' or 'model'")
    if not (run_dir / CHECKPOINT).exists():
        raise ModelError(f"{run_dir} has no checkpoint")
    try:
        ckpt = load_checkpoint(run_dir)
        cfg = TrainConfig(**json.loads((run_dir / "config.json").read_text()))
        flow = IntegerFlow(FlowConfig.from_dict(cfg.flow))
        flow.load_state_dict(ckpt[weights])
        tables = load_tables_file(run_dir / "tables.npz")
    except (ValueError, KeyError, TypeError, RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise ModelError(f"cannot load training run {run_dir}: {exc}") from exc
    return flow, ckpt, cfg, tables


def model_from_run(run_dir: Path, weights: str = "ema"):
    """A run folder as a codec model, frozen exactly as an export would be."""
    from .zoo import flow_to_model

    run_dir = Path(run_dir)
    flow, _, _, tables = _load_run(run_dir, weights)
    return flow_to_model(flow, tables, run_dir.name, str(run_dir))


def export_run(run_dir: Path, out: Path, name: str | None = None, weights: str = "ema") -> Path:
    """Write a run's weights (EMA by default; "model" for the raw ones) as a model file."""
    from .zoo import save_model

    flow, ckpt, cfg, tables = _load_run(run_dir, weights)
    training = {"steps": ckpt["step"], "weights": weights, "train_seconds": round(ckpt.get("seconds", 0.0)),
                "config": asdict(cfg), "history": ckpt.get("history", {})}
    return save_model(flow, out, name or out.stem, tables, training)


class Progress:
    """One line per log interval: step, rate, bpd, ETA (stderr), and a JSONL record."""

    def __init__(self, run_dir: Path, total: int, start: int, enabled: bool) -> None:
        self.log = open(run_dir / "log.jsonl", "a") if enabled else None
        self.total, self.enabled = total, enabled
        self.t0, self.s0 = time.time(), start

    def record(self, rec: dict) -> None:
        if self.log:
            self.log.write(json.dumps(rec) + "\n")
            self.log.flush()

    def step(self, step: int, bpd: float, lr: float) -> None:
        rate = (step - self.s0) / max(1e-9, time.time() - self.t0)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        self.record({"step": step, "bpd": round(bpd, 5), "lr": lr, "steps_per_s": round(rate, 3), "time": time.time()})
        if self.enabled:
            eta_s = f"{int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d}" if math.isfinite(eta) else "?"
            print(f"step {step}/{self.total}  {rate:.2f} steps/s  bpd {bpd:.4f}  lr {lr:.2e}  ETA {eta_s}", file=sys.stderr, flush=True)


def train(
    data: str,
    run_dir: str | Path,
    cfg: TrainConfig,
    eval_data: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    init_model: str | None = None,
) -> dict:
    """Train (or resume) the run in ``run_dir`` up to ``cfg.steps`` steps. Returns the last metrics.

    ``eval_data`` (else the run's saved one) is evaluated on every ``cfg.eval_every`` steps."""
    run_dir = Path(run_dir)
    if eval_data:
        cfg = replace(cfg, eval_data=eval_data)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    own_group = distributed and not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    if threads:
        torch.set_num_threads(threads)
    if device == "cuda" and distributed:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    main = rank == 0
    images = ImageSet.open(data)  # first: a bad DATA must not create the run (and fix its config)
    if main:
        cfg = init_run(run_dir, cfg)
    if distributed:
        dist.barrier()
        if not main:
            cfg = init_run(run_dir, cfg)
    held_out = None
    if cfg.holdout_every:  # after init_run: a resumed run splits as its saved config says
        images, held_out = images.split_holdout(cfg.holdout_every)
    if cfg.grey:
        images = images.as_grey_planes()

    with torch.random.fork_rng(devices=[]):  # a new run's initial weights are a function of its seed
        torch.manual_seed(cfg.seed)
        flow = IntegerFlow(FlowConfig.from_dict(cfg.flow))
    ckpt = load_checkpoint(run_dir)
    if ckpt is None and init_model:
        from .flow import grow_from
        from .zoo import load_model

        grow_from(flow, load_model(init_model).flow)  # the same code to start with, plus any new context
    ema = copy.deepcopy(flow)
    flow.to(device)
    ema.to(device)
    opt = torch.optim.Adam(flow.parameters(), lr=cfg.lr)
    step, history, seconds, running = 0, {}, 0.0, None
    if ckpt is not None:
        flow.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        step, history, seconds = ckpt["step"], ckpt.get("history", {}), ckpt.get("seconds", 0.0)
        running = ckpt.get("running")  # the smoothed bpd, so a resumed log continues seamlessly
    started = time.time()
    loss_module = NegLogLikelihood(flow)
    if distributed:
        loss_module = nn.parallel.DistributedDataParallel(loss_module)
    eval_images = None
    if main and (cfg.eval_data or held_out is not None):
        eval_set = ImageSet.open(cfg.eval_data) if cfg.eval_data else held_out
        if cfg.grey:
            eval_set = eval_set.as_grey_planes()
        eval_images = eval_set.center_crops(cfg.eval_crop, cfg.eval_images) if cfg.eval_crop else eval_set.first(cfg.eval_images)

    def save() -> None:
        if main:
            atomic_save({"model": flow.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                         "step": step, "history": history, "seconds": seconds + time.time() - started,
                         "running": running},
                        run_dir / CHECKPOINT)

    progress = Progress(run_dir, cfg.steps, step, main)
    per_rank = max(1, cfg.batch_size // world)
    metrics = {}
    try:
        while step < cfg.steps:
            flow.train()
            batch = images.batch(cfg.seed, step, cfg.batch_size, cfg.crop)[rank * per_rank : (rank + 1) * per_rank]
            x = to_input(batch, device)
            lr = learning_rate(cfg, step)
            for g in opt.param_groups:
                g["lr"] = lr
            bits = loss_module(x)
            loss = bits.mean() / x[0].numel()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 100.0)
            opt.step()
            with torch.no_grad():
                decay = min(cfg.ema, (1.0 + step) / (10.0 + step))  # warm-up: an early EMA must not lag
                for pe, p in zip(ema.parameters(), flow.parameters()):
                    pe.lerp_(p, 1.0 - decay)
            step += 1
            bpd = loss.item()
            running = bpd if running is None else 0.98 * running + 0.02 * bpd
            if step % cfg.log_every == 0 or step == cfg.steps:
                progress.step(step, running, lr)
            if eval_images is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                test_bpd = evaluate_bpd(ema, eval_images, device=device)
                history[str(step)] = {"train_bpd": running, "test_bpd": test_bpd}
                metrics = {"step": step, "train_bpd": running, "test_bpd": test_bpd}
                progress.record({"eval": metrics})
                print(f"eval step {step}: test bpd {test_bpd:.4f} (EMA weights)", file=sys.stderr, flush=True)
            if step % cfg.checkpoint_every == 0:
                save()
    finally:
        save()
    if own_group:
        # Left to interpreter teardown, gloo's worker threads can abort the process (SIGABRT). DDP's
        # reducer holds the group too, so it goes first; the barrier keeps a rank from tearing gloo
        # down while its peer still talks to it.
        del loss_module
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
    return metrics or {"step": step, "train_bpd": running}
