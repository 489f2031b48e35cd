"""The ``xconv`` command line.  The library logs; only this module prints."""
from __future__ import annotations

import argparse
import re
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .errors import XconvError

log = logging.getLogger("xconv")


def _shape(s: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in s.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input-shape wants e.g. 1,3,224,224, got {s!r}") from None
    if len(dims) != 4 or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"--input-shape wants 4 positive dims N,C,H,W, got {s!r}")
    return dims


def _json(s: str) -> dict[str, Any]:
    try:
        v = json.loads(s)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(v, dict):
        raise argparse.ArgumentTypeError("--arch-kwargs wants a JSON object")
    return v


def load_plugins(specs: list[str] | None) -> None:
    if specs:
        from .plugins import load_plugins as _load  # noqa: PLC0415
        _load(specs)


def _protocols(s: str) -> list[str]:
    out = [v.strip() for v in s.split(",") if v.strip()]
    bad = [v for v in out if v not in ("single", "12", "144")]
    if bad or not out:
        raise argparse.ArgumentTypeError(f"crop protocols are single, 12 and 144; got {s!r}")
    return out


def _floats(s: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {s!r}") from None


def frontend_opts(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if getattr(args, "arch", None):
        opts["arch"] = args.arch
    if getattr(args, "arch_kwargs", None):
        opts["arch_kwargs"] = args.arch_kwargs
    if getattr(args, "input_shape", None):
        opts["input_shape"] = args.input_shape
    if getattr(args, "drop_background", False):
        opts["drop_background"] = True
    for k in ("inputs", "outputs"):
        if getattr(args, k, None):
            opts[k] = [v for v in getattr(args, k).split(",") if v]
    if getattr(args, "weights", None):
        opts["weights"] = str(Path(args.weights).resolve())  # absolute: verify may run from elsewhere
    if getattr(args, "source_dialect", None):
        opts["source_dialect"] = args.source_dialect
    return opts


def model_name(source: str, arch: str | None) -> str:
    """Output base name from the model file: ``inception_v4.ckpt`` -> ``inception_v4``,
    ``model.ckpt-12345.index`` -> ``model``, a SavedModel directory -> its name."""
    name = Path(str(source).rstrip("/")).name
    name = re.sub(r"\.(index|meta|data-\d+-of-\d+)$", "", name)
    name = re.sub(r"\.ckpt(-\d+)?$", "", name)
    name = re.sub(r"\.(pth|pt|pkl|pb|h5|keras|onnx|json|params|t7|caffemodel|prototxt)$", "", name)
    name = re.sub(r"-(symbol|\d{4})$", "", name)  # MXNet checkpoints: NAME-symbol.json, NAME-0000.params
    if not name and arch:
        name = arch.split(":")[-1]
    return name or "model"


def cmd_convert(args: argparse.Namespace) -> int:
    from .backend import EmitOptions
    from .convert import convert
    from .frontend import load

    load_plugins(args.plugin)
    opts = frontend_opts(args)
    graph = load(args.source_fw, args.model, **opts)
    graph.meta.extra.setdefault("frontend_options", {k: (list(v) if isinstance(v, tuple) else v)
                                                     for k, v in opts.items()})
    graph.meta.source_file = str(Path(args.model).resolve())
    if args.preset:
        from .verify.presets import get as get_preset  # noqa: PLC0415
        graph.meta.extra["preset"] = get_preset(args.preset).to_json()
    name = args.name or model_name(args.model, args.arch)
    dialect = _dialect(args)
    eopts = EmitOptions(dialect=dialect or ("bvlc" if args.to == "caffe" else ""), opset=args.opset)
    res = convert(graph, args.to, args.output, name, eopts)
    print(f"converted {args.model} ({args.source_fw}) -> {args.to}"
          + (f" [{eopts.dialect}]" if args.to == "caffe" else f" [opset {eopts.opset}]"))
    print(f"  {graph.summary()}")
    print(f"  lowered: {res.graph.summary()}")
    for f in res.files:
        print(f"  wrote {f}")
    return 0


def _localiser(args: argparse.Namespace, fw: str, source: str, fopts: dict[str, Any]):
    def run(conv, x):
        from .backend import EmitOptions
        from .convert import lower
        from .frontend import load
        from .verify.localise import first_divergence

        g = load(fw, source, **fopts)
        eo = EmitOptions(dialect=conv.info.get("dialect") or "", opset=conv.info.get("opset") or 13)
        lowered = lower(g, conv.target, eo)
        return first_divergence(lowered, conv, x)
    return run


def cmd_verify(args: argparse.Namespace) -> int:
    from .frontend import source_runner
    from .verify import locate, verify

    if args.list_presets:
        from .verify.presets import PRESETS  # noqa: PLC0415
        for p in PRESETS.values():
            print(f"{p.name:18} {p.color_order} range {p.value_range} mean {p.mean} std {p.std} "
                  f"{p.base}->{p.crop} {p.resize}  ({p.notes})")
        return 0
    load_plugins(args.plugin)
    if args.data:
        return cmd_evaluate(args)
    first = locate(args.converted[0])
    meta = first.info.get("meta", {})
    fw = args.source_fw or meta.get("source_framework")
    if not fw:
        raise XconvError("cannot tell the source framework: pass --from")
    fopts = dict(meta.get("extra", {}).get("frontend_options", {}))
    fopts.update(frontend_opts(args))
    if "input_shape" in fopts:
        fopts["input_shape"] = tuple(fopts["input_shape"])
    from .verify.device import resolve_device
    device = resolve_device(args.device)
    src = source_runner(fw, args.source, device=device, **fopts)
    rep = verify(src, args.converted, images=args.images, labels=args.labels, limit=args.limit,
                 batch=args.batch_size, atol=args.atol, rtol=args.rtol, device=device, source_name=f"{fw} (source)",
                 localiser=None if args.no_localise else _localiser(args, fw, args.source, fopts))
    what = f"{rep.images} {'labelled ' if rep.labelled else ''}{'images' if args.images else 'random tensors'}"
    tol = f"{args.atol:g}" + (f" + {args.rtol:g} x max|logit|" if args.rtol else "")
    print(f"parity on {what} (tolerance max|dlogit| <= {tol}, device {device})")
    print(rep.table())
    if args.json:
        Path(args.json).write_text(json.dumps(rep.to_json(), indent=2))
        print(f"wrote {args.json}")
    print("PARITY: PASS" if rep.passed else "PARITY: FAIL")
    return 0 if rep.passed else 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``verify --data``: the ImageNet protocol over a validation set, source and conversions side by side."""
    from .frontend import source_runner
    from .ir import ModelMeta
    from .verify import locate
    from .verify.datasets import open_dataset
    from .verify.device import resolve_device
    from .verify.evaluate import default_workers, evaluate, progress_bar
    from .verify.presets import from_meta, get as get_preset
    from .verify.runners import make_runner

    convs = [locate(c) for c in args.converted]
    first = convs[0]
    meta = ModelMeta.from_json(first.info.get("meta", {}))
    fw = args.source_fw or meta.source_framework
    if not fw:
        raise XconvError("cannot tell the source framework: pass --from")
    fopts = dict(meta.extra.get("frontend_options", {}))
    fopts.update(frontend_opts(args))
    if "input_shape" in fopts:
        fopts["input_shape"] = tuple(fopts["input_shape"])
    shape = first.input_shape or (1, 3, 224, 224)
    preset = get_preset(args.preset) if args.preset else from_meta(meta, tuple(shape[2:]))
    preset = preset.with_overrides(base=args.base_size, crop=args.crop_size, mean=args.mean, std=args.std,
                                   color_order=args.color_order, value_range=args.value_range, resize=args.resize)
    if tuple(shape[2:]) != (preset.crop, preset.crop):
        raise XconvError(f"the converted model takes {shape[2]}x{shape[3]} inputs but preset '{preset.name}' crops "
                         f"{preset.crop}x{preset.crop}: pick a preset of that size or pass --crop-size")
    ds = open_dataset(args.data, args.data_format, labels=args.labels, ground_truth=args.ground_truth,
                      synset_order=args.synset_order, synsets=args.synsets,
                      tfrecord_label_offset=args.tfrecord_label_offset)
    entries = ds.select(args.limit, args.subset, args.subset_seed)
    device = resolve_device(args.device)
    models = {f"{fw} (source)": source_runner(fw, args.source, device=device, **fopts)}
    for c in convs:
        models[c.label] = make_runner(c, device=device)
    ck = args.checkpoint or (str(Path(args.json).with_suffix(".verify.jsonl")) if args.json
                             else f"{next(iter(first.files.values())).stem}.verify.jsonl")
    workers = default_workers() if args.workers is None else args.workers
    reports = []
    for protocol in args.crops:
        ckp = ck if len(args.crops) == 1 else str(Path(ck).with_suffix(f".{protocol}.jsonl"))
        rep = evaluate(models, ds, entries, preset, protocol=protocol, batch=args.batch_size, workers=workers,
                       background_offset=meta.background_offset, atol=args.atol, rtol=args.rtol, checkpoint=ckp,
                       resume=args.resume, progress=progress_bar(sys.stderr) if sys.stderr.isatty() else None)
        print(rep.table())
        reports.append(rep)
    layers: dict[str, list[dict[str, Any]]] = {}
    if args.per_layer:
        from .backend import EmitOptions  # noqa: PLC0415
        from .convert import lower  # noqa: PLC0415
        from .frontend import load  # noqa: PLC0415
        from .verify.evaluate import prepare  # noqa: PLC0415
        from .verify.localise import layer_errors  # noqa: PLC0415
        x = prepare(ds.read(entries[0]), preset, "single")[:1]
        g = load(fw, args.source, **fopts)
        for c in convs:
            eo = EmitOptions(dialect=c.info.get("dialect") or "", opset=c.info.get("opset") or 13)
            layers[c.label] = layer_errors(lower(g, c.target, eo), c, x)
            worst = max(layers[c.label], key=lambda r: r["rel"], default=None)
            if worst:
                print(f"{c.label}: {len(layers[c.label])} tensors compared along the network; largest relative "
                      f"error {worst['rel']:.2e} at '{worst['node']}' ({worst['op']})")
    if args.json:
        doc = reports[0].to_json() if len(reports) == 1 else {"runs": [r.to_json() for r in reports]}
        if layers:
            doc["per_layer"] = layers
        Path(args.json).write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.json}")
    if args.html:
        from .verify.html import write_html  # noqa: PLC0415
        write_html(reports, args.html, layers=layers)
        print(f"wrote {args.html}")
    passed = all(r.passed for r in reports)
    print("PARITY: PASS" if passed else "PARITY: FAIL")
    return 0 if passed else 1


def cmd_report(args: argparse.Namespace) -> int:
    from .verify.evaluate import EvalReport  # noqa: PLC0415
    from .verify.html import write_html  # noqa: PLC0415
    reps: list[EvalReport] = []
    layers: dict[str, Any] = {}
    for f in args.reports:
        try:
            doc = json.loads(Path(f).read_text())
        except (OSError, ValueError) as e:
            raise XconvError(f"cannot read report {f}: {e}") from e
        runs = doc.get("runs", [doc])
        try:
            reps.extend(EvalReport.from_json(d) for d in runs)
        except (KeyError, TypeError) as e:
            raise XconvError(f"{f} is not a `verify --data --json` report ({e})") from e
        layers.update(doc.get("per_layer", {}))
    for rep in reps:
        print(rep.table())
    write_html(reps, args.html, layers=layers)
    print(f"wrote {args.html}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .frontend import load
    from .stats import stats

    load_plugins(args.plugin)
    g = load(args.source_fw, args.model, **frontend_opts(args))
    st = stats(g)
    shape = next(iter(g.inputs.values())).shape
    print(f"{g.name}: input {shape}, outputs {[list(g.type_of(o).shape) for o in g.outputs]}")
    print(f"  parameters: {st.params:,}")
    print(f"  GMACs per image: {st.gmacs / max(1, shape[0]) :.3f}")
    width = max(len(k) for k in st.op_counts)
    for op, c in sorted(st.op_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {op.ljust(width)}  {c}")
    return 0


def _caffe_profiles() -> list[str]:
    from .backends.caffe.dialects import PROFILES  # noqa: PLC0415
    return list(PROFILES)


def _caffe_schemas() -> list[str]:
    from .backends.caffe.schema import DIALECT_NAMES  # noqa: PLC0415
    return list(DIALECT_NAMES)


def _dialect(args: argparse.Namespace) -> str | None:
    """--dialect, or the profile a --dialect-file describes (registered here)."""
    if not getattr(args, "dialect_file", None):
        return args.dialect
    from .backends.caffe.dialects import load_profile_file  # noqa: PLC0415
    prof = load_profile_file(args.dialect_file)
    if args.dialect and args.dialect != prof.name:
        raise XconvError(f"--dialect {args.dialect} and --dialect-file {args.dialect_file} (profile "
                         f"'{prof.name}') disagree: give one of them")
    return prof.name


def cmd_lint(args: argparse.Namespace) -> int:
    from .backends.caffe.lint import format_table, lint  # noqa: PLC0415

    dialect = _dialect(args) or "bvlc"
    violations = lint(Path(args.prototxt), dialect)
    print(format_table(violations, dialect))
    return 1 if violations else 0


def cmd_dialects(args: argparse.Namespace) -> int:
    from .backends.caffe.dialects import PROFILES  # noqa: PLC0415

    for p in PROFILES.values():
        native = ", ".join(f"{k}->{v}" for k, v in p.native.items()) or "none (stock rewrites)"
        print(f"{p.name:12} {p.title}")
        print(f"{'':12} {p.description}")
        print(f"{'':12} schema {p.schema}; floor pooling: {p.floor_pooling}; native: {native}")
        for r in p.rules:
            print(f"{'':12} rule {r.name}: {r.layer} {r.param} - {r.reason}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    return run_demo(Path(args.output), atol=args.atol)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xconv", description="Convert models between frameworks, with proof of parity.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v: passes and timings, -vv: debug")
    # accepted after the subcommand too; SUPPRESS keeps the subparser from resetting a -v given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--version", action="version", version=f"xconv {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    def src_opts(sp: argparse.ArgumentParser, required_from: bool) -> None:
        sp.add_argument("--from", dest="source_fw", required=required_from,
                        help="source framework: pytorch, tf-slim (checkpoint), tensorflow (.pb/.meta/SavedModel), "
                             "keras (.h5/.keras), mxnet (-symbol.json + .params), onnx, caffe (deploy .prototxt + "
                             "--weights .caffemodel)")
        sp.add_argument("--arch", help="pytorch state_dict: torchvision:resnet50, efficientnet-lite:efficientnet-lite0 "
                                       "or package.module:factory; tf-slim: e.g. inception_v4 (default: recognised "
                                       "from the checkpoint's variable scopes)")
        sp.add_argument("--drop-background", action="store_true",
                        help="tf-slim/tensorflow 1001-class heads: emit 1000 classes (drop logit 0)")
        sp.add_argument("--inputs", help="tensorflow: input node name(s), comma-separated")
        sp.add_argument("--outputs", help="tensorflow/mxnet: output node name(s), comma-separated (e.g. the logits "
                                          "layer before a SoftmaxOutput head)")
        sp.add_argument("--arch-kwargs", type=_json, help="JSON keyword arguments for the --arch factory")
        sp.add_argument("--plugin", action="append", default=[], metavar="FILE.py|MODULE",
                        help="your own Python file/module to import first, e.g. registering a handler for a Keras "
                             "Lambda or custom layer (xconv never runs code found in a model file)")
        sp.add_argument("--input-shape", type=_shape, help="N,C,H,W (NCHW even for TensorFlow models; default: the "
                                                       "architecture's own size, or 1,3,224,224)")
        sp.add_argument("--weights", metavar="FILE.caffemodel",
                        help="caffe: the trained weights (default: the prototxt's name with .caffemodel)")
        sp.add_argument("--source-dialect", choices=_caffe_schemas(),
                        help="caffe: the Caffe that wrote the files (default: found from the prototxt's fields); "
                             "decides how a caffemodel's pooling field 13 (round_mode vs ceil_mode) is read")

    c = sub.add_parser("convert", help="convert a model", parents=[common])
    c.add_argument("model")
    src_opts(c, True)
    c.add_argument("--to", required=True, choices=["caffe", "onnx"])
    c.add_argument("-o", "--output", default=".", help="output directory (default: current)")
    c.add_argument("--dialect", choices=_caffe_profiles(),
                   help="Caffe dialect profile (default bvlc = BVLC Caffe 1.0; `xconv dialects` lists them)")
    c.add_argument("--dialect-file", metavar="PROFILE.json",
                   help="your own Caffe dialect profile: a built-in 'base' plus overrides (layer types, rules)")
    c.add_argument("--opset", type=int, default=13, help="ONNX opset (13..21, default 13)")
    c.add_argument("--name", help="output base name (default: from the model file)")
    c.add_argument("--preset", help="evaluation preprocessing preset stored in NAME.xconv.json for verify "
                                    "(see `xconv verify --list-presets`)")
    c.set_defaults(fn=cmd_convert)

    v = sub.add_parser("verify", help="compare a source model with converted ones", parents=[common])
    v.add_argument("source")
    v.add_argument("converted", nargs="+", help="NAME.onnx, NAME.prototxt or NAME.xconv.json")
    src_opts(v, False)
    v.add_argument("--images", help="folder of images")
    v.add_argument("--labels", help="labels file: lines 'name label'")
    v.add_argument("--limit", type=int)
    v.add_argument("--batch-size", type=int, default=8)
    v.add_argument("--atol", type=float, default=1e-3, help="max |dlogit| allowed: atol + rtol * max|logit| "
                                                            "(default 1e-3)")
    v.add_argument("--rtol", type=float, default=1e-4,
                   help="relative part of the tolerance (default 1e-4: float32 across a deep net)")
    v.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    v.add_argument("--json", help="write the report as JSON here")
    v.add_argument("--no-localise", action="store_true", help="skip the first-divergence search on failure")
    e = v.add_argument_group("ImageNet-scale evaluation (with --data)")
    e.add_argument("--data", help="validation set: image folder (+ --labels or --ground-truth), synset tree, "
                                  "Caffe LMDB, or TFRecord shards (a directory or a glob)")
    e.add_argument("--data-format", default="auto", choices=["auto", "folder", "synsets", "lmdb", "tfrecord"])
    e.add_argument("--ground-truth", help="the devkit's ILSVRC2012_validation_ground_truth.txt (ILSVRC2012_IDs)")
    e.add_argument("--synset-order", help="the 1000 WNIDs in ILSVRC2012_ID order (maps --ground-truth)")
    e.add_argument("--synsets", help="synset tree: the 1000 WNIDs (Caffe's synsets.txt; default ROOT/synsets.txt)")
    e.add_argument("--tfrecord-label-offset", type=int, default=1,
                   help="subtracted from TFRecord labels (1: the Inception layout's 1..1000)")
    e.add_argument("--crops", default="single", type=_protocols,
                   help="evaluation protocol(s): single, 12 or 144, or a list like single,12 (one table each, "
                        "compared in the HTML report)")
    e.add_argument("--per-layer", action="store_true",
                   help="also measure each converted model's error node by node along the network (first image, "
                        "first crop) against the IR reference; plotted in the HTML report")
    e.add_argument("--preset", help="preprocessing preset (default: the one in NAME.xconv.json, else the "
                                    "model's metadata)")
    e.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    e.add_argument("--base-size", type=int, help="override: short side before cropping")
    e.add_argument("--crop-size", type=int, help="override: crop size")
    e.add_argument("--mean", type=_floats, help="override: per-channel mean, e.g. 104,117,123")
    e.add_argument("--std", type=_floats, help="override: per-channel std")
    e.add_argument("--color-order", choices=["RGB", "BGR"], help="override: channel order")
    e.add_argument("--value-range", type=_floats, help="override: pixel range before mean/std, e.g. 0,1")
    e.add_argument("--resize", choices=["cv2-linear", "pil-bilinear"], help="override: resize filter")
    e.add_argument("--subset", type=int, help="a deterministic random subset of N images (see --subset-seed)")
    e.add_argument("--subset-seed", type=int, default=0)
    e.add_argument("--workers", type=int, help="decoding processes (default: cores - 1, 0 on 2 cores)")
    e.add_argument("--checkpoint", help="per-image results file (default NAME.verify.jsonl beside --json, or "
                                        "in the current directory)")
    e.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    e.add_argument("--html", help="write an HTML report with plots here")
    v.set_defaults(fn=cmd_verify)

    i = sub.add_parser("inspect", help="op counts, parameters and GMACs", parents=[common])
    i.add_argument("model")
    src_opts(i, True)
    i.set_defaults(fn=cmd_inspect)

    r = sub.add_parser("report", help="merge verify --json reports (e.g. 224 and 320 models, single and 12-crop) "
                                      "into one HTML page and table", parents=[common])
    r.add_argument("reports", nargs="+", help="JSON files written by `xconv verify --data ... --json`")
    r.add_argument("--html", required=True, help="output HTML file")
    r.set_defaults(fn=cmd_report)

    ln = sub.add_parser("lint", help="check a Caffe prototxt against a dialect profile (exit 1 on violations)",
                        parents=[common])
    ln.add_argument("prototxt")
    ln.add_argument("--dialect", choices=_caffe_profiles(), help="profile to check against (default bvlc)")
    ln.add_argument("--dialect-file", metavar="PROFILE.json", help="check against your own profile")
    ln.set_defaults(fn=cmd_lint)

    dl = sub.add_parser("dialects", help="list the Caffe dialect profiles", parents=[common])
    dl.set_defaults(fn=cmd_dialects)

    d = sub.add_parser("demo", help="convert and verify EfficientNet-Lite0 on 20 real ImageNet photos", parents=[common])
    d.add_argument("-o", "--output", default="out/demo")
    d.add_argument("--atol", type=float, default=5e-4)
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        return int(args.fn(args))
    except XconvError as e:
        print(f"xconv: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xconv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
