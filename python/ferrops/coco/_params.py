"""``Params``: pycocotools' evaluation parameters, and the snapshot evaluate() keeps."""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np

from .._errors import value_error

#: pycocotools' iouTypes.
IouType = Literal["segm", "bbox", "keypoints"]

#: The iouTypes ferrops evaluates: all of pycocotools' (box IoU, mask IoU,
#: keypoint OKS with setKpParams).
EVALUATED_IOU_TYPES: tuple[IouType, ...] = ("bbox", "segm", "keypoints")

#: pycocotools' OKS sigmas of the 17 COCO person keypoints.
COCO_KEYPOINT_SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10.0
)


def check_iou_type(function: str, iouType: object) -> None:  # noqa: N803
    """Refuses an iouType ferrops does not evaluate."""
    if iouType not in EVALUATED_IOU_TYPES:
        expected = "one of " + ", ".join(repr(t) for t in EVALUATED_IOU_TYPES)
        raise value_error(function, "iouType", expected, repr(iouType))


class Params:
    """Evaluation parameters, pycocotools' ``Params`` for bbox and segm.

    Attributes:
        imgIds, catIds: ids to evaluate (default: all of the ground truth).
        iouThrs (ndarray[T]): ``0.5:0.05:0.95``. recThrs (ndarray[R]): ``0:0.01:1``.
        maxDets: ``[1, 10, 100]``. areaRng: ``[[0, 1e10], [0, 32**2], [32**2,
        96**2], [96**2, 1e10]]`` with labels ``areaRngLbl``. useCats: 1.
    """

    def __init__(self, iouType: IouType = "segm") -> None:  # noqa: N803
        check_iou_type("Params", iouType)
        if iouType == "keypoints":
            self.setKpParams()
        else:
            self.setDetParams()
        self.iouType: IouType = iouType
        self.useSegm: int | None = None

    def setDetParams(self) -> None:  # noqa: N802
        self.imgIds: list[int] = []
        self.catIds: list[int] = []
        # linspace, not arange: arange's points drift above the decimal values.
        self.iouThrs = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
        self.recThrs = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
        self.maxDets: list[int] = [1, 10, 100]
        self.areaRng: list[list[float]] = [[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]]
        self.areaRngLbl = ["all", "small", "medium", "large"]
        self.useCats: int = 1

    def setKpParams(self) -> None:  # noqa: N802
        """pycocotools' keypoint parameters: maxDets ``[20]``, area ranges all /
        medium / large, and ``kpt_oks_sigmas`` (ndarray[17]), which may be replaced
        by one sigma per keypoint of another skeleton."""
        self.setDetParams()
        self.maxDets = [20]
        self.areaRng = [[0**2, 1e5**2], [32**2, 96**2], [96**2, 1e5**2]]
        self.areaRngLbl = ["all", "medium", "large"]
        self.kpt_oks_sigmas = COCO_KEYPOINT_SIGMAS.copy()


def snapshot(p: Params) -> Params:
    """A copy of the parameters evaluate() ran with. pycocotools deep-copies; the
    values are immutable numbers, so copying the containers is enough (and far
    cheaper than deep-copying thousands of NumPy scalars)."""
    q = copy.copy(p)
    for name, value in vars(p).items():
        if isinstance(value, np.ndarray):
            setattr(q, name, value.copy())
        elif isinstance(value, list):
            setattr(
                q,
                name,
                [list(v) if isinstance(v, list) else copy.deepcopy(v) if isinstance(v, dict) else v for v in value],
            )
    return q
