"""Getting a model: architecture specs, safe file loading, preprocessing presets.

Safety: a state dict or checkpoint is read only with
``torch.load(path, map_location="cpu", weights_only=True)``, whose restricted
unpickler rebuilds tensors, containers and primitive values and refuses any
other global, so a crafted file cannot run code.  A refusal becomes
:class:`UnsafeInputError` naming the refused global.  TorchScript archives are
read with ``torch.jit.load``: it compiles the archive's TorchScript source
(which can call only TorchScript builtins, not arbitrary Python) and unpickles
its constants with TorchScript's own restricted unpickler; no Python pickle
code runs.
"""
from __future__ import annotations

import importlib
import logging
import os
import pickle
import re
import contextlib
import sys
import types
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from xconv.errors import InputFileError, UnsafeInputError, XconvError

log = logging.getLogger(__name__)

ARCH_FORMS = (
    "torchvision:<model> (e.g. torchvision:resnet50; torchvision.models.<model>(weights=None, **arch_kwargs))",
    "efficientnet-lite:<name> (e.g. efficientnet-lite:efficientnet-lite0; EfficientNet.from_name)",
    "<package.module>:<factory>[.<attr>...] (imported and called with **arch_kwargs)",
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_TV_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
}
_tv_libs: list[Any] = []  # keep the torch.library fragments alive


