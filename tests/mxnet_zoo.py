"""Test-model recipes for the MXNet frontend tests.

Two kinds of network, both saved the way MXNet saves a checkpoint
(``ARCH-symbol.json`` + ``ARCH-0000.params``, what ``mx.model.save_checkpoint``
writes):

* Gluon model zoo nets (``mxnet.gluon.model_zoo.vision``, code this project did
  not write): built with ``get_model(pretrained=False)``, initialised,
  hybridised, run once and ``export()``-ed; the exported symbol and params are
  loaded back and worked on.
* Symbol-API nets written here from their papers: ResNeXt-50 32x4d
  (Xie et al. 2017), SE-ResNeXt-50 32x4d (Hu et al. 2018) and DPN-68 / DPN-92
  (Chen et al. 2017).  They use the classic MXNet training-script idioms the
  Gluon exports lack: a ``fix_gamma=True`` BatchNorm on the data, ``Flatten``,
  ``slice_axis``, ``Reshape`` with special codes, ``broadcast_mul``, and (DPN)
  a ``SoftmaxOutput`` head.

Weights are random but made non-trivial the way ``tests/zoo.py`` does for
torchvision: random BatchNorm gamma ~ U(0.5, 1.5) and beta ~ N(0, 0.2), moving
statistics measured on the calibration photos then perturbed (mean shifted by
N(0,1) * 0.2 std, variance scaled by U(0.5, 2)), and the classifier rescaled so
that logits on the photos spread by ~3 (otherwise every photo lands in one
class and top-1 agreement proves nothing); a classifier without a bias
(MobileNetV2) is centred by projecting the mean feature out of its weights, one
followed by a ReLU (SqueezeNet) has its channels standardised first.
BatchNorms with ``fix_gamma=True`` get a random gamma too: MXNet ignores it
(uses 1), so must a converter.

Each ``make_files`` call writes ``OUT/ARCH-symbol.json``, ``OUT/ARCH-0000.params``
and ``OUT/ARCH.ref.npz`` (``x``: NCHW inputs, ``logits``: the output of the
symbol's head computed by MXNet from the saved files, plus ``fc_logits``, the
output of the last FullyConnected, when the head is a ``SoftmaxOutput`` and
``logits`` therefore holds probabilities).

CLI: ``python tests/mxnet_zoo.py ARCH OUT_DIR`` (ARCH ``all`` makes every arch)
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from zoo import CALIBRATION, PHOTOS, center_photos, photo_dir, photo_label  # noqa: E402,F401  (tests/ is on sys.path)

__all__ = ["MXNET_ZOO", "REF_PHOTOS", "CALIBRATION", "PHOTOS", "photo_label", "import_mxnet", "mxnet_inputs",
           "build", "make_files", "load_ref", "load_checkpoint", "forward", "to_legacy_json", "check_legacy",
           "check_calibration", "HEADS", "GLUON"]

MXNET_ZOO: dict[str, int] = {
    # arch: input size.  Gluon model zoo:
    "resnet50_v1": 224,
    "resnet50_v2": 224,
    "inceptionv3": 299,
    "mobilenet1.0": 224,
    "mobilenetv2_1.0": 224,
    "densenet121": 224,
    # 225, not 224: its three 3x3/2 max pools use pooling_convention "full"
    # (ceil), which gives the same sizes as "valid" at 224 (111->55->27->13)
    # but not at 225 (112->56->28->14, "valid" would give 55/27/13), and the
    # final 13x13/13 average pool then drops the last row and column
    "squeezenet1.1": 225,
    "vgg16_bn": 224,
    # symbol API, written here:
    "resnext50_32x4d": 224,
    "se_resnext50_32x4d": 224,
    "dpn68": 224,
    "dpn92": 160,  # ~3.3 GFLOPs a photo instead of ~6.5 at 224 (the net is size-agnostic: global pooling)
}
GLUON = ("resnet50_v1", "resnet50_v2", "inceptionv3", "mobilenet1.0", "mobilenetv2_1.0", "densenet121",
         "squeezenet1.1", "vgg16_bn")
# what each symbol's head (its only output) is
HEADS: dict[str, str] = {a: "logits (the last FullyConnected)" for a in MXNET_ZOO}
HEADS.update({
    "squeezenet1.1": "logits (Flatten of the global average of ReLU(1x1 Convolution): logits are >= 0)",
    "mobilenetv2_1.0": "logits (Flatten of a bias-free 1x1 Convolution on the global average)",
    "dpn68": "SoftmaxOutput probabilities (pre-softmax logits: ref key fc_logits)",
    "dpn92": "SoftmaxOutput probabilities (pre-softmax logits: ref key fc_logits)",
})
# the photos of the reference outputs, all among the calibration photos (photos
# the BN statistics never saw give logits spread several times wider)
REF_PHOTOS = PHOTOS + ("imagenet_02_438.jpg", "imagenet_04_949.jpg", "imagenet_01_559.jpg", "imagenet_03_990.jpg")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def import_mxnet():
    """``mxnet`` 1.9.1 with numpy >= 1.24 (it still refers to ``np.bool``)."""
    if "bool" not in np.__dict__:  # (hasattr would warn)
        np.bool = bool  # type: ignore[attr-defined]
    import mxnet as mx
    return mx


def mxnet_inputs(size: int, names=PHOTOS) -> np.ndarray:
    """Photos as float32 NCHW RGB: short side resized to round(size/0.875)
    (PIL bilinear), centre crop ``size``, [0, 1] pixels normalised with the
    ImageNet mean/std (PIL + numpy only)."""
    out = center_photos(size, names) / 255.0
    x = (out - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32)


# --------------------------------------------------------------------------- symbol-API nets
def _bn(mx, x, name: str, eps: float, fix_gamma: bool = False):
    return mx.sym.BatchNorm(x, fix_gamma=fix_gamma, eps=eps, momentum=0.9, name=name)


def _resnext_sym(se: bool):
    """ResNeXt-50 (32x4d), post-activation bottlenecks with the stride on the
    grouped 3x3; ``se`` adds Squeeze-and-Excitation (reduction 16) on the
    residual branch before the addition.  Classic MXNet script idioms: a
    fix_gamma BatchNorm on the data, eps 2e-5, Flatten before the classifier."""
    mx = import_mxnet()
    eps = 2e-5
    data = mx.sym.Variable("data")
    x = _bn(mx, data, "bn_data", eps, fix_gamma=True)
    x = mx.sym.Convolution(x, num_filter=64, kernel=(7, 7), stride=(2, 2), pad=(3, 3), no_bias=True, name="conv0")
    x = mx.sym.Activation(_bn(mx, x, "bn0", eps), act_type="relu", name="relu0")
    x = mx.sym.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", name="pool0")
    for i, n in enumerate((3, 4, 6, 3)):
        width, out = 128 << i, 256 << i  # 32 groups x 4 channels x 2^i; 4x expansion of 64 x 2^i
        for j in range(n):
            p = f"stage{i + 1}_unit{j + 1}"
            s = 2 if (i > 0 and j == 0) else 1
            a = mx.sym.Convolution(x, num_filter=width, kernel=(1, 1), no_bias=True, name=p + "_conv1")
            a = mx.sym.Activation(_bn(mx, a, p + "_bn1", eps), act_type="relu", name=p + "_relu1")
            a = mx.sym.Convolution(a, num_filter=width, kernel=(3, 3), stride=(s, s), pad=(1, 1), num_group=32,
                                   no_bias=True, name=p + "_conv2")
            a = mx.sym.Activation(_bn(mx, a, p + "_bn2", eps), act_type="relu", name=p + "_relu2")
            a = mx.sym.Convolution(a, num_filter=out, kernel=(1, 1), no_bias=True, name=p + "_conv3")
            a = _bn(mx, a, p + "_bn3", eps)
            if se:
                g = mx.sym.Pooling(a, kernel=(1, 1), global_pool=True, pool_type="avg", name=p + "_se_pool")
                g = mx.sym.FullyConnected(g, num_hidden=out // 16, name=p + "_se_fc1")  # flatten=True: (N, C/16)
                g = mx.sym.Activation(g, act_type="relu", name=p + "_se_relu")
                g = mx.sym.FullyConnected(g, num_hidden=out, name=p + "_se_fc2")
                g = mx.sym.Activation(g, act_type="sigmoid", name=p + "_se_sigmoid")
                g = mx.sym.Reshape(g, shape=(0, 0, 1, 1), name=p + "_se_reshape")
                a = mx.sym.broadcast_mul(a, g, name=p + "_se_scale")
            if j == 0:
                sc = mx.sym.Convolution(x, num_filter=out, kernel=(1, 1), stride=(s, s), no_bias=True,
                                        name=p + "_sc")
                sc = _bn(mx, sc, p + "_sc_bn", eps)
            else:
                sc = x
            x = mx.sym.Activation(a + sc, act_type="relu", name=p + "_relu")
    x = mx.sym.Pooling(x, kernel=(7, 7), global_pool=True, pool_type="avg", name="pool1")
    x = mx.sym.Flatten(x, name="flatten0")
    return mx.sym.FullyConnected(x, num_hidden=1000, name="fc1")


# DPN (Chen et al. 2017): k_R (width of the grouped 3x3 in the first stage),
# groups G, blocks per stage k_sec, dense growth per block inc_sec, stem
# (filters, kernel) and the residual width of the first stage.  DPN-92 as in
# the paper's table; DPN-68 as released with the authors' reference code
# (3x3 stem of 10 filters, no 4x bottleneck expansion).
_DPN = {
    "dpn68": dict(k_r=128, groups=32, k_sec=(3, 4, 12, 3), inc_sec=(16, 32, 32, 64), stem=(10, 3), bw=64),
    "dpn92": dict(k_r=96, groups=32, k_sec=(3, 4, 20, 3), inc_sec=(16, 32, 24, 128), stem=(64, 7), bw=256),
    # the paper's DPN-131 (~79.5 M parameters): used by `make bench` only
    "dpn131": dict(k_r=160, groups=40, k_sec=(4, 8, 28, 3), inc_sec=(16, 32, 32, 128), stem=(128, 7), bw=256),
}


def _dpn_sym(arch: str):
    """Dual Path Network: pre-activation (BN-ReLU-Conv) grouped bottlenecks
    whose 1x1 output is split (``slice_axis``) into a residual part, added to
    the residual path, and a dense part, concatenated to the dense path.  The
    first block of a stage projects the concatenated paths with a strided 1x1
    into a new residual path and a dense path of 2 x inc channels."""
    mx = import_mxnet()
    cfg = _DPN[arch]
    eps = 1e-4

    def brc(x, name, nf, k, s=1, g=1):
        x = _bn(mx, x, name + "_bn", eps)
        x = mx.sym.Activation(x, act_type="relu", name=name + "_relu")
        return mx.sym.Convolution(x, num_filter=nf, kernel=(k, k), stride=(s, s), pad=(k // 2, k // 2),
                                  num_group=g, no_bias=True, name=name + "_conv")

    data = mx.sym.Variable("data")
    nf, k = cfg["stem"]
    x = mx.sym.Convolution(data, num_filter=nf, kernel=(k, k), stride=(2, 2), pad=(k // 2, k // 2), no_bias=True,
                           name="conv1_x_conv")
    x = mx.sym.Activation(_bn(mx, x, "conv1_x_bn", eps), act_type="relu", name="conv1_x_relu")
    x = mx.sym.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", name="conv1_x_pool")
    resid = dense = None
    for i, (n, inc) in enumerate(zip(cfg["k_sec"], cfg["inc_sec"])):
        r = cfg["k_r"] << i
        c = cfg["bw"] << i
        for j in range(n):
            p = f"conv{i + 2}_x_{j + 1}"
            s = 2 if (i > 0 and j == 0) else 1
            x_in = x if resid is None else mx.sym.Concat(resid, dense, dim=1, name=p + "_in")
            if j == 0:
                w = brc(x_in, p + "_c1x1_w", c + 2 * inc, 1, s)
                resid = mx.sym.slice_axis(w, axis=1, begin=0, end=c, name=p + "_w_res")
                dense = mx.sym.slice_axis(w, axis=1, begin=c, end=None, name=p + "_w_dense")
            a = brc(x_in, p + "_c1x1_a", r, 1)
            b = brc(a, p + "_c3x3_b", r, 3, s, cfg["groups"])
            o = brc(b, p + "_c1x1_c", c + inc, 1)
            o1 = mx.sym.slice_axis(o, axis=1, begin=0, end=c, name=p + "_c_res")
            o2 = mx.sym.slice_axis(o, axis=1, begin=c, end=c + inc, name=p + "_c_dense")
            resid = mx.sym.elemwise_add(resid, o1, name=p + "_sum")
            dense = mx.sym.Concat(dense, o2, dim=1, name=p + "_cat")
            x = None
    x = mx.sym.Concat(resid, dense, dim=1, name="conv5_x_x")
    x = mx.sym.Activation(_bn(mx, x, "conv5_x_x_bn", eps), act_type="relu", name="conv5_x_x_relu")
    x = mx.sym.Pooling(x, kernel=(7, 7), global_pool=True, pool_type="avg", name="pool5")
    x = mx.sym.FullyConnected(x, num_hidden=1000, name="fc6")  # flatten=True on the (N, C, 1, 1) pool
    return mx.sym.SoftmaxOutput(x, name="softmax")


# --------------------------------------------------------------------------- graph helpers
def _nodes(sym) -> list[dict]:
    return json.loads(sym.tojson())["nodes"]


def _entry_name(sym, nodes: list[dict], nid: int, idx: int) -> str:
    """The internal-output name of node ``nid`` output ``idx``."""
    n = nodes[nid]
    if n["op"] == "null":
        return n["name"]
    outs = set(sym.get_internals().list_outputs())
    for cand in (f"{n['name']}_output", f"{n['name']}_output{idx}"):
        if cand in outs:
            return cand
    raise KeyError((n["name"], idx))


def _bind(sym, args: dict, aux: dict, data: np.ndarray):
    """An executor for ``sym`` on ``data`` (inputs absent from ``args``, like
    ``softmax_label``, get zeros).

    MXNet's default MKLDNN subgraph backend is turned off while binding: it
    fuses Convolution + BatchNorm at bind time with the moving statistics
    folded into the weights, so that even a train-mode pass normalises with the
    moving statistics (and it fails to bind graphs whose outputs are BatchNorm
    statistics); executors here run the graph op by op.  (The fused inference
    differs from the plain one by ~1e-5 relative.)"""
    import os
    mx = import_mxnet()
    shapes, _, _ = sym.infer_shape(data=data.shape)
    a = {}
    for name, shp in zip(sym.list_arguments(), shapes):
        if name == "data":
            a[name] = mx.nd.array(data)
        elif name in args:
            a[name] = args[name]
        else:
            a[name] = mx.nd.zeros(shp)
    x = {k: aux[k] for k in sym.list_auxiliary_states()}
    old = os.environ.get("MXNET_SUBGRAPH_BACKEND")
    os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"
    try:
        return sym.bind(mx.cpu(), a, aux_states=x, grad_req="null")
    finally:
        if old is None:
            del os.environ["MXNET_SUBGRAPH_BACKEND"]
        else:
            os.environ["MXNET_SUBGRAPH_BACKEND"] = old


def _nd(a):
    """A fresh float32 NDArray (parameters are replaced, never written in place:
    MKLDNN keeps weights it has used in its own layout, which cannot be assigned to)."""
    mx = import_mxnet()
    return mx.nd.array(np.asarray(a, dtype=np.float32))


def forward(sym, args: dict, aux: dict, data: np.ndarray, is_train: bool = False) -> list[np.ndarray]:
    ex = _bind(sym, args, aux, data)
    ex.forward(is_train=is_train)
    return [o.asnumpy() for o in ex.outputs]


def _weighted(nodes: list[dict]) -> list[int]:
    return [i for i, n in enumerate(nodes) if n["op"] in ("FullyConnected", "Convolution")]


def _logits_entry(sym, nodes):
    """The symbol's logits: its head, or the data input of a SoftmaxOutput head."""
    heads = json.loads(sym.tojson())["heads"]
    assert len(heads) == 1, heads
    nid, idx = heads[0][:2]
    if nodes[nid]["op"] == "SoftmaxOutput":
        nid, idx = nodes[nid]["inputs"][0][:2]
    return nid, idx


