"""``ferrops.info()``: what this installation runs with (``ferrops info`` prints it)."""

from __future__ import annotations

from typing import TypedDict

from . import _core


class Info(TypedDict):
    """What :func:`info` returns (a plain dict)."""

    version: str
    #: The SIMD level kernels run at, and the highest the CPU supports.
    simd_level: str
    detected_simd_level: str
    #: Whether bfloat16 attention uses AVX-512 BF16 dot products (else widens to float32).
    bf16_dot_products: bool
    threads: int
    #: torch's version, None when it is not installed (NumPy inputs only).
    torch: str | None
    cuda_available: bool
    cuda_devices: int


def info() -> Info:
    """Version, SIMD level (active and supported), bfloat16 dot products, threads,
    and the torch and CUDA that tensors would run with."""
    try:
        import torch
    except ImportError:
        torch_version, cuda_available, cuda_devices = None, False, 0
    else:
        torch_version, cuda_available = str(torch.__version__), torch.cuda.is_available()
        cuda_devices = torch.cuda.device_count() if cuda_available else 0
    return {
        "version": _core.__version__,
        "simd_level": _core.simd_level(),
        "detected_simd_level": _core.detected_simd_level(),
        "bf16_dot_products": _core.bf16_dot_products(),
        "threads": _core.get_num_threads(),
        "torch": torch_version,
        "cuda_available": cuda_available,
        "cuda_devices": cuda_devices,
    }
