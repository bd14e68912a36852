"""A 6000x4000 photograph through the codec: wall time and peak memory, encode and decode.

    python benchmarks/large.py [--width 6000 --height 4000] [--jobs N] [--tile 256] [--model M]

The image is a mosaic of scikit-image's photographs (astronaut, chelsea, coffee, the motorcycle
pair), mirrored to fill the frame, so nothing is downloaded. Encode and decode each run in a fresh
process, whose peak RSS is the peak memory (tile jobs are threads of that process). Writes
benchmarks/results/large.{json,md}.
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import RESULTS

from photos import photos


def mosaic(width: int, height: int) -> np.ndarray:
    out = np.empty((height, width, 3), np.uint8)
    pieces = list(photos().values())
    y, k = 0, 0
    while y < height:
        x, row_h = 0, 0
        while x < width:
            p = pieces[k % len(pieces)][:, :: (-1 if (k // len(pieces)) % 2 else 1)]
            k += 1
            h, w = min(p.shape[0], height - y), min(p.shape[1], width - x)
            out[y : y + h, x : x + w] = p[:h, :w]
            x, row_h = x + w, max(row_h, h)
        y += row_h
    return out


def step(kind: str, src: Path, dst: Path, args) -> dict:
    import icnn_codec as ic

    t0 = time.perf_counter()
    if kind == "encode":
        dst.write_bytes(ic.compress(np.load(src), model=args.model, tile=args.tile, jobs=args.jobs))
    else:
        np.save(dst, ic.decompress(src.read_bytes(), jobs=args.jobs))
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 1), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--model", default=None)
    ap.add_argument("--step", nargs=3, help=argparse.SUPPRESS)  # internal: KIND SRC DST in a fresh process
    args = ap.parse_args()
    if args.jobs is None:
        from icnn_codec.codec import default_jobs

        args.jobs = default_jobs()
    if args.step:
        print(json.dumps(step(args.step[0], Path(args.step[1]), Path(args.step[2]), args)))
        return
    image = mosaic(args.width, args.height)
    passthrough = ["--jobs", str(args.jobs), "--tile", str(args.tile)] + (["--model", args.model] if args.model else [])
    with tempfile.TemporaryDirectory() as tmp:
        src, stream, out = Path(tmp) / "in.npy", Path(tmp) / "x.icnn", Path(tmp) / "out.npy"
        np.save(src, image)
        res = {}
        for kind, a, b in (("encode", src, stream), ("decode", stream, out)):
            cmd = [sys.executable, __file__, "--step", kind, str(a), str(b), *passthrough]
            res[kind] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            print(kind, res[kind], file=sys.stderr)
        exact = bool(np.array_equal(np.load(out), image))
        nbytes = stream.stat().st_size
    import icnn_codec as ic

    model = args.model or ic.codec.default_model_name(args.height, args.width)
    result = {"date": time.strftime("%Y-%m-%d"), "width": args.width, "height": args.height, "model": model,
              "tile": args.tile, "jobs": args.jobs, "bytes": nbytes, "bpd": round(8 * nbytes / image.size, 4),
              "exact": exact, **res}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "large.json").write_text(json.dumps(result, indent=1))
    line = (f"{args.width}x{args.height} RGB (model `{model}`, tile {args.tile}, {args.jobs} jobs): {result['bpd']} bpd, "
            f"exact: {'yes' if exact else 'NO'}; encode {res['encode']['seconds']} s, peak {res['encode']['peak_rss_mb']} MB; "
            f"decode {res['decode']['seconds']} s, peak {res['decode']['peak_rss_mb']} MB")
    (RESULTS / "large.md").write_text(line + "\n")
    print(line)
    sys.exit(0 if exact else 1)


if __name__ == "__main__":
    main()
