"""--device selection (no GPU is lent here: the CUDA path is exercised through
its selection logic, with the runtimes' answers substituted)."""
from __future__ import annotations

import pytest

from xconv.errors import XconvError
from xconv.verify.device import auto_device, resolve_device

GPU = ["CUDAExecutionProvider", "CPUExecutionProvider"]
CPU = ["CPUExecutionProvider"]


@pytest.mark.parametrize("providers,cuda,want", [(GPU, True, "cuda"), (GPU, False, "cpu"), (CPU, True, "cpu"),
                                                 (CPU, False, "cpu")])
def test_auto(providers, cuda, want):
    assert auto_device(lambda: providers, lambda: cuda) == want
    assert resolve_device("auto", lambda: providers, lambda: cuda) == want


def test_cuda_requested_without_gpu_is_an_error():
    with pytest.raises(XconvError, match="onnxruntime-gpu.*no CUDA device"):
        resolve_device("cuda", lambda: CPU, lambda: False)
    assert resolve_device("cuda", lambda: GPU, lambda: True) == "cuda"
    assert resolve_device("cpu", lambda: GPU, lambda: True) == "cpu"


def test_this_machine_resolves_auto_to_what_it_has():
    import onnxruntime as ort
    import torch
    has = "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available()
    assert resolve_device("auto") == ("cuda" if has else "cpu")


def test_caffe_runs_in_a_child_process_after_tensorflow(tmp_path):
    """pycaffe cannot load after TensorFlow in one process: the runner isolates it then."""
    import subprocess
    import sys
    code = f"""
import numpy as np, os
from xconv.ir import Graph, Node, SourceLoc, TensorType
from xconv.ops import make_attrs
from xconv.convert import convert
from xconv.verify.runners import locate, make_runner, WorkerCaffeRunner
import tensorflow  # first, as a tf-slim verify does
g = Graph("t", [Node("Relu", "r", ["x"], ["y"], make_attrs("Relu"), SourceLoc("t", "r"))],
          {{"x": TensorType((1, 2, 3, 3))}}, ["y"])
res = convert(g, "caffe", {str(tmp_path)!r}, "t")
run = make_runner(locate(next(p for p in res.files if p.suffix == ".prototxt")))
assert isinstance(run, WorkerCaffeRunner)
x = np.linspace(-1, 1, 18, dtype=np.float32).reshape(1, 2, 3, 3)
assert np.array_equal(run(x), np.maximum(x, 0))
print("OK")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
