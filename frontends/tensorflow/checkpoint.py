"""Read TensorFlow checkpoints (V1 and V2) with numpy alone, never importing TensorFlow.

Formats
-------
Both formats sit on the same container: a LevelDB-style *sorted string table*
(SSTable).  The file ends with a 48-byte footer holding two block handles
(varint offset + varint size: the *metaindex* block, unused by TensorFlow, and
the *index* block), zero padding and the little-endian 64-bit magic
``0xdb4775248b80fb57``.  Every block is followed by a 5-byte trailer: one
compression byte (0 = stored, 1 = snappy) and the masked CRC32C of the block
bytes plus that compression byte.  A block is a run of entries, each
``varint shared, varint unshared, varint value_len, key suffix, value`` where
the key shares ``shared`` leading bytes with the previous key, followed by an
array of little-endian uint32 *restart* offsets and their count.  The index
block maps a separator key (>= the last key of a data block, < the first key
of the next) to the handle of that data block, so keys are globally sorted.

*V2* (``tf.train.Saver`` since TF 1.0, ``tf.train.Checkpoint``) splits a
checkpoint into ``PREFIX.index`` -- an SSTable whose empty key holds a
``BundleHeaderProto`` (number of data shards, endianness, format version)
and whose other keys are tensor names mapping to a ``BundleEntryProto``
(dtype, shape, shard id, byte offset and size, masked CRC32C of the bytes) --
and raw data files ``PREFIX.data-SSSSS-of-NNNNN`` holding the tensor bytes
back to back (strings: varint lengths, a masked CRC32C of the lengths as
uint32s, then the bytes).  A partitioned variable has an entry with dtype,
full shape and a list of ``TensorSliceProto`` slices but no data; each slice's
data is an ordinary entry under a *slice key*: TensorFlow's "ordered code"
of ``0, name, rank, start_0, length_0, ...`` (length -1 = whole dimension).

*V1* (the 2016-era single ``model.ckpt`` file, e.g. the original TF-slim
releases) is one SSTable of ``SavedTensorSlices`` messages: the empty key
holds the ``SavedTensorSliceMeta`` table of contents (name, shape, dtype and
slices of every tensor) and each slice is stored under the same ordered-code
slice key as a ``SavedSlice`` whose ``TensorProto`` carries the values in the
typed repeated fields (``float_val``, ``int_val``, ...) or ``tensor_content``.
A sharded V1 save is several such files named ``PREFIX-SSSSS-of-NNNNN``.

Design
------
* Protobuf schemas: only the messages needed, declared in ``_SCHEMA`` below
  with field numbers and types taken from TensorFlow's ``.proto`` files, built
  at first use into a ``FileDescriptorProto`` (package ``xconv_tf``) in a
  private ``DescriptorPool``.  No generated code, no TensorFlow import.
* CRC32C is our own: a table-driven byte loop for small buffers (index
  blocks) and, for large ones, a numpy version that runs thousands of lanes
  in parallel (16-bit tables, 4 bytes per step) and folds the lane CRCs
  together with the GF(2) "append n zero bytes" operator.  Snappy blocks are
  decompressed by a small pure-Python decoder.
* V2: the index is read whole and every block's CRC is checked at open; the
  entries are parsed eagerly (listing is cheap), tensors lazily: ``get``
  returns a read-only ``np.frombuffer`` view of a memory-mapped data shard
  (bfloat16 and big-endian data are converted, partitioned tensors are
  assembled into a fresh array).  Sizes and file lengths are always checked;
  the per-tensor CRC only with ``verify=True``.
* V1: the index block and the metadata block are checked at open; ``get``
  finds each slice's data block by bisecting the index separators, parses the
  ``SavedTensorSlices`` wire format by hand down to the packed value bytes and
  turns them into numpy without per-element Python work.  Data-block CRCs are
  checked with ``verify=True``.
* Every malformed input raises :class:`xconv.errors.InputFileError` naming the
  file and the fault.  Nothing from the file is ever executed.
"""
from __future__ import annotations

import bisect
import functools
import glob
import logging
import mmap
import os
import re
import struct
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from xconv.errors import InputFileError

__all__ = [
    "Checkpoint",
    "crc32c",
    "mask_crc",
    "unmask_crc",
    "snappy_decompress",
    "encode_slice_key",
    "get_messages",
]

log = logging.getLogger(__name__)

Buffer = Union[bytes, bytearray, memoryview, mmap.mmap]

