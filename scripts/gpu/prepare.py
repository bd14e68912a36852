"""Pack what a GPU training run needs into .gpu/ (git-ignored), within what a lent machine takes.

A lent GPU machine (the library's ``device`` tool) gets the repository's tracked files plus the
folders a call carries, 64 MiB in all, and nothing else: not ../shared, not the venv. This writes

* ``.gpu/init.npz``: the model to start from (a model name, file or run folder's EMA);
* ``.gpu/arch``: the ``icnn train`` architecture options of that model;
* ``.gpu/data/``: a spread of the training images (the hold-out rule applied), as many as fit;
* ``.gpu/heldout.npz``: the held-out images' central crops, evaluated as training evaluates them;
* ``.gpu/whl/``: constriction's wheel for the machine's Python (the one package it lacks).

Then ``scripts/gpu/run.sh`` runs there (see docs/training.md)::

    python scripts/gpu/prepare.py --init runs/v2b ../shared/data/photos/train
    python scripts/gpu/prepare.py --init cifar10 /tmp/cifar10-train.npz --holdout-every 100 --eval-crop 32
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from icnn_codec.cli import architecture_options
from icnn_codec.training.data import ImageSet, list_image_files
from icnn_codec.training.runs import resolve_model
from icnn_codec.zoo import save_model

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / ".gpu"
TRAVEL_LIMIT = 64 * 2**20
MARGIN = 2 * 2**20
WHEEL = "constriction==0.5.0"


def tracked_bytes() -> int:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / f.decode()).stat().st_size for f in files if f and (REPO / f.decode()).is_file())


def training_files(data: str, train: ImageSet, scratch: Path) -> list[Path]:
    """The training images as files: a folder's own, or an .npz's written out as PNGs (CIFAR-10's
    50,000 do not fit; PNG keeps each one exact and smaller than its raw pixels)."""
    if Path(data).is_dir():
        names = set(train.names)
        return [f for f in list_image_files(data) if f.name in names]
    files = []
    for i, pixels in enumerate(train.images):
        files.append(scratch / f"{i:05d}.png")
        Image.fromarray(pixels.squeeze()).save(files[-1])
    return files


def spread(files: list[Path], budget: int) -> list[Path]:
    """Every other file, then the rest, while they fit: the subset spans every source of the set."""
    chosen, used = [], 0
    for f in files[::2] + files[1::2]:
        if used + f.stat().st_size <= budget:
            chosen.append(f)
            used += f.stat().st_size
    return sorted(chosen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="training images: a folder, or an .npz as `icnn train` takes")
    ap.add_argument("--init", required=True, help="model to start from: name, file or run folder")
    ap.add_argument("--holdout-every", type=int, default=10)
    ap.add_argument("--eval-crop", type=int, default=128)
    args = ap.parse_args()

    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "data").mkdir(parents=True)
    exclude = REPO / ".git" / "info" / "exclude"
    exclude.parent.mkdir(exist_ok=True)
    if "/.gpu/" not in (exclude.read_text() if exclude.exists() else ""):
        with open(exclude, "a") as f:
            f.write("/.gpu/\n")

    model = resolve_model(args.init)
    save_model(model.flow, OUT / "init.npz", model.name, model.tables, model.meta.get("training"))
    (OUT / "arch").write_text(" ".join(architecture_options(model.flow.cfg)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_17_x86_64",
                    "-d", str(OUT / "whl"), WHEEL], check=True)

    images = ImageSet.open(args.data)
    train, held = images.split_holdout(args.holdout_every)
    np.savez_compressed(OUT / "heldout.npz", images=held.center_crops(args.eval_crop))
    used = tracked_bytes() + sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        files = training_files(args.data, train, Path(tmp))
        chosen = spread(files, TRAVEL_LIMIT - MARGIN - used)
        for f in chosen:
            shutil.copy(f, OUT / "data" / f.name)
        used += sum(f.stat().st_size for f in chosen)
    print(f"{OUT}: {len(chosen)} of {len(files)} training images, {len(held)} held out; model {model.name} "
          f"({model.fingerprint:04x}); {used / 2**20:.1f} MiB to travel")


if __name__ == "__main__":
    main()
