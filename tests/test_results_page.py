"""docs/results.md is the page the benchmark tables make: a re-run benchmark, a new one or an edit
of the page by hand shows here until `python benchmarks/results_doc.py` writes it again."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_results_page_is_what_the_benchmark_tables_make():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results_doc.py"), "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
