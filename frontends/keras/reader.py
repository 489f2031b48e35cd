"""Reading Keras model files without Keras: the model config and the weights.

Three containers are understood, all parsed with h5py, zipfile and json only
(nothing in a file is ever executed or unpickled):

* **Keras 2 HDF5** (``model.save('m.h5')`` in Keras 2.x / tf_keras): root attrs
  ``keras_version`` and ``model_config`` (JSON); group ``model_weights`` with
  one group per top-level layer whose attr ``weight_names`` lists its
  datasets (``conv1/kernel:0``; a nested model lists its inner layers'
  weights, ``conv2d/kernel:0``).
* **Keras 3 legacy HDF5** (``model.save('m.h5')`` in Keras 3): the same layout,
  names without ``:0`` and prefixed by the nested model (``inner/conv2d/kernel``),
  and the Keras 3 config dialect.
* **Keras 3 archive** (``.keras``): a zip of ``metadata.json``, ``config.json``
  and ``model.weights.h5``, where a layer's variables are
  ``layers/<key>/vars/<i>`` in creation order (nested models:
  ``layers/<key>/layers/<key2>/vars/<i>``) and ``vars`` carries the layer's
  name.  The weights file is read in place inside the zip (no copy) when it
  is stored uncompressed.

The two config dialects (Keras 2 ``inbound_nodes`` lists and Keras 3
``{"args": [__keras_tensor__ ...]}`` dicts; Sequential and Functional;
nested models) are normalised into :class:`ModelSpec`.
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from xconv.errors import InputFileError

log = logging.getLogger(__name__)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
MODEL_CLASSES = ("Functional", "Model", "Sequential")


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class Ref:
    """Output ``tensor`` of call ``node`` of layer ``layer`` (a Keras "keras_history")."""

    layer: str
    node: int = 0
    tensor: int = 0


@dataclass
class Call:
    """One call of a layer: its input tensors (in the order the layer receives them)."""

    inputs: list[Ref]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class LayerSpec:
    class_name: str
    name: str
    config: dict[str, Any]
    calls: list[Call]
    module: str | None = None
    registered_name: str | None = None
    model: "ModelSpec | None" = None  # set for nested models

    def where(self) -> str:
        return f"keras layer '{self.name}' ({self.class_name})"


@dataclass
class ModelSpec:
    class_name: str
    name: str
    layers: list[LayerSpec]
    inputs: list[Ref]
    outputs: list[Ref]

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise InputFileError(f"keras model '{self.name}': no layer named '{name}' (the config is inconsistent)")

    def walk(self) -> Iterator[tuple[tuple[str, ...], LayerSpec]]:
        """(path of enclosing model names, layer) for every layer, nested ones included."""
        for layer in self.layers:
            yield (), layer
            if layer.model is not None:
                for path, inner in layer.model.walk():
                    yield (layer.name,) + path, inner


def _refs_k3(obj: Any) -> list[Ref]:
    """Every ``__keras_tensor__`` in a Keras 3 call's args, in order."""
    out: list[Ref] = []
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            h = obj["config"]["keras_history"]
            out.append(Ref(str(h[0]), int(h[1]), int(h[2])))
        else:
            for v in obj.values():
                out.extend(_refs_k3(v))
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            out.extend(_refs_k3(v))
    return out


def _parse_calls(inbound: Any, where: str) -> list[Call]:
    calls: list[Call] = []
    for node in inbound or []:
        if isinstance(node, dict):  # Keras 3
            calls.append(Call(_refs_k3(node.get("args", [])), dict(node.get("kwargs") or {})))
        elif isinstance(node, list):  # Keras 2: [[name, node, tensor, kwargs], ...]
            refs, kw = [], {}
            for entry in node:
                if not (isinstance(entry, list) and len(entry) >= 3 and isinstance(entry[0], str)):
                    raise InputFileError(f"{where}: unreadable inbound node {entry!r}")
                refs.append(Ref(entry[0], int(entry[1]), int(entry[2])))
                if len(entry) > 3 and isinstance(entry[3], dict):
                    kw.update(entry[3])
            calls.append(Call(refs, kw))
        else:
            raise InputFileError(f"{where}: unreadable inbound nodes {inbound!r}")
    return calls


