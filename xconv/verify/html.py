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


def write_html(rep: EvalReport, path: str | Path) -> None:
    d = rep.to_json()
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>xconv verify report</title>",
             "<style>body{font-family:sans-serif;max-width:980px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}"
             ".pass{color:#2a7d2a;font-weight:bold}.fail{color:#c0392b;font-weight:bold}</style></head><body>",
             f"<h1>xconv verify: <span class='{'pass' if rep.passed else 'fail'}'>"
             f"{'PASS' if rep.passed else 'FAIL'}</span></h1>",
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
        parts.append(f"<h2>{html.escape(p['name'])}</h2>")
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
    parts.append("</body></html>")
    Path(path).write_text("\n".join(parts), encoding="utf-8")