# --------------------------------------------------------------------------- build
def _gluon(arch: str, size: int, seed: int):
    """A Gluon model zoo net exported and loaded back: (symbol, args, aux)."""
    mx = import_mxnet()
    from mxnet.gluon.model_zoo import vision
    mx.random.seed(seed)
    with mx.name.NameManager():  # fresh name counters: "resnetv10_..." however many nets came before
        net = vision.get_model(arch, pretrained=False)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    net.hybridize()
    net(mx.nd.zeros((1, 3, size, size))).wait_to_read()
    with tempfile.TemporaryDirectory() as tmp:
        prefix = str(Path(tmp) / arch)
        net.export(prefix)
        sym = mx.sym.load(prefix + "-symbol.json")
        saved = mx.nd.load(prefix + "-0000.params")
    args = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    aux = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    return sym, args, aux


def _symbolic(arch: str, size: int, rng: np.random.RandomState):
    """A symbol-API net with He-normal weights: (symbol, args, aux)."""
    mx = import_mxnet()
    sym = _dpn_sym(arch) if arch.startswith("dpn") else _resnext_sym(arch.startswith("se_"))
    arg_shapes, _, aux_shapes = sym.infer_shape(data=(1, 3, size, size))
    args, aux = {}, {}
    for name, shp in zip(sym.list_arguments(), arg_shapes):
        if name in ("data", "softmax_label"):
            continue
        if name.endswith("_weight"):
            w = rng.randn(*shp) * np.sqrt(2.0 / np.prod(shp[1:]))
        elif name.endswith("_gamma"):
            w = np.ones(shp)
        else:  # biases, beta
            w = np.zeros(shp)
        args[name] = mx.nd.array(w.astype(np.float32))
    for name, shp in zip(sym.list_auxiliary_states(), aux_shapes):
        aux[name] = mx.nd.array(np.zeros(shp, np.float32) if name.endswith("_mean") else np.ones(shp, np.float32))
    return sym, args, aux


