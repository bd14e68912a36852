"""Image files in and out: every frame, the metadata, 16-bit grey; refusals instead of lost bits."""

import io

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from icnn_codec.errors import DecodeError, OptionError, UnsupportedImageError
from icnn_codec.imagefile import Frame, ImageDocument, Metadata, PngChunk, read_image, write_image

DURATIONS = [100, 40, 250]
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/png"/></rdf:RDF></x:xmpmeta>')


def _frames(channels: int = 3, n: int = 3, seed: int = 0) -> list[np.ndarray]:
    """n distinct random frames of 12 x 10 pixels, drawn from 6 colours (so they fit a GIF's palette)."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (6, channels), dtype=np.uint8)
    return [palette[rng.integers(0, 6, (12, 10))] for _ in range(n)]


def _encode(frames: list[np.ndarray], fmt: str, **options) -> bytes:
    images = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format=fmt, save_all=len(images) > 1, append_images=images[1:], **options)
    return buffer.getvalue()


ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Camera maker"
    return exif.tobytes()


def _rich_metadata() -> Metadata:
    return Metadata(icc=ICC, exif=_exif()[6:], xmp=XMP, text={"Title": "a test", "Author": "Zoë"}, dpi=(300.0, 150.0))


def _assert_same_frames(doc: ImageDocument, frames: list[np.ndarray]) -> None:
    assert len(doc.frames) == len(frames)
    for frame, pixels in zip(doc.frames, frames):
        assert frame.pixels.dtype == pixels.dtype
        np.testing.assert_array_equal(frame.pixels, pixels)


ANIMATIONS = {
    "GIF": dict(duration=DURATIONS, loop=0),
    "PNG": dict(duration=DURATIONS, loop=0),
    "WEBP": dict(duration=DURATIONS, loop=0, lossless=True, exact=True),
}


@pytest.mark.parametrize("fmt", ANIMATIONS)
def test_an_animation_reads_as_every_frame_with_its_duration_and_loop(fmt):
    frames = _frames()
    doc = read_image(_encode(frames, fmt, **ANIMATIONS[fmt]))
    assert doc.format == fmt and doc.mode == "RGB"
    _assert_same_frames(doc, frames)
    assert [f.duration_ms for f in doc.frames] == DURATIONS
    assert doc.loop == 0  # plays forever


@pytest.mark.parametrize("fmt", [*ANIMATIONS, "TIFF"])
def test_every_frame_is_written_back_and_reads_back_the_same(fmt):
    frames = _frames()
    source = read_image(_encode(frames, fmt, **ANIMATIONS.get(fmt, {})))
    written = write_image(source, fmt)
    back = read_image(written.data)
    _assert_same_frames(back, frames)
    assert [f.duration_ms for f in back.frames] == [f.duration_ms for f in source.frames]
    assert back.loop == source.loop
    assert written.dropped == []


def test_a_multi_page_tiff_reads_as_its_pages():
    frames = _frames()
    doc = read_image(_encode(frames, "TIFF"))
    _assert_same_frames(doc, frames)
    assert doc.loop is None and all(f.duration_ms is None for f in doc.frames)


def test_a_gif_that_plays_once_stays_a_gif_that_plays_once():
    doc = read_image(_encode(_frames(), "GIF", duration=DURATIONS))  # no loop extension
    assert doc.loop == 1
    assert "loop" not in Image.open(io.BytesIO(write_image(doc, "GIF").data)).info
    assert read_image(write_image(doc, "PNG").data).loop == 1  # APNG num_plays 1: once, not forever


def test_apng_disposal_and_blend_are_read_and_the_composited_frames_written_back_exactly():
    frames = _frames(channels=4)
    data = _encode(frames, "PNG", duration=DURATIONS, loop=2, disposal=[0, 2, 1], blend=[0, 1, 1])
    doc = read_image(data)
    assert [f.disposal for f in doc.frames] == [0, 2, 1]
    assert [f.blend for f in doc.frames] == [0, 1, 1]
    assert doc.loop == 2
    back = read_image(write_image(doc, "PNG").data)
    _assert_same_frames(back, [f.pixels for f in doc.frames])  # composited canvases, as shown
    assert [f.disposal for f in back.frames] == [0, 2, 1]


def test_frames_of_different_modes_share_the_widest_mode_exactly():
    grey, rgba = _frames(channels=1, n=1)[0][:, :, 0], _frames(channels=4, n=1)[0]
    doc = read_image(_encode([grey, rgba], "TIFF"))
    assert doc.mode == "RGBA"
    np.testing.assert_array_equal(doc.frames[0].pixels[:, :, :3], np.repeat(grey[:, :, None], 3, axis=2))
    assert (doc.frames[0].pixels[:, :, 3] == 255).all()
    np.testing.assert_array_equal(doc.frames[1].pixels, rgba)


def test_a_palette_image_with_transparency_reads_as_rgba():
    pixels = np.arange(120, dtype=np.uint8).reshape(12, 10) % 4
    image = Image.fromarray(pixels, "L").convert("P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=2)
    doc = read_image(buffer.getvalue())
    assert doc.mode == "RGBA"
    assert ((doc.frames[0].pixels[:, :, 3] == 0) == (pixels == 2)).all()


def test_sixteen_bit_grey_png_round_trips_as_uint16():
    pixels = (np.arange(120, dtype=np.uint32).reshape(12, 10) * 541 % 65536).astype(np.uint16)
    doc = read_image(_encode([pixels], "PNG"))
    assert doc.mode == "I;16"
    _assert_same_frames(doc, [pixels])
    for fmt in ("PNG", "TIFF"):
        _assert_same_frames(read_image(write_image(doc, fmt).data), [pixels])


def _png_16bit(colour_type: int, channels: int) -> bytes:
    """A 16-bit PNG Pillow cannot write (it writes RGB at 8 bits): IHDR, one IDAT, IEND."""
    import struct
    import zlib

    rows = b"".join(b"\0" + bytes(range(2 * channels * 4)) for _ in range(3))
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 3, 16, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("colour_type, channels", [(2, 3), (4, 2), (6, 4)])
def test_a_16_bit_colour_png_is_refused_not_reduced_to_8_bits(colour_type, channels):
    data = _png_16bit(colour_type, channels)
    assert Image.open(io.BytesIO(data)).mode in ("RGB", "RGBA")  # what Pillow would hand us: 8 bits
    with pytest.raises(UnsupportedImageError, match="16-bit"):
        read_image(data)


def test_a_16_bit_rgb_tiff_is_refused_not_reduced_to_8_bits():
    from PIL import TiffImagePlugin

    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    pixels = np.arange(4 * 3 * 3, dtype="<u2").reshape(3, 4, 3) * 1000
    body = pixels.tobytes()
    for tag, value in [(256, 4), (257, 3), (258, (16, 16, 16)), (259, 1), (262, 2), (273, 0), (277, 3),
                       (278, 3), (279, len(body))]:
        ifd[tag] = value
    header = b"II*\x00" + (8).to_bytes(4, "little")
    table = ifd.tobytes(8)
    ifd[273] = 8 + len(table)
    data = header + ifd.tobytes(8) + body
    with pytest.raises(UnsupportedImageError, match="16-bit"):
        read_image(data)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_icc_exif_and_xmp_survive_read_write_read(fmt):
    frames = _frames()
    source = read_image(write_image(ImageDocument([Frame(f) for f in frames[:1]], metadata=_rich_metadata()), "PNG").data)
    written = write_image(source, fmt)
    meta = read_image(written.data).metadata
    assert meta.icc == ICC
    assert meta.xmp == XMP
    if fmt == "TIFF":
        # Pillow turns a TIFF upright by its orientation tag and drops the tag: the rest of EXIF stays
        assert _exif_tags(meta.exif) == {0x010F: "Camera maker"}
    else:
        assert _exif_tags(meta.exif)[0x0112] == 6
    if fmt == "WEBP":
        assert meta.dpi is None and meta.text == {}
        assert set(written.dropped) == {"resolution (dpi) (not kept by WEBP)", "text 'Title' (not kept by WEBP)",
                                        "text 'Author' (not kept by WEBP)"}
    else:
        assert meta.dpi == pytest.approx((300, 150), rel=1e-4)
    if fmt == "PNG":
        assert meta.text == {"Title": "a test", "Author": "Zoë"}
        assert written.dropped == []


def _exif_tags(exif: bytes) -> dict:
    loaded = Image.Exif()
    loaded.load(b"Exif\0\0" + exif)
    return dict(loaded)


def test_a_tiff_written_with_an_orientation_shows_the_same_and_reads_back_upright():
    pixels = _frames(n=1)[0]
    doc = ImageDocument([Frame(pixels)], metadata=Metadata(exif=_exif(6)[6:]))
    written = write_image(doc, "TIFF")
    assert written.dropped == []
    back = read_image(written.data)
    np.testing.assert_array_equal(back.frames[0].pixels, np.rot90(pixels, -1))  # orientation 6: 90° clockwise


def test_png_text_chunks_keep_their_order_and_non_latin_text():
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "icnn")
    info.add_text("Title", "Ünïcödé ☃")
    info.add_text("Comment", "x" * 3000, zip=True)
    buffer = io.BytesIO()
    Image.fromarray(_frames(n=1)[0]).save(buffer, "PNG", pnginfo=info)
    doc = read_image(buffer.getvalue())
    assert list(doc.metadata.text) == ["Software", "Title", "Comment"]
    assert read_image(write_image(doc, "PNG").data).metadata.text == doc.metadata.text


def _png_chunk_kinds(png: bytes) -> list[bytes]:
    kinds, pos = [], 8
    while pos < len(png):
        length, kind = int.from_bytes(png[pos:pos + 4], "big"), png[pos + 4:pos + 8]
        kinds.append(kind)
        pos += 12 + length
    return kinds


def _with_raw_chunk(png: bytes, kind: bytes, data: bytes) -> bytes:
    """``png`` with a chunk Pillow's writer will not write, just before the image data."""
    import struct
    import zlib

    at = png.index(b"IDAT") - 4
    return png[:at] + struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data)) + png[at:]


