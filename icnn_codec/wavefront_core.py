"""The wavefront decoder's loop, compiled: a plane of every tile in a batch, line by line, in one call.

A 256x256 tile is 1,276 lines of at most 64 pixels; each line runs the network, builds each colour's
mixtures and pops them (:mod:`icnn_codec.pointwise`, :mod:`icnn_codec.mixture_core`,
:mod:`icnn_codec.rans`). Driven from Python, the interpreter's share of that is most of the time and
holds the lock that tile threads share; here the whole plane runs without it. Also here: each
colour's means from the model's outputs, the one definition that the encoder
(:class:`icnn_codec.local_ar.ExactOutputs`) uses too.
"""
from __future__ import annotations

import numba
import numpy as np

from . import adaptive, mixture_core, priors, repeat
from .backends import INPUT_LIMIT
from .pointwise import layer, gather

_TILE_SHIFT = 12 - priors.MU_FRAC  # TilePredictor.FRAC - MU_FRAC: its sums onto the means' 1/16 grid
_CENTRE16 = 128 * 2**priors.MU_FRAC


@numba.njit(cache=True, nogil=True, inline="always")
def tile_prediction16(p: int, c: int, tile_sum, tile_colour, centred) -> int:
    """The tile predictor's prediction of colour c of pixel p, centred, on the 1/16 grid: its sum of
    the neighbours and the constant, plus its colour terms on the pixel's earlier colours."""
    total = tile_sum[p, c]
    if c >= 1:
        total += tile_colour[p, 0 if c == 1 else 1] * centred[p, 0]
    if c == 2:
        total += tile_colour[p, 2] * centred[p, 1]
    return total >> _TILE_SHIFT


@numba.njit(cache=True, nogil=True, inline="always")
def colour_mean16(p: int, k: int, c: int, mu16, coef, tile16: int, centred) -> int:
    """Component k's mean of colour c of pixel p on the 1/16 grid: green's moves by (a r) >> 2, blue's
    by (b r + c g) >> 2 (a, b, c on a 1/64 grid), and the tile predictor's prediction."""
    shift = 0
    if c >= 1:
        shift = coef[p, k, 0 if c == 1 else 1] * centred[p, 0]
    if c == 2:
        shift += coef[p, k, 2] * centred[p, 1]
    return mu16[p, k, c] + (shift >> 2) + tile16


@numba.njit(cache=True, nogil=True)
def colour_means(c: int, mu16, coef, tile_sum, tile_colour, centred):
    """Colour c's means (n, K) given the pixels' earlier colours (centred samples (n, >= c))."""
    n, k = mu16.shape[0], mu16.shape[1]
    out = np.empty((n, k), dtype=np.int64)
    for p in range(n):
        tile16 = tile_prediction16(p, c, tile_sum, tile_colour, centred)
        for j in range(k):
            out[p, j] = colour_mean16(p, j, c, mu16, coef, tile16, centred)
    return out


@numba.njit(cache=True, nogil=True)
def tile_predictions16(c: int, tile_sum, tile_colour, centred):
    """Every pixel's tile prediction of colour c (n,)."""
    out = np.empty(tile_sum.shape[0], dtype=np.int64)
    for p in range(tile_sum.shape[0]):
        out[p] = tile_prediction16(p, c, tile_sum, tile_colour, centred)
    return out


@numba.njit(cache=True, nogil=True)
def _colour_rows(c: int, values, centred, mu16, ls8, coef, tile_sum, tile_colour, scale, shift, half_widths,
                 table_offsets, prefix):
    """Colour c's components' table rows (n, K, 8) given the earlier colours, their scales moved by
    ``scale[c]`` and means by ``shift[c]``, and each one's count of the sample's value (n, K)."""
    n, k = mu16.shape[0], mu16.shape[1]
    means = colour_means(c, mu16, coef, tile_sum, tile_colour, centred) + shift[c]
    scales = np.empty((n, k), dtype=np.int64)
    for p in range(n):
        for j in range(k):
            scales[p, j] = ls8[p, j, c] + scale[c]
    components = mixture_core.rows(means, scales, half_widths, table_offsets, prefix)
    return components, mixture_core.value_counts_of(np.ascontiguousarray(values[:, c]), components, prefix)


