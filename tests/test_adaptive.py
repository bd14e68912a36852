"""The adaptive component: a logistic per context that each plane trains on itself as it is coded."""
import math

import numpy as np
import pytest

from icnn_codec import adaptive
from icnn_codec.mixture import pixel_code_length
from icnn_codec.wavefront import code_length

from test_local_ar import ar_model, push_and_pop  # noqa: F401  (a fixture, and a helper)


def fed(errors: list[int]) -> np.ndarray:
    """One colour's statistics after these errors (1/16 grid) in context 0."""
    stats = adaptive.new_statistics(1)[0, 0]
    for e in errors:
        adaptive.update(stats, 0, e)
    return stats


def test_the_scale_thresholds_are_exact_integer_roots():
    for j, t in enumerate(int(t) for t in adaptive.THRESHOLDS):
        power = 256 + 2 * (adaptive.LS_LOW + j) - 1
        assert t**16 >= 1 << power > (t - 1) ** 16


@pytest.mark.parametrize("size", [0.25, 1, 3, 10, 40])
def test_a_contexts_component_has_the_mean_absolute_error_of_the_errors_it_saw(size):
    """Errors of +-size: a logistic of scale size / (2 ln 2) (to within the 1/8 grid of log2 scales)
    and no bias; errors all +size: a bias of size."""
    e16 = round(16 * size)
    stats = fed([e16, -e16] * 1000)
    expected = 8 * math.log2(max(size / (2 * math.log(2)), 2.0**-3))
    assert abs(adaptive.log2_scale8(stats, 0) - expected) <= 0.5 + 1e-9 + 8 * math.log2(1 + 1 / (2 * e16))
    assert adaptive.bias16(stats, 0) == 0
    assert adaptive.bias16(fed([e16] * 2000), 0) == e16


def test_the_statistics_follow_the_plane_forgetting_what_it_left_behind():
    calm_then_busy = fed([16, -16] * 500 + [320, -320] * 300)
    assert calm_then_busy[0, 2] < adaptive.HALVE_AFTER
    assert adaptive.log2_scale8(calm_then_busy, 0) >= 8 * math.log2(20 / (2 * math.log(2))) - 2


def test_a_fresh_context_is_wide_and_unbiased():
    stats = adaptive.new_statistics(1)[0, 0]
    assert adaptive.bias16(stats, 0) == 0
    assert adaptive.log2_scale8(stats, 0) >= 8 * math.log2(10)


def test_the_context_is_how_busy_the_decoded_neighbours_residuals_are():
    residuals = np.zeros((3, 5), dtype=np.int64)
    assert adaptive.context(residuals, 1, 2) == 0
    residuals[0, 3] = 1  # NE counts once
    assert adaptive.context(residuals, 1, 2) == 1
    residuals[1, 1] = -3  # W counts twice: 1 + 6 = 7
    assert adaptive.context(residuals, 1, 2) == 3
    residuals[1, 3] = 10**6  # to the right on the pixel's own line: not decoded yet, not read
    assert adaptive.context(residuals, 1, 2) == 3
    residuals[0, 2] = 10**6
    assert adaptive.context(residuals, 1, 2) == adaptive.CONTEXTS - 1


def test_a_plane_whose_noise_changes_is_coded_shorter_with_the_component_and_exactly(ar_model):  # noqa: F811
    """Calm at the top, noisy below: the component learns each part as the plane is coded, which the
    network's one adjustment per plane cannot; what the coder writes comes back bit for bit."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:64, 0:64]
    base = np.stack([60 + y + x, 90 + x, 120 + y], axis=2).astype(float)
    noise = np.where(y[..., None] < 32, 1.0, 24.0) * rng.standard_normal((64, 64, 3))
    plane = np.clip(np.round(base + noise), 0, 255).astype(np.uint8)
    wavefront = ar_model.wavefront()
    values, outputs, side, *_ = wavefront.plane_code(plane)
    k = ar_model.local_ar.components
    without = outputs._replace(**{f: getattr(outputs, f)[:, :k] for f in ("mu16", "ls8", "coef", "logits")})
    with_it = pixel_code_length(values, outputs, ar_model.tables).sum()
    assert with_it < 0.97 * pixel_code_length(values, without, ar_model.tables).sum()
    assert side[-1][1] == adaptive.OFFSET_BITS
    coded, decoded = push_and_pop(wavefront, plane[None])
    assert np.array_equal(decoded[0], plane)
    assert abs(8 * sum(map(len, coded)) - code_length(ar_model.local_ar, ar_model.tables, plane[None])) < 16 + 0.01 * with_it
