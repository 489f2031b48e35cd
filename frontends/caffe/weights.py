"""Reading a ``.caffemodel`` at the protobuf wire level: blobs by layer name.

A caffemodel is a binary ``NetParameter`` and carries no schema, so it is read
field number by field number, which serves two purposes:

* weight arrays come straight out of the file's bytes (``np.frombuffer`` of a
  packed ``float`` field), at memory speed, whatever the dialect;
* ``PoolingParameter`` field 13 is decoded *raw*.  It is ``round_mode`` (enum
  CEIL=0, FLOOR=1) in BVLC master but ``ceil_mode`` (bool, default true) in the
  forks, so the same varint means opposite things; the frontend checks it
  against the prototxt (:func:`check_field13`) instead of trusting either
  reading.

Both V2 (``layer = 100``: name 1, type 2, blobs 7, pooling_param 121) and V1
(``layers = 2``: name 4, type 5, blobs 6, pooling_param 19) nets are read;
a caffemodel's format need not match its prototxt's (BVLC's AlexNet ships a V1
caffemodel beside a V2 deploy prototxt).  ``BlobProto``: shape 7 (``BlobShape``
dims 1), legacy num/channels/height/width 1-4, data 5 (float), double_data 8.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np

from xconv.errors import InputFileError
from xconv.wire import iter_fields, packed_varints

log = logging.getLogger(__name__)

# NetParameter / LayerParameter / V1LayerParameter / BlobProto field numbers
NET_NAME, NET_LAYER, NET_LAYERS = 1, 100, 2
V2_NAME, V2_TYPE, V2_BLOBS, V2_POOL = 1, 2, 7, 121
V1_NAME, V1_TYPE, V1_BLOBS, V1_POOL, V1_V0 = 4, 5, 6, 19, 1
BLOB_SHAPE, BLOB_DATA, BLOB_DOUBLE, BLOB_LEGACY = 7, 5, 8, (1, 2, 3, 4)
#: BlobProto's real-valued fields: (name, little-endian dtype, wire type of one unpacked element)
REAL_FIELDS = {BLOB_DATA: ("float", "<f4", 5), BLOB_DOUBLE: ("double", "<f8", 1)}
SHAPE_DIM = 1
POOL_FIELD13 = 13


@dataclass
class Blob:
    data: np.ndarray                         # float32, flat
    shape: tuple[int, ...] | None            # BlobShape dims, when the blob has no legacy dims
    legacy: tuple[int, int, int, int] | None  # num, channels, height, width (old caffemodels)

    @property
    def dims(self) -> tuple[int, ...]:
        return self.legacy if self.legacy is not None else (self.shape or ())

    def matches(self, want: tuple[int, ...]) -> bool:
        """Caffe's ``Blob::ShapeEquals``: legacy dims compare against the shape padded to 4 axes."""
        if self.legacy is not None:
            return len(want) <= 4 and (1,) * (4 - len(want)) + tuple(want) == self.legacy
        return tuple(want) == (self.shape or ())


@dataclass
class ModelLayer:
    name: str
    type: str | int                          # V2 type string, or V1 enum number
    blobs: list[Blob] = field(default_factory=list)
    field13: int | None = None               # raw varint of pooling_param field 13, when present


@dataclass
class CaffeModel:
    path: str
    name: str
    format: str                              # "V2 layer", "V1 layers" or "empty"
    layers: dict[str, ModelLayer]


