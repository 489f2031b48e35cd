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
