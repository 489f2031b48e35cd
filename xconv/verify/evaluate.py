"""ImageNet-style evaluation of a source model and its conversions, side by side.

Each image is read once (the dataset's bytes), decoded and cropped once by a
worker (a process pool when ``workers > 0``), and every crop is fed to every
model in batches.  Per image the models' softmax outputs are averaged over
the crops (the seed's protocol) and ranked; converted models are compared
with the source crop by crop (max and mean |Δlogit|) and image by image (top-1
of the averaged scores).  Results go to a JSON-lines checkpoint as they come,
so an interrupted run continues with ``resume=True`` without recounting.
"""
from __future__ import annotations

import io
import json
import logging
import math
import os
import time
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import InputFileError, XconvError
from .crops import PROTOCOLS, make_crops
from .datasets import Dataset, Entry
from .presets import Preset

log = logging.getLogger(__name__)
Runner = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[int, int, float], None]
HIST_EDGES = np.logspace(-9, 1, 21)  # |Δlogit| histogram bins (plus under/overflow)


# --------------------------------------------------------------------------- per-image work
def decode(image: bytes | np.ndarray) -> np.ndarray:
    """Encoded bytes or an HWC RGB uint8 array -> HWC RGB float32 (0..255)."""
    if isinstance(image, np.ndarray):
        return image.astype(np.float32)
    from PIL import Image  # noqa: PLC0415
    try:
        with Image.open(io.BytesIO(image)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.float32)
    except OSError as e:
        raise InputFileError(f"cannot decode image: {e}") from e


def decode_pil(image: bytes | np.ndarray):  # noqa: ANN201
    """Encoded bytes or an HWC RGB uint8 array -> an 8-bit RGB PIL image."""
    from PIL import Image  # noqa: PLC0415
    if isinstance(image, np.ndarray):
        return Image.fromarray(np.ascontiguousarray(image.astype(np.uint8)), "RGB")
    try:
        im = Image.open(io.BytesIO(image))
        return im.convert("RGB")
    except OSError as e:
        raise InputFileError(f"cannot decode image: {e}") from e


def prepare(image: bytes | np.ndarray, preset: Preset, protocol: str) -> np.ndarray:
    """One image -> its crops as NCHW float32, normalised as the preset says."""
    img = decode_pil(image) if preset.resize == "pil-bilinear" else decode(image)
    crops = make_crops(img, protocol, preset.base, preset.crop, preset.resize)
    lo, hi = preset.value_range
    if (lo, hi) != (0.0, 255.0):
        crops = crops * np.float32((hi - lo) / 255.0) + np.float32(lo)
    if preset.color_order.upper() == "BGR":
        crops = crops[..., ::-1]
    crops = (crops - np.asarray(preset.mean, np.float32)) / np.asarray(preset.std, np.float32)
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)


def _work(job: tuple[int, bytes | np.ndarray, dict[str, Any], str]) -> tuple[int, np.ndarray]:
    i, image, preset, protocol = job
    return i, prepare(image, Preset.from_json(preset), protocol)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- records and report
@dataclass
class ModelResult:
    name: str
    top1_correct: int = 0
    top5_correct: int = 0
    labelled: int = 0
    seconds: float = 0.0

    def error(self, k: int) -> float | None:
        if not self.labelled:
            return None
        return 1.0 - (self.top1_correct if k == 1 else self.top5_correct) / self.labelled


@dataclass
class ParityResult:
    name: str
    images: int = 0
    agree: int = 0
    max_abs: float = 0.0
    sum_abs: float = 0.0
    n_abs: int = 0
    flips: list[dict[str, Any]] = field(default_factory=list)
    hist: list[int] = field(default_factory=lambda: [0] * (len(HIST_EDGES) + 1))
    passed: bool = False

    @property
    def mean_abs(self) -> float:
        return self.sum_abs / self.n_abs if self.n_abs else 0.0

    def flips_by_class(self) -> dict[int, int]:
        return dict(Counter(f["source"] for f in self.flips))


