"""CIFAR-10 test1k (the 1,000 recoverable test images) through every codec.

    python benchmarks/cifar10.py [--limit N] [--model M] [--codecs LIST]

Reads ../shared/data/cifar10/test1k.npz next to the repository (or $ICNN_SHARED/data/...).
Writes benchmarks/results/cifar10.{json,md,png}. All 1,000 images unless --limit; icnn codes about
20 CIFAR images a second on a laptop CPU, so the full run takes a few minutes.
"""
import sys

from common import SHARED, bench_into_results

DATA = SHARED / "data" / "cifar10" / "test1k.npz"

if __name__ == "__main__":
    bench_into_results("cifar10", DATA, sys.argv[1:])
