"""Remainder strips (format 4): the rows and columns beyond the flow's block are coded by
prediction, exactly, and cost less than the padding they replace."""
from __future__ import annotations

from pathlib import Path

import constriction
import numpy as np
import pytest

import icnn_codec as ic
from icnn_codec import payload
from icnn_codec.planes import flow_side
from icnn_codec.priors import LogisticTables
from icnn_codec.strips import STRIP_OFFSETS, _push_strip, decode_strips, encode_strips

PHOTO_FLOW = Path(__file__).resolve().parent.parent / "benchmarks" / "models" / "photo-dc2b.npz"  # the last photo flow


@pytest.fixture(scope="module")
def tables() -> LogisticTables:
    return LogisticTables.build()


@pytest.mark.parametrize("n, block, flow", [
    (481, 16, 480),  # a rest of 1: a strip
    (344, 16, 336),  # a rest of 8, half a block: a strip
    (345, 16, 345),  # a rest of 9: padded (a few padded positions cost less than 9 strip ones)
    (336, 16, 336),  # no rest
    (12, 16, 12),  # shorter than a block: the flow codes it padded
    (36, 8, 32),  # a model of block 8: a rest of up to 4 is a strip
    (37, 8, 37),
])
def test_the_flow_codes_a_side_rounded_down_to_its_block_when_the_rest_is_at_most_half_a_block(n, block, flow):
    assert flow_side(n, block) == flow


@pytest.mark.parametrize("flow_h, flow_w", [(16, 16), (16, 21), (19, 16), (16, 17)])
def test_strips_decode_exactly_whatever_the_pixels(tables, flow_h, flow_w):
    rng = np.random.default_rng(flow_h * 100 + flow_w)
    smooth = np.add.outer(np.arange(21), np.arange(24))[:, :, None] * np.array([3, 5, 7])
    for plane in (rng.integers(0, 256, (21, 24, 3)), np.clip(smooth, 0, 255), np.full((21, 24, 3), 255)):
        plane = plane.astype(np.uint8)[:max(flow_h, 19), :max(flow_w, 21)]
        coder = constriction.stream.stack.AnsCoder()
        encode_strips(coder, plane, flow_h, flow_w, tables)
        decoded = decode_strips(coder, plane[:flow_h, :flow_w], plane.shape[0], plane.shape[1], tables)
        assert np.array_equal(decoded, plane) and coder.is_empty()


def test_the_encoder_sends_the_scale_offset_that_codes_a_strip_shortest(tables, photo):
    known, new = photo[:64, :60].astype(np.int64), photo[:64, 60:64].astype(np.int64)

    def bits(offsets: tuple[int, ...]) -> int:
        coder = constriction.stream.stack.AnsCoder()
        _push_strip(coder, known, new, tables, offsets)
        return coder.num_bits()

    assert bits(STRIP_OFFSETS) == min(bits((offset,)) for offset in STRIP_OFFSETS)


@pytest.mark.parametrize("height, width", [(97, 113), (150, 200)])
def test_photos_whose_sides_leave_short_rests_cost_less_than_when_padded(photo, height, width, monkeypatch):
    pixels = np.ascontiguousarray(photo[:height, :width])
    stream = ic.compress(pixels, model=PHOTO_FLOW)  # a flow: strips are its rests
    assert np.array_equal(ic.decompress(stream), pixels)
    with monkeypatch.context() as m:  # the flow takes whole planes, padded: no strips
        m.setattr(payload, "flow_shape", lambda height, width, block: (height, width))
        padded = ic.compress(pixels, model=PHOTO_FLOW)
    assert len(stream) < 0.98 * len(padded)


@pytest.mark.parametrize("height, width", [(1, 20), (2, 20), (3, 17), (20, 2), (17, 1), (65, 65)])
def test_images_of_a_row_or_a_column_beyond_a_block_round_trip_in_every_mode(height, width):
    rng = np.random.default_rng(height * 1000 + width)
    for channels in (1, 2, 3, 4):
        image = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        image = image[:, :, 0] if channels == 1 else image
        assert np.array_equal(ic.decompress(ic.compress(image)), image)