@numba.njit(cache=True, nogil=True, inline="always")
def _sample_bits(p: int, weights, components, counts, prefix) -> float:
    """Bits of sample p's value under its mixture: -log2 of the value's count over the total."""
    return (np.log2(mixture_core.mixture_below(p, 256, weights, components, prefix))
            - np.log2(mixture_core.value_mass(p, weights, counts)))


@numba.njit(cache=True, nogil=True)
def code_lengths(values, mu16, ls8, coef, logits, tile_sum, tile_colour, scale, shift, weight_bits: int, half_widths,
                 table_offsets, prefix):
    """Bits (n, 3) of each sample of pixels ``values`` (n, 3) under the model's outputs (as
    :class:`icnn_codec.local_ar.ExactOutputs` holds them), every colour's log2 scales moved by
    ``scale[c]`` and its means by ``shift[c]``: each colour in coding order, the mixture's weights
    moving to the components that gave the earlier colours mass. What the coder spends, up to its
    own quantisation of the counts (windows do not change a value's share), without the repeat
    components (:func:`plane_code_lengths` has them)."""
    n = mu16.shape[0]
    centred = values - 128
    weights = mixture_core.component_weights(logits)
    bits = np.empty((n, 3))
    for c in range(3):
        components, counts = _colour_rows(c, values, centred, mu16, ls8, coef, tile_sum, tile_colour, scale, shift,
                                          half_widths, table_offsets, prefix)
        for p in range(n):
            bits[p, c] = _sample_bits(p, weights, components, counts, prefix)
        weights = mixture_core.posterior(weights, counts, weight_bits)
    return bits


@numba.njit(cache=True, nogil=True)
def _repeat_colour(c: int, canvas, centred, values, weights, counts, shares, positions, line_starts, width: int,
                   half_widths, table_offsets, prefix):
    """Colour c's repeat components (:mod:`icnn_codec.repeat`) over a whole plane (raster order), found
    line by line as the decoder finds them, the shares (colours, contexts, sources) moving as they go:
    their means (1/16 grid), weights, table rows and counts of the values ((n, S), (n, S), (n, S, 8),
    (n, S)). ``weights`` and ``counts``: the model's components' (n, K) and their counts of the values."""
    n, sources = values.shape[0], len(repeat.SOURCES)
    repeat16 = np.empty((n, sources), dtype=np.int64)
    repeat_weight = np.empty((n, sources), dtype=np.int64)
    contexts = np.empty(n, dtype=np.int64)
    own = np.zeros(sources, dtype=np.int64)
    for p in range(n):
        y, x = p // width + 1, p % width + 1
        for j in range(sources):
            repeat16[p, j] = repeat.mean16(canvas, c, y, x, centred[p, c - 1], j)
        contexts[p] = repeat.context(canvas, c, y, x)
    rows = mixture_core.rows(repeat16, np.full((n, sources), repeat.LOG2_SCALE8, dtype=np.int64), half_widths,
                             table_offsets, prefix)
    own_counts = mixture_core.value_counts_of(np.ascontiguousarray(values[:, c]), rows, prefix)
    for t in range(len(line_starts) - 1):
        line = positions[line_starts[t] : line_starts[t + 1]]
        for p in line:  # from the shares as the lines before left them
            others = weights[p].sum()
            for j in range(sources):
                repeat_weight[p, j] = repeat.weight(shares[c, contexts[p]], j, others)
        for p in line:
            mass = mixture_core.value_mass(p, weights, counts)
            for j in range(sources):
                own[j] = repeat_weight[p, j] * own_counts[p, j]
                mass += own[j]
            repeat.update(shares[c, contexts[p]], own, mass)
    return repeat16, repeat_weight, rows, own_counts