def _downstream(nodes: list[dict], ops: tuple[str, ...]) -> set[int]:
    """Indices of the nodes that depend on a node of one of ``ops``."""
    down: set[int] = set()
    for i, n in enumerate(nodes):
        if any(e[0] in down or nodes[e[0]]["op"] in ops for e in n["inputs"]):
            down.add(i)
    return down


def _calibrate_bn(sym, args, aux, x: np.ndarray, rng: np.random.RandomState) -> int:
    """Random gamma/beta, then moving statistics measured on ``x`` and perturbed.

    One forward pass in training mode, where every BatchNorm normalises with
    its batch statistics, of the graph with ``output_mean_var=True`` on every
    BatchNorm, whose outputs are the batch means and inverse standard
    deviations ``1/sqrt(var + eps)`` of all BatchNorms at once: each BatchNorm
    input is then exactly what that layer sees once its moving statistics equal
    those batch statistics (upstream BatchNorms not yet perturbed, as the
    train-mode pass of ``tests/zoo.py``).  A train-mode forward of a plain
    executor (see ``_bind``) neither reads nor moves the moving statistics
    (MXNet moves them in the backward pass; checked by ``check_calibration``).
    Returns the BatchNorm count."""
    mx = import_mxnet()
    g = json.loads(sym.tojson())
    nodes = g["nodes"]
    bns = [i for i, n in enumerate(nodes) if n["op"] == "BatchNorm"]
    if not bns:
        return 0
    assert not set(bns) & _downstream(nodes, ("Dropout",)), "a BatchNorm after a Dropout (active in train mode)"
    for i in bns:
        assert int(nodes[i]["attrs"].get("axis", "1")) == 1, nodes[i]
        nodes[i]["attrs"]["output_mean_var"] = "True"
    inner = mx.sym.load_json(json.dumps(g)).get_internals()
    names = [nodes[i]["name"] for i in bns]
    # the first BatchNorm's input too, to check what the "var" output holds
    first_in = _entry_name(sym, nodes, *nodes[bns[0]]["inputs"][0][:2])
    outs = [inner[n + "_mean"] for n in names] + [inner[n + "_var"] for n in names]
    if first_in != "data":
        outs.append(sym.get_internals()[first_in])
    res = forward(mx.sym.Group(outs), args, aux, x, is_train=True)
    k = len(bns)
    y = (res[-1] if first_in != "data" else x).astype(np.float64)
    for i, name in zip(bns, names):
        attrs = nodes[i]["attrs"]
        eps = float(attrs.get("eps", "0.001"))
        mean = res[names.index(name)].astype(np.float64)
        var = 1.0 / res[k + names.index(name)].astype(np.float64) ** 2 - eps  # the output is 1/sqrt(var + eps)
        if i == bns[0]:
            v0 = y.var((0, 2, 3))
            assert np.abs(var - v0).max() <= 1e-2 * v0.max(), "BatchNorm var output is not 1/sqrt(var + eps)"
        var = np.maximum(var, 0.0)
        c = mean.shape[0]
        gamma, beta, mm, mv = (nodes[e[0]]["name"] for e in nodes[i]["inputs"][1:5])
        args[gamma] = _nd(rng.uniform(0.5, 1.5, c).astype(np.float32))
        args[beta] = _nd((rng.randn(c) * 0.2).astype(np.float32))
        aux[mm] = _nd((mean + rng.randn(c) * 0.2 * np.sqrt(var)).astype(np.float32))
        aux[mv] = _nd((var * rng.uniform(0.5, 2.0, c)).astype(np.float32))
    return k