@dataclass
class EvalReport:
    dataset: str
    data_format: str
    protocol: str
    crops: int
    preset: dict[str, Any]
    images: int
    labelled: bool
    background_offset: int
    atol: float
    rtol: float
    models: list[ModelResult]
    parity: list[ParityResult]
    seconds: float = 0.0
    images_per_s: float = 0.0
    source_logit_scale: float = 0.0

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.parity)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        for m, md in zip(self.models, d["models"]):
            md["top1_error"], md["top5_error"] = m.error(1), m.error(5)
        src = self.models[0] if self.models else None
        for p, pd in zip(self.parity, d["parity"]):
            pd["mean_abs"] = p.mean_abs
            pd["agreement"] = p.agree / p.images if p.images else None
            pd["flips_by_class"] = {str(k): v for k, v in p.flips_by_class().items()}
            conv = next((m for m in self.models if m.name == p.name), None)
            if src and conv and src.labelled:
                pd["delta_top1"] = (conv.error(1) or 0) - (src.error(1) or 0)
                pd["delta_top5"] = (conv.error(5) or 0) - (src.error(5) or 0)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EvalReport":
        """A report back from its ``to_json()`` (for ``xconv report``)."""
        mfields = {f for f in ModelResult.__dataclass_fields__}
        pfields = {f for f in ParityResult.__dataclass_fields__}
        models = [ModelResult(**{k: v for k, v in m.items() if k in mfields}) for m in d["models"]]
        parity = [ParityResult(**{k: v for k, v in p.items() if k in pfields}) for p in d["parity"]]
        keep = {f for f in cls.__dataclass_fields__} - {"models", "parity"}
        return cls(models=models, parity=parity, **{k: v for k, v in d.items() if k in keep})

    def table(self) -> str:
        def pct(v: float | None) -> str:
            return "-" if v is None else f"{100 * v:.2f}%"
        src = self.models[0]
        rows = [("model", "top-1 err", "top-5 err", "Δtop-1", "Δtop-5", "top-1 agree", "max|Δlogit|",
                 "mean|Δlogit|", "parity")]
        par = {p.name: p for p in self.parity}
        for m in self.models:
            p = par.get(m.name)
            if p is None:
                rows.append((m.name, pct(m.error(1)), pct(m.error(5)), "", "", "(source)", "", "", ""))
                continue
            d1 = (m.error(1) - src.error(1)) if m.labelled and src.labelled else None  # type: ignore[operator]
            d5 = (m.error(5) - src.error(5)) if m.labelled and src.labelled else None  # type: ignore[operator]
            rows.append((m.name, pct(m.error(1)), pct(m.error(5)),
                         "-" if d1 is None else f"{100 * d1:+.2f}", "-" if d5 is None else f"{100 * d5:+.2f}",
                         f"{p.agree}/{p.images}", f"{p.max_abs:.2e}", f"{p.mean_abs:.2e}",
                         "PASS" if p.passed else "FAIL"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
        out = [f"{self.images} images from {self.dataset} ({self.data_format}), {self.crops}-crop "
               f"({self.protocol}), preset {self.preset.get('name')}: base {self.preset.get('base')} -> crop "
               f"{self.preset.get('crop')}, {self.images_per_s:.1f} images/s", line]
        for i, r in enumerate(rows):
            out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
            if i == 0:
                out.append(line)
        out.append(line)
        for p in self.parity:
            for f in p.flips[:10]:
                out.append(f"{p.name}: {f['image']}: source says {f['source']}, converted says {f['converted']}")
        return "\n".join(out)


# --------------------------------------------------------------------------- the loop
def _prepared(entries: Sequence[Entry], ds: Dataset, preset: Preset, protocol: str,
              workers: int, ahead: int = 4) -> Iterator[tuple[Entry, np.ndarray]]:
    """Crops of each entry, in order; decoding in a bounded process pool when ``workers > 0``."""
    pj = preset.to_json()
    if workers < 0:  # strictly serial (debugging)
        for e in entries:
            yield e, prepare(ds.read(e), preset, protocol)
        return
    # workers == 0: one prefetch thread (PIL decodes and resizes without the GIL), so decoding overlaps
    # with the models; workers > 0: that many processes
    window = max(2, ahead, 4 * max(1, workers))  # at least a whole next batch of images in flight
    pool_cm = ThreadPoolExecutor(1) if workers == 0 else ProcessPoolExecutor(workers)
    with pool_cm as pool:
        pending: list[tuple[Entry, Future]] = []
        it = iter(entries)
        for e in it:
            pending.append((e, pool.submit(_work, (0, ds.read(e), pj, protocol))))
            if len(pending) >= window:
                break
        while pending:
            e, fut = pending.pop(0)
            try:
                _, crops = fut.result()
            except InputFileError as err:
                raise InputFileError(f"image '{e.key}': {err}") from err
            except Exception as err:  # noqa: BLE001 - a crashed worker (BrokenProcessPool) and the like
                pool.shutdown(wait=False, cancel_futures=True)
                raise XconvError(f"decoding worker failed on '{e.key}': {type(err).__name__}: {err}; the "
                                 "results so far are in the checkpoint (rerun with --resume)") from err
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_work, (0, ds.read(nxt), pj, protocol))))
            yield e, crops


