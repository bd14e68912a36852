"""Training: a run folder resumes exactly, ``--steps`` is the run's total, a run exports to a
codec model (or is one), torchrun trains data-parallel, and the CLI fails in one line.

Everything runs on a tiny local AR, 8x8 crops and a handful of steps: these tests specify the
machinery, not the bpd a real run reaches.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import icnn_codec as ic
from icnn_codec.local_ar import LocalAR
from icnn_codec.training.data import ImageSet
from icnn_codec.training.loop import evaluate_bpd, learning_rate, train
from icnn_codec.training.runs import TrainConfig, export_run, init_run, load_checkpoint, load_run, resolve_model

TINY_AR = LocalAR(kernel=3, width=8, depth=1, components=2, residual_context=True).config()
TINY_CLI_OPTIONS = ["--kernel", "3", "--width", "8", "--depth", "1", "--components", "2", "--crop", "8",
                    "--batch-size", "4", "--log-every", "1"]
ICNN = [sys.executable, "-m", "icnn_codec.cli"]
TORCHRUN = Path(sys.executable).parent / "torchrun"
MAX_MODEL_BYTES = 25 * 2**20


def tiny_config(steps: int, **overrides: object) -> TrainConfig:
    """The tiny run every test trains: batch 4 of 8x8 crops, a log record every step."""
    return replace(TrainConfig(steps=steps, batch_size=4, crop=8, warmup=2, log_every=1, checkpoint_every=2,
                               model=TINY_AR), **overrides)


def structured_images(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(n, height, width, 3) uint8: smooth gradients plus noise, so there is something to learn."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (yy[None, :, :, None] * rng.uniform(2, 8, (n, 1, 1, 3)) + xx[None, :, :, None] * rng.uniform(2, 8, (n, 1, 1, 3)))
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def icnn(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*ICNN, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def log_records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def assert_same_training_state(a: dict, b: dict) -> None:
    """Same step, and bit-identical weights, EMA weights and optimizer state."""
    assert a["step"] == b["step"]
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert state_a.keys() == state_b.keys()
    for i in state_a:
        assert state_a[i].keys() == state_b[i].keys()
        for key in state_a[i]:
            assert torch.equal(state_a[i][key], state_b[i][key]), f"optimizer state {i}.{key} differs"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One thread: fast beside anything else on the machine, and one fixed summation order.
    (Resume is exact anyway, as long as both runs use the same thread count.)"""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An .npz of 12 structured 16x16 RGB images."""
    path = tmp_path_factory.mktemp("data") / "train.npz"
    np.savez(path, images=structured_images(12, 16, 16))
    return path


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of PNGs of mixed sizes and modes, one smaller than the crop."""
    folder = tmp_path_factory.mktemp("folder")
    rgb, big, small = structured_images(1, 16, 16, 1)[0], structured_images(1, 12, 20, 2)[0], structured_images(1, 5, 7, 3)[0]
    Image.fromarray(rgb).save(folder / "a.png")
    Image.fromarray(big).convert("L").save(folder / "b.png")
    Image.fromarray(small).convert("RGBA").save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def run_6(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained 6 steps in one go. Tests that would change it work on a copy."""
    run_dir = tmp_path_factory.mktemp("runs") / "six"
    train(str(dataset), run_dir, tiny_config(6))
    return run_dir


@pytest.fixture(scope="module")
def exported(run_6: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(run_6, tmp_path_factory.mktemp("models") / "tiny.npz")


# --- resuming ---------------------------------------------------------------------------------


def test_resuming_continues_exactly_as_if_the_run_had_never_stopped(dataset: Path, run_6: Path, tmp_path: Path) -> None:
    train(str(dataset), tmp_path / "run", tiny_config(3))
    assert load_checkpoint(tmp_path / "run")["step"] == 3
    train(str(dataset), tmp_path / "run", tiny_config(6))
    # Same data (a function of seed and step), same optimizer state, same thread count: the
    # float arithmetic is the same, so the state is bit-identical, not merely close.
    assert_same_training_state(load_checkpoint(tmp_path / "run"), load_checkpoint(run_6))
    # The log continues seamlessly too (the smoothed bpd is part of the checkpoint).
    resumed, straight = log_records(tmp_path / "run"), log_records(run_6)
    assert [(r["step"], r["bpd"], r["lr"]) for r in resumed] == [(r["step"], r["bpd"], r["lr"]) for r in straight]


def test_a_resumed_run_goes_on_evaluating_on_the_data_it_was_started_with(dataset: Path, tmp_path: Path) -> None:
    train(str(dataset), tmp_path / "run", tiny_config(2, eval_every=2), eval_data=str(dataset))
    metrics = train(str(dataset), tmp_path / "run", tiny_config(4, eval_every=2))  # no eval_data this time
    assert metrics["step"] == 4 and "test_bpd" in metrics
    assert [r["eval"]["step"] for r in log_records(tmp_path / "run") if "eval" in r] == [2, 4]


@pytest.mark.parametrize("steps", [6, 4], ids=["same-total", "smaller-total"])
def test_steps_is_the_runs_total_so_a_reached_total_trains_no_further(
    dataset: Path, run_6: Path, tmp_path: Path, steps: int
) -> None:
    run_dir = shutil.copytree(run_6, tmp_path / "run")
    lines_before = len(log_records(run_dir))
    metrics = train(str(dataset), run_dir, tiny_config(steps))
    assert metrics["step"] == 6
    assert_same_training_state(load_checkpoint(run_dir), load_checkpoint(run_6))
    assert len(log_records(run_dir)) == lines_before


def test_a_run_keeps_the_options_it_was_started_with_only_steps_and_a_cooldown_may_change(dataset: Path, run_6: Path, tmp_path: Path) -> None:
    run_dir = shutil.copytree(run_6, tmp_path / "run")
    started_with = json.loads((run_dir / "config.json").read_text())
    wider = {**TINY_AR, "width": 16}
    train(str(dataset), run_dir, tiny_config(7, lr=0.1, batch_size=8, crop=16, model=wider))
    assert json.loads((run_dir / "config.json").read_text()) == {**started_with, "steps": 7}
    assert load_checkpoint(run_dir)["step"] == 7


def test_a_resumed_run_may_be_given_a_cooldown_that_halves_the_lr_from_a_step_on(dataset: Path, run_6: Path, tmp_path: Path) -> None:
    run_dir = shutil.copytree(run_6, tmp_path / "run")
    train(str(dataset), run_dir, tiny_config(9, cooldown_from=7, cooldown_halflife=1))
    assert json.loads((run_dir / "config.json").read_text())["cooldown_from"] == 7
    lrs = {r["step"]: r["lr"] for r in log_records(run_dir)}  # the lr the step trained with (step - 1's)
    plain = {r["step"]: r["lr"] for r in log_records(run_6)}
    assert [lrs[s] for s in range(1, 7)] == [plain[s] for s in range(1, 7)]
    without = tiny_config(9)
    assert lrs[8] == pytest.approx(learning_rate(without, 7))  # continuous where the cooldown starts ...
    assert lrs[9] == pytest.approx(learning_rate(without, 8) / 2)  # ... then halving every half-life
    train(str(dataset), run_dir, tiny_config(10))  # resumed again without the option: the cooldown stays
    assert json.loads((run_dir / "config.json").read_text())["cooldown_from"] == 7


def test_a_new_runs_initial_weights_are_a_function_of_its_seed(dataset: Path, tmp_path: Path) -> None:
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        train(str(dataset), tmp_path / name, tiny_config(0, seed=seed))
    a, b, c = (load_checkpoint(tmp_path / name)["model"] for name in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


# --- data and log -----------------------------------------------------------------------------


def test_the_log_has_a_step_bpd_and_lr_record_per_interval(run_6: Path) -> None:
    records = log_records(run_6)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(r["bpd"]) and 0 < r["bpd"] < 32 and r["lr"] > 0 for r in records)


def test_a_folder_of_images_of_mixed_sizes_and_modes_is_training_data(image_folder: Path, tmp_path: Path) -> None:
    metrics = train(str(image_folder), tmp_path / "run", tiny_config(2))
    assert metrics["step"] == 2 and math.isfinite(metrics["train_bpd"])
    assert load_checkpoint(tmp_path / "run")["step"] == 2


def test_a_held_out_split_is_every_nth_image_and_never_trained_on(tmp_path: Path) -> None:
    images = structured_images(20, 8, 8, 4)
    images[[4, 9, 14, 19]] = 255  # the held-out images are the only white ones
    np.savez(tmp_path / "d.npz", images=images)
    kept, held = ImageSet.open(tmp_path / "d.npz").split_holdout(5)
    assert len(kept) == 16 and len(held) == 4 and (held.first(None) == 255).all()
    seen = ImageSet.open(tmp_path / "d.npz").split_holdout(5)[0]
    assert not any((seen.batch(0, step, 4, 8) == 255).all(axis=(1, 2, 3)).any() for step in range(40))
    metrics = train(str(tmp_path / "d.npz"), tmp_path / "run", tiny_config(2, holdout_every=5, eval_every=2, eval_crop=8))
    ema = load_run(tmp_path / "run", "ema")[0]
    assert metrics["test_bpd"] == pytest.approx(evaluate_bpd(ema, held.center_crops(8)))


def test_grey_training_data_is_what_the_codec_gives_the_model_and_mirrors_as_grey_images_do(tmp_path: Path) -> None:
    from icnn_codec.planes import grey_plane, planes_of

    rgb = structured_images(3, 16, 48, 5)
    np.savez(tmp_path / "d.npz", images=rgb)
    grey = ImageSet.open(tmp_path / "d.npz").as_grey_planes()
    for image, plane in zip(rgb, grey.images):
        as_l = np.asarray(Image.fromarray(image).convert("L"))
        assert np.array_equal(plane, planes_of(as_l[:, :, None])[0])
    crops = grey.batch(0, 0, 32, 8)  # 8 x 8 positions: 8 x 24 grey pixels
    planes = {grey_plane(np.ascontiguousarray(g)).tobytes() for p in grey.images for g in _grey_crops(p, 8, 24)}
    assert all(c.tobytes() in planes for c in crops)  # mirrored crops too: each is a grey crop's plane


def _grey_crops(plane: np.ndarray, h: int, w: int) -> list[np.ndarray]:
    """Every aligned h x w crop of the grey image behind ``plane``, and its mirror image."""
    grey = plane.reshape(plane.shape[0], -1)
    crops = [grey[t : t + h, 3 * c : 3 * c + w] for t in range(grey.shape[0] - h + 1) for c in range((grey.shape[1] - w) // 3 + 1)]
    return crops + [c[:, ::-1] for c in crops]


def test_a_grey_run_trains_and_evaluates_on_grey_planes(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=structured_images(10, 16, 48, 6))
    metrics = train(str(tmp_path / "d.npz"), tmp_path / "run", tiny_config(2, holdout_every=5, eval_every=2, eval_crop=8, grey=True))
    held = ImageSet.open(tmp_path / "d.npz").split_holdout(5)[1].as_grey_planes()
    assert metrics["test_bpd"] == pytest.approx(evaluate_bpd(load_run(tmp_path / "run", "ema")[0], held.center_crops(8)))


# --- export -----------------------------------------------------------------------------------


def test_an_export_is_integer_arrays_only_readable_without_pickle(exported: Path) -> None:
    with np.load(exported, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert arrays and all(np.issubdtype(a.dtype, np.integer) for a in arrays.values())
    assert exported.stat().st_size < MAX_MODEL_BYTES
    meta = json.loads(bytes(arrays["meta"]).decode())
    assert meta["training"]["steps"] == 6 and meta["config"] == TINY_AR


@pytest.mark.parametrize("as_model", ["export", "run_folder"])
def test_an_image_round_trips_exactly_through_a_trained_model(exported: Path, run_6: Path, as_model: str) -> None:
    model = resolve_model(str(exported if as_model == "export" else run_6))
    image = structured_images(1, 13, 10, seed=5)[0]  # sides of no round size
    data = ic.compress(image, model=model)
    assert np.array_equal(ic.decompress(data, model=model), image)


def test_a_run_folder_is_the_same_model_as_its_export(exported: Path, run_6: Path) -> None:
    assert resolve_model(str(run_6)).fingerprint == ic.load_model(str(exported)).fingerprint


def test_a_damaged_run_folder_is_a_model_error(run_6: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken-run"
    shutil.copytree(run_6, broken)
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(ic.ModelError, match="cannot load training run"):
        resolve_model(str(broken))


# --- command line -----------------------------------------------------------------------------


def test_cli_train_then_export_gives_a_model_under_25_mb_at_the_default_architecture(dataset: Path, tmp_path: Path) -> None:
    """The CLI's default architecture (the shipped cifar10 model's): one step, then export."""
    trained = icnn("train", str(dataset), "-o", "run", "--steps", "1", "--batch-size", "1", "--crop", "8", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert [r["step"] for r in log_records(tmp_path / "run")] == [1]
    exported = icnn("export", "run", "-o", "model.npz", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    size = (tmp_path / "model.npz").stat().st_size
    assert size < MAX_MODEL_BYTES
    assert ic.load_model(str(tmp_path / "model.npz")).fingerprint == resolve_model(str(tmp_path / "run")).fingerprint


def test_a_run_started_from_a_model_starts_with_its_weights_and_architecture(dataset: Path, exported: Path,
                                                                             tmp_path: Path) -> None:
    source = ic.load_model(str(exported))
    train(str(dataset), tmp_path / "started", tiny_config(0, model={**TINY_AR, "width": 16}), init_model=str(exported))
    started = resolve_model(str(tmp_path / "started"))
    assert started.local_ar.config() == TINY_AR  # the model's architecture, not the config's
    assert started.fingerprint == source.fingerprint  # the same integers: no step trained yet
    train(str(dataset), tmp_path / "started", tiny_config(2))
    assert resolve_model(str(tmp_path / "started")).fingerprint != source.fingerprint


def test_a_first_start_that_failed_after_its_config_still_starts_from_its_init_model(dataset: Path, exported: Path,
                                                                                     tmp_path: Path) -> None:
    with pytest.raises(OSError):  # the evaluation data is opened after the run's config is written
        train(str(dataset), tmp_path / "run", tiny_config(0), init_model=str(exported), eval_data=str(tmp_path / "missing.npz"))
    train(str(dataset), tmp_path / "run", tiny_config(0), init_model=str(exported), eval_data=str(dataset))
    assert resolve_model(str(tmp_path / "run")).fingerprint == ic.load_model(str(exported)).fingerprint


def test_a_run_folder_of_the_retired_flow_engine_is_a_one_line_refusal(dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps({"steps": 10, "flow": {"levels": 3}}))
    with pytest.raises(ValueError, match="retired flow engine"):
        train(str(dataset), tmp_path / "old", tiny_config(1))


def test_training_data_of_other_than_three_channels_is_refused_unless_grey(tmp_path: Path) -> None:
    np.savez(tmp_path / "grey.npz", images=structured_images(4, 8, 24)[:, :, :, :1])
    with pytest.raises(ValueError, match="1 channels"):
        train(str(tmp_path / "grey.npz"), tmp_path / "run", tiny_config(1))
    assert train(str(tmp_path / "grey.npz"), tmp_path / "grey-run", tiny_config(1, grey=True))["step"] == 1


def test_a_run_cannot_start_from_a_model_that_is_not_there_and_creates_no_run(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ic.ModelError, match="unknown model"):
        train(str(dataset), tmp_path / "run", tiny_config(1), init_model="no-such-model")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options", [["--no-residual-context"], ["--tile-predictor", "3"], ["--components", "1"]])
def test_cli_train_architectures_make_models_that_code_exactly(options: list[str], dataset: Path, tmp_path: Path) -> None:
    trained = icnn("train", str(dataset), "-o", "run", "--steps", "2", *TINY_CLI_OPTIONS, *options, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    model = resolve_model(str(tmp_path / "run"))
    config = model.local_ar.config()
    assert config["residual_context"] == ("--no-residual-context" not in options)
    assert config["tile_predictor"] == (3 if "--tile-predictor" in options else 0)
    image = structured_images(1, 20, 36)[0]
    assert np.array_equal(ic.decompress(ic.compress(image, model=model), model=model), image)


def test_cli_train_runs_data_parallel_under_torchrun(dataset: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "icnn_codec.cli",
           "train", str(dataset), "-o", "run", "--steps", "3", *TINY_CLI_OPTIONS]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(tmp_path / "run")["step"] == 3
    assert [r["step"] for r in log_records(tmp_path / "run")] == [1, 2, 3]  # rank 0 alone logs ...
    summaries = [line for line in done.stderr.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and json.loads(summaries[0])["step"] == 3  # ... and prints the summary


def run_without_checkpoint(tmp_path: Path) -> Path:
    """A run folder started but never saved (config and tables only)."""
    init_run(tmp_path / "run", tiny_config(1))
    return tmp_path / "run"


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(lambda d, tmp: ["train", str(tmp / "missing.npz"), "-o", str(tmp / "run")], id="train-missing-data"),
        pytest.param(lambda d, tmp: ["train", str(d), "-o", str(tmp / "run"), "--crop", "0"], id="train-crop-zero"),
        pytest.param(lambda d, tmp: ["train", str(d), "-o", str(tmp / "run"), "--kernel", "4"], id="train-even-kernel"),
        pytest.param(lambda d, tmp: ["train", str(d), "-o", str(tmp / "run"), "--tile-predictor", "2"], id="train-even-tile-predictor"),
        pytest.param(lambda d, tmp: ["train", str(d), "-o", str(tmp / "run"), "--cooldown-from", "5", "--cooldown-halflife", "0"],
                     id="train-cooldown-halflife-zero"),
        pytest.param(lambda d, tmp: ["train", str(d), "-o", str(tmp / "run"), "--init", "no-such-model"], id="train-unknown-init"),
        pytest.param(lambda d, tmp: ["export", str(run_without_checkpoint(tmp)), "-o", str(tmp / "m.npz")],
                     id="export-without-checkpoint"),
    ],
)
def test_cli_failures_are_one_line_on_stderr_and_a_nonzero_exit(
    command: Callable[[Path, Path], list[str]], dataset: Path, tmp_path: Path
) -> None:
    done = icnn(*command(dataset, tmp_path), cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("icnn: "), done.stderr
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize(
    ("data", "bad_config", "error"),
    [("missing.npz", tiny_config(1, lr=0.5), OSError), ("train.npz", tiny_config(1, crop=0), ValueError)],
    ids=["missing-data", "crop-zero"],
)
def test_a_failed_start_leaves_no_run_behind_so_the_next_start_uses_its_own_options(
    dataset: Path, tmp_path: Path, data: str, bad_config: TrainConfig, error: type[Exception]
) -> None:
    with pytest.raises(error):
        train(str(dataset.with_name(data)), tmp_path / "run", bad_config)
    assert not (tmp_path / "run").exists()
    train(str(dataset), tmp_path / "run", tiny_config(1))
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == asdict(tiny_config(1))
