"""ferrops: fast, spec-checked CPU kernels for machine learning.

NumPy arrays and CPU tensors run in Rust (SIMD, threads, GIL released); CUDA
tensors stay on their device and run PyTorch implementations. See the README for
the kernel families and ``ferrops bench`` for speed against each peer.
"""

from __future__ import annotations

from typing import Literal

from . import (
    _core,
    _dispatch,
    _errors,
    attention,
    boxes,
    coco,
    detection,
    layers,
    lvis,
    mask,
    mdp,
    nn,
    pooling,
    segmentation,
)
from ._info import info
from ._kvcache import flash_attn_with_kvcache
from .attention import flash_attn_func, flash_attn_varlen_func, scaled_dot_product_attention
from .boxes import (
    batched_nms,
    batched_nms_rotated,
    box_area,
    box_convert,
    box_convert_rotated,
    box_iou,
    box_iou_rotated,
    complete_box_iou,
    complete_box_iou_loss,
    distance_box_iou,
    distance_box_iou_loss,
    generalized_box_iou,
    generalized_box_iou_loss,
    matrix_nms,
    nms,
    nms_rotated,
    non_maximum_weighted,
    probiou,
    soft_nms,
    weighted_boxes_fusion,
)
from .detection import (
    MeanAveragePrecision,
    evaluate_rotated,
    per_category_ap,
    plot_pr_curves,
    pr_curves,
    voc_ap,
    voc_eval,
)
from .layers import LayerReceptiveField, receptive_field
from .pooling import (
    adaptive_avg_pool2d,
    adaptive_max_pool2d,
    max_pool2d,
    roi_align,
    roi_pool,
    spatial_pyramid_pool,
    sppf,
)
from .segmentation import (
    SegmentationMetric,
    all_reduce_confusion_matrix,
    confusion_matrix,
    segmentation_metrics,
)

__version__: str = _core.__version__


def get_num_threads() -> int:
    """Threads ferrops' kernels use (``FERROPS_NUM_THREADS``, else the core count)."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Sets the threads ferrops' kernels use. Results do not depend on it."""
    _core.set_num_threads(_dispatch.check_int("set_num_threads", "n", n, 1, "a positive thread count"))


#: The SIMD levels kernels are compiled for, lowest first.
SimdLevel = Literal["scalar", "avx2", "avx512"]


def simd_level() -> SimdLevel:
    """The SIMD level kernels run at: "avx512", "avx2" or "scalar"."""
    return _core.simd_level()


def set_simd_level(level: SimdLevel | Literal["auto"]) -> SimdLevel:
    """Forces a SIMD level ("scalar", "avx2", "avx512"; clamped to what the CPU
    supports) for every kernel and returns the one now active; "auto" goes back to the
    automatic choice, which may pick a lower level for one family on one CPU (``ferrops
    info`` lists such exceptions). ``FERROPS_SIMD`` forces a level at start-up."""
    if not isinstance(level, str):
        raise _errors.type_error(
            "set_simd_level", "level", "one of 'scalar', 'avx2', 'avx512', 'auto'", _errors.describe(level)
        )
    if level == "auto":
        return _core.reset_simd_level()
    return _core.set_simd_level(level)


__all__ = [
    "__version__",
    "get_num_threads",
    "set_num_threads",
    "simd_level",
    "set_simd_level",
    "info",
    *attention.__all__,
    "flash_attn_with_kvcache",
    *boxes.__all__,
    "mask",
    "mdp",
    *segmentation.__all__,
    *layers.__all__,
    *pooling.__all__,
    *detection.__all__,
]