def _parse_io(v: Any) -> list[Ref]:
    if v is None:
        return []
    if isinstance(v, list) and v and isinstance(v[0], str):  # Keras 3 single [name, node, tensor]
        return [Ref(v[0], int(v[1]), int(v[2]))]
    if isinstance(v, dict):  # Keras 3 may write a dict of named outputs
        return [r for x in v.values() for r in _parse_io(x)]
    out: list[Ref] = []
    for x in v:
        out.extend(_parse_io(x))
    return out


def _layer(d: dict[str, Any], where: str) -> LayerSpec:
    if not isinstance(d, dict) or "class_name" not in d:
        raise InputFileError(f"{where}: a layer entry without class_name: {str(d)[:200]}")
    cfg = d.get("config") or {}
    name = d.get("name") or cfg.get("name") or ""
    spec = LayerSpec(str(d["class_name"]), str(name), cfg if isinstance(cfg, dict) else {"value": cfg},
                     _parse_calls(d.get("inbound_nodes"), f"keras layer '{name}'"),
                     d.get("module"), d.get("registered_name"))
    if spec.class_name in MODEL_CLASSES:
        spec.model = parse_model(d)
    return spec


def parse_model(d: dict[str, Any]) -> ModelSpec:
    """A model config (``{"class_name": ..., "config": ...}``) -> :class:`ModelSpec`."""
    cls = str(d.get("class_name", ""))
    cfg = d.get("config")
    if cls == "Sequential":
        layers_cfg = cfg if isinstance(cfg, list) else (cfg or {}).get("layers", [])
        name = "sequential" if isinstance(cfg, list) else (cfg or {}).get("name", "sequential")
        return _sequential(str(name), [_layer(x, f"keras model '{name}'") for x in layers_cfg])
    if cls in ("Functional", "Model") or (isinstance(cfg, dict) and "layers" in cfg and "input_layers" in cfg):
        name = str(cfg.get("name", "model"))
        layers = [_layer(x, f"keras model '{name}'") for x in cfg.get("layers", [])]
        spec = ModelSpec(cls or "Functional", name, layers, _parse_io(cfg.get("input_layers")),
                         _parse_io(cfg.get("output_layers")))
        _skip_first_nodes(spec)
        return spec
    raise InputFileError(f"keras: the file's model is a '{cls}', not a Sequential or Functional model "
                         "(subclassed models save no layer graph; re-save the model functionally)")


def _skip_first_nodes(spec: ModelSpec) -> None:
    """Keras 2 numbers the calls of a nested model from 1 when the model has its own
    InputLayer (its node 0 is that input, which is not part of the outer graph)."""
    refs = [r for layer in spec.layers for c in layer.calls for r in c.inputs] + spec.outputs
    for layer in spec.layers:
        if layer.model is None:
            continue
        mine = [r for r in refs if r.layer == layer.name]
        if mine and max(r.node for r in mine) >= len(layer.calls) and min(r.node for r in mine) >= 1:
            fixed = {id(r): Ref(r.layer, r.node - 1, r.tensor) for r in mine}
            for other in spec.layers:
                for c in other.calls:
                    c.inputs = [fixed.get(id(r), r) for r in c.inputs]
            spec.outputs = [fixed.get(id(r), r) for r in spec.outputs]


