"""``COCOeval``: pycocotools' evaluate / accumulate / summarize, with the matching
and accumulation in Rust."""

from __future__ import annotations

import datetime
import math
import sys
import time
from typing import Any, cast

import numpy as np

from .. import _core
from .._dispatch import contiguous, host_array
from .._errors import describe, type_error, value_error
from ._dataset import COCO
from ._ids import combined_strings, encode
from ._params import EVALUATED_IOU_TYPES, IouType, Params, check_iou_type, snapshot
from ._views import EvalImgs, Ious


def _is_max_det(m: object) -> bool:
    """A positive integer (an integral float too), however large: pycocotools
    slices with it, so 2**64 keeps every detection."""
    if isinstance(m, (bool, np.bool_)):
        return False
    if isinstance(m, (float, np.floating)):
        return bool(math.isfinite(m) and float(m).is_integer() and m >= 1)
    return bool(isinstance(m, (int, np.integer)) and m >= 1)


def _detections_kept(m: float) -> int:
    """A checked maxDets as the kernel's count: past ``sys.maxsize`` every
    detection is kept anyway."""
    return min(int(m), sys.maxsize)


def _float_params(function: str, name: str, value: object) -> np.ndarray:
    """A list of numbers in ``params`` as a flat float64 array (NaN where a None
    stood, which the core then refuses, naming the parameter)."""
    argument = f"params.{name}"
    array = host_array(function, argument, value)
    if array.dtype == object:  # None among numbers: NumPy's float() of it is NaN, as pycocotools would get
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            raise type_error(function, argument, "numbers", describe(value)) from None
    if array.dtype.kind not in "fiub":
        raise type_error(function, argument, "numbers", describe(array))
    return contiguous(function, argument, array, np.dtype(np.float64)).reshape(-1)


def _keypoint_sigmas(p: Params) -> np.ndarray | None:
    """``params.kpt_oks_sigmas`` as float64 for a keypoint evaluation (the core
    checks its length against the keypoints); None for the other iouTypes."""
    if p.iouType != "keypoints":
        return None
    return _float_params("COCOeval.evaluate", "kpt_oks_sigmas", getattr(p, "kpt_oks_sigmas", None))


