"""ImageNet-style validation sets in the formats users hold them in.

Every source yields :class:`Sample` records: a key (the image's name), a
label in **sorted-synset order** (0..999; ``None`` when unlabelled) and the
image as stored (encoded bytes, or a raw HWC RGB uint8 array).  Decoding is
left to the caller (the evaluation's worker pool).

* ``folder``: images in a directory plus a labels file with ``name label``
  lines (Caffe's ``val.txt``), or the devkit's
  ``ILSVRC2012_validation_ground_truth.txt`` (one ILSVRC2012_ID per image, in
  ``ILSVRC2012_val_00000001`` order) mapped through ``--synset-order`` (the
  1000 WNIDs in ILSVRC2012_ID order, one per line).
* ``synsets``: one sub-directory per WNID (``train/``-style tree); the class
  index is the rank of the WNID in sorted order.
* ``lmdb``: Caffe ``Datum`` records (``convert_imageset``): encoded (the
  image file's bytes) or raw (CHW uint8, BGR as OpenCV decoded it).
* ``tfrecord``: ``validation-?????-of-?????`` shards in the Inception
  layout (``tf.train.Example`` with ``image/encoded`` and
  ``image/class/label`` 1..1000, 0 being background): labels are shifted
  down by one.

Nothing here imports Caffe or TensorFlow: Datum and Example are decoded with
:mod:`xconv.wire`, TFRecord framing is checked with CRC-32C.
"""
from __future__ import annotations

import glob
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np

from ..errors import InputFileError
from ..wire import decode_fields, packed_varints

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp"}
Image = Union[bytes, np.ndarray]


@dataclass
class Sample:
    key: str
    label: int | None
    image: Image  # encoded bytes, or HWC RGB uint8


@dataclass
class Entry:
    """Where a sample lives (cheap to list; :meth:`Dataset.read` fetches it)."""

    key: str
    label: int | None
    ref: object


class Dataset:
    """A list of entries plus a reader; ``select`` makes limited/deterministic subsets."""

    kind = "?"

    def __init__(self, path: str, entries: list[Entry]) -> None:
        self.path = path
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def labelled(self) -> bool:
        return bool(self.entries) and all(e.label is not None for e in self.entries)

    def read(self, e: Entry) -> Image:
        raise NotImplementedError

    def samples(self, entries: Sequence[Entry] | None = None) -> Iterator[Sample]:
        for e in self.entries if entries is None else entries:
            yield Sample(e.key, e.label, self.read(e))

    def select(self, limit: int | None = None, subset: int | None = None, seed: int = 0) -> list[Entry]:
        """The first ``limit`` entries, or ``subset`` entries drawn at random with ``seed``
        (kept in dataset order: the same subset for every run and format)."""
        es = self.entries
        if subset is not None and subset < len(es):
            idx = np.sort(np.random.default_rng(seed).choice(len(es), size=subset, replace=False))
            es = [es[i] for i in idx]
        if limit is not None:
            es = es[:limit]
        return list(es)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- labels
def read_label_file(path: str | Path, synsets: str | Path | None = None) -> dict[str, int]:
    """``name label`` lines (Caffe's val.txt; blank lines and ``#`` comments skipped), or the
    ILSVRC2015+ CLS-LOC solution CSV (``ImageId,PredictionString`` with the WNID first; the
    label is its rank among the sorted WNIDs of ``synsets``; keys are image names without extension)."""
    out: dict[str, int] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise InputFileError(f"cannot read labels file '{path}': {e}") from e
    if lines and lines[0].replace(" ", "").lower().startswith("imageid,predictionstring"):
        if synsets is None:
            raise InputFileError(f"'{path}' names classes by WNID: also pass --synsets or --synset-order (the 1000 "
                                 "WNIDs) so they map to class indices")
        rank = {w: i for i, w in enumerate(sorted(read_synset_order(synsets)))}
        for i, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            img, _, pred = line.partition(",")
            wnid = pred.split()[0] if pred.split() else ""
            if wnid not in rank:
                raise InputFileError(f"{path}:{i}: WNID {wnid!r} is not in the synset list")
            out[img.strip()] = rank[wnid]
        return out
    for i, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise InputFileError(f"{path}:{i}: expected 'name label', got {line!r}")
        out[parts[0]] = int(parts[1])
    return out


