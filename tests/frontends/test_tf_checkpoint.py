"""xconv.frontends.tensorflow.checkpoint against TensorFlow's own writers and readers.

Every checkpoint here is written by TensorFlow 2.21 (``tf.compat.v1.train.Saver``
V2 and V1, ``tf.train.Checkpoint``, the ``SaveV2``/``SaveSlices`` ops); every
value is compared exactly with ``tf.train.load_checkpoint(...).get_tensor``.
TF's V1 reader refuses partitioned ("sliced") V1 tensors, so those are
compared with TF's ``Restore`` op, which assembles them.  Snappy-compressed
tables (which TF no longer writes) are made by re-packing TF's own tables with
a test-only SSTable writer and snappy compressor, and TensorFlow's reader must
read the re-packed files back identically before ours is checked on them.
"""
from __future__ import annotations

import importlib
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xconv.errors import InputFileError
from xconv.frontends.tensorflow import checkpoint as ck
from xconv.frontends.tensorflow.checkpoint import Checkpoint

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
tf1 = tf.compat.v1
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------
# references and comparison
# ---------------------------------------------------------------------------------------
def reference(path: str) -> dict[str, Any]:
    """name -> value as TensorFlow reads it (Restore op for sliced V1 tensors)."""
    reader = tf.train.load_checkpoint(path)
    dtypes = reader.get_variable_to_dtype_map()
    out: dict[str, Any] = {}
    for name in reader.get_variable_to_shape_map():
        try:
            out[name] = reader.get_tensor(name)
        except tf.errors.UnimplementedError:  # "Sliced checkpoints are not supported"
            out[name] = tf.raw_ops.Restore(file_pattern=path, tensor_name=name, dt=dtypes[name]).numpy()
    return out


def assert_same(got: np.ndarray, ref: Any, name: str) -> None:
    ref = np.asarray(ref)
    assert got.shape == ref.shape, name
    if ref.dtype == object or ref.dtype.kind == "S":
        assert got.dtype == object, name
        assert [bytes(x) for x in got.ravel()] == [bytes(x) for x in ref.ravel()], name
        return
    if ref.dtype.name == "bfloat16":
        assert got.dtype == np.float32, name
        ref = ref.astype(np.float32)
    else:
        assert got.dtype == ref.dtype, name
    assert np.array_equal(got, ref), name


def check_all(path: str, *, expect_format: str, **kw: Any) -> Checkpoint:
    ref = reference(path)
    c = Checkpoint.open(path, **kw)
    assert c.format == expect_format
    assert c.names() == sorted(ref) and len(c) == len(ref)
    for name in ref:
        assert name in c
        got = c.get(name)
        assert c.shape(name) == got.shape and c.dtype(name) == got.dtype
        assert_same(got, ref[name], name)
    return c


