"""What a file holds besides one frame's pixels comes back: every frame with its timing, the
metadata, and the file's sample depth; through the Python API, the command line and Pillow."""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

import icnn_codec as ic

ICNN = [sys.executable, "-m", "icnn_codec.cli"]


def frames_of(photo: np.ndarray, n: int = 3) -> list[Image.Image]:
    crop = photo[:48, :64]
    return [Image.fromarray(np.roll(crop, 7 * i, axis=1)) for i in range(n)]


def animated(photo: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    first, *rest = frames_of(photo)
    options = {"TIFF": {}, "GIF": {"duration": [100, 200, 300], "loop": 0}, "PNG": {"duration": [100, 200, 300], "loop": 2}}[fmt]
    first.save(buf, format=fmt, save_all=True, append_images=rest, **options)
    return buf.getvalue()


def pixels_of_frames(data: bytes) -> list[np.ndarray]:
    with Image.open(io.BytesIO(data)) as im:
        out = []
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            out.append(np.asarray(im.convert("RGB")))
        return out


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "TIFF"], ids=["gif", "apng", "multipage-tiff"])
def test_every_frame_and_its_timing_come_back(photo, fmt):
    source = animated(photo, fmt)
    document = ic.read_image(source)
    data = ic.compress_document(document)
    assert ic.read_header(data).n_frames == 3
    back = ic.decompress_document(data)
    assert [f.duration_ms for f in back.frames] == [f.duration_ms for f in document.frames]
    assert back.loop == document.loop
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(back.frames, document.frames))
    rewritten = ic.write_image(back, fmt).data
    assert all(np.array_equal(a, b) for a, b in zip(pixels_of_frames(rewritten), pixels_of_frames(source)))


def test_a_stream_of_several_frames_is_not_cut_to_one_by_decompress(photo):
    data = ic.compress_document(ic.read_image(animated(photo, "GIF")))
    with pytest.raises(ic.UnsupportedImageError, match="3 frames"):
        ic.decompress(data)


def png_with_metadata(photo: np.ndarray) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "a cat on a rug")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta xmlns:x='adobe:ns:meta/'>cat</x:xmpmeta>")
    info.add(b"gAMA", (45455).to_bytes(4, "big"))  # Pillow reads it, but a document keeps the chunk itself
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    Image.fromarray(photo[:40, :56]).save(buf, format="PNG", pnginfo=info, exif=exif, icc_profile=icc, dpi=(300, 300))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_icc_exif_xmp_and_text_survive_compression(photo, fmt):
    source = ic.read_image(png_with_metadata(photo))
    data = ic.compress_document(source)
    assert ic.read_metadata(data) == source.metadata
    written = ic.write_image(ic.decompress_document(data), fmt).data
    back = ic.read_image(written)
    assert back.metadata.icc == source.metadata.icc
    if fmt == "TIFF":  # Pillow turns a TIFF upright when it loads it and drops the tag: read the file's own
        with Image.open(io.BytesIO(written)) as im:
            assert im.tag_v2.get(0x0112) == 6
    else:
        assert ic.imagefile.exif_orientation(back.metadata.exif) == 6
    assert back.metadata.xmp and b"cat" in back.metadata.xmp
    if fmt == "PNG":
        assert back.metadata.text["Title"] == "a cat on a rug"
        assert back.metadata.png_chunks == source.metadata.png_chunks == [ic.imagefile.PngChunk("gAMA", b"\0\0\xb1\x8f")]


def test_strip_drops_the_metadata_and_keeps_the_pixels(photo):
    source = ic.read_image(png_with_metadata(photo))
    data = ic.compress_document(source, strip=True)
    assert ic.read_metadata(data).is_empty
    assert len(data) < len(ic.compress_document(source))
    assert np.array_equal(ic.decompress(data), source.frames[0].pixels)


