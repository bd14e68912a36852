"""The codec gives back exactly the pixels it was given, for every kind of image, or an error."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import icnn_codec as ic
from icnn_codec import container, rans
from icnn_codec.payload import TileKind
from icnn_codec.zoo import find_model_by_fingerprint

rng = np.random.default_rng(1234)

ODD_IMAGES = {
    "1x1": rng.integers(0, 256, (1, 1, 3), dtype=np.uint8),
    "7x13": rng.integers(0, 256, (7, 13, 3), dtype=np.uint8),
    "33x65": rng.integers(0, 256, (33, 65, 3), dtype=np.uint8),
    "noise_64x48": rng.integers(0, 256, (64, 48, 3), dtype=np.uint8),
    "flat": np.full((40, 24, 3), 200, dtype=np.uint8),
    "extremes": np.tile(np.array([0, 255], np.uint8)[:, None, None], (8, 9, 3)),
    "gray": rng.integers(0, 256, (17, 23), dtype=np.uint8),
    "gray_la": rng.integers(0, 256, (9, 10, 2), dtype=np.uint8),
    "rgba": rng.integers(0, 256, (21, 11, 4), dtype=np.uint8),
}


def test_cifar_images_round_trip_exactly_in_a_batch(cifar_images):
    images = list(cifar_images[:32])
    streams = ic.compress_many(images, batch_size=16)
    assert all(np.array_equal(a, b) for a, b in zip(ic.decompress_many(streams, batch_size=8), images))


def test_batched_calls_agree_with_single_calls(cifar_images):
    images = list(cifar_images[32:40]) + [ODD_IMAGES["7x13"], ODD_IMAGES["rgba"]]
    streams = ic.compress_many(images)
    assert streams == [ic.compress(im) for im in images]
    assert all(np.array_equal(a, ic.decompress(s)) for a, s in zip(ic.decompress_many(streams), streams))


@pytest.mark.parametrize("name", sorted(ODD_IMAGES))
def test_any_size_and_mode_round_trips(name):
    image = ODD_IMAGES[name]
    expected = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    out = ic.decompress(ic.compress(image))
    assert out.dtype == np.uint8 and out.shape == expected.shape
    assert np.array_equal(out, expected)


def test_full_size_photograph_round_trips(photo):
    assert np.array_equal(ic.decompress(ic.compress(photo)), photo)


@pytest.mark.parametrize("shape", [(64, 48, 3), (33, 47), (300, 20, 4)], ids=["rgb", "grey", "rgba_two_tiles"])
def test_noise_costs_no_more_than_its_raw_bytes_plus_a_few_per_tile(shape):
    noise = np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8)
    data = ic.compress(noise)
    assert set(ic.tile_kinds(data)) == {"raw"}
    # the header (and tile index), then per tile its checksum and kind
    assert len(data) <= noise.size + 16 + 8 * ic.read_header(data).n_tiles
    assert np.array_equal(ic.decompress(data), noise)


def test_a_photograph_is_coded_by_the_model_and_its_small_edge_tiles_by_whatever_is_shorter(photo):
    kinds = ic.tile_kinds(ic.compress(photo[:300, :300]))  # tiles of 256, 256x44, 44x256 and 44x44
    assert kinds[0] == "model" and set(kinds) <= {"model", "filtered"}


def test_a_grey_image_costs_less_than_the_same_grey_repeated_as_rgb(photo):
    grey = np.asarray(Image.fromarray(photo[:128, :192]).convert("L"))
    grey_bytes = len(ic.compress(grey))
    assert grey_bytes < len(ic.compress(np.repeat(grey[:, :, None], 3, axis=2)))
    assert grey_bytes < 0.75 * grey.size  # under 6 bits a pixel


def test_grey_images_get_tiles_of_384_and_colour_images_of_256(photo):
    grey = np.ascontiguousarray(photo[:400, :400, 0])  # more than one tile of either
    assert ic.read_header(ic.compress(grey)).tile_side == 384
    assert ic.read_header(ic.compress(np.dstack([grey, grey]))).tile_side == 384
    assert ic.read_header(ic.compress(photo[:300, :300])).tile_side == 256


def test_pil_images_are_accepted_and_palette_images_keep_their_pixels():
    rgb = Image.fromarray(ODD_IMAGES["33x65"])
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert np.array_equal(ic.decompress(ic.compress(rgb)), np.asarray(rgb))
    assert np.array_equal(ic.decompress(ic.compress(pal)), np.asarray(pal.convert("RGB")))


def test_unsupported_images_are_refused_clearly():
    with pytest.raises(ic.UnsupportedImageError, match="8-bit or 16-bit"):
        ic.compress(np.zeros((4, 4), dtype=np.int32))
    with pytest.raises(ic.UnsupportedImageError, match="mode"):
        ic.compress(Image.new("F", (4, 4)))
    with pytest.raises(ic.UnsupportedImageError):
        ic.compress(np.zeros((4, 4, 5), dtype=np.uint8))


def test_a_cifar_image_costs_nine_bytes_beyond_its_model_code_which_ends_in_its_checksum(cifar_images):
    data = ic.compress(cifar_images[0])
    header = ic.read_header(data)
    assert (header.width, header.height, header.mode, header.n_tiles, header.tiled) == (32, 32, "RGB", 1, False)
    assert len(header.to_bytes()) == 8 and container.overhead_bytes(data) == 9  # + the tile's kind
    tile = container.unpack(data).tiles[0]
    assert tile.kind == TileKind.MODEL and tile.crc32 is None
    streams = rans.Streams([tile.payload])
    find_model_by_fingerprint(header.model_fingerprint).wavefront().pop(streams, 32, 32)
    assert streams.all_ended(container.pixel_checksum(cifar_images[0], header, 0))


@pytest.mark.parametrize("shape", [(40, 40), (40, 40, 3), (300, 300, 4)], ids=["grey", "rgb", "rgba_two_tiles"])
def test_a_flat_image_costs_under_64_bytes(shape):
    flat = np.full(shape, 173, np.uint8)
    data = ic.compress(flat)
    assert len(data) < 64 and set(ic.tile_kinds(data)) == {"flat"}
    assert np.array_equal(ic.decompress(data), flat)


def test_a_few_colour_drawing_is_coded_classically_and_far_smaller_than_by_the_model(photo):
    yy, xx = np.mgrid[:200, :300]
    drawing = np.where(((yy // 20 + xx // 30) % 2)[:, :, None] == 1, [[[250, 250, 240]]], [[[20, 40, 160]]]).astype(np.uint8)
    drawing[90:110, :] = [200, 30, 30]
    data = ic.compress(drawing)
    assert set(ic.tile_kinds(data)) <= {"flat", "palette", "filtered"}
    assert len(data) < 0.05 * len(ic.compress(photo[:200, :300]))
    assert np.array_equal(ic.decompress(data), drawing)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_samples_round_trip_exactly(photo, channels):
    rng = np.random.default_rng(channels)
    base = photo[:70, :90].astype(np.uint16) * 256 + rng.integers(0, 256, (70, 90, 3), dtype=np.uint16)
    image = np.dstack([base, base[:, :, :1]])[:, :, :channels] if channels != 1 else base[:, :, 1]
    data = ic.compress(image)
    out = ic.decompress(data)
    assert out.dtype == np.uint16 and np.array_equal(out, image)
    assert set(ic.tile_kinds(data)) == {"split16"} and ic.read_header(data).sample_bits == 16


def test_16_bit_grey_compresses_better_than_png(photo):
    """A 16-bit photograph: a smooth high byte, noisy low bits, as a 16-bit sensor gives them."""
    import io

    grey = np.asarray(Image.fromarray(photo[:200, :240]).convert("L")).astype(np.uint16)
    noise = np.random.default_rng(16).normal(0, 40, grey.shape)
    image = np.clip(grey * 257 + noise, 0, 65535).astype(np.uint16)
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG", optimize=True)
    data = ic.compress(image)
    assert np.array_equal(ic.decompress(data), image)
    assert len(data) < len(png.getvalue())


def test_decode_error_is_a_value_error():
    assert issubclass(ic.DecodeError, ValueError)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: b"",
        lambda d: d[:5],
        lambda d: d[:-4],
        lambda d: d[:-1],
        lambda d: d[:-1] + bytes([d[-1] ^ 0x80]),
        lambda d: b"\x89PNG\r\n\x1a\n" + d[8:],
        lambda d: d[:2] + bytes([d[2] + 0x10]) + d[3:],  # a future format version
        lambda d: d[:3] + bytes([d[3] ^ 0xFF]) + d[4:],  # a model that is not installed
        lambda d: d[:-8] + bytes([d[-8] ^ 0x01]) + d[-7:],  # one bit flipped in the payload
        lambda d: d + b"\0\0\0\0",  # trailing data
    ],
    ids=["empty", "header_only", "truncated_word", "truncated_byte", "last_bit", "png", "version", "model", "bitflip", "trailing"],
)
def test_corrupted_streams_raise_decode_error(cifar_images, mutate):
    data = ic.compress(cifar_images[3])
    with pytest.raises(ic.DecodeError):
        ic.decompress(mutate(data))


def test_every_single_bit_flip_in_the_header_is_caught(cifar_images):
    data = ic.compress(cifar_images[5])
    for byte in range(container.overhead_bytes(data)):  # header and tile checksum
        for bit in range(8):
            bad = bytearray(data)
            bad[byte] ^= 1 << bit
            with pytest.raises(ic.DecodeError):
                ic.decompress(bytes(bad))


def test_a_model_that_loads_as_a_new_object_each_time_still_codes_every_image(cifar_images, model, monkeypatch):
    """A training run folder given as the model loads anew on every call (the run may still be
    training): the copies share a fingerprint, and every stream must be coded and decoded, none
    left as uninitialised memory."""
    import dataclasses

    from icnn_codec import codec

    monkeypatch.setattr(codec, "load_model", lambda m=None: dataclasses.replace(model))
    images = list(cifar_images[:3])
    streams = ic.compress_many(images, model="a-run-folder")
    assert streams == ic.compress_many(images, model=model)
    decoded = ic.decompress_many(streams, model="a-run-folder")
    assert all(np.array_equal(a, b) for a, b in zip(decoded, images))