# ---------------------------------------------------------------------------------------
# checkpoints written by TensorFlow (module scope: TF work is slow)
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saver_ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One tf.compat.v1 graph saved four ways: V2 and V1, each whole and sharded over 2 devices."""
    d = tmp_path_factory.mktemp("saver")
    rng = np.random.default_rng(1)
    g = tf.Graph()
    with g.as_default():
        common = [
            tf1.get_variable("conv1/weights", initializer=rng.standard_normal((3, 3, 2, 4)).astype(np.float32)),
            tf1.get_variable("fc/biases", initializer=rng.standard_normal(5)),  # float64
            tf1.get_variable("step", initializer=np.int64(7)),
            tf1.get_variable("scalar_f", initializer=np.float32(-2.5)),
            tf1.get_variable("ints", initializer=np.array([-3, 0, 2**31 - 1], np.int32)),
            tf1.get_variable("flags", initializer=np.array([True, False, True])),
            tf1.get_variable("u8", initializer=np.arange(250, 256, dtype=np.uint8)),
            tf1.get_variable("i8", initializer=np.array([-128, -1, 0, 127], np.int8)),
            tf1.get_variable("half", initializer=rng.standard_normal((2, 3)).astype(np.float16)),
            tf1.get_variable("empty", initializer=np.zeros((0, 4), np.float32)),
            tf1.get_variable("part", shape=[10, 3], initializer=tf1.random_normal_initializer(seed=3),
                             partitioner=tf1.fixed_size_partitioner(3)),
            # 2M floats (8 MB): far larger than an SSTable block (256 KiB)
            tf1.get_variable("big", initializer=rng.standard_normal((1000, 2000)).astype(np.float32)),
        ]
        bf16 = tf1.get_variable("bf16", initializer=tf.constant(rng.standard_normal(9), tf.bfloat16))
        with tf.device("/cpu:1"):
            other = [tf1.get_variable("dev1/w", initializer=np.arange(6, dtype=np.int64).reshape(2, 3)),
                     tf1.get_variable("dev1/part", shape=[7, 2], initializer=tf1.random_normal_initializer(seed=4),
                                      partitioner=tf1.fixed_size_partitioner(2))]
        allv = [*common, bf16, *other]
        # V1 cannot hold bfloat16 (TF aborts), so its saver leaves it out.
        savers = {"v2": tf1.train.Saver(allv), "sharded": tf1.train.Saver(allv, sharded=True),
                  "v1": tf1.train.Saver([*common, *other], write_version=tf1.train.SaverDef.V1),
                  "v1sharded": tf1.train.Saver([*common, *other], sharded=True,
                                               write_version=tf1.train.SaverDef.V1)}
        out = {}
        with tf1.Session(graph=g, config=tf1.ConfigProto(device_count={"CPU": 2})) as sess:
            sess.run(tf1.global_variables_initializer())
            for key, saver in savers.items():
                (d / key).mkdir()
                out[key] = saver.save(sess, str(d / key / "model.ckpt"), write_meta_graph=False)
    return out


@pytest.fixture(scope="module")
def object_ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tf.train.Checkpoint (object-based names, the object-graph string tensor)."""
    d = tmp_path_factory.mktemp("object")
    rng = np.random.default_rng(2)
    m = tf.Module()
    m.dense = tf.Module()
    m.dense.kernel = tf.Variable(rng.standard_normal((4, 3)).astype(np.float32))
    m.dense.bias = tf.Variable(np.zeros(3, np.float32))
    m.bf = tf.Variable(tf.constant(rng.standard_normal((2, 5)), tf.bfloat16))
    m.count = tf.Variable(np.int64(42))
    m.names = tf.Variable(tf.constant([b"ab", b"", b"x\x00\xffy"]))
    m.empty = tf.Variable(np.zeros((3, 0, 2), np.float64))
    m.c64 = tf.Variable(np.array([1 + 2j, -3.5j], np.complex64))
    return tf.train.Checkpoint(model=m).write(str(d / "ckpt"))


@pytest.fixture(scope="module")
def raw_ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """SaveV2 with 600 long names (several index blocks) and SaveSlices (V1, slices)."""
    d = tmp_path_factory.mktemp("raw")
    names = [f"layer_{i:04d}/" + "w" * 900 for i in range(600)]
    tensors = [tf.constant(np.full((2,), i, np.float32)) for i in range(600)]
    tf.raw_ops.SaveV2(prefix=str(d / "many"), tensor_names=names, shape_and_slices=[""] * 600, tensors=tensors)
    rng = np.random.default_rng(3)
    p = rng.standard_normal((6, 4)).astype(np.float32)
    tf.raw_ops.SaveSlices(
        filename=str(d / "slices.ckpt"),
        tensor_names=["a", "p", "p", "p", "s", "c", "h"],
        shapes_and_slices=["", "6 4 0,2:0,4", "6 4 2,3:-", "6 4 5,1:-", "", "", ""],
        data=[tf.constant(np.arange(-3, 3, dtype=np.int16)), tf.constant(p[0:2]), tf.constant(p[2:5]),
              tf.constant(p[5:6]), tf.constant([b"one", b"", b"three"]),
              tf.constant(np.array([1 - 1j, 2.5j], np.complex128)),
              tf.constant(rng.standard_normal(5).astype(np.float16))])
    wide = rng.standard_normal((100000, 2)).astype(np.float32)
    tf.raw_ops.SaveV2(prefix=str(d / "wide"), tensor_names=["t"] * 3,
                      shape_and_slices=["100000 2 0,70000:-", "100000 2 70000,3:-", "100000 2 70003,29997:-"],
                      tensors=[wide[:70000], wide[70000:70003], wide[70003:]])
    return {"many": str(d / "many"), "slices": str(d / "slices.ckpt"), "wide": str(d / "wide")}


