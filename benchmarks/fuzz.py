"""Fuzz the decoder: tens of thousands of damaged streams, each an exact decode or a clean error.

    python benchmarks/fuzz.py [--streams 10000] [--seed 0]

The valid streams come from CIFAR-10 test images (../shared/data/cifar10/test1k.npz), scikit-image's
'chelsea' cut to L, LA and RGBA images, a noise image (a stored tile), a tiled image (15 tiles)
and the golden stream of tests/data/sample.png; see icnn_codec/tools/fuzz.py for the kinds of damage.
Writes benchmarks/results/fuzz.{json,md}; exits 1 on any crash, hang or wrong decode.
"""
import argparse
import json
import sys
import time

import numpy as np
from PIL import Image

from common import RESULTS, ROOT, SHARED

import icnn_codec as ic  # noqa: E402
from icnn_codec.tools.fuzz import fuzz  # noqa: E402


def corpus() -> tuple[list[bytes], list[np.ndarray]]:
    from skimage.data import chelsea

    with np.load(SHARED / "data" / "cifar10" / "test1k.npz") as z:
        images = list(z["images"][:16])
    photo = chelsea()
    images += [np.ascontiguousarray(photo[:40, :48, 0]), np.dstack([photo[:24, :16, 0], photo[:24, :16, 1]]),
               np.dstack([photo[:20, :30], np.full((20, 30), 200, np.uint8)])]
    images.append(np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8))  # a stored tile
    streams = [ic.compress(im) for im in images]
    images.append(np.ascontiguousarray(photo[100:140, 100:172]))
    streams.append(ic.compress(images[-1], tile=16))
    golden = ROOT / "tests" / "data" / "golden"
    streams += [p.read_bytes() for p in sorted(golden.glob("sample.*.icnn"))]
    images.append(np.asarray(Image.open(golden.parent / "sample.png")))
    return streams, images


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hang-seconds", type=float, default=10.0)
    args = ap.parse_args()
    streams, images = corpus()
    t0 = time.time()

    def progress(i, report):
        if i % 500 == 0 or i == args.streams:
            print(f"{i}/{args.streams} streams, {dict(report.outcomes)}, {time.time() - t0:.0f} s", file=sys.stderr)

    report = fuzz(streams, images, args.streams, seed=args.seed, hang_seconds=args.hang_seconds, progress=progress)
    result = {"date": time.strftime("%Y-%m-%d"), "seed": args.seed, "source_streams": len(streams),
              "seconds": round(time.time() - t0, 1), **report.as_dict()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fuzz.json").write_text(json.dumps(result, indent=1))
    o = report.outcomes
    lines = [f"{report.streams} damaged streams (seed {args.seed}, {len(streams)} source streams): "
             f"{o['clean_error']} clean DecodeErrors, {o['exact']} exact decodes, "
             f"{o['crash']} crashes, {o['hang']} hangs (> {args.hang_seconds:g} s), {o['wrong_pixels']} wrong pixels; "
             f"slowest decode {report.max_seconds:.2f} s.", "",
             "| damage | clean error | exact | failed |", "|---|---:|---:|---:|"]
    for kind, counts in report.by_mutation.items():
        failed = sum(counts.get(k, 0) for k in ("crash", "hang", "wrong_pixels"))
        lines.append(f"| {kind} | {counts.get('clean_error', 0)} | {counts.get('exact', 0)} | {failed} |")
    (RESULTS / "fuzz.md").write_text("\n".join(lines) + "\n")
    print(lines[0])
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
