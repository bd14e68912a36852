"""Grey photographs through every codec: scikit-image's own grey images and its colour
photographs converted to grey.

    python benchmarks/grey.py [--limit N] [--model M] [--codecs LIST]

camera, coins and moon (natural grey photographs), page and text (scans of print), and the five
colour photographs of ``photos.py`` converted to grey by Pillow (ITU-R 601-2 luma). All ship with
scikit-image, so nothing is downloaded, and none is in the photo set the models were trained on.
icnn codes them with its default model, ``photo``, as runs of three grey neighbours. The bench
codes them as grey images (WebP, which has no grey mode, gets three equal channels) and counts bits
per grey value. Writes
benchmarks/results/grey.{json,md,png}.
"""
import sys

import numpy as np
from PIL import Image

from common import bench_images_into_results
from photos import photos

GREY_CODECS = "icnn:photo,png,webp,jpeg2000,jpegls,jpegxl,jpegxl-e9"

GREY_NAMES = ("camera", "coins", "moon", "page", "text")


def grey_photos() -> dict[str, np.ndarray]:
    import skimage.data as data

    found = {name: getattr(data, name)() for name in GREY_NAMES}
    found.update({f"{name}_grey": np.asarray(Image.fromarray(rgb).convert("L")) for name, rgb in photos().items()})
    return found


if __name__ == "__main__":
    bench_images_into_results("grey", grey_photos(), sys.argv[1:], codecs=GREY_CODECS)
