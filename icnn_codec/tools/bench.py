"""`icnn bench`: icnn against the classic lossless codecs, on the same pixels, every result verified.

A compression figure is only worth quoting when every codec sees the same images, every stream is
decoded again and compared pixel for pixel, and the byte count is what a user would store (one
file per image, headers included). This module does exactly that and nothing else:

* a small codec registry (``REGISTRY``: name -> factory -> :class:`Codec`), so baselines are one
  entry each and a test can inject a deliberately lossy codec and watch it be reported;
* :func:`run_bench`, the Python entry point, which returns a JSON-ready report;
* renderers for the terminal / Markdown table and the bpd-versus-decode-speed plot;
* the click command ``bench_command`` (``icnn bench``).

Nothing is written to disk while coding; speeds are raw pixel bytes (H*W*C) per wall-clock second
of the codec calls alone (no file I/O, no verification). icnn is called through
``compress_many``/``decompress_many`` in batches of :data:`ICNN_BATCH` images, since that is how
it is meant to be used; the classic codecs are called once per image, single-threaded.
"""
from __future__ import annotations

import ctypes
import datetime
import functools
import gc
import inspect
import io
import json
import os
import platform
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import click
import numpy as np

import torch

from .. import codec as icodec
from ..errors import ModelError
from ..planes import planes_of
from ..progress import Progress
from ..training.data import ImageSet
from ..training.runs import resolve_model
from ..zoo import Model, default_model_name

ICNN_BATCH = 64  # images per compress_many / decompress_many call (the codec's own default)
ICNN_NOTE = f"batched, {ICNN_BATCH} images per compress_many / decompress_many call"
BENCH_EXTRA_HINT = "install the 'bench' extra (imagecodecs, matplotlib)"

Step = Callable[[int, str], None]  # (steps just done, what runs now); a step is one image coded


class CodecUnavailable(Exception):
    """A codec cannot run here (library not installed, unknown name or model): skipped, with a note."""


@dataclass
class Codec:
    """One way of turning an image into a stand-alone file and back.

    ``encode``/``decode`` work on one image. A codec that is faster on batches (icnn) also gives
    ``encode_many``/``decode_many`` and a ``batch`` size; the bench then calls those. ``nll_bits``,
    when given, is the model's own ideal code length (total bits) for a list of images, so the
    coder's and the header's overhead can be told apart from the model's.
    """

    name: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes], np.ndarray]
    batch: int = 1
    encode_many: Callable[[list[np.ndarray]], list[bytes]] | None = None
    decode_many: Callable[[list[bytes]], list[np.ndarray]] | None = None
    nll_bits: Callable[[list[np.ndarray]], float] | None = None
    note: str = ""

    def encode_batch(self, images: list[np.ndarray]) -> list[bytes]:
        return self.encode_many(images) if self.encode_many else [self.encode(a) for a in images]

    def decode_batch(self, datas: list[bytes]) -> list[np.ndarray]:
        return self.decode_many(datas) if self.decode_many else [self.decode(d) for d in datas]


CodecFactory = Callable[[str | None], Codec]  # the part after "name:" (or None) -> a ready codec


# -- the registry -------------------------------------------------------------------------------
def _no_argument(name: str, arg: str | None) -> None:
    if arg is not None:
        raise CodecUnavailable(f"{name} takes no ':' argument (got '{name}:{arg}')")


def _icnn(arg: str | None) -> Codec:
    """icnn with a model by name, file or training run folder (``icnn:NAME``); without one, what
    ``icnn compress`` does: the default model for each image's size and mode."""
    try:
        model = resolve_model(arg) if arg else None
    except ModelError as exc:
        raise CodecUnavailable(str(exc)) from None
    return Codec(
        name=f"icnn:{arg}" if arg else "icnn",
        encode=lambda a: icodec.compress(a, model=model),
        decode=lambda d: icodec.decompress(d, model=model),
        batch=ICNN_BATCH,
        encode_many=lambda ims: icodec.compress_many(ims, model=model, batch_size=ICNN_BATCH),
        decode_many=lambda ds: icodec.decompress_many(ds, model=model, batch_size=ICNN_BATCH),
        nll_bits=lambda ims: sum(model_nll_bits(model or _default_model(a), [a]) for a in ims) if model is None
        else model_nll_bits(model, ims),
        note=ICNN_NOTE,
    )


