"""Model files: save, load (no pickle, no code execution), and find by name.

A model file is a NumPy ``.npz`` read with ``allow_pickle=False``. It holds

* ``meta``: UTF-8 JSON (format name and version, the model's name, its ``kind``: ``local-ar``, its
  architecture and a free-form ``training`` record);
* ``convN.w`` (int8; int16 for a head's 13-bit split weights), ``convN.e`` (int8), ``convN.b`` (int32),
  ``convN.f`` (int8): the integer weights, per-channel weight exponents, integer biases and input grid
  (2**-f) of the N-th fixed-point convolution, in module order (the 8-bit scheme of ``quant.py``; every
  channel meets its exactness bound, checked at load);
* ``tables.counts``, ``tables.offsets``: the logistics' integer probability tables.

Everything the exact path reads is stored as integers; nothing float-sensitive is recomputed at
load time. The model's identifier in a stream is a 16-bit fingerprint of these contents.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ModelError
from .local_ar import LocalAR
from .priors import LogisticTables

if TYPE_CHECKING:
    from .wavefront import Wavefront

MODEL_FORMAT = "icnn-model"
MODEL_FORMAT_VERSION = 2  # 2: the exact 8-bit arithmetic (1: 12-bit weights, float64)
MODEL_SUFFIX = ".npz"
LOCAL_AR = "local-ar"  # the model kind
CARDS = "cards.json"  # model cards, beside the model files
DEFAULT_MODEL = "cifar10"  # thumbnails, and the model of the CIFAR-10 benchmark tables
PHOTO_MODEL = "photo"  # trained on photographs: the default for anything larger than a thumbnail, grey too
THUMBNAIL_SIDE = 64  # images with both sides at most this are thumbnails
PACKAGE_MODELS = Path(__file__).resolve().parent / "models"  # installed wheel: package data
SOURCE_MODELS = Path(__file__).resolve().parent.parent / "models"  # source checkout / editable


@dataclass
class Model:
    """A loaded model: its local AR network (integer parameters fixed) and its probability tables."""

    name: str
    local_ar: LocalAR
    tables: LogisticTables
    fingerprint: int  # 16-bit identifier written into streams
    meta: dict
    path: str | None = None
    _wavefront: "Wavefront | None" = field(default=None, repr=False, compare=False)

    def wavefront(self) -> "Wavefront":
        """A local AR's line-by-line coder (made once)."""
        if self._wavefront is None:
            from .wavefront import Wavefront  # its compiled loops (numba) load only for a local AR model

            self._wavefront = Wavefront(self.local_ar, self.tables)
        return self._wavefront


def model_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("ICNN_MODELS"):
        dirs += [Path(p) for p in os.environ["ICNN_MODELS"].split(os.pathsep) if p]
    dirs += [PACKAGE_MODELS, SOURCE_MODELS]
    return dirs


def available_models() -> dict[str, Path]:
    """Installed model names -> files (first directory wins)."""
    found: dict[str, Path] = {}
    for d in model_dirs():
        if d.is_dir():
            for f in sorted(d.glob("*" + MODEL_SUFFIX)):
                found.setdefault(f.name[: -len(MODEL_SUFFIX)], f)
    return found


