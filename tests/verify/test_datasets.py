"""Validation-set readers against fixtures written by the formats' own tools
(pycaffe's Datum + lmdb, TensorFlow's TFRecordWriter + tf.train.Example; see
tests/imagenet_fixtures.py): every format yields the same images with the
same labels in sorted-synset order."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import imagenet_fixtures as fx
from xconv.errors import InputFileError
from xconv.verify.datasets import detect_format, open_dataset, open_folder, open_synsets, open_tfrecord


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: Any) -> dict[str, Any]:
    return fx.make_all(tmp_path_factory.mktemp("imagenet"))


def _pixels(img: bytes | np.ndarray) -> np.ndarray:
    if isinstance(img, np.ndarray):
        return img
    return np.asarray(Image.open(io.BytesIO(img)).convert("RGB"))


def test_every_format_gives_the_same_labelled_images(fixtures: dict[str, Any]) -> None:
    want = fixtures["labels"]
    sets = {
        "folder": open_dataset(fixtures["folder"], labels=fixtures["val_txt"]),
        "devkit": open_dataset(fixtures["folder"], ground_truth=fixtures["gt_txt"],
                               synset_order=fixtures["synset_order"]),
        "synsets": open_dataset(fixtures["synsets"], "synsets", synsets=fixtures["synsets_txt"]),
        "lmdb": open_dataset(fixtures["lmdb_encoded"]),
        "lmdb_raw": open_dataset(fixtures["lmdb_raw"]),
        "tfrecord": open_dataset(fixtures["tfrecord"]),
    }
    assert {k: v.kind for k, v in sets.items()} == {"folder": "folder", "devkit": "folder", "synsets": "synsets",
                                                   "lmdb": "lmdb", "lmdb_raw": "lmdb", "tfrecord": "tfrecord"}
    ref = {s.key: _pixels(s.image) for s in sets["folder"].samples()}
    for name, ds in sets.items():
        got = {e.key: e.label for e in ds.entries}
        assert got == want, name
        for s in ds.samples():
            np.testing.assert_array_equal(_pixels(s.image), ref[s.key], err_msg=f"{name}: {s.key}")
        ds.close()


def test_format_detection(fixtures: dict[str, Any]) -> None:
    assert detect_format(fixtures["folder"]) == "folder"
    assert detect_format(fixtures["lmdb_raw"]) == "lmdb"
    assert detect_format(fixtures["tfrecord"]) == "tfrecord"
    assert detect_format(Path(fixtures["tfrecord"]).parent) == "tfrecord"
    assert detect_format(fixtures["synsets"]) == "synsets"


def test_tfrecord_label_offset_both_ways(fixtures: dict[str, Any]) -> None:
    """Inception-layout labels are 1..1000: shifted to 0..999 by default, kept with offset 0
    (for models whose logit 0 is background, read the labels as they are)."""
    a = {e.key: e.label for e in open_tfrecord(fixtures["tfrecord"]).entries}
    b = {e.key: e.label for e in open_tfrecord(fixtures["tfrecord"], label_offset=0).entries}
    assert a == fixtures["labels"] and all(b[k] == a[k] + 1 for k in a)


def test_subsets_are_deterministic(fixtures: dict[str, Any]) -> None:
    ds = open_folder(fixtures["folder"], fixtures["val_txt"])
    a = [e.key for e in ds.select(subset=7, seed=3)]
    assert a == [e.key for e in ds.select(subset=7, seed=3)] and len(a) == 7
    assert a != [e.key for e in ds.select(subset=7, seed=4)]
    assert a == sorted(a)  # kept in dataset order
    # the same subset from another format
    t = open_dataset(fixtures["tfrecord"])
    t.entries.sort(key=lambda e: e.key)
    assert [e.key for e in t.select(subset=7, seed=3)] == a
    assert [e.key for e in ds.select(limit=3)] == [e.key for e in ds.entries[:3]]


def test_partial_synset_tree_needs_the_full_list(fixtures: dict[str, Any], tmp_path: Path) -> None:
    """The fixture tree has 19 class directories: numbering the directories found would be wrong."""
    import shutil
    alone = tmp_path / "tree"
    shutil.copytree(fixtures["synsets"], alone)
    with pytest.raises(InputFileError, match="--synsets"):
        open_synsets(alone)
    assert {e.key: e.label for e in open_synsets(alone, fixtures["synsets_txt"]).entries} == fixtures["labels"]
    # Caffe's synsets.txt beside the tree is found without being named
    assert {e.key: e.label for e in open_synsets(fixtures["synsets"]).entries} == fixtures["labels"]


def test_damaged_inputs(fixtures: dict[str, Any], tmp_path: Path) -> None:
    shard = sorted(Path(fixtures["tfrecord"]).parent.glob("validation-*"))[0]
    data = bytearray(shard.read_bytes())
    cut = tmp_path / "validation-00000-of-00001"
    cut.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(InputFileError, match="truncated|past the end"):
        open_tfrecord(cut)
    data[20] ^= 0xFF  # inside the first record's payload
    bad = tmp_path / "validation-00000-of-00002"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputFileError):
        ds = open_tfrecord(bad)
        for _ in ds.samples():
            pass
    data = bytearray(shard.read_bytes())
    data[3] ^= 0xFF  # the length
    bad.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match="length CRC"):
        open_tfrecord(bad)
    with pytest.raises(InputFileError, match="ground truth|ILSVRC2012_ID"):
        open_folder(fixtures["folder"], ground_truth=fixtures["gt_txt"])


def test_cls_loc_solution_csv(fixtures: dict[str, Any], tmp_path: Path) -> None:
    """ILSVRC2015+ CLS-LOC label files (LOC_val_solution.csv: ImageId, WNID and boxes) map WNIDs to classes."""
    wnids = fixtures["wnids"]
    rows = ["ImageId,PredictionString"]
    for name, lab in sorted(fixtures["labels"].items(), reverse=True):
        rows.append(f"{Path(name).stem},{wnids[lab]} 10 20 100 200 {wnids[lab]} 5 5 50 50")
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text("\n".join(rows) + "\n")
    with pytest.raises(InputFileError, match="--synsets"):
        open_dataset(fixtures["folder"], labels=csv)
    ds = open_dataset(fixtures["folder"], labels=csv, synsets=fixtures["synsets_txt"])
    assert {e.key: e.label for e in ds.entries} == fixtures["labels"]
