"""A self-contained HTML report of an evaluation (inline SVG plots, no JavaScript,
no plotting library): the accuracy table, top-1/top-5 error per model, the
|Δlogit| histogram of each conversion and the per-class prediction flips."""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Sequence

from .evaluate import HIST_EDGES, EvalReport


def _bars(title: str, labels: Sequence[str], series: dict[str, Sequence[float | None]], unit: str = "%") -> str:
    w, h, left, bottom = 640, 260, 60, 40
    n = len(labels)
    vals = [v for s in series.values() for v in s if v is not None]
    top = max(vals + [1e-9]) * 1.15
    gw = (w - left - 10) / max(n, 1)
    bw = gw / (len(series) + 1)
    colours = ["#4878d0", "#ee854a", "#6acc64", "#d65f5f"]
    out = [f'<svg width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">',
           f'<text x="{w / 2}" y="16" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>',
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - 10}" y2="{h - bottom}" stroke="#333"/>']
    for t in range(5):
        v = top * t / 4
        y = h - bottom - (h - bottom - 30) * t / 4
        out.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end" font-size="11">{v:.3g}{unit}</text>')
    for i, lab in enumerate(labels):
        for j, (name, s) in enumerate(series.items()):
            v = s[i]
            if v is None:
                continue
            bh = (h - bottom - 30) * v / top
            x = left + i * gw + (j + 0.5) * bw
            out.append(f'<rect x="{x:.1f}" y="{h - bottom - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                       f'fill="{colours[j % 4]}"><title>{html.escape(name)} {v:.4g}{unit}</title></rect>')
        out.append(f'<text x="{left + (i + 0.5) * gw:.1f}" y="{h - bottom + 16}" text-anchor="middle" '
                   f'font-size="11">{html.escape(lab)}</text>')
    for j, name in enumerate(series):
        out.append(f'<rect x="{w - 150}" y="{24 + 16 * j}" width="10" height="10" fill="{colours[j % 4]}"/>'
                   f'<text x="{w - 135}" y="{33 + 16 * j}" font-size="11">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _hist(title: str, counts: Sequence[int]) -> str:
    labels = ["<1e-9"] + [f"{e:.0e}" for e in HIST_EDGES[1:]] + [">10"]
    total = sum(counts) or 1
    w, h, left, bottom = 640, 220, 50, 50
    gw = (w - left - 10) / len(counts)
    top = max(counts) or 1
    out = [f'<svg width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">',
           f'<text x="{w / 2}" y="16" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>']
    for i, c in enumerate(counts):
        bh = (h - bottom - 30) * (math.log10(1 + c) / math.log10(1 + top))
        x = left + i * gw
        out.append(f'<rect x="{x:.1f}" y="{h - bottom - bh:.1f}" width="{gw - 1:.1f}" height="{bh:.1f}" '
                   f'fill="#4878d0"><title>{labels[i]}: {c} logits ({100 * c / total:.2f}%)</title></rect>')
        if i % 3 == 0:
            out.append(f'<text x="{x:.1f}" y="{h - bottom + 14}" font-size="10" transform="rotate(35 {x:.1f} '
                       f'{h - bottom + 14})">{labels[i]}</text>')
    out.append(f'<text x="{left}" y="{h - 4}" font-size="11">|Δlogit| per crop and class, log-scaled counts; '
               f'bin upper edges</text></svg>')
    return "\n".join(out)


def _line(title: str, series: dict[str, Sequence[tuple[int, float]]]) -> str:
    """Relative error per node along the network (log y axis)."""
    w, h, left, bottom = 900, 260, 60, 36
    pts = [v for s in series.values() for _, v in s if v > 0]
    lo = math.floor(math.log10(min(pts))) if pts else -12
    hi = math.ceil(math.log10(max(pts))) if pts else 0
    hi = max(hi, lo + 1)
    xmax = max((i for s in series.values() for i, _ in s), default=1) or 1
    colours = ["#4878d0", "#ee854a", "#6acc64", "#d65f5f"]

    def y(v: float) -> float:
        lv = math.log10(v) if v > 0 else lo
        return h - bottom - (h - bottom - 24) * (lv - lo) / (hi - lo)
    out = [f'<svg width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">',
           f'<text x="{w / 2}" y="14" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>']
    for e in range(lo, hi + 1):
        out.append(f'<text x="{left - 6}" y="{y(10.0 ** e) + 4:.1f}" text-anchor="end" font-size="10">1e{e}</text>'
                   f'<line x1="{left}" x2="{w - 10}" y1="{y(10.0 ** e):.1f}" y2="{y(10.0 ** e):.1f}" '
                   'stroke="#eee"/>')
    for j, (name, s) in enumerate(series.items()):
        path = " ".join(f"{left + (w - left - 10) * i / xmax:.1f},{y(v):.1f}" for i, v in s)
        out.append(f'<polyline fill="none" stroke="{colours[j % 4]}" stroke-width="1.5" points="{path}">'
                   f'<title>{html.escape(name)}</title></polyline>'
                   f'<text x="{w - 200}" y="{30 + 14 * j}" font-size="11" fill="{colours[j % 4]}">'
                   f'{html.escape(name)}</text>')
    out.append(f'<text x="{left}" y="{h - 6}" font-size="11">node index (topological order) → ; relative '
               'error max|Δ| / max|reference| of each tensor</text></svg>')
    return "\n".join(out)


def write_html(reports: "EvalReport | Sequence[EvalReport]", path: str | Path,
               layers: dict[str, list[dict]] | None = None) -> None:
    reps = [reports] if isinstance(reports, EvalReport) else list(reports)
    passed = all(r.passed for r in reps)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>xconv verify report</title>",
             "<style>body{font-family:sans-serif;max-width:980px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}"
             ".pass{color:#2a7d2a;font-weight:bold}.fail{color:#c0392b;font-weight:bold}</style></head><body>",
             f"<h1>xconv verify: <span class='{'pass' if passed else 'fail'}'>{'PASS' if passed else 'FAIL'}"
             "</span></h1>"]
    if len(reps) > 1 and all(r.labelled for r in reps):
        names = [m.name for m in reps[0].models]
        labels = [f"{r.preset.get('crop')}px {r.crops}-crop" for r in reps]

        def err(r: EvalReport, n: str, k: int) -> float | None:
            m = next((m for m in r.models if m.name == n), None)
            e = m.error(k) if m else None
            return None if e is None else 100 * e
        parts.append(_bars("top-1 error per crop size and protocol", labels,
                           {n: [err(r, n, 1) for r in reps] for n in names}))
        parts.append(_bars("top-5 error per crop size and protocol", labels,
                           {n: [err(r, n, 5) for r in reps] for n in names}))
    for rep in reps:
        parts += _one(rep)
    if layers:
        parts.append("<h2>Error along the network</h2>")
        parts.append(_line("per-node relative error against the IR reference (first image, first crop)",
                           {k: [(r["index"], r["rel"]) for r in v] for k, v in layers.items()}))
        for k, v in layers.items():
            worst = sorted(v, key=lambda r: -r["rel"])[:5]
            parts.append(f"<p>{html.escape(k)}: largest relative errors at " + ", ".join(
                f"<code>{html.escape(r['node'])}</code> ({r['op']}, {r['rel']:.2e})" for r in worst) + "</p>")
    parts.append("</body></html>")
    Path(path).write_text("\n".join(parts), encoding="utf-8")


def _one(rep: EvalReport) -> list[str]:
    d = rep.to_json()
    parts = [f"<h2>{rep.crops}-crop</h2>",
             f"<p>{rep.images} images from <code>{html.escape(rep.dataset)}</code> ({rep.data_format}), "
             f"{rep.crops}-crop, preset <b>{html.escape(str(rep.preset.get('name')))}</b> "
             f"(base {rep.preset.get('base')} → crop {rep.preset.get('crop')}, {rep.preset.get('color_order')}, "
             f"mean {rep.preset.get('mean')}, std {rep.preset.get('std')}, {rep.preset.get('resize')}); tolerance "
             f"max|Δlogit| ≤ {rep.atol:g} + {rep.rtol:g} × {rep.source_logit_scale:.3g}; "
             f"{rep.images_per_s:.1f} images/s.</p>",
             "<pre>" + html.escape(rep.table()) + "</pre>"]
    names = [m["name"] for m in d["models"]]
    if rep.labelled:
        parts.append(_bars("error per model", names, {
            "top-1 error": [None if m["top1_error"] is None else 100 * m["top1_error"] for m in d["models"]],
            "top-5 error": [None if m["top5_error"] is None else 100 * m["top5_error"] for m in d["models"]]}))
    for p in d["parity"]:
        parts.append(f"<h3>{html.escape(p['name'])}</h3>")
        parts.append(f"<p>top-1 agreement {p['agree']}/{p['images']}, max|Δlogit| {p['max_abs']:.3e}, "
                     f"mean|Δlogit| {p['mean_abs']:.3e}</p>")
        parts.append(_hist(f"|Δlogit| of {p['name']} against the source", p["hist"]))
        if p["flips"]:
            parts.append("<table><tr><th>image</th><th>label</th><th>source top-1</th><th>converted top-1</th></tr>")
            for f in p["flips"][:200]:
                parts.append(f"<tr><td>{html.escape(f['image'])}</td><td>{f['label']}</td><td>{f['source']}</td>"
                             f"<td>{f['converted']}</td></tr>")
            parts.append("</table>")
            parts.append("<p>flips by source class: " + ", ".join(
                f"{k}: {v}" for k, v in sorted(p["flips_by_class"].items(), key=lambda kv: -kv[1])) + "</p>")
    return parts
