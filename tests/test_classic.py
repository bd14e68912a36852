"""Classic block coders: exact round trips, the right kind for the content, and clean refusals."""

import bz2
import lzma
import tracemalloc
import zlib

import numpy as np
import pytest

from icnn_codec.classic import ClassicKind, decode_classic, encode_classic
from icnn_codec.errors import DecodeError, UnsupportedImageError

CHANNELS = {"grey": 1, "grey+alpha": 2, "rgb": 3, "rgba": 4}


def drawing(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """A synthetic graphic: a smooth gradient with a few flat rectangles and dots on it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    block = np.stack([(x * 3 + y * (c + 1)) % 256 for c in range(channels)], axis=2).astype(np.uint8)
    for _ in range(4):
        top, left = rng.integers(0, height), rng.integers(0, width)
        block[top:top + height // 3, left:left + width // 4] = rng.integers(0, 256, channels)
    block[rng.integers(0, height, 20), rng.integers(0, width, 20)] = 255
    return block


def few_colours(height: int, width: int, channels: int, n_colours: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (n_colours, channels), dtype=np.uint8)
    return colours[rng.integers(0, n_colours, (height, width))]


def noise(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def round_trip(block: np.ndarray) -> tuple[ClassicKind, bytes]:
    kind, payload = encode_classic(block)
    decoded = decode_classic(kind, payload, *block.shape)
    assert decoded.dtype == np.uint8 and decoded.shape == block.shape
    np.testing.assert_array_equal(decoded, block)
    return kind, payload


def payload_of(kind: ClassicKind, block: np.ndarray) -> bytes:
    found, payload = encode_classic(block)
    assert found == kind
    return payload


@pytest.mark.parametrize("mode", CHANNELS)
@pytest.mark.parametrize("size", [(1, 1), (1, 7), (7, 1), (13, 29), (40, 40), (256, 256)])
def test_drawings_of_every_mode_and_size_round_trip_exactly(mode, size):
    round_trip(drawing(*size, CHANNELS[mode]))


@pytest.mark.parametrize("mode", CHANNELS)
@pytest.mark.parametrize("n_colours", [2, 3, 4, 5, 16, 17, 256])
def test_few_colour_blocks_round_trip_exactly_at_every_index_width(mode, n_colours):
    round_trip(few_colours(19, 37, CHANNELS[mode], n_colours))


@pytest.mark.parametrize("mode", CHANNELS)
def test_noise_round_trips_exactly(mode):
    round_trip(noise(9, 11, CHANNELS[mode]))


@pytest.mark.parametrize("mode", CHANNELS)
def test_a_flat_block_is_one_pixel_of_payload(mode):
    block = np.full((256, 256, CHANNELS[mode]), 173, np.uint8)
    kind, payload = round_trip(block)
    assert kind == ClassicKind.FLAT and len(payload) == CHANNELS[mode]


@pytest.mark.parametrize("mode", CHANNELS)
def test_a_block_of_few_scattered_colours_is_coded_with_a_palette(mode):
    kind, payload = round_trip(few_colours(64, 64, CHANNELS[mode], 3))
    assert kind == ClassicKind.PALETTE
    assert len(payload) < 64 * 64 // 2  # under 4 bits a pixel for 3 random colours: the palette's doing


def test_a_gradient_is_coded_as_filtered_rows_in_a_few_dozen_bytes():
    y, x = np.mgrid[:256, :256]
    kind, payload = round_trip(np.stack([x, y, (x + y) // 2], axis=2).astype(np.uint8))
    assert kind == ClassicKind.FILTERED and len(payload) < 200


@pytest.mark.parametrize("mode", CHANNELS)
def test_noise_falls_back_to_its_raw_bytes(mode):
    block = noise(64, 64, CHANNELS[mode])
    kind, payload = round_trip(block)
    assert kind == ClassicKind.RAW and payload == block.tobytes()


def test_encoding_is_deterministic():
    block = drawing(100, 90, 3)
    assert encode_classic(block) == encode_classic(block.copy())


def test_a_size_to_beat_out_of_reach_still_gives_an_exact_coding():
    block = noise(64, 64, 3)
    block[::2] = 0  # compressible, so the cheap trials find something
    kind, payload = encode_classic(block, size_to_beat=1)
    np.testing.assert_array_equal(decode_classic(kind, payload, *block.shape), block)
    assert len(payload) <= block.size


def photograph_like(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """A smooth field with sensor-like noise: residuals a compressor finds no repeats in."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    field = np.stack([96 + 40 * np.sin(x / 23 + c) + 30 * np.cos(y / 17) for c in range(channels)], axis=2)
    return np.clip(field + rng.normal(0, 3, field.shape), 0, 255).astype(np.uint8)


def compressor_calls(monkeypatch) -> list:
    import icnn_codec.classic as classic

    calls = []
    compress = classic._compress
    monkeypatch.setattr(classic, "_compress", lambda stream, compressor: calls.append(compressor) or compress(stream, compressor))
    return calls


def test_a_photographic_block_gets_two_bzip2_trials_and_one_lzma_trial(monkeypatch):
    calls = compressor_calls(monkeypatch)
    block = photograph_like(128, 128, 3)
    round_trip(block)
    assert sorted(c.name for c in calls) == ["BZIP2", "BZIP2", "LZMA"]


def test_a_photographic_block_gets_its_lzma_trial_only_where_lzma_could_gain_a_tenth(monkeypatch):
    block = photograph_like(128, 128, 3)
    _, cheap_best = encode_classic(block, size_to_beat=1)  # out of reach: no LZMA trial
    calls = compressor_calls(monkeypatch)
    encode_classic(block, size_to_beat=int(0.88 * len(cheap_best)))  # LZMA has never gained 12 % on a photo
    assert "LZMA" not in [c.name for c in calls]
    encode_classic(block, size_to_beat=int(0.95 * len(cheap_best)))
    assert "LZMA" in [c.name for c in calls]


def test_a_drawing_gets_a_trial_of_every_stream(monkeypatch):
    calls = compressor_calls(monkeypatch)
    round_trip(drawing(128, 128, 3))
    assert [c.name for c in calls].count("BZIP2") == 6  # 2 colour transforms x 3 filter strategies


def test_a_non_contiguous_view_is_coded_as_its_pixels():
    image = drawing(64, 64, 4)
    view = image[5:50:2, 3:60:3, :3]
    kind, payload = encode_classic(view)
    np.testing.assert_array_equal(decode_classic(kind, payload, *view.shape), view)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8),
                                 np.zeros((4, 4, 3), np.uint16), np.zeros((0, 4, 3), np.uint8),
                                 np.zeros((4, 4, 3), np.float32)])