# ---------------------------------------------------------------------------------------
# values against TensorFlow
# ---------------------------------------------------------------------------------------
def test_saver_v2(saver_ckpts: dict[str, str]) -> None:
    c = check_all(saver_ckpts["v2"], expect_format="v2", verify=True)
    assert c.shape("part") == (10, 3) and c.shape("empty") == (0, 4) and c.shape("step") == ()
    assert c.dtype("bf16") == np.float32 and c.tf_dtype("bf16") == "DT_BFLOAT16"
    assert not c.get("big").flags.writeable  # a view of the memory-mapped data shard


def test_saver_v2_sharded(saver_ckpts: dict[str, str]) -> None:
    prefix = saver_ckpts["sharded"]
    shards = sorted(p.name for p in Path(prefix).parent.glob("model.ckpt.data-*"))
    assert shards == ["model.ckpt.data-00000-of-00002", "model.ckpt.data-00001-of-00002"]
    check_all(prefix, expect_format="v2", verify=True)


def test_saver_v1_with_partitions(saver_ckpts: dict[str, str]) -> None:
    path = saver_ckpts["v1"]
    assert not os.path.exists(path + ".index")
    c = check_all(path, expect_format="v1", verify=True)
    assert {"part", "dev1/part", "big"} <= set(c.names())


def test_saver_v1_sharded(saver_ckpts: dict[str, str]) -> None:
    path = saver_ckpts["v1sharded"]
    files = sorted(p.name for p in Path(path).parent.glob("model.ckpt-*"))
    assert files == ["model.ckpt-00000-of-00002", "model.ckpt-00001-of-00002"], files
    c = check_all(path, expect_format="v1", verify=True)
    assert c.names() == Checkpoint.open(saver_ckpts["v1"]).names()
    assert Checkpoint.open(Path(path).parent).names() == c.names()  # via the state file


def test_tf_train_checkpoint(object_ckpt: str) -> None:
    c = check_all(object_ckpt, expect_format="v2", verify=True)
    assert "model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE" in c
    assert c.dtype("_CHECKPOINTABLE_OBJECT_GRAPH") == object


def test_many_index_blocks(raw_ckpts: dict[str, str]) -> None:
    table = ck._Table(raw_ckpts["many"] + ".index", Path(raw_ckpts["many"] + ".index").read_bytes(), "index")
    assert len(table.blocks) >= 2  # the listing really spans several data blocks
    c = check_all(raw_ckpts["many"], expect_format="v2")
    assert len(c) == 600


def test_v1_save_slices(raw_ckpts: dict[str, str]) -> None:
    c = check_all(raw_ckpts["slices"], expect_format="v1", verify=True)
    assert c.dtype("s") == object and c.dtype("h") == np.float16


def test_open_forms_and_items(saver_ckpts: dict[str, str], tmp_path: Path) -> None:
    prefix = saver_ckpts["v2"]
    first = Checkpoint.open(prefix)
    for form in (prefix + ".index", prefix + ".data-00000-of-00001", Path(prefix).parent):
        assert Checkpoint.open(form).names() == first.names()
    # a moved directory whose state file still names the old absolute path
    moved = tmp_path / "moved"
    shutil.copytree(Path(prefix).parent, moved)
    state = (moved / "checkpoint").read_text()
    assert f'model_checkpoint_path: "{prefix}"' in state
    (moved / "checkpoint").write_text(state.replace(str(Path(prefix).parent), "/gone/elsewhere"))
    with Checkpoint.open(moved) as c:
        assert c.path == str(moved / "model.ckpt")
        assert dict((k, v.shape) for k, v in c.items()) == {n: first.shape(n) for n in first.names()}


