"""PyTorch frontend: ``nn.Module`` / TorchScript file / state dict + arch -> IR Graph.

Capture
-------
``torch.fx.symbolic_trace`` is the primary capture (:mod:`.capture_fx`):

* it keeps the model's structure by name: ``call_module`` nodes carry the
  module's qualified name (``layer1.0.conv1``), which becomes the IR node
  name and the prefix of its params (``layer1.0.conv1.weight``, as in the
  state dict), so errors and converted layers point straight back at the
  source;
* ops arrive at module level (``nn.Conv2d`` with its ``padding_mode``,
  ``nn.BatchNorm2d`` with its running stats), so handlers read attributes
  instead of reverse-engineering decomposed ``aten`` graphs;
* it is fast (one Python pass, no compilation), and one ShapeProp run gives
  every shape and the value of every shape computation (``x.size(0)``).

TorchScript (:mod:`.capture_ts`) is used when the source *is* TorchScript: a
``torch.jit.save`` file, or a ``ScriptModule`` object (scripted or traced),
which fx cannot trace.  It walks ``inlined_graph`` and routes ``aten::`` ops
to the same handlers.  Models whose Python ``forward`` fx cannot trace (data-
dependent control flow) can be converted by saving them as TorchScript first.

Loading files (:mod:`.loading`): state dicts only through
``torch.load(weights_only=True)`` (a pickle needing any other global is
refused with :class:`~xconv.errors.UnsafeInputError`); TorchScript through
``torch.jit.load``, which compiles TorchScript source and unpickles constants
with TorchScript's restricted unpickler, so no Python pickle code runs.

Public API: :func:`load`, :func:`build_module`, :func:`make_runner`,
:func:`import_torchvision`, :func:`supported_ops`.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from xconv.errors import InvalidGraphError, XconvError
from xconv.ir import Graph, ModelMeta, SourceLoc

from . import capture_fx, capture_ts
from .core import FRAMEWORK, FUNCTIONS, METHODS, MODULES, NAMED_FUNCTIONS, Builder, function_name
from .loading import ARCH_FORMS, arch_preset, build_arch, build_module, import_torchvision

__all__ = ["load", "build_module", "make_runner", "import_torchvision", "supported_ops", "build_arch",
           "ARCH_FORMS"]

log = logging.getLogger(__name__)

DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)


def load(source: Any, *, arch: str | None = None, arch_kwargs: dict[str, Any] | None = None,
         input_shape: tuple[int, ...] | list[int] = DEFAULT_INPUT_SHAPE, name: str | None = None,
         **ignored: Any) -> Graph:
    """Convert a PyTorch model into a validated IR graph.

    ``source``: an ``nn.Module`` (a ``ScriptModule`` too), a TorchScript file,
    or a state dict / checkpoint file with ``arch`` (see ``ARCH_FORMS``);
    ``None`` with ``arch`` converts randomly initialised weights.
    ``input_shape`` fixes the static NCHW input shape of the graph.
    """
    if ignored:
        log.warning("pytorch.load: ignoring options it does not know: %s", sorted(ignored))
    input_shape = tuple(int(d) for d in input_shape)
    source_file = str(source) if isinstance(source, (str, os.PathLike)) else None
    user_module = source if isinstance(source, torch.nn.Module) else None
    was_training = user_module.training if user_module is not None else False
    module = build_module(source, arch, arch_kwargs)
    try:
        b = Builder(source_file=source_file)
        if isinstance(module, torch.jit.ScriptModule):
            outputs = capture_ts.capture(module, input_shape, b)
            _check_outputs(module, input_shape, b, outputs)
        else:
            outputs = capture_fx.capture(module, input_shape, b)
    finally:
        if user_module is not None and was_training:
            user_module.train(True)  # leave the caller's module as we found it

    loc = SourceLoc(FRAMEWORK, "output", -1, source_file)
    out_names = b.finish_outputs(outputs, loc)
    graph = Graph(name=name or _default_name(source, arch, module), nodes=b.nodes, inputs=b.inputs,
                  outputs=out_names, params=b.params, types=b.types)
    meta = ModelMeta(**arch_preset(arch))
    meta.source_framework = FRAMEWORK
    meta.source_file = source_file or ""
    first = graph.types.get(out_names[0]) if out_names else None
    if first is not None and first.rank == 2:
        meta.num_classes = int(first.shape[1])
    if arch:
        meta.extra["arch"] = arch
    graph.meta = meta
    graph.validate()
    log.info("pytorch: %s", graph.summary())
    return graph


def _default_name(source: Any, arch: str | None, module: torch.nn.Module) -> str:
    if arch:
        return arch.partition(":")[2].replace(".", "_") or arch
    if isinstance(source, (str, os.PathLike)):
        return Path(source).stem
    return type(module).__name__


def _check_outputs(module: torch.nn.Module, input_shape: tuple[int, ...], b: Builder, outputs: list[Any]) -> None:
    """TorchScript has no ShapeProp: compare the IR output shapes with one real run."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        try:
            ref = module(torch.randn(input_shape, generator=gen))
        except Exception as e:  # noqa: BLE001
            raise XconvError(f"pytorch: running the model on an input of shape {input_shape} failed: {e}") from e
    tensors = [t for t in (ref if isinstance(ref, (tuple, list)) else [ref]) if isinstance(t, torch.Tensor)]
    got = [b.shape(o) for o in outputs]
    want = [tuple(t.shape) for t in tensors]
    if got != want:
        raise InvalidGraphError(f"pytorch: converted output shapes {got} differ from the model's {want}")


def make_runner(source: Any, *, arch: str | None = None, arch_kwargs: dict[str, Any] | None = None,
                device: str | None = None, **ignored: Any) -> Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]:
    """A function running the source model in PyTorch: NCHW float32 array -> first output array.

    ``device``: "cpu" (default) or "cuda[:n]"; the module is moved there (an
    ``nn.Module`` passed in is moved in place).  On CUDA, TF32 is switched off
    while the model runs so its float32 results stay comparable.
    """
    module = build_module(source, arch, arch_kwargs)
    dev = torch.device(device or "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise XconvError(f"pytorch: device {device!r} requested but torch sees no CUDA device")
    module = module.to(dev)

    def run(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev)
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            if dev.type == "cuda":
                stack.enter_context(torch.backends.cudnn.flags(enabled=True, allow_tf32=False))
                prev = torch.backends.cuda.matmul.allow_tf32
                torch.backends.cuda.matmul.allow_tf32 = False
                stack.callback(setattr, torch.backends.cuda.matmul, "allow_tf32", prev)
            out = module(t)
        while isinstance(out, (tuple, list)):
            out = out[0]
        if isinstance(out, dict):
            out = next(iter(out.values()))
        result: np.ndarray[Any, Any] = out.detach().float().cpu().numpy()
        return result

    return run


def supported_ops() -> dict[str, list[str]]:
    """Names of the supported source ops: modules, functions, tensor methods and aten ops."""
    from .core import module_class_name  # noqa: PLC0415

    mods = sorted({f"nn.{c.__name__}" if c.__module__.startswith("torch.nn") else
                   f"{c.__module__}.{c.__qualname__}" for c in MODULES})
    _ = module_class_name
    return {
        "modules": mods,
        "functions": sorted({function_name(f) for f in FUNCTIONS} | set(NAMED_FUNCTIONS)),
        "methods": sorted(f"Tensor.{m}" for m in METHODS),
        "aten": sorted(capture_ts.ATEN),
    }
