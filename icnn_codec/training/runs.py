"""Training run folders: their config, tables and checkpoints, and models made of them.

A run lives in a folder::

    RUN/config.json      architecture and training arguments (fixed at the run's start, but for the
                         total steps and a cooldown: an annealing phase a resume may add)
    RUN/tables.npz       the prior's integer probability tables (fixed at the run's start)
    RUN/checkpoint.pt    weights, EMA weights, optimizer, step (rewritten atomically)
    RUN/log.jsonl        one line per log interval: step, bpd, lr, steps/s; evaluations too
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError
from ..local_ar import LocalAR
from ..priors import LogisticTables
from ..zoo import Model, available_models, load_model, network_to_model, looks_like_name, save_model

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
TABLES = "tables.npz"


# The shipped cifar10 model's architecture (LocalAR.config()'s names): icnn train's defaults.
DEFAULT_ARCHITECTURE = {"kernel": 7, "width": 64, "depth": 4, "components": 5, "tile_predictor": 0,
                        "residual_context": True}


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
    model: dict = field(default_factory=lambda: dict(DEFAULT_ARCHITECTURE))  # the local AR's architecture


def check_config(cfg: TrainConfig) -> None:
    """ValueError (one line for the CLI) for a config no training step can run with."""
    m = cfg.model
    if m["kernel"] < 3 or m["kernel"] % 2 == 0:
        raise ValueError(f"kernel {m['kernel']} must be odd and at least 3")
    if m["width"] < 1 or m["depth"] < 0 or m["components"] < 1:
        raise ValueError(f"width {m['width']}, depth {m['depth']}, components {m['components']}: "
                         "a width and a component at least, no negative depth")
    if m["tile_predictor"] and (m["tile_predictor"] < 3 or m["tile_predictor"] % 2 == 0):
        raise ValueError(f"tile predictor {m['tile_predictor']} must be 0 (none) or odd and at least 3")
    if cfg.crop <= 0:
        raise ValueError(f"crop {cfg.crop} must be positive")
    if cfg.batch_size <= 0:
        raise ValueError(f"batch size {cfg.batch_size} must be positive")
    if cfg.holdout_every == 1 or cfg.holdout_every < 0:
        raise ValueError(f"hold-out every {cfg.holdout_every}: use 0 (none) or 2 and more")
    if cfg.eval_crop < 0:
        raise ValueError(f"eval crop {cfg.eval_crop} must be 0 (whole images) or positive")
    if cfg.cooldown_from < 0 or cfg.cooldown_halflife <= 0:
        raise ValueError(f"cooldown from step {cfg.cooldown_from}, halving every {cfg.cooldown_halflife} steps: "
                         "the step must be 0 (none) or more, the half-life positive")


def init_run(run_dir: Path, cfg: TrainConfig) -> TrainConfig:
    """Create the run folder, or read back the config it was started with."""
    cfg_path = run_dir / CONFIG
    if cfg_path.exists():
        fields = json.loads(cfg_path.read_text())
        if "flow" in fields:
            raise ValueError(f"{run_dir} is a run of the retired flow engine (trainable at git commit e7609cb)")
        saved = TrainConfig(**fields)
        # What a resume may change: the total, where to evaluate and a cooldown (an annealing
        # phase decided once the run has plateaued).
        saved.steps = cfg.steps
        if cfg.cooldown_from:
            saved.cooldown_from, saved.cooldown_halflife = cfg.cooldown_from, cfg.cooldown_halflife
        saved.eval_data = cfg.eval_data or saved.eval_data
        cfg = saved
    check_config(cfg)  # before anything is written: a bad start must not fix a run's config
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / TABLES).exists():
        save_tables(LogisticTables.build(), run_dir / TABLES)
    cfg_path.write_text(json.dumps(asdict(cfg), indent=1))
    return cfg


def save_tables(tables: LogisticTables, path: Path) -> None:
    np.savez_compressed(path, counts=tables.counts, offsets=tables.offsets)


def load_tables(path: Path) -> LogisticTables:
    with np.load(path, allow_pickle=False) as z:
        return LogisticTables(z["counts"], z["offsets"])


def load_checkpoint(run_dir: Path) -> dict | None:
    p = run_dir / CHECKPOINT
    return torch.load(p, map_location="cpu", weights_only=True) if p.exists() else None


def save_checkpoint(state: dict, run_dir: Path) -> None:
    """Write the checkpoint atomically: a crash mid-write leaves the previous one."""
    path = run_dir / CHECKPOINT
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def is_run_folder(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / CONFIG).is_file()


def load_run(run_dir: Path, weights: str = "ema") -> tuple[LocalAR, dict, TrainConfig, LogisticTables]:
    """A run's local AR with its EMA ("ema") or raw ("model") weights, its checkpoint, config and
    tables; a ModelError for a run folder that cannot give them (missing or damaged files)."""
    if weights not in ("ema", "model"):
        raise ValueError("weights must be 'ema' or 'model'")
    if not (run_dir / CHECKPOINT).exists():
        raise ModelError(f"{run_dir} has no checkpoint")
    try:
        ckpt = load_checkpoint(run_dir)
        cfg = TrainConfig(**json.loads((run_dir / CONFIG).read_text()))
        network = LocalAR.from_config(cfg.model)
        network.load_state_dict(ckpt[weights])
        tables = load_tables(run_dir / TABLES)
    except (ValueError, KeyError, TypeError, RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise ModelError(f"cannot load training run {run_dir}: {exc}") from exc
    return network, ckpt, cfg, tables


def model_from_run(run_dir: str | Path, weights: str = "ema") -> Model:
    """A run folder as a codec model, frozen exactly as an export would be."""
    run_dir = Path(run_dir)
    network, _, _, tables = load_run(run_dir, weights)
    return network_to_model(network, tables, run_dir.name, str(run_dir))


def export_run(run_dir: Path, out: Path, name: str | None = None, weights: str = "ema") -> Path:
    """Write a run's weights (EMA by default; "model" for the raw ones) as a model file."""
    network, ckpt, cfg, tables = load_run(run_dir, weights)
    training = {"steps": ckpt["step"], "weights": weights, "train_seconds": round(ckpt.get("seconds", 0.0)),
                "config": asdict(cfg), "history": ckpt.get("history", {})}
    return save_model(network, out, name or out.stem, tables, training)


def resolve_model(spec: str | Path | Model) -> Model:
    """What the tools accept as a model: an installed name, a model file, or a training run folder
    (its latest checkpoint, frozen as an export would be; loaded anew each time, since the run
    may still be training)."""
    if isinstance(spec, Model):
        return spec
    installed = looks_like_name(str(spec)) and str(spec) in available_models()  # a name wins, as in load_model
    return model_from_run(spec) if is_run_folder(spec) and not installed else load_model(spec)