GAMMA = (45455).to_bytes(4, "big")
CHROMATICITIES = b"".join(v.to_bytes(4, "big") for v in (31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000))


def test_a_pngs_colour_space_and_private_chunks_come_back_where_they_were():
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", GAMMA)
    info.add(b"cHRM", CHROMATICITIES)
    info.add(b"sRGB", b"\x00")
    info.add(b"prVb", b"before the pixels")
    info.add(b"prVa", b"after the pixels", after_idat=True)
    pixels = _frames(n=1)[0]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", pnginfo=info)
    source = _with_raw_chunk(buffer.getvalue(), b"oFFs", bytes(9))  # public, but Pillow writes no oFFs
    doc = read_image(source)
    assert doc.metadata.png_chunks == [
        PngChunk("gAMA", GAMMA), PngChunk("cHRM", CHROMATICITIES), PngChunk("sRGB", b"\x00"),
        PngChunk("prVb", b"before the pixels"), PngChunk("oFFs", bytes(9)), PngChunk("prVa", b"after the pixels", True)]
    written = write_image(doc, "PNG")
    assert written.dropped == []
    kinds = _png_chunk_kinds(written.data)
    assert kinds.index(b"prVa") > kinds.index(b"IDAT") > max(kinds.index(k) for k in (b"gAMA", b"cHRM", b"sRGB", b"oFFs"))
    back = read_image(written.data)
    assert back.metadata == doc.metadata
    np.testing.assert_array_equal(back.frames[0].pixels, pixels)
    assert Image.open(io.BytesIO(written.data)).info["gamma"] == 0.45455
    assert "PNG chunks gAMA, cHRM, sRGB, prVb, oFFs, prVa (not kept by WEBP)" in write_image(doc, "WEBP").dropped