@numba.njit(cache=True, nogil=True)
def _plane_canvas(centred, width: int):
    """A plane's centred samples (n, 3, raster order) on a canvas (3, H + 1, W + 2) with a row of zeros
    above and a column either side, as :mod:`icnn_codec.repeat` reads its neighbours."""
    n = centred.shape[0]
    canvas = np.zeros((3, n // width + 1, width + 2), dtype=np.int64)
    for p in range(n):
        for c in range(3):
            canvas[c, p // width + 1, p % width + 1] = centred[p, c]
    return canvas


@numba.njit(cache=True, nogil=True)
def plane_code_lengths(values, mu16, ls8, coef, logits, tile_sum, tile_colour, positions, line_starts, width: int,
                       weight_bits: int, half_widths, table_offsets, prefix):
    """A whole plane's pixels (n, 3, raster order) as the coder codes them, with the repeat components:
    each sample's bits (n, 3), and the components' means (on the 1/16 grid) and weights (n, 3,
    len(repeat.SOURCES); red's zero). The outputs are the plane's, adjusted."""
    n, sources = mu16.shape[0], len(repeat.SOURCES)
    centred = values - 128
    canvas = _plane_canvas(centred, width)
    weights = mixture_core.component_weights(logits)
    bits = np.zeros((n, 3))
    repeat16 = np.zeros((n, 3, sources), dtype=np.int64)
    repeat_weight = np.zeros((n, 3, sources), dtype=np.int64)
    shares = repeat.new_shares(1)[0]
    none = np.zeros(3, dtype=np.int64)
    for c in range(3):
        components, counts = _colour_rows(c, values, centred, mu16, ls8, coef, tile_sum, tile_colour, none, none,
                                          half_widths, table_offsets, prefix)
        if c == 0:
            for p in range(n):
                bits[p, c] = _sample_bits(p, weights, components, counts, prefix)
        else:
            means, own_weights, rows, own_counts = _repeat_colour(c, canvas, centred, values, weights, counts, shares,
                                                                  positions, line_starts, width, half_widths,
                                                                  table_offsets, prefix)
            repeat16[:, c], repeat_weight[:, c] = means, own_weights
            for p in range(n):
                total = mixture_core.mixture_below(p, 256, weights, components, prefix)
                mass = mixture_core.value_mass(p, weights, counts)
                for j in range(sources):
                    total += own_weights[p, j] * mixture_core.component_below(256, rows, p, j, prefix)
                    mass += own_weights[p, j] * own_counts[p, j]
                bits[p, c] = np.log2(total) - np.log2(mass)
        weights = mixture_core.posterior(weights, counts, weight_bits)
    return bits, repeat16, repeat_weight


@numba.njit(cache=True, nogil=True)
def plane_symbols(values, mu16, ls8, coef, logits, tile_sum, tile_colour, positions, line_starts, width: int,
                  weight_bits: int, narrow_part: int, narrow_share: float, half_widths, table_offsets, prefix):
    """What the coder codes of a whole plane's pixels (n, 3, raster order), with the repeat components:
    each symbol's start and frequency, in the order :func:`decode_plane` pops them (each line, each
    colour: the window symbols of the line's pixels, then the values of those outside their windows;
    :func:`icnn_codec.mixture_core.pop_colour`). The encoder knows every pixel: each colour's
    mixtures are built for the whole plane at once."""
    n, k, sources = mu16.shape[0], mu16.shape[1], len(repeat.SOURCES)
    centred = values - 128
    canvas = _plane_canvas(centred, width)
    weights = mixture_core.component_weights(logits)
    shares = repeat.new_shares(1)[0]
    none = np.zeros(3, dtype=np.int64)
    sizes = line_starts[1:] - line_starts[:-1]
    starts, freqs = np.empty((n, 3), dtype=np.int64), np.empty((n, 3), dtype=np.int64)  # in line order
    outside_starts, outside_freqs = np.empty((n, 3), dtype=np.int64), np.empty((n, 3), dtype=np.int64)
    for c in range(3):
        components, counts = _colour_rows(c, values, centred, mu16, ls8, coef, tile_sum, tile_colour, none, none,
                                          half_widths, table_offsets, prefix)
        kk = k if c == 0 else k + sources  # the repeat components, last
        all_rows = np.empty((n, kk, 8), dtype=np.int64)
        all_weights = np.empty((n, kk), dtype=np.int64)
        own_weights, rows = np.empty((n, 0), dtype=np.int64), np.empty((n, 0, 8), dtype=np.int64)
        if c > 0:
            _, own_weights, rows, _ = _repeat_colour(c, canvas, centred, values, weights, counts, shares, positions,
                                                  line_starts, width, half_widths, table_offsets, prefix)
        for i in range(n):
            p = positions[i]
            all_rows[i, :k], all_weights[i, :k] = components[p], weights[p]
            all_rows[i, k:], all_weights[i, k:] = rows[p], own_weights[p]
        low, reach = mixture_core.windows(all_weights, all_rows, sizes, narrow_part, narrow_share)
        coded = mixture_core.colour_symbols(np.ascontiguousarray(values[positions, c]), all_weights, all_rows, low,
                                            reach, prefix)
        starts[:, c], freqs[:, c], outside_starts[:, c], outside_freqs[:, c] = coded
        weights = mixture_core.posterior(weights, counts, weight_bits)
    out_starts, out_freqs = np.empty(6 * n, dtype=np.int64), np.empty(6 * n, dtype=np.int64)
    m = 0
    for t in range(len(sizes)):
        for c in range(3):
            for i in range(line_starts[t], line_starts[t + 1]):
                out_starts[m], out_freqs[m] = starts[i, c], freqs[i, c]
                m += 1
            for i in range(line_starts[t], line_starts[t + 1]):
                if outside_freqs[i, c]:
                    out_starts[m], out_freqs[m] = outside_starts[i, c], outside_freqs[i, c]
                    m += 1
    return out_starts[:m], out_freqs[:m]


@numba.njit(cache=True, nogil=True)
def decode_plane(planes, positions, line_starts, width: int, r: int, dy, dx, first, hidden, head, linear, components: int,
                 residual_context: bool, tiles: bool, pdy, pdx, near_weights, constants, colour, thresholds, scales, shifts,
                 adaptive_offsets, narrow_part: int, narrow_share: float, weight_bits: int, half_widths, table_offsets,
                 prefix, words, ends, states, ats) -> None:
    """Decode one plane of each of B tiles into ``planes`` (B, 3 or 6, H + r, W + 2 r): centred samples
    with r columns of zeros either side and r rows above, then (with ``residual_context``) their
    residuals under the tile predictor (or else the linear one). The lines' raster positions are
    ``positions[line_starts[t] : line_starts[t + 1]]``. ``first``, ``head``, ``linear``: (weights
    transposed, bias, scale, lo, hi) of a pointwise layer; ``hidden``: the same stacked, one per
    layer. With ``tiles``: each tile's predictor's neighbour taps (pdy, pdx), and per class its
    coefficients on them (B, classes, taps, 3), its constant terms and colour coefficients (B,
    classes, 3); with two classes, each tile's activity threshold between them (B,). ``scales``, ``shifts``:
    each tile's scale offset and mean shift of each colour (B, 3). ``adaptive_offsets``: each tile's
    logit offset of :mod:`icnn_codec.adaptive`'s component (B,), or an empty array for a model without
    one (it needs the tile predictor's residuals). The streams as
    :func:`icnn_codec.mixture_core.pop_colour` reads them."""
    b, k = planes.shape[0], components
    taps = len(dy)
    with_adaptive = len(adaptive_offsets) > 0
    kk = k + 1 if with_adaptive else k  # the adaptive component is the last
    stats = adaptive.new_statistics(b)
    shares = repeat.new_shares(b)
    sources = len(repeat.SOURCES)
    own = np.zeros(sources, dtype=np.int64)
    for t in range(len(line_starts) - 1):
        line = positions[line_starts[t] : line_starts[t + 1]]
        n = len(line)
        ys, xs = line // width, line % width
        inputs = gather(planes, ys, xs, dy, dx, INPUT_LIMIT)
        h = layer(inputs, first[0], first[1], first[2], first[3], first[4])
        for d in range(hidden[0].shape[0]):
            h = layer(h, hidden[0][d], hidden[1][d], hidden[2][d], hidden[3][d], hidden[4][d])
        out = layer(h.astype(np.float64), head[0], head[1], head[2], head[3], head[4]).astype(np.int64)
        lin = layer(inputs[:, : 3 * taps].astype(np.float64), linear[0], linear[1], linear[2], linear[3],
                     linear[4]).astype(np.int64)
        count = b * n
        tile_sum = np.zeros((count, 3), dtype=np.int64)
        tile_colour = np.zeros((count, 3), dtype=np.int64)
        if tiles:
            near = gather(planes[:, :3], ys, xs, pdy, pdx, INPUT_LIMIT)
            for p in range(count):
                i = p // n
                cls = 0
                if near_weights.shape[1] > 1:  # two classes: by the causal activity (TilePredictor.activity)
                    y, x = ys[p % n] + r, xs[p % n] + r
                    activity = 0
                    for c in range(3):
                        north, west = planes[i, c, y - 1, x], planes[i, c, y, x - 1]
                        north_west, north_east = planes[i, c, y - 1, x - 1], planes[i, c, y - 1, x + 1]
                        activity += abs(north - north_west) + abs(west - north_west) + abs(north_east - north)
                    cls = 1 if activity > thresholds[i] else 0
                for c in range(3):
                    total = 0.0  # exact: integers far below 2**53
                    for j in range(near.shape[1]):
                        total += near[p, j] * near_weights[i, cls, j, c]
                    tile_sum[p, c] = np.int64(total) + constants[i, cls, c]
                    tile_colour[p, c] = colour[i, cls, c]
        # the head's outputs as prior parameters (as LocalAR.outputs_of): per component, three means,
        # three log2 scales, three colour coefficients; then the weights' logits
        mu16 = np.empty((count, kk, 3), dtype=np.int64)
        ls8 = np.empty((3, count, kk), dtype=np.int64)  # a colour's scales contiguous
        coef = np.zeros((count, kk, 3), dtype=np.int64)
        logits = np.zeros((count, kk), dtype=np.int64)
        for p in range(count):
            for j in range(k):
                for c in range(3):
                    mu16[p, j, c] = lin[p, c] + out[p, 9 * j + c] + _CENTRE16 + shifts[p // n, c]
                    ls8[c, p, j] = out[p, 9 * j + 3 + c] + scales[p // n, c]
                    coef[p, j, c] = out[p, 9 * j + 6 + c]
                if k > 1:
                    logits[p, j] = out[p, 9 * k + j]
            if with_adaptive:
                logits[p, k] = logits[p, :k].max() + adaptive_offsets[p // n]
        weights = mixture_core.component_weights(logits)
        centred = np.zeros((count, 3), dtype=np.int64)
        sizes = np.full(b, n)
        contexts = np.zeros(count, dtype=np.int64)
        repeat_contexts = np.zeros(count, dtype=np.int64)
        for c in range(3):
            if with_adaptive:  # from the statistics as the lines before left them
                for p in range(count):
                    i = p // n
                    q = adaptive.context(planes[i, 3 + c], ys[p % n] + r, xs[p % n] + r)
                    contexts[p] = q
                    mu16[p, k, c] = _CENTRE16 + adaptive.bias16(stats[i, c], q)
                    ls8[c, p, k] = adaptive.log2_scale8(stats[i, c], q)
            means = colour_means(c, mu16, coef, tile_sum, tile_colour, centred)
            if c == 0:
                values, counts = mixture_core.pop_colour(means, ls8[c], weights, sizes, narrow_part, narrow_share,
                                                         half_widths, table_offsets, prefix, words, ends, states, ats)
            else:  # with the repeat components, last, from the shares as the lines before left them
                all_means = np.empty((count, kk + sources), dtype=np.int64)
                all_ls8 = np.full((count, kk + sources), repeat.LOG2_SCALE8, dtype=np.int64)
                all_weights = np.empty((count, kk + sources), dtype=np.int64)
                for p in range(count):
                    i, y, x = p // n, ys[p % n] + r, xs[p % n] + r
                    all_means[p, :kk], all_ls8[p, :kk], all_weights[p, :kk] = means[p], ls8[c, p], weights[p]
                    q = repeat.context(planes[i], c, y, x)
                    repeat_contexts[p] = q
                    others = weights[p].sum()
                    for j in range(sources):
                        all_means[p, kk + j] = repeat.mean16(planes[i], c, y, x, centred[p, c - 1], j)
                        all_weights[p, kk + j] = repeat.weight(shares[i, c, q], j, others)
                values, counts = mixture_core.pop_colour(all_means, all_ls8, all_weights, sizes, narrow_part,
                                                         narrow_share, half_widths, table_offsets, prefix, words, ends,
                                                         states, ats)
                for p in range(count):
                    for j in range(sources):
                        own[j] = all_weights[p, kk + j] * counts[p, kk + j]
                    repeat.update(shares[p // n, c, repeat_contexts[p]], own, mixture_core.value_mass(p, all_weights, counts))
                counts = np.ascontiguousarray(counts[:, :kk])
            weights = mixture_core.posterior(weights, counts, weight_bits)
            for p in range(count):
                i, y, x = p // n, ys[p % n] + r, xs[p % n] + r
                centred[p, c] = values[p] - 128
                planes[i, c, y, x] = centred[p, c]
                if residual_context:  # under the tile predictor, or else the linear one
                    predicted16 = tile_prediction16(p, c, tile_sum, tile_colour, centred) if tiles else lin[p, c]
                    planes[i, 3 + c, y, x] = centred[p, c] - (predicted16 >> priors.MU_FRAC)
                    if with_adaptive:
                        adaptive.update(stats[i, c], contexts[p], 16 * centred[p, c] - predicted16)
