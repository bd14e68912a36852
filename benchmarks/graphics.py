"""Non-photographic images through every codec: icnn must never be worse than PNG.

    python benchmarks/graphics.py [--limit N] [--codecs icnn,png,...]

The 36 real images of ../shared/data/graphics (screenshots, icons and logos, charts, diagrams,
maps, comics, pixel art, scanned text; measured here, never shipped or trained on) and synthetic
ones made here: flat areas, a smooth gradient, a dithered gradient, few-colour pixel art and a
1-bit text-like pattern. As the bench takes them: grey images as grey, the rest as RGB (alpha
dropped, for every codec alike). A bare ``icnn`` codes each image as ``icnn compress`` does.
Writes benchmarks/results/graphics.{json,md,png}, and graphics_images.md: each image's icnn file
against PNG's (Pillow, optimize=True), the largest ratio last.
"""
from __future__ import annotations

import json
import sys

import numpy as np
from PIL import Image

from common import RESULTS, SHARED, bench_images_into_results

CODECS = "icnn,png,webp,jpeg2000,jpegls,jpegxl"


def synthetic() -> dict[str, np.ndarray]:
    """Kinds of content a serious codec must handle well, made from formulas."""
    rng = np.random.default_rng(2026)
    yy, xx = np.mgrid[:256, :384]
    gradient = np.dstack([xx * 255 // 383, yy * 255 // 255, np.full_like(xx, 128)]).astype(np.uint8)
    dither = ((xx * 255 / 383 + rng.uniform(-64, 64, xx.shape)) > 127).astype(np.uint8) * 255
    palette = rng.integers(0, 256, (12, 3), dtype=np.uint8)
    art = palette[(xx // 16 * 7 + yy // 16 * 3) % 12]
    text = np.where((xx % 9 < 2) & (yy % 14 < 10) & ((xx // 9 + yy // 14) % 3 > 0), 0, 255).astype(np.uint8)
    return {"synthetic-flat": np.full((300, 400, 3), (30, 120, 200), np.uint8), "synthetic-gradient": gradient,
            "synthetic-dither": dither, "synthetic-pixel-art": art, "synthetic-text": text}


def real() -> dict[str, np.ndarray]:
    out = {}
    for path in sorted((SHARED / "data" / "graphics").glob("*.png")):
        with Image.open(path) as im:
            grey = im.mode in ("L", "LA", "1", "I;16")
            out[path.stem] = np.asarray(im.convert("L" if grey else "RGB"))
    return out


def ratios_table(report: dict) -> str:
    """icnn's file against PNG's, image by image."""
    [ds] = report["datasets"]
    by_codec = {r["codec"]: r for r in ds["results"]}
    icnn, png = by_codec["icnn"]["image_bytes"], by_codec["png"]["image_bytes"]
    rows = sorted(zip(ds["image_names"], icnn, png), key=lambda r: r[1] / r[2])
    lines = ["| image | icnn bytes | PNG bytes | icnn / PNG |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {a:,} | {b:,} | {a / b:.3f} |" for name, a, b in rows]
    worst = rows[-1]
    lines.append(f"\nLargest ratio: {worst[1] / worst[2]:.3f} ({worst[0]}); "
                 f"{sum(a <= 1.01 * b for _, a, b in rows)} of {len(rows)} images at most 1 % above PNG.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    try:
        bench_images_into_results("graphics", {**real(), **synthetic()}, sys.argv[1:], codecs=CODECS)
    except SystemExit as done:  # the bench exits with its status; the per-image table comes after it
        if done.code:
            raise
    table = ratios_table(json.loads((RESULTS / "graphics.json").read_text()))
    (RESULTS / "graphics_images.md").write_text(table)
    print(table)