def test_a_palette_pngs_background_and_significant_bits_follow_it_into_rgb_and_its_histogram_is_reported():
    pixels = np.array([[0, 1], [1, 2]], dtype=np.uint8)
    image = Image.fromarray(pixels, "P")
    image.putpalette([10, 20, 30, 200, 100, 50, 0, 0, 0])
    info = PngImagePlugin.PngInfo()
    info.add(b"sBIT", b"\x05\x06\x05")
    info.add(b"bKGD", b"\x01")
    info.add(b"hIST", b"\x00\x01\x00\x02\x00\x01")
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    doc = read_image(buffer.getvalue())
    assert doc.mode == "RGB"
    assert doc.metadata.png_chunks == [PngChunk("sBIT", b"\x05\x06\x05"), PngChunk("bKGD", bytes([0, 200, 0, 100, 0, 50])),
                                       PngChunk("hIST", b"\x00\x01\x00\x02\x00\x01")]
    written = write_image(doc, "PNG")
    assert written.dropped == ["PNG hIST chunk (it describes a palette, and the image is written without one)"]
    assert [c.kind for c in read_image(written.data).metadata.png_chunks] == ["sBIT", "bKGD"]


def test_text_chunks_the_text_cannot_hold_as_they_are_stay_chunks():
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "first")
    info.add_text("Author", "Zoë")
    info.add_text("Comment", "second")  # a keyword twice: the text would keep only the last
    info.add_itxt("Title", "Ein Test", lang="de", tkey="Titel")  # the text has no room for the language
    buffer = io.BytesIO()
    Image.fromarray(_frames(n=1)[0]).save(buffer, "PNG", pnginfo=info)
    doc = read_image(buffer.getvalue())
    assert doc.metadata.text == {"Author": "Zoë"}
    assert [c.kind for c in doc.metadata.png_chunks] == ["tEXt", "tEXt", "iTXt"]
    assert Metadata.from_bytes(doc.metadata.to_bytes()) == doc.metadata
    written = write_image(doc, "PNG")
    assert written.dropped == [] and read_image(written.data).metadata == doc.metadata
    with Image.open(io.BytesIO(written.data)) as im:
        assert im.text["Title"].lang == "de" and im.text["Title"].tkey == "Titel"