class COCOeval:
    """pycocotools' ``COCOeval`` for ``iouType="bbox"``, ``"segm"`` and ``"keypoints"``, computed in Rust.

    Args:
        cocoGt (COCO): ground truth. cocoDt (COCO): detections (``cocoGt.loadRes``).
        iouType (str): "segm" (mask IoU, pycocotools' default), "bbox" (box IoU) or
            "keypoints" (OKS; ``params.kpt_oks_sigmas`` settable; ``summarize()`` then
            prints pycocotools' 10 keypoint lines and ``stats`` is ndarray[10]).

    After ``evaluate()`` and ``accumulate()``, ``eval`` holds ``precision``
    (ndarray[T, R, K, A, M]), ``recall`` (ndarray[T, K, A, M]) and ``scores``
    (ndarray[T, R, K, A, M]), -1 where a setting has no ground truth;
    ``summarize()`` prints the 12 lines and fills ``stats`` (ndarray[12]).
    """

    def __init__(self, cocoGt: COCO | None = None, cocoDt: COCO | None = None, iouType: IouType = "segm") -> None:  # noqa: N803
        for name, value in (("cocoGt", cocoGt), ("cocoDt", cocoDt)):
            if value is not None and not isinstance(value, COCO):
                raise type_error("COCOeval", name, "a ferrops.coco.COCO", type(value).__name__)
        check_iou_type("COCOeval", iouType)
        self.cocoGt = cocoGt
        self.cocoDt = cocoDt
        self.params = Params(iouType=iouType)
        # pycocotools' empty values until evaluate() / summarize() set them.
        self.evalImgs: EvalImgs | list[Any] = []
        self.ious: Ious | dict[Any, Any] = {}
        self._evaluation: _core.CocoEvaluation | None = None
        self.eval: dict[str, Any] = {}
        self._paramsEval: Params | dict[str, Any] = {}
        self.stats: np.ndarray | list[float] = []
        if cocoGt is not None:
            self.params.imgIds = sorted(cocoGt.getImgIds())
            self.params.catIds = sorted(cocoGt.getCatIds())

    def evaluate(self) -> None:
        """Matches detections to ground truth per image and category (Rust, threaded)."""
        tic = time.time()
        print("Running per image evaluation...")
        p = self.params
        if p.useSegm is not None:
            p.iouType = "segm" if p.useSegm == 1 else "bbox"
            print(f"useSegm (deprecated) is not None. Running {p.iouType} evaluation")
        if p.iouType not in EVALUATED_IOU_TYPES:
            expected = "one of " + ", ".join(repr(t) for t in EVALUATED_IOU_TYPES)
            raise value_error("COCOeval.evaluate", "params.iouType", expected, repr(p.iouType))
        if self.cocoGt is None or self.cocoDt is None:
            raise ValueError("COCOeval.evaluate(): arguments 'cocoGt' and 'cocoDt': expected COCO datasets, got None")
        print(f"Evaluate annotation type *{p.iouType}*")
        p.imgIds = list(np.unique(p.imgIds))
        if p.useCats:
            p.catIds = list(np.unique(p.catIds))
        if len(p.maxDets) == 0 or not all(_is_max_det(m) for m in p.maxDets):
            raise value_error("COCOeval.evaluate", "params.maxDets", "positive integers", p.maxDets)
        p.maxDets = sorted(p.maxDets)
        area_rngs = _float_params("COCOeval.evaluate", "areaRng", p.areaRng) if len(p.areaRng) else np.zeros(0)
        if area_rngs.size % 2:
            raise value_error("COCOeval.evaluate", "params.areaRng", "[lo, hi] pairs", p.areaRng)
        area_rngs = area_rngs.reshape(-1, 2)
        iou_thrs = _float_params("COCOeval.evaluate", "iouThrs", p.iouThrs)
        self.params = p
        gt, dt = self.cocoGt._evaluated_data(), self.cocoDt._evaluated_data()
        strings = combined_strings(gt.id_strings(), dt.id_strings())
        self._evaluation = _core.coco_evaluate(
            gt,
            dt,
            encode(p.imgIds, strings),
            encode(p.catIds, strings),
            bool(p.useCats),
            iou_thrs,
            area_rngs,
            _detections_kept(p.maxDets[-1]),
            p.iouType,
            _keypoint_sigmas(p),
        )
        cat_ids = list(p.catIds) if p.useCats else [-1]
        img_ids = list(p.imgIds)
        self.evalImgs = EvalImgs(self._evaluation, img_ids, cat_ids, list(p.areaRng), p.maxDets[-1])
        self.ious = Ious(self._evaluation, img_ids, cat_ids)
        self._paramsEval = snapshot(self.params)
        print(f"DONE (t={time.time() - tic:0.2f}s).")

    def accumulate(self, p: Params | None = None) -> None:
        """Builds ``eval`` (precision, recall, scores) from ``evaluate()``'s matches."""
        print("Accumulating evaluation results...")
        tic = time.time()
        if self._evaluation is None:
            raise RuntimeError("COCOeval.accumulate(): run evaluate() first")
        if not (isinstance(self.evalImgs, EvalImgs) and self.evalImgs._evaluation is self._evaluation):
            raise TypeError(
                "COCOeval.accumulate(): attribute 'evalImgs': expected the EvalImgs evaluate() made (ferrops "
                f"accumulates from its Rust results), got {type(self.evalImgs).__name__}"
            )
        if p is None:
            p = self.params
        p.catIds = p.catIds if p.useCats == 1 else [-1]
        T, R = len(p.iouThrs), len(p.recThrs)
        K = len(p.catIds) if p.useCats else 1
        A, M = len(p.areaRng), len(p.maxDets)
        if T != self._evaluation.num_thresholds:
            expected = f"the {self._evaluation.num_thresholds} thresholds evaluate() ran with"
            raise value_error("COCOeval.accumulate", "p.iouThrs", expected, T)
        pe = cast(Params, self._paramsEval)  # set by evaluate(), as _evaluation is
        set_k = set(pe.catIds if pe.useCats else [-1])
        set_a = {tuple(a) for a in pe.areaRng}
        set_m = set(pe.maxDets)
        set_i = set(pe.imgIds)
        k_list = [n for n, k in enumerate(p.catIds) if k in set_k]
        m_list = [_detections_kept(m) for m in p.maxDets if m in set_m]
        a_list = [n for n, a in enumerate(p.areaRng) if tuple(a) in set_a]
        i_list = [n for n, i in enumerate(p.imgIds) if i in set_i]
        precision, recall, scores = _core.coco_accumulate(
            self._evaluation,
            k_list,
            a_list,
            m_list,
            i_list,
            K,
            A,
            M,
            _float_params("COCOeval.accumulate", "recThrs", p.recThrs),
        )
        # Computed category-major (each category one slice, no copy out of
        # per-category buffers); pycocotools' axis order as views.
        self.eval = {
            "params": p,
            "counts": [T, R, K, A, M],
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "precision": np.moveaxis(precision, 0, 2),
            "recall": np.moveaxis(recall, 0, 1),
            "scores": np.moveaxis(scores, 0, 2),
        }
        print(f"DONE (t={time.time() - tic:0.2f}s).")

    def _summarize(
        self,
        ap: int = 1,
        iouThr: float | None = None,
        areaRng: str = "all",
        maxDets: int = 100,
        category: int | None = None,  # noqa: N803
    ) -> float:
        """One summary value (pycocotools' ``_summarize``); ``category`` restricts
        it to one index of ``params.catIds`` (the per-class metrics)."""
        p = self.params
        title = "Average Precision" if ap == 1 else "Average Recall"
        kind = "(AP)" if ap == 1 else "(AR)"
        iou = f"{p.iouThrs[0]:0.2f}:{p.iouThrs[-1]:0.2f}" if iouThr is None else f"{iouThr:0.2f}"
        aind = [i for i, label in enumerate(p.areaRngLbl) if label == areaRng]
        mind = [i for i, m in enumerate(p.maxDets) if m == maxDets]
        s = self.eval["precision"] if ap == 1 else self.eval["recall"]
        if iouThr is not None:
            s = s[np.where(iouThr == np.asarray(p.iouThrs))[0]]
        if category is not None:
            s = s[:, :, category : category + 1] if ap == 1 else s[:, category : category + 1]
        s = s[:, :, :, aind, mind] if ap == 1 else s[:, :, aind, mind]
        valid = s[s > -1]
        mean = -1 if len(valid) == 0 else np.mean(valid)
        print(f" {title:<18} {kind} @[ IoU={iou:<9} | area={areaRng:>6s} | maxDets={maxDets:>3d} ] = {mean:0.3f}")
        return mean

    def summarize(self) -> None:
        """Prints pycocotools' 12 summary lines and sets ``stats`` (ndarray[12]):
        AP, AP50, AP75, AP small/medium/large, AR@maxDets[0..2], AR small/medium/large."""
        if not self.eval:
            raise RuntimeError("COCOeval.summarize(): run accumulate() first")
        if self.params.iouType == "keypoints":
            self.stats = self._summarize_keypoints()
            return
        m = self.params.maxDets
        stats = np.zeros((12,))
        stats[0] = self._summarize(1)
        stats[1] = self._summarize(1, iouThr=0.5, maxDets=m[2])
        stats[2] = self._summarize(1, iouThr=0.75, maxDets=m[2])
        stats[3] = self._summarize(1, areaRng="small", maxDets=m[2])
        stats[4] = self._summarize(1, areaRng="medium", maxDets=m[2])
        stats[5] = self._summarize(1, areaRng="large", maxDets=m[2])
        stats[6] = self._summarize(0, maxDets=m[0])
        stats[7] = self._summarize(0, maxDets=m[1])
        stats[8] = self._summarize(0, maxDets=m[2])
        stats[9] = self._summarize(0, areaRng="small", maxDets=m[2])
        stats[10] = self._summarize(0, areaRng="medium", maxDets=m[2])
        stats[11] = self._summarize(0, areaRng="large", maxDets=m[2])
        self.stats = stats

    def _summarize_keypoints(self) -> np.ndarray:
        """pycocotools' 10 keypoint lines (maxDets 20): AP, AP50, AP75, AP
        medium/large, AR, AR50, AR75, AR medium/large."""
        stats = np.zeros((10,))
        for n, ap in enumerate((1, 0)):
            stats[5 * n] = self._summarize(ap, maxDets=20)
            stats[5 * n + 1] = self._summarize(ap, maxDets=20, iouThr=0.5)
            stats[5 * n + 2] = self._summarize(ap, maxDets=20, iouThr=0.75)
            stats[5 * n + 3] = self._summarize(ap, maxDets=20, areaRng="medium")
            stats[5 * n + 4] = self._summarize(ap, maxDets=20, areaRng="large")
        return stats

    # -- pickling (DataLoader workers, torch.distributed.all_gather_object) ---------------
    # The Rust matches are not pickled: an evaluated COCOeval is unpickled by
    # evaluating again with the parameters evaluate() ran with (deterministic, so
    # evalImgs and ious come back equal); eval and stats travel as arrays.

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_evaluation"] = None
        evaluated = self._evaluation is not None
        for name, view in (("evalImgs", EvalImgs), ("ious", Ious)):
            if isinstance(state[name], view):
                state[name] = None
        state["_evaluated"] = evaluated
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import contextlib
        import io

        evaluated = state.pop("_evaluated")
        self.__dict__.update(state)
        if not evaluated:
            return
        params, params_eval, kept = self.params, self._paramsEval, {"eval": self.eval, "stats": self.stats}
        views = {name: state[name] for name in ("evalImgs", "ious") if state[name] is not None}
        self.params = snapshot(cast(Params, params_eval))
        with contextlib.redirect_stdout(io.StringIO()):
            self.evaluate()
        self.params, self._paramsEval = params, params_eval
        self.__dict__.update(kept)
        self.__dict__.update(views)
