"""Full-size photographs that ship with scikit-image, through every codec.

    python benchmarks/photos.py [--limit N] [--model M] [--codecs LIST]

astronaut (512x512), chelsea (451x300), coffee (600x400) and the stereo pair motorcycle_left /
motorcycle_right (741x500): all are PNGs in skimage's own data folder, so nothing is downloaded
(the JPEG-sourced samples are left out: their block artefacts favour no honest codec). They are
written as PNGs into a temporary folder named ``photos`` and that folder is benched. Writes
benchmarks/results/photos.{json,md,png}. icnn takes seconds per photo.
"""
import sys

import numpy as np

from common import bench_images_into_results

NAMES = ("astronaut", "chelsea", "coffee", "motorcycle_left", "motorcycle_right")


def photos() -> dict[str, np.ndarray]:
    """The photographs above that this scikit-image has locally (no network)."""
    import skimage.data as data

    found: dict[str, np.ndarray] = {}
    for name in NAMES:
        try:
            if name.startswith("motorcycle_"):
                left, right, _ = data.stereo_motorcycle()
                found[name] = left if name.endswith("left") else right
            else:
                found[name] = getattr(data, name)()
        except Exception as exc:  # not shipped with this version and no network to fetch it
            print(f"note: skipping {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return found


if __name__ == "__main__":
    bench_images_into_results("photos", photos(), sys.argv[1:])
