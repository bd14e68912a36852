"""A tile's payload: what one tile's ANS words hold, and in which order. This is the one place
that order is written down; the encoder pushes exactly the reverse of what the decoder pops.

What the decoder pops, first to last:

1. the tile's **kind** (one of two symbols): model-coded, or stored. A stored tile then holds its
   bytes (H x W x C uint8, row-major), one uniform 8-bit symbol each, and nothing else: the encoder
   stores a tile when the model would spend more than 8 bits a value (noise, synthetic data).
2. for each plane of a model-coded tile (:mod:`icnn_codec.planes`), the colour plane first, then
   the alpha plane:

   a. the plane's **scale offsets**: one flag symbol, and when it is set one shift of the scale
      index per latent group (:func:`icnn_codec.entropy.decode_scale_offsets`);
   b. the plane's **latent groups** in the flow's decoding order, the top first
      (:meth:`icnn_codec.flow.IntegerFlow.decode`), each as
      :func:`icnn_codec.entropy.decode_latents` pops it;
   c. the plane's **strips**, if any: the right strip, then the bottom one, each its scale offset
      and then its steps (:mod:`icnn_codec.strips`).

The tile's words must then be used up: anything left over is a corrupt stream. Tiles of one size
and mode share network evaluations (batches): :func:`encode_tiles` and :func:`decode_tiles` take
lists of them.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from enum import IntEnum
from typing import Iterable, Sequence

import constriction
import numpy as np
import torch

from . import entropy, strips
from .container import CHANNELS
from .errors import DecodeError
from .planes import exact_input, flow_shape, pad_plane, padded_size, pixels_of, plane_shapes, planes_of
from .priors import ExactParams
from .zoo import Model

BATCH_PIXELS = 2**16  # pixels per network evaluation: bounds working memory (float64 buffers)


class TileKind(IntEnum):
    MODEL = 0
    STORED = 1


_tile_kind = constriction.stream.model.Uniform(len(TileKind))
_byte = constriction.stream.model.Uniform(256)


@dataclass(frozen=True)
class TileShape:
    """What tiles must share to be decoded in one batch."""

    height: int
    width: int
    mode: str


def batches(n_items: int, pixels_each: int, batch_size: int) -> Iterable[slice]:
    """Slices of at most ``batch_size`` items and about :data:`BATCH_PIXELS` pixels each."""
    step = max(1, min(batch_size, BATCH_PIXELS // max(1, pixels_each)))
    return (slice(i, i + step) for i in range(0, n_items, step))


# -- encoding ---------------------------------------------------------------------------------
def encode_tiles(model: Model, tiles: Sequence[np.ndarray], batch_size: int = 64) -> list[np.ndarray]:
    """Each tile's ANS words (uint32). Tiles are H x W x C uint8 blocks of any sizes."""
    coders = [constriction.stream.stack.AnsCoder() for _ in tiles]
    # Alpha planes are pushed first (popped last), so planes are grouped by (push round, size).
    # A plane's strips are pushed just before its flow part, so they are popped just after it.
    rounds: dict[tuple, list[tuple[int, np.ndarray, np.ndarray]]] = defaultdict(list)
    for i, pixels in enumerate(tiles):
        planes = planes_of(pixels)
        for order, plane in enumerate(reversed(planes)):
            flow_h, flow_w = flow_shape(*plane.shape[:2], model.block)
            padded = pad_plane(plane[:flow_h, :flow_w], model.block)
            rounds[(order if len(planes) == 2 else 1, padded.shape)].append((i, padded, plane))
    for key in sorted(rounds, key=lambda k: k[0]):
        idx, padded, planes = zip(*rounds[key])
        for i, plane in zip(idx, planes):
            strips.encode_strips(coders[i], plane, *flow_shape(*plane.shape[:2], model.block), model.tables)
        _push_planes(model, list(padded), [coders[i] for i in idx], batch_size)
    return [_finish(pixels, coder) for pixels, coder in zip(tiles, coders)]


def _push_planes(model: Model, planes: list[np.ndarray], coders: list, batch_size: int) -> None:
    """Push each plane's latent groups onto its coder (the planes share one padded size), then
    its scale offsets."""
    for batch in batches(len(planes), planes[0].shape[0] * planes[0].shape[1], batch_size):
        with torch.no_grad():
            groups = model.flow(exact_input(planes[batch]))
        for b, coder in enumerate(coders[batch]):
            grid = [(g.z[b].numpy().ravel().astype(np.int64), g.mu[b].numpy().ravel(), g.log_scale[b].numpy().ravel().astype(np.int64))
                    for g in groups]
            offsets = entropy.choose_scale_offsets(grid, model.tables)
            for (z, mu16, ls8), offset in zip(grid, offsets):
                entropy.encode_latents(coder, z, ExactParams.from_grid(mu16, ls8 + offset), model.tables)
            entropy.encode_scale_offsets(coder, offsets)


