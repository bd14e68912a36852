"""The ``icnn`` command line: compress, decompress, info, bench, train, export.

Errors are one line on stderr naming the file, and a non-zero exit; outputs are written to a
temporary name and renamed, so a failure never leaves a half-written file behind.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import click
from PIL import Image, UnidentifiedImageError

from . import __version__, codec, container
from .backends import current_backend
from .errors import IcnnError, ModelError
from .imagefile import read_image, write_image
from .tools.bench import bench_command
from .training import TrainConfig, export_run, resolve_model
from .training.runs import DEFAULT_ARCHITECTURE
from .training import train as run_training
from .zoo import (DEFAULT_MODEL, PHOTO_MODEL, THUMBNAIL_SIDE, available_models, default_model_name,
                  installed_model_name, model_card, model_role, read_model_file)

SUFFIX = ".icnn"
USER_ERRORS = (IcnnError, OSError, UnidentifiedImageError, Image.DecompressionBombError)


def _fail(name: str, exc: BaseException) -> None:
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, UnidentifiedImageError):
        msg = "not an image file Pillow can read"
    elif isinstance(exc, OSError) and exc.strerror:
        msg = exc.strerror
    click.echo(f"icnn: {name}: {msg}", err=True)


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    return Path(path).read_bytes()


def _write_output(path: str, data: bytes, force: bool) -> None:
    """Write atomically: a temporary file beside the target, then rename."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    _check_free(path, force)
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; an output gets the usual mode
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_free(path: str, force: bool) -> None:
    if path != "-" and Path(path).exists() and not force:
        raise FileExistsError(f"{path} exists (use -f to overwrite)")


def _outputs(inputs: tuple[str, ...], out: str | None, default_name) -> list[str]:
    """Where each input goes: -o names a file (one input) or a folder (several)."""
    if out is None:
        return ["-" if i == "-" else default_name(i) for i in inputs]
    if out == "-":
        if len(inputs) > 1:
            raise click.UsageError("-o -: stdout takes one input only")
        return [out]
    if len(inputs) == 1 and not Path(out).is_dir():
        return [out]
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise click.UsageError(f"-o {out}: with several inputs, -o must be a folder")
    folder.mkdir(parents=True, exist_ok=True)
    return [str(folder / Path(default_name("stdin" if i == "-" else i)).name) for i in inputs]


class TileProgress:
    """A progress bar of tiles on the terminal, for an image of several tiles (long work); nothing
    when stderr is not a terminal or ``quiet``. Pass it as the codec's ``progress``."""

    def __init__(self, label: str, quiet: bool = False) -> None:
        self.label, self.enabled = label, not quiet and sys.stderr.isatty()
        self.bar, self.shown = None, 0

    def __call__(self, done: int, total: int, what: str = "tiles") -> None:
        if not self.enabled or total < 2:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr, show_eta=True)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def __enter__(self) -> "TileProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _run_each(inputs, outputs, work) -> None:
    """Run ``work(input, output)`` for each pair; report failures, keep going, exit 1 if any."""
    failed = 0
    for src, dst in zip(inputs, outputs):
        try:
            work(src, dst)
        except USER_ERRORS as exc:
            _fail(src, exc)
            failed += 1
    if failed:
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message=f"%(prog)s (icnn-codec) %(version)s, stream format {container.FORMAT_VERSION}")
def main() -> None:
    """icnn: lossless image compression by a learned model in exact integer arithmetic.

    \b
      icnn compress photo.png              -> photo.png.icnn
      icnn decompress photo.png.icnn       -> photo.png (pixels and mode identical)
      icnn info photo.png.icnn             header fields
      icnn bench test1k.npz --limit 200    bpd and speed against PNG, WebP, JPEG 2000, JPEG-LS, JPEG XL
      icnn train train.npz -o runs/a       train (resumable) a model

    Every stream carries a CRC-32 of its pixels: a decode is exact or an error.
    """


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file (one input) or folder (several). '-' is stdout.")
@click.option("-m", "--model", default=None, help=f"Model name in models/, a model file, or a training run folder. [default: '{PHOTO_MODEL}' for images "
              f"larger than {THUMBNAIL_SIDE}x{THUMBNAIL_SIDE} when installed, else '{DEFAULT_MODEL}']")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print sizes.")
@click.option("--tile", type=int, default=None,
              help="Tile side in pixels, a multiple of 8 from 8 to 1024: "
                   "memory and parallelism grow with tiles. "
                   f"[default: {codec.DEFAULT_TILE}; {codec.GREY_DEFAULT_TILE} for grey images]")