def _random_biases(sym, args, rng: np.random.RandomState) -> None:
    """Convolution / FullyConnected biases ~ N(0, 0.05) (Gluon initialises them to zero)."""
    nodes = _nodes(sym)
    for i in _weighted(nodes):
        n = nodes[i]
        if len(n["inputs"]) > 2:
            b = nodes[n["inputs"][2][0]]["name"]
            args[b] = _nd((rng.randn(*args[b].shape) * 0.05).astype(np.float32))


def _path_ops(nodes: list[dict], src: int, dst: int) -> list[str]:
    """The ops from node ``src`` (excluded) to node ``dst`` along first inputs."""
    ops, i = [], dst
    while i != src:
        ops.append(nodes[i]["op"])
        assert nodes[i]["inputs"], (src, dst)
        i = nodes[i]["inputs"][0][0]
    return ops


def _spread_logits(sym, args, aux, x: np.ndarray, target: float = 3.0) -> float:
    """Rescale the classifier (the last FullyConnected / Convolution) so logits
    on ``x`` spread by ~``target`` (std over the batch after removing each
    class's mean) and centre its bias when it computes the logits directly.

    A classifier followed by a ReLU (SqueezeNet: 1x1 Convolution, ReLU, global
    average) cannot be centred through the ReLU, and its few channels with the
    largest mean would win on every photo: its output channels are first
    standardised (weights and bias rescaled per channel, bias shifted) to zero
    mean and unit std over the photos and positions.  A classifier without a
    bias (MobileNetV2: 1x1 Convolution, Flatten) is centred by removing from
    each weight row its component along the mean classifier input.  Returns
    the scale."""
    nodes = _nodes(sym)
    nid, idx = _logits_entry(sym, nodes)
    ci = _weighted(nodes)[-1]
    fc = nodes[ci]
    w = nodes[fc["inputs"][1][0]]["name"]
    b = nodes[fc["inputs"][2][0]]["name"] if len(fc["inputs"]) > 2 else None
    internals = sym.get_internals()
    if b is not None and "Activation" in _path_ops(nodes, ci, nid):
        c = forward(internals[_entry_name(sym, nodes, ci, 0)], args, aux, x)[0].astype(np.float64)
        red = tuple(i for i in range(c.ndim) if i != 1)
        m, sd = c.mean(red), c.std(red) + 1e-6
        wa = args[w].asnumpy().astype(np.float64)
        args[w] = _nd((wa / sd.reshape((-1,) + (1,) * (wa.ndim - 1))).astype(np.float32))
        args[b] = _nd(((args[b].asnumpy() - m) / sd).astype(np.float32))
    elif b is None and not {"Activation", "relu"} & set(_path_ops(nodes, ci, nid)):
        # no bias to centre with (MobileNetV2's 1x1 Convolution): remove from
        # each weight row its component along the mean classifier input, so
        # that every class has a zero mean logit over the photos
        f = forward(internals[_entry_name(sym, nodes, *fc["inputs"][0][:2])], args, aux, x)[0]
        assert f.ndim == 2 or f.shape[2:] == (1,) * (f.ndim - 2), f.shape
        fbar = f.reshape(f.shape[0], -1).astype(np.float64).mean(0)
        wa = args[w].asnumpy().astype(np.float64)
        w2 = wa.reshape(wa.shape[0], -1)
        w2 = w2 - np.outer(w2 @ fbar, fbar) / float(fbar @ fbar)
        args[w] = _nd(w2.reshape(wa.shape))
    z = forward(internals[_entry_name(sym, nodes, nid, idx)], args, aux, x)[0].astype(np.float64)
    z = z.reshape(z.shape[0], -1)
    mu = z.mean(0)
    sd = float((z - mu).std())
    s = target / sd if sd > 0 else 1.0
    args[w] = _nd(args[w].asnumpy() * s)
    if b is not None:
        bias = args[b].asnumpy().astype(np.float64)
        if ci == nid:
            bias = bias - mu.reshape(bias.shape)
        args[b] = _nd(bias * s)
    return s


