"""A tile's payload: what one tile holds, and in which order. This is the one place that says so.

Every tile has a *kind* (a byte in the container) and a payload:

* ``MODEL``: the model's code, ANS words (uint32, little-endian). Under a local AR, the words of
  :mod:`icnn_codec.rans`'s coder: each plane of the tile (:mod:`icnn_codec.planes`), the colour
  plane first, then the alpha plane, as :mod:`icnn_codec.wavefront` codes it: its tile predictor,
  its scale offset, its pixels line by line. Under a flow, the words of constriction's coder; what
  the decoder pops, first to last, for each plane:

  a. for a model with a colour stage, the plane's **colour mode**: one binary symbol, 1 where the
     plane was coded in its own colours, the colour stage skipped (the encoder keeps the mode that
     codes shorter, judged on a central part of a large plane);
  b. the plane's **scale offsets**: one flag symbol, and when it is set one shift of the scale
     index per latent group (:func:`icnn_codec.entropy.decode_scale_offsets`);
  c. the plane's **latent groups** in the flow's decoding order, the top first
     (:meth:`icnn_codec.flow.IntegerFlow.decode`), each as :func:`icnn_codec.entropy.decode_latents`
     pops it;
  d. the plane's **strips**, if any: the right strip, then the bottom one, each its scale offset
     and then its steps (:mod:`icnn_codec.strips`).

  The encoder pushes exactly the reverse, and the words must then be used up.
* ``RAW``, ``FLAT``, ``PALETTE``, ``FILTERED``: the classic codings of :mod:`icnn_codec.classic`,
  which win on graphics (few colours, flat areas, sharp edges) where the model loses.
* ``SPLIT16``: a tile of 16-bit samples, as two 8-bit tiles: the length of the first part
  (varint), then the high bytes' kind and payload (any 8-bit kind), then the low bytes' kind and
  payload (a classic kind: low bytes are mostly noise to the model).

The encoder codes each 8-bit tile both ways and keeps the shorter: a tile of few colours first
classically, and through the model only when that costs more than :data:`MODEL_WORTH_TRYING` bits
a value; any other tile through the model and classically (the classic coders' slow trials
skipped where they cannot beat the model: a smooth gradient has many colours and yet is a
classic coder's, not the model's). Tiles of one
size and mode share network evaluations (batches): :func:`encode_tiles` and :func:`decode_tiles`
take lists of them.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from enum import IntEnum
from typing import Iterable, Sequence

import constriction
import numpy as np
import torch

from . import classic, entropy, strips
from .classic import ClassicKind
from .container import CHANNELS, read_varint, varint
from .errors import DecodeError
from .planes import exact_input, flow_shape, pad_plane, padded_size, pixels_of, plane_shapes, planes_of
from .priors import ExactParams
from .zoo import Model

BATCH_PIXELS = 2**16  # pixels per network evaluation: bounds working memory (float64 buffers)
# A local AR's decoder runs its networks a line at a time: many tiles share each of its many small
# evaluations (its working memory is a few canvases a tile).
LOCAL_AR_BATCH_PIXELS = 2**21
# Graphics have few distinct pixels: their tiles are coded classically first, and through the model
# only when that costs more than MODEL_WORTH_TRYING bits a value.
FEW_COLOURS = 256
MODEL_WORTH_TRYING = 1.0
_colour_mode = constriction.stream.model.Uniform(2)  # 1: the plane skipped the colour stage
PROBE_FROM = 128 * 128  # planes of more pixels choose their colour mode from a central probe


class TileKind(IntEnum):
    """A tile's kind byte (part of the stream format)."""

    MODEL = 0
    RAW = 1
    FLAT = 2
    PALETTE = 3
    FILTERED = 4
    SPLIT16 = 5


_CLASSIC = {TileKind.RAW: ClassicKind.RAW, TileKind.FLAT: ClassicKind.FLAT, TileKind.PALETTE: ClassicKind.PALETTE,
            TileKind.FILTERED: ClassicKind.FILTERED}
_OF_CLASSIC = {v: k for k, v in _CLASSIC.items()}


@dataclass(frozen=True)
class TileShape:
    """What tiles must share to be decoded in one batch."""

    height: int
    width: int
    mode: str  # a container mode: L, LA, RGB, RGBA or their 16-bit forms

    @property
    def channels(self) -> int:
        return CHANNELS[self.mode]

    @property
    def mode8(self) -> str:
        """The mode of the tile's 8-bit parts."""
        return self.mode[:-2] if self.mode.endswith("16") else self.mode


