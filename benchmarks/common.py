"""What the benchmark scripts share: run `icnn bench` on a dataset into benchmarks/results/.

Each script is a thin wrapper, so a published figure is exactly what `icnn bench` prints; extra
command-line arguments (``--limit 50``, ``--model M``, ``--codecs icnn,jpegxl``) pass through.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))  # run from a source checkout without installing

from icnn_codec.bench import bench_command  # noqa: E402


def bench_into_results(name: str, data: Path, argv: list[str]) -> None:
    """`icnn bench DATA --json/--markdown/--plot results/NAME.*` plus ``argv``; exits with its status."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    args = [str(data), "--json", str(RESULTS / f"{name}.json"), "--markdown", str(RESULTS / f"{name}.md"),
            "--plot", str(RESULTS / f"{name}.png"), *argv]
    bench_command.main(args, prog_name=f"benchmarks/{name}.py", standalone_mode=True)
