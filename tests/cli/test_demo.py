"""`make demo` end to end: the real ImageNet-trained EfficientNet-Lite0.

Expected figures come from outside xconv: PyTorch itself scores top-1 17/20
and top-5 20/20 on the foolbox photos with this preprocessing
(shared/env/stack.md); the converted models must show the same, agree on
every photo, and stay within max|dlogit| <= 5e-4 (float32 reordering alone
gives ~1e-5 here).
"""
from __future__ import annotations

import os
import subprocess
import sys


def test_demo_prints_parity_table(tmp_path):
    r = subprocess.run([sys.executable, "-m", "xconv.cli", "demo", "-o", str(tmp_path)], capture_output=True,
                       text=True, timeout=900, env={**os.environ, "GLOG_minloglevel": "2"})
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in r.stdout.splitlines() if line.startswith("| ") and "top-1" not in line}
    assert set(rows) == {"pytorch (source)", "caffe (bvlc)", "onnx (opset 13)"}, r.stdout
    for name, cols in rows.items():
        assert cols[0] == "17/20" and cols[1] == "20/20", (name, cols)
        if name != "pytorch (source)":
            assert cols[2] == "20/20" and float(cols[3]) <= 5e-4 and cols[5] == "PASS", (name, cols)
    assert "PARITY: PASS" in r.stdout
    proto = (tmp_path / "efficientnet_lite0.prototxt").read_text()
    assert "ceil_mode" not in proto and "ReLU6" not in proto and "Clip" not in proto
