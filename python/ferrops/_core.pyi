# Type stubs for the native module ferrops._core (rust/ferrops-py). The public,
# documented API is in the family modules (ferrops.boxes, ...); these functions
# expect C-contiguous float32/float64 arrays of one dtype, as those modules pass.

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

# The string options the kernels parse (rust/ferrops-core: SimdLevel::parse,
# BoxFormat::parse, ...).
_SimdLevel = Literal["scalar", "avx2", "avx512"]
_BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
_IouKind = Literal["iou", "giou", "diou", "ciou"]
_Reduction = Literal["none", "mean", "sum"]
_SoftNmsMethod = Literal["linear", "gaussian"]
_MatrixNmsKernel = Literal["linear", "gaussian"]
_StopRule = Literal["span", "supnorm"]
_Sweep = Literal["jacobi", "gauss-seidel"]
_McMethod = Literal["basic", "exploring_starts", "epsilon_greedy"]
_PoolMode = Literal["max", "avg"]

__version__: str

def simd_level() -> _SimdLevel: ...
def detected_simd_level() -> _SimdLevel: ...
def set_simd_level(level: _SimdLevel) -> _SimdLevel: ...
def bf16_dot_products() -> bool: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def build_info() -> dict[str, str]: ...
def reset_simd_level() -> _SimdLevel: ...
def simd_auto_level(family: str) -> _SimdLevel: ...
def microarchitecture() -> str: ...

# boxes
def box_area(boxes: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]: ...
def box_convert(
    boxes: npt.NDArray[np.floating], in_fmt: _BoxFormat, out_fmt: _BoxFormat
) -> npt.NDArray[np.floating]: ...
def pairwise_iou(
    kind: _IouKind, boxes1: npt.NDArray[np.floating], boxes2: npt.NDArray[np.floating]
) -> npt.NDArray[np.floating]: ...
def box_iou_loss(
    kind: _IouKind,
    boxes1: npt.NDArray[np.floating],
    boxes2: npt.NDArray[np.floating],
    reduction: _Reduction,
    eps: float,
) -> npt.NDArray[np.floating]: ...
def nms(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    iou_threshold: float,
    max_output: int | None = None,
) -> npt.NDArray[np.int64]: ...
def batched_nms(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    idxs: npt.NDArray[np.int64],
    iou_threshold: float,
    max_output: int | None = None,
) -> npt.NDArray[np.int64]: ...
def soft_nms(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    iou_threshold: float,
    sigma: float,
    score_threshold: float,
    method: _SoftNmsMethod,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]: ...
def matrix_nms(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    idxs: npt.NDArray[np.int64] | None,
    kernel: _MatrixNmsKernel,
    sigma: float,
) -> npt.NDArray[np.floating]: ...
def pairwise_iou_batched(
    kind: _IouKind, boxes1: npt.NDArray[np.floating], boxes2: npt.NDArray[np.floating], batch: int
) -> npt.NDArray[np.floating]: ...
def box_iou_rotated(
    boxes1: npt.NDArray[np.floating],
    boxes2: npt.NDArray[np.floating],
    mode: str,
    aligned: bool,
    angle_unit: str,
    clockwise: bool,
) -> npt.NDArray[np.floating]: ...
def nms_rotated(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    iou_threshold: float,
    angle_unit: str,
    clockwise: bool,
) -> npt.NDArray[np.int64]: ...
def batched_nms_rotated(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    idxs: npt.NDArray[np.int64],
    iou_threshold: float,
    angle_unit: str,
    clockwise: bool,
) -> npt.NDArray[np.int64]: ...
def weighted_boxes_fusion(
    rows: npt.NDArray[np.float64],
    group_ends: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float64],
    iou_thr: float,
    conf_type: str,
    allows_overflow: bool,
) -> npt.NDArray[np.float64]: ...
def non_maximum_weighted(
    rows: npt.NDArray[np.float64], group_ends: npt.NDArray[np.int64], iou_thr: float
) -> npt.NDArray[np.float32]: ...

# mdp: transitions are a tuple (indptrs, indices, data) of per-action CSR arrays
# (int32, int32, float64); reward is the expected reward r[s, a], float64 (S, A).
_Transitions = tuple[list[npt.NDArray[np.int32]], list[npt.NDArray[np.int32]], list[npt.NDArray[np.float64]]]

def mdp_value_iteration(
    p: _Transitions,
    reward: npt.NDArray[np.float64],
    states: int,
    discount: float,
    epsilon: float,
    max_iter: int,
    initial_value: npt.NDArray[np.float64] | None,
    stop: _StopRule,
    method: _Sweep,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], int, bool, float]: ...