def _sequential(name: str, layers: list[LayerSpec]) -> ModelSpec:
    """A Sequential model as the equivalent chain of calls."""
    if not layers:
        raise InputFileError(f"keras Sequential model '{name}' has no layers")
    if layers[0].class_name != "InputLayer":
        shape = layers[0].config.get("batch_input_shape") or layers[0].config.get("batch_shape")
        inp = LayerSpec("InputLayer", f"{name}_input", {"batch_shape": shape}, [])
        layers = [inp] + layers
    prev = Ref(layers[0].name)
    for layer in layers[1:]:
        layer.calls = [Call([prev])]
        prev = Ref(layer.name)
    return ModelSpec("Sequential", name, layers, [Ref(layers[0].name)], [prev])


# --------------------------------------------------------------------------- weights
# variable creation order per layer class (what ``vars/<i>`` of a .keras file means)
def var_order(layer: LayerSpec) -> list[str]:
    c, cfg = layer.class_name, layer.config
    bias = ["bias"] if cfg.get("use_bias", True) else []
    if c in ("Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "Dense"):
        return ["kernel"] + bias
    if c == "DepthwiseConv2D":
        return ["depthwise_kernel"] + bias
    if c == "SeparableConv2D":
        return ["depthwise_kernel", "pointwise_kernel"] + bias
    if c == "BatchNormalization":
        return ((["gamma"] if cfg.get("scale", True) else []) + (["beta"] if cfg.get("center", True) else [])
                + ["moving_mean", "moving_variance"])
    if c == "Normalization":
        return ["mean", "variance", "count"]
    if c == "PReLU":
        return ["alpha"]
    return []


# names a variable goes by in other Keras versions
VAR_ALIASES = {"depthwise_kernel": ("kernel",), "mean": ("adapt_mean",), "variance": ("adapt_variance",)}


def _canon_var(name: str) -> str:
    return re.sub(r"(_\d+)?(:\d+)?$", "", name)


class WeightStore:
    """Arrays of one layer: ``get(path, layer) -> {var name: array}``; ``path`` are the
    names of the enclosing (nested) models, outermost first."""

    def get(self, path: tuple[str, ...], layer: LayerSpec) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _decode(names: Any) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in np.asarray(names).reshape(-1)]


def _read(ds: Any, where: str) -> np.ndarray:
    try:
        return np.asarray(ds[()])
    except Exception as e:  # noqa: BLE001 - h5py raises OSError/KeyError/RuntimeError on damage
        raise InputFileError(f"{where}: cannot read its weights ({e}); the file is truncated or damaged") from e


class H5Weights(WeightStore):
    """``model_weights/<layer>`` groups with ``weight_names`` (Keras 2 and Keras 3 legacy HDF5)."""

    def __init__(self, root: Any, file: str) -> None:
        self.root = root
        self.file = file

    def get(self, path: tuple[str, ...], layer: LayerSpec) -> dict[str, np.ndarray]:
        top = path[0] if path else layer.name
        where = layer.where()
        if top not in self.root:
            if not var_order(layer):
                return {}
            raise InputFileError(f"{where}: the file has no weights for it (no group model_weights/{top}); "
                                 "was it saved with the model's weights?")
        grp = self.root[top]
        names = _decode(grp.attrs.get("weight_names", []))
        if path:  # a layer inside a nested model: its names end in '<layer>/<var>'
            names = [n for n in names if n.split("/")[-2:-1] == [layer.name]]
        out: dict[str, np.ndarray] = {}
        for n in names:
            key = _canon_var(n.split("/")[-1])
            if key in out:
                raise InputFileError(f"{where}: two weights named '{key}' ({names}); cannot tell them apart")
            if n not in grp:
                raise InputFileError(f"{where}: weight '{n}' is listed but missing from the file (truncated?)")
            out[key] = _read(grp[n], f"{where}, weight '{n}'")
        return out