def read_synset_order(path: str | Path) -> list[str]:
    """WNIDs one per line (first token of each line: ``synset_words.txt`` style works too)."""
    try:
        wnids = [ln.split()[0] for ln in Path(path).read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise InputFileError(f"cannot read synset list '{path}': {e}") from e
    if len(set(wnids)) != len(wnids):
        raise InputFileError(f"synset list '{path}' repeats WNIDs")
    return wnids


def devkit_labels(gt_path: str | Path, synset_order: str | Path, names: Sequence[str]) -> dict[str, int]:
    """The devkit's ground truth (ILSVRC2012_IDs, 1-based, in image-number order) -> sorted-synset labels.

    ``names`` are the image names; image ``ILSVRC2012_val_0000000k`` takes line k.
    """
    order = read_synset_order(synset_order)
    rank = {w: i for i, w in enumerate(sorted(order))}
    try:
        ids = [int(x) for x in Path(gt_path).read_text().split()]
    except (OSError, ValueError) as e:
        raise InputFileError(f"cannot read ground truth '{gt_path}': {e}") from e
    out: dict[str, int] = {}
    for n in names:
        stem = Path(n).stem
        try:
            k = int(stem.rsplit("_", 1)[1])
        except (IndexError, ValueError):
            raise InputFileError(f"image '{n}' is not named ILSVRC2012_val_NNNNNNNN: cannot place it in the "
                                 "devkit's ground truth") from None
        if not 1 <= k <= len(ids):
            raise InputFileError(f"image '{n}' is number {k}; the ground truth has {len(ids)} lines")
        cid = ids[k - 1]
        if not 1 <= cid <= len(order):
            raise InputFileError(f"ground truth line {k}: ILSVRC2012_ID {cid} outside 1..{len(order)}")
        out[n] = rank[order[cid - 1]]
    return out


# --------------------------------------------------------------------------- folder / synsets
class FolderDataset(Dataset):
    kind = "folder"

    def read(self, e: Entry) -> Image:
        try:
            return Path(str(e.ref)).read_bytes()
        except OSError as err:
            raise InputFileError(f"cannot read image '{e.ref}': {err}") from err


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)


def open_folder(folder: str | Path, labels: str | Path | None = None, *, ground_truth: str | Path | None = None,
                synset_order: str | Path | None = None, synsets: str | Path | None = None) -> FolderDataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"image folder '{folder}' does not exist")
    paths = _images(folder)
    if not paths:
        raise InputFileError(f"no images in '{folder}'")
    table: dict[str, int] | None = None
    if ground_truth is not None:
        if synset_order is None:
            raise InputFileError("the devkit's ground truth numbers classes by ILSVRC2012_ID: also pass "
                                 "--synset-order (the 1000 WNIDs in ILSVRC2012_ID order) to map them")
        table = devkit_labels(ground_truth, synset_order, [p.name for p in paths])
    elif labels is not None:
        table = read_label_file(labels, synsets or synset_order)
        if paths and paths[0].name not in table and paths[0].stem in table:  # keys without extension (CSV)
            table = {p.name: table[p.stem] for p in paths if p.stem in table}
        missing = [p.name for p in paths if p.name not in table]
        if missing:
            raise InputFileError(f"labels file '{labels}' has no label for {missing[:5]}"
                                 f"{' ...' if len(missing) > 5 else ''}")
    return FolderDataset(str(folder), [Entry(p.name, table[p.name] if table else None, p) for p in paths])


def open_synsets(root: str | Path, synsets: str | Path | None = None) -> FolderDataset:
    """A synset-per-directory tree.  Labels are ranks in the sorted full WNID list ``synsets``
    (Caffe's ``synsets.txt``; ``ROOT/synsets.txt`` or ``ROOT/../synsets.txt`` when present); without it,
    ranks among the directories found, which is right only when all 1000 are there."""
    root = Path(root)
    dirs = sorted(d for d in root.iterdir() if d.is_dir())
    if not dirs:
        raise InputFileError(f"'{root}' has no synset sub-directories")
    if synsets is None:
        for cand in (root / "synsets.txt", root.parent / "synsets.txt"):
            if cand.exists():
                synsets = cand
                break
    if synsets is not None:
        rank = {w: i for i, w in enumerate(sorted(read_synset_order(synsets)))}
        unknown = [d.name for d in dirs if d.name not in rank]
        if unknown:
            raise InputFileError(f"'{root}': directories {unknown[:5]} are not in the synset list '{synsets}'")
    else:
        rank = {d.name: i for i, d in enumerate(dirs)}
        if len(dirs) != 1000:
            raise InputFileError(f"'{root}' has {len(dirs)} synset directories, not 1000: pass --synsets (the "
                                 "1000 WNIDs, e.g. Caffe's synsets.txt) so labels are not ranks among these")
    entries = [Entry(p.name, rank[d.name], p) for d in dirs for p in _images(d)]
    if not entries:
        raise InputFileError(f"no images under '{root}'")
    entries.sort(key=lambda e: e.key)
    ds = FolderDataset(str(root), entries)
    ds.kind = "synsets"
    return ds


