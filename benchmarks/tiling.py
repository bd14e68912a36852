"""What tiling costs: bpd, encode time and peak memory of each tile size on full-size photographs.

    python benchmarks/tiling.py [--model M] [--tiles 64,128,256,512,1024]

Tiles are coded independently, so the network loses context across tile borders (its
convolutions see edge padding there), and every tile adds a 4-byte checksum and an index entry.
Larger tiles cost memory (the network's activations grow with the tile's area) and leave fewer
pieces to share out among worker processes. A tile of 1024 holds each of these photos whole, so
its row is the untiled baseline. Each tile size runs in a fresh process (one thread) so peak
memory is its own. Writes benchmarks/results/tiling.{json,md}.
"""
import argparse
import json
import resource
import subprocess
import sys
import time

from common import RESULTS

from photos import photos


def measure(tile: int, model: str | None) -> dict:
    import torch

    import icnn_codec as ic

    torch.set_num_threads(1)
    images = photos()
    t0 = time.perf_counter()
    sizes = {name: len(ic.compress(px, model=model, tile=tile)) for name, px in images.items()}
    seconds = time.perf_counter() - t0
    dims = sum(px.size for px in images.values())
    return {"tile": tile, "bytes": sum(sizes.values()), "bpd": 8 * sum(sizes.values()) / dims, "dims": dims,
            "encode_seconds": round(seconds, 2), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "per_image": sizes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--tiles", default="64,128,256,512,1024")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one tile size
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.model)))
        return
    rows = []
    for tile in [int(t) for t in args.tiles.split(",")]:
        cmd = [sys.executable, __file__, "--one", str(tile)] + (["--model", args.model] if args.model else [])
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
        print(f"tile {tile}: {rows[-1]['bpd']:.4f} bpd, {rows[-1]['encode_seconds']} s, {rows[-1]['peak_rss_mb']} MB", file=sys.stderr)
    whole = max(rows, key=lambda r: r["tile"])
    import icnn_codec as ic

    model = args.model or ic.codec.default_model_name(512, 512)
    lines = [f"Model `{model}`, the {len(photos())} scikit-image photographs ({whole['dims']} dimensions), one thread.", "",
             "| tile | bpd | cost vs whole | encode s | peak RSS MB |", "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['tile']} | {r['bpd']:.4f} | {100 * (r['bpd'] / whole['bpd'] - 1):+.2f} % | {r['encode_seconds']} | {r['peak_rss_mb']} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tiling.json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "model": model, "rows": rows}, indent=1))
    (RESULTS / "tiling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