def test_damaged_metadata_is_an_error_of_its_own(photo):
    data = bytearray(ic.compress_document(ic.read_image(png_with_metadata(photo))))
    start = len(ic.read_header(bytes(data)).to_bytes()) + 2  # past the chunk's length varint
    data[start + 5] ^= 0x01
    with pytest.raises(ic.DecodeError, match="metadata"):
        ic.decompress_document(bytes(data))


def test_16_bit_grey_png_round_trips_through_the_command_line(tmp_path):
    ramp = (np.add.outer(np.arange(60), np.arange(80)) * 431 % 65536).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert subprocess.run([*ICNN, "compress", "deep.png"], cwd=tmp_path, capture_output=True).returncode == 0
    r = subprocess.run([*ICNN, "decompress", "deep.png.icnn", "-o", "back.png"], cwd=tmp_path, capture_output=True)
    assert r.returncode == 0, r.stderr
    back = Image.open(tmp_path / "back.png")
    assert back.mode.startswith("I") and np.array_equal(np.asarray(back), ramp)


def test_the_command_line_keeps_frames_and_metadata_and_warns_of_what_a_format_drops(photo, tmp_path):
    (tmp_path / "anim.gif").write_bytes(animated(photo, "GIF"))
    (tmp_path / "meta.png").write_bytes(png_with_metadata(photo))
    assert subprocess.run([*ICNN, "compress", "anim.gif", "meta.png"], cwd=tmp_path, capture_output=True).returncode == 0
    assert subprocess.run([*ICNN, "decompress", "anim.gif.icnn", "-o", "back.gif"], cwd=tmp_path, capture_output=True).returncode == 0
    assert len(pixels_of_frames((tmp_path / "back.gif").read_bytes())) == 3
    r = subprocess.run([*ICNN, "decompress", "anim.gif.icnn", "-o", "one.bmp"], cwd=tmp_path, capture_output=True)
    assert r.returncode == 1 and b"3" in r.stderr and not (tmp_path / "one.bmp").exists()  # refused, not cut
    r = subprocess.run([*ICNN, "decompress", "meta.png.icnn", "-o", "m.webp"], cwd=tmp_path, capture_output=True)
    assert r.returncode == 0 and b"warning" in r.stderr and b"Title" in r.stderr
    info = subprocess.run([*ICNN, "info", "meta.png.icnn"], cwd=tmp_path, capture_output=True, text=True).stdout
    assert "ICC profile" in info and "orientation 6" in info and "PNG chunks: gAMA (4 bytes)" in info
    r = subprocess.run([*ICNN, "decompress", "meta.png.icnn", "-o", "back.png"], cwd=tmp_path, capture_output=True)
    assert r.returncode == 0 and b"warning" not in r.stderr
    assert Image.open(tmp_path / "back.png").info["gamma"] == 0.45455


def test_pillow_opens_an_icnn_stream_lazily_and_saves_one(photo, tmp_path):
    image = Image.fromarray(photo[:50, :70])
    image.save(tmp_path / "cat.icnn")
    with Image.open(tmp_path / "cat.icnn") as im:
        assert (im.format, im.size, im.mode) == ("ICNN", (70, 50), "RGB")
        assert np.array_equal(np.asarray(im), photo[:50, :70])
    frames = frames_of(photo)
    frames[0].save(tmp_path / "anim.icnn", save_all=True, append_images=frames[1:], duration=120, loop=0)
    with Image.open(tmp_path / "anim.icnn") as im:
        assert im.n_frames == 3
        im.seek(2)
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(frames[2]))


def test_pillow_reads_the_size_without_decoding(photo, monkeypatch):
    data = ic.compress(photo[:50, :70])
    monkeypatch.setattr(ic.codec, "decompress_document", lambda *a, **k: pytest.fail("decoded on open"))
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (70, 50)


def test_an_os2_icon_is_not_taken_for_an_icnn_stream():
    assert not ic.pillow._accept(b"IC\x00\x00\x00\x00")  # the OS/2 icon magic alone
    assert ic.pillow._accept(ic.compress(np.zeros((4, 4), np.uint8))[:3])