def mdp_bellman_backup(
    function: str,
    p: _Transitions,
    reward: npt.NDArray[np.float64],
    states: int,
    discount: float,
    values: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]: ...
def mdp_q_values(
    p: _Transitions, reward: npt.NDArray[np.float64], states: int, discount: float, values: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]: ...
def mdp_policy_evaluation(
    function: str,
    p: _Transitions,
    reward: npt.NDArray[np.float64],
    states: int,
    policy: npt.NDArray[np.int64],
    discount: float,
    epsilon: float,
    max_iter: int,
) -> tuple[npt.NDArray[np.float64], int, bool]: ...
def mdp_policy_system(
    function: str, p: _Transitions, reward: npt.NDArray[np.float64], states: int, policy: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def mdp_mc_control(
    p: _Transitions,
    reward: npt.NDArray[np.float64],
    step_rewards: list[npt.NDArray[np.float64]],
    states: int,
    method: _McMethod,
    discount: float,
    episodes: int,
    episode_length: int,
    seed: int,
    iterations: int,
    epsilon: float,
    visit: str,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64], int]: ...
def incremental_mean(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...
def mdp_modified_policy_iteration(
    function: str,
    p: _Transitions,
    reward: npt.NDArray[np.float64],
    states: int,
    discount: float,
    epsilon: float,
    max_iter: int,
    max_improvements: int,
    initial_value: npt.NDArray[np.float64] | None,
    initial_policy: npt.NDArray[np.int64] | None,
    method: str,
    omega: float,
    span_ratio: float | None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], int, int, bool, float, float, tuple[float, float]]: ...
def mdp_relative_value_iteration(
    p: _Transitions,
    reward: npt.NDArray[np.float64],
    states: int,
    epsilon: float,
    max_iter: int,
    initial_value: npt.NDArray[np.float64] | None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], int, bool, float, float, float]: ...
def mdp_finite_horizon(
    p: _Transitions,
    reward: npt.NDArray[np.float64],
    states: int,
    discount: float,
    horizon: int,
    terminal: npt.NDArray[np.float64] | None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]: ...
def mdp_td_learning(
    p: _Transitions,
    reward: npt.NDArray[np.float64],
    step_rewards: list[npt.NDArray[np.float64]],
    states: int,
    method: str,
    policy: npt.NDArray[np.float64] | None,
    n: int,
    discount: float,
    episodes: int,
    episode_length: int,
    epsilon: float,
    alpha: float,
    power: float | None,
    seed: int,
    terminal: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], int]: ...
