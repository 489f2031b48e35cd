"""Keras files are untrusted: bad input gets a clear error, Lambda layers and
unknown custom classes are refused (never deserialised, never executed),
and the way out (a user's handler, ``--plugin``) works.  Converting never
imports Keras or TensorFlow."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

from xconv import reference  # noqa: E402
from xconv.errors import InputFileError, UnsafeInputError, UnsupportedAttrError, UnsupportedOpError  # noqa: E402
from xconv.frontends import keras as xk  # noqa: E402
from xconv.frontends.keras import graph as kgraph  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}


def xconv(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xconv.cli", *args], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=600)


def small(K: Any) -> Any:
    L = K.layers
    x = K.Input((8, 8, 3))
    h = L.Conv2D(4, 3, padding="same", name="conv")(x)
    h = L.BatchNormalization(name="bn")(h)
    return K.Model(x, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(h)))


@pytest.fixture(scope="module")
def files(tmp_path_factory: Any) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keras_bad")
    out = {}
    m2 = small(tf_keras)
    out["k2"] = d / "small.h5"
    m2.save(str(out["k2"]))
    m3 = small(keras)
    out["k3"] = d / "small.keras"
    m3.save(str(out["k3"]))
    return out


# --------------------------------------------------------------------------- damaged files
@pytest.mark.parametrize("kind", ["k2", "k3"])
@pytest.mark.parametrize("keep", [0.0, 0.3, 0.7, 0.98])
def test_truncated_file_is_a_clear_error(files: dict[str, Path], kind: str, keep: float, tmp_path: Path) -> None:
    src = files[kind]
    data = src.read_bytes()
    bad = tmp_path / src.name
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputFileError) as e:
        xk.load(bad)
    assert str(bad) in str(e.value) or "truncated" in str(e.value) or "empty" in str(e.value)


def test_missing_weight_names_the_layer(files: dict[str, Path], tmp_path: Path) -> None:
    import h5py
    bad = tmp_path / "noweight.h5"
    shutil.copy(files["k2"], bad)
    with h5py.File(bad, "r+") as f:
        grp = f["model_weights/conv"]
        name = next(n for n in (x.decode() if isinstance(x, bytes) else x for x in grp.attrs["weight_names"])
                    if "kernel" in n)
        del grp[name]
    with pytest.raises(InputFileError, match="keras layer 'conv' .*missing"):
        xk.load(bad)


def test_missing_layer_weights_in_archive(files: dict[str, Path], tmp_path: Path) -> None:
    import h5py
    src = files["k3"]
    bad = tmp_path / "noweights.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "model.weights.h5":
                p = tmp_path / "w.h5"
                p.write_bytes(data)
                with h5py.File(p, "r+") as f:
                    key = next(k for k in f["layers"] if f[f"layers/{k}/vars"].attrs.get("name") == "bn")
                    del f[f"layers/{key}/vars/3"]
                data = p.read_bytes()
            zout.writestr(item, data)
    with pytest.raises(InputFileError, match="keras layer 'bn'"):
        xk.load(bad)


def test_weights_only_and_garbage(tmp_path: Path) -> None:
    m = small(tf_keras)
    w = tmp_path / "only.weights.h5"
    m.save_weights(str(w))
    with pytest.raises(InputFileError, match="weights only"):
        xk.load(w)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(InputFileError, match="neither HDF5 nor"):
        xk.load(junk)
    with pytest.raises(InputFileError, match="directory"):
        xk.load(tmp_path)
    z = tmp_path / "other.keras"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(InputFileError, match="config.json"):
        xk.load(z)


def test_channels_first_is_refused_by_name(tmp_path: Path) -> None:
    L = keras.layers
    x = keras.Input((3, 8, 8))
    m = keras.Model(x, L.Conv2D(4, 3, data_format="channels_first", name="cf_conv")(x))
    p = tmp_path / "cf.keras"
    m.save(str(p))
    with pytest.raises(UnsupportedAttrError, match="cf_conv.*channels_first"):
        xk.load(p)


def test_unsupported_builtin_layers_listed_at_once(tmp_path: Path) -> None:
    L = keras.layers
    x = keras.Input((8, 8, 3))
    h = L.UpSampling2D(name="up")(x)
    h = L.LayerNormalization(name="ln")(h)
    m = keras.Model(x, L.Conv2D(2, 1)(h))
    p = tmp_path / "unsup.keras"
    m.save(str(p))
    with pytest.raises(UnsupportedOpError) as e:
        xk.load(p)
    assert "up" in str(e.value) and "ln" in str(e.value)


# --------------------------------------------------------------------------- code in files
MARKER_CODE = "lambda t: (open({marker!r}, 'w').write('ran'), t * 2.0)[1]"


def lambda_model(K: Any, marker: Path) -> Any:
    L = K.layers
    x = K.Input((6, 6, 2))
    h = L.Conv2D(3, 1, name="conv")(x)
    fn = eval(MARKER_CODE.format(marker=str(marker)))  # the test's own code: it would leave a marker if run
    h = L.Lambda(fn, name="double_it")(h)
    return K.Model(x, L.GlobalAveragePooling2D()(h))


LAMBDA_X = np.random.default_rng(0).normal(size=(1, 6, 6, 2)).astype(np.float32)


@pytest.fixture()
def lambda_files(tmp_path: Path) -> tuple[dict[str, Path], Path, dict[str, np.ndarray]]:
    """Files with a Lambda layer, and the live models' outputs on LAMBDA_X (computed before the
    marker is cleared: running the lambda leaves the marker, so afterwards it proves nobody ran it)."""
    marker = tmp_path / "EXECUTED"
    out, want = {}, {}
    for kind, K, suffix in (("k2", tf_keras, ".h5"), ("k3", keras, ".keras")):
        m = lambda_model(K, marker)
        want[kind] = np.asarray(m(LAMBDA_X))
        out[kind] = tmp_path / f"lam_{kind}{suffix}"
        m.save(str(out[kind]))
    assert marker.exists()
    marker.unlink()
    return out, marker, want


@pytest.mark.parametrize("kind", ["k2", "k3"])
def test_lambda_is_refused_and_never_run(lambda_files: Any, kind: str) -> None:
    files, marker, _ = lambda_files
    with pytest.raises(UnsafeInputError) as e:
        xk.load(files[kind])
    msg = str(e.value)
    assert "'double_it'" in msg and "Lambda" in msg and "register_layer" in msg and "--plugin" in msg
    with pytest.raises(UnsafeInputError):  # verify's source side refuses it before Keras sees the file
        xk.make_runner(files[kind])
    assert not marker.exists()


def test_unknown_custom_class_is_refused(tmp_path: Path) -> None:
    @keras.saving.register_keras_serializable(package="mine")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    x = keras.Input((4, 4, 2))
    m = keras.Model(x, Twice(name="twice")(keras.layers.Conv2D(2, 1)(x)))
    p = tmp_path / "custom.keras"
    m.save(str(p))
    with pytest.raises(UnsafeInputError, match="'twice' \\(custom class Twice"):
        xk.load(p)


def test_handler_is_the_way_out(lambda_files: Any, tmp_path: Path) -> None:
    """A user who knows what the Lambda computes registers it by layer name."""
    files, marker, want = lambda_files

    @xk.register_layer("double_it")
    def double(ctx: Any, layer: Any, ins: Any, call: Any) -> Any:
        two = ctx.param(layer, "two", lambda: np.asarray(2.0))
        return xk.KT(ctx.add("Mul", [ins[0].ir, two], layer))

    try:
        for kind in ("k2", "k3"):
            g = xk.load(files[kind])
            got = reference.run(g, {next(iter(g.inputs)): LAMBDA_X.transpose(0, 3, 1, 2)})[g.outputs[0]]
            np.testing.assert_allclose(got, want[kind], rtol=0, atol=1e-5)
    finally:
        del kgraph.HANDLERS["double_it"]
    assert not marker.exists()


def test_cli_plugin_and_no_framework_import(lambda_files: Any, tmp_path: Path) -> None:
    files, marker, _ = lambda_files
    out = tmp_path / "out"
    r = xconv("convert", "--from", "keras", str(files["k2"]), "--to", "onnx", "-o", str(out), cwd=tmp_path)
    assert r.returncode != 0 and "double_it" in r.stderr + r.stdout
    assert not out.exists() or not any(out.iterdir())  # nothing half-written
    plugin = tmp_path / "double_plugin.py"
    plugin.write_text(
        "import numpy as np\n"
        "from xconv.frontends.keras import KT, register_layer\n"
        "@register_layer('double_it')\n"
        "def double(ctx, layer, ins, call):\n"
        "    two = ctx.param(layer, 'two', lambda: np.asarray(2.0))\n"
        "    return KT(ctx.add('Mul', [ins[0].ir, two], layer))\n")
    r = xconv("convert", "--from", "keras", str(files["k2"]), "--to", "onnx", "-o", str(out),
              "--plugin", str(plugin), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (out / "lam_k2.onnx").exists()
    assert not marker.exists()
    # reading and converting imports neither Keras nor TensorFlow (nor torch)
    probe = ("import sys; from xconv.frontends import keras as xk; from xconv.convert import convert; "
             "from xconv.backend import EmitOptions; "
             "g = xk.load(sys.argv[1]); "
             "convert(g, 'caffe', sys.argv[2], 'm', EmitOptions(dialect='bvlc')); "
             "bad = [m for m in ('keras', 'tf_keras', 'tensorflow', 'torch') if m in sys.modules]; "
             "print('IMPORTED', bad); sys.exit(1 if bad else 0)")
    small_file = tmp_path / "s.keras"
    small(keras).save(str(small_file))
    r = subprocess.run([sys.executable, "-c", probe, str(small_file), str(tmp_path / "probe")],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
