"""What a model conversion costs: bpd of the installed models on held-out data, and the speed of one photo.

    PYTHONPATH=TREE python benchmarks/conversion.py [--speed]

Run it once on the code and models before a conversion (e.g. a ``git archive`` of the previous
commit as TREE) and once after. Prints, on one thread: ``photo`` on the 49 held-out central 128x128
crops (every 10th file of ``photos/train``: -log2 p by the training path and the coded streams),
``photo-grey`` on the same crops in grey, ``cifar10`` on test1k[:200]; with ``--speed``, the encode and
decode time of scikit-image's astronaut (512x512), twice, with the convolution backend named.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
from PIL import Image

import icnn_codec as ic
from icnn_codec import container
from icnn_codec.planes import exact_input
from icnn_codec.training.data import ImageSet
from common import SHARED


def bpd(streams: list[bytes], dims: int) -> tuple[float, float]:
    return 8 * sum(map(len, streams)) / dims, 8 * sum(len(s) - container.overhead_bytes(s) for s in streams) / dims


def nll_bpd(name: str, images: list[np.ndarray], batch: int = 7) -> float:
    flow = ic.load_model(name).flow
    with torch.no_grad():
        bits = sum(float(flow.nll_bits(exact_input(images[i : i + batch]).float()).sum())
                   for i in range(0, len(images), batch))
    return bits / sum(im.size for im in images)


def measure_bpd() -> None:
    _, held = ImageSet.open(SHARED / "data" / "photos" / "train").split_holdout(10)
    crops = list(held.center_crops(128))
    dims = sum(c.size for c in crops)
    fp = f"{ic.load_model('photo').fingerprint:04x}"
    if ic.load_model("photo").flow is not None:  # the training path's -log2 p: a flow's
        print(f"photo {fp}: nll {nll_bpd('photo', crops):.4f} bpd on {len(crops)} held-out 128x128 crops", flush=True)
    print("photo {}: streams {:.4f} bpd (payload {:.4f})".format(fp, *bpd(ic.compress_many(crops, model="photo"), dims)))
    grey = [np.asarray(Image.fromarray(c).convert("L")) for c in crops]
    print("photo-grey {:04x}: streams {:.4f} bpd on the same crops in grey".format(
        ic.load_model("photo-grey").fingerprint, bpd(ic.compress_many(grey, model="photo-grey"), dims // 3)[0]))
    with np.load(SHARED / "data" / "cifar10" / "test1k.npz") as z:
        cifar = list(z["images"][:200])
    streams = ic.compress_many(cifar, model="cifar10")
    print("cifar10 {:04x}: streams {:.4f} bpd (payload {:.4f}), nll {:.4f} on test1k[:200]".format(
        ic.load_model("cifar10").fingerprint, *bpd(streams, 200 * 32 * 32 * 3), nll_bpd("cifar10", cifar)))


def measure_speed() -> None:
    from skimage import data

    try:
        from icnn_codec.backends import current_backend
        backend = current_backend().name
    except ImportError:  # the code before the 8-bit scheme
        backend = "float64 (12-bit scheme)"
    img = data.astronaut()
    ic.compress(img[:64, :64], model="photo")  # loads the model (and chooses the backend)
    for _ in range(2):
        t = time.perf_counter()
        s = ic.compress(img)
        enc = time.perf_counter() - t
        t = time.perf_counter()
        assert np.array_equal(ic.decompress(s), img)
        print(f"{backend}: astronaut 512x512 {8 * len(s) / img.size:.4f} bpd, encode {enc:.2f} s, "
              f"decode {time.perf_counter() - t:.2f} s", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    if "--speed" in sys.argv[1:]:
        measure_speed()
    else:
        measure_bpd()