def model_arrays(network: LocalAR, tables: LogisticTables, meta: dict) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {"meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)}
    for i, conv in enumerate(network.qconvs()):
        w, e, b = conv.integer_parameters()
        arrays[f"conv{i}.w"] = w.numpy().astype(np.int16 if conv.split else np.int8)
        arrays[f"conv{i}.e"] = e.numpy().astype(np.int8)
        arrays[f"conv{i}.b"] = b.numpy().astype(np.int32)
        arrays[f"conv{i}.f"] = np.array(conv.in_frac, dtype=np.int8)
    arrays["tables.counts"] = tables.counts
    arrays["tables.offsets"] = tables.offsets
    return arrays


def fingerprint(arrays: dict[str, np.ndarray]) -> int:
    """16-bit identifier of a model's exact contents (what a stream was coded with)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        if key == "meta":
            continue  # the name and training notes do not change a single coded bit
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return int.from_bytes(h.digest()[:2], "little")


def model_meta(network: LocalAR, name: str, training: dict | None = None) -> dict:
    return {"format": MODEL_FORMAT, "version": MODEL_FORMAT_VERSION, "name": name, "kind": LOCAL_AR,
            "config": network.config(), "training": training or {}}


def save_model(network: LocalAR, path: str | Path, name: str, tables: LogisticTables,
               training: dict | None = None) -> Path:
    """Export a frozen local AR into a model file (atomically)."""
    arrays = model_arrays(network, tables, model_meta(network, name, training))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
    return path


def model_from_arrays(arrays: dict[str, np.ndarray], path: str | None = None) -> Model:
    try:
        meta = json.loads(bytes(arrays["meta"]).decode())
        if meta.get("format") != MODEL_FORMAT:
            raise ModelError("not an icnn model file")
        if meta.get("version") != MODEL_FORMAT_VERSION:
            raise ModelError(f"model file version {meta.get('version')} is not supported")
        if meta.get("kind") != LOCAL_AR:
            raise ModelError(f"model kind '{meta.get('kind', 'flow')}' is not supported by this version")
        network = LocalAR.from_config(meta["config"])
        convs = network.qconvs()
        for i, conv in enumerate(convs):
            w, e, b = arrays[f"conv{i}.w"], arrays[f"conv{i}.e"], arrays[f"conv{i}.b"]
            if tuple(w.shape) != tuple(conv.conv.weight.shape) or int(arrays[f"conv{i}.f"]) != conv.in_frac:
                raise ModelError(f"layer {i} has the wrong shape or grid")
            mask = getattr(conv, "mask", None)
            if mask is not None and bool(np.any(w * (1 - mask.numpy()) != 0)):
                raise ModelError(f"layer {i} reads pixels a decoder has not decoded yet")
            conv.load_integer_parameters(w.astype(np.float64), e.astype(np.int64), b.astype(np.float64))
        if f"conv{len(convs)}.w" in arrays:
            raise ModelError("model file has more layers than its architecture")
        tables = LogisticTables(arrays["tables.counts"], arrays["tables.offsets"])
    except ModelError:
        raise
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ModelError(f"invalid model file: {exc}") from exc
    network.eval()
    return Model(meta.get("name", "?"), network, tables, fingerprint(arrays), meta, path)


def read_model_file(path: str | Path) -> Model:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # a truncated or damaged archive fails in zipfile or zlib, in many ways
        raise ModelError(f"cannot read model file {path}: {exc}") from exc
    return model_from_arrays(arrays, str(path))


_cache: dict[str, Model] = {}


def load_model(model: "str | Path | Model | None" = None) -> Model:
    """A model by name (``models/NAME.npz``) or by file path.

    An installed model's name means that model even where a file or folder of that name lies in
    the working directory (``./NAME`` names that instead): what a stream or the default choice
    names must not depend on where the codec runs.
    """
    if isinstance(model, Model):
        return model
    key = str(model if model is not None else DEFAULT_MODEL)
    p = Path(key)
    installed = available_models() if looks_like_name(key) else {}
    if key in installed:
        p = installed[key]
    elif p.is_dir():
        raise ModelError(f"'{key}' is a folder, not a model file (a training run is exported with 'icnn export')")
    if not p.is_file():
        known = ", ".join(sorted(available_models())) or "none installed"
        raise ModelError(f"unknown model '{key}' (available: {known})")
    key = f"{p.resolve()}@{p.stat().st_mtime_ns}"  # a rewritten file is a new model
    if key not in _cache:
        _cache[key] = read_model_file(p)
    return _cache[key]


def looks_like_name(model: str) -> bool:
    """Whether ``model`` could be an installed model's name rather than a path."""
    return not any(sep and sep in model for sep in (os.sep, os.altsep)) and not model.endswith(MODEL_SUFFIX)


def default_model_name(height: int, width: int) -> str:
    """The model ``compress`` uses when none is named: the photo model (grey images too: it codes
    a grey plane's runs of three neighbours as it codes colours) unless the image is a thumbnail."""
    if max(height, width) <= THUMBNAIL_SIDE:
        return DEFAULT_MODEL
    return PHOTO_MODEL if PHOTO_MODEL in available_models() else DEFAULT_MODEL


def model_role(name: str) -> str:
    """What ``icnn compress`` uses an installed model for, by its name."""
    roles = {
        PHOTO_MODEL: f"images larger than {THUMBNAIL_SIDE}x{THUMBNAIL_SIDE} (the default)",
        DEFAULT_MODEL: f"thumbnails, both sides at most {THUMBNAIL_SIDE}",
    }
    return roles.get(name, "only when named (-m)")


def model_card(name: str, fp: int) -> dict:
    """The card (training data, measured bpd) of an installed model, from ``cards.json`` beside it;
    empty when there is none for this name and fingerprint."""
    for d in model_dirs():
        try:
            card = json.loads((d / CARDS).read_text()).get(name, {})
        except (OSError, ValueError):
            continue
        if card.get("fingerprint") == f"{fp:04x}":
            return card
    return {}


def installed_model_name(fp: int) -> str | None:
    """The name of the installed model whose fingerprint a stream names, if any."""
    for name in sorted(available_models()):
        try:
            if load_model(name).fingerprint == fp:
                return name
        except ModelError:
            continue
    return None


def find_model_by_fingerprint(fp: int) -> Model | None:
    """The installed (or already loaded) model whose fingerprint a stream names."""
    name = installed_model_name(fp)
    if name is not None:
        return load_model(name)
    for m in list(_cache.values()):
        if m.fingerprint == fp:
            return m
    return None


def network_to_model(network: LocalAR, tables: LogisticTables, name: str, path: str | None = None) -> Model:
    """Freeze a trained local AR into a codec model exactly as an export would (same integers)."""
    meta = model_meta(network, name)
    del meta["training"]
    return model_from_arrays(model_arrays(network, tables, meta), path)
