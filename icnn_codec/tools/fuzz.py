"""Robustness fuzzing: mutate valid streams every way a file gets damaged, and decode them.

Every decode must end in one of two ways: the exact original pixels (a mutation can leave a
stream equivalent, e.g. a tile size that still covers a small image in one tile) or
:class:`icnn_codec.DecodeError`. Anything else is a failure: another exception (a crash),
pixels that differ from the original (a wrong decode), or a decode slower than ``hang_seconds``.
Used by the test suite (a few hundred streams) and ``benchmarks/fuzz.py`` (tens of thousands).
"""
from __future__ import annotations

import io
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..codec import decompress
from ..errors import DecodeError

HEADER_BYTES = 12  # the fixed part of a small stream's header plus its first tile checksum


def _png_bytes(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _flip_bit(d: bytes, rng: np.random.Generator, lo: int = 0, hi: int | None = None) -> bytes:
    hi = len(d) if hi is None else min(hi, len(d))
    pos = int(rng.integers(lo, hi))
    return d[:pos] + bytes([d[pos] ^ (1 << int(rng.integers(8)))]) + d[pos + 1 :]


def _span(d: bytes, rng: np.random.Generator) -> tuple[int, int]:
    a = int(rng.integers(0, len(d)))
    return a, min(len(d), a + int(rng.integers(1, 17)))


MUTATIONS: dict[str, Callable[[bytes, np.random.Generator, bytes], bytes]] = {
    "bit_flip": lambda d, r, o: _flip_bit(d, r),
    "header_bit_flip": lambda d, r, o: _flip_bit(d, r, 0, HEADER_BYTES),
    "two_bit_flips": lambda d, r, o: _flip_bit(_flip_bit(d, r), r),
    "random_byte": lambda d, r, o: (lambda p: d[:p] + bytes([int(r.integers(256))]) + d[p + 1 :])(int(r.integers(len(d)))),
    "truncate": lambda d, r, o: d[: int(r.integers(0, len(d)))],
    "extend": lambda d, r, o: d + r.bytes(int(r.integers(1, 9))),
    "delete_span": lambda d, r, o: (lambda a, b: d[:a] + d[b:])(*_span(d, r)),
    "zero_span": lambda d, r, o: (lambda a, b: d[:a] + bytes(b - a) + d[b:])(*_span(d, r)),
    "insert_bytes": lambda d, r, o: (lambda p: d[:p] + r.bytes(int(r.integers(1, 9))) + d[p:])(int(r.integers(len(d)))),
    "splice": lambda d, r, o: d[: int(r.integers(1, len(d)))] + o[int(r.integers(0, len(o))) :],
    "random_bytes": lambda d, r, o: b"IC" + r.bytes(int(r.integers(0, 2 * len(d)))) if r.integers(2) else r.bytes(int(r.integers(0, 64))),
    "empty": lambda d, r, o: b"",
    "png_file": lambda d, r, o: _png_bytes(r),
}


@dataclass
class FuzzReport:
    streams: int = 0
    outcomes: Counter = field(default_factory=Counter)  # clean_error / exact / crash / wrong_pixels / hang
    by_mutation: dict = field(default_factory=dict)
    max_seconds: float = 0.0
    total_seconds: float = 0.0
    failures: list = field(default_factory=list)  # (mutation, outcome, message), the first few

    @property
    def failed(self) -> int:
        return sum(self.outcomes[k] for k in ("crash", "wrong_pixels", "hang"))

    def as_dict(self) -> dict:
        return {"streams": self.streams, "outcomes": dict(self.outcomes), "by_mutation": self.by_mutation,
                "max_seconds": round(self.max_seconds, 3), "mean_seconds": round(self.total_seconds / max(1, self.streams), 4),
                "failures": self.failures[:20]}


def classify(data: bytes, original: np.ndarray, hang_seconds: float) -> tuple[str, str, float]:
    """(outcome, message, seconds) of decoding one possibly damaged stream."""
    t0 = time.perf_counter()
    try:
        out = decompress(data)
        outcome, msg = ("exact", "") if np.array_equal(out, original) else ("wrong_pixels", "decoded without error")
    except DecodeError as exc:
        outcome, msg = "clean_error", str(exc)
    except Exception as exc:  # the failure this harness exists to find
        outcome, msg = "crash", f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t0
    if seconds > hang_seconds:
        outcome, msg = "hang", f"{seconds:.1f} s"
    return outcome, msg, seconds


def fuzz(streams: Sequence[bytes], originals: Sequence[np.ndarray], n: int, seed: int = 0,
         hang_seconds: float = 10.0, progress: Callable[[int, FuzzReport], None] | None = None) -> FuzzReport:
    """Decode ``n`` mutated streams (mutation kinds and source streams drawn at random)."""
    rng = np.random.default_rng(seed)
    kinds = sorted(MUTATIONS)
    valid = {bytes(s): i for i, s in enumerate(streams)}  # a splice can rebuild another valid stream
    report = FuzzReport()
    for i in range(n):
        kind = kinds[int(rng.integers(len(kinds)))]
        j, k = int(rng.integers(len(streams))), int(rng.integers(len(streams)))
        damaged = MUTATIONS[kind](streams[j], rng, streams[k])
        outcome, msg, seconds = classify(damaged, originals[valid.get(damaged, j)], hang_seconds)
        report.streams += 1
        report.outcomes[outcome] += 1
        report.by_mutation.setdefault(kind, Counter())[outcome] += 1
        report.max_seconds = max(report.max_seconds, seconds)
        report.total_seconds += seconds
        if outcome in ("crash", "wrong_pixels", "hang"):
            report.failures.append((kind, outcome, msg))
        if progress:
            progress(i + 1, report)
    report.by_mutation = {k: dict(v) for k, v in sorted(report.by_mutation.items())}
    return report