class ArchiveWeights(WeightStore):
    """``layers/<key>/vars/<i>`` of a Keras 3 ``model.weights.h5``."""

    def __init__(self, root: Any, model: ModelSpec, closers: list[Any]) -> None:
        self.root = root
        self.model = model
        self._closers = closers
        self._index: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _snake(name: str) -> str:
        s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
        return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()

    def _children(self, grp: Any, model: ModelSpec) -> dict[str, Any]:
        """Layer name -> its group under ``grp['layers']`` (indexed once per model group)."""
        key = grp.name
        if key not in self._index:
            self._index[key] = self._scan(grp, model)
        return self._index[key]

    def _scan(self, grp: Any, model: ModelSpec) -> dict[str, Any]:
        if "layers" not in grp:
            return {}
        layers = grp["layers"]
        by_name: dict[str, Any] = {}
        for key in layers:
            v = layers[key].get("vars")
            n = v.attrs.get("name") if v is not None else None
            if n is not None:
                by_name[n.decode() if isinstance(n, bytes) else str(n)] = layers[key]
        if by_name:
            return by_name
        # older Keras 3 files: keys are snake_case class names, numbered per class in layer order
        seen: dict[str, int] = {}
        for layer in model.layers:
            base = self._snake(layer.class_name)
            k = seen.get(base, 0)
            seen[base] = k + 1
            key = base if k == 0 else f"{base}_{k}"
            if key in layers:
                by_name[layer.name] = layers[key]
        return by_name

    def get(self, path: tuple[str, ...], layer: LayerSpec) -> dict[str, np.ndarray]:
        grp, model = self.root, self.model
        for p in path:
            grp = self._children(grp, model).get(p)
            model = model.layer(p).model  # type: ignore[assignment]
            if grp is None or model is None:
                raise InputFileError(f"{layer.where()}: nested model '{p}' has no weights group in the archive")
        g = self._children(grp, model).get(layer.name)
        if g is None or "vars" not in g:
            if not var_order(layer):
                return {}
            raise InputFileError(f"{layer.where()}: the archive has no weights for it")
        v = g["vars"]
        n = len([k for k in v if k.isdigit()])
        order = var_order(layer)
        if n and order and n != len(order):
            raise InputFileError(f"{layer.where()}: the archive holds {n} variables, expected {len(order)} "
                                 f"({', '.join(order)})")
        names = order if order else [str(i) for i in range(n)]
        return {names[i]: _read(v[str(i)], f"{layer.where()}, variable {i}") for i in range(n)}

    def close(self) -> None:
        for c in reversed(self._closers):
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass


class _Window(io.RawIOBase):
    """A read-only, seekable view of bytes [start, start + size) of a file (an uncompressed zip member)."""

    def __init__(self, f: Any, start: int, size: int) -> None:
        self._f, self._start, self._size, self._pos = f, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, off: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + off)
        return self._pos

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), self._size - self._pos))
        self._f.seek(self._start + self._pos)
        got = self._f.readinto(memoryview(b)[:n])
        self._pos += got
        return got


# --------------------------------------------------------------------------- the file
@dataclass
class KerasFile:
    path: str
    kind: str  # "h5" or "keras"
    keras_version: str
    model: ModelSpec
    weights: WeightStore
    raw_config: dict[str, Any]

    @property
    def major(self) -> int:
        m = re.match(r"(\d+)", self.keras_version or "")
        return int(m.group(1)) if m else (3 if self.kind == "keras" else 2)

    def close(self) -> None:
        self.weights.close()

    def __enter__(self) -> "KerasFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _json(text: Any, where: str) -> dict[str, Any]:
    if isinstance(text, bytes):
        text = text.decode("utf8")
    try:
        d = json.loads(text)
    except (ValueError, TypeError) as e:
        raise InputFileError(f"{where}: the model config is not valid JSON ({e})") from e
    if not isinstance(d, dict):
        raise InputFileError(f"{where}: the model config is not a JSON object")
    return d


