"""Convert an IR graph to a target and write the files atomically.

All files of one conversion are first written into a private temporary
directory inside the output directory, then renamed into place; any failure
before that leaves nothing behind (the temporary directory is removed).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

from . import __version__
from .backend import EmitOptions, get_backend
from .errors import XconvError
from .ir import Graph
from .pass_manager import run_passes
from .passes import PassContext

log = logging.getLogger(__name__)


@dataclass
class ConversionResult:
    graph: Graph                      # the legalised graph that was emitted
    files: list[Path]
    info: dict[str, Any] = field(default_factory=dict)


def lower(graph: Graph, target: str, opts: EmitOptions | None = None) -> Graph:
    """Run the target's passes and checks; return the graph it will emit."""
    opts = opts or EmitOptions()
    backend = get_backend(target)
    g = run_passes(graph, backend.passes(opts), PassContext(target=target, dialect=opts.dialect))
    backend.check(g, opts)
    return g


def sidecar(graph: Graph, target: str, opts: EmitOptions, files: list[str], passes: list[str],
            previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """``NAME.xconv.json``: model metadata plus one entry per target written
    under this name (Caffe and ONNX conversions of one model share it)."""
    targets = dict((previous or {}).get("targets", {}))
    targets[target] = {
        "dialect": opts.dialect if target == "caffe" else None,
        "opset": opts.opset if target == "onnx" else None,
        "files": files,
        "passes": passes,
        "outputs": {o: list(graph.type_of(o).shape) for o in graph.outputs},
    }
    return {
        "xconv_version": __version__,
        "inputs": {k: list(t.shape) for k, t in graph.inputs.items()},
        "meta": graph.meta.to_json(),
        "targets": targets,
    }


def read_sidecar(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


Content = Union[bytes, Sequence[Union[bytes, memoryview]]]


def write_atomic(outdir: Path, files: dict[str, Content]) -> list[Path]:
    """Write all ``files`` into ``outdir`` or none of them.

    Contents go to a private temporary directory first; existing files of
    the same names are moved aside there, the new ones renamed in, and on any
    failure the new ones are removed and the old ones put back.
    """
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".xconv-tmp-", dir=outdir))
    except OSError as e:
        raise XconvError(f"cannot write to output directory '{outdir}': {e.strerror or e}; "
                         "choose another with -o") from e
    placed: list[Path] = []
    backups: list[tuple[Path, Path]] = []
    try:
        (tmp / "old").mkdir()
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                # chunks (e.g. memoryviews of weight arrays) are written as they are, never joined
                for chunk in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else data):
                    f.write(chunk)
        for name in files:
            dest = outdir / name
            if dest.exists() or dest.is_symlink():
                if dest.is_dir():
                    raise OSError(f"'{dest}' is a directory")
                os.replace(dest, tmp / "old" / name)
                backups.append((tmp / "old" / name, dest))
            os.replace(tmp / name, dest)
            placed.append(dest)
        return placed
    except OSError as e:
        for p in placed:
            p.unlink(missing_ok=True)
        for src, dest in backups:
            os.replace(src, dest)
        raise XconvError(f"writing into '{outdir}' failed: {e}; nothing was written") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def convert(graph: Graph, target: str, outdir: str | os.PathLike[str] = ".", name: str | None = None,
            opts: EmitOptions | None = None) -> ConversionResult:
    opts = opts or EmitOptions()
    if target == "caffe" and not opts.dialect:
        opts.dialect = "bvlc"
    name = name or graph.name
    backend = get_backend(target)
    t0 = time.perf_counter()
    passes = backend.passes(opts)
    g = lower(graph, target, opts)
    t1 = time.perf_counter()
    files = backend.emit(g, name, opts)
    t2 = time.perf_counter()
    meta_name = f"{name}.xconv.json"
    prev = read_sidecar(Path(outdir) / meta_name)
    if prev.get("inputs") not in (None, {k: list(t.shape) for k, t in g.inputs.items()}):
        prev = {}  # a different model used this name before: start afresh
    files[meta_name] = json.dumps(sidecar(g, target, opts, sorted(files), passes, prev), indent=2).encode()
    written = write_atomic(Path(outdir), files)
    t3 = time.perf_counter()
    log.info("%s: passes %.2fs, emit %.2fs, write %.2fs", target, t1 - t0, t2 - t1, t3 - t2)
    return ConversionResult(g, written, {"passes_s": t1 - t0, "emit_s": t2 - t1, "write_s": t3 - t2})
