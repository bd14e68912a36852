"""The training loop of the local AR: resumable, data-parallel (torchrun), quantisation-aware.

Running :func:`train` again on the same run folder (:mod:`icnn_codec.training.runs`) resumes at
the saved step with the same optimizer state and the same position in the data order (the order
and the crops are functions of the seed and the step alone). ``cfg.steps`` is the run's total.
The loss is the code length in bits per dimension of the fixed-point model the codec runs (see
:mod:`icnn_codec.quant` and :class:`icnn_codec.local_ar.LocalAR`).
"""
from __future__ import annotations

import contextlib
import copy
import gc
import json
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..local_ar import LocalAR
from .data import ImageSet
from .runs import CONFIG, TrainConfig, check_config, init_run, load_checkpoint, resolve_model, save_checkpoint


class NegLogLikelihood(nn.Module):
    """Wraps a local AR so DDP sees the loss as the module's forward: each image's code length in bits."""

    def __init__(self, network: LocalAR) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.bits(x).flatten(1).sum(1)


def model_input(batch: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """(B, H, W, 3) uint8 crops as the local AR takes them: (B, 3, H, W) float, sample values 0..255."""
    return torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2).float()


def learning_rate(cfg: TrainConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / max(1, cfg.warmup))
    lr = cfg.lr * warm * 0.5 ** (max(0, step - cfg.warmup) / cfg.lr_halflife)
    if cfg.cooldown_from:  # continuous at cooldown_from: a run may decide late to anneal
        lr *= 0.5 ** (max(0, step - cfg.cooldown_from) / cfg.cooldown_halflife)
    return lr


@torch.no_grad()
def evaluate_bpd(network: LocalAR, images: np.ndarray, batch_size: int = 100, device: str = "cpu") -> float:
    """Model bpd (training path, fixed-point simulated) on full images of one size."""
    network.eval()
    bits, dims = 0.0, 0
    for i in range(0, len(images), batch_size):
        x = model_input(images[i : i + batch_size], device)
        bits += float(network.bits(x).sum())
        dims += x.numel()
    return bits / dims