# ---------------------------------------------------------------------------------------
# Protobuf schema (facts from tensorflow/core/{framework,protobuf,util}/*.proto)
# ---------------------------------------------------------------------------------------
# One line per message or enum (continuation lines are indented).  A field is
# NAME:NUMBER:TYPE, with a leading "*" when repeated and "@ONEOF" when in a oneof;
# TYPE is a scalar, or a message/enum of this file (dotted when nested).  proto3.
_SCHEMA = """
enum DataType DT_INVALID=0 DT_FLOAT=1 DT_DOUBLE=2 DT_INT32=3 DT_UINT8=4 DT_INT16=5 DT_INT8=6
  DT_STRING=7 DT_COMPLEX64=8 DT_INT64=9 DT_BOOL=10 DT_QINT8=11 DT_QUINT8=12 DT_QINT32=13
  DT_BFLOAT16=14 DT_QINT16=15 DT_QUINT16=16 DT_UINT16=17 DT_COMPLEX128=18 DT_HALF=19
  DT_RESOURCE=20 DT_VARIANT=21 DT_UINT32=22 DT_UINT64=23 DT_FLOAT8_E5M2=24
  DT_FLOAT8_E4M3FN=25 DT_FLOAT8_E4M3FNUZ=26 DT_FLOAT8_E4M3B11FNUZ=27 DT_FLOAT8_E5M2FNUZ=28
  DT_INT4=29 DT_UINT4=30 DT_INT2=31 DT_UINT2=32 DT_FLOAT4_E2M1FN=33
message TensorShapeProto *dim:2:TensorShapeProto.Dim unknown_rank:3:bool
message TensorShapeProto.Dim size:1:int64 name:2:string
message TensorSliceProto *extent:1:TensorSliceProto.Extent
message TensorSliceProto.Extent start:1:int64 length:2:int64@has_length
message VersionDef producer:1:int32 min_consumer:2:int32 *bad_consumers:3:int32
message BundleHeaderProto num_shards:1:int32 endianness:2:BundleHeaderProto.Endianness
  version:3:VersionDef
enum BundleHeaderProto.Endianness LITTLE=0 BIG=1
message BundleEntryProto dtype:1:DataType shape:2:TensorShapeProto shard_id:3:int32
  offset:4:int64 size:5:int64 crc32c:6:fixed32 *slices:7:TensorSliceProto
message TensorProto dtype:1:DataType tensor_shape:2:TensorShapeProto version_number:3:int32
  tensor_content:4:bytes *half_val:13:int32 *float_val:5:float *double_val:6:double
  *int_val:7:int32 *string_val:8:bytes *scomplex_val:9:float *int64_val:10:int64
  *bool_val:11:bool *dcomplex_val:12:double *uint32_val:16:uint32 *uint64_val:17:uint64
message SavedSliceMeta name:1:string shape:2:TensorShapeProto type:3:DataType
  *slice:4:TensorSliceProto
message SavedTensorSliceMeta *tensor:1:SavedSliceMeta versions:2:VersionDef
message SavedSlice name:1:string slice:2:TensorSliceProto data:3:TensorProto
message SavedTensorSlices meta:1:SavedTensorSliceMeta data:2:SavedSlice
"""
_PACKAGE = "xconv_tf"
_MESSAGES = ("TensorShapeProto", "TensorSliceProto", "VersionDef", "BundleHeaderProto",
             "BundleEntryProto", "TensorProto", "SavedSliceMeta", "SavedTensorSliceMeta",
             "SavedSlice", "SavedTensorSlices")
_FDP = descriptor_pb2.FieldDescriptorProto


def _build_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="xconv_tf/checkpoint.proto", package=_PACKAGE, syntax="proto3")
    lines: list[list[str]] = []
    for raw in _SCHEMA.strip().splitlines():
        (lines[-1].extend if raw.startswith(" ") else lines.append)(raw.split())
    enums = {words[1] for words in lines if words[0] == "enum"}
    messages: dict[str, Any] = {}
    for kind, dotted, *items in lines:
        parent, _, leaf = dotted.rpartition(".")
        owner = messages[parent] if parent else fdp
        if kind == "enum":
            enum = owner.enum_type.add(name=leaf)
            for item in items:
                name, value = item.split("=")
                enum.value.add(name=name, number=int(value))
            continue
        msg = messages[dotted] = (owner.nested_type if parent else fdp.message_type).add(name=leaf)
        for item in items:
            spec, _, oneof = item.partition("@")
            name, number, typ = spec.lstrip("*").split(":")
            field = msg.field.add(name=name, number=int(number))
            field.label = _FDP.LABEL_REPEATED if spec.startswith("*") else _FDP.LABEL_OPTIONAL
            if typ in enums or typ[0].isupper():
                field.type = _FDP.TYPE_ENUM if typ in enums else _FDP.TYPE_MESSAGE
                field.type_name = f".{_PACKAGE}.{typ}"
            else:
                field.type = getattr(_FDP, "TYPE_" + typ.upper())
            if oneof:
                names = [o.name for o in msg.oneof_decl]
                if oneof not in names:
                    msg.oneof_decl.add(name=oneof)
                    names.append(oneof)
                field.oneof_index = names.index(oneof)
    return fdp