def _run(fn: Runner, x: np.ndarray, batch: int) -> np.ndarray:
    outs = [np.asarray(fn(x[i:i + batch])) for i in range(0, len(x), batch)]
    return np.concatenate(outs).reshape(len(x), -1)


def evaluate(models: dict[str, Runner], ds: Dataset, entries: Sequence[Entry], preset: Preset, *,
             protocol: str = "single", batch: int = 32, workers: int = 0, background_offset: int = 0,
             atol: float = 1e-3, rtol: float = 1e-4, checkpoint: str | Path | None = None, resume: bool = False,
             progress: Progress | None = None) -> EvalReport:
    """``models``: name -> runner, the source first.  Returns the report; with ``checkpoint``, per-image
    results are appended there as JSON lines (``resume`` skips the images already in it)."""
    if protocol not in PROTOCOLS:
        raise XconvError(f"unknown protocol {protocol!r}; one of {list(PROTOCOLS)}")
    names = list(models)
    src_name = names[0]
    done: dict[str, dict[str, Any]] = {}
    ck = Path(checkpoint) if checkpoint else None
    header = {"dataset": ds.path, "protocol": protocol, "preset": preset.to_json(), "models": names}
    if ck is not None and resume and ck.exists():
        lines = ck.read_text().splitlines()
        if lines:
            head = json.loads(lines[0])
            if {k: head.get(k) for k in header} != header:
                raise XconvError(f"checkpoint {ck} belongs to another run ({head.get('dataset')}, "
                                 f"{head.get('protocol')}, {head.get('models')}); remove it or drop --resume")
            for ln in lines[1:]:
                try:
                    r = json.loads(ln)
                except ValueError:
                    break  # a line cut by the interruption: recomputed
                done[r["key"]] = r
        log.info("resuming: %d of %d images already done", len(done), len(entries))
    elif ck is not None:
        ck.parent.mkdir(parents=True, exist_ok=True)
        ck.write_text(json.dumps(header) + "\n")
    todo = [e for e in entries if e.key not in done]
    out = ck.open("a") if ck is not None else None
    seconds = {n: 0.0 for n in names}
    t0 = time.perf_counter()
    ncrops = PROTOCOLS[protocol]
    group = max(1, batch // ncrops)
    records: list[dict[str, Any]] = []
    count = len(done)
    try:
        buf: list[tuple[Entry, np.ndarray]] = []
        stream = _prepared(todo, ds, preset, protocol, workers, ahead=2 * group)
        while True:
            item = next(stream, None)
            if item is not None:
                buf.append(item)
                if len(buf) < group:
                    continue
            if not buf:
                break
            x = np.concatenate([c for _, c in buf])
            outs = {}
            for n in names:
                t = time.perf_counter()
                outs[n] = _run(models[n], x, batch)
                seconds[n] += time.perf_counter() - t
            for k, (e, c) in enumerate(buf):
                sl = slice(k * ncrops, (k + 1) * ncrops)
                rec = _record(e, {n: outs[n][sl] for n in names}, src_name)
                records.append(rec)
                if out is not None:
                    out.write(json.dumps(rec) + "\n")
            if out is not None:
                out.flush()
            count += len(buf)
            buf = []
            if progress is not None:
                progress(count, len(entries), time.perf_counter() - t0)
            if item is None:
                break
    finally:
        if out is not None:
            out.close()
    all_recs = list(done.values()) + records
    order = {e.key: i for i, e in enumerate(entries)}
    all_recs.sort(key=lambda r: order.get(r["key"], 0))
    rep = _aggregate(all_recs, names, ds, protocol, preset, background_offset, atol, rtol)
    rep.seconds = time.perf_counter() - t0
    rep.images_per_s = len(records) / rep.seconds if rep.seconds and records else 0.0
    for m in rep.models:
        m.seconds = seconds[m.name]
    return rep


def _record(e: Entry, logits: dict[str, np.ndarray], src: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"key": e.key, "label": e.label, "top5": {}, "diff": {}}
    ref = logits[src].astype(np.float64)
    for n, z in logits.items():
        avg = softmax(z).mean(axis=0)
        rec["top5"][n] = [int(i) for i in np.argsort(-avg, kind="stable")[:5]]
        if n != src:
            if z.shape != ref.shape:
                raise XconvError(f"{n}: output shape {z.shape[1:]} differs from the source's {ref.shape[1:]}")
            d = np.abs(z.astype(np.float64) - ref)
            h = np.bincount(np.searchsorted(HIST_EDGES, d.ravel()), minlength=len(HIST_EDGES) + 1)
            rec["diff"][n] = {"max": float(d.max()), "sum": float(d.sum()), "n": int(d.size),
                              "hist": [int(v) for v in h]}
    rec["scale"] = float(np.abs(ref).max())
    return rec


def _aggregate(recs: list[dict[str, Any]], names: list[str], ds: Dataset, protocol: str, preset: Preset,
               offset: int, atol: float, rtol: float) -> EvalReport:
    src = names[0]
    models = [ModelResult(n) for n in names]
    parity = [ParityResult(n) for n in names[1:]]
    labelled = bool(recs) and all(r["label"] is not None for r in recs)
    scale = max((r.get("scale", 0.0) for r in recs), default=0.0)
    for r in recs:
        for m in models:
            t5 = r["top5"][m.name]
            if r["label"] is not None:
                lab = int(r["label"]) + offset
                m.labelled += 1
                m.top1_correct += int(t5[0] == lab)
                m.top5_correct += int(lab in t5)
        for p in parity:
            d = r["diff"][p.name]
            p.images += 1
            p.max_abs = max(p.max_abs, d["max"])
            p.sum_abs += d["sum"]
            p.n_abs += d["n"]
            p.hist = [a + b for a, b in zip(p.hist, d["hist"])]
            a, b = r["top5"][src][0], r["top5"][p.name][0]
            if a == b:
                p.agree += 1
            else:
                p.flips.append({"image": r["key"], "source": a, "converted": b, "label": r["label"]})
    for p in parity:
        p.passed = not p.flips and p.max_abs <= atol + rtol * scale
    return EvalReport(ds.path, ds.kind, protocol, PROTOCOLS[protocol], preset.to_json(), len(recs), labelled,
                      offset, atol, rtol, models, parity, source_logit_scale=scale)


def default_workers() -> int:
    n = os.cpu_count() or 1
    return 0 if n <= 2 else min(8, n - 1)


def progress_bar(stream: Any) -> Progress:
    """A one-line text progress bar with images/s (for the CLI)."""
    def show(done: int, total: int, secs: float) -> None:
        frac = done / total if total else 1.0
        bar = "#" * int(30 * frac)
        rate = done / secs if secs > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else math.inf
        stream.write(f"\r[{bar:<30}] {done}/{total} images, {rate:.1f} images/s"
                     + (f", ETA {eta:.0f} s" if math.isfinite(eta) else "") + " " * 4)
        if done >= total:
            stream.write("\n")
        stream.flush()
    return show
