"""Choosing where verification runs: ``--device auto|cpu|cuda``.

``auto`` picks ``cuda`` only when onnxruntime offers its CUDA execution
provider *and* PyTorch sees a GPU; Caffe always runs on the CPU here (the
pycaffe built by this project is CPU-only).  Asking for ``cuda`` where
there is none is an error, not a silent fallback.
"""
from __future__ import annotations

from typing import Callable

from ..errors import XconvError


def _ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def auto_device(providers: Callable[[], list[str]] = _ort_providers,
                torch_cuda: Callable[[], bool] = _torch_cuda) -> str:
    return "cuda" if "CUDAExecutionProvider" in providers() and torch_cuda() else "cpu"


def resolve_device(requested: str, providers: Callable[[], list[str]] = _ort_providers,
                   torch_cuda: Callable[[], bool] = _torch_cuda) -> str:
    if requested == "auto":
        return auto_device(providers, torch_cuda)
    if requested == "cuda":
        missing = []
        if "CUDAExecutionProvider" not in providers():
            missing.append("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu: pip install "
                           "'xconv[gpu]')")
        if not torch_cuda():
            missing.append("PyTorch sees no CUDA device")
        if missing:
            raise XconvError("--device cuda: " + "; ".join(missing) + ". Use --device cpu or auto.")
    elif requested != "cpu":
        raise XconvError(f"unknown device {requested!r}: use auto, cpu or cuda")
    return requested