@click.option("-j", "--jobs", type=int, default=None, help="Threads coding the tiles of large images in parallel. [default: all cores]")
@click.option("--strip", is_flag=True, help="Drop the metadata (ICC profile, EXIF, XMP, text, resolution, other PNG chunks) instead of keeping it.")
def compress(inputs, output, model, force, quiet, tile, jobs, strip) -> None:
    """Compress images (PNG, GIF, WebP, TIFF, ... anything Pillow reads; '-' is stdin) to .icnn streams.

    a.png becomes a.png.icnn unless -o says otherwise. Everything comes back: every frame of an
    animation or multi-page file (with durations, loop count, disposal), the ICC profile, EXIF,
    XMP, text and resolution (unless --strip), and the samples: 8-bit L, LA, RGB, RGBA, palette
    (kept as their RGB/RGBA pixels) and 16-bit grey. Deeper samples Pillow cannot give exactly
    (16-bit colour PNGs) are refused, never truncated.
    """
    try:
        m = resolve_model(model) if model else None  # None: the default model for each image's size
    except USER_ERRORS as exc:
        _fail(model, exc)
        sys.exit(2)
    try:
        if tile is not None:
            container.check_tile_side(tile)
    except IcnnError as exc:
        _fail(f"--tile {tile}", exc)
        sys.exit(2)

    def work(src: str, dst: str) -> None:
        _check_free(dst, force)  # before minutes of coding, not after
        raw = _read_input(src)
        document = read_image(raw)
        with TileProgress(f"{src}: tiles", quiet) as progress:
            data = codec.compress_document(document, model=m, tile=tile, jobs=jobs or None, strip=strip, progress=progress)
        _write_output(dst, data, force)
        if not quiet:
            h = codec.read_header(data)
            dims = h.width * h.height * h.channels * h.n_frames
            used = m.name if m else default_model_name(h.height, h.width)
            frames = f", {h.n_frames} frames" if h.n_frames > 1 else ""
            click.echo(f"{src} -> {dst}: {len(raw)} -> {len(data)} bytes, {8 * len(data) / dims:.3f} bpd "
                       f"({h.width}x{h.height} {h.mode}{frames}, {h.n_tiles} tile{'s' if h.n_tiles > 1 else ''}, model {used})",
                       err=True)

    _run_each(inputs, _outputs(inputs, output, lambda p: p + SUFFIX), work)


def _decoded_name(path: str) -> str:
    """a.png.icnn -> a.png; a.icnn -> a.png (a name without an image extension gets .png)."""
    base = path[: -len(SUFFIX)] if path.endswith(SUFFIX) and len(path) > len(SUFFIX) else path
    return base if base != path and Path(base).suffix.lower() in Image.registered_extensions() else base + ".png"


def _encode_image(document, dst: str) -> bytes:
    """Encode a decoded document losslessly in the format the output's extension names (PNG for
    '-'); what the format cannot keep of its metadata or timing is a warning, what it cannot hold
    of its frames or pixels an error."""
    ext = Path(dst).suffix.lower() if dst != "-" else ".png"
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise IcnnError(f"unknown output format '{ext}' (use .png, .webp, .tif, .gif, .bmp, ...)")
    if fmt in ("JPEG", "MPO"):
        raise IcnnError("refusing to write a lossy JPEG; use .png")
    written = write_image(document, fmt)
    for item in written.dropped:
        click.echo(f"icnn: warning: {dst}: dropped {item}", err=True)
    return written.data


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output image (one input) or folder (several). '-' is stdout (PNG).")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("-m", "--model", default=None, help="Decode with this model (default: the installed model the stream names).")
@click.option("-j", "--jobs", type=int, default=None, help="Threads coding the tiles of large images in parallel. [default: all cores]")
@click.option("--max-pixels", type=click.IntRange(min=0), default=container.MAX_PIXELS, show_default=True,
              help="Refuse streams declaring more pixels than this (a guard against forged sizes); 0: no limit.")
def decompress(inputs, output, force, model, jobs, max_pixels) -> None:
    """Decompress .icnn streams ('-' is stdin); a.png.icnn becomes a.png.

    The format follows the output's extension (PNG, WebP lossless, TIFF, GIF, BMP, ...): all
    frames and the metadata it can hold are written, and the file is read back and compared. A
    format that cannot hold the frames or pixels exactly is an error (nothing written); metadata
    or timing it cannot keep is a warning.
    """
    try:
        given = resolve_model(model) if model else None
    except USER_ERRORS as exc:
        _fail(model, exc)
        sys.exit(2)

    def work(src: str, dst: str) -> None:
        _check_free(dst, force)
        with TileProgress(f"{src}: tiles") as progress:
            document = codec.decompress_document(_read_input(src), model=given, jobs=jobs or None,
                                                 max_pixels=max_pixels or None, progress=progress)
        _write_output(dst, _encode_image(document, dst), force)

    _run_each(inputs, _outputs(inputs, output, _decoded_name), work)


