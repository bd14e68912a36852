"""`icnn bench`: the report's shape, the lossless check, and input handling, on tiny images."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import icnn_codec as ic
from icnn_codec.tools import bench
from icnn_codec.wavefront import adjustment_bits
from icnn_codec.tools.bench import Codec, bench_command, run_bench

RESULT_KEYS = {"codec": str, "bpd": float, "encode_MBps": float, "decode_MBps": float, "lossless": bool}


def tiny_images(n: int, h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    """Smooth-ish small RGB images (a gradient plus a little noise): the model codes them in
    fewer bits than raw (they are not raw tiles), and PNG compresses them."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(h), np.arange(w))[None, :, :, None] * 8
    return np.clip(ramp + rng.integers(0, 8, (n, h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.npz"
    np.savez(path, images=tiny_images(5))
    return path


def invoke(*args: str):
    return CliRunner().invoke(bench_command, [str(a) for a in args])


def lossy_codec(name: str = "lossy") -> Codec:
    """PNG that flips the lowest bit of the first value on decode: small, plausible, wrong."""
    png = bench.REGISTRY["png"](None)

    def decode(data: bytes) -> np.ndarray:
        out = png.decode(data).copy()
        out.flat[0] ^= 1
        return out

    return Codec(name, png.encode, decode)


def test_json_shape_and_markdown(npz: Path, tmp_path: Path, model_only) -> None:
    # Without scale offsets (which can take a file below the model's own nll) the header and the
    # coder only add bits to the nll.
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    res = invoke(npz, "--codecs", "icnn,png", "--limit", "3", "--json", out, "--markdown", md)
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    [ds] = report["datasets"]
    assert (ds["name"], ds["images"], ds["dims"]) == ("tiny", 3, 3 * 16 * 16 * 3)
    assert [r["codec"] for r in ds["results"]] == ["icnn", "png"]  # a bare icnn: the model compress picks
    for r in ds["results"]:
        for key, kind in RESULT_KEYS.items():
            assert isinstance(r[key], kind), (key, r[key])
        assert r["lossless"] and r["bpd"] > 0 and r["encode_MBps"] > 0 and r["decode_MBps"] > 0
        assert r["bpd"] == pytest.approx(8 * r["bytes"] / ds["dims"])
        assert len(r["image_bytes"]) == 3 and sum(r["image_bytes"]) == r["bytes"]  # each image's file
    assert len(ds["image_names"]) == 3 and ds["image_dims"] == [16 * 16 * 3] * 3
    icnn, png = ds["results"]
    assert isinstance(icnn["nll_bpd"], float) and 0 < icnn["nll_bpd"] < icnn["bpd"]  # header and coder cost bits
    assert png["nll_bpd"] is None
    assert {"cpu", "logical_cpus", "torch_threads"} <= set(report["machine"]) and report["date"]
    assert "icnn " in res.stdout and "batched" in res.stdout  # the terminal table, with its notes
    assert "| icnn |" in md.read_text()


def test_lossy_codec_is_reported_and_fails_the_run(npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(bench.REGISTRY, "lossy", lambda arg: lossy_codec())
    out = tmp_path / "r.json"
    res = invoke(npz, "--codecs", "png,lossy", "--json", out)
    assert res.exit_code == 1
    assert "not lossless: lossy on tiny" in res.output
    results = {r["codec"]: r for r in json.loads(out.read_text())["datasets"][0]["results"]}
    assert results["png"]["lossless"] is True
    assert results["lossy"]["lossless"] is False and results["lossy"]["mismatched_images"] == 5


def test_crashing_codec_is_a_result_not_a_crash(npz: Path) -> None:
    def broken(data: bytes) -> np.ndarray:
        raise RuntimeError("boom")

    report = run_bench([npz], [Codec("broken", lambda a: a.tobytes(), broken), "png"], limit=2)
    broken_result, png = report["datasets"][0]["results"]
    assert broken_result["lossless"] is False and "boom" in broken_result["error"]
    assert broken_result["bpd"] == pytest.approx(8.0)  # raw bytes: the size is still known
    assert png["lossless"] is True
    assert bench.lossy_results(report) == ["broken on tiny"]


def test_limit_takes_the_first_images(npz: Path, tmp_path: Path) -> None:
    first_two = tmp_path / "two.npz"
    np.savez(first_two, images=tiny_images(5)[:2])
    limited = run_bench([npz], ["png"], limit=2)["datasets"][0]
    exact = run_bench([first_two], ["png"])["datasets"][0]
    assert limited["images"] == 2 and limited["dims"] == 2 * 16 * 16 * 3
    assert limited["results"][0]["bytes"] == exact["results"][0]["bytes"]


def test_folder_of_mixed_images(tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    imgs = tiny_images(2, 8, 8)
    Image.fromarray(imgs[0]).save(folder / "a.png")
    Image.fromarray(tiny_images(1, 5, 11, seed=1)[0]).save(folder / "b.webp", lossless=True)  # odd size
    Image.fromarray(imgs[1][:, :, 0]).save(folder / "c.png")  # grey: benched as grey
    (folder / "notes.txt").write_text("not an image")
    report = run_bench([folder], ["png"])
    [ds] = report["datasets"]
    assert ds["name"] == "pics" and ds["images"] == 3
    assert ds["dims"] == (8 * 8 + 5 * 11) * 3 + 8 * 8
    assert all(r["lossless"] for r in ds["results"])


def test_an_rgb_image_with_equal_channels_stays_rgb_for_webp(tmp_path: Path) -> None:
    pytest.importorskip("imagecodecs")
    grey_looking = np.repeat(tiny_images(1)[0][:, :, :1], 3, axis=2)
    np.savez(tmp_path / "equal.npz", images=grey_looking[None])
    [ds] = run_bench([tmp_path / "equal.npz"], ["webp"])["datasets"]
    assert ds["dims"] == 16 * 16 * 3 and ds["results"][0]["lossless"]


def test_grey_images_are_benched_as_grey_by_every_codec_webp_included(tmp_path: Path) -> None:
    pytest.importorskip("imagecodecs")
    folder = tmp_path / "grey"
    folder.mkdir()
    for i, im in enumerate(tiny_images(2)):
        Image.fromarray(im[:, :, 1]).save(folder / f"{i}.png")
    [ds] = run_bench([folder], ["icnn", "png", "webp"])["datasets"]
    assert ds["dims"] == 2 * 16 * 16
    assert all(r["lossless"] for r in ds["results"]), ds["results"]


def test_unknown_and_uninstalled_codecs_are_skipped(npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # `import imagecodecs` now fails
    out = tmp_path / "r.json"
    res = invoke(npz, "--codecs", "png,nosuch,jpegxl", "--limit", "1", "--json", out)
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert [r["codec"] for r in report["datasets"][0]["results"]] == ["png"]
    reasons = {s["codec"]: s["reason"] for s in report["skipped"]}
    assert "unknown codec" in reasons["nosuch"] and "imagecodecs" in reasons["jpegxl"]
    assert "skipped jpegxl" in res.output


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "no such file or folder"),
        (lambda p: np.savez(p / "x.npz", pixels=np.zeros((1, 2, 2, 3), np.uint8)) or p / "x.npz", "'images'"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no images"),
        (lambda p: Image.new("RGB", (2, 2)).save(p / "one.png") or p / "one.png", "not a folder of images or an .npz"),
    ],
)
def test_bad_data_is_a_one_line_error(tmp_path: Path, make, message: str) -> None:
    res = invoke(make(tmp_path), "--codecs", "png")
    assert res.exit_code == 1
    assert message in res.output and "Traceback" not in res.output
    assert res.output.strip().splitlines()[-1].startswith("Error:")


def test_no_runnable_codec_is_an_error(npz: Path) -> None:
    res = invoke(npz, "--codecs", "nosuch")
    assert res.exit_code == 1 and "no codec can run" in res.output


def test_plot(npz: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "r.png"
    res = invoke(npz, "--codecs", "png", "--limit", "2", "--plot", plot)
    assert res.exit_code == 0, res.output
    assert Image.open(plot).size[0] > 100


def test_the_photo_benchmark_breaks_each_codecs_files_down_by_source_set() -> None:
    """benchmarks/photo_val.py's per-source table: each set's bytes over its values, from the
    per-image file sizes the bench records."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        import photo_val
    finally:
        sys.path.pop(0)
    report = {"datasets": [{"image_names": ["0010.png", "0400.png", "0410.png"], "image_dims": [30, 30, 60],
                            "results": [{"codec": "icnn:photo", "image_bytes": [10, 20, 30]},
                                        {"codec": "jpegxl", "image_bytes": [10, 10, 10]},
                                        {"codec": "broken", "image_bytes": None}]}]}
    lines = photo_val.sources_table(report).splitlines()
    assert lines[0] == "| source | photos | icnn:photo | jpegxl | icnn:photo vs jpegxl |"
    assert lines[2] == "| BSDS300 train | 1 | 2.667 | 2.667 | +0.0% |"
    assert lines[3] == "| Sun-Hays80 | 2 | 4.444 | 1.778 | +150.0% |"  # 8 * 50 / 90 and 8 * 20 / 90
    assert len(lines) == 4  # sets without photographs are left out


def test_a_bare_icnn_codes_each_image_as_icnn_compress_does_and_a_named_one_with_that_model(photo, cifar_images):
    images = [cifar_images[0], np.ascontiguousarray(photo[:80, :96])]
    auto = bench.make_codec("icnn")
    assert [ic.read_header(d).model_fingerprint for d in auto.encode_batch(images)] == \
        [ic.read_header(ic.compress(a)).model_fingerprint for a in images]
    named = bench.make_codec("icnn", model="cifar10")
    assert named.name == "icnn:cifar10"
    assert {ic.read_header(d).model_fingerprint for d in named.encode_batch(images)} == {ic.load_model("cifar10").fingerprint}


def test_baselines_run_on_one_thread_and_jpegxl_mt_on_every_core(monkeypatch: pytest.MonkeyPatch) -> None:
    imagecodecs = pytest.importorskip("imagecodecs")
    seen: list[int] = []

    def encode(data, *, lossless=None, effort=None, numthreads=None):
        seen.append(numthreads)
        return b"x"

    monkeypatch.setattr(imagecodecs, "jpegxl_encode", encode)
    monkeypatch.setattr(ic.codec, "default_jobs", lambda: 7)
    pixels = np.zeros((4, 4, 3), np.uint8)
    bench.REGISTRY["jpegxl"](None).encode(pixels)
    bench.REGISTRY["jpegxl-mt"](None).encode(pixels)
    assert seen == [1, 7]
    assert "jpegxl-mt" not in bench.DEFAULT_CODECS  # the default bench compares with one-thread baselines


def _local_ar():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        import local_ar
    finally:
        sys.path.pop(0)
    return local_ar


def test_the_local_autoregressive_probe_sees_only_decoded_pixels(sums_to_one) -> None:
    """benchmarks/local_ar.py's figures are code lengths only if each pixel's mixture depends on the
    pixels above it and to its left alone; its decode timing runs the same networks pixel by pixel."""
    local_ar = _local_ar()
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = local_ar.FloatLocalAR(kernel=5, width=16, blocks=1, components=2)
    x = torch.rand(1, 3, 9, 9, requires_grad=True)
    model(x)[0, :, 4, 4].sum().backward()
    seen = x.grad[0].abs().sum(0) > 0
    expected = torch.zeros(9, 9, dtype=torch.bool)
    expected[2:4, 2:7] = True  # two rows above, two columns either side
    expected[4, 2:4] = True  # two to the left in its own row
    assert torch.equal(seen, expected)
    bits = model.bits(torch.randint(0, 256, (2, 3, 8, 8)).float())
    assert bits.shape == (2, 8, 8) and bool((bits > 0).all())
    assert local_ar.wavefront_decode_ms(model, planes=2, side=16) > 0
    assert sums_to_one(model)


def test_a_whole_image_is_measured_at_its_best_scale_offset_with_its_side_information() -> None:
    """The whole-photograph figure is the training path's code length at the best of the scale offsets
    it tries, plus what the image sends besides its pixels (the offset, the tile predictor)."""
    local_ar = _local_ar()
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = local_ar.LocalAR(kernel=5, width=16, depth=2, components=2, tile_predictor=3, residual_context=True)
    image = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        at_zero = float(model.bits(pixels).sum())  # offset 0, the side information spread over the pixels
    offset_bits = adjustment_bits(np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64))
    assert local_ar.full_image_bits(model, image) <= at_zero + offset_bits + 1e-3
    for k in range(2):  # far too confident on noise: a wider offset must pay
        model.head.conv.bias.data[9 * k + 3 : 9 * k + 6] -= 2.0
    with torch.no_grad():
        narrow = float(model.bits(pixels).sum())
    assert local_ar.full_image_bits(model, image) < narrow - 100