def test_schema_matches_tensorflow_protos() -> None:
    """Every field of our schema has TF's number, type, label and oneof; DataType agrees."""
    from google.protobuf import descriptor_pb2  # noqa: PLC0415
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, tensor_slice_pb2, types_pb2  # noqa: PLC0415
    from tensorflow.core.framework import versions_pb2  # noqa: PLC0415
    from tensorflow.core.protobuf import tensor_bundle_pb2  # noqa: PLC0415
    from tensorflow.core.util import saved_tensor_slice_pb2  # noqa: PLC0415

    def fields(d: Any, prefix: str = "") -> dict[str, tuple[Any, ...]]:
        out = {prefix + f.name: (f.number, f.type, f.label, f.type_name.rsplit(".", 1)[-1],
                                 f.HasField("oneof_index")) for f in d.field}
        for n in d.nested_type:
            out.update(fields(n, prefix + n.name + "."))
        return out

    ours = {m.name: fields(m) for m in ck._build_file_descriptor().message_type}
    modules = (tensor_pb2, tensor_shape_pb2, tensor_slice_pb2, versions_pb2, tensor_bundle_pb2,
               saved_tensor_slice_pb2)
    for name, mine in ours.items():
        cls = next(getattr(m, name) for m in modules if hasattr(m, name))
        theirs = descriptor_pb2.DescriptorProto()
        cls.DESCRIPTOR.CopyToProto(theirs)
        tf_fields = fields(theirs)
        assert {k: tf_fields.get(k) for k in mine} == mine, name
    assert {v.name: v.number for v in ck._build_file_descriptor().enum_type[0].value} == \
        {v.name: v.number for v in types_pb2.DataType.DESCRIPTOR.values if v.number < 100}