@main.command()
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print the fields as JSON.")
def info(file, as_json) -> None:
    """Show a stream's header (size, mode, frames, model, tiling, bpd), how its tiles were coded
    and the metadata it keeps. Checks the
    tile index and the metadata's checksum; decodes no pixels."""
    try:
        data = _read_input(file)
        h = codec.read_header(data)
        overhead = container.overhead_bytes(data)
        kinds = codec.tile_kinds(data)
        metadata = codec.read_metadata(data).summary()
    except USER_ERRORS as exc:
        _fail(file, exc)
        sys.exit(1)
    model = installed_model_name(h.model_fingerprint)
    fields = {
        "file": file, "format_version": container.FORMAT_VERSION, "width": h.width, "height": h.height, "mode": h.mode,
        "frames": h.n_frames, "model_fingerprint": f"{h.model_fingerprint:04x}", "model": model, "tile": h.tile_side if h.tiled else None,
        "tiles": len(kinds), "tile_kinds": {k: kinds.count(k) for k in sorted(set(kinds))},
        "bytes": len(data), "header_bytes": len(h.to_bytes()), "overhead_bytes": overhead,
        "bpd": round(8 * len(data) / (h.width * h.height * h.channels * h.n_frames), 4),
        "metadata": metadata,
        "conv_backend": _conv_backend(),
    }
    if as_json:
        click.echo(json.dumps(fields, indent=1))
        return
    for k, v in fields.items():
        if k == "metadata":
            v = "; ".join(v) if v else "none"
        elif k == "tile_kinds":
            v = ", ".join(f"{n} {kind}" for kind, n in v.items())
        elif k == "tile" and v is None:
            v = "none (one tile covers the image)"
        click.echo(f"{k:18} {v if v is not None else '(not installed)'}")


def _conv_backend() -> str:
    """The backend this machine decodes with (int8, float32 or float64), or why there is none."""
    try:
        return current_backend().name
    except ModelError as exc:
        return f"none ({exc})"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def models(as_json) -> None:
    """List the installed models: name, fingerprint, file size, what icnn compress uses it for,
    and the bpd measured with it (from its model card)."""
    rows = []
    for name, path in sorted(available_models().items()):
        try:
            m = read_model_file(path)
        except IcnnError as exc:
            _fail(str(path), exc)
            continue
        card = model_card(name, m.fingerprint)
        rows.append({"name": name, "fingerprint": f"{m.fingerprint:04x}", "bytes": path.stat().st_size,
                     "for": model_role(name), "measured": card.get("measured", {}), "path": str(path)})
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        click.echo(f"{r['name']:12} {r['fingerprint']}  {r['bytes'] / 1e6:5.1f} MB  {r['for']}")
        for what, bpd in r["measured"].items():
            click.echo(f"{'':12} {'':4}  {'':8}  {bpd} bpd on {what}")


def _architecture_options(f):
    """The local AR's shape: used by a new run only (a resumed run keeps its own, --init the model's)."""
    for option in reversed([
        click.option("--kernel", type=int, default=DEFAULT_ARCHITECTURE["kernel"], show_default=True,
                     help="Side of the causal window each pixel's prediction sees (the rows above and the pixels to the left)."),
        click.option("--width", type=int, default=DEFAULT_ARCHITECTURE["width"], show_default=True, help="Channels of the network's layers."),
        click.option("--depth", type=int, default=DEFAULT_ARCHITECTURE["depth"], show_default=True, help="1x1 layers after the causal window's layer."),
        click.option("--components", type=int, default=DEFAULT_ARCHITECTURE["components"], show_default=True, help="Logistics in each pixel's mixture."),
        click.option("--residual-context/--no-residual-context", default=DEFAULT_ARCHITECTURE["residual_context"], show_default=True,
                     help="The network also sees the neighbours' prediction errors (where they were surprising)."),
        click.option("--tile-predictor", type=int, default=DEFAULT_ARCHITECTURE["tile_predictor"], show_default=True, metavar="K",
                     help="Each tile's own least-squares predictor from its causal K x K neighbours gives the means' "
                          "base (the encoder fits and sends it; 0: none). The photo model uses 5."),
    ]):
        f = option(f)
    return f


def _schedule_options(f):
    """Steps, batch and learning-rate schedule."""
    for option in reversed([
        click.option("--steps", type=int, default=1000, show_default=True, help="Total steps of the run (a larger value continues it)."),
        click.option("--batch-size", type=int, default=64, show_default=True, help="Global batch size (split across torchrun processes)."),
        click.option("--lr", type=float, default=1e-3, show_default=True, help="Peak learning rate (Adam)."),
        click.option("--warmup", type=int, default=200, show_default=True, help="Steps of linear learning-rate warm-up."),
        click.option("--lr-halflife", type=int, default=20000, show_default=True,
                     help="The learning rate halves every this many steps after warm-up."),
        click.option("--cooldown-from", type=int, default=0, show_default=True,
                     help="From this step on, the learning rate also halves every --cooldown-halflife steps (an annealing "
                          "phase; 0: none). A resumed run may be given one."),
        click.option("--cooldown-halflife", type=int, default=1000, show_default=True,
                     help="Steps over which the cooldown halves the learning rate."),
    ]):
        f = option(f)
    return f


