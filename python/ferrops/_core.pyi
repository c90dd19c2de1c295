# Type stubs for the native module ferrops._core (rust/ferrops-py). The public,
# documented API is in the family modules (ferrops.boxes, ...); these functions
# expect C-contiguous float32/float64 arrays of one dtype, as those modules pass.

import numpy as np
import numpy.typing as npt

__version__: str

def simd_level() -> str: ...
def detected_simd_level() -> str: ...
def set_simd_level(level: str) -> str: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...

# boxes
def box_area(boxes: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]: ...
def box_convert(boxes: npt.NDArray[np.floating], in_fmt: str, out_fmt: str) -> npt.NDArray[np.floating]: ...
def pairwise_iou(
    kind: str, boxes1: npt.NDArray[np.floating], boxes2: npt.NDArray[np.floating]
) -> npt.NDArray[np.floating]: ...
def box_iou_loss(
    kind: str, boxes1: npt.NDArray[np.floating], boxes2: npt.NDArray[np.floating], reduction: str, eps: float
) -> npt.NDArray[np.floating]: ...
def nms(boxes: npt.NDArray[np.floating], scores: npt.NDArray[np.floating], iou_threshold: float) -> npt.NDArray[np.int64]: ...
def batched_nms(
    boxes: npt.NDArray[np.floating], scores: npt.NDArray[np.floating], idxs: npt.NDArray[np.int64], iou_threshold: float
) -> npt.NDArray[np.int64]: ...
def soft_nms(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    iou_threshold: float,
    sigma: float,
    score_threshold: float,
    method: str,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]: ...
def matrix_nms(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    idxs: npt.NDArray[np.int64] | None,
    kernel: str,
    sigma: float,
) -> npt.NDArray[np.floating]: ...

# attention: `options` is the dict built by ferrops.attention._options (layout,
# heads, dims, dense lengths or cu_seqlens, scale, band, softcap, ALiBi, mask view).
# Forward inputs are float32/float64, or bfloat16 bits as uint16 (then `out` is too).
def attention_forward(
    query: npt.NDArray[np.floating] | npt.NDArray[np.uint16],
    key: npt.NDArray[np.floating] | npt.NDArray[np.uint16],
    value: npt.NDArray[np.floating] | npt.NDArray[np.uint16],
    options: dict,
) -> tuple[npt.NDArray[np.floating] | npt.NDArray[np.uint16], npt.NDArray[np.floating]]: ...
def attention_backward(
    query: npt.NDArray[np.floating],
    key: npt.NDArray[np.floating],
    value: npt.NDArray[np.floating],
    out: npt.NDArray[np.floating],
    lse: npt.NDArray[np.floating],
    grad_out: npt.NDArray[np.floating],
    options: dict,
) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.floating], npt.NDArray[np.floating]]: ...
