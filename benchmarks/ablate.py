"""Fixed-budget ablations of the photo flow: one command per variant.

    python benchmarks/ablate.py VARIANT [--minutes 20] [--start FLOW] [--threads 1]
    python benchmarks/ablate.py --list      # the variants
    python benchmarks/ablate.py --table     # every saved result as a markdown table

Each variant is grown from the same start, trained for the same wall-clock minutes and measured on
the central 128x128 crops of the validation split and of photos-unseen
(:mod:`icnn_codec.training.ablation`). Results go to benchmarks/results/ablations/VARIANT-Nmin[-lrX][-newlrX][-bf16][-START].json
(X: a learning rate other than the usual; -bf16 with --bf16-hidden; START: the start model's fingerprint); docs/ablations.md quotes
them. Run two at once on a 2-core machine with --threads 1 each. The default start is the last photo
flow that shipped (dc2b, kept in benchmarks/models/ since the local AR replaced it as `photo`).
"""
from __future__ import annotations

import argparse
import json
import sys

from common import PHOTO_FLOW, RESULTS, SHARED

from icnn_codec.training.ablation import VARIANTS, run_ablation, save_result

FOLDER = RESULTS / "ablations"


def table() -> str:
    """Grown variants first (their change is against the start, which they share), then the ones trained
    from scratch (compare them with each other: their start is random weights)."""
    rows = [json.loads(p.read_text()) for p in sorted(FOLDER.glob("*.json"))]
    lines = ["| variant | start | lr (new parts) | minutes | steps | val bpd | change | unseen bpd | change | MAC/pixel | "
             "networks ms (256²) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["start"] == "scratch", r["minutes"], r["val_bpd"])):
        grown = r["start"] != "scratch"
        changes = [f"{r[k + '_bpd'] / r[k + '_bpd_start'] - 1:+.2%}" if grown else "" for k in ("val", "unseen")]
        new_lr = "none" if r.get("new_lr") is None else f"{r['new_lr']:g}"
        lr = f"{r['lr']:g} ({new_lr})" if grown else f"{r['lr']:g}"
        variant = r["variant"] + (" (bf16 hidden)" if r.get("bf16_hidden") else "")
        lines.append(f"| {variant} | {r['start']} | {lr} | {r['minutes']:g} | {r['steps']} | {r['val_bpd']:.4f} | "
                     f"{changes[0]} | {r['unseen_bpd']:.4f} | {changes[1]} | {r['mac_per_pixel']:,} | "
                     f"{r['network_ms_256']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", nargs="?", choices=sorted(VARIANTS))
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--start", default=str(PHOTO_FLOW),
                        help="a flow: model name, file or run folder (default: the photo flow dc2b)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, help="learning rate of the weights the start gave (default: 5e-5 grown, "
                        "1e-3 from scratch, the variant's own when started warm)")
    parser.add_argument("--new-lr", type=float, default=1e-3,
                        help="learning rate of a grown variant's new, zero-initialised parts (default 1e-3; the rest: 5e-5)")
    parser.add_argument("--bf16-hidden", action="store_true",
                        help="train with the hidden layers in bfloat16 (icnn train --bf16-hidden); evaluation stays exact")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.list:
        for name, v in VARIANTS.items():
            print(f"{name:16} {v.description}")
    elif args.table:
        print(table())
    elif args.variant:
        result = run_ablation(args.variant, shared=SHARED, start=args.start, minutes=args.minutes, threads=args.threads,
                              lr=args.lr, new_lr=args.new_lr, bf16_hidden=args.bf16_hidden,
                              progress=lambda line: print(line, file=sys.stderr, flush=True))
        print(save_result(result, FOLDER))
    else:
        parser.error("name a variant, or --list or --table")