def test_no_tensorflow_import() -> None:
    code = ("import sys; import xconv.frontends.tensorflow.checkpoint as m; "
            "m.get_messages(); print(sorted(k for k in sys.modules if k.split('.')[0] in "
            "('tensorflow', 'tf_keras', 'keras')))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(ROOT), timeout=120, check=True)
    assert res.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------
# primitives
# ---------------------------------------------------------------------------------------
def test_crc32c_and_snappy_primitives() -> None:
    assert ck.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert ck.crc32c(b"\x00" * 32) == 0x8A9136AA  # RFC 3720 B.4 test vectors
    assert ck.crc32c(b"\xff" * 32) == 0x62A8AB43
    assert ck.crc32c(bytes(range(32))) == 0x46DD794E
    rng = np.random.default_rng(0)
    for n in (70_000, 1_000_003, (1 << 20) + 4096 * 4 * 64):  # numpy lanes + fold + tail
        data = rng.bytes(n)
        assert ck.crc32c(data) == ck._crc_raw_py(0xFFFFFFFF, data) ^ 0xFFFFFFFF
        assert ck.crc32c(data[n // 3:], ck.crc32c(data[:n // 3])) == ck.crc32c(data)
    assert ck.unmask_crc(ck.mask_crc(0x12345678)) == 0x12345678
    # preamble 92; a 70-byte literal (1-byte length); copies with 1-, 2- and 4-byte
    # offsets, the last one overlapping its own output
    lit = bytes(range(70))
    stream = (bytes([92, 60 << 2, 69]) + lit + bytes([(3 << 2) | 1, 65])
              + bytes([(9 << 2) | 2, 70, 0]) + bytes([(4 << 2) | 3, 3, 0, 0, 0]))
    assert ck.snappy_decompress(stream) == _expected_snappy(lit)
    for data in (b"", b"a" * 1000, rng.bytes(5000), bytes(20000), lit * 50):
        assert ck.snappy_decompress(snappy_compress(data)) == data
    with pytest.raises(ValueError):
        ck.snappy_decompress(bytes([10, 0x01 << 2 | 1, 200]))  # copy before any output


def _expected_snappy(lit: bytes) -> bytes:
    out = bytearray(lit)
    for length, offset in ((7, 65), (10, 70), (5, 3)):
        for _ in range(length):
            out.append(out[-offset])
    return bytes(out)


def test_slice_keys_match_tensorflow(raw_ckpts: dict[str, str]) -> None:
    table = ck._Table(raw_ckpts["slices"], Path(raw_ckpts["slices"]).read_bytes(), "file")
    keys = {k for i, h in enumerate(table.blocks)
            for k, _, _ in table.entries(table.read_block(*h, "b", True), "b")}
    want = {ck.encode_slice_key("p", ((0, 2), (0, 4))), ck.encode_slice_key("p", ((2, 3), (0, -1))),
            ck.encode_slice_key("p", ((5, 1), (0, -1))), ck.encode_slice_key("a", ((0, -1),))}
    assert want <= keys
    assert ck._oc_signed(0x424242) == bytes.fromhex("f0424242")  # examples from ordered_code.cc
    assert ck._oc_signed(-0x800) == bytes.fromhex("3800")
    # multi-byte starts/lengths: keys TF wrote for slices of a 100000 x 2 tensor
    c = check_all(raw_ckpts["wide"], expect_format="v2")
    assert c.shape("t") == (100000, 2)
    index = raw_ckpts["wide"] + ".index"
    keys = {k for k, _ in table_items(index)}
    for ext in (((0, 70000), (0, -1)), ((70000, 3), (0, -1)), ((70003, 29997), (0, -1))):
        assert ck.encode_slice_key("t", ext) in keys


# ---------------------------------------------------------------------------------------
# snappy-compressed tables (re-packed from TF's own, validated by TF's reader)
# ---------------------------------------------------------------------------------------
def snappy_compress(data: bytes) -> bytes:
    """Test-only greedy snappy encoder using every element kind."""
    out = bytearray()
    n = len(data)
    v = n
    while True:  # varint length preamble
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            break
    table: dict[bytes, int] = {}
    i = lit_start = misses = 0

    def literal(a: int, b: int) -> None:
        while a < b:
            size = min(b - a, 65536)
            if size <= 60:
                out.append((size - 1) << 2)
            else:
                nb = 1 if size - 1 < 256 else 2
                out.append((59 + nb) << 2)
                out.extend((size - 1).to_bytes(nb, "little"))
            out.extend(data[a:a + size])
            a += size

    while i + 4 <= n:
        key = data[i:i + 4]
        j = table.get(key)
        table[key] = i
        if j is None or i - j > 65535:
            misses += 1
            i += 1 + (misses >> 5)  # skip faster through incompressible data, as snappy does
            continue
        misses = 0
        length = 4
        while i + length < n and data[j + length] == data[i + length] and length < 64:
            length += 1
        literal(lit_start, i)
        off = i - j
        if length <= 11 and off < 2048:
            out += bytes([((off >> 8) << 5) | ((length - 4) << 2) | 1, off & 0xFF])
        elif off % 3:
            out += bytes([((length - 1) << 2) | 2]) + off.to_bytes(2, "little")
        else:
            out += bytes([((length - 1) << 2) | 3]) + off.to_bytes(4, "little")
        i += length
        lit_start = i
    literal(lit_start, n)
    return bytes(out)


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def write_table(path: str, items: list[tuple[bytes, bytes]], *, block_size: int, snappy: bool) -> None:
    """Test-only LevelDB table writer (prefix compression, restarts every 16 keys)."""
    out = bytearray()

    def block(entries: list[tuple[bytes, bytes]]) -> bytes:
        body, restarts, prev = bytearray(), [], b""
        for i, (k, v) in enumerate(entries):
            shared = 0
            if i % 16:
                while shared < min(len(k), len(prev)) and k[shared] == prev[shared]:
                    shared += 1
            else:
                restarts.append(len(body))
            body += _varint(shared) + _varint(len(k) - shared) + _varint(len(v)) + k[shared:] + v
            prev = k
        restarts = restarts or [0]
        return bytes(body + b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts)))

    def emit(raw: bytes, compress: bool) -> bytes:
        data, kind = (snappy_compress(raw), 1) if compress else (raw, 0)
        handle = _varint(len(out)) + _varint(len(data))
        out.extend(data + bytes([kind]) + struct.pack("<I", ck.mask_crc(ck.crc32c(data + bytes([kind])))))
        return handle

    index: list[tuple[bytes, bytes]] = []
    pending: list[tuple[bytes, bytes]] = []
    size = 0
    for k, v in items:
        pending.append((k, v))
        size += len(k) + len(v)
        if size >= block_size:
            index.append((k, emit(block(pending), snappy)))
            pending, size = [], 0
    if pending:
        index.append((pending[-1][0], emit(block(pending), snappy)))
    meta = emit(block([]), False)
    idx = emit(block(index), snappy)
    footer = (meta + idx).ljust(40, b"\x00") + struct.pack("<Q", 0xDB4775248B80FB57)
    Path(path).write_bytes(bytes(out) + footer)


def table_items(path: str) -> list[tuple[bytes, bytes]]:
    t = ck._Table(path, Path(path).read_bytes(), "x")
    items = []
    for h in t.blocks:
        b = t.read_block(*h, "b", True)
        items += [(k, bytes(b[x:y])) for k, x, y in t.entries(b, "b")]
    return items


def test_snappy_tables_v2_and_v1(saver_ckpts: dict[str, str], tmp_path: Path) -> None:
    # V2: re-pack the index with small snappy blocks; data shards are copied as they are.
    src = Path(saver_ckpts["v2"])
    for f in src.parent.glob("model.ckpt.data-*"):
        shutil.copy(f, tmp_path / f.name)
    write_table(str(tmp_path / "model.ckpt.index"), table_items(str(src) + ".index"), block_size=200, snappy=True)
    assert reference(str(tmp_path / "model.ckpt")).keys() == reference(str(src)).keys()
    check_all(str(tmp_path / "model.ckpt"), expect_format="v2", verify=True)
    # V1: the whole file, data included, with snappy blocks.
    write_table(str(tmp_path / "v1.ckpt"), table_items(saver_ckpts["v1"]), block_size=4096, snappy=True)
    c = check_all(str(tmp_path / "v1.ckpt"), expect_format="v1", verify=True)
    for name in c.names():
        assert_same(c.get(name), Checkpoint.open(saver_ckpts["v1"]).get(name), name)


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------
def _copy_v2(prefix: str, dst: Path) -> Path:
    for f in Path(prefix).parent.glob(Path(prefix).name + ".*"):
        shutil.copy(f, dst / f.name)
    return dst / Path(prefix).name


def _raises(path: Any, *words: str, get: str | None = None, **kw: Any) -> str:
    with pytest.raises(InputFileError) as info:
        c = Checkpoint.open(path, **kw)
        if get is not None:
            c.get(get)
    msg = str(info.value)
    for w in words:
        assert w in msg, msg
    return msg


def test_bad_index_files(saver_ckpts: dict[str, str], tmp_path: Path) -> None:
    p = _copy_v2(saver_ckpts["sharded"], tmp_path)
    index = Path(str(p) + ".index")
    good = index.read_bytes()
    index.write_bytes(good[:30])
    _raises(p, "model.ckpt.index", "too short", "truncated")
    index.write_bytes(good[:-7])
    _raises(p, "model.ckpt.index", "magic", "truncated")
    index.write_bytes(b"NOT AN SSTABLE" * 10)
    _raises(p, "magic")
    flipped = bytearray(good)
    flipped[20] ^= 0x40  # inside the first data block (header entry / first keys)
    index.write_bytes(bytes(flipped))
    _raises(p, "CRC32C mismatch", "data block 0", "model.ckpt.index")
    index.write_bytes(good)
    Path(str(p) + ".data-00001-of-00002").unlink()
    _raises(p, "data-00001-of-00002", "missing")


def test_bad_data_shards(saver_ckpts: dict[str, str], tmp_path: Path) -> None:
    p = _copy_v2(saver_ckpts["v2"], tmp_path)
    data = Path(str(p) + ".data-00000-of-00001")
    good = data.read_bytes()
    data.write_bytes(good[: len(good) // 2])
    _raises(p, "data-00000-of-00001", "truncated")
    bad = bytearray(good)
    c = Checkpoint.open(saver_ckpts["v2"])
    info = c._infos["big"]
    bad[info.offset + 100] ^= 1
    data.write_bytes(bytes(bad))
    assert not np.array_equal(Checkpoint.open(p).get("big"), c.get("big"))  # verify=False: silent
    _raises(p, "CRC32C mismatch", "'big'", get="big", verify=True)


def test_bad_entries(saver_ckpts: dict[str, str], tmp_path: Path) -> None:
    from tensorflow.core.protobuf import tensor_bundle_pb2  # noqa: PLC0415

    p = _copy_v2(saver_ckpts["v2"], tmp_path)
    items = table_items(str(p) + ".index")

    def patched(name: bytes, **fields: int) -> None:
        out = []
        for k, v in items:
            if k == name:
                e = tensor_bundle_pb2.BundleEntryProto.FromString(v)
                for f, val in fields.items():
                    setattr(e, f, val)
                v = e.SerializeToString()
            out.append((k, v))
        write_table(str(p) + ".index", out, block_size=1 << 18, snappy=False)

    patched(b"ints", size=8)
    _raises(p, "'ints'", "8 bytes", "needs 12", get="ints")
    patched(b"ints", dtype=21)  # DT_VARIANT
    _raises(p, "'ints'", "DT_VARIANT", get="ints")
    patched(b"ints", dtype=99)
    _raises(p, "'ints'", "99", get="ints")


def test_bad_paths(saver_ckpts: dict[str, str], tmp_path: Path) -> None:
    _raises(tmp_path, "no TensorFlow checkpoint", "no 'checkpoint' state file")
    _raises(tmp_path / "nothing", "no checkpoint here")
    (tmp_path / "junk.ckpt").write_bytes(os.urandom(4096))
    _raises(tmp_path / "junk.ckpt", "junk.ckpt", "magic")
    v1 = Path(saver_ckpts["v1"]).read_bytes()
    (tmp_path / "v1.ckpt").write_bytes(v1[: len(v1) // 2] + v1[-48:])  # footer kept, body cut
    _raises(tmp_path / "v1.ckpt", "v1.ckpt", "truncated")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "checkpoint").write_text('model_checkpoint_path: "gone.ckpt"\n')
    _raises(tmp_path / "state", "gone.ckpt", "no checkpoint here")


# ---------------------------------------------------------------------------------------
# real TF-slim variable naming
# ---------------------------------------------------------------------------------------
def import_tf_slim() -> Any:
    try:
        from xconv.frontends.tensorflow.tfimport import import_tf_slim as imp  # noqa: PLC0415
        return imp()
    except ImportError:
        sys.modules.setdefault("tf_keras.legacy_tf_layers", importlib.import_module("tf_keras.src.legacy_tf_layers"))
        return importlib.import_module("tf_slim")


@pytest.mark.slow
def test_tf_slim_resnet_v1_50(tmp_path: Path) -> None:
    slim = import_tf_slim()
    from tf_slim.nets import resnet_v1  # noqa: PLC0415

    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [1, 224, 224, 3])
        with slim.arg_scope(resnet_v1.resnet_arg_scope()):
            resnet_v1.resnet_v1_50(x, num_classes=1000, is_training=False)
        saver = tf1.train.Saver()
        with tf1.Session(graph=g) as sess:
            sess.run(tf1.global_variables_initializer())
            path = saver.save(sess, str(tmp_path / "resnet_v1_50.ckpt"), write_meta_graph=False)
    c = check_all(path, expect_format="v2")
    assert c.shape("resnet_v1_50/conv1/weights") == (7, 7, 3, 64)
    assert c.shape("resnet_v1_50/block4/unit_3/bottleneck_v1/conv3/BatchNorm/moving_variance") == (2048,)
    assert len(c) > 250