@functools.lru_cache(maxsize=None)
def get_messages() -> dict[str, type[Message]]:
    """The message classes of the private schema, keyed by message name (cached)."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_build_file_descriptor())
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{n}"))
            for n in _MESSAGES}


def _dtype_enum_name(value: int) -> str:
    names = {v.number: v.name for v in
             get_messages()["BundleEntryProto"].DESCRIPTOR.fields_by_name["dtype"].enum_type.values}
    return names.get(value, f"DataType({value})")


# DataType number -> (stored numpy dtype, returned numpy dtype); None = string tensor.
_DTYPES: dict[int, tuple[str, str] | None] = {
    1: ("<f4", "<f4"), 2: ("<f8", "<f8"), 3: ("<i4", "<i4"), 4: ("u1", "u1"),
    5: ("<i2", "<i2"), 6: ("i1", "i1"), 7: None, 8: ("<c8", "<c8"), 9: ("<i8", "<i8"),
    10: ("?", "?"), 11: ("i1", "i1"), 12: ("u1", "u1"), 13: ("<i4", "<i4"),
    14: ("<u2", "<f4"), 15: ("<i2", "<i2"), 16: ("<u2", "<u2"), 17: ("<u2", "<u2"),
    18: ("<c16", "<c16"), 19: ("<f2", "<f2"), 22: ("<u4", "<u4"), 23: ("<u8", "<u8"),
}
# Quantized types come back as their plain integer storage type.
_BFLOAT16 = 14

# ---------------------------------------------------------------------------------------
# CRC32C (Castagnoli), masked as LevelDB/TensorFlow store it
# ---------------------------------------------------------------------------------------
_POLY = 0x82F63B78
_MASK_DELTA = 0xA282EAD8


def _byte_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (_POLY if c & 1 else 0)
        table.append(c)
    return table


_T8 = _byte_table()


def _gf2_apply(cols: list[int], x: int) -> int:
    """Apply the 32x32 GF(2) matrix given by its columns to the 32-bit vector x."""
    r, i = 0, 0
    while x:
        if x & 1:
            r ^= cols[i]
        x >>= 1
        i += 1
    return r


def _gf2_compose(a: list[int], b: list[int]) -> list[int]:
    return [_gf2_apply(a, c) for c in b]


_ZERO_BYTE = [_T8[(1 << i) & 0xFF] ^ ((1 << i) >> 8) for i in range(32)]


def _subset_xor_table(cols: list[int]) -> np.ndarray:
    """Table t[v] = XOR of cols[i] for the set bits i of v (v < 2**len(cols))."""
    t = np.zeros(1 << len(cols), np.uint32)
    for i, c in enumerate(cols):
        t[1 << i: 2 << i] = t[: 1 << i] ^ np.uint32(c)
    return t


@functools.lru_cache(maxsize=1)
def _word_tables() -> tuple[np.ndarray, np.ndarray]:
    four = _gf2_compose(_ZERO_BYTE, _gf2_compose(_ZERO_BYTE, _gf2_compose(_ZERO_BYTE, _ZERO_BYTE)))
    return _subset_xor_table(four[:16]), _subset_xor_table(four[16:])


def _crc_raw_py(state: int, data: Buffer) -> int:
    t = _T8
    for b in data:
        state = t[(state ^ b) & 0xFF] ^ (state >> 8)
    return state


_LANES = 4096
_NUMPY_MIN = 1 << 16


def _crc_raw(state: int, data: Buffer) -> int:
    """CRC register update (no pre/post inversion) over data."""
    view = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
    n = len(view)
    if n < _NUMPY_MIN:
        return _crc_raw_py(state, view)
    lanes = _LANES
    while lanes > 1 and n // (4 * lanes) < 64:
        lanes //= 2
    per = n // (4 * lanes)  # words per lane
    words = np.frombuffer(view, "<u4", count=lanes * per).reshape(lanes, per)
    tlo, thi = _word_tables()
    s = np.zeros(lanes, np.uint32)
    s[0] = state
    m16, sh16 = np.uint32(0xFFFF), np.uint32(16)
    for j in range(per):
        s ^= words[:, j]
        s = tlo[s & m16] ^ thi[s >> sh16]
    # Fold lanes pairwise: crc(A || B) = zeros_{len B}(crc(A)) ^ crc(B), where zeros_n,
    # the register update over n zero bytes, is _ZERO_BYTE ** n (square-and-multiply).
    power, base, k = [1 << i for i in range(32)], _ZERO_BYTE, 4 * per
    while k:
        if k & 1:
            power = _gf2_compose(base, power)
        base = _gf2_compose(base, base)
        k >>= 1
    while s.size > 1:
        t = [_subset_xor_table(power[8 * b: 8 * b + 8]) for b in range(4)]
        a = s[0::2]
        s = (t[0][a & 0xFF] ^ t[1][(a >> 8) & 0xFF] ^ t[2][(a >> 16) & 0xFF]
             ^ t[3][a >> 24] ^ s[1::2])
        power = _gf2_compose(power, power)
    return _crc_raw(int(s[0]), view[4 * lanes * per:])


def crc32c(data: Buffer, crc: int = 0) -> int:
    """CRC32C of data, optionally extending a previous (unmasked) crc."""
    return _crc_raw(crc ^ 0xFFFFFFFF, data) ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB/TensorFlow CRC masking (rotate right by 15, add a constant)."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------
# Varints, snappy, ordered code
# ---------------------------------------------------------------------------------------
class _Corrupt(Exception):
    """Internal: malformed bytes; turned into InputFileError with file context."""


def _varint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Corrupt("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _take(src: bytes, pos: int, n: int) -> bytes:
    if pos + n > len(src):
        raise _Corrupt("truncated element")
    return src[pos:pos + n]


def snappy_decompress(src: Buffer) -> bytes:
    """Decompress one raw snappy block (the format LevelDB tables use); ValueError if bad."""
    src = bytes(src)
    out = bytearray()
    try:
        want, pos = _varint(src, 0, len(src))
        while pos < len(src):
            tag, kind = src[pos], src[pos] & 3
            pos += 1
            if kind == 0:  # literal; lengths 61..64 mean 1..4 little-endian length bytes follow
                size = tag >> 2
                if size >= 60:
                    size = int.from_bytes(_take(src, pos, size - 59), "little")
                    pos += (tag >> 2) - 59
                out += _take(src, pos, size + 1)
                pos += size + 1
                continue
            nb = (1, 2, 4)[kind - 1]  # copy with a 1-, 2- or 4-byte offset
            raw = int.from_bytes(_take(src, pos, nb), "little")
            pos += nb
            if kind == 1:
                length, offset = ((tag >> 2) & 7) + 4, ((tag >> 5) << 8) | raw
            else:
                length, offset = (tag >> 2) + 1, raw
            if offset == 0 or offset > len(out):
                raise _Corrupt(f"copy offset {offset} outside {len(out)} bytes of output")
            start = len(out) - offset
            if offset >= length:
                out += out[start:start + length]
            else:  # overlapping copy repeats the last `offset` bytes
                out += (out[start:] * (length // offset + 1))[:length]
            if len(out) > want:
                raise _Corrupt("output longer than announced")
    except _Corrupt as e:
        raise ValueError(f"snappy: {e}") from None
    if len(out) != want:
        raise ValueError(f"snappy: got {len(out)} bytes, announced {want}")
    return bytes(out)


def _oc_string(s: bytes) -> bytes:
    escaped = re.sub(rb"[\x00\xff]", lambda m: b"\x00\xff" if m.group() == b"\x00" else b"\xff\x00", s)
    return escaped + b"\x00\x01"


def _oc_unsigned(v: int) -> bytes:
    body = v.to_bytes((v.bit_length() + 7) // 8, "big")
    return bytes([len(body)]) + body


def _oc_signed(v: int) -> bytes:
    n = (~v if v < 0 else v).bit_length() // 7 + 1  # 1..10 bytes
    raw = bytearray((v % (1 << (8 * n))).to_bytes(n, "big"))
    header = ((1 << n) - 1) << (16 - n)
    raw[0] ^= header >> 8
    if n > 1:
        raw[1] ^= header & 0xFF
    return bytes(raw)


Extents = tuple[tuple[int, int], ...]  # (start, length) per dim; length -1 = whole dim


def encode_slice_key(name: str | bytes, extents: Extents) -> bytes:
    """TensorFlow's ordered-code key of a tensor slice (V1 data keys, V2 slice entries)."""
    raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
    parts = [_oc_unsigned(0), _oc_string(raw), _oc_unsigned(len(extents))]
    for start, length in extents:
        parts += [_oc_signed(start), _oc_signed(length)]
    return b"".join(parts)


