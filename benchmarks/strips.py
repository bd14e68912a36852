"""What strips save: photographs coded with their edges padded, and with short rests as strips.

    python benchmarks/strips.py [--limit N] [--model M]     (defaults: 10 photos, the photo flow dc2b)

The photos are the first N of the photo validation split (every 10th file of
../shared/data/photos/train; most are 481x321 or 321x481, whose edge tiles of 256 leave rests of
1 row and 1 column). Both code the same tiles of 256 with the same model (padded: the flow takes
whole planes, padded to its block); the table gives each photo's bpd both ways and what its
strips cost per value. Writes benchmarks/results/strips.md.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from common import PHOTO_FLOW, RESULTS, SHARED

import icnn_codec as ic
from icnn_codec import container, payload
from icnn_codec.planes import flow_shape, planes_of
from icnn_codec.strips import strip_bits
from icnn_codec.training.data import ImageSet


def padded_stream(model, pixels: np.ndarray) -> bytes:
    """The stream as the encoder would write it if the flow took whole planes, padded (no strips)."""
    strips_shape = payload.flow_shape
    payload.flow_shape = lambda height, width, block: (height, width)
    try:
        return ic.compress(pixels, model=model, tile=256)
    finally:
        payload.flow_shape = strips_shape


def tile_pixels(pixels: np.ndarray, tile: container.Tile) -> np.ndarray:
    return pixels[tile.top : tile.top + tile.height, tile.left : tile.left + tile.width]


def strip_cost(model, pixels: np.ndarray) -> tuple[float, int]:
    """(bits, values) of the strips of every tile of 256."""
    header = container.Header("RGB", pixels.shape[1], pixels.shape[0], model.fingerprint, 256)
    bits, values = 0.0, 0
    for tile in header.tiles():
        for plane in planes_of(tile_pixels(pixels, tile)):
            flow_h, flow_w = flow_shape(*plane.shape[:2], model.block)
            bits += strip_bits(plane, flow_h, flow_w, model.tables)
            values += plane.size - flow_h * flow_w * 3
    return bits, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--model", default=str(PHOTO_FLOW))
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = ic.load_model(args.model)
    _, held = ImageSet.open(SHARED / "data" / "photos" / "train").split_holdout(10)
    lines = [f"Model `{args.model}` ({model.fingerprint:04x}), tiles of 256, the first {args.limit} photos of the "
             "validation split.", "", "| photo | size | padded bpd | strips bpd | saved | strip bits per value |",
             "|---|---|---:|---:|---:|---:|"]
    totals = np.zeros(5)
    for name, pixels in list(zip(held.names, held.images))[: args.limit]:
        stream = ic.compress(pixels, model=model, tile=256)
        assert np.array_equal(ic.decompress(stream), pixels)
        old, new = len(padded_stream(model, pixels)), len(stream)
        bits, values = strip_cost(model, pixels)
        totals += (old, new, bits, values, pixels.size)
        per_value = f"{bits / values:.2f}" if values else "-"
        lines.append(f"| {name} | {pixels.shape[1]}x{pixels.shape[0]} | {8 * old / pixels.size:.3f} | "
                     f"{8 * new / pixels.size:.3f} | {1 - new / old:.1%} | {per_value} |")
        print(lines[-1], flush=True)
    old, new, bits, values, size = totals
    lines.append(f"| all | | {8 * old / size:.3f} | {8 * new / size:.3f} | {1 - new / old:.1%} | {bits / max(values, 1):.2f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "strips.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