# --------------------------------------------------------------------------- Caffe LMDB
def parse_datum(raw: bytes, where: str) -> tuple[int | None, Image]:
    """Caffe ``Datum`` -> (label, encoded bytes or HWC RGB uint8)."""
    try:
        f = decode_fields(raw)
    except ValueError as e:
        raise InputFileError(f"{where}: not a Caffe Datum ({e})") from e
    label = int(f[5][0]) if 5 in f else None  # type: ignore[arg-type]
    if label is not None and label >= 1 << 31:
        label -= 1 << 32  # int32 stored as a varint
    data = f.get(4, [b""])[0]
    if f.get(7, [0])[0]:
        return label, data  # type: ignore[return-value]
    c, h, w = (int(f.get(k, [0])[0]) for k in (1, 2, 3))  # type: ignore[arg-type]
    if 6 in f and not data:
        raise InputFileError(f"{where}: float_data Datums are not images (unsupported)")
    if c not in (1, 3) or len(data) != c * h * w:  # type: ignore[arg-type]
        raise InputFileError(f"{where}: raw Datum of {len(data)} bytes does not match channels={c}, "  # type: ignore
                             f"height={h}, width={w}")
    a = np.frombuffer(data, np.uint8).reshape(c, h, w)  # type: ignore[arg-type]
    a = a[::-1] if c == 3 else np.repeat(a, 3, axis=0)  # Caffe's raw Datums are BGR (OpenCV)
    return label, np.ascontiguousarray(a.transpose(1, 2, 0))


class LmdbDataset(Dataset):
    kind = "lmdb"

    def __init__(self, path: str, entries: list[Entry], env: object) -> None:
        super().__init__(path, entries)
        self.env = env

    def read(self, e: Entry) -> Image:
        with self.env.begin() as txn:  # type: ignore[attr-defined]
            raw = txn.get(e.ref)
        if raw is None:
            raise InputFileError(f"{self.path}: key {e.ref!r} vanished")
        return parse_datum(raw, f"{self.path}[{e.key}]")[1]

    def close(self) -> None:
        self.env.close()  # type: ignore[attr-defined]


def open_lmdb(path: str | Path) -> LmdbDataset:
    try:
        import lmdb  # noqa: PLC0415
    except ImportError as e:
        raise InputFileError("reading an LMDB needs the 'lmdb' package (part of `make setup`)") from e
    p = str(path)
    try:
        env = lmdb.open(p, readonly=True, lock=False, readahead=False, subdir=os.path.isdir(p))
    except lmdb.Error as e:
        raise InputFileError(f"cannot open LMDB '{p}': {e}") from e
    entries = []
    with env.begin() as txn:
        for k, v in txn.cursor():
            try:
                f = decode_fields(v)
            except ValueError as e:
                raise InputFileError(f"{p}[{k!r}]: not a Caffe Datum ({e})") from e
            label = int(f[5][0]) if 5 in f else None  # type: ignore[arg-type]
            if label is not None and label >= 1 << 31:
                label -= 1 << 32
            key = k.decode("utf8", errors="replace")
            # convert_imageset keys are "%08d_<name>": keep the name
            name = key.split("_", 1)[1] if len(key) > 9 and key[:8].isdigit() and key[8] == "_" else key
            entries.append(Entry(name, label, bytes(k)))
    if not entries:
        raise InputFileError(f"LMDB '{p}' is empty")
    return LmdbDataset(p, entries, env)


# --------------------------------------------------------------------------- TFRecord
def _crc(data: bytes | memoryview) -> int:
    from xconv.frontends.tensorflow.checkpoint import crc32c, mask_crc  # noqa: PLC0415
    return mask_crc(crc32c(data))


def tfrecord_offsets(path: str) -> list[tuple[int, int]]:
    """(data offset, length) of every record; checks the length CRCs."""
    out = []
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        while pos < size:
            head = f.read(12)
            if len(head) < 12:
                raise InputFileError(f"TFRecord '{path}': truncated record header at byte {pos}")
            (n,), (hcrc,) = struct.unpack("<Q", head[:8]), struct.unpack("<I", head[8:])
            if _crc(head[:8]) != hcrc:
                raise InputFileError(f"TFRecord '{path}': bad length CRC at byte {pos} (not a TFRecord, or damaged)")
            if pos + 12 + n + 4 > size:
                raise InputFileError(f"TFRecord '{path}': record at byte {pos} runs past the end (truncated)")
            out.append((pos + 12, n))
            pos += 12 + n + 4
            f.seek(pos)
    return out