@dataclass(frozen=True)
class CodedTile:
    kind: TileKind
    payload: bytes


def batch_pixels(model: Model | None) -> int:
    """The pixels one batch of a model's tiles holds, about."""
    return LOCAL_AR_BATCH_PIXELS if model is not None and model.local_ar is not None else BATCH_PIXELS


def batches(n_items: int, pixels_each: int, batch_size: int, pixels: int = BATCH_PIXELS) -> Iterable[slice]:
    """Slices of at most ``batch_size`` items and about ``pixels`` pixels each."""
    step = max(1, min(batch_size, pixels // max(1, pixels_each)))
    return (slice(i, i + step) for i in range(0, n_items, step))


# -- encoding ---------------------------------------------------------------------------------
def encode_tiles(model: Model, tiles: Sequence[np.ndarray], batch_size: int = 64) -> list[CodedTile]:
    """Each tile's kind and payload. Tiles are H x W x C blocks of any sizes, uint8 or uint16."""
    parts: list[np.ndarray] = []  # the 8-bit blocks that may go through the model
    for pixels in tiles:
        parts.append((pixels >> 8).astype(np.uint8) if pixels.dtype == np.uint16 else pixels)
    coded = _encode_8bit(model, parts, batch_size)
    out = []
    for pixels, high in zip(tiles, coded):
        if pixels.dtype != np.uint16:
            out.append(high)
            continue
        low_kind, low_payload = classic.encode_classic((pixels & 0xFF).astype(np.uint8))
        first = bytes([high.kind]) + high.payload
        out.append(CodedTile(TileKind.SPLIT16, varint(len(first)) + first + bytes([_OF_CLASSIC[low_kind]]) + low_payload))
    return out


def _encode_8bit(model: Model, tiles: Sequence[np.ndarray], batch_size: int) -> list[CodedTile]:
    """The shorter of the model's and the classic coders' coding of each 8-bit tile."""
    chosen: list[CodedTile | None] = [None] * len(tiles)
    classic_first: dict[int, CodedTile] = {}  # graphics: coded classically before the model
    for i, pixels in enumerate(tiles):
        if FEW_COLOURS and classic.has_few_colours(pixels, FEW_COLOURS):
            kind, payload = classic.encode_classic(pixels)
            classic_first[i] = CodedTile(_OF_CLASSIC[kind], payload)
            if 8 * len(payload) <= MODEL_WORTH_TRYING * pixels.size:
                chosen[i] = classic_first[i]
    todo = [i for i, c in enumerate(chosen) if c is None]
    for i, words in zip(todo, _model_words(model, [tiles[i] for i in todo], batch_size)):
        coded = CodedTile(TileKind.MODEL, words.astype("<u4").tobytes())
        if i in classic_first:
            other = classic_first[i]
        else:
            kind, payload = classic.encode_classic(tiles[i], size_to_beat=len(coded.payload))
            other = CodedTile(_OF_CLASSIC[kind], payload)
        chosen[i] = other if len(other.payload) < len(coded.payload) else coded
    return chosen


def _model_words(model: Model, tiles: Sequence[np.ndarray], batch_size: int) -> list[np.ndarray]:
    """Each tile's ANS words under the model."""
    if model.local_ar is not None:
        return [model.wavefront().encode(planes_of(pixels)) for pixels in tiles]
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
    return [coder.get_compressed() for coder in coders]


def _push_planes(model: Model, planes: list[np.ndarray], coders: list, batch_size: int) -> None:
    """Push each plane's latent groups onto its coder (the planes share one padded size), then
    its scale offsets, then (with a colour stage) its colour mode."""
    area = planes[0].shape[0] * planes[0].shape[1]
    with torch.no_grad():
        probed = _probed_colour_modes(model, planes, batch_size) if model.flow.colour is not None and area > PROBE_FROM else None
    for batch in batches(len(planes), area, batch_size):
        with torch.no_grad():
            if model.flow.colour is None:
                chosen = [(code, None) for code in _plane_codes(model, model.flow(exact_input(planes[batch])))]
            elif probed is not None:
                plain = probed[batch]
                chosen = list(zip(_plane_codes(model, model.flow(exact_input(planes[batch]), torch.tensor(plain))), plain))
            else:
                chosen = _codes_in_shorter_colour_mode(model, np.stack(planes[batch]))
        for coder, ((_, grid, offsets), plain) in zip(coders[batch], chosen):
            for (z, mu16, ls8), offset in zip(grid, offsets):
                entropy.encode_latents(coder, z, ExactParams.from_grid(mu16, ls8 + offset), model.tables)
            entropy.encode_scale_offsets(coder, offsets)
            if plain is not None:
                coder.encode_reverse(np.array([int(plain)], dtype=np.int32), _colour_mode)


PlaneCode = tuple  # (code length or None, [(z, mu16, ls8) of every latent group, flat int64], scale offsets)


def _plane_codes(model: Model, groups: list, measured: bool = False) -> list[PlaneCode]:
    """Each plane's groups, their scale offsets and (``measured``) what they cost (2**-COST_FRAC bits)."""
    codes = []
    for b in range(groups[0].z.shape[0]):
        grid = [(g.z[b].numpy().ravel().astype(np.int64), g.mu[b].numpy().ravel(),
                 g.log_scale[b].numpy().ravel().astype(np.int64)) for g in groups]
        offsets = entropy.choose_scale_offsets(grid, model.tables)
        codes.append((entropy.coded_length(grid, offsets, model.tables) if measured else None, grid, offsets))
    return codes


def _codes_in_both_colour_modes(model: Model, planes: np.ndarray) -> tuple[list[PlaneCode], list[PlaneCode]]:
    """Each plane's measured code after the colour stage and in its own colours: one batch of
    network evaluations (a small plane's network time is mostly per-call overhead)."""
    n = planes.shape[0]
    both = _plane_codes(model, model.flow(exact_input(np.concatenate([planes, planes])), torch.arange(2 * n) >= n),
                        measured=True)
    return both[:n], both[n:]


def _codes_in_shorter_colour_mode(model: Model, planes: np.ndarray) -> list[tuple[PlaneCode, bool]]:
    """Each plane's code in the colour mode that codes it shorter (ties: the colour stage), and whether
    that mode skips the stage."""
    coloured, unmixed = _codes_in_both_colour_modes(model, planes)
    return [(own, True) if own[0] < stage[0] else (stage, False) for stage, own in zip(coloured, unmixed)]


def _probed_colour_modes(model: Model, planes: list[np.ndarray], batch_size: int) -> list[bool]:
    """Whether each plane (all of one size, more than PROBE_FROM pixels) codes shorter in its own
    colours, judged on a central probe a quarter of its height and width: on v2b's crops that agreed
    with the whole plane's choice almost always, for an eighth of the cost of coding every plane
    twice. The probes of many planes share a batch, as small planes do."""
    h, w = planes[0].shape[:2]
    ph, pw = (max(model.block, side // 4 // model.block * model.block) for side in (h, w))
    probes = [p[(h - ph) // 2 : (h - ph) // 2 + ph, (w - pw) // 2 : (w - pw) // 2 + pw] for p in planes]
    plain: list[bool] = []
    for batch in batches(len(probes), 2 * ph * pw, batch_size):
        plain += [p for _, p in _codes_in_shorter_colour_mode(model, np.stack(probes[batch]))]
    return plain


# -- decoding ---------------------------------------------------------------------------------
def decode_tiles(model: Model, shape: TileShape, tiles: Sequence[CodedTile]) -> list[np.ndarray]:
    """The pixels (H x W x C, uint8 or uint16 as the mode says) of tiles of one shape, the
    model-coded ones in one batch of network evaluations. Any malformed data is a DecodeError."""
    try:
        return _decode_tiles(model, shape, tiles)
    except DecodeError:
        raise
    except Exception as exc:  # the coder or the exact path met data no valid stream holds
        raise DecodeError(f"corrupt stream ({type(exc).__name__}: {exc})") from exc


def _decode_tiles(model: Model, shape: TileShape, tiles: Sequence[CodedTile]) -> list[np.ndarray]:
    wide = shape.mode.endswith("16")
    parts = [_split16(t) if wide else (t, None) for t in tiles]
    high = _decode_8bit(model, shape, [p[0] for p in parts])
    if not wide:
        return high
    lows = [_decode_classic(shape, low) for _, low in parts]
    return [(h.astype(np.uint16) << 8) | lo for h, lo in zip(high, lows)]


def _split16(tile: CodedTile) -> tuple[CodedTile, CodedTile]:
    """The high and low parts of a SPLIT16 tile."""
    if tile.kind != TileKind.SPLIT16:
        raise DecodeError("corrupt stream (a 16-bit tile that is not split into bytes)")
    length, pos = read_varint(tile.payload, 0, "16-bit tile")
    first, second = tile.payload[pos : pos + length], tile.payload[pos + length :]
    if len(first) != length or not first or not second:
        raise DecodeError("corrupt stream (a 16-bit tile's parts do not match their lengths)")
    return CodedTile(_kind(first[0]), first[1:]), CodedTile(_kind(second[0]), second[1:])


def _kind(byte: int) -> TileKind:
    try:
        return TileKind(byte)
    except ValueError:
        raise DecodeError(f"corrupt stream (unknown tile kind {byte})") from None


def _decode_classic(shape: TileShape, tile: CodedTile) -> np.ndarray:
    if tile.kind not in _CLASSIC:
        raise DecodeError(f"corrupt stream (a tile part of kind {tile.kind.name} where a classic coding belongs)")
    return classic.decode_classic(_CLASSIC[tile.kind], tile.payload, shape.height, shape.width, shape.channels)


def _decode_8bit(model: Model, shape: TileShape, tiles: Sequence[CodedTile]) -> list[np.ndarray]:
    pixels: list = [None] * len(tiles)
    coded = []
    for b, tile in enumerate(tiles):
        kind = _kind(tile.kind)
        if kind == TileKind.MODEL:
            coded.append(b)
        elif kind in _CLASSIC:
            pixels[b] = _decode_classic(shape, tile)
        else:
            raise DecodeError(f"corrupt stream (a tile of kind {kind.name} in an {shape.mode} image)")
    if coded:
        if model.local_ar is not None:
            streams = model.wavefront().streams([_words(tiles[b].payload) for b in coded])
            planes = [model.wavefront().pop(streams, h, w) for h, w in plane_shapes(shape.height, shape.width, shape.mode8)]
            ended = streams.all_ended()
        else:
            coders = [_coder(tiles[b].payload) for b in coded]
            planes = [_pop_plane(model, coders, h, w) for h, w in plane_shapes(shape.height, shape.width, shape.mode8)]
            ended = all(coder.is_empty() for coder in coders)
        if not ended:
            raise DecodeError("corrupt stream (data left over after the last symbol)")
        for i, b in enumerate(coded):
            pixels[b] = pixels_of([p[i] for p in planes], shape.mode8, shape.width).reshape(shape.height, shape.width, -1)
    return pixels


def skips_colour_stage(model_payload: bytes) -> bool:
    """Whether a model tile of a colour-stage model coded its colour plane in its own colours: the
    first symbol its decoder pops."""
    return bool(_coder(model_payload).decode(_colour_mode, 1)[0])


def _words(payload: bytes) -> np.ndarray:
    if not payload or len(payload) % 4:
        raise DecodeError("corrupt stream (a model tile's payload is not whole 32-bit words)")
    return np.frombuffer(payload, "<u4").astype(np.uint32)


def _coder(payload: bytes):
    return constriction.stream.stack.AnsCoder(_words(payload))


def _pop_plane(model: Model, coders: list, height: int, width: int) -> np.ndarray:
    """One plane of every coder's tile (B x height x width x 3 uint8): its colour mode (with a colour
    stage), its scale offsets, the flow run backwards over its latent groups, then its strips."""
    plain = None
    if model.flow.colour is not None:
        plain = torch.tensor([bool(coder.decode(_colour_mode, 1)[0]) for coder in coders])
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
    x = model.flow.decode(len(coders), hp, wp, pop_latents, plain) + 128.0
    x = x[:, :, :flow_h, :flow_w]
    if float(x.min()) < 0 or float(x.max()) > 255:
        raise DecodeError("corrupt stream (pixel values out of range)")
    flow_parts = x.permute(0, 2, 3, 1).numpy().astype(np.uint8)
    if (flow_h, flow_w) == (height, width):
        return flow_parts
    return np.stack([strips.decode_strips(coder, part, height, width, model.tables) for coder, part in zip(coders, flow_parts)])