def mdp_q_learning_toolbox(
    p: _Transitions,
    reward: npt.NDArray[np.float64],
    step_rewards: list[npt.NDArray[np.float64]],
    states: int,
    discount: float,
    n_iter: int,
    seed: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...

# segmentation: flat, C-contiguous integer label arrays (int8..int64, uint8..uint64)
def confusion_matrix(
    target: npt.NDArray[np.integer], pred: npt.NDArray[np.integer], num_classes: int, ignore_index: int | None
) -> npt.NDArray[np.int64]: ...

# pooling (inputs [N, C, H, W]; boxes [K, 5] in the input's dtype)
def max_pool2d(
    x: npt.NDArray[np.floating], kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> npt.NDArray[np.floating]: ...
def max_pool2d_backward(
    x: npt.NDArray[np.floating],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    grad_output: npt.NDArray[np.floating],
) -> npt.NDArray[np.floating]: ...
def sppf(x: npt.NDArray[np.floating], kernel_size: int) -> npt.NDArray[np.floating]: ...
def sppf_backward(
    x: npt.NDArray[np.floating], kernel_size: int, grad_output: npt.NDArray[np.floating]
) -> npt.NDArray[np.floating]: ...
def adaptive_pool2d(
    x: npt.NDArray[np.floating], output_size: tuple[int, int], mode: _PoolMode
) -> npt.NDArray[np.floating]: ...
def adaptive_max_pool2d_with_indices(
    x: npt.NDArray[np.floating], output_size: tuple[int, int]
) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.int64]]: ...
def adaptive_pool2d_backward(
    x: npt.NDArray[np.floating], output_size: tuple[int, int], mode: _PoolMode, grad_output: npt.NDArray[np.floating]
) -> npt.NDArray[np.floating]: ...
def spatial_pyramid_pool(
    x: npt.NDArray[np.floating], levels: list[int], mode: _PoolMode
) -> npt.NDArray[np.floating]: ...
def spatial_pyramid_pool_backward(
    x: npt.NDArray[np.floating], levels: list[int], mode: _PoolMode, grad_output: npt.NDArray[np.floating]
) -> npt.NDArray[np.floating]: ...
def roi_pool(
    x: npt.NDArray[np.floating], boxes: npt.NDArray[np.floating], output_size: tuple[int, int], spatial_scale: float
) -> npt.NDArray[np.floating]: ...
def roi_pool_with_argmax(
    x: npt.NDArray[np.floating], boxes: npt.NDArray[np.floating], output_size: tuple[int, int], spatial_scale: float
) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.int64]]: ...
def roi_pool_backward(
    grad_output: npt.NDArray[np.floating],
    argmax: npt.NDArray[np.int64],
    boxes: npt.NDArray[np.floating],
    input_shape: tuple[int, int, int, int],
    output_size: tuple[int, int],
) -> npt.NDArray[np.floating]: ...
def roi_align(
    x: npt.NDArray[np.floating],
    boxes: npt.NDArray[np.floating],
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> npt.NDArray[np.floating]: ...
def roi_align_backward(
    grad_output: npt.NDArray[np.floating],
    boxes: npt.NDArray[np.floating],
    input_shape: tuple[int, int, int, int],
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> npt.NDArray[np.floating]: ...

# attention: `options` is the dict built by ferrops._attention_rust._options (layout,
# heads, dims, dense lengths or cu_seqlens, scale, band, softcap, ALiBi, mask view).
# Forward inputs are float32/float64, or bfloat16 bits as uint16 (then `out` is too).
# The log-sum-exp is base 2 (LSE / ln 2) both ways: the backward takes the forward's.
def attention_kvcache(
    query: npt.NDArray[np.float32],
    k_cache: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    v_cache: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    k_new: npt.NDArray[np.float32] | npt.NDArray[np.uint16] | None,
    v_new: npt.NDArray[np.float32] | npt.NDArray[np.uint16] | None,
    options: dict[str, Any],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
def attention_forward(
    query: npt.NDArray[np.floating] | npt.NDArray[np.uint16],
    key: npt.NDArray[np.floating] | npt.NDArray[np.uint16],
    value: npt.NDArray[np.floating] | npt.NDArray[np.uint16],
    options: dict[str, Any],
) -> tuple[npt.NDArray[np.floating] | npt.NDArray[np.uint16], npt.NDArray[np.floating]]: ...
def attention_backward(
    query: npt.NDArray[np.floating],
    key: npt.NDArray[np.floating],
    value: npt.NDArray[np.floating],
    out: npt.NDArray[np.floating],
    lse: npt.NDArray[np.floating],
    grad_out: npt.NDArray[np.floating],
    options: dict[str, Any],
) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.floating], npt.NDArray[np.floating]]: ...

# detection (ferrops.coco, ferrops.detection)
class CocoData:
    def __len__(self) -> int: ...
    def image_ids(self) -> npt.NDArray[np.int64]: ...
    def category_ids(self) -> npt.NDArray[np.int64]: ...
    def id_strings(self) -> list[str]: ...
    def columns(self) -> dict[str, np.ndarray]: ...
    @property
    def leads_with_segmentation(self) -> bool: ...
    @property
    def leads_with_keypoints(self) -> bool: ...

class CocoEvaluation:
    def __len__(self) -> int: ...
    @property
    def num_thresholds(self) -> int: ...
    def entries(
        self, start: int, stop: int
    ) -> list[
        tuple[
            list[int],
            list[int],
            npt.NDArray[np.float64],
            npt.NDArray[np.float64],
            list[float],
            npt.NDArray[np.int64],
            npt.NDArray[np.bool_],
        ]
        | None
    ]: ...
    def unit_ious(self, unit: int) -> npt.NDArray[np.float64] | None: ...

def coco_load_json(json: bytes, source: str, function: str, argument: str) -> Any: ...
def coco_parse_ground_truth(json: bytes, source: str) -> CocoData: ...
def coco_parse_results(json: bytes, ground_truth: CocoData, source: str) -> CocoData: ...
def coco_results_from_arrays(
    ground_truth: CocoData,
    image_id: npt.NDArray[np.int64],
    category_id: npt.NDArray[np.int64],
    bbox: npt.NDArray[np.float64],
    score: npt.NDArray[np.float64],
    area: npt.NDArray[np.float64] | None,
    source: str,
) -> CocoData: ...
def coco_ground_truth_from_arrays(
    image_ids: npt.NDArray[np.int64],
    category_ids: npt.NDArray[np.int64],
    id: npt.NDArray[np.int64],
    image_id: npt.NDArray[np.int64],
    category_id: npt.NDArray[np.int64],
    bbox: npt.NDArray[np.float64],
    area: npt.NDArray[np.float64],
    iscrowd: npt.NDArray[np.bool_],
    source: str,
) -> CocoData: ...
def coco_evaluate(
    ground_truth: CocoData,
    detections: CocoData,
    img_ids: npt.NDArray[np.int64],
    cat_ids: npt.NDArray[np.int64],
    use_cats: bool,
    iou_thrs: npt.NDArray[np.float64],
    area_rngs: npt.NDArray[np.float64],
    max_det: int,
    iou_type: str = "bbox",
    kpt_oks_sigmas: npt.NDArray[np.float64] | None = None,
) -> CocoEvaluation: ...
def coco_tide(
    ground_truth: CocoData,
    detections: CocoData,
    pos_thresh: float,
    bg_thresh: float,
    max_dets: int,
    mode: str,
) -> dict[str, npt.NDArray[Any]]: ...
def coco_accumulate(
    evaluation: CocoEvaluation,
    k_list: list[int],
    a_list: list[int],
    m_list: list[int],
    i_list: list[int],
    num_categories: int,
    num_areas: int,
    num_max_dets: int,
    rec_thrs: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def voc_ap(recall: npt.NDArray[np.float64], precision: npt.NDArray[np.float64], use_07_metric: bool) -> float: ...
def voc_eval(
    det_image_ids: npt.NDArray[np.int64],
    det_boxes: npt.NDArray[np.float64],
    det_scores: npt.NDArray[np.float64],
    gt_image_ids: npt.NDArray[np.int64],
    gt_boxes: npt.NDArray[np.float64],
    gt_difficult: npt.NDArray[np.bool_],
    iou_threshold: float,
    pixel_offset: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def mask_encode(
    data: npt.NDArray[np.uint8], h: int, w: int, n: int, row_major: bool, nonzero: bool
) -> list[dict[str, Any]]: ...
def mask_decode(rles: list[Any]) -> tuple[npt.NDArray[np.uint8], int, int]: ...
def mask_area(rles: list[Any]) -> npt.NDArray[np.uint32]: ...
def mask_to_bbox(rles: list[Any]) -> npt.NDArray[np.float64]: ...
def mask_merge(rles: list[Any], intersect: bool) -> Any: ...
def mask_iou(dt: list[Any], gt: list[Any], iscrowd: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]: ...
def mask_box_iou(
    dt: npt.NDArray[np.float64], gt: npt.NDArray[np.float64], iscrowd: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]: ...
def mask_dense_iou(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8], h: int, w: int) -> npt.NDArray[np.float64]: ...
def mask_from_polygons(polygons: list[Any], h: int, w: int) -> list[dict[str, Any]]: ...
def mask_from_boxes(boxes: npt.NDArray[np.float64], h: int, w: int) -> list[dict[str, Any]]: ...
def mask_compress(rles: list[Any]) -> list[dict[str, Any]]: ...

# lvis (ferrops.lvis)
class LvisData:
    def __len__(self) -> int: ...
    def image_ids(self) -> npt.NDArray[np.int64]: ...
    def category_ids(self) -> npt.NDArray[np.int64]: ...
    def frequencies(self) -> npt.NDArray[np.int64]: ...
    def columns(self) -> dict[str, np.ndarray]: ...

class LvisResultsData:
    def __len__(self) -> int: ...
    def columns(self) -> dict[str, np.ndarray]: ...
    @property
    def has_segmentation(self) -> bool: ...

class LvisEvaluation: ...

def lvis_parse_ground_truth(json: bytes, source: str) -> LvisData: ...
def lvis_parse_results(
    json: bytes, ground_truth: LvisData, source: str, max_dets: int | None, max_dets_per_cat: int | None
) -> LvisResultsData: ...
def lvis_evaluate(
    ground_truth: LvisData,
    detections: LvisResultsData,
    img_ids: npt.NDArray[np.int64],
    cat_ids: npt.NDArray[np.int64],
    iou_thrs: npt.NDArray[np.float64],
    area_rngs: npt.NDArray[np.float64],
    iou_type: str,
) -> LvisEvaluation: ...
def lvis_accumulate(
    evaluation: LvisEvaluation, rec_thrs: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
