"""Where icnn loses to JPEG XL on photographs, and how much of it a colour transform explains.

    python benchmarks/colour_gap.py

Reads the per-image sizes of the last ``photo_val`` and ``photos_unseen`` runs
(benchmarks/results/*.json: icnn's photo model and JPEG XL effort 7) and, for each image, computes
two classic yardsticks with no modelling at all: the zeroth-order entropy of the median edge
detector's residuals (JPEG-LS's predictor) per channel, once on R, G, B and once after the
reversible YCoCg-R colour transform. Images are grouped by source (the validation split's four data
sets; photos-unseen as one group). Writes benchmarks/results/colour_gap.md.
"""
from __future__ import annotations

import json

import numpy as np

from PIL import Image

from common import RESULTS, SHARED

SOURCES = ((300, "BSDS300 (JPEG history)"), (393, "Urban100 (halved)"), (472, "Sun-Hays80 (halved)"),
           (490, "McMaster"))


def med_residuals(plane: np.ndarray) -> np.ndarray:
    """plane - MED(left, above, above-left), zero outside the image."""
    p = np.pad(plane.astype(np.int64), ((1, 0), (1, 0)))
    a, b, c = p[1:, :-1], p[:-1, 1:], p[:-1, :-1]
    pred = np.where(c >= np.maximum(a, b), np.minimum(a, b), np.where(c <= np.minimum(a, b), np.maximum(a, b), a + b - c))
    return plane - pred


def entropy_bits(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    q = counts / counts.sum()
    return float(-(q * np.log2(q)).sum())


def ycocg_r(rgb: np.ndarray) -> list[np.ndarray]:
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    co = r - b
    t = b + (co >> 1)
    cg = g - t
    return [t + (cg >> 1), co, cg]


def yardsticks(rgb: np.ndarray) -> tuple[float, float]:
    """MED residual entropy (bits per sample) on RGB and on YCoCg-R."""
    planes = [rgb[..., i].astype(np.int64) for i in range(3)]
    return (float(np.mean([entropy_bits(med_residuals(p)) for p in planes])),
            float(np.mean([entropy_bits(med_residuals(p)) for p in ycocg_r(rgb)])))


def per_image(result_name: str) -> tuple[list[str], dict[str, np.ndarray]]:
    data = json.loads((RESULTS / f"{result_name}.json").read_text())["datasets"][0]
    dims = np.array(data["image_dims"])
    sizes = {r["codec"]: np.array(r["image_bytes"]) * 8 / dims for r in data["results"] if "image_bytes" in r}
    return data["image_names"], sizes


def main() -> None:
    rows = []
    for result_name, folder in (("photo_val", SHARED / "data" / "photos" / "train"),
                                ("photos_unseen", SHARED / "data" / "photos-unseen")):
        names, sizes = per_image(result_name)
        for i, name in enumerate(names):
            stem = name.rsplit(".", 1)[0]
            [path] = [p for p in folder.iterdir() if p.stem == stem]
            with Image.open(path) as im:
                rgb, ycc = yardsticks(np.asarray(im.convert("RGB")))
            group = "photos-unseen" if result_name == "photos_unseen" else \
                next(label for last, label in SOURCES if int(stem) <= last)
            rows.append((group, sizes["icnn:photo"][i], sizes["jpegxl"][i], rgb, ycc))
    lines = ["Per-image bpd, averaged over each group's images (icnn: the photo model as `icnn bench` last ran it; "
             "MED: zeroth-order entropy of JPEG-LS's predictor's residuals, no context modelling).", "",
             "| images | count | icnn | JPEG XL e7 | icnn / JPEG XL | MED on RGB | MED on YCoCg-R |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for group in [label for _, label in SOURCES] + ["photos-unseen"]:
        mine = np.array([r[1:] for r in rows if r[0] == group])
        if not len(mine):
            continue
        icnn, jxl, rgb, ycc = mine.mean(axis=0)
        lines.append(f"| {group} | {len(mine)} | {icnn:.3f} | {jxl:.3f} | {icnn / jxl:.3f} | {rgb:.3f} | {ycc:.3f} |")
    (RESULTS / "colour_gap.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