# --------------------------------------------------------------------------- torchvision
def _has_tv_op(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def import_torchvision() -> Any:
    """Import torchvision, defining its ``nms``/``qnms`` op schemas first when they are missing.

    The torchvision wheel beside a CPU-only torch can fail to load its C++
    ops; its import then dies registering fake kernels for ops that do not
    exist.  Defining just the schemas lets the models and transforms import
    (``torchvision.ops.nms`` itself stays unusable).
    """
    mod = sys.modules.get("torchvision")
    if mod is not None and hasattr(mod, "models"):
        return mod
    for name, schema in _TV_SCHEMAS.items():
        if not _has_tv_op(name):
            lib = torch.library.Library("torchvision", "FRAGMENT")
            lib.define(schema)
            _tv_libs.append(lib)
            log.debug("defined the missing op schema torchvision::%s", name)
    with _dynamo_deferred():
        import torchvision  # noqa: F401,PLC0415
    import torchvision  # noqa: PLC0415  (bound here whichever way the import above went)

    return torchvision


@contextlib.contextmanager
def _dynamo_deferred() -> Iterator[None]:
    """Import torchvision without importing ``torch._dynamo`` (about 0.9 s).

    torchvision's only use of dynamo at import time is
    ``from torch._dynamo.utils import is_compile_supported`` in
    ``ops/roi_align.py``.  While torchvision imports, that module is a
    stand-in whose ``is_compile_supported`` imports the real one on first call;
    afterwards the stand-ins leave ``sys.modules`` and ``torch`` again, so a
    later ``import torch._dynamo`` gets the real package.  If torchvision ever
    needs more of dynamo at import, the stand-in raises ImportError and the
    import is simply retried for real.
    """
    if "torch._dynamo" in sys.modules:
        yield
        return
    pkg = types.ModuleType("torch._dynamo")
    pkg.__path__ = []  # a package, so the submodule import resolves
    utils = types.ModuleType("torch._dynamo.utils")

    def is_compile_supported(device_type: Any) -> Any:
        from torch._dynamo.utils import is_compile_supported as real  # noqa: PLC0415
        return real(device_type)

    utils.is_compile_supported = is_compile_supported  # type: ignore[attr-defined]
    pkg.utils = utils  # type: ignore[attr-defined]
    sys.modules["torch._dynamo"], sys.modules["torch._dynamo.utils"] = pkg, utils
    ok = False
    try:
        yield
        ok = True
    except ImportError:
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
    finally:
        for k in ("torch._dynamo.utils", "torch._dynamo"):
            if sys.modules.get(k) in (pkg, utils):
                del sys.modules[k]
        if torch.__dict__.get("_dynamo") is pkg:
            delattr(torch, "_dynamo")
    if not ok:
        log.debug("torchvision needs torch._dynamo at import; importing it for real")
        import torchvision  # noqa: F401,PLC0415


# --------------------------------------------------------------------------- architectures
def build_arch(arch: str, arch_kwargs: dict[str, Any] | None = None) -> torch.nn.Module:
    """Instantiate an architecture spec (random weights)."""
    kw = dict(arch_kwargs or {})
    kind, sep, name = arch.partition(":")
    if not sep or not kind or not name:
        raise XconvError(f"pytorch: cannot read arch {arch!r}; use one of:\n  " + "\n  ".join(ARCH_FORMS))
    if kind == "torchvision":
        tv = import_torchvision()
        known = set(tv.models.list_models(module=tv.models))
        if name not in known:
            raise XconvError(f"pytorch: torchvision has no classification model {name!r}; "
                             f"e.g. {', '.join(sorted(known)[:12])}, ... (torchvision.models.list_models())")
        model = getattr(tv.models, name)(weights=None, **kw)
    elif kind == "efficientnet-lite":
        try:
            from efficientnet_lite_pytorch import EfficientNet  # noqa: PLC0415
        except ImportError as e:
            raise XconvError("pytorch: arch efficientnet-lite:* needs the efficientnet-lite-pytorch package") from e
        try:
            model = EfficientNet.from_name(name, **kw)
        except ValueError as e:
            raise XconvError(f"pytorch: {e}") from e
    else:
        factory = _import_factory(kind, name)
        model = factory(**kw)
    if not isinstance(model, torch.nn.Module):
        raise XconvError(f"pytorch: arch {arch!r} built a {type(model).__name__}, not an nn.Module")
    return model


def _import_factory(module_name: str, attr_path: str) -> Callable[..., Any]:
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise XconvError(f"pytorch: arch module {module_name!r} cannot be imported ({e}); forms:\n  "
                         + "\n  ".join(ARCH_FORMS)) from e
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise XconvError(f"pytorch: {module_name}:{attr_path}: no attribute {part!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise XconvError(f"pytorch: {module_name}:{attr_path} is not callable")
    return obj


def arch_preset(arch: str | None) -> dict[str, Any]:
    """Preprocessing metadata (ModelMeta fields) for the architecture presets."""
    if not arch:
        return {}
    kind, _, name = arch.partition(":")
    if kind == "efficientnet-lite":
        size = 224
        try:
            from efficientnet_lite_pytorch import EfficientNet  # noqa: PLC0415
            size = int(EfficientNet.get_image_size(name))
        except Exception:  # noqa: BLE001 - keep the lite0 default
            pass
        return dict(color_order="RGB", value_range=(0.0, 255.0), mean=(127.5,) * 3, std=(128.0,) * 3,
                    resize=size, crop=size, interpolation="bilinear")
    if kind == "torchvision":
        resize, crop, interp = 256, 224, "bilinear"
        try:
            tv = import_torchvision()
            enum = tv.models.get_model_weights(name)
            first = next(iter(enum))  # IMAGENET1K_V1: the classic recipe
            kw = getattr(first.transforms, "keywords", {})
            crop = int(kw.get("crop_size", crop))
            resize = int(kw.get("resize_size", resize))
            mode = kw.get("interpolation")
            interp = str(getattr(mode, "value", interp)) if mode is not None else interp
        except Exception:  # noqa: BLE001 - no weights registered: keep the defaults
            pass
        return dict(color_order="RGB", value_range=(0.0, 1.0), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                    resize=resize, crop=crop, interpolation=interp)
    return {}


# --------------------------------------------------------------------------- files
def is_torchscript_file(path: str | os.PathLike[str]) -> bool:
    """A TorchScript archive is a zip holding ``<name>/code/`` and ``<name>/constants.pkl``."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any("/code/" in n or n.endswith("constants.pkl") for n in names)


def _check_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"pytorch: model file {str(p)!r} does not exist or is not a file")
    return p


def load_torchscript(path: str | os.PathLike[str]) -> torch.jit.ScriptModule:
    p = _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "torch.jit.load is deprecated"
            return torch.jit.load(str(p), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any failure means the archive is unusable
        raise InputFileError(f"pytorch: cannot read TorchScript file {str(p)!r} (truncated or corrupt?): "
                             f"{_first_line(e)}") from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


_HOW_TO_FIX = ("If you trust the file, re-save it as a plain state_dict in a trusted environment "
               "(torch.save(model.state_dict(), path)) and convert that with arch=...")


def _unpickling_error(path: Path, e: pickle.UnpicklingError) -> XconvError:
    msg = str(e)
    m = re.search(r"GLOBAL\s+([\w.]+)", msg) or re.search(r"global:?\s+([\w.]+)", msg, re.IGNORECASE)
    if m:
        return UnsafeInputError(
            f"pytorch: refused to load {str(path)!r}: it needs the Python global '{m.group(1)}', which the "
            f"restricted (weights_only) unpickler does not allow; unpickling it could run arbitrary code. "
            + _HOW_TO_FIX)
    low = msg.lower()
    if "truncated" in low or "eof" in low:
        return InputFileError(f"pytorch: cannot read {str(path)!r} (truncated or corrupt?): {_first_line(e)}")
    reason = next((ln.strip() for ln in msg.splitlines()
                   if ln.strip().startswith(("Unsupported", "Unexpected", "Trying"))), _first_line(e))
    return UnsafeInputError(f"pytorch: refused to load {str(path)!r}: the restricted (weights_only) unpickler "
                            f"rejected it ({reason}). " + _HOW_TO_FIX)


def load_checkpoint(path: str | os.PathLike[str]) -> Any:
    """``torch.load(..., weights_only=True)`` with errors turned into xconv errors."""
    p = _check_file(path)
    try:
        # zip-format files are memory-mapped (weights are paged in as they are used, never
        # copied); the legacy format cannot be, and is read whole
        mmap = zipfile.is_zipfile(p)
        return torch.load(str(p), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise _unpickling_error(p, e) from e
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise InputFileError(f"pytorch: cannot read {str(p)!r} (truncated or corrupt?): {_first_line(e)}") from e


_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "weights")
_PREFIXES = ("module.", "_orig_mod.")


def extract_state_dict(obj: Any, path: str) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint (``{"state_dict": ...}``, ``{"model": ...}``), prefixes stripped."""
    for _ in range(4):
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is not None:
                obj = inner
                continue
            keys = ", ".join(map(repr, list(obj)[:10]))
            raise InputFileError(f"pytorch: {path!r} is a dict without a state dict inside (keys: {keys}); "
                                 f"expected tensors, or one of the keys {list(_WRAPPER_KEYS)}")
        raise InputFileError(f"pytorch: {path!r} holds a {type(obj).__name__}, not a state dict")
    sd: dict[str, torch.Tensor] = {str(k): v for k, v in obj.items()}
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def apply_state_dict(model: torch.nn.Module, sd: dict[str, torch.Tensor], path: str, arch: str,
                     assign: bool = False) -> None:
    """``load_state_dict(strict=True)`` after a clear report of what does not match."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    for k in [k for k in missing if k.endswith("num_batches_tracked")]:
        sd[k] = torch.zeros((), dtype=torch.long)  # older checkpoints predate this buffer; unused in eval
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", mismatched)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... (+{len(items) - 8})" if len(items) > 8 else "")
                parts.append(f"{len(items)} {label}: {shown}")
        raise InputFileError(f"pytorch: the state dict in {path!r} does not fit arch {arch!r}: " + "; ".join(parts)
                             + ". Check the arch and arch_kwargs (e.g. num_classes).")
    model.load_state_dict(sd, strict=True, assign=assign)


def build_module(source: Any, arch: str | None = None, arch_kwargs: dict[str, Any] | None = None) -> torch.nn.Module:
    """The source model as an ``nn.Module`` in eval mode.

    ``source``: an ``nn.Module`` (returned, switched to eval mode); a path to
    a TorchScript file; a path to a state dict / checkpoint (needs ``arch``);
    or ``None`` with ``arch`` for randomly initialised weights.
    """
    if isinstance(source, torch.nn.Module):
        return source.eval()
    if source is None:
        if not arch:
            raise XconvError("pytorch: nothing to load: pass a module, a file, or arch=...")
        return build_arch(arch, arch_kwargs).eval()
    if not isinstance(source, (str, os.PathLike)):
        raise XconvError(f"pytorch: cannot load a {type(source).__name__}; pass an nn.Module or a file path")
    path = str(source)
    _check_file(path)
    if is_torchscript_file(path):
        if arch:
            log.info("%s is a TorchScript archive; arch %r is not needed and ignored", path, arch)
        return load_torchscript(path).eval()
    obj = load_checkpoint(path)
    sd = extract_state_dict(obj, path)
    if not arch:
        raise XconvError(f"pytorch: {path!r} holds weights only (a state dict); pass arch= to say which "
                         "architecture they belong to:\n  " + "\n  ".join(ARCH_FORMS))
    with _skip_init():
        model = build_arch(arch, arch_kwargs)
    apply_state_dict(model, sd, path, arch, assign=True)
    return model.eval()


_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                   "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                   "sparse_")


@contextlib.contextmanager
def _skip_init() -> Iterator[None]:
    """Build a module without running ``torch.nn.init`` (its weights come from a state dict next).

    Random initialisation of a large model costs seconds; every parameter it
    would fill is replaced by ``load_state_dict(strict=True, assign=True)``
    right after, which refuses a state dict that misses any of them.  (The meta
    device would avoid the allocation too, but its init functions import
    ``torch._dynamo``, which costs more than it saves.)  Not thread-safe: it
    swaps functions of ``torch.nn.init`` for the duration.
    """
    saved = {n: getattr(torch.nn.init, n) for n in _INIT_FUNCTIONS if hasattr(torch.nn.init, n)}

    def keep(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        return tensor

    for n in saved:
        setattr(torch.nn.init, n, keep)
    try:
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.nn.init, n, fn)