def _finish(pixels: np.ndarray, coder) -> np.ndarray:
    """Push the tile's kind: the model's code, or the stored bytes where those are shorter."""
    coder.encode_reverse(np.array([TileKind.MODEL], dtype=np.int32), _tile_kind)
    words = coder.get_compressed()
    if 4 * len(words) > pixels.size:  # only then can storing be shorter
        stored = constriction.stream.stack.AnsCoder()
        stored.encode_reverse(np.ascontiguousarray(pixels, dtype=np.uint8).ravel().astype(np.int32), _byte)
        stored.encode_reverse(np.array([TileKind.STORED], dtype=np.int32), _tile_kind)
        if len(stored.get_compressed()) < len(words):
            return stored.get_compressed()
    return words


# -- decoding ---------------------------------------------------------------------------------
def tile_kind(words: np.ndarray) -> TileKind:
    """How a tile was coded: the first symbol of its words. DecodeError for words no stream holds."""
    try:
        return _pop_kind(constriction.stream.stack.AnsCoder(np.ascontiguousarray(words)))
    except ValueError as exc:  # the coder refuses words no valid stream holds (e.g. a final zero word)
        raise DecodeError(f"corrupt stream ({exc})") from None


def _pop_kind(coder) -> TileKind:
    return TileKind(int(coder.decode(_tile_kind, 1)[0]))


def decode_tiles(model: Model, shape: TileShape, words: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The pixels (H x W x C uint8) of tiles of one shape, in one batch of network evaluations.
    Any malformed data is a DecodeError."""
    try:
        return _decode_tiles(model, shape, words)
    except DecodeError:
        raise
    except Exception as exc:  # the coder or the exact path met data no valid stream holds
        raise DecodeError(f"corrupt stream ({type(exc).__name__}: {exc})") from exc


def _decode_tiles(model: Model, shape: TileShape, words: Sequence[np.ndarray]) -> list[np.ndarray]:
    coders = [constriction.stream.stack.AnsCoder(np.ascontiguousarray(w)) for w in words]
    kinds = [_pop_kind(c) for c in coders]
    pixels: list = [None] * len(coders)
    values = shape.height * shape.width * CHANNELS[shape.mode]
    for b, kind in enumerate(kinds):
        if kind == TileKind.STORED:
            pixels[b] = coders[b].decode(_byte, values).astype(np.uint8).reshape(shape.height, shape.width, -1)
    coded = [b for b, kind in enumerate(kinds) if kind == TileKind.MODEL]
    if coded:
        planes = [_pop_plane(model, [coders[b] for b in coded], h, w) for h, w in plane_shapes(shape.height, shape.width, shape.mode)]
        for i, b in enumerate(coded):
            pixels[b] = pixels_of([p[i] for p in planes], shape.mode, shape.width)
    if any(not coder.is_empty() for coder in coders):
        raise DecodeError("corrupt stream (data left over after the last symbol)")
    return pixels


def _pop_plane(model: Model, coders: list, height: int, width: int) -> np.ndarray:
    """One plane of every coder's tile (B x height x width x 3 uint8): its scale offsets, the flow
    run backwards over its latent groups, then its strips."""
    n_groups = len(model.flow.group_names())
    # Offsets are listed in encoding order, so popping the last gives the next group decoded.
    offsets = [entropy.decode_scale_offsets(c, n_groups) for c in coders]

    def pop_latents(mu16: torch.Tensor, ls8: torch.Tensor) -> torch.Tensor:
        out = []
        for b, coder in enumerate(coders):
            # Every symbol costs some bits, so a valid stream never runs dry before its last group;
            # a forged one stops here rather than decoding a whole tile from nothing.
            if coder.is_empty():
                raise DecodeError("corrupt stream (tile data ran out)")
            params = ExactParams.from_grid(mu16[b].numpy().ravel(), ls8[b].numpy().ravel().astype(np.int64) + offsets[b].pop())
            out.append(torch.from_numpy(entropy.decode_latents(coder, params, model.tables).astype(np.float64)))
        return torch.stack(out).view(mu16.shape)

    flow_h, flow_w = flow_shape(height, width, model.block)
    hp, wp = padded_size(flow_h, flow_w, model.block)
    x = model.flow.decode(len(coders), hp, wp, pop_latents) + 128.0
    x = x[:, :, :flow_h, :flow_w]
    if float(x.min()) < 0 or float(x.max()) > 255:
        raise DecodeError("corrupt stream (pixel values out of range)")
    flow_parts = x.permute(0, 2, 3, 1).numpy().astype(np.uint8)
    if (flow_h, flow_w) == (height, width):
        return flow_parts
    return np.stack([strips.decode_strips(coder, part, height, width, model.tables) for coder, part in zip(coders, flow_parts)])
