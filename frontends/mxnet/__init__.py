"""``--from mxnet``: ``NAME-symbol.json`` + ``NAME-EPOCH.params`` -> IR, without MXNet.

The source may be the symbol file (the newest params file beside it is
used), the params file (its symbol is ``NAME-symbol.json`` beside it), or
the common prefix ``NAME`` / ``NAME-0000``.  :func:`make_runner` (verify's
source side) runs the model in MXNet itself.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from xconv.errors import InputFileError, XconvError
from xconv.ir import Graph

from .graph import HANDLERS, convert_symbol, handles
from .params import Params, find_params
from .symbol import Symbol, read_symbol

__all__ = ["load", "make_runner", "locate_files", "Params", "read_symbol", "Symbol", "HANDLERS", "handles"]
log = logging.getLogger(__name__)


def locate_files(source: Any, params: Any = None) -> tuple[Path, Path]:
    """(symbol json, params) for a user's argument."""
    p = Path(os.fspath(source))
    sym: Path | None = None
    par: Path | None = Path(os.fspath(params)) if params else None
    if p.suffix == ".json":
        sym = p
    elif p.suffix == ".params":
        par = par or p
        stem = re.sub(r"-\d+$", "", p.stem)
        sym = p.with_name(f"{stem}-symbol.json")
    else:  # a prefix: NAME or NAME-0000
        stem = re.sub(r"-\d+$", "", p.name)
        sym = p.with_name(f"{stem}-symbol.json")
        if par is None and re.search(r"-\d+$", p.name):
            par = p.with_name(p.name + ".params")
    if not sym.exists():
        raise InputFileError(f"mxnet: no symbol file {sym} (pass NAME-symbol.json, NAME-EPOCH.params or the prefix)")
    par = par or find_params(sym)
    if par is None or not par.exists():
        raise InputFileError(f"mxnet: no params file for {sym} (expected {sym.name.replace('-symbol.json', '')}"
                             "-EPOCH.params beside it)")
    return sym, par


def load(source: Any, *, input_shape: Sequence[int] | None = None, outputs: Sequence[str] | None = None,
         name: str | None = None, params: Any = None, **ignored: Any) -> Graph:
    if ignored:
        log.debug("mxnet load ignores %s", sorted(ignored))
    sym_path, par_path = locate_files(source, params)
    sym = read_symbol(sym_path)
    prm = Params.open(par_path)
    default = sym_path.name.replace("-symbol.json", "").replace(".json", "")
    return convert_symbol(sym, prm, input_shape=input_shape, outputs=outputs, name=name or default,
                          source_file=str(sym_path))


def import_mxnet() -> Any:
    """MXNet 1.9.1 with numpy >= 1.24 needs ``np.bool`` back."""
    if not hasattr(np, "bool"):
        np.bool = bool  # type: ignore[attr-defined]
    import warnings  # noqa: PLC0415
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import mxnet as mx  # noqa: PLC0415
        except ImportError as e:
            raise XconvError("mxnet: running the source model needs MXNet (`make setup`); converting does not") from e
    return mx


def make_runner(source: Any, *, input_shape: Sequence[int] | None = None, outputs: Sequence[str] | None = None,
                params: Any = None, device: str | None = None, **ignored: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Run the symbol in MXNet (CPU): NCHW float32 -> the first head (or the named output)."""
    sym_path, par_path = locate_files(source, params)
    mx = import_mxnet()
    sym = mx.sym.load(str(sym_path))
    loaded = mx.nd.load(str(par_path))
    arg = {k.split(":", 1)[1]: v for k, v in loaded.items() if k.startswith("arg:")}
    aux = {k.split(":", 1)[1]: v for k, v in loaded.items() if k.startswith("aux:")}
    if not arg and not aux:
        arg = dict(loaded)
    if outputs:
        internals = sym.get_internals()
        names = internals.list_outputs()
        picked = []
        for o in outputs:
            base = o.partition(":")[0]
            key = base if base in names else f"{base}_output"
            if key not in names:
                raise XconvError(f"mxnet: no output named {o!r} in the symbol")
            picked.append(internals[key])
        sym = picked[0] if len(picked) == 1 else mx.sym.Group(picked)
    data = [n for n in sym.list_arguments() if n not in arg and not n.endswith("label")]
    if len(data) != 1:
        raise XconvError(f"mxnet: expected one data input, found {data}")
    cache: dict[tuple[int, ...], Any] = {}

    def run(x: np.ndarray) -> np.ndarray:
        shape = tuple(x.shape)
        if shape not in cache:
            # MXNet's MKLDNN subgraph backend folds BatchNorm into Conv at bind time; bind the plain
            # graph so the reference is MXNet's op-by-op semantics, not its float32 folding
            old = os.environ.get("MXNET_SUBGRAPH_BACKEND")
            os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"
            try:
                ex = sym.simple_bind(mx.cpu(), grad_req="null", **{data[0]: shape})
            finally:
                if old is None:
                    os.environ.pop("MXNET_SUBGRAPH_BACKEND", None)
                else:
                    os.environ["MXNET_SUBGRAPH_BACKEND"] = old
            ex.copy_params_from(arg, aux, allow_extra_params=True)
            cache[shape] = ex
        ex = cache[shape]
        out = ex.forward(is_train=False, **{data[0]: mx.nd.array(x)})
        return out[0].asnumpy()

    return run
