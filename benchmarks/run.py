"""``make bench``: conversion speed and memory against pinned peers, and the
inference speed of the emitted ONNX, written to ``benchmarks/results.md``
(+ ``results.json``).

Every measurement is a whole process (python start, imports, loading the
saved model, converting, writing), timed by wall clock with its peak RSS
from ``wait4``; each is repeated and the best run kept.  Peers run in the
same session, interleaved, so load on the machine affects both alike.

Peers (pinned by the Makefile): torch 2.13.0 ``torch.onnx.export`` with the
legacy TorchScript exporter (``dynamo=False``) and the dynamo exporter
(onnxscript 0.7.2).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
MODEL = os.environ.get("BENCH_MODEL", "resnext101_64x4d")


@dataclass
class Run:
    name: str
    wall_s: float
    peak_rss_mb: float


def measure(name: str, cmd: list[str], env: dict[str, str] | None = None) -> Run:
    best: Run | None = None
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        err = p.stderr.read().decode() if p.stderr else ""
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{name} failed:\n{err[-3000:]}")
        r = Run(name, wall, ru.ru_maxrss / 1024)
        if best is None or r.wall_s < best.wall_s:
            best = Run(name, r.wall_s, min(r.peak_rss_mb, best.peak_rss_mb) if best else r.peak_rss_mb)
        elif r.peak_rss_mb < best.peak_rss_mb:
            best.peak_rss_mb = r.peak_rss_mb
        print(f"  {name}: {wall:.2f}s, {r.peak_rss_mb:.0f} MB", flush=True)
    assert best is not None
    return best


def budget_rows(cells: list[str], weights_mb: float, runs: dict[str, Run | str],
                budgeted: Callable[[str], bool]) -> list[str]:
    """Markdown rows ``| *cells | weights | tool | wall | peak RSS | budget |``, one per tool.

    The RSS budget, 2 x weights + 300 MB, is filled in for the tools ``budgeted`` names; a run given
    as a string (a peer that failed, with why) fills the wall column and leaves the rest empty.
    """
    out = []
    for tool, run in runs.items():
        head = "| " + " | ".join([*cells, f"{weights_mb:.0f}", tool]) + " | "
        if isinstance(run, str):
            out.append(head + f"{run} | | |")
            continue
        budget = f"{2 * weights_mb + 300:.0f}" if budgeted(tool) else ""
        out.append(head + f"{run.wall_s:.2f} | {run.peak_rss_mb:.0f} | {budget} |")
    return out


def runs_json(runs: dict[str, Run | str]) -> dict[str, object]:
    """``runs`` as JSON-ready values (a failed peer's string as it is)."""
    return {t: v if isinstance(v, str) else asdict(v) for t, v in runs.items()}


def publish(lines: list[str], json_name: str, data: object) -> None:
    """Print a section, append it to benchmarks/results.md and write its raw figures to ``json_name``."""
    text = "\n".join(lines) + "\n"
    print(text)
    with open(ROOT / "benchmarks" / "results.md", "a") as fh:
        fh.write(text)
    (ROOT / "benchmarks" / json_name).write_text(json.dumps(data, indent=2))

PEER = r"""
import sys, torch
sys.path.insert(0, {root!r})
from xconv.frontends.pytorch import import_torchvision
tv = import_torchvision()
torch.set_num_threads(2)
m = getattr(tv.models, {model!r})(weights=None)
m.load_state_dict(torch.load({weights!r}, weights_only=True))
m.eval()
x = torch.zeros(1, 3, 224, 224)
torch.onnx.export(m, (x,), {out!r}, opset_version=17, dynamo={dynamo})
"""

MAKE_WEIGHTS = r"""
import sys, torch
sys.path.insert(0, {root!r})
from xconv.frontends.pytorch import import_torchvision
tv = import_torchvision()
torch.manual_seed(0)
m = getattr(tv.models, {model!r})(weights=None)
torch.save(m.state_dict(), {weights!r})
"""

ORT_SPEED = r"""
import sys, time, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 2
a = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
b = ort.InferenceSession(sys.argv[2], so, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
ia, ib = a.get_inputs()[0].name, b.get_inputs()[0].name
for s, i in ((a, ia), (b, ib)):
    s.run(None, {{i: x}})
ta, tb = [], []
for _ in range({n}):  # interleaved, so drift affects both alike
    t = time.perf_counter(); a.run(None, {{ia: x}}); ta.append(time.perf_counter() - t)
    t = time.perf_counter(); b.run(None, {{ib: x}}); tb.append(time.perf_counter() - t)
print(np.median(ta), np.median(tb))
"""


def main() -> None:
    work = Path(os.environ.get("BENCH_DIR", Path(tempfile.gettempdir()) / "xconv-bench"))
    work.mkdir(parents=True, exist_ok=True)
    weights = work / f"{MODEL}.pth"
    if not weights.exists():
        print(f"making {weights} (random weights)")
        subprocess.run([PY, "-c", MAKE_WEIGHTS.format(root=str(ROOT), model=MODEL, weights=str(weights))], check=True)
    xconv = [PY, "-m", "xconv.cli", "convert", "--from", "pytorch", str(weights), "--arch", f"torchvision:{MODEL}"]
    runs = []
    print(f"benchmark: {MODEL}, best of {REPEAT}")
    runs.append(measure("xconv -> caffe (bvlc)", xconv + ["--to", "caffe", "-o", str(work / "xc")]))
    runs.append(measure("xconv -> onnx", xconv + ["--to", "onnx", "-o", str(work / "xo")]))
    for dyn, label in ((False, "torch.onnx.export (legacy)"), (True, "torch.onnx.export (dynamo)")):
        code = PEER.format(root=str(ROOT), model=MODEL, weights=str(weights), out=str(work / f"peer_{dyn}.onnx"),
                           dynamo=dyn)
        runs.append(measure(label, [PY, "-c", code]))
    best_peer = min((r for r in runs if r.name.startswith("torch")), key=lambda r: r.wall_s)
    rss_peer = min(r.peak_rss_mb for r in runs if r.name.startswith("torch"))
    out = subprocess.run([PY, "-c", ORT_SPEED.format(n=50), str(work / "xo" / f"{MODEL}.onnx"),
                          str(work / "peer_False.onnx")], check=True, capture_output=True, text=True).stdout.split()
    t_ours, t_peer = float(out[0]), float(out[1])

    lines = [f"# xconv benchmarks ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
             f"model: torchvision {MODEL} (random weights, saved state_dict); best of {REPEAT} whole processes.",
             "", "| conversion | wall (s) | peak RSS (MB) | wall vs best peer | RSS vs lowest peer |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in runs:
        lines.append(f"| {r.name} | {r.wall_s:.2f} | {r.peak_rss_mb:.0f} | {r.wall_s / best_peer.wall_s:.2f}x "
                     f"| {r.peak_rss_mb / rss_peer:.2f}x |")
    lines += ["", "Goals (issue #2): xconv <= 0.5x the best peer's wall time and <= its peak RSS.", "",
              "| onnxruntime, batch 1, 2 threads, median of 50 interleaved | ms |", "| --- | ---: |",
              f"| xconv's ONNX | {t_ours * 1e3:.1f} |", f"| torch.onnx.export (legacy) ONNX | {t_peer * 1e3:.1f} |",
              f"| ratio (xconv / peer; <= 1 is the goal) | {t_ours / t_peer:.3f} |", ""]
    text = "\n".join(lines)
    print(text)
    (ROOT / "benchmarks" / "results.md").write_text(text)
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(
        {"model": MODEL, "runs": [asdict(r) for r in runs], "ort_ms": {"xconv": t_ours * 1e3, "peer": t_peer * 1e3}},
        indent=2))


if __name__ == "__main__":
    main()