def build(arch: str, seed: int = 0, info: dict | None = None):
    """``arch`` with random non-trivial weights: (symbol, arg_params, aux_params)
    (dicts of NDArrays, as ``mx.model.load_checkpoint`` returns them).  ``info``
    (optional dict) receives the BatchNorm count, the classifier scale and
    timings."""
    mx = import_mxnet()
    info = {} if info is None else info
    size = MXNET_ZOO[arch]
    rng = np.random.RandomState(seed)
    mx.random.seed(seed)
    t0 = time.perf_counter()
    if arch in GLUON:
        sym, args, aux = _gluon(arch, size, seed)
    else:
        sym, args, aux = _symbolic(arch, size, rng)
    info["build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = mxnet_inputs(size, CALIBRATION)
    _random_biases(sym, args, rng)
    info["bn"] = _calibrate_bn(sym, args, aux, x, rng)
    info["scale"] = _spread_logits(sym, args, aux, x)
    info["calibrate_s"] = time.perf_counter() - t0
    return sym, args, aux


def check_calibration(arch: str, seed: int = 0) -> dict[str, float]:
    """Self-checks of the one-pass BatchNorm measurement (not used by ``build``):

    ``aux``: max |difference| of the measured statistics when the moving
    statistics bound during the train-mode pass are replaced by random ones
    (0: the pass reads none of them);
    ``eval_vs_train``: max |eval - train| / max |train| of the logits (the
    input of the first Dropout when there is one) once the moving statistics
    equal the measured ones unperturbed (~1e-6: the measurement is exact)."""
    size = MXNET_ZOO[arch]

    class _NoPerturb(np.random.RandomState):
        def randn(self, *shape):
            return np.zeros(shape)

        def uniform(self, low=0.0, high=1.0, size=None):
            return np.ones(size)

    def fresh():
        return _gluon(arch, size, seed) if arch in GLUON else _symbolic(arch, size, np.random.RandomState(seed))
    x = mxnet_inputs(size, CALIBRATION)
    sym, args, aux = fresh()
    args2 = dict(args)  # (parameters are replaced, not written in place)
    r = np.random.RandomState(1)
    aux2 = {k: _nd(r.rand(*v.shape) + 0.5) for k, v in aux.items()}
    _calibrate_bn(sym, args, aux, x, _NoPerturb(0))
    _calibrate_bn(sym, args2, aux2, x, _NoPerturb(0))
    d_aux = max((float(np.abs(aux[k].asnumpy() - aux2[k].asnumpy()).max()) for k in aux), default=0.0)
    nodes = _nodes(sym)
    entry = _logits_entry(sym, nodes)
    drops = [i for i, n in enumerate(nodes) if n["op"] == "Dropout"]
    if drops:  # Dropout is active in training mode: compare the input of the first one
        entry = tuple(nodes[drops[0]]["inputs"][0][:2])
    head = sym.get_internals()[_entry_name(sym, nodes, *entry)]
    a = forward(head, args, aux, x, is_train=True)[0]
    b = forward(head, args, aux, x, is_train=False)[0]
    return {"aux": d_aux, "eval_vs_train": float(np.abs(a - b).max() / max(1e-12, float(np.abs(a).max())))}


# --------------------------------------------------------------------------- files
def load_checkpoint(prefix):
    """(symbol, arg_params, aux_params) of ``PREFIX-symbol.json`` + ``PREFIX-0000.params``."""
    mx = import_mxnet()
    sym = mx.sym.load(f"{prefix}-symbol.json")
    saved = mx.nd.load(f"{prefix}-0000.params")
    args = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    aux = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    return sym, args, aux


def _ref_outputs(sym, args, aux, x: np.ndarray) -> dict[str, np.ndarray]:
    """``logits``: the head's output; ``fc_logits`` too (same forward pass) when
    the head is a SoftmaxOutput."""
    mx = import_mxnet()
    nodes = _nodes(sym)
    nid, idx = _logits_entry(sym, nodes)
    heads = json.loads(sym.tojson())["heads"]
    if nid == heads[0][0]:
        return {"logits": forward(sym, args, aux, x)[0]}
    fc = sym.get_internals()[_entry_name(sym, nodes, nid, idx)]
    out = forward(mx.sym.Group([sym, fc]), args, aux, x)
    return {"logits": out[0], "fc_logits": out[1]}


def make_files(arch: str, out_dir, seed: int = 0, timings: dict | None = None) -> dict[str, Path]:
    """Build ``arch`` and save ``OUT/ARCH-symbol.json``, ``OUT/ARCH-0000.params``
    (``arg:NAME`` / ``aux:NAME`` keys, via ``mx.model.save_checkpoint``) and
    ``OUT/ARCH.ref.npz`` (``x``: NCHW ``REF_PHOTOS``; ``logits``: MXNet's output
    of the head computed from the saved files; ``fc_logits`` when the head is a
    SoftmaxOutput).  Returns {"symbol", "params", "ref", "prefix"} -> path."""
    mx = import_mxnet()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t = {} if timings is None else timings
    sym, args, aux = build(arch, seed, info=t)
    prefix = out_dir / arch
    t0 = time.perf_counter()
    mx.model.save_checkpoint(str(prefix), 0, sym, args, aux)
    t["save_s"] = time.perf_counter() - t0
    paths = {"prefix": prefix, "symbol": out_dir / f"{arch}-symbol.json", "params": out_dir / f"{arch}-0000.params",
             "ref": out_dir / f"{arch}.ref.npz"}
    t["bytes"] = paths["params"].stat().st_size
    x = mxnet_inputs(MXNET_ZOO[arch], REF_PHOTOS)
    t0 = time.perf_counter()
    s2, a2, x2 = load_checkpoint(prefix)
    ref = _ref_outputs(s2, a2, x2, x)
    t["ref_s"] = time.perf_counter() - t0
    np.savez(paths["ref"], x=x, **ref)
    return paths


def load_ref(path) -> dict[str, np.ndarray]:
    """The arrays of ``ARCH.ref.npz`` (path of the npz or the checkpoint prefix)."""
    p = Path(path)
    if not p.name.endswith(".ref.npz"):
        p = p.parent / (p.name + ".ref.npz")
    with np.load(p) as r:
        return {k: r[k] for k in r.files}


# --------------------------------------------------------------------------- legacy JSON
# the auxiliary states of the operators that have any, in input order (the last inputs)
_AUX = {"BatchNorm": ("moving_mean", "moving_var")}


def _hidden(key: str) -> bool:
    return len(key) > 4 and key.startswith("__") and key.endswith("__")


def to_legacy_json(src_json_path, dst_json_path, drop_aux: bool = True, layout: str = "0.8") -> dict:
    """Rewrite a current-layout symbol JSON (MXNet >= 1.2: nodes with ``attrs``,
    ``[node, output, version]`` input entries, ``node_row_ptr``, top-level
    ``attrs: {"mxnet_version": ["int", 10901]}``) into an older layout.

    ``layout="0.8"`` (MXNet 0.8, before NNVM; what MXNet's own
    ``test_load_000800`` fixture looks like):

    * every node: ``op``, ``param`` (the operator parameters; ``{}`` for
      variables), ``name``, ``inputs`` as ``[node, output]`` pairs,
      ``backward_source_id: -1`` and, only when there are any, ``attr`` (an op
      node's hidden ``__key__`` attributes; all of a variable's attributes,
      e.g. ``__lr_mult__``, ``__shape__``, ``__init__``);
    * top level: ``nodes``, ``arg_nodes``, ``heads`` (pairs) only: no
      ``node_row_ptr`` and no ``attrs``, so MXNet assumes version 0.8.0 and runs
      its upgrade passes on load;
    * ``drop_aux``: 0.8 did not store auxiliary states (BatchNorm moving
      mean/var) in the graph; MXNet >= 0.9 re-creates them on load named
      ``<op name>_<aux name>`` (``bn1_moving_mean``), so they are dropped when
      they carry those default names and kept otherwise (Gluon exports name
      them ``..._running_mean``, which an upgrade would not reproduce).

    ``layout="attr"`` (NNVM-era MXNet 0.9 - 1.1): every node ``op``, ``name``,
    ``attr`` (parameters and hidden attributes in one map, omitted when
    empty), ``inputs`` as given; ``node_row_ptr`` kept;
    ``attrs: {"mxnet_version": ["int", 10100]}``; aux states kept.

    Returns {"nodes": count, "dropped_aux": names dropped}."""
    g = json.loads(Path(src_json_path).read_text())
    nodes = g["nodes"]
    if layout == "attr":
        out = []
        for n in nodes:
            node = {"op": n["op"], "name": n["name"]}
            attrs = n.get("attrs", n.get("attr", {}))
            if attrs:
                node["attr"] = attrs
            node["inputs"] = n["inputs"]
            out.append(node)
        old = {"nodes": out, "arg_nodes": g["arg_nodes"]}
        if "node_row_ptr" in g:
            old["node_row_ptr"] = g["node_row_ptr"]
        old["heads"] = g["heads"]
        old["attrs"] = {"mxnet_version": ["int", 10100]}
        Path(dst_json_path).write_text(json.dumps(old, indent=2))
        return {"nodes": len(out), "dropped_aux": []}
    if layout != "0.8":
        raise ValueError(f"layout {layout!r}: '0.8' or 'attr'")
    drop: set[int] = set()
    if drop_aux:
        uses: dict[int, int] = {}
        for n in nodes:
            for e in n["inputs"]:
                uses[e[0]] = uses.get(e[0], 0) + 1
        for n in nodes:
            names = _AUX.get(n["op"], ())
            if not names or len(n["inputs"]) < len(names):
                continue
            for e, aux in zip(n["inputs"][-len(names):], names):
                v = nodes[e[0]]
                if v["op"] == "null" and v["name"] == f"{n['name']}_{aux}" and uses[e[0]] == 1:
                    drop.add(e[0])
    keep = [i for i in range(len(nodes)) if i not in drop]
    new_id = {old: new for new, old in enumerate(keep)}
    out_nodes = []
    for i in keep:
        n = nodes[i]
        attrs = n.get("attrs", n.get("attr", {}))
        node = {"op": n["op"],
                "param": {k: v for k, v in attrs.items() if not _hidden(k)} if n["op"] != "null" else {},
                "name": n["name"],
                "inputs": [[new_id[e[0]], e[1]] for e in n["inputs"] if e[0] not in drop],
                "backward_source_id": -1}
        attr = {k: v for k, v in attrs.items() if _hidden(k) or n["op"] == "null"}
        if attr:
            node["attr"] = attr
        out_nodes.append(node)
    legacy = {"nodes": out_nodes,
              "arg_nodes": [new_id[i] for i in g["arg_nodes"] if i not in drop],
              "heads": [[new_id[h[0]], h[1]] for h in g["heads"]]}
    Path(dst_json_path).write_text(json.dumps(legacy, indent=2))
    return {"nodes": len(out_nodes), "dropped_aux": sorted(nodes[i]["name"] for i in drop)}


def check_legacy(prefix, tmp_dir, layout: str = "0.8") -> float:
    """Write ``PREFIX-symbol.json`` in a legacy layout, load it with MXNet and
    return max |legacy - current| of the reference outputs (the arguments, aux
    states and node attributes must come back the same)."""
    mx = import_mxnet()
    prefix = Path(prefix)
    dst = Path(tmp_dir) / f"{prefix.name}-legacy{layout}-symbol.json"
    to_legacy_json(f"{prefix}-symbol.json", dst, layout=layout)
    sym, args, aux = load_checkpoint(prefix)
    legacy = mx.sym.load(str(dst))
    assert legacy.list_arguments() == sym.list_arguments()
    assert legacy.list_auxiliary_states() == sym.list_auxiliary_states()
    assert legacy.attr_dict() == sym.attr_dict()
    x = load_ref(prefix)["x"]
    a = _ref_outputs(sym, args, aux, x)
    b = _ref_outputs(legacy, args, aux, x)
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


# --------------------------------------------------------------------------- CLI
def _report(arch: str, paths: dict, t: dict, total: float) -> None:
    mx = import_mxnet()
    ref = load_ref(paths["ref"])
    z = ref.get("fc_logits", ref["logits"])
    spread = float((z - z.mean(0)).std())
    top = z.argmax(1).tolist()
    sym, args, aux = load_checkpoint(paths["prefix"])
    x = ref["x"]
    ex = _bind(sym, args, aux, x)
    ex.forward(is_train=False)
    mx.nd.waitall()
    t0 = time.perf_counter()
    ex.forward(is_train=False)
    ex.outputs[0].wait_to_read()
    fwd = time.perf_counter() - t0
    print(f"{arch}: build {t['build_s']:.1f}s, calibrate {t['calibrate_s']:.1f}s (bn={t['bn']} "
          f"scale={t['scale']:.3g}), save {t['save_s']:.1f}s, ref {t['ref_s']:.1f}s, total {total:.1f}s; "
          f"{t['bytes'] / 2**20:.1f} MiB; spread {spread:.2f}; top-1 {top} ({len(set(top))} distinct); "
          f"forward x{x.shape[0]} {fwd:.2f}s; head: {HEADS[arch]}")


def _main(argv) -> int:
    if len(argv) != 2 or (argv[0] not in MXNET_ZOO and argv[0] != "all"):
        print(f"usage: mxnet_zoo.py ARCH OUT_DIR  (ARCH: all, {', '.join(MXNET_ZOO)})")
        return 2
    archs = list(MXNET_ZOO) if argv[0] == "all" else [argv[0]]
    t_all = time.perf_counter()
    for arch in archs:
        t = {}
        t0 = time.perf_counter()
        paths = make_files(arch, argv[1], timings=t)
        _report(arch, paths, t, time.perf_counter() - t0)
    if len(archs) > 1:
        print(f"all: {time.perf_counter() - t_all:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