def _extents(proto: Any, rank: int) -> Extents:
    ext = tuple((int(e.start), int(e.length) if e.HasField("length") else -1) for e in proto.extent)
    if len(ext) != rank:
        raise _Corrupt(f"slice has {len(ext)} extents for a rank-{rank} tensor")
    return ext


def _slice_index(ext: Extents, shape: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[int, ...]]:
    idx, sub = [], []
    for (start, length), dim in zip(ext, shape):
        if length == -1:
            start, length = 0, dim
        if start < 0 or length < 0 or start + length > dim:
            raise _Corrupt(f"slice extent [{start}, {start + length}) outside dimension {dim}")
        idx.append(slice(start, start + length))
        sub.append(length)
    return tuple(idx), tuple(sub)


# ---------------------------------------------------------------------------------------
# SSTable
# ---------------------------------------------------------------------------------------
_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
_TRAILER = 5


class _Table:
    """A LevelDB-format table over bytes or an mmap; blocks are read on demand."""

    def __init__(self, path: str, buf: Buffer, what: str) -> None:
        self.path, self.size, self._view = path, len(buf), memoryview(buf)
        if self.size < _FOOTER:
            raise self.error(f"file is {self.size} bytes, too short for an SSTable footer "
                             f"({_FOOTER} bytes): truncated or not a checkpoint")
        footer = bytes(self._view[self.size - _FOOTER:])
        if struct.unpack("<Q", footer[-8:])[0] != _MAGIC:
            raise self.error("bad magic number: no SSTable footer at the end of the file, so it "
                             f"is truncated or not a TensorFlow checkpoint {what} at all")
        handles, p = [], 0
        try:
            for _ in range(4):  # metaindex offset, size; index offset, size
                v, p = _varint(footer, p, 40)
                handles.append(v)
        except _Corrupt as e:
            raise self.error(f"bad footer: {e}") from None
        self.read_block(handles[0], handles[1], "metaindex block", verify=True)
        index = self.read_block(handles[2], handles[3], "index block", verify=True)
        self.blocks: list[tuple[int, int]] = []
        self.separators: list[bytes] = []
        for key, a, b in self.entries(index, "index block"):
            try:
                off, p = _varint(index, a, b)
                size, _ = _varint(index, p, b)
            except _Corrupt as e:
                raise self.error(f"index block: bad block handle ({e})") from None
            self.separators.append(key)
            self.blocks.append((off, size))

    def error(self, msg: str) -> InputFileError:
        return InputFileError(f"{self.path}: {msg}")

    def read_block(self, offset: int, size: int, label: str, verify: bool) -> Buffer:
        end = offset + size + _TRAILER
        if end > self.size:
            raise self.error(f"{label} at offset {offset} (+{size} bytes) runs past the end of "
                             f"the {self.size}-byte file: truncated")
        kind = self._view[offset + size]
        if verify:
            stored = struct.unpack_from("<I", self._view, offset + size + 1)[0]
            actual = crc32c(self._view[offset:offset + size + 1])
            if unmask_crc(stored) != actual:
                raise self.error(f"CRC32C mismatch in {label} at offset {offset} "
                                 f"(stored {unmask_crc(stored):#010x}, computed {actual:#010x}): "
                                 "the file is corrupt")
        data = self._view[offset:offset + size]
        if kind == 0:
            return data
        if kind == 1:
            try:
                return snappy_decompress(data)
            except ValueError as e:
                raise self.error(f"{label} at offset {offset}: {e}") from None
        raise self.error(f"{label} at offset {offset}: unknown compression type {kind}")

    def entries(self, block: Buffer, label: str) -> Iterator[tuple[bytes, int, int]]:
        """(key, value_start, value_end) of every entry of a block."""
        n = len(block)
        if n < 4:
            raise self.error(f"{label}: block of {n} bytes is too short")
        restarts = struct.unpack_from("<I", block, n - 4)[0]
        limit = n - 4 * (restarts + 1)
        if restarts == 0 or limit < 0:
            raise self.error(f"{label}: bad restart count {restarts}")
        pos, key = 0, b""
        try:
            while pos < limit:
                shared, pos = _varint(block, pos, limit)
                unshared, pos = _varint(block, pos, limit)
                vlen, pos = _varint(block, pos, limit)
                if shared > len(key) or pos + unshared + vlen > limit:
                    raise _Corrupt("entry overruns the block")
                key = key[:shared] + bytes(block[pos:pos + unshared])
                pos += unshared
                yield key, pos, pos + vlen
                pos += vlen
        except _Corrupt as e:
            raise self.error(f"{label}: {e}") from None

    def block_label(self, i: int) -> str:
        return f"data block {i} (offset {self.blocks[i][0]})"


def _open_buffer(path: str, whole: bool) -> Buffer:
    try:
        with open(path, "rb") as f:
            if whole or os.fstat(f.fileno()).st_size == 0:
                return f.read()
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise InputFileError(f"{path}: cannot read ({e.strerror or e})") from None


