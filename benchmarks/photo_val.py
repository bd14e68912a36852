"""The photo model's validation split through every codec: photographs it never trained on.

    python benchmarks/photo_val.py [--limit N] [--codecs icnn:photo,jpegxl,...]

The split: every 10th file of ../shared/data/photos/train (0010.webp, 0020.webp, ... 0490.webp,
49 photographs from all four source sets), the rule ``icnn train --holdout-every 10`` uses.
The photographs are research-only: they are read from ../shared, never copied into the repo.
Writes benchmarks/results/photo_val.{json,md,png}, and photo_val_sources.md: the same files'
bpd by the data set each photograph comes from (where the model gains or loses against the
classic codecs).
"""
from __future__ import annotations

import json
import sys

from common import RESULTS, SHARED, bench_images_into_results

from icnn_codec.training.data import HOLDOUT_EVERY, ImageSet

# The photo set's files by source (../shared/data/photos/README.md): the last number of each.
SOURCES = [(200, "BSDS300 train"), (300, "BSDS300 test"), (393, "Urban100"), (472, "Sun-Hays80"), (490, "McMaster")]
REFERENCE = ("icnn:photo", "jpegxl")  # the gap column: the first against the second


def source_of(image_name: str) -> str:
    number = int(image_name.split(".")[0])
    return next(name for last, name in SOURCES if number <= last)


def sources_table(report: dict) -> str:
    """bpd of every codec on each source set's photographs (their files' bytes over their values)."""
    [ds] = report["datasets"]
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(ds["image_names"]):
        groups.setdefault(source_of(name), []).append(i)
    results = [r for r in ds["results"] if r.get("image_bytes")]
    by_codec = {r["codec"]: r for r in results}
    gap = all(c in by_codec for c in REFERENCE)
    head = ["source", "photos", *(r["codec"] for r in results)] + ([f"{REFERENCE[0]} vs {REFERENCE[1]}"] if gap else [])
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for _, source in SOURCES:
        idx = groups.get(source, [])
        if not idx:
            continue
        dims = sum(ds["image_dims"][i] for i in idx)
        bpd = {r["codec"]: 8 * sum(r["image_bytes"][i] for i in idx) / dims for r in results}
        row = [source, str(len(idx)), *(f"{bpd[r['codec']]:.3f}" for r in results)]
        if gap:
            row.append(f"{bpd[REFERENCE[0]] / bpd[REFERENCE[1]] - 1:+.1%}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    _, held = ImageSet.open(SHARED / "data" / "photos" / "train").split_holdout(HOLDOUT_EVERY)
    try:
        bench_images_into_results("photo_val", {n.rsplit(".", 1)[0]: im for n, im in zip(held.names, held.images)}, sys.argv[1:])
    except SystemExit as done:  # the bench exits with its status; the breakdown comes after it
        if done.code:
            raise
    table = sources_table(json.loads((RESULTS / "photo_val.json").read_text()))
    (RESULTS / "photo_val_sources.md").write_text(table)
    print(table)
