"""Photographs from sources the photo model never saw, through every codec.

    python benchmarks/photos_unseen.py [--limit N] [--codecs icnn:photo,jpegxl,...]

../shared/data/photos-unseen: 58 crops of at most 512x512 from data sets outside the training
set (DND, CLIC 2020, USC-SIPI, Tecnick, Middlebury, libjxl's test data and others; its README and
SOURCES.md). Validation only, never trained on, never copied into the repo: the folder is benched
where it lies. Writes benchmarks/results/photos_unseen.{json,md,png}.
"""
import sys

from common import PHOTO_CODECS, SHARED, bench_into_results

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a.startswith("--codecs") for a in argv):
        argv += ["--codecs", PHOTO_CODECS]
    bench_into_results("photos_unseen", SHARED / "data" / "photos-unseen", argv)