def _open_h5(path: str) -> KerasFile:
    import h5py  # noqa: PLC0415
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputFileError(f"keras: cannot open {path} as HDF5 ({e}); the file is truncated or not a Keras "
                             "model") from e
    try:
        if "model_config" not in f.attrs:
            what = "weights only (save_weights)" if ("layer_names" in f.attrs or "model_weights" not in f) else "no model"
            raise InputFileError(f"keras: {path} holds {what}: there is no model_config to tell the layers. "
                                 "Save the whole model (model.save('m.h5') or 'm.keras')")
        cfg = _json(f.attrs["model_config"], path)
        ver = f.attrs.get("keras_version", b"")
        ver = ver.decode() if isinstance(ver, bytes) else str(ver)
        if "model_weights" not in f:
            raise InputFileError(f"keras: {path} has a model config but no model_weights group: it was saved "
                                 "without weights, or is truncated")
        root = f["model_weights"]
        model = parse_model(cfg)
    except Exception:
        f.close()
        raise
    store = H5Weights(root, path)
    store.close = f.close  # type: ignore[method-assign]
    return KerasFile(path, "h5", ver, model, store, cfg)


def _open_archive(path: str) -> KerasFile:
    import h5py  # noqa: PLC0415
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputFileError(f"keras: cannot open {path} as a .keras archive ({e}); truncated or not a zip") from e
    closers: list[Any] = [z]
    try:
        names = set(z.namelist())
        for need in ("config.json", "model.weights.h5"):
            if need not in names:
                raise InputFileError(f"keras: {path} is a zip without {need}: not a Keras 3 model archive")
        cfg = _json(z.read("config.json"), f"{path}:config.json")
        meta = _json(z.read("metadata.json"), f"{path}:metadata.json") if "metadata.json" in names else {}
        info = z.getinfo("model.weights.h5")
        if info.compress_type == zipfile.ZIP_STORED:
            raw = open(path, "rb")  # noqa: SIM115 - closed by the store
            closers.append(raw)
            raw.seek(info.header_offset)
            head = raw.read(30)
            if head[:4] != ZIP_MAGIC:
                raise InputFileError(f"keras: {path}: damaged zip member header for model.weights.h5")
            n_name, n_extra = int.from_bytes(head[26:28], "little"), int.from_bytes(head[28:30], "little")
            start = info.header_offset + 30 + n_name + n_extra
            if start + info.file_size > os.path.getsize(path):
                raise InputFileError(f"keras: {path} is truncated (model.weights.h5 runs past the end)")
            fobj: Any = io.BufferedReader(_Window(raw, start, info.file_size), buffer_size=1 << 20)
        else:
            fobj = io.BytesIO(z.read("model.weights.h5"))
        closers.append(fobj)
        try:
            h = h5py.File(fobj, "r")
        except OSError as e:
            raise InputFileError(f"keras: {path}: model.weights.h5 is not readable HDF5 ({e}); truncated?") from e
        closers.append(h)
        model = parse_model(cfg)
    except Exception:
        for c in reversed(closers):
            c.close()
        raise
    return KerasFile(path, "keras", str(meta.get("keras_version", "3")), model, ArchiveWeights(h, model, closers), cfg)


def open_keras(path: str | os.PathLike[str]) -> KerasFile:
    """Open a Keras ``.h5`` or ``.keras`` file (format told by its magic bytes, not its name)."""
    p = Path(path)
    if p.is_dir():
        raise InputFileError(f"keras: {p} is a directory (a TensorFlow SavedModel? use --from tensorflow)")
    try:
        with open(p, "rb") as f:
            magic = f.read(8)
    except OSError as e:
        raise InputFileError(f"keras: cannot read {p}: {e}") from e
    if magic.startswith(HDF5_MAGIC):
        return _open_h5(str(p))
    if magic.startswith(ZIP_MAGIC):
        return _open_archive(str(p))
    if p.suffix == ".json":
        raise InputFileError(f"keras: {p} is a bare config; xconv needs the whole model (.h5 or .keras) so the "
                             "weights come with it")
    raise InputFileError(f"keras: {p} is neither HDF5 nor a .keras zip (first bytes {magic!r}); empty or truncated?")
