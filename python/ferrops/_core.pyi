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

# detection (ferrops.coco, ferrops.detection)
class CocoData:
    def __len__(self) -> int: ...
    def image_ids(self) -> npt.NDArray[np.int64]: ...
    def category_ids(self) -> npt.NDArray[np.int64]: ...
    def columns(self) -> dict[str, np.ndarray]: ...

class CocoEvaluation:
    def __len__(self) -> int: ...
    @property
    def num_thresholds(self) -> int: ...

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
) -> CocoEvaluation: ...
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
