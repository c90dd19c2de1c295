"""``ferrops.info()``: what this installation runs with (``ferrops info`` prints it)."""

from __future__ import annotations

from typing import TypedDict

from . import _core


class BuildInfo(TypedDict):
    """What the extension was built with (``rust/ferrops-py/build.rs``)."""

    rustc: str
    profile: str
    opt_level: str
    target: str
    #: CPU features compiled in unconditionally (the target's baseline, or RUSTFLAGS').
    target_features: str
    #: The SIMD levels compiled for every dispatched kernel, chosen at run time.
    dispatched_levels: str
    commit: str
    date: str
    pyo3: str


class Info(TypedDict):
    """What :func:`info` returns (a plain dict)."""

    version: str
    #: The SIMD level kernels run at, and the highest the CPU supports.
    simd_level: str
    detected_simd_level: str
    #: Whether bfloat16 attention uses AVX-512 BF16 dot products (else widens to float32).
    bf16_dot_products: bool
    #: The CPU as the per-kernel level table sees it, and the kernel families that
    #: the automatic choice runs at another level than ``detected_simd_level``.
    microarchitecture: str
    auto_level_exceptions: dict[str, str]
    threads: int
    #: torch's version, None when it is not installed (NumPy inputs only).
    torch: str | None
    cuda_available: bool
    cuda_devices: int
    build: BuildInfo


#: Families with an entry in ``rust/ferrops-core/src/simd.rs``'s per-workload table.
_TUNED_FAMILIES = ("pooling",)


def info() -> Info:
    """Version, SIMD level (active and supported, and per-family exceptions),
    bfloat16 dot products, threads, the torch and CUDA that tensors would run
    with, and what the extension was built with."""
    try:
        import torch
    except ImportError:
        torch_version, cuda_available, cuda_devices = None, False, 0
    else:
        torch_version, cuda_available = str(torch.__version__), torch.cuda.is_available()
        cuda_devices = torch.cuda.device_count() if cuda_available else 0
    detected = _core.detected_simd_level()
    auto_levels = {family: _core.simd_auto_level(family) for family in _TUNED_FAMILIES}
    build = _core.build_info()
    return {
        "version": _core.__version__,
        "simd_level": _core.simd_level(),
        "detected_simd_level": _core.detected_simd_level(),
        "bf16_dot_products": _core.bf16_dot_products(),
        "microarchitecture": _core.microarchitecture(),
        "auto_level_exceptions": {f: level for f, level in auto_levels.items() if level != detected},
        "threads": _core.get_num_threads(),
        "torch": torch_version,
        "cuda_available": cuda_available,
        "cuda_devices": cuda_devices,
        "build": {
            "rustc": build["rustc"],
            "profile": build["profile"],
            "opt_level": build["opt_level"],
            "target": build["target"],
            "target_features": build["target_features"],
            "dispatched_levels": build["dispatched_levels"],
            "commit": build["commit"],
            "date": build["date"],
            "pyo3": build["pyo3"],
        },
    }
