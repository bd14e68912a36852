"""What the benchmark scripts share: run `icnn bench` on a dataset into benchmarks/results/.

Each script is a thin wrapper, so a published figure is exactly what `icnn bench` prints; extra
command-line arguments (``--limit 50``, ``--model M``, ``--codecs icnn,jpegxl``) pass through.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SHARED = Path(os.environ.get("ICNN_SHARED", ROOT.parent / "shared"))  # as tests/conftest.py
sys.path.insert(0, str(ROOT))  # run from a source checkout without installing

from icnn_codec.tools.bench import bench_command  # noqa: E402


def bench_into_results(name: str, data: Path, argv: list[str]) -> None:
    """`icnn bench DATA --json/--markdown/--plot results/NAME.*` plus ``argv``; exits with its status."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    args = [str(data), "--json", str(RESULTS / f"{name}.json"), "--markdown", str(RESULTS / f"{name}.md"),
            "--plot", str(RESULTS / f"{name}.png"), *argv]
    bench_command.main(args, prog_name=f"benchmarks/{name}.py", standalone_mode=True)


PHOTO_CODECS = "icnn:photo,png,webp,jpeg2000,jpegls,jpegxl,jpegxl-e9,jpegxl-mt"


def bench_images_into_results(name: str, images: dict[str, np.ndarray], argv: list[str],
                              codecs: str = PHOTO_CODECS) -> None:
    """Write ``images`` as PNGs into a temporary folder called NAME and bench that folder.

    ``codecs`` applies unless ``argv`` names its own ``--codecs``."""
    if not any(a.startswith("--codecs") for a in argv):
        argv = ["--codecs", codecs, *argv]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        for stem, pixels in images.items():
            Image.fromarray(pixels).save(folder / f"{stem}.png")
        bench_into_results(name, folder, argv)