def test_a_low_depth_grey_pngs_background_scales_with_its_pixels():
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    one_bit = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 2, 1, 0, 0, 0, 0))
               + chunk(b"bKGD", b"\x00\x01") + chunk(b"IDAT", zlib.compress(b"\x00\xf0\x00\x0f")) + chunk(b"IEND", b""))
    doc = read_image(one_bit)
    assert doc.mode == "L" and doc.frames[0].pixels.max() == 255
    assert doc.metadata.png_chunks == [PngChunk("bKGD", b"\x00\xff")]  # white, as the pixels' 1 became 255


def test_a_resolution_without_a_unit_is_kept_as_its_chunk_and_an_unknown_critical_chunk_is_refused():
    png = _encode(_frames(n=1), "PNG")
    doc = read_image(_with_raw_chunk(png, b"pHYs", (2).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x00"))
    assert doc.metadata.dpi is None and [c.kind for c in doc.metadata.png_chunks] == ["pHYs"]
    assert read_image(write_image(doc, "PNG").data).metadata == doc.metadata
    with pytest.raises(UnsupportedImageError, match="unknown critical chunk"):
        read_image(_with_raw_chunk(png, b"CRIT", b"?"))


def test_a_kept_chunk_a_png_of_the_documents_mode_cannot_hold_is_listed():
    doc = ImageDocument([Frame(_frames(n=1)[0])], metadata=Metadata(png_chunks=[PngChunk("bKGD", b"\x00\x01")]))
    written = write_image(doc, "PNG")
    assert written.dropped == ["PNG bKGD chunk (its 2 bytes do not fit a PNG of mode RGB)"]
    assert b"bKGD" not in written.data


def test_a_transparent_grey_pngs_significant_bits_gain_the_alpha_channel():
    info = PngImagePlugin.PngInfo()
    info.add(b"sBIT", b"\x04")
    buffer = io.BytesIO()
    Image.fromarray(np.array([[0, 17], [34, 255]], dtype=np.uint8)).save(buffer, "PNG", pnginfo=info, transparency=17)
    doc = read_image(buffer.getvalue())
    assert doc.mode == "LA" and doc.metadata.png_chunks == [PngChunk("sBIT", b"\x04\x08")]


def test_metadata_round_trips_through_bytes():
    meta = _rich_metadata()
    assert Metadata.from_bytes(meta.to_bytes()) == meta
    assert list(Metadata.from_bytes(meta.to_bytes()).text) == ["Title", "Author"]
    assert Metadata.from_bytes(Metadata().to_bytes()).is_empty
    chunks = Metadata(png_chunks=[PngChunk("gAMA", GAMMA), PngChunk("prVa", b"", True)])
    assert not chunks.is_empty and Metadata.from_bytes(chunks.to_bytes()) == chunks
    assert chunks.summary() == ["PNG chunks: gAMA (4 bytes), prVa (0 bytes)"]
    for kind in ("gA1A", "GAMA"):
        with pytest.raises(UnsupportedImageError, match="not an ancillary PNG chunk type"):
            Metadata(png_chunks=[PngChunk(kind, GAMMA)]).to_bytes()
    with pytest.raises(DecodeError, match="pHYs repeats"):  # a forged stream: the resolution twice
        Metadata.from_bytes(Metadata(dpi=(72.0, 72.0), png_chunks=[PngChunk("pHYs", bytes(9))]).to_bytes())


def test_metadata_bytes_with_any_bit_flipped_are_refused():
    data = Metadata(icc=b"profile", text={"k": "v"}).to_bytes()
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(DecodeError):
            Metadata.from_bytes(bytes(flipped))
    with pytest.raises(DecodeError):
        Metadata.from_bytes(data[:-1])


def test_metadata_that_inflates_past_the_cap_is_refused(monkeypatch):
    import icnn_codec.imagefile as imagefile

    data = Metadata(xmp=bytes(10_000)).to_bytes()
    monkeypatch.setattr(imagefile, "MAX_METADATA_BYTES", 1000)
    with pytest.raises(DecodeError, match="more than"):
        Metadata.from_bytes(data)


def test_metadata_summary_has_one_line_per_item():
    lines = _rich_metadata().summary()
    assert lines[0].startswith("ICC profile: ") and "bytes (" in lines[0]
    assert lines[1].endswith("orientation 6")
    assert lines[2:] == [f"XMP: {len(XMP):,} bytes", "Resolution: 300 x 150 dpi", "Text 'Title': 'a test'", "Text 'Author': 'Zoë'"]


def test_three_frames_to_bmp_are_refused():
    doc = ImageDocument([Frame(f) for f in _frames()])
    with pytest.raises(UnsupportedImageError, match="BMP holds one frame"):
        write_image(doc, "BMP")


@pytest.mark.parametrize("fmt, frame", [
    pytest.param("WEBP", np.zeros((4, 4), np.uint16), id="16-bit grey as WebP"),
    pytest.param("GIF", np.zeros((4, 4), np.uint16), id="16-bit grey as GIF"),
    pytest.param("BMP", np.full((4, 4, 4), 7, np.uint8), id="alpha as BMP"),
    pytest.param("GIF", np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8), id="400 colours as GIF"),
    pytest.param("WEBP", np.zeros((4, 4), np.uint8), id="grey as WebP, which has no grey mode"),
])
def test_a_format_that_cannot_hold_the_pixels_is_refused(fmt, frame):
    with pytest.raises(UnsupportedImageError, match=f"{fmt} cannot hold"):
        write_image(ImageDocument([Frame(frame)]), fmt)


def test_a_lossy_or_unknown_format_is_refused():
    doc = ImageDocument([Frame(_frames(n=1)[0])])
    with pytest.raises(OptionError, match="lossy"):
        write_image(doc, "JPEG")
    with pytest.raises(OptionError):
        write_image(doc, "NOSUCH")


def test_repeated_frames_merged_by_a_writer_are_reported_not_refused():
    a, b = _frames(n=2)
    doc = ImageDocument([Frame(a, 100), Frame(a, 50), Frame(b, 100)], loop=0)
    written = write_image(doc, "GIF")
    back = read_image(written.data)
    _assert_same_frames(back, [a, b])
    assert [f.duration_ms for f in back.frames] == [150, 100]
    assert any("merged" in line for line in written.dropped)


def test_a_file_pillow_cannot_read_is_an_unsupported_image():
    with pytest.raises(UnsupportedImageError):
        read_image(b"not an image at all")
    with pytest.raises(UnsupportedImageError):
        read_image(_encode(_frames(n=1), "PNG")[:60])


def test_the_pixel_bound_covers_all_frames():
    data = _encode(_frames(), "GIF", duration=DURATIONS)
    with pytest.raises(UnsupportedImageError, match="pixels in all"):
        read_image(data, max_pixels=12 * 10 * 2)


def test_an_apng_default_image_stays_the_default_image_and_is_left_out_of_other_animations():
    frames = _frames()
    doc = read_image(_encode(frames, "PNG", default_image=True, duration=DURATIONS[:2], loop=0))
    assert doc.default_image
    _assert_same_frames(doc, frames)
    as_png = read_image(write_image(doc, "PNG").data)
    assert as_png.default_image and [f.duration_ms for f in as_png.frames] == [None, *DURATIONS[:2]]
    as_gif = write_image(doc, "GIF")
    _assert_same_frames(read_image(as_gif.data), frames[1:])
    assert any("default image" in line for line in as_gif.dropped)


def _gif_with_icc_and_xmp(icc: bytes, xmp: bytes) -> bytes:
    """A GIF with the ICC and XMP application extensions that Pillow neither reads nor writes."""
    from icnn_codec.imagefile import _XMP_MAGIC_TRAILER

    gif = _encode(_frames(), "GIF", duration=DURATIONS, loop=0)
    start = 13 + (3 << ((gif[10] & 7) + 1))  # after the global colour table
    icc_blocks = b"".join(bytes([len(icc[i:i + 255])]) + icc[i:i + 255] for i in range(0, len(icc), 255))
    return (gif[:start] + b"\x21\xff\x0bICCRGBG1012" + icc_blocks + b"\0"
            + b"\x21\xff\x0bXMP DataXMP" + xmp + _XMP_MAGIC_TRAILER + b"\0" + gif[start:])


def test_a_gif_keeps_its_icc_profile_and_xmp_which_pillow_does_not_read():
    data = _gif_with_icc_and_xmp(ICC, XMP)
    assert "icc_profile" not in Image.open(io.BytesIO(data)).info
    doc = read_image(data)
    assert doc.metadata.icc == ICC and doc.metadata.xmp == XMP
    for fmt in ("GIF", "PNG", "WEBP"):
        written = write_image(doc, fmt)
        assert written.dropped == []
        assert read_image(written.data).metadata == doc.metadata


def test_a_transparent_grey_level_becomes_an_alpha_channel():
    grey = np.arange(120, dtype=np.uint8).reshape(12, 10) % 4
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, "PNG", transparency=2)
    doc = read_image(buffer.getvalue())
    assert doc.mode == "LA"
    np.testing.assert_array_equal(doc.frames[0].pixels[:, :, 1], np.where(grey == 2, 0, 255))


def test_a_16_bit_pgm_reads_as_16_bit_grey():
    pixels = (np.arange(120).reshape(12, 10) * 500).astype(np.uint16)
    doc = read_image(_encode([pixels], "PPM"))
    _assert_same_frames(doc, [pixels])


def test_frames_mixing_16_bit_grey_and_8_bit_samples_are_refused():
    data = _encode([np.zeros((4, 4), np.uint16), np.zeros((4, 4), np.uint8)], "TIFF")
    with pytest.raises(UnsupportedImageError, match="16-bit grey with 8-bit"):
        read_image(data)


def test_metadata_a_format_cannot_hold_is_listed_not_silently_lost():
    doc = ImageDocument([Frame(f, 100) for f in _frames()], loop=0, metadata=_rich_metadata())
    written = write_image(doc, "TIFF")
    assert set(written.dropped) == {"frame durations (not kept by TIFF)", "loop count (plays forever; not kept by TIFF)",
                                    "text 'Title' (not kept by TIFF)", "text 'Author' (not kept by TIFF)"}