def _default_model(image: np.ndarray) -> Model:
    """The model ``icnn compress`` picks for this image."""
    return resolve_model(default_model_name(image.shape[0], image.shape[1]))


def _png(arg: str | None) -> Codec:
    """PNG through Pillow at its strongest setting (``optimize=True``)."""
    _no_argument("png", arg)
    from PIL import Image

    def encode(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG", optimize=True)
        return buf.getvalue()

    return Codec("png", encode, lambda d: np.asarray(Image.open(io.BytesIO(d))))


def _with_threads(fn: Callable, threads: int) -> Callable:
    """``fn`` with ``numthreads=threads`` where it takes one, so the baselines run on the threads the
    report names whatever imagecodecs' default is (jpegls and webp_decode take none and are
    single-threaded)."""
    try:
        takes = "numthreads" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes = False
    return functools.partial(fn, numthreads=threads) if takes else fn


def _imagecodecs(name: str, kind: str, grey_as_rgb: bool = False, all_cores: bool = False, **options) -> CodecFactory:
    """A factory for ``imagecodecs.<kind>_encode(image, **options)`` / ``<kind>_decode``, on one
    thread, or with ``all_cores`` on one per core (as icnn runs by default).

    ``grey_as_rgb``: the format has no grey mode (WebP), so a grey image is given as RGB with
    three equal channels, as its own command-line encoder does, and decoded back to grey."""

    def factory(arg: str | None) -> Codec:
        _no_argument(name, arg)
        try:
            import imagecodecs
        except ImportError:
            raise CodecUnavailable(f"{name} needs the imagecodecs package ({BENCH_EXTRA_HINT})") from None
        if not getattr(imagecodecs, kind.upper()).available:
            raise CodecUnavailable(f"{name}: this imagecodecs build has no {kind}")
        threads = icodec.default_jobs() if all_cores else 1
        enc = _with_threads(getattr(imagecodecs, f"{kind}_encode"), threads)
        dec = _with_threads(getattr(imagecodecs, f"{kind}_decode"), threads)
        if grey_as_rgb:  # decodes give the three channels back: see _same_pixels
            return Codec(name, lambda a: bytes(enc(np.dstack([a] * 3) if a.ndim == 2 else a, **options)), dec)
        return Codec(name, lambda a: bytes(enc(a, **options)), dec)

    return factory


REGISTRY: dict[str, CodecFactory] = {
    "icnn": _icnn,
    "png": _png,
    "webp": _imagecodecs("webp", "webp", grey_as_rgb=True, lossless=True, method=6),
    # reversible = the 5/3 integer wavelet and the reversible colour transform: lossless
    "jpeg2000": _imagecodecs("jpeg2000", "jpeg2k", reversible=True),
    "jpegls": _imagecodecs("jpegls", "jpegls"),
    "jpegxl": _imagecodecs("jpegxl", "jpegxl", lossless=True, effort=7),
    "jpegxl-e9": _imagecodecs("jpegxl-e9", "jpegxl", lossless=True, effort=9),
    "jpegxl-mt": _imagecodecs("jpegxl-mt", "jpegxl", all_cores=True, lossless=True, effort=7),
}
DEFAULT_CODECS = [name for name in REGISTRY if name != "jpegxl-mt"]  # the classic codecs on one thread


def register_codec(name: str, factory: CodecFactory) -> None:
    """Add (or replace) a codec the bench can run by name."""
    REGISTRY[name] = factory


def make_codec(spec: str, model: str | None = None) -> Codec:
    """``name`` or ``name:ARG`` -> a ready codec; a bare ``icnn`` takes ``model`` when given, and
    otherwise chooses for each image what ``icnn compress`` would.

    The codec is reported under the name it was asked for (``icnn:MODEL`` for a bare ``icnn``
    given a model), so results always say which model made them."""
    base, sep, arg = spec.strip().partition(":")
    if base not in REGISTRY:
        raise CodecUnavailable(f"unknown codec '{spec}' (known: {', '.join(REGISTRY)})")
    if base == "icnn" and not sep and model:
        arg, sep = model, ":"
    codec = REGISTRY[base](arg if sep else None)
    codec.name = f"{base}:{arg}" if sep else base
    return codec


# -- measurements ---------------------------------------------------------------------------------
def model_nll_bits(model: Model, images: Sequence[np.ndarray]) -> float:
    """The model's own -log2 p summed over images, untiled, of the planes the codec gives the model (a
    grey image's plane packs three neighbours per position): the exact code length of each plane whole,
    its side information and adaptive component included.

    Divided by the real pixel count this is the bpd an ideal coder would reach with no header and no
    tiles, so ``bpd - nll_bpd`` is the coder's, the header's and the tiling's cost.
    """
    from ..wavefront import code_length  # compiled loops (numba): loaded only when measured

    return sum(code_length(model.local_ar, model.tables, plane[None])
               for a in images for plane in planes_of(a if a.ndim == 3 else a[:, :, None]))


CLEAR_REFS = "/proc/self/clear_refs"


def peak_memory_method() -> str:
    """How :class:`PeakMemory` measures on this machine (for the report)."""
    if os.access(CLEAR_REFS, os.W_OK):
        return "peak RSS above the start (Linux VmHWM, reset per codec)"
    return "growth of ru_maxrss (a lower bound: 0 unless above the process's earlier peak)"


class PeakMemory:
    """Peak resident memory of this process during a ``with`` block, above what it held before.

    Resident memory rather than tracemalloc, so allocations inside C libraries (torch, libjxl, ...)
    count. On Linux the kernel's high-water mark (VmHWM) is reset on entry through
    /proc/self/clear_refs; elsewhere ru_maxrss, which cannot be reset, so its growth is a lower
    bound. :func:`peak_memory_method` says which.
    """

    def __init__(self) -> None:
        self.peak_bytes = 0
        self._start = 0
        self._hwm = os.access(CLEAR_REFS, os.W_OK)

    @staticmethod
    def _status_bytes(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # reported in kB
        raise OSError(f"/proc/self/status has no {field}")

    @staticmethod
    def _maxrss_bytes() -> int:
        import resource  # POSIX only: imported where it is used, so the CLI starts on Windows

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, kB on Linux

    @staticmethod
    def _release_free_memory() -> None:
        """Hand freed heap back to the OS first, so memory an earlier codec freed but the process
        kept counts again when this one reuses it (glibc only; elsewhere a no-op)."""
        gc.collect()
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):
            pass

    def __enter__(self) -> "PeakMemory":
        self._release_free_memory()
        if self._hwm:
            try:
                with open(CLEAR_REFS, "w") as f:
                    f.write("5")  # 5: reset the peak resident set size to the current one
                self._start = self._status_bytes("VmRSS")
                return self
            except OSError:
                self._hwm = False
        self._start = self._maxrss_bytes()
        return self

    def __exit__(self, *exc) -> None:
        end = self._status_bytes("VmHWM") if self._hwm else self._maxrss_bytes()
        self.peak_bytes = max(0, end - self._start)


def _in_batches(fn: Callable[[list], list], items: list, batch: int, progress: Step | None, what: str) -> Iterable[tuple[list, list, float]]:
    """Call ``fn`` on consecutive batches; yield (inputs, outputs, seconds spent inside ``fn``)."""
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        t0 = time.perf_counter()
        out = fn(chunk)
        seconds = time.perf_counter() - t0
        if progress:
            progress(len(chunk), what)
        yield chunk, out, seconds


def _same_pixels(decoded, original: np.ndarray) -> bool:
    d = np.asarray(decoded)
    if original.ndim == 2 and d.shape == (*original.shape, 3):  # a grey image given to a codec as RGB (WebP)
        return all(np.array_equal(d[:, :, c], original) for c in range(3))
    return d.shape == original.shape and np.array_equal(d, original)


def bench_codec(codec: Codec, images: list[np.ndarray], progress: Step | None = None, label: str = "") -> dict:
    """Encode and decode every image with one codec, verify, and measure; never raises for a
    failing or lossy codec (it is reported: ``lossless`` false and, for an exception, ``error``)."""
    dims = sum(a.size for a in images)
    result: dict = {"codec": codec.name, "bpd": None, "nll_bpd": None, "encode_MBps": None, "decode_MBps": None,
                    "lossless": False, "bytes": None, "encode_s": None, "decode_s": None, "peak_MB": None,
                    "mismatched_images": None, "batch": codec.batch, "note": codec.note}
    datas: list[bytes] = []
    t_enc = t_dec = 0.0
    mismatched = 0
    memory = PeakMemory()
    try:
        with memory:
            for _, out, seconds in _in_batches(codec.encode_batch, images, codec.batch, progress, f"{label}{codec.name} encode"):
                datas += [bytes(d) for d in out]
                t_enc += seconds
            result.update(bytes=sum(map(len, datas)), bpd=8 * sum(map(len, datas)) / dims, encode_s=t_enc, encode_MBps=dims / 1e6 / max(t_enc, 1e-9),
                          image_bytes=[len(d) for d in datas])
            pairs = list(zip(datas, images))
            decode_pairs = lambda ps: codec.decode_batch([d for d, _ in ps])  # noqa: E731
            for chunk, out, seconds in _in_batches(decode_pairs, pairs, codec.batch, progress, f"{label}{codec.name} decode"):
                mismatched += sum(not _same_pixels(d, a) for d, (_, a) in zip(out, chunk))  # outside the timing
                t_dec += seconds
        result.update(decode_s=t_dec, decode_MBps=dims / 1e6 / max(t_dec, 1e-9), mismatched_images=mismatched, lossless=mismatched == 0)
    except Exception as exc:  # a codec that crashes is a result too, not the end of the bench
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["peak_MB"] = memory.peak_bytes / 1e6
    if codec.nll_bits is not None:
        result["nll_bpd"] = codec.nll_bits(images) / dims
    return result


# -- datasets -------------------------------------------------------------------------------------
def bench_image(a: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 -> what is benched: (H, W) for grey (C = 1), else (H, W, 3) as Pillow's
    convert('RGB') makes it (alpha dropped)."""
    c = a.shape[2]
    if c == 1:
        return np.ascontiguousarray(a[:, :, 0])
    rgb = a[:, :, :3] if c >= 3 else np.repeat(a[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(rgb)


def load_dataset(path: str | Path, limit: int | None = None) -> tuple[str, list[np.ndarray], list[str]]:
    """A folder of images or an ``.npz`` with ``images`` -> (name, first ``limit`` images, grey
    ones as H x W, the rest as RGB, and their names).

    Raises ``ValueError`` with a one-line reason for anything that is not such a dataset."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.is_file() and not zipfile.is_zipfile(path):  # an .npz is a zip; a lone image is not DATA
        raise ValueError(f"{path}: not a folder of images or an .npz file")
    try:
        subset = ImageSet.open(path, mode=None).subset(limit)
        images, names = subset.images, subset.names
    except Exception as exc:  # not an npz, a broken image file, ...: say which path, in one line
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(reason if reason.startswith(str(path)) else f"{path}: cannot read images ({reason})") from None
    if len(images) == 0:
        raise ValueError(f"{path}: no images")
    name = path.name if path.is_dir() else path.stem
    return name, [bench_image(np.asarray(a)) for a in images], list(names)


# -- the whole bench ------------------------------------------------------------------------------
def machine_info() -> dict:
    """What the speeds were measured on (they mean little without it)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__}
    for mod in ("PIL", "imagecodecs"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "torch_threads": torch.get_num_threads(),
        "classic_codec_threads": 1,
        "platform": platform.platform(),
        "versions": versions,
    }


def run_bench(
    datasets: Sequence[str | Path],
    codecs: Sequence[str | Codec] | None = None,
    model: str | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> dict:
    """Bench codecs (names, ``name:ARG``, or :class:`Codec` objects; default: all registered) on
    datasets (folders or .npz), the first ``limit`` images of each. Unavailable codecs are skipped
    and listed under ``skipped``; ``progress`` hears of every image coded.

    Raises ``ValueError`` for a dataset that cannot be read or when no codec can run."""
    loaded = [load_dataset(p, limit) for p in datasets]  # bad input fails before any slow work
    ready: list[Codec] = []
    skipped: list[dict] = []
    for spec in codecs or DEFAULT_CODECS:
        if isinstance(spec, Codec):
            ready.append(spec)
            continue
        try:
            ready.append(make_codec(spec, model))
        except CodecUnavailable as exc:
            skipped.append({"codec": spec, "reason": str(exc)})
    if not ready:
        raise ValueError("no codec can run: " + "; ".join(s["reason"] for s in skipped))
    report: dict = {
        "datasets": [],
        "skipped": skipped,
        "limit": limit,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "method": {
            "bpd": "8 x total bytes of the per-image files (headers included) / total H*W*C",
            "nll_bpd": "the icnn model's own -log2 p, untiled (its exact code length, tile predictor and scale "
                       "offset included) / total H*W*C",
            "speed": "raw pixel MB (H*W*C / 1e6) per wall-clock second inside the codec calls",
            "icnn": ICNN_NOTE,
            "memory": peak_memory_method(),
            "images": "grey images as grey (bpd per grey value), the rest converted to RGB",
        },
    }
    steps = 2 * len(ready) * sum(len(images) for _, images, _ in loaded)
    done = 0

    def step(n: int, what: str) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, steps, what)

    for name, images, image_names in loaded:
        results = [bench_codec(c, images, step, f"{name}: ") for c in ready]
        report["datasets"].append({"name": name, "images": len(images), "dims": int(sum(a.size for a in images)),
                                   "image_names": image_names, "image_dims": [int(a.size) for a in images],
                                   "results": results})
    return report


def lossy_results(report: dict) -> list[str]:
    """'codec on dataset' for every result that did not come back pixel-exact."""
    return [f"{r['codec']} on {d['name']}" for d in report["datasets"] for r in d["results"] if not r["lossless"]]


# -- output ---------------------------------------------------------------------------------------
COLUMNS = ("codec", "bpd", "nll bpd", "enc MB/s", "dec MB/s", "peak MB", "lossless")


def _num(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _row(r: dict) -> list[str]:
    lossless = "yes" if r["lossless"] else ("ERROR" if "error" in r else "NO")
    return [r["codec"], _num(r["bpd"], 3), _num(r["nll_bpd"], 3), _num(r["encode_MBps"], 3),
            _num(r["decode_MBps"], 3), _num(r["peak_MB"], 1), lossless]


def render_table(report: dict, markdown: bool = False) -> str:
    """The results as aligned text (terminal) or Markdown; one table per dataset, then notes."""
    lines: list[str] = []
    for d in report["datasets"]:
        rows = [list(COLUMNS)] + [_row(r) for r in d["results"]]
        title = f"{d['name']}: {d['images']} images, {d['dims']:,} values (H*W*C)"
        if markdown:
            lines += [f"### {title}", "", "| " + " | ".join(rows[0]) + " |", "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|"]
            lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        else:
            widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
            lines.append(title)
            lines += ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
        lines += [f"{'- ' if markdown else '  '}{r['codec']}: {r['error']}" for r in d["results"] if "error" in r]
        lines.append("")
    m, method = report["machine"], report["method"]
    results = [r for d in report["datasets"] for r in d["results"]]
    batched = any(r["batch"] > 1 for r in results)
    notes = [
        "icnn: " + (f"{method['icnn']}; " if batched else "")
        + f"tiles shared among {m['usable_cpus']} jobs (its default: one per core), "
        + f"torch threads: {m['torch_threads']} in all; "
        + f"classic codecs: one call per image, {m['classic_codec_threads']} thread"
        + (f" (jpegxl-mt: {m['usable_cpus']})" if any(r["codec"] == "jpegxl-mt" for r in results) else ""),
        f"speed: {method['speed']}; memory: {method['memory']}",
        f"machine: {m['cpu']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs; {report['date']}",
    ] + [f"skipped {s['codec']}: {s['reason']}" for s in report["skipped"]]
    lines += [f"- {n}" if markdown else n for n in notes]
    return "\n".join(lines) + "\n"


def write_plot(report: dict, path: str | Path) -> None:
    """bpd against decode speed (log scale), one panel per dataset; lossy results marked red."""
    try:
        import matplotlib
    except ImportError:
        raise click.ClickException(f"--plot needs matplotlib ({BENCH_EXTRA_HINT})") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = report["datasets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.5), squeeze=False)
    for ax, d in zip(axes[0], sets):
        for r in d["results"]:
            if r["bpd"] is None or r["decode_MBps"] is None:
                continue
            ax.scatter(r["decode_MBps"], r["bpd"], marker="o" if r["lossless"] else "x", color="C0" if r["lossless"] else "red")
            ax.annotate(r["codec"], (r["decode_MBps"], r["bpd"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("decode speed (MB/s of raw pixels, log scale)")
        ax.set_ylabel("bits per dimension (lower is better)")
        ax.set_title(f"{d['name']} ({d['images']} images)")
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _parse_codecs(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


@click.command("bench")
@click.argument("data", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--codecs", "codecs", metavar="LIST", help=f"comma-separated, e.g. icnn,png,jpegxl or icnn:NAME_OR_PATH [default: {','.join(DEFAULT_CODECS)}]")
@click.option("--model", "model", metavar="M", help="model for a bare 'icnn' (name, file or run folder) [default: what 'icnn compress' picks for each image]")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="only the first N images of each DATA")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="write the results as JSON")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="write the table as Markdown")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="plot bpd against decode speed (needs matplotlib)")
def bench_command(data: tuple[Path, ...], codecs: str | None, model: str | None, limit: int | None,
                  json_path: Path | None, md_path: Path | None, plot_path: Path | None) -> None:
    """Compare icnn with the classic lossless codecs on DATA (image folders or .npz files).

    Every image is encoded to its own in-memory file, decoded and checked pixel for pixel; the
    exit status is 1 if any codec was not lossless. Grey (L) images are benched as grey, all
    others converted to RGB (alpha dropped).
    """
    with click.progressbar(length=1, label="loading", file=sys.stderr) as bar:

        def progress(done: int, steps: int, what: str) -> None:
            bar.length, bar.label = steps, what
            bar.update(done - bar.pos)

        try:
            report = run_bench(data, _parse_codecs(codecs), model, limit, progress)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    for s in report["skipped"]:
        click.echo(f"note: skipped {s['codec']}: {s['reason']}", err=True)
    table = render_table(report)
    click.echo(table)
    if json_path:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    if md_path:
        md_path.write_text(render_table(report, markdown=True))
    if plot_path:
        write_plot(report, plot_path)
    lossy = lossy_results(report)
    if lossy:
        click.echo("error: not lossless: " + ", ".join(lossy), err=True)
        click.get_current_context().exit(1)
