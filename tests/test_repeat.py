"""The repeat components: green and blue as a neighbour had them relative to the colour before, each
with a share of the mixture that the plane learns as it is coded."""
import numpy as np

from icnn_codec import repeat
from icnn_codec.mixture import pixel_code_length
from icnn_codec.wavefront import code_length

from test_local_ar import ar_model, push_and_pop  # noqa: F401  (a fixture, and a helper)


def canvas_of(pixels: np.ndarray) -> np.ndarray:
    """The centred samples of an (H, W, 3) block as a canvas (colours first), a zero row above and a
    zero column either side, as the encoder lays them out."""
    out = np.zeros((3, pixels.shape[0] + 1, pixels.shape[1] + 2), dtype=np.int64)
    out[:, 1:, 1:-1] = pixels.transpose(2, 0, 1).astype(np.int64) - 128
    return out


def test_each_component_repeats_its_neighbours_difference_on_this_pixels_earlier_colour():
    """Component 0 repeats the left neighbour, component 1 the upper one."""
    block = np.array([[[60, 80, 70], [0, 0, 0]],
                      [[100, 130, 90], [107, 0, 0]]], dtype=np.uint8)  # W: green = red + 30, blue = green - 40
    canvas = canvas_of(block)
    assert repeat.SOURCES == ((0, -1), (-1, 0))
    assert repeat.mean16(canvas, 1, 2, 2, 107 - 128, 0) == 16 * 137
    assert repeat.mean16(canvas, 2, 2, 2, 200 - 128, 0) == 16 * 160
    assert repeat.mean16(canvas, 1, 2, 2, 250 - 128, 0) == 16 * 255  # within 0..255
    assert repeat.mean16(canvas, 1, 2, 1, 107 - 128, 0) == 16 * 107  # left of the tile: a difference of zero
    assert repeat.mean16(canvas, 1, 2, 1, 107 - 128, 1) == 16 * 127  # N: green = red + 20


def test_the_context_is_how_much_the_neighbours_colour_differences_vary():
    flat = canvas_of(np.stack([np.full((3, 4), 50), np.full((3, 4), 60), np.full((3, 4), 70)], axis=2))
    assert repeat.context(flat, 1, 2, 2) == 0 and repeat.context(flat, 2, 2, 2) == 0
    flat[1, 1, 3] += 4  # NE's green: |NE - N| = 4 for green, and blue - green moves by 4 as well
    assert repeat.context(flat, 1, 2, 2) == 4 and repeat.context(flat, 2, 2, 2) == 4
    flat[1, 1, 3] += 100
    assert repeat.context(flat, 1, 2, 2) == repeat.CONTEXTS - 1


def test_shares_move_towards_each_components_part_of_each_coded_value_and_stay_within_bounds():
    shares = repeat.new_shares(1)[0, 1, 3]
    for _ in range(400):  # component 0 held all of every value's mass
        repeat.update(shares, np.array([2**45, 0]), 2**45)
    assert shares[0] == repeat.SHARE_HIGH - repeat.SHARE_LOW and shares[1] == repeat.SHARE_LOW
    for _ in range(400):  # and then none of it, component 1 half
        repeat.update(shares, np.array([0, 2**29]), 2**30)
    assert shares[0] == repeat.SHARE_LOW and abs(shares[1] - 2**15) < 64
    before = shares.copy()
    repeat.update(shares, np.array([2**29, 2**29]), 2**30)  # half each: 1/32 of the way to 2**15
    assert shares[0] == before[0] + (2**15 - before[0]) // 32 and shares[1] == before[1]
    assert repeat.weight(np.array([2**14, 2**15]), 0, 1000) == 1000  # a quarter of the mixture, the others a quarter
    assert repeat.weight(np.array([repeat.SHARE_HIGH - 64, 64]), 0, 1000) == 1000 * 64448 // 1024


def test_where_the_colour_differences_repeat_the_components_take_over_and_the_plane_comes_back(ar_model):  # noqa: F811
    """A noisy red whose green and blue keep their differences to it along each row: the network and
    the tile predictor spread green's and blue's mass, the repeat components learn to put it on one
    value; green and blue cost little more than half as much as without it, and the plane decodes
    exactly."""
    rng = np.random.default_rng(4)
    red = np.clip(np.round(128 + 40 * rng.standard_normal((48, 64))), 0, 200).astype(np.int64)
    offsets = np.repeat(rng.integers(0, 40, (48, 1)), 64, axis=1)
    plane = np.stack([red, red + offsets, red + offsets // 2], axis=2).astype(np.uint8)
    code = ar_model.wavefront().plane_code(plane)
    assert (code.repeat_weight[:, 0] == 0).all() and (code.repeat_weight[:, 1:] > 0).all()
    assert code.repeat_weight.shape == (48 * 64, 3, len(repeat.SOURCES))
    without = pixel_code_length(code.values, code.outputs, ar_model.tables)
    assert np.allclose(code.bits[:, 0], without[:, 0])
    assert code.bits[:, 1:].sum() < 0.6 * without[:, 1:].sum()
    coded, decoded = push_and_pop(ar_model.wavefront(), plane[None])
    assert np.array_equal(decoded[0], plane)
    assert abs(8 * sum(map(len, coded)) - code_length(ar_model.local_ar, ar_model.tables, plane[None])) < 16 + 0.01 * code.bits.sum()
