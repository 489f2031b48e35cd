"""Parity verification: the source model in its own framework against each
converted model in its real runtime, on labelled images or random tensors.

For every converted model the report gives the largest and mean absolute
logit difference, the largest relative to the source's logit range, top-1
agreement and the images whose prediction flipped, and top-1/top-5
accuracy of every model when labels are given.  When a model disagrees
beyond tolerance, :func:`localise` reruns the failing image through the IR
reference interpreter and the target runtime tensor by tensor and names the
first node whose output diverges.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import XconvError
from ..ir import ModelMeta
from .data import ImageSet, image_set, preprocess, random_batches
from .runners import Converted, locate, make_runner

log = logging.getLogger(__name__)

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class ModelScore:
    name: str
    top1: int | None = None
    top5: int | None = None
    count: int = 0
    seconds: float = 0.0


@dataclass
class Parity:
    name: str
    max_abs: float
    mean_abs: float
    max_rel: float
    top1_agree: int
    count: int
    flips: list[dict[str, Any]] = field(default_factory=list)
    passed: bool = False
    divergence: dict[str, Any] | None = None


@dataclass
class VerifyReport:
    images: int
    labelled: bool
    atol: float
    rtol: float
    scores: list[ModelScore]
    parity: list[Parity]

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.parity)

    def to_json(self) -> dict[str, Any]:
        return {"images": self.images, "labelled": self.labelled, "atol": self.atol, "rtol": self.rtol,
                "passed": self.passed,
                "scores": [asdict(s) for s in self.scores], "parity": [asdict(p) for p in self.parity]}

    def table(self) -> str:
        rows = [("model", "top-1", "top-5", "top-1 agree", "max|dlogit|", "mean|dlogit|", "parity")]
        par = {p.name: p for p in self.parity}
        for s in self.scores:
            acc1 = f"{s.top1}/{s.count}" if s.top1 is not None else "-"
            acc5 = f"{s.top5}/{s.count}" if s.top5 is not None else "-"
            p = par.get(s.name)
            if p is None:
                rows.append((s.name, acc1, acc5, "(source)", "-", "-", "-"))
            else:
                rows.append((s.name, acc1, acc5, f"{p.top1_agree}/{p.count}", f"{p.max_abs:.2e}",
                             f"{p.mean_abs:.2e}", "PASS" if p.passed else "FAIL"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
        out = [line]
        for i, r in enumerate(rows):
            out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
            if i == 0:
                out.append(line)
        out.append(line)
        for p in self.parity:
            if p.divergence:
                d = p.divergence
                out.append(f"{p.name}: first divergence at node '{d['node']}' ({d['op']}, from {d['loc']}): "
                           f"max|d| {d['max_abs']:.3e} vs tolerance {d['tol']:.1e}")
            for f in p.flips[:10]:
                out.append(f"{p.name}: {f['image']}: source says {f['source']}, converted says {f['converted']}")
        return "\n".join(out)


def _topk(logits: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def score(name: str, logits: np.ndarray, labels: Sequence[int | None], offset: int, seconds: float) -> ModelScore:
    s = ModelScore(name, count=len(logits), seconds=seconds)
    if labels and all(lab is not None for lab in labels):
        top5 = _topk(logits, 5)
        lab = np.asarray(labels) + offset
        s.top1 = int((top5[:, 0] == lab).sum())
        s.top5 = int((top5 == lab[:, None]).any(axis=1).sum())
    return s


def compare(name: str, ref: np.ndarray, got: np.ndarray, names: Sequence[str], atol: float,
            rtol: float = 0.0) -> Parity:
    """Parity holds when every top-1 agrees and max|dlogit| <= atol + rtol * max|source logit|."""
    if ref.shape != got.shape:
        raise XconvError(f"{name}: output shape {got.shape} differs from the source's {ref.shape}")
    d = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    scale = float(np.abs(ref).max()) or 1.0
    a1, b1 = ref.argmax(1), got.argmax(1)
    flips = [{"image": names[i], "source": int(a1[i]), "converted": int(b1[i])} for i in np.nonzero(a1 != b1)[0]]
    p = Parity(name, float(d.max()), float(d.mean()), float(d.max()) / scale, int((a1 == b1).sum()), len(ref), flips)
    p.passed = not flips and p.max_abs <= atol + rtol * scale
    return p


def load_inputs(meta: ModelMeta, shape: tuple[int, ...], images: str | Path | None, labels: str | Path | None,
                limit: int | None, random_count: int = 4) -> tuple[np.ndarray, list[str], list[int | None]]:
    if images is None:
        x = random_batches(shape, random_count)
        return x, [f"random#{i}" for i in range(len(x))], [None] * len(x)
    s: ImageSet = image_set(images, labels, limit)
    x = np.stack([preprocess(p, meta, tuple(shape[2:])) for p in s.paths])
    return x, [p.name for p in s.paths], s.labels


def run_batched(fn: Runner, x: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    outs = [np.asarray(fn(x[i:i + batch])) for i in range(0, len(x), batch)]
    return np.concatenate(outs).reshape(len(x), -1), time.perf_counter() - t0


def verify(source: Runner | None, converted: Sequence[str | Path], *, images: str | Path | None = None,
           labels: str | Path | None = None, limit: int | None = None, batch: int = 8, atol: float = 1e-3,
           rtol: float = 0.0,
           device: str = "cpu", meta: ModelMeta | None = None, source_name: str = "source",
           localiser: Callable[[Converted, np.ndarray], dict[str, Any] | None] | None = None) -> VerifyReport:
    models = [locate(c) for c in converted]
    if not models:
        raise XconvError("nothing to verify: give at least one converted model")
    info = models[0].info
    meta = meta or ModelMeta.from_json(info.get("meta", {}))
    shape = models[0].input_shape or (1, 3, 224, 224)
    x, names, labs = load_inputs(meta, shape, images, labels, limit)
    log.info("verifying on %d %s", len(x), "images" if images else "random tensors")
    offset = meta.background_offset
    scores: list[ModelScore] = []
    parity: list[Parity] = []
    ref = None
    if source is not None:
        ref, secs = run_batched(source, x, batch)
        scores.append(score(source_name, ref, labs, offset, secs))
    for m in models:
        runner = make_runner(m, device=device)
        out, secs = run_batched(runner, x, batch)
        label = m.label
        scores.append(score(label, out, labs, offset, secs))
        if ref is not None:
            p = compare(label, ref, out, names, atol, rtol)
            if not p.passed and localiser is not None:
                bad = int(np.argmax(np.abs(ref - out).max(axis=1)))
                p.divergence = localiser(m, x[bad:bad + 1])
            parity.append(p)
    return VerifyReport(len(x), bool(labs) and all(v is not None for v in labs), atol, rtol, scores, parity)


__all__ = ["verify", "VerifyReport", "Parity", "ModelScore", "locate", "compare", "score"]
