"""Test-model recipes for the Keras frontend tests.

Models come from ``keras.applications`` (Keras 3, package ``keras``) and
``tf_keras.applications`` (Keras 2, package ``tf_keras``): code this project
did not write.  Weights are random but made non-trivial the way
``tests/zoo.py`` does for torchvision: random BatchNorm affine parameters,
BatchNorm statistics measured on real photos then perturbed, and a classifier
rescaled so that logits on the photos spread over a few units (otherwise every
photo lands in one class and top-1 agreement proves nothing).

Flavours of saved file:
  "k2.h5"    tf_keras ``model.save("x.h5")`` (HDF5, Keras-2 style)
  "k3.keras" Keras 3 ``model.save("x.keras")`` (zip: config.json + weights)
  "k3.h5"    Keras 3 ``model.save("x.h5")`` (legacy HDF5 written by Keras 3)

Each saved file gets a ``<file>.ref.npz`` beside it (keys ``x``: NHWC inputs,
``logits``: the live model's own outputs on ``x``).  Keras 3 cannot load some
Keras-2 .h5 files (DepthwiseConv2D configs carry ``groups: 1``), so k2 files
are reloaded with tf_keras.

CLI: ``python tests/keras_zoo.py ARCH OUT_DIR [FLAVOUR ...]``
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from zoo import CALIBRATION, PHOTOS, center_photos, photo_dir, photo_label  # noqa: E402,F401  (tests/ is on sys.path)

__all__ = ["KERAS_ZOO", "REF_PHOTOS", "CALIBRATION", "PHOTOS", "photo_label", "keras_inputs", "build",
           "make_files", "reload_logits", "config_class_names", "FLAVOURS"]

KERAS_ZOO: dict[str, tuple[str, int]] = {
    # arch: (applications function, input size)
    "xception": ("Xception", 299),
    "inception_v3": ("InceptionV3", 299),
    "inception_resnet_v2": ("InceptionResNetV2", 299),
    "resnet50": ("ResNet50", 224),
    "resnet101v2": ("ResNet101V2", 224),
    "mobilenet": ("MobileNet", 224),
    "mobilenet_v2": ("MobileNetV2", 224),
    "densenet121": ("DenseNet121", 224),
    # 64x64 keeps Flatten -> fc1 at 2*2*512 -> 4096 (the file is still ~180 MB:
    # fc2 is 4096x4096 whatever the input size)
    "vgg16": ("VGG16", 64),
}
# the photos of the reference outputs: the parity photos plus two more, all
# among the calibration photos (photos the BN statistics never saw give logits
# spread 2-6x wider, e.g. resnet50 imagenet_08/12: std over classes ~17 vs ~3)
REF_PHOTOS = PHOTOS + ("imagenet_02_438.jpg", "imagenet_04_949.jpg")
FLAVOURS = ("k2.h5", "k3.keras", "k3.h5")


def _lib(flavour: str):
    """The Keras package of a flavour ("k2" / "k3", or a file flavour like "k2.h5")."""
    kind = flavour.split(".")[0]
    if kind == "k2":
        import tf_keras
        return tf_keras
    if kind == "k3":
        import keras
        return keras
    raise ValueError(f"unknown flavour {flavour!r} (k2 or k3)")


def keras_inputs(size: int, names=PHOTOS) -> np.ndarray:
    """Photos as float32 NHWC in [-1, 1]: short side resized to round(size/0.875)
    (bilinear), centre crop ``size``, then x/127.5 - 1 (PIL + numpy only)."""
    return (center_photos(size, names) / 127.5 - 1.0).astype(np.float32)


def _np(t) -> np.ndarray:
    return np.asarray(t.numpy() if hasattr(t, "numpy") else t)


def _bn_layers(model, lib):
    return [l for l in model.layers if isinstance(l, lib.layers.BatchNormalization)]


def _last_weighted(model, lib):
    """The classifier: the last Dense / Conv2D (MobileNet v1 ends in a 1x1 Conv2D
    "conv_preds" + Reshape + Activation "predictions")."""
    last = None
    for l in model.layers:
        if isinstance(l, (lib.layers.Dense, lib.layers.Conv2D)) and l.get_weights():
            last = l
    return last


def _channel_axis(layer, ndim: int) -> int:
    ax = layer.axis
    if isinstance(ax, (list, tuple)):
        assert len(ax) == 1, ax
        ax = ax[0]
    return ax % ndim


def calibrate_bn(model, lib, x: np.ndarray, rng: np.random.RandomState) -> int:
    """Random gamma/beta, then moving statistics measured on ``x`` and perturbed.

    One forward pass in training mode of a model whose outputs are the inputs
    of every BN layer: in training mode each BN normalises with the batch
    statistics, so each BN input is exactly what that layer sees once its
    moving statistics equal those batch statistics.  Returns the BN count.
    """
    bns = _bn_layers(model, lib)
    if not bns:
        return 0
    for l in bns:
        c = int(l.moving_mean.shape[0])
        if l.scale:
            l.gamma.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
        if l.center:
            l.beta.assign((rng.randn(c) * 0.2).astype(np.float32))
    probe = lib.Model(model.inputs, [l.input for l in bns])
    ys = probe(x, training=True)
    if not isinstance(ys, (list, tuple)):
        ys = [ys]
    for l, y in zip(bns, ys):
        y = _np(y).astype(np.float64)
        ax = _channel_axis(l, y.ndim)
        red = tuple(i for i in range(y.ndim) if i != ax)
        mean, var = y.mean(red), y.var(red)
        c = mean.shape[0]
        mean = mean + rng.randn(c) * 0.2 * np.sqrt(var)
        var = var * rng.uniform(0.5, 2.0, c)
        l.moving_mean.assign(mean.astype(np.float32))
        l.moving_variance.assign(var.astype(np.float32))
    return len(bns)


def spread_logits(model, lib, x: np.ndarray, target: float = 3.0) -> float:
    """Rescale the classifier so logits on ``x`` spread by ~``target`` (std over
    the batch after removing each class's mean) and centre its bias.  Returns
    the scale applied."""
    fc = _last_weighted(model, lib)
    z = _np(model(x, training=False)).astype(np.float64)
    mu = z.mean(0)
    sd = float((z - mu).std())
    s = target / sd if sd > 0 else 1.0
    w = fc.get_weights()
    w[0] = (w[0] * s).astype(np.float32)
    if len(w) > 1:
        w[1] = ((w[1] - mu.reshape(w[1].shape)) * s).astype(np.float32)
    fc.set_weights(w)
    return s


def _construct(arch: str, lib, seed: int):
    fn, size = KERAS_ZOO[arch]
    # auto-named layers (InceptionV3's conv2d/batch_normalization, the
    # custom_scale_layer of InceptionResNetV2) get the same names whatever was
    # built before in this process; models built earlier keep working (eager)
    lib.backend.clear_session()
    lib.utils.set_random_seed(seed)
    return getattr(lib.applications, fn)(weights=None, input_shape=(size, size, 3), include_top=True,
                                         classes=1000, classifier_activation=None)


def _same_layout(a, b) -> bool:
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(p.shape == q.shape for p, q in zip(wa, wb))


def build(arch: str, flavour: str, seed: int = 0, weights_from=None, info: dict | None = None):
    """``arch`` from tf_keras ("k2") or keras 3 ("k3") applications, random
    non-trivial weights, logits (no softmax).

    ``weights_from``: a built model (either flavour) whose weights are copied
    when the weight lists match in order and shape (the two libraries' apps
    are ports of each other); otherwise the model is calibrated itself.
    ``info`` (optional dict) receives timings and how the weights were made.
    """
    info = {} if info is None else info
    lib = _lib(flavour)
    _, size = KERAS_ZOO[arch]
    t0 = time.perf_counter()
    model = _construct(arch, lib, seed)
    info["build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if weights_from is not None and _same_layout(model, weights_from):
        model.set_weights(weights_from.get_weights())
        info["weights"] = "copied"
    else:
        rng = np.random.RandomState(seed)
        x = keras_inputs(size, CALIBRATION)
        info["bn"] = calibrate_bn(model, lib, x, rng)
        info["scale"] = spread_logits(model, lib, x)
        info["weights"] = "calibrated" if weights_from is None else "calibrated (layout differs)"
    info["calibrate_s"] = time.perf_counter() - t0
    return model


def logits(model, x: np.ndarray) -> np.ndarray:
    return _np(model(x, training=False)).astype(np.float32)


def reload_logits(path, x: np.ndarray) -> np.ndarray:
    """Load a saved file back in its own framework and run it on ``x``."""
    path = Path(path)
    if path.name.endswith("k2.h5"):
        import tf_keras
        m = tf_keras.models.load_model(path, compile=False)
    else:
        import keras
        custom = {}
        if path.suffix == ".h5":
            # Keras 3 does not register its InceptionResNetV2 CustomScaleLayer;
            # the .keras config names its module, the legacy .h5 config does not
            from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
            custom["CustomScaleLayer"] = CustomScaleLayer
        m = keras.saving.load_model(path, compile=False, custom_objects=custom)
    return logits(m, x)


def _config_layers(cfg):
    """Every layer's class_name in a model config (nested models included)."""
    out = []
    if isinstance(cfg, dict):
        if "class_name" in cfg and isinstance(cfg.get("config"), dict) and "layers" in cfg["config"]:
            for l in cfg["config"]["layers"]:
                out.append(l["class_name"])
                out += _config_layers(l)
    return out


def config_class_names(path) -> list[str]:
    """Layer class names in a saved file's model config, in order."""
    import json
    import zipfile
    path = Path(path)
    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as z:
            cfg = json.loads(z.read("config.json"))
    else:
        import h5py
        with h5py.File(path, "r") as f:
            raw = f.attrs["model_config"]
            cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    return _config_layers(cfg)


def make_files(arch: str, out_dir, flavours=("k2.h5", "k3.keras"), seed: int = 0,
               timings: dict | None = None) -> dict[str, Path]:
    """Build and save ``arch`` in each flavour as ``OUT_DIR/ARCH.<flavour>`` plus
    ``<file>.ref.npz`` (x, logits of the live model).  Returns flavour -> path.

    The k2 model is built (and calibrated) first; the k3 model copies its
    weights when the layouts match, so all files hold the same network."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = {} if timings is None else timings
    _, size = KERAS_ZOO[arch]
    x = keras_inputs(size, REF_PHOTOS)
    models: dict[str, object] = {}
    paths: dict[str, Path] = {}
    for kind in ("k2", "k3"):
        if not any(f.startswith(kind + ".") for f in flavours):
            continue
        info = timings.setdefault(kind, {})
        src = models.get("k2") if kind == "k3" else None
        models[kind] = build(arch, kind, seed, weights_from=src, info=info)
    for flav in flavours:
        kind = flav.split(".")[0]
        if flav not in FLAVOURS:
            raise ValueError(f"unknown flavour {flav!r}; one of {FLAVOURS}")
        m = models[kind]
        p = out_dir / f"{arch}.{flav}"
        t0 = time.perf_counter()
        if p.exists():
            p.unlink()
        m.save(str(p))
        info = timings.setdefault(flav, {})
        info["save_s"] = time.perf_counter() - t0
        info["bytes"] = p.stat().st_size
        z = logits(m, x)
        np.savez(str(p) + ".ref.npz", x=x, logits=z)
        paths[flav] = p
    return paths


def load_ref(path) -> tuple[np.ndarray, np.ndarray]:
    r = np.load(str(path) + ".ref.npz")
    return r["x"], r["logits"]


def _main(argv) -> int:
    if len(argv) < 2 or argv[0] not in KERAS_ZOO:
        print(f"usage: keras_zoo.py ARCH OUT_DIR [FLAVOUR ...]  (ARCH: {', '.join(KERAS_ZOO)})")
        return 2
    arch, out = argv[0], Path(argv[1])
    flavours = tuple(argv[2:]) or ("k2.h5", "k3.keras")
    t = {}
    t0 = time.perf_counter()
    paths = make_files(arch, out, flavours, timings=t)
    total = time.perf_counter() - t0
    for kind in ("k2", "k3"):
        if kind in t:
            i = t[kind]
            extra = f" bn={i['bn']} scale={i['scale']:.3g}" if "bn" in i else ""
            print(f"{arch} {kind}: build {i['build_s']:.1f}s, weights {i['weights']} in {i['calibrate_s']:.1f}s{extra}")
    for flav, p in paths.items():
        x, z = load_ref(p)
        spread = float((z - z.mean(0)).std())
        top = z.argmax(1)
        print(f"{arch} {flav}: save {t[flav]['save_s']:.1f}s, {t[flav]['bytes'] / 2**20:.1f} MiB, "
              f"spread {spread:.2f}, top-1 {top.tolist()} ({len(set(top.tolist()))} distinct) -> {p}")
    print(f"{arch}: total {total:.1f}s")
    refs = {f: load_ref(p)[1] for f, p in paths.items()}
    if len(refs) > 1:
        first = next(iter(refs))
        for f, z in refs.items():
            print(f"{arch}: max |{f} - {first}| live logits = {float(np.abs(z - refs[first]).max()):.3g}")
    for flav, p in paths.items():
        x, z = load_ref(p)
        t0 = time.perf_counter()
        d = float(np.abs(reload_logits(p, x) - z).max())
        names = config_class_names(p)
        counts = {n: names.count(n) for n in dict.fromkeys(names)}
        print(f"{arch} {flav}: reload {time.perf_counter() - t0:.1f}s, max |reloaded - live| = {d:.3g}; layers {counts}")
        assert d <= 1e-5 * max(1.0, float(np.abs(z).max())), (flav, d)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
