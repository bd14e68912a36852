"""The photo model's validation split through every codec: photographs it never trained on.

    python benchmarks/photo_val.py [--limit N] [--codecs icnn:photo,jpegxl,...]

The split: every 10th file of ../shared/data/photos/train (0010.webp, 0020.webp, ... 0490.webp,
49 photographs from all four source sets), the rule ``icnn train --holdout-every 10`` uses.
The photographs are research-only: they are read from ../shared, never copied into the repo.
Writes benchmarks/results/photo_val.{json,md,png}.
"""
import sys

from common import SHARED, bench_images_into_results

from icnn_codec.data import ImageSet

HOLDOUT_EVERY = 10

if __name__ == "__main__":
    _, held = ImageSet.open(SHARED / "data" / "photos" / "train").split_holdout(HOLDOUT_EVERY)
    bench_images_into_results("photo_val", {n.rsplit(".", 1)[0]: im for n, im in zip(held.names, held.images)}, sys.argv[1:])