def parse_example(raw: bytes, where: str) -> dict[str, list]:
    """``tf.train.Example`` -> feature name -> list of bytes / floats / ints."""
    try:
        feats = decode_fields(decode_fields(raw).get(1, [b""])[0])  # type: ignore[arg-type]
        out: dict[str, list] = {}
        for entry in feats.get(1, []):
            kv = decode_fields(entry)  # type: ignore[arg-type]
            name = kv.get(1, [b""])[0].decode()  # type: ignore[union-attr]
            feat = decode_fields(kv.get(2, [b""])[0])  # type: ignore[arg-type]
            if 1 in feat:
                out[name] = list(decode_fields(feat[1][0]).get(1, []))  # type: ignore[arg-type]
            elif 2 in feat:
                fl = decode_fields(feat[2][0]).get(1, [])  # type: ignore[arg-type]
                vals: list[float] = []
                for v in fl:
                    vals.extend(np.frombuffer(v, "<f4").tolist())  # type: ignore[arg-type]
                out[name] = vals
            elif 3 in feat:
                il = decode_fields(feat[3][0]).get(1, [])  # type: ignore[arg-type]
                out[name] = [x - (1 << 64) if x >= 1 << 63 else x for x in packed_varints(il)]
            else:
                out[name] = []
        return out
    except (ValueError, UnicodeDecodeError) as e:
        raise InputFileError(f"{where}: not a tf.train.Example ({e})") from e


class TFRecordDataset(Dataset):
    kind = "tfrecord"

    def read(self, e: Entry) -> Image:
        path, off, n = e.ref  # type: ignore[misc]
        with open(path, "rb") as f:
            f.seek(off)
            data = f.read(n)
            (dcrc,) = struct.unpack("<I", f.read(4))
        if _crc(data) != dcrc:
            raise InputFileError(f"TFRecord '{path}': bad data CRC for record at byte {off - 12} (damaged)")
        ex = parse_example(data, f"{path}@{off}")
        enc = ex.get("image/encoded")
        if not enc:
            raise InputFileError(f"TFRecord '{path}': record at byte {off - 12} has no image/encoded")
        return enc[0]


def open_tfrecord(pattern: str | Path, label_offset: int = 1) -> TFRecordDataset:
    """Shards matching ``pattern`` (a glob, a directory of ``validation-*`` shards, or one file).
    ``label_offset``: subtracted from ``image/class/label`` (1 for the Inception layout)."""
    p = str(pattern)
    if os.path.isdir(p):
        files = sorted(glob.glob(os.path.join(p, "validation-*-of-*")))
    elif any(ch in p for ch in "*?["):
        files = sorted(glob.glob(p))
    else:
        files = [p] if os.path.exists(p) else []
    if not files:
        raise InputFileError(f"no TFRecord shards match '{p}'")
    entries = []
    for path in files:
        with open(path, "rb") as f:
            for off, n in tfrecord_offsets(path):
                f.seek(off)
                ex = parse_example(f.read(n), f"{path}@{off}")
                lab = ex.get("image/class/label")
                fn = ex.get("image/filename")
                key = fn[0].decode("utf8", errors="replace") if fn else f"{Path(path).name}#{len(entries)}"
                entries.append(Entry(key, int(lab[0]) - label_offset if lab else None, (path, off, n)))
    return TFRecordDataset(p, entries)


# --------------------------------------------------------------------------- dispatch
FORMATS = ("folder", "synsets", "lmdb", "tfrecord")


def detect_format(path: str | Path) -> str:
    p = Path(path)
    if p.is_dir():
        if (p / "data.mdb").exists():
            return "lmdb"
        if list(p.glob("validation-*-of-*")) or list(p.glob("*.tfrecord")):
            return "tfrecord"
        if _images(p):
            return "folder"
        if any(d.is_dir() for d in p.iterdir()):
            return "synsets"
    elif any(ch in str(p) for ch in "*?[") or p.name.startswith(("validation-", "train-")) or p.suffix == ".tfrecord":
        return "tfrecord"
    elif p.suffix == ".mdb":
        return "lmdb"
    raise InputFileError(f"cannot tell the format of '{path}': pass --data-format ({', '.join(FORMATS)})")


def open_dataset(path: str | Path, fmt: str = "auto", *, labels: str | Path | None = None,
                 ground_truth: str | Path | None = None, synset_order: str | Path | None = None,
                 synsets: str | Path | None = None, tfrecord_label_offset: int = 1) -> Dataset:
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "folder":
        return open_folder(path, labels, ground_truth=ground_truth, synset_order=synset_order, synsets=synsets)
    if fmt == "synsets":
        return open_synsets(path, synsets)
    if fmt == "lmdb":
        return open_lmdb(path)
    if fmt == "tfrecord":
        return open_tfrecord(path, tfrecord_label_offset)
    raise InputFileError(f"unknown data format '{fmt}' (known: {', '.join(FORMATS)})")
