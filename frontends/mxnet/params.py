"""MXNet's NDArray list format (``*.params``, ``mx.nd.save``) read without MXNet.

Layout (little-endian), as MXNet 1.x writes it:

* header: ``uint64 0x112`` (kMXAPINDArrayListMagic), ``uint64 0`` (reserved);
* ``uint64 count``, then ``count`` arrays, each:

  - ``uint32 magic``: ``0xF993FAC9`` (V2), ``0xF993FACA`` (V3, NumPy shape
    semantics: ndim -1 is "unknown", 0 is a scalar) or ``0xF993FAC8`` (V1, no
    storage type).  Anything else is the legacy layout, where this word is
    already ``ndim`` and the dims are ``uint32``;
  - V2/V3: ``int32 storage type`` (0 = dense; sparse arrays are refused);
  - shape: ``int32 ndim`` + ``int64 dims[ndim]`` (legacy: ``uint32``);
    an empty shape (V1/V2 ndim 0, V3 ndim -1) is a "none" array: nothing follows;
  - context: ``int32 dev_type``, ``int32 dev_id``;
  - ``int32 type_flag`` (0 f32, 1 f64, 2 f16, 3 u8, 4 i32, 5 i8, 6 i64, 7 bool);
  - the elements, C order;

* ``uint64 count`` names, each ``uint64 length`` + UTF-8 bytes
  (``arg:NAME`` / ``aux:NAME`` in checkpoints; may be 0 names).

Arrays are read with ``numpy.frombuffer`` over one memory map of the file:
no copy until a converter transforms them.
"""
from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from xconv.errors import InputFileError

LIST_MAGIC = 0x112
V1, V2, V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8, 6: np.int64,
          7: np.bool_}


class _Cursor:
    def __init__(self, buf: memoryview, path: str) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise InputFileError(f"mxnet params {self.path}: truncated while reading {what} at byte {self.pos} "
                                 f"(needs {n} bytes, {len(self.buf) - self.pos} left)")
        v = self.buf[self.pos:self.pos + n]
        self.pos += n
        return v

    def u64(self, what: str) -> int:
        return int(struct.unpack("<Q", self.take(8, what))[0])

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.take(4, what))[0])

    def i32(self, what: str) -> int:
        return int(struct.unpack("<i", self.take(4, what))[0])


def _array(c: _Cursor, i: int) -> np.ndarray | None:
    what = f"array {i}"
    magic = c.u32(f"{what} magic")
    if magic in (V2, V3):
        stype = c.i32(f"{what} storage type")
        if stype != 0:
            raise InputFileError(f"mxnet params {c.path}: {what} is sparse (storage type {stype}); only dense "
                                 "arrays are supported")
        ndim = c.i32(f"{what} ndim")
        if (magic == V3 and ndim < 0) or (magic == V2 and ndim <= 0):
            return None
        dims = struct.unpack(f"<{ndim}q", c.take(8 * ndim, f"{what} shape")) if ndim else ()
    elif magic == V1:
        ndim = c.i32(f"{what} ndim")
        if ndim <= 0:
            return None
        dims = struct.unpack(f"<{ndim}q", c.take(8 * ndim, f"{what} shape"))
    else:  # legacy: the word read is ndim, dims are uint32
        ndim = magic
        if ndim > 32:
            raise InputFileError(f"mxnet params {c.path}: {what} starts with 0x{magic:08x}, which is neither an "
                                 "NDArray magic number nor a plausible rank; the file is damaged")
        if ndim == 0:
            return None
        dims = struct.unpack(f"<{ndim}I", c.take(4 * ndim, f"{what} shape"))
    if any(d < 0 for d in dims):
        raise InputFileError(f"mxnet params {c.path}: {what} has an unknown dimension {dims}")
    c.i32(f"{what} device type")
    c.i32(f"{what} device id")
    flag = c.i32(f"{what} dtype")
    if flag not in DTYPES:
        raise InputFileError(f"mxnet params {c.path}: {what} has dtype flag {flag}, not supported")
    dt = np.dtype(DTYPES[flag]).newbyteorder("<")
    n = int(np.prod(dims, dtype=np.int64)) if dims else 1
    raw = c.take(n * dt.itemsize, f"{what} data ({n} x {dt})")
    return np.frombuffer(raw, dtype=dt).reshape(dims)


class Params(Mapping[str, np.ndarray]):
    """``name -> array`` of a ``.params`` file (``arg:``/``aux:`` prefixes kept in :attr:`raw_names`,
    looked up without them)."""

    def __init__(self, arrays: dict[str, np.ndarray], path: str, raw_names: list[str], closer: object = None) -> None:
        self._arrays = arrays
        self.path = path
        self.raw_names = raw_names
        self._closer = closer

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "Params":
        p = str(path)
        try:
            f = open(p, "rb")
        except OSError as e:
            raise InputFileError(f"mxnet params: cannot read {p}: {e}") from e
        with f:
            size = os.fstat(f.fileno()).st_size
            if size < 16:
                raise InputFileError(f"mxnet params {p}: {size} bytes is too short for the NDArray list header "
                                     "(empty or truncated file)")
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        c = _Cursor(memoryview(mm), p)
        head = c.u64("header")
        if head != LIST_MAGIC:
            raise InputFileError(f"mxnet params {p}: bad magic number 0x{head:x} (an MXNet NDArray list starts "
                                 f"with 0x{LIST_MAGIC:x}); not an MXNet .params file")
        c.u64("reserved")
        n = c.u64("array count")
        if n > 10_000_000:
            raise InputFileError(f"mxnet params {p}: implausible array count {n}; the file is damaged")
        arrays = [_array(c, i) for i in range(n)]
        k = c.u64("name count")
        if k not in (0, n):
            raise InputFileError(f"mxnet params {p}: {n} arrays but {k} names")
        names = []
        for i in range(k):
            ln = c.u64(f"name {i} length")
            names.append(bytes(c.take(ln, f"name {i}")).decode("utf8", errors="replace"))
        if not names:
            names = [str(i) for i in range(n)]
        out: dict[str, np.ndarray] = {}
        for raw, a in zip(names, arrays):
            if a is None:
                continue
            key = raw.split(":", 1)[1] if raw.startswith(("arg:", "aux:")) else raw
            out[key] = a
        return cls(out, p, names, mm)

    def __getitem__(self, k: str) -> np.ndarray:
        return self._arrays[k]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays.values())


def find_params(symbol_path: Path) -> Path | None:
    """``NAME-symbol.json`` -> the newest ``NAME-EPOCH.params`` beside it (or ``NAME.params``)."""
    stem = symbol_path.name
    for suffix in ("-symbol.json", ".json"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    cands = sorted(symbol_path.parent.glob(f"{stem}-*.params")) + [symbol_path.parent / f"{stem}.params"]
    cands = [c for c in cands if c.exists()]
    return cands[-1] if cands else None