# ---------------------------------------------------------------------------------------
# Hand-rolled wire walking for V1 values (avoid per-element protobuf objects)
# ---------------------------------------------------------------------------------------
def _walk(buf: Buffer, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """Fields of one message: (number, wire_type, a, b); varint value in a for type 0."""
    out = []
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        num, wt = tag >> 3, tag & 7
        if wt == 0:
            v, pos = _varint(buf, pos, end)
            out.append((num, 0, v, 0))
        elif wt in (1, 5):
            w = 8 if wt == 1 else 4
            if pos + w > end:
                raise _Corrupt("truncated fixed-width field")
            out.append((num, wt, pos, pos + w))
            pos += w
        elif wt == 2:
            ln, pos = _varint(buf, pos, end)
            if pos + ln > end:
                raise _Corrupt("length-delimited field overruns its message")
            out.append((num, 2, pos, pos + ln))
            pos += ln
        else:
            raise _Corrupt(f"unsupported wire type {wt}")
    return out


def _varints_np(raw: Buffer) -> np.ndarray:
    """Decode a packed run of varints into uint64 with numpy."""
    b = np.frombuffer(raw, np.uint8)
    if b.size == 0:
        return np.zeros(0, np.uint64)
    ends = np.flatnonzero(b < 0x80)
    if ends.size == 0 or ends[-1] != b.size - 1:
        raise _Corrupt("truncated packed varints")
    if ends.size == b.size:
        return b.astype(np.uint64)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lens = ends - starts + 1
    if lens.max() > 10:
        raise _Corrupt("overlong varint")
    out = (b[starts] & 0x7F).astype(np.uint64)
    for k in range(1, int(lens.max())):
        sel = np.flatnonzero(lens > k)
        out[sel] |= (b[starts[sel] + k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
    return out


# TensorProto value field per DataType: (field number, "fixed" numpy dtype | "varint")
_V1_FIELDS: dict[int, tuple[int, str]] = {
    1: (5, "<f4"), 2: (6, "<f8"), 8: (9, "<f4"), 18: (12, "<f8"), 9: (10, "varint"),
    10: (11, "varint"), 19: (13, "varint"), 14: (13, "varint"), 22: (16, "varint"),
    23: (17, "varint"),
}
for _dt in (3, 4, 5, 6, 11, 12, 13, 15, 16, 17):
    _V1_FIELDS[_dt] = (7, "varint")


def _tensor_proto_values(buf: Buffer, a: int, b: int, dtype: int, count: int) -> np.ndarray:
    """Flat values of a TensorProto spanning buf[a:b], in the stored numpy dtype."""
    fields = _walk(buf, a, b)
    spec = _DTYPES[dtype]
    if spec is None:  # DT_STRING
        strings = [bytes(buf[x:y]) for n, w, x, y in fields if n == 8 and w == 2]
        out = np.empty(len(strings), dtype=object)
        out[:] = strings
        return out
    stored = np.dtype(spec[0])
    content = [(x, y) for n, w, x, y in fields if n == 4 and w == 2 and y > x]
    if content:
        x, y = content[-1]
        if (y - x) != count * stored.itemsize:
            raise _Corrupt(f"tensor_content of {y - x} bytes is not {count} x "
                           f"{stored.itemsize}-byte values")
        return np.frombuffer(buf, stored, count, x)
    number, kind = _V1_FIELDS[dtype]
    parts: list[np.ndarray] = []
    for n, w, x, y in fields:
        if n != number:
            continue
        if kind == "varint":
            parts.append(_varints_np(buf[x:y]) if w == 2 else np.array([x], np.uint64))
        elif w == 2:
            fixed = np.dtype(kind)
            if (y - x) % fixed.itemsize:
                raise _Corrupt("packed field length is not a multiple of its element size")
            parts.append(np.frombuffer(buf, fixed, (y - x) // fixed.itemsize, x))
        else:
            parts.append(np.frombuffer(buf, np.dtype(kind), 1, x))
    vals = parts[0] if len(parts) == 1 else (np.concatenate(parts) if parts else np.zeros(0, np.uint64))
    if kind == "varint":
        if dtype == 10:
            return vals != 0
        if stored.kind == "f" or dtype == _BFLOAT16:  # half / bfloat16 bits in half_val
            return vals.astype(np.uint16).view(stored)
        return vals.view(np.int64).astype(stored) if stored.kind == "i" else vals.astype(stored)
    return vals.view(stored)  # complex: pairs of floats


# ---------------------------------------------------------------------------------------
# Tensor records
# ---------------------------------------------------------------------------------------
@dataclass
class _Info:
    dtype: int
    shape: tuple[int, ...]
    shard: int = 0
    offset: int = 0
    size: int = 0
    crc: int = 0
    slices: tuple[Extents, ...] = ()
    files: tuple[int, ...] = ()  # V1: file index of each slice


def _shape(proto: Any, where: str) -> tuple[int, ...]:
    if proto.unknown_rank:
        raise _Corrupt(f"{where} has an unknown rank")
    dims = tuple(int(d.size) for d in proto.dim)
    if any(d < 0 for d in dims):
        raise _Corrupt(f"{where} has a negative dimension {dims}")
    return dims


def _to_returned(flat: np.ndarray, dtype: int, shape: tuple[int, ...], big_endian: bool = False) -> np.ndarray:
    if big_endian and flat.dtype.itemsize > 1 and flat.dtype != object:
        flat = flat.view(flat.dtype.newbyteorder(">")).astype(flat.dtype)
    if dtype == _BFLOAT16:
        flat = (flat.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return flat.reshape(shape)


def _returned_dtype(dtype: int) -> np.dtype:
    spec = _DTYPES[dtype]
    return np.dtype(object) if spec is None else np.dtype(spec[1]).newbyteorder("=")


# ---------------------------------------------------------------------------------------
# Public class
# ---------------------------------------------------------------------------------------
_DATA_RE = re.compile(r"^(.*)\.data-\d{5}-of-\d{5}$")
_STATE_RE = re.compile(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"', re.M)


class Checkpoint:  # a read-only Mapping name -> array (registered below)
    """A TensorFlow checkpoint opened for reading; see the module docstring.

    Use :meth:`open`.  ``get`` returns numpy arrays, for V2 read-only views of a
    memory-mapped data shard where possible.
    """

    def __init__(self, fmt: str, path: str, infos: dict[str, _Info], *, verify: bool,
                 data_files: list[str] | None = None, tables: list[_Table] | None = None,
                 big_endian: bool = False, slice_entries: dict[bytes, _Info] | None = None) -> None:
        """Internal; use :meth:`open`."""
        self.format, self.path, self.verify = fmt, path, verify
        self._infos, self._names = infos, sorted(infos)
        self._data_files, self._tables = data_files or [], tables or []
        self._maps: dict[int, Buffer] = {}
        self._big_endian = big_endian
        self._slice_entries = slice_entries or {}
        self._block_cache: OrderedDict[tuple[int, int], dict[bytes, tuple[Buffer, int, int]]] = OrderedDict()

    # -- opening --------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, verify: bool = False) -> Checkpoint:
        """Open a V2 prefix / ``.index`` file / checkpoint directory, or a V1 file.

        ``verify=True`` also checks the CRC32C of tensor data (V2) and of data
        blocks (V1) when tensors are read; index blocks are always checked.
        """
        t0 = time.perf_counter()
        p = os.fspath(path)
        if os.path.isdir(p):
            p = cls._resolve_dir(p)
        m = _DATA_RE.match(p)
        if p.endswith(".index") and os.path.isfile(p):
            ckpt = cls._open_v2(p[: -len(".index")], verify)
        elif os.path.isfile(p + ".index"):
            ckpt = cls._open_v2(p, verify)
        elif m and os.path.isfile(p) and os.path.isfile(m.group(1) + ".index"):
            ckpt = cls._open_v2(m.group(1), verify)
        elif os.path.isfile(p):
            ckpt = cls._open_v1([p], p, verify)
        else:  # a sharded V1 save: the pattern Saver returns, or its prefix
            shards = sorted(glob.glob(p) or glob.glob(glob.escape(p) + "-[0-9]*-of-[0-9]*"))
            if not shards:
                raise InputFileError(f"{p}: no checkpoint here: neither a V2 index "
                                     f"'{p}.index' nor a V1 checkpoint file exists")
            ckpt = cls._open_v1(shards, p, verify)
        log.debug("opened %s checkpoint %s: %d tensors in %.1f ms", ckpt.format, ckpt.path,
                  len(ckpt), 1e3 * (time.perf_counter() - t0))
        return ckpt

    @staticmethod
    def _resolve_dir(d: str) -> str:
        state = os.path.join(d, "checkpoint")
        if os.path.isfile(state):
            try:
                with open(state, encoding="utf-8", errors="replace") as f:
                    text = f.read(1 << 20)
            except OSError as e:
                raise InputFileError(f"{state}: cannot read ({e.strerror or e})") from None
            m = _STATE_RE.search(text)
            if not m:
                raise InputFileError(f"{state}: no 'model_checkpoint_path: \"...\"' line in the "
                                     "checkpoint state file")
            named = re.sub(r"\\(.)", r"\1", m.group(1))
            cand = named if os.path.isabs(named) else os.path.join(d, named)
            if not glob.glob(cand + "*"):
                moved = os.path.join(d, os.path.basename(named))  # directory was moved/copied
                if glob.glob(moved + "*"):
                    cand = moved
            return cand
        indexes = sorted(glob.glob(os.path.join(glob.escape(d), "*.index")))
        if len(indexes) == 1:
            return indexes[0]
        what = "several .index files" if indexes else "no .index file"
        raise InputFileError(f"{d}: directory holds no TensorFlow checkpoint: no 'checkpoint' "
                             f"state file and {what}")

    @classmethod
    def _open_v2(cls, prefix: str, verify: bool) -> Checkpoint:
        index_path = prefix + ".index"
        table = _Table(index_path, _open_buffer(index_path, whole=True), "index")
        msgs = get_messages()
        header = None
        raw: dict[bytes, bytes] = {}
        for i, (off, size) in enumerate(table.blocks):
            block = table.read_block(off, size, table.block_label(i), verify=True)
            for key, a, b in table.entries(block, table.block_label(i)):
                if key:
                    raw[key] = bytes(block[a:b])
                elif header is None:
                    header = msgs["BundleHeaderProto"]()
                    try:
                        header.ParseFromString(bytes(block[a:b]))
                    except DecodeError:
                        raise table.error("unparseable BundleHeaderProto") from None
        if header is None:
            raise table.error("no bundle header (empty key): not a V2 checkpoint index")
        if header.version.min_consumer > 1:
            raise table.error(f"bundle format needs a reader of version >= "
                              f"{header.version.min_consumer}; this reader knows version 1")
        nshards = header.num_shards
        if nshards < 1 and raw:
            raise table.error(f"bundle header names {nshards} data shards")
        files = [f"{prefix}.data-{i:05d}-of-{nshards:05d}" for i in range(nshards)]
        for i, f in enumerate(files):
            if not os.path.isfile(f):
                raise InputFileError(f"{f}: data shard {i} of {nshards} is missing "
                                     f"(named by {index_path})")
        entries: dict[bytes, _Info] = {}
        hidden: set[bytes] = set()
        entry_cls = msgs["BundleEntryProto"]
        for key, value in raw.items():
            e = entry_cls()
            label = key.decode("utf-8", "replace")
            try:
                e.ParseFromString(value)
                shape = _shape(e.shape, f"tensor '{label}'")
                slices = tuple(_extents(s, len(shape)) for s in e.slices)
            except (DecodeError, _Corrupt) as err:
                raise table.error(f"bad entry for '{label}': {err}") from None
            if e.slices:
                hidden.update(encode_slice_key(key, s) for s in slices)
            if not e.slices and not 0 <= e.shard_id < nshards:
                raise table.error(f"tensor '{label}' names data shard {e.shard_id} of {nshards}")
            entries[key] = _Info(int(e.dtype), shape, int(e.shard_id), int(e.offset), int(e.size),
                                 int(e.crc32c), slices)
        need = [0] * max(nshards, 0)
        for key, e in entries.items():
            if not e.slices and e.size:
                need[e.shard] = max(need[e.shard], e.offset + e.size)
        for i, f in enumerate(files):
            have = os.path.getsize(f)
            if have < need[i]:
                raise InputFileError(f"{f}: data shard is truncated: {have} bytes, but the index "
                                     f"places tensor data up to byte {need[i]}")
        infos = {k.decode("utf-8", "surrogateescape"): v for k, v in entries.items() if k not in hidden}
        return cls("v2", prefix, infos, verify=verify, data_files=files,
                   big_endian=header.endianness == 1,
                   slice_entries={k: v for k, v in entries.items() if k in hidden})

    @classmethod
    def _open_v1(cls, files: list[str], path: str, verify: bool) -> Checkpoint:
        msgs = get_messages()
        tables: list[_Table] = []
        infos: dict[str, _Info] = {}
        for fi, f in enumerate(files):
            table = _Table(f, _open_buffer(f, whole=False), "file")
            tables.append(table)
            if not table.blocks:
                raise table.error("empty table: not a V1 checkpoint")
            first = table.read_block(*table.blocks[0], table.block_label(0), verify=True)
            key, a, b = next(iter(table.entries(first, table.block_label(0))), (None, 0, 0))
            sts = msgs["SavedTensorSlices"]()
            try:
                if key != b"":
                    raise DecodeError("first key is not the metadata key")
                sts.ParseFromString(bytes(first[a:b]))
                if not sts.HasField("meta"):
                    raise DecodeError("no SavedTensorSliceMeta")
                for t in sts.meta.tensor:
                    shape = _shape(t.shape, f"tensor '{t.name}'")
                    info = infos.setdefault(t.name, _Info(int(t.type), shape))
                    if info.shape != shape or info.dtype != t.type:
                        raise _Corrupt(f"tensor '{t.name}' has conflicting shapes/dtypes across files")
                    new = tuple(_extents(s, len(shape)) for s in t.slice)
                    info.slices += new
                    info.files += (fi,) * len(new)
            except (DecodeError, _Corrupt) as e:
                raise table.error(f"not a V1 (SavedTensorSlices) checkpoint: {e}") from None
        return cls("v1", path, infos, verify=verify, tables=tables)

    # -- mapping interface -------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    def __len__(self) -> int:
        return len(self._infos)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        for n in self._names:
            yield n, self.get(n)

    def keys(self) -> list[str]:
        return list(self._names)

    def __getitem__(self, name: str) -> np.ndarray:
        """``ckpt[name]`` reads the tensor (KeyError when absent), so a Checkpoint is a Mapping."""
        return self.get(name)

    def __repr__(self) -> str:
        return f"Checkpoint({self.format}, {self.path!r}, {len(self)} tensors)"

    def _info(self, name: str) -> _Info:
        try:
            return self._infos[name]
        except KeyError:
            raise KeyError(f"no tensor {name!r} in checkpoint {self.path}") from None

    def shape(self, name: str) -> tuple[int, ...]:
        return self._info(name).shape

    def tf_dtype(self, name: str) -> str:
        """The stored TensorFlow dtype name, e.g. 'DT_BFLOAT16'."""
        return _dtype_enum_name(self._info(name).dtype)

    def dtype(self, name: str) -> np.dtype:
        """numpy dtype that :meth:`get` returns (bfloat16 -> float32, strings -> object)."""
        info = self._info(name)
        if info.dtype not in _DTYPES:
            raise InputFileError(f"{self.path}: tensor '{name}' has dtype "
                                 f"{_dtype_enum_name(info.dtype)}, which this reader does not support")
        return _returned_dtype(info.dtype)

    def get(self, name: str) -> np.ndarray:
        info = self._info(name)
        self.dtype(name)  # raises for unsupported dtypes
        try:
            if self.format == "v2":
                if info.slices:
                    return self._assemble(name, info, self._read_v2_slice)
                return self._read_v2(name, info)
            return self._assemble(name, info, self._read_v1_slice)
        except (_Corrupt, ValueError) as e:  # ValueError: numpy refusing malformed sizes
            raise InputFileError(f"{self.path}: tensor '{name}': {e}") from None

    # -- V2 ----------------------------------------------------------------------------
    def _shard(self, i: int) -> Buffer:
        if i not in self._maps:
            self._maps[i] = _open_buffer(self._data_files[i], whole=False)
        return self._maps[i]

    def _read_v2(self, name: str, info: _Info) -> np.ndarray:
        count = int(np.prod(info.shape, dtype=np.int64))
        spec = _DTYPES[info.dtype]
        if spec is not None:
            stored = np.dtype(spec[0])
            if info.size != count * stored.itemsize:
                raise InputFileError(f"{self.path}.index: tensor '{name}' records {info.size} bytes "
                                     f"but shape {list(info.shape)} x {stored.itemsize}-byte "
                                     f"{_dtype_enum_name(info.dtype)} needs {count * stored.itemsize}")
        if info.size == 0 and count == 0:
            return np.zeros(info.shape, _returned_dtype(info.dtype))
        path = self._data_files[info.shard]
        buf = self._shard(info.shard)
        if info.offset < 0 or info.offset + info.size > len(buf):
            raise InputFileError(f"{path}: data shard is truncated: tensor '{name}' needs bytes "
                                 f"[{info.offset}, {info.offset + info.size}) of a "
                                 f"{len(buf)}-byte file")
        view = memoryview(buf)[info.offset:info.offset + info.size]
        if spec is None:
            return self._v2_strings(name, path, view, count, info)
        if self.verify:
            actual = crc32c(view)
            if actual != unmask_crc(info.crc):
                raise InputFileError(f"{path}: CRC32C mismatch for tensor '{name}' (stored "
                                     f"{unmask_crc(info.crc):#010x}, computed {actual:#010x})")
        flat = np.frombuffer(view, np.dtype(spec[0]), count)
        return _to_returned(flat, info.dtype, info.shape, self._big_endian)

    def _v2_strings(self, name: str, path: str, view: memoryview, count: int, info: _Info) -> np.ndarray:
        # [varint64 length] * count, masked CRC32C of the lengths (as uint32, or uint64
        # when too big), string bytes; the entry CRC covers lengths, that CRC and bytes.
        try:
            pos, lens = 0, []
            for _ in range(count):
                n, pos = _varint(view, pos, len(view))
                lens.append(n)
            if pos + 4 > len(view):
                raise _Corrupt("string lengths overrun the entry")
            crc = 0
            if self.verify:
                for n in lens:
                    crc = crc32c(struct.pack("<I" if n <= 0xFFFFFFFF else "<Q", n), crc)
                if unmask_crc(struct.unpack_from("<I", view, pos)[0]) != crc:
                    raise _Corrupt("CRC32C mismatch in the string lengths")
                crc = crc32c(view[pos:pos + 4], crc)
            pos += 4
            out = np.empty(count, dtype=object)
            for i, n in enumerate(lens):
                if pos + n > len(view):
                    raise _Corrupt("string bytes overrun the entry")
                out[i] = bytes(view[pos:pos + n])
                pos += n
                if self.verify:
                    crc = crc32c(out[i], crc)
            if self.verify and crc != unmask_crc(info.crc):
                raise _Corrupt("CRC32C mismatch")
        except _Corrupt as e:
            raise InputFileError(f"{path}: string tensor '{name}': {e}") from None
        return out.reshape(info.shape)

    def _read_v2_slice(self, name: str, info: _Info, k: int) -> np.ndarray:
        key = encode_slice_key(name, info.slices[k])
        entry = self._slice_entries.get(key)
        if entry is None:
            raise _Corrupt(f"slice {info.slices[k]} has no data entry in the index")
        return self._read_v2(f"{name} slice {info.slices[k]}", entry)

    # -- V1 ----------------------------------------------------------------------------
    def _v1_block(self, fi: int, bi: int) -> dict[bytes, tuple[Buffer, int, int]]:
        """key -> (block, value start, value end) of one data block; a small LRU cache."""
        cache = self._block_cache
        if (fi, bi) not in cache:
            table = self._tables[fi]
            label = table.block_label(bi)
            block = table.read_block(*table.blocks[bi], label, verify=self.verify)
            cache[fi, bi] = {k: (block, a, b) for k, a, b in table.entries(block, label)}
            while len(cache) > 8:
                cache.popitem(last=False)
        cache.move_to_end((fi, bi))
        return cache[fi, bi]

    def _read_v1_slice(self, name: str, info: _Info, k: int) -> np.ndarray:
        ext = info.slices[k]
        fi = info.files[k]
        table = self._tables[fi]
        key = encode_slice_key(name, ext)
        bi = bisect.bisect_left(table.separators, key)
        hit = self._v1_block(fi, bi).get(key) if bi < len(table.blocks) else None
        if hit is None:
            raise _Corrupt(f"data for slice {ext} is missing from {table.path}")
        buf, a, b = hit
        _, sub = _slice_index(ext, info.shape)
        count = int(np.prod(sub, dtype=np.int64))
        top = _walk(buf, a, b)
        ss = [f for f in top if f[0] == 2 and f[1] == 2]
        if not ss:
            raise _Corrupt(f"record for slice {ext} holds no SavedSlice")
        tp = [f for f in _walk(buf, ss[-1][2], ss[-1][3]) if f[0] == 3 and f[1] == 2]
        if tp:
            flat = _tensor_proto_values(buf, tp[-1][2], tp[-1][3], info.dtype, count)
        else:
            flat = np.zeros(0, _returned_dtype(info.dtype))
        if flat.size != count:
            raise _Corrupt(f"slice {ext} holds {flat.size} values, its shape {list(sub)} needs {count}")
        return _to_returned(flat, info.dtype, sub)

    # -- slices --------------------------------------------------------------------------
    def _assemble(self, name: str, info: _Info, read: Any) -> np.ndarray:
        shape = info.shape
        if not info.slices:
            raise _Corrupt("no slices recorded for this tensor")
        if len(info.slices) == 1 and all(l == -1 or (s == 0 and l == d)
                                         for (s, l), d in zip(info.slices[0], shape)):
            return read(name, info, 0).reshape(shape)
        out = np.empty(shape, self.dtype(name))
        seen = np.zeros(shape, bool)  # slices must tile the tensor exactly
        for k, ext in enumerate(info.slices):
            idx, sub = _slice_index(ext, shape)
            if seen[idx].any():
                raise _Corrupt(f"slice {ext} overlaps another slice")
            seen[idx] = True
            out[idx] = read(name, info, k).reshape(sub)
        if not seen.all():
            raise _Corrupt(f"its slices cover {int(seen.sum())} of {out.size} elements")
        return out

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Drop the file mappings (arrays already returned keep theirs alive)."""
        self._maps.clear()
        self._tables.clear()
        self._block_cache.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

from collections.abc import Mapping as _Mapping  # noqa: E402

_Mapping.register(Checkpoint)