# --------------------------------------------------------------------------- wire walking
def _blob(buf: memoryview) -> Blob:
    shape: list[int] | None = None
    legacy = [0, 0, 0, 0]
    has_legacy = False
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    for num, wt, v in iter_fields(buf):
        if num == BLOB_SHAPE and wt == 2:
            shape = []
            for n2, _, d in iter_fields(v):  # type: ignore[arg-type]
                if n2 == SHAPE_DIM:
                    shape.extend(packed_varints(d))  # type: ignore[arg-type]
        elif num in BLOB_LEGACY and wt == 0:
            legacy[num - 1] = int(v)  # type: ignore[arg-type]
            has_legacy = True
        elif num in REAL_FIELDS:
            kind, dtype, fixed_wt = REAL_FIELDS[num]
            size = np.dtype(dtype).itemsize
            if wt == 2 and len(v) % size:  # type: ignore[arg-type]
                raise ValueError(f"packed {kind} data of {len(v)} bytes is not a multiple of {size}")  # type: ignore
            if wt in (2, fixed_wt):  # packed, or one unpacked fixed-width element
                (floats if num == BLOB_DATA else doubles).append(np.frombuffer(v, dtype=dtype))  # type: ignore
    # Caffe's Blob::FromProto: double_data wins when present; the copy makes the array aligned and owned
    parts = doubles if doubles else floats
    data = (np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else np.zeros(0)).astype(np.float32)
    return Blob(data, tuple(shape) if shape is not None else None,
                tuple(legacy) if has_legacy else None)  # type: ignore[arg-type]


def _field13(buf: memoryview) -> int | None:
    out = None
    for num, wt, v in iter_fields(buf):
        if num == POOL_FIELD13 and wt == 0:
            out = int(v)  # type: ignore[arg-type]  # proto2: the last occurrence wins
    return out


def _layer(buf: memoryview, v1: bool) -> ModelLayer:
    name_f, type_f, blobs_f, pool_f = (V1_NAME, V1_TYPE, V1_BLOBS, V1_POOL) if v1 else (
        V2_NAME, V2_TYPE, V2_BLOBS, V2_POOL)
    lay = ModelLayer("", "")
    for num, wt, v in iter_fields(buf):
        if num == name_f and wt == 2:
            lay.name = bytes(v).decode("utf-8", "replace")  # type: ignore[arg-type]
        elif num == type_f:
            lay.type = int(v) if wt == 0 else bytes(v).decode("utf-8", "replace")  # type: ignore[arg-type]
        elif num == blobs_f and wt == 2:
            lay.blobs.append(_blob(v))  # type: ignore[arg-type]
        elif num == pool_f and wt == 2:
            f13 = _field13(v)  # type: ignore[arg-type]
            if f13 is not None:
                lay.field13 = f13
        elif v1 and num == V1_V0 and wt == 2:
            raise ValueError("a V1 layer holds a V0 layer (the pre-2014 format); upgrade the caffemodel with "
                            "Caffe's upgrade_net_proto_binary tool first")
    return lay


def parse_caffemodel_bytes(data: bytes | memoryview, path: str = "<bytes>") -> CaffeModel:
    """Blobs (and raw pooling field 13) by layer name; the last of duplicate names wins, as in Caffe."""
    buf = memoryview(data)
    layers: dict[str, ModelLayer] = {}
    name, kinds = "", set()
    try:
        for num, wt, v in iter_fields(buf):
            if num == NET_NAME and wt == 2:
                name = bytes(v).decode("utf-8", "replace")  # type: ignore[arg-type]
            elif num in (NET_LAYER, NET_LAYERS) and wt == 2:
                lay = _layer(v, v1=num == NET_LAYERS)  # type: ignore[arg-type]
                kinds.add(num)
                layers[lay.name] = lay
    except ValueError as e:
        raise InputFileError(f"caffe: {path} is truncated or not a caffemodel (binary NetParameter): {e}; "
                             "re-download it, or pass the right file with --weights") from None
    if not layers and len(buf):
        raise InputFileError(f"caffe: {path} holds no layers: it is not a caffemodel (a prototxt given as "
                             "--weights?)")
    fmt = "empty" if not kinds else ("V1 layers" if kinds == {NET_LAYERS} else
                                     "V2 layer" if kinds == {NET_LAYER} else "V1 layers + V2 layer")
    return CaffeModel(path, name, fmt, layers)


def read_caffemodel(path: str | Path) -> CaffeModel:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputFileError(f"caffe: cannot read the caffemodel {p}: {e.strerror or e}; pass the weights "
                             "with --weights FILE.caffemodel") from e
    m = parse_caffemodel_bytes(data, str(p))
    log.info("caffe: %s: %d layers with blobs (%s)", p, sum(1 for v in m.layers.values() if v.blobs), m.format)
    return m