def _data_options(f):
    """What is trained on and evaluated on."""
    for option in reversed([
        click.option("--crop", type=int, default=32, show_default=True, help="Random crop size (images smaller are edge-padded)."),
        click.option("--eval", "eval_data", default=None, help="Evaluation images (npz or folder) for periodic test bpd."),
        click.option("--holdout-every", type=int, default=0, show_default=True,
                     help="Hold out every n-th image of DATA (sorted order) from training; evaluate on them unless --eval."),
        click.option("--eval-crop", type=int, default=0, show_default=True,
                     help="Evaluate on central crops of this size (needed when evaluation images differ in size)."),
        click.option("--grey", is_flag=True, help="Train a grey model: every image (training and evaluation) converted to grey "
                     "and given to the model as the codec gives it grey images (three horizontal neighbours per position)."),
    ]):
        f = option(f)
    return f


def _run_options(f):
    """Where it runs, where it starts from, and how often it reports."""
    for option in reversed([
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True),
        click.option("--threads", type=int, default=None, help="CPU threads per process."),
        click.option("--init", "init_model", default=None,
                     help="Start a new run from this model's weights and architecture (name, file or run folder)."),
        click.option("--eval-every", type=int, default=500, show_default=True),
        click.option("--checkpoint-every", type=int, default=200, show_default=True),
        click.option("--log-every", type=int, default=20, show_default=True),
    ]):
        f = option(f)
    return f


def _model_config(options: dict) -> dict:
    """The architecture options as :meth:`LocalAR.config` names them (checked by the training's config check)."""
    return {name: options[name] for name in ("kernel", "width", "depth", "components", "tile_predictor", "residual_context")}


def _train_config(options: dict) -> TrainConfig:
    names = ("steps", "batch_size", "lr", "warmup", "lr_halflife", "cooldown_from", "cooldown_halflife", "crop",
             "holdout_every", "eval_crop", "grey", "eval_every", "checkpoint_every", "log_every")
    return TrainConfig(**{name: options[name] for name in names}, model=_model_config(options))


@main.command()
@click.argument("data")
@click.option("-o", "--output", "run_dir", required=True, help="Run folder (created, or resumed if it exists).")
@_schedule_options
@_data_options
@_architecture_options
@_run_options
def train(data: str, run_dir: str, **options) -> None:
    """Train a local AR model on DATA (an .npz with 'images' (N,H,W,C) uint8, or a folder of images).

    Checkpoints go to the run folder; running the same command again resumes where it
    stopped (Ctrl-C or SIGTERM save first). Architecture options only apply to a new run.
    The default architecture is the shipped cifar10 model's, e.g. on CIFAR-10's training images:

      icnn train train.npz -o runs/c --holdout-every 100 --steps 40000

    then 'icnn export runs/c -o mine.npz' and 'icnn compress -m mine.npz ...' (a run folder
    works as -m too). Data-parallel: torchrun --standalone --nproc_per_node=2 $(which icnn) train DATA -o RUN
    """
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        cfg = _train_config(options)
        metrics = run_training(data, run_dir, cfg, eval_data=options["eval_data"], device=options["device"],
                               threads=options["threads"], init_model=options["init_model"])
    except KeyboardInterrupt:
        click.echo("icnn: training interrupted; checkpoint saved, run the same command to resume", err=True)
        sys.exit(130)
    except (ValueError, OSError, IcnnError) as exc:
        _fail(data, exc)
        sys.exit(1)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary (rank 0's), not one per process
        click.echo(json.dumps(metrics), err=True)


@main.command()
@click.argument("run_dir")
@click.option("-o", "--output", required=True, help="Model file to write, e.g. models/cifar10.npz.")
@click.option("--name", default=None, help="Model name stored in the file [default: the file's stem].")
@click.option("--weights", type=click.Choice(["ema", "model"]), default="ema", show_default=True,
              help="The EMA of the weights, or the raw last weights (better early in a run, while the EMA lags).")
def export(run_dir, output, name, weights) -> None:
    """Export a training run as a model file (integers only, no pickle)."""
    try:
        path = export_run(Path(run_dir), Path(output), name, weights)
    except (IcnnError, OSError, KeyError) as exc:
        _fail(run_dir, exc)
        sys.exit(1)
    click.echo(f"{path}: {path.stat().st_size} bytes, fingerprint {read_model_file(path).fingerprint:04x}", err=True)


main.add_command(bench_command)

if __name__ == "__main__":  # pragma: no cover
    main()
