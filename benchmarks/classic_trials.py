"""Which classic trials a tile needs: every trial's size against the encoder's cheap ranking.

    python benchmarks/classic_trials.py [--every N]

The encoder codes each many-coloured tile through the model and classically and keeps the shorter.
The full classic search is 6 streams (2 colour transforms x 3 filter strategies) x bzip2, then LZMA
on the best two; on photographs that cost about as much as the model's network. Here every 256-pixel
tile of the graphics benchmark's images, the scikit-image photographs (benchmarks/photos.py) and
every Nth photo of ../shared/data/photos-unseen (default 4) gets every trial, with the two cheap
estimates of ``classic.probe`` (a zlib level 1 probe and the order-0 entropy of each stream).
Few-colour tiles are left out (the encoder codes them classically first, with every trial).
The report gives, per set, how many tiles count as photographic (probe / order-0 at least the
encoder's ratio), what ``encode_classic`` (given the model's size) costs now against the search it
made before photographic tiles got fewer trials (all tiles' chosen sizes, model or classic), and
the least LZMA / bzip2 ratio on photographic tiles, which bounds when their LZMA trial can be
skipped. Writes benchmarks/results/classic_trials.md.
"""
from __future__ import annotations

import sys

import numpy as np
from PIL import Image

from common import RESULTS, SHARED
from graphics import real, synthetic
from photos import photos

from icnn_codec import classic, payload
from icnn_codec.zoo import load_model

TILE = 256


def tiles_of(image: np.ndarray):
    image = image[:, :, None] if image.ndim == 2 else image
    for y in range(0, image.shape[0], TILE):
        for x in range(0, image.shape[1], TILE):
            yield np.ascontiguousarray(image[y:y + TILE, x:x + TILE])


def measure(tile: np.ndarray, model) -> dict:
    candidates = list(classic._candidates(tile))
    model_size = len(payload._model_streams(model, [tile], [0])[0]) - payload.CHECKSUM_BYTES  # as a classic payload's rival
    probes = [classic.probe(c.stream) for c in candidates]
    return {
        "model": model_size,
        "raw": tile.size,
        "bzip2": [len(classic._payload(c, classic._Compressor.BZIP2)) for c in candidates],
        "lzma": [len(classic._payload(c, classic._Compressor.LZMA)) for c in candidates],
        "probe": [p[0] for p in probes],
        "order0": [p[1] for p in probes],
        "encoder": len(classic.encode_classic(tile, size_to_beat=model_size)[1]),
    }


def previous_search(t: dict) -> int:
    """The encoder's search before photographic tiles got fewer trials: bzip2 on every stream, then
    LZMA on the two bzip2 ranks best where it could plausibly beat the model."""
    cheap = min(t["bzip2"])
    if t["model"] < cheap * classic._lzma_gain_bound(cheap / t["raw"]):
        return cheap
    return min(cheap, min(t["lzma"][i] for i in np.argsort(t["bzip2"], kind="stable")[:2]))


def photographic(t: dict) -> bool:
    return min(t["probe"]) >= classic._PHOTOGRAPHIC_PROBE_RATIO * min(t["order0"])


def report(sets: dict[str, list[dict]]) -> str:
    lines = ["| set | tiles | photographic | probe / order-0 (min, median) | encoder vs previous search | "
             "least LZMA / bzip2 (photographic) | least classic / order-0 (photographic) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, tiles in sets.items():
        ratios = [min(t["probe"]) / min(t["order0"]) for t in tiles]
        photo = [t for t in tiles if photographic(t)]
        previous = sum(min(t["model"], previous_search(t)) for t in tiles)
        now = sum(min(t["model"], t["encoder"]) for t in tiles)
        lzma_gain = min((min(t["lzma"]) / min(t["bzip2"]) for t in photo), default=float("nan"))
        classic_gain = min((min(t["lzma"] + t["bzip2"]) / min(t["order0"]) for t in photo), default=float("nan"))
        lines.append(f"| {name} | {len(tiles)} | {len(photo)} | {min(ratios):.3f}, {np.median(ratios):.3f} | "
                     f"{100 * (now - previous) / previous:+.3f} % | {lzma_gain:.3f} | {classic_gain:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    every = int(argv[argv.index("--every") + 1]) if "--every" in argv else 4
    unseen = sorted(p for p in (SHARED / "data" / "photos-unseen").iterdir() if p.suffix != ".md")[::every]
    images = {"graphics": {**synthetic(), **real()}, "photos": photos(),
              "photos-unseen": {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in unseen}}
    model = load_model("photo")  # grey tiles too, as the codec codes them
    sets = {}
    for name, by_name in images.items():
        sets[name] = [measure(tile, model) for image in by_name.values() for tile in tiles_of(image)
                      if not classic.has_few_colours(tile, payload.FEW_COLOURS)]
        print(f"{name}: {len(sets[name])} tiles", file=sys.stderr)
    text = ("### Classic trials on many-coloured 256-pixel tiles\n\n" + report(sets) +
            f"\n- photographic: zlib level 1 probe / order-0 entropy >= {classic._PHOTOGRAPHIC_PROBE_RATIO} "
            "(best stream of each)\n- encoder vs previous search: the sum over a set's tiles of the shorter of the "
            "model's coding and the classic one, as `encode_classic` finds it now and as it did with every trial\n")
    (RESULTS / "classic_trials.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