def test_anything_but_a_uint8_block_of_1_to_4_channels_is_refused(bad):
    with pytest.raises(UnsupportedImageError):
        encode_classic(bad)


# --- the payload layouts, built from the module's description rather than by the encoder ------


def png_filtered(rows: np.ndarray, bpp: int, types: list[int]) -> bytes:
    """PNG's filtering (RFC 2083, section 6), one byte at a time."""
    def paeth(a, b, c):
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        return a if pa <= pb and pa <= pc else b if pb <= pc else c

    out = bytearray()
    for i, row in enumerate(rows.astype(int)):
        out.append(types[i])
        for j, x in enumerate(row):
            a = int(row[j - bpp]) if j >= bpp else 0
            b = int(rows[i - 1, j]) if i else 0
            c = int(rows[i - 1, j - bpp]) if i and j >= bpp else 0
            prediction = [0, a, b, (a + b) // 2, paeth(a, b, c)][types[i]]
            out.append((x - prediction) % 256)
    return bytes(out)


COMPRESSORS = {
    0: raw_deflate,
    1: lambda data: lzma.compress(data, format=lzma.FORMAT_RAW,
                                  filters=[{"id": lzma.FILTER_LZMA2, "dict_size": max(4096, len(data))}]),
    2: lambda data: bz2.compress(data, 9),
}


@pytest.mark.parametrize("compressor", COMPRESSORS)
@pytest.mark.parametrize("mode", CHANNELS)
def test_a_filtered_payload_with_every_row_filter_decodes_as_png_defines_them(compressor, mode):
    block = noise(11, 7, CHANNELS[mode], seed=compressor)
    stream = png_filtered(block.reshape(11, -1), CHANNELS[mode], [i % 5 for i in range(11)])
    decoded = decode_classic(ClassicKind.FILTERED, bytes([compressor]) + COMPRESSORS[compressor](stream), 11, 7,
                             CHANNELS[mode])
    np.testing.assert_array_equal(decoded, block)


def test_subtract_green_codes_red_and_blue_as_differences_from_green():
    block = noise(6, 5, 4)
    coded = block.copy()
    coded[:, :, 0] -= block[:, :, 1]
    coded[:, :, 2] -= block[:, :, 1]
    stream = png_filtered(coded.reshape(6, -1), 4, [4] * 6)
    decoded = decode_classic(ClassicKind.FILTERED, bytes([0x04]) + raw_deflate(stream), 6, 5, 4)
    np.testing.assert_array_equal(decoded, block)


@pytest.mark.parametrize("n_colours, bits", [(2, 1), (4, 2), (5, 4), (16, 4), (17, 8)])
def test_palette_indices_are_packed_as_png_packs_them(n_colours, bits):
    height, width = 5, 9
    block = few_colours(height, width, 2, n_colours, seed=n_colours)
    palette, indices = np.unique(block.reshape(-1, 2), axis=0, return_inverse=True)
    assert len(palette) == n_colours  # the test's premise: every colour is used
    indices = indices.reshape(height, width)
    packed_rows = []
    for row in indices:
        bit_string = "".join(format(int(i), f"0{bits}b") for i in row)
        bit_string += "0" * (-len(bit_string) % 8)
        packed_rows.append([int(bit_string[k:k + 8], 2) for k in range(0, len(bit_string), 8)])
    stream = palette.astype(np.uint8).tobytes() + png_filtered(np.array(packed_rows, np.uint8), 1, [2] * height)
    payload = bytes([2, n_colours - 1]) + bz2.compress(stream)
    np.testing.assert_array_equal(decode_classic(ClassicKind.PALETTE, payload, height, width, 2), block)


# --- bad payloads -----------------------------------------------------------------------------

SAMPLES = {
    "raw": (ClassicKind.RAW, noise(8, 8, 3)),
    "flat": (ClassicKind.FLAT, np.full((8, 8, 3), 9, np.uint8)),
    "palette": (ClassicKind.PALETTE, few_colours(48, 48, 3, 5)),
    "filtered": (ClassicKind.FILTERED, drawing(48, 48, 3)),
}


def decodes_cleanly_or_refuses(kind: int, payload: bytes, shape: tuple[int, int, int]) -> None:
    """A damaged payload may still decode (the tile's CRC is the container's guard), but only to a
    block of the right shape; anything else must be a DecodeError."""
    try:
        decoded = decode_classic(kind, payload, *shape)
    except DecodeError:
        return
    assert decoded.shape == shape and decoded.dtype == np.uint8


@pytest.mark.parametrize("name", SAMPLES)
def test_every_truncation_is_refused(name):
    kind, block = SAMPLES[name]
    payload = payload_of(kind, block)
    for length in range(len(payload)):
        with pytest.raises(DecodeError):
            decode_classic(kind, payload[:length], *block.shape)


@pytest.mark.parametrize("name", SAMPLES)
def test_trailing_bytes_are_refused(name):
    kind, block = SAMPLES[name]
    with pytest.raises(DecodeError):
        decode_classic(kind, payload_of(kind, block) + b"\0", *block.shape)


@pytest.mark.parametrize("name", SAMPLES)
def test_bit_flips_give_a_decode_error_or_a_block_of_the_right_shape(name):
    kind, block = SAMPLES[name]
    payload = payload_of(kind, block)
    for bit in range(0, len(payload) * 8, max(1, len(payload) * 8 // 300)):
        damaged = bytearray(payload)
        damaged[bit // 8] ^= 1 << (bit % 8)
        decodes_cleanly_or_refuses(kind, bytes(damaged), block.shape)


@pytest.mark.parametrize("kind", list(ClassicKind))
def test_random_payloads_give_a_decode_error_or_a_block_of_the_right_shape(kind):
    rng = np.random.default_rng(int(kind))
    for length in list(range(12)) + [50, 300, 5000]:
        for _ in range(20):
            decodes_cleanly_or_refuses(kind, rng.integers(0, 256, length, dtype=np.uint8).tobytes(), (16, 16, 3))


def test_unknown_kinds_shapes_and_options_are_refused():
    kind, block = SAMPLES["filtered"]
    payload = payload_of(kind, block)
    with pytest.raises(DecodeError):
        decode_classic(99, payload, *block.shape)
    with pytest.raises(DecodeError):
        decode_classic(kind, payload, 48, 48, 5)
    with pytest.raises(DecodeError):
        decode_classic(kind, bytes([payload[0] | 0x80]) + payload[1:], *block.shape)
    with pytest.raises(DecodeError):  # compressor 3 does not exist
        decode_classic(kind, bytes([payload[0] | 0x03]) + payload[1:], *block.shape)
    with pytest.raises(DecodeError):  # the colour transform on a grey block
        decode_classic(kind, bytes([0x04]) + raw_deflate(bytes(17 * 16)), 16, 16, 1)


def test_a_row_filter_type_beyond_paeth_is_refused():
    rows = bytearray(5 * (1 + 4 * 3))
    rows[1 + 4 * 3] = 5  # the second row's filter type
    with pytest.raises(DecodeError):
        decode_classic(ClassicKind.FILTERED, bytes([0]) + raw_deflate(bytes(rows)), 5, 4, 3)


def test_a_colour_index_beyond_the_palette_is_refused():
    n_colours, height, width = 5, 3, 4  # 4-bit indices: 15 is representable but there is no colour 15
    stream = bytes(n_colours * 3) + bytes([0, 0xFF, 0xFF]) * height
    with pytest.raises(DecodeError):
        decode_classic(ClassicKind.PALETTE, bytes([0, n_colours - 1]) + raw_deflate(stream), height, width, 3)


@pytest.mark.parametrize("compressor", COMPRESSORS)
def test_a_decompression_bomb_costs_no_more_memory_than_the_block(compressor):
    payload = bytes([compressor]) + COMPRESSORS[compressor](bytes(10_000_000))
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            decode_classic(ClassicKind.FILTERED, payload, 16, 16, 3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