class TrainLog:
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

    def evaluation(self, metrics: dict) -> None:
        self.record({"eval": metrics})
        if self.enabled:
            print(f"eval step {metrics['step']}: test bpd {metrics['test_bpd']:.4f} (EMA weights)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.log:
            self.log.close()


@dataclass
class Processes:
    """This process's place in a data-parallel run (torchrun sets WORLD_SIZE); one process: rank 0 of 1."""

    rank: int = 0
    world: int = 1
    own_group: bool = False  # this call started the process group, so it ends it

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


@dataclass
class TrainState:
    """What a checkpoint holds, live."""

    network: LocalAR
    ema: LocalAR
    optimizer: torch.optim.Optimizer
    step: int = 0
    history: dict | None = None
    seconds: float = 0.0  # training time of earlier sessions of the run
    running: float | None = None  # the smoothed training bpd, so a resumed log continues seamlessly

    def checkpoint(self, started: float) -> dict:
        return {"model": self.network.state_dict(), "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
                "step": self.step, "history": self.history, "seconds": self.seconds + time.time() - started,
                "running": self.running}


def train(data: str, run_dir: str | Path, cfg: TrainConfig, *, eval_data: str | None = None, device: str = "cpu",
          threads: int | None = None, init_model: str | None = None) -> dict:
    """Train (or resume) the run in ``run_dir`` up to ``cfg.steps`` steps. Returns the last metrics.

    ``eval_data`` (else the run's saved one) is evaluated on every ``cfg.eval_every`` steps;
    ``init_model`` (a model name, file or run folder) starts a new run from its weights, and its
    architecture (``cfg.model`` is then the model's)."""
    run_dir = Path(run_dir)
    if eval_data:
        cfg = replace(cfg, eval_data=eval_data)
    procs = _join_processes(device)
    with _torch_threads(threads):
        images = ImageSet.open(data)  # first: a bad DATA must not create the run (and fix its config)
        # nor a model that cannot start it: a new run's network is made before its folder
        network = None
        if not (run_dir / CONFIG).exists():
            cfg, network = _new_network(cfg, init_model)
        cfg = _open_run(run_dir, cfg, procs)
        images, eval_images = _split_data(images, cfg, procs)
        state = _initial_state(cfg, run_dir, device, network, init_model)
        loss_module = NegLogLikelihood(state.network)
        if procs.distributed:
            loss_module = nn.parallel.DistributedDataParallel(loss_module)
        log = TrainLog(run_dir, cfg.steps, state.step, procs.main)
        started, metrics = time.time(), {}
        try:
            while state.step < cfg.steps:
                train_step(state, loss_module, images, cfg, procs, device)
                if state.step % cfg.log_every == 0 or state.step == cfg.steps:
                    log.step(state.step, state.running, learning_rate(cfg, state.step - 1))
                if eval_images is not None and (state.step % cfg.eval_every == 0 or state.step == cfg.steps):
                    metrics = _evaluate(state, eval_images, device)
                    log.evaluation(metrics)
                if state.step % cfg.checkpoint_every == 0 and procs.main:
                    save_checkpoint(state.checkpoint(started), run_dir)
        finally:
            if procs.main:
                save_checkpoint(state.checkpoint(started), run_dir)
            log.close()
        _leave_processes(procs, loss_module)
    return metrics or {"step": state.step, "train_bpd": state.running}


def _join_processes(device: str) -> Processes:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes()
    own_group = not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return Processes(dist.get_rank(), dist.get_world_size(), own_group)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's thread count for the call, restored after it."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _open_run(run_dir: Path, cfg: TrainConfig, procs: Processes) -> TrainConfig:
    """The run's config: rank 0 creates the folder (or reads it back), the others follow."""
    if procs.main:
        cfg = init_run(run_dir, cfg)
    if procs.distributed:
        dist.barrier()
        if not procs.main:
            cfg = init_run(run_dir, cfg)
    return cfg


def _split_data(images: ImageSet, cfg: TrainConfig, procs: Processes) -> tuple[ImageSet, np.ndarray | None]:
    """(training images, evaluation images or None): the hold-out split as the run's saved config
    says, grey planes for a grey model; evaluation on rank 0 only."""
    channels = images[0].shape[2]
    if channels not in ((1, 3) if cfg.grey else (3,)):
        raise ValueError(f"the images have {channels} channels: training takes RGB images (grey ones with --grey)")
    held_out = None
    if cfg.holdout_every:
        images, held_out = images.split_holdout(cfg.holdout_every)
    if cfg.grey:
        images = images.as_grey_planes()
    if not procs.main or not (cfg.eval_data or held_out is not None):
        return images, None
    eval_set = ImageSet.open(cfg.eval_data) if cfg.eval_data else held_out
    if cfg.grey:
        eval_set = eval_set.as_grey_planes()
    return images, eval_set.center_crops(cfg.eval_crop, cfg.eval_images) if cfg.eval_crop else eval_set.first(cfg.eval_images)


def _new_network(cfg: TrainConfig, init_model: str | None) -> tuple[TrainConfig, LocalAR]:
    """A new run's config and network: its seed's weights, or ``init_model``'s weights and architecture."""
    if init_model:
        start = resolve_model(init_model)
        cfg = replace(cfg, model=start.local_ar.config())
        network = LocalAR.from_config(cfg.model)
        network.load_state_dict(start.local_ar.state_dict())
        return cfg, network
    check_config(cfg)  # a one-line error, not the network's own
    with torch.random.fork_rng(devices=[]):  # a new run's initial weights are a function of its seed
        torch.manual_seed(cfg.seed)
        return cfg, LocalAR.from_config(cfg.model)


def _initial_state(cfg: TrainConfig, run_dir: Path, device: str, network: LocalAR | None = None,
                   init_model: str | None = None) -> TrainState:
    """The checkpoint's state, or a new run's (``network``, if made already; else from ``init_model``
    where given: a first start that failed after writing its config still starts from it)."""
    ckpt = load_checkpoint(run_dir)
    if network is None:
        network = _new_network(cfg, init_model if ckpt is None else None)[1]
    ema = copy.deepcopy(network)
    network.to(device)
    ema.to(device)
    state = TrainState(network, ema, torch.optim.Adam(network.parameters(), lr=cfg.lr), history={})
    if ckpt is not None:
        network.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.step, state.history, state.seconds = ckpt["step"], ckpt.get("history", {}), ckpt.get("seconds", 0.0)
        state.running = ckpt.get("running")
    return state


def train_step(state: TrainState, loss_module: nn.Module, images: ImageSet, cfg: TrainConfig, procs: Processes,
                device: str) -> None:
    """One optimizer step on this rank's share of the step's batch, then the EMA."""
    per_rank = max(1, cfg.batch_size // procs.world)
    state.network.train()
    batch = images.batch(cfg.seed, state.step, cfg.batch_size, cfg.crop)[procs.rank * per_rank : (procs.rank + 1) * per_rank]
    x = model_input(batch, device)
    for g in state.optimizer.param_groups:
        g["lr"] = learning_rate(cfg, state.step)
    loss = loss_module(x).mean() / x[0].numel()
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(state.network.parameters(), 100.0)
    state.optimizer.step()
    with torch.no_grad():
        decay = min(cfg.ema, (1.0 + state.step) / (10.0 + state.step))  # warm-up: an early EMA must not lag
        for pe, p in zip(state.ema.parameters(), state.network.parameters()):
            pe.lerp_(p, 1.0 - decay)
    state.step += 1
    bpd = loss.item()
    state.running = bpd if state.running is None else 0.98 * state.running + 0.02 * bpd


def _evaluate(state: TrainState, eval_images: np.ndarray, device: str) -> dict:
    test_bpd = evaluate_bpd(state.ema, eval_images, device=device)
    state.history[str(state.step)] = {"train_bpd": state.running, "test_bpd": test_bpd}
    return {"step": state.step, "train_bpd": state.running, "test_bpd": test_bpd}


def _leave_processes(procs: Processes, loss_module: nn.Module) -> None:
    if not procs.own_group:
        return
    # Left to interpreter teardown, gloo's worker threads can abort the process (SIGABRT). DDP's
    # reducer holds the group too, so it goes first; the barrier keeps a rank from tearing gloo
    # down while its peer still talks to it.
    del loss_module
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
