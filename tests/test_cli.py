"""The icnn command, run as a user would: real subprocesses, real files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icnn_codec.cli import _model_config, train
from icnn_codec.zoo import load_model
from test_codec import ODD_IMAGES

ICNN = [sys.executable, "-m", "icnn_codec.cli"]


def icnn(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*ICNN, *args], cwd=cwd, input=stdin, capture_output=True, timeout=300)


MODES = {"1x1": "RGB", "7x13": "RGB", "33x65": "RGB", "noise_64x48": "RGB", "flat": "RGB", "gray": "L", "gray_la": "LA", "rgba": "RGBA"}


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, cifar_images, photo) -> Path:
    d = tmp_path_factory.mktemp("images")
    for name, mode in MODES.items():
        Image.fromarray(ODD_IMAGES[name], mode).save(d / f"{name}.png")
    Image.fromarray(cifar_images[7]).save(d / "cifar.png")
    Image.fromarray(photo).save(d / "photo.png")
    return d


def test_compress_then_decompress_gives_identical_pixels_and_mode(image_dir, tmp_path):
    names = sorted(p.name for p in image_dir.glob("*.png"))
    r = icnn("compress", *[str(image_dir / n) for n in names], "-o", str(tmp_path / "streams"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    for n in names:
        r = icnn("decompress", str(tmp_path / "streams" / f"{n}.icnn"), "-o", str(tmp_path / n), cwd=tmp_path)
        assert r.returncode == 0, r.stderr.decode()
        a, b = Image.open(image_dir / n), Image.open(tmp_path / n)
        assert a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b)), n


def test_default_names_and_refusal_to_overwrite(image_dir, tmp_path):
    src = tmp_path / "x.png"
    src.write_bytes((image_dir / "cifar.png").read_bytes())
    assert icnn("compress", "x.png", cwd=tmp_path).returncode == 0
    assert (tmp_path / "x.png.icnn").exists()
    again = icnn("compress", "x.png", cwd=tmp_path)
    assert again.returncode != 0 and b"exists" in again.stderr and b"Traceback" not in again.stderr
    assert icnn("compress", "-f", "x.png", cwd=tmp_path).returncode == 0
    src.rename(tmp_path / "orig.png")
    assert icnn("decompress", "x.png.icnn", cwd=tmp_path).returncode == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png")), np.asarray(Image.open(tmp_path / "orig.png")))


def test_stdin_to_stdout(image_dir, tmp_path):
    png = (image_dir / "rgba.png").read_bytes()
    stream = icnn("compress", "-", cwd=tmp_path, stdin=png)
    assert stream.returncode == 0 and stream.stdout[:2] == b"IC"
    out = icnn("decompress", "-", cwd=tmp_path, stdin=stream.stdout)
    assert out.returncode == 0
    (tmp_path / "o.png").write_bytes(out.stdout)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), np.asarray(Image.open(image_dir / "rgba.png")))


def test_bad_inputs_fail_in_one_line_and_leave_no_output(image_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "good.png").write_bytes((image_dir / "cifar.png").read_bytes())
    r = icnn("compress", "notes.txt", "good.png", "missing.png", "-o", "out", cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.decode().strip().splitlines()
    errors = [line for line in lines if line.startswith("icnn: ")]
    assert len(errors) == 2 and "notes.txt" in errors[0] and "missing.png" in errors[1]
    assert "Traceback" not in r.stderr.decode()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png.icnn"]  # the good one completed

    stream = (tmp_path / "out" / "good.png.icnn").read_bytes()
    (tmp_path / "cut.icnn").write_bytes(stream[: len(stream) // 2])
    r = icnn("decompress", "cut.icnn", "-o", "cut.png", cwd=tmp_path)
    assert r.returncode == 1 and b"cut.icnn" in r.stderr and b"Traceback" not in r.stderr
    assert not (tmp_path / "cut.png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_info_reports_the_header(image_dir, tmp_path):
    import json

    assert icnn("compress", str(image_dir / "cifar.png"), "-o", "c.icnn", cwd=tmp_path).returncode == 0
    r = icnn("info", "c.icnn", "--json", cwd=tmp_path)
    fields = json.loads(r.stdout)
    assert (fields["width"], fields["height"], fields["mode"], fields["model"]) == (32, 32, "RGB", "cifar10")
    assert fields["tiles"] == 1 and fields["overhead_bytes"] == 9 and fields["tile_kinds"] == {"model": 1}
    assert fields["tile"] is None  # one tile covers the image: the stream names no tile side
    assert fields["bytes"] == (tmp_path / "c.icnn").stat().st_size


def test_info_names_the_convolution_backend_and_the_environment_forces_one(image_dir, tmp_path):
    import json

    assert icnn("compress", str(image_dir / "cifar.png"), "-o", "c.icnn", cwd=tmp_path).returncode == 0
    assert json.loads(icnn("info", "c.icnn", "--json", cwd=tmp_path).stdout)["conv_backend"] in ("int8", "float32", "float64")
    forced = {**os.environ, "ICNN_CONV_BACKEND": "float32"}
    r = subprocess.run([*ICNN, "info", "c.icnn", "--json"], cwd=tmp_path, env=forced, capture_output=True, timeout=300)
    assert json.loads(r.stdout)["conv_backend"] == "float32"
    unknown = {**os.environ, "ICNN_CONV_BACKEND": "int4"}
    r = subprocess.run([*ICNN, "compress", str(image_dir / "cifar.png"), "-o", "d.icnn"], cwd=tmp_path, env=unknown,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "int4" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d.icnn").exists()


def test_info_counts_the_tiles_of_each_kind(tmp_path):
    import json

    noise = np.random.default_rng(3).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    assert icnn("compress", "noise.png", "--tile", "32", cwd=tmp_path).returncode == 0
    fields = json.loads(icnn("info", "noise.png.icnn", "--json", cwd=tmp_path).stdout)
    assert (fields["tiles"], fields["tile_kinds"]) == (4, {"raw": 4})
    data = (tmp_path / "noise.png.icnn").read_bytes()
    kind = len(data) - 8 * 8 * 3 - 4 - 1  # the last tile is 8x8 raw pixels after its kind and checksum
    (tmp_path / "bad.icnn").write_bytes(data[:kind] + bytes([99]) + data[kind + 1 :])
    r = icnn("info", "bad.icnn", cwd=tmp_path)
    assert r.returncode == 1 and b"bad.icnn" in r.stderr and b"Traceback" not in r.stderr


def test_help_teaches():
    r = subprocess.run([*ICNN, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "icnn compress" in r.stdout and "decompress" in r.stdout


def test_tiled_parallel_compression_round_trips(image_dir, tmp_path):
    r = icnn("compress", str(image_dir / "photo.png"), "-o", "p.icnn", "--tile", "64", "--jobs", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert b"tiles" in r.stderr
    assert icnn("decompress", "p.icnn", "-o", "p.png", "-j", "2", cwd=tmp_path).returncode == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "p.png")), np.asarray(Image.open(image_dir / "photo.png")))


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda d: Image.fromarray(np.zeros((8, 8, 3), np.float32)[:, :, 0], "F").save(d / "deep.tif"), "supported"),
        (lambda d: (d / "empty.png").write_bytes(b""), "not an image"),
        (lambda d: (d / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0"), "cut.png"),
    ],
    ids=["16-bit", "empty", "truncated-png"],
)
def test_images_the_codec_cannot_take_are_refused_in_one_line(tmp_path, make, problem):
    make(tmp_path)
    name = next(p.name for p in tmp_path.iterdir())
    r = icnn("compress", name, cwd=tmp_path)
    err = r.stderr.decode()
    assert r.returncode == 1 and problem in err and name in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing written


def test_decompress_reports_each_bad_stream_and_finishes_the_good_ones(image_dir, tmp_path):
    assert icnn("compress", str(image_dir / "cifar.png"), "-o", "good.icnn", cwd=tmp_path).returncode == 0
    good = (tmp_path / "good.icnn").read_bytes()
    (tmp_path / "flipped.icnn").write_bytes(good[:20] + bytes([good[20] ^ 4]) + good[21:])
    (tmp_path / "image.icnn").write_bytes((image_dir / "cifar.png").read_bytes())  # a PNG, misnamed
    r = icnn("decompress", "flipped.icnn", "good.icnn", "image.icnn", "-o", "out", cwd=tmp_path)
    errors = r.stderr.decode().strip().splitlines()
    assert r.returncode == 1 and len(errors) == 2
    assert "flipped.icnn" in errors[0] and "corrupt" in errors[0] and "image.icnn" in errors[1] and "not an icnn" in errors[1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]


def test_existing_outputs_are_kept_without_force(image_dir, tmp_path):
    (tmp_path / "c.icnn").write_bytes(b"precious")
    r = icnn("compress", str(image_dir / "cifar.png"), "-o", "c.icnn", cwd=tmp_path)
    assert r.returncode == 1 and b"exists" in r.stderr and (tmp_path / "c.icnn").read_bytes() == b"precious"
    assert icnn("compress", str(image_dir / "cifar.png"), "-o", "c.icnn", "-f", cwd=tmp_path).returncode == 0
    assert (tmp_path / "c.icnn").read_bytes()[:2] == b"IC"


def test_max_pixels_refuses_larger_streams_and_zero_lifts_the_limit(image_dir, tmp_path):
    from icnn_codec import container

    assert icnn("compress", str(image_dir / "cifar.png"), "-o", "s.icnn", cwd=tmp_path).returncode == 0  # 1024 pixels
    refused = icnn("decompress", "s.icnn", "--max-pixels", "1000", cwd=tmp_path)
    assert refused.returncode == 1 and b"too large" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert not (tmp_path / "s.png").exists()
    assert icnn("decompress", "s.icnn", "--max-pixels", "0", cwd=tmp_path).returncode == 0
    assert (tmp_path / "s.png").exists()
    # Above the default limit: refused for its size by default, and for its missing data with no limit.
    huge = container.Header("RGB", 20000, 20000, 0, 256).to_bytes() + bytes(16)
    (tmp_path / "huge.icnn").write_bytes(huge)
    assert b"too large" in icnn("decompress", "huge.icnn", cwd=tmp_path).stderr
    unlimited = icnn("decompress", "huge.icnn", "--max-pixels", "0", cwd=tmp_path)
    assert unlimited.returncode == 1 and b"too large" not in unlimited.stderr and b"Traceback" not in unlimited.stderr


def test_a_tile_side_the_container_cannot_name_is_a_one_line_error(image_dir, tmp_path):
    r = icnn("compress", str(image_dir / "photo.png"), "-o", "p.icnn", "--tile", "20", cwd=tmp_path)
    err = r.stderr.decode()
    assert r.returncode == 2 and "multiple of 8" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "p.icnn").exists()
    # the local AR takes any tile side the container can name
    assert icnn("compress", str(image_dir / "photo.png"), "-o", "p.icnn", "--tile", "24", cwd=tmp_path).returncode == 0


def test_decompress_writes_only_what_the_output_format_holds_exactly(tmp_path):
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, (24, 20, 4), dtype=np.uint8)
    rgba[:12, :, 3] = 0  # colours under full transparency, which WebP drops unless told not to
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(rgba[:, :, 0]).save(tmp_path / "grey.png")
    Image.fromarray(rgba[:, :, :3]).save(tmp_path / "colours.png")  # 480 colours: more than GIF's 256
    few = rgba[:, :, :3] // 64 * 64  # 64 colours: a GIF holds them, read back as a palette image
    Image.fromarray(few).save(tmp_path / "few.png")
    assert icnn("compress", "rgba.png", "grey.png", "colours.png", "few.png", "-o", "s", cwd=tmp_path).returncode == 0
    assert icnn("decompress", "s/rgba.png.icnn", "-o", "rgba.webp", cwd=tmp_path).returncode == 0
    back = Image.open(tmp_path / "rgba.webp")
    assert back.mode == "RGBA" and np.array_equal(np.asarray(back), rgba)
    assert icnn("decompress", "s/few.png.icnn", "-o", "few.gif", cwd=tmp_path).returncode == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "few.gif").convert("RGB")), few)
    for stream, out in (("s/grey.png.icnn", "grey.webp"), ("s/colours.png.icnn", "colours.gif")):
        r = icnn("decompress", stream, "-o", out, cwd=tmp_path)
        err = r.stderr.decode()
        assert r.returncode == 1 and "exactly" in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / out).exists()


def test_outputs_are_written_with_the_usual_file_mode(image_dir, tmp_path):

    before = os.umask(0o022)  # the commands inherit it; a private temporary file would be 0o600
    try:
        assert icnn("compress", str(image_dir / "cifar.png"), "-o", "c.icnn", cwd=tmp_path).returncode == 0
        assert icnn("decompress", "c.icnn", "-o", "c.png", cwd=tmp_path).returncode == 0
    finally:
        os.umask(before)
    for name in ("c.icnn", "c.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


def test_stdout_takes_one_input_only(image_dir, tmp_path):
    r = icnn("compress", str(image_dir / "cifar.png"), str(image_dir / "gray.png"), "-o", "-", cwd=tmp_path)
    assert r.returncode == 2 and b"stdout" in r.stderr and r.stdout == b""
    assert not (tmp_path / "-").exists()


def test_the_train_commands_default_architecture_is_the_shipped_cifar10_models():
    options = train.make_context("train", ["DATA", "-o", "RUN"]).params
    assert _model_config(options) == load_model("cifar10").local_ar.config()
