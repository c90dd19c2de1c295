"""``LVISEval``: lvis-api's evaluate / accumulate / summarize, with the matching
and accumulation in Rust (the COCO evaluation's, see ``detection::lvis``)."""

from __future__ import annotations

import datetime
import logging
from collections import OrderedDict
from typing import Any, Literal

import numpy as np

from .. import _core
from .._dispatch import contiguous, host_array
from .._errors import describe, type_error, value_error
from ._dataset import LVIS, LVISResults, Record

#: lvis-api's iou types: box IoU or mask IoU.
IouType = Literal["bbox", "segm"]


class Params:
    """lvis-api's evaluation parameters.

    Attributes:
        img_ids, cat_ids: ids to evaluate (default: all of the ground truth, sorted).
        iou_thrs (ndarray[T]): ``0.5:0.05:0.95``. rec_thrs (ndarray[R]): ``0:0.01:1``.
        max_dets: 300 (a label: the cut is ``LVISResults``'). area_rng: ``[[0,
        1e10], [0, 32**2], [32**2, 96**2], [96**2, 1e10]]`` with labels
        ``area_rng_lbl``. img_count_lbl: the frequency groups ``["r", "c", "f"]``.
    """

    def __init__(self, iou_type: IouType) -> None:
        self.img_ids: list[Any] = []
        self.cat_ids: list[Any] = []
        # linspace, not arange: arange's points drift above the decimal values.
        self.iou_thrs = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
        self.rec_thrs = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
        self.max_dets = 300
        self.area_rng: list[list[float]] = [[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]]
        self.area_rng_lbl = ["all", "small", "medium", "large"]
        self.use_cats = 1
        self.img_count_lbl = ["r", "c", "f"]
        self.iou_type: IouType = iou_type


def _id_array(argument: str, ids: object) -> np.ndarray:
    array = host_array("LVISEval.evaluate", argument, ids).reshape(-1)
    if array.size and array.dtype.kind not in "iu":
        raise type_error("LVISEval.evaluate", argument, "integer ids", describe(ids))
    return contiguous("LVISEval.evaluate", argument, array, np.dtype(np.int64))


def _float_array(argument: str, values: object, columns: int | None = None) -> np.ndarray:
    array = host_array("LVISEval.evaluate", argument, values)
    if array.dtype.kind not in "fiub":
        raise type_error("LVISEval.evaluate", argument, "numbers", describe(values))
    array = contiguous("LVISEval.evaluate", argument, array, np.dtype(np.float64))
    if columns is None and (array.ndim != 1 or array.size == 0):  # accumulate() and summarize() index it
        raise value_error("LVISEval.evaluate", argument, "a non-empty 1-d array", f"shape {list(array.shape)}")
    return array.reshape(-1) if columns is None else array.reshape(-1, columns)


class LVISEval:
    """lvis-api's ``LVISEval``, computed in Rust.

    Args:
        lvis_gt (LVIS | str): the ground truth (or its file).
        lvis_dt (LVISResults | str | list[dict]): the detections; a file or list
            is read as ``LVISResults(lvis_gt, lvis_dt)`` (300 per image).
        iou_type (str): "segm" (mask IoU, lvis-api's default) or "bbox" (box
            IoU). Masks are the records' ``segmentation`` on their image
            (polygons, uncompressed or compressed RLE; a box result without one
            stands for its box's polygon), compared without crowd as lvis-api
            does; a malformed one among the records evaluated is a
            ``ValueError`` naming the file and the record.

    After ``run()`` (``evaluate()``, ``accumulate()``, ``summarize()``), ``eval``
    holds ``precision`` (ndarray[T, R, K, A]) and ``recall`` (ndarray[T, K, A]),
    -1 where a category has no ground truth that counts, and ``results`` the
    AP, AP50, AP75, APs, APm, APl, APr, APc, APf and AR values, equal to
    lvis-api's bit for bit.
    """

    def __init__(
        self, lvis_gt: LVIS | str, lvis_dt: LVISResults | str | list[Record], iou_type: IouType = "segm"
    ) -> None:
        self.logger = logging.getLogger(__name__)
        if iou_type not in ("bbox", "segm"):  # lvis-api's error, word for word
            raise ValueError(f"iou_type: {iou_type} is not supported.")
        if isinstance(lvis_gt, LVIS):
            self.lvis_gt = lvis_gt
        elif isinstance(lvis_gt, str):
            self.lvis_gt = LVIS(lvis_gt)
        else:
            raise TypeError(f"Unsupported type {lvis_gt} of lvis_gt.")
        if isinstance(lvis_dt, LVISResults):
            self.lvis_dt = lvis_dt
        elif isinstance(lvis_dt, (str, list)):
            self.lvis_dt = LVISResults(self.lvis_gt, lvis_dt)
        else:
            raise TypeError(f"Unsupported type {lvis_dt} of lvis_dt.")
        self.eval_imgs: list[Any] = []
        self.eval: dict[str, Any] = {}
        self.params = Params(iou_type=iou_type)
        self.results: OrderedDict[str, Any] = OrderedDict()
        self.ious: dict[Any, Any] = {}
        self.freq_groups: list[list[int]] = []
        self._evaluation: _core.LvisEvaluation | None = None
        self.params.img_ids = sorted(self.lvis_gt.get_img_ids())
        self.params.cat_ids = sorted(self.lvis_gt.get_cat_ids())

    def _prepare_freq_group(self) -> list[list[int]]:
        """Positions in ``params.cat_ids`` of the rare, common and frequent categories."""
        gt = self.lvis_gt._rust
        frequency = dict(zip(gt.category_ids().tolist(), gt.frequencies().tolist()))
        groups: list[list[int]] = [[] for _ in self.params.img_count_lbl]
        for idx, cat_id in enumerate(self.params.cat_ids):
            groups[frequency[cat_id]].append(idx)
        return groups

    def evaluate(self) -> None:
        """Per (category, image) matching under the federated rules."""
        p = self.params
        if p.use_cats != 1:
            raise value_error("LVISEval.evaluate", "params.use_cats", "1 (per-category evaluation)", repr(p.use_cats))
        p.img_ids = list(np.unique(p.img_ids))
        self.freq_groups = self._prepare_freq_group()
        self._evaluation = _core.lvis_evaluate(
            self.lvis_gt._rust,
            self.lvis_dt._results,
            _id_array("params.img_ids", p.img_ids),
            _id_array("params.cat_ids", p.cat_ids),
            _float_array("params.iou_thrs", p.iou_thrs),
            _float_array("params.area_rng", p.area_rng, 2),
            p.iou_type,
        )

    def accumulate(self) -> None:
        """The precision ``[T, R, K, A]`` and recall ``[T, K, A]`` arrays."""
        if self._evaluation is None:
            raise RuntimeError("LVISEval.accumulate(): run evaluate() first")
        p = self.params
        precision, recall = _core.lvis_accumulate(self._evaluation, _float_array("params.rec_thrs", p.rec_thrs))
        self.eval = {
            "params": p,
            "counts": [len(p.iou_thrs), len(p.rec_thrs), len(p.cat_ids), len(p.area_rng)],
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "precision": precision,
            "recall": recall,
        }

    def _summarize(
        self, summary_type: str, iou_thr: float | None = None, area_rng: str = "all", freq_group_idx: int | None = None
    ) -> Any:
        """lvis-api's mean of the entries above -1, bit for bit: the same values
        in the same (C) order, then ``np.mean``. A category's entries at an area
        range are all -1 (no ground truth that counts) or all >= 0, so the
        entries are those of the categories whose first entry is above -1,
        gathered with one indexing instead of lvis-api's copy and mask."""
        p = self.params
        aidx = [idx for idx, lbl in enumerate(p.area_rng_lbl) if lbl == area_rng]
        if len(aidx) != 1:  # lvis-api's general indexing for repeated or unknown labels
            return self._summarize_masked(summary_type, iou_thr, aidx, freq_group_idx)
        a = aidx[0]
        if summary_type == "ap":
            s = self.eval["precision"][..., a]  # [T, R, K]
            group = self.freq_groups[freq_group_idx] if freq_group_idx is not None else range(s.shape[2])
            k = np.asarray(group, dtype=np.intp)
            k = k[s[0, 0, k] > -1] if s.shape[0] and s.shape[1] else k[:0]
            s = s[np.where(iou_thr == np.asarray(p.iou_thrs))[0]] if iou_thr is not None else s
            values = s[:, :, k]
        else:
            s = self.eval["recall"][..., a]  # [T, K]
            k = np.flatnonzero(s[0] > -1) if s.shape[0] else np.zeros(0, dtype=np.intp)
            s = s[np.where(iou_thr == np.asarray(p.iou_thrs))[0]] if iou_thr is not None else s
            values = s[:, k]
        if values.size == 0:
            return -1
        return np.mean(values.reshape(-1))

    def _summarize_masked(
        self, summary_type: str, iou_thr: float | None, aidx: list[int], freq_group_idx: int | None
    ) -> Any:
        p = self.params
        s = self.eval["precision" if summary_type == "ap" else "recall"]
        if iou_thr is not None:
            s = s[np.where(iou_thr == np.asarray(p.iou_thrs))[0]]
        if summary_type == "ap":
            s = s[:, :, self.freq_groups[freq_group_idx], aidx] if freq_group_idx is not None else s[:, :, :, aidx]
        else:
            s = s[:, :, aidx]
        if len(s[s > -1]) == 0:
            return -1
        return np.mean(s[s > -1])

    def summarize(self) -> None:
        """Fills ``results``: AP, AP50, AP75, APs, APm, APl, APr, APc, APf, AR@max_dets, ARs/m/l@max_dets."""
        if not self.eval:
            raise RuntimeError("Please run accumulate() first.")
        max_dets = self.params.max_dets
        self.results["AP"] = self._summarize("ap")
        self.results["AP50"] = self._summarize("ap", iou_thr=0.50)
        self.results["AP75"] = self._summarize("ap", iou_thr=0.75)
        self.results["APs"] = self._summarize("ap", area_rng="small")
        self.results["APm"] = self._summarize("ap", area_rng="medium")
        self.results["APl"] = self._summarize("ap", area_rng="large")
        self.results["APr"] = self._summarize("ap", freq_group_idx=0)
        self.results["APc"] = self._summarize("ap", freq_group_idx=1)
        self.results["APf"] = self._summarize("ap", freq_group_idx=2)
        self.results[f"AR@{max_dets}"] = self._summarize("ar")
        for area_rng in ["small", "medium", "large"]:
            self.results[f"AR{area_rng[0]}@{max_dets}"] = self._summarize("ar", area_rng=area_rng)

    def run(self) -> None:
        """``evaluate()``, ``accumulate()``, ``summarize()``."""
        self.evaluate()
        self.accumulate()
        self.summarize()

    def print_results(self) -> None:
        """Prints lvis-api's lines, one per entry of ``results``."""
        template = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} catIds={:>3s}] = {:0.3f}"
        p = self.params
        for key, value in self.results.items():
            title, kind = ("Average Precision", "(AP)") if "AP" in key else ("Average Recall", "(AR)")
            if len(key) > 2 and key[2].isdigit():
                iou = f"{float(key[2:]) / 100:0.2f}"
            else:
                iou = f"{p.iou_thrs[0]:0.2f}:{p.iou_thrs[-1]:0.2f}"
            group = key[2] if len(key) > 2 and key[2] in ["r", "c", "f"] else "all"
            area = key[2] if len(key) > 2 and key[2] in ["s", "m", "l"] else "all"
            print(template.format(title, kind, iou, area, p.max_dets, group, value))

    def get_results(self) -> OrderedDict[str, Any]:
        if not self.results:
            self.logger.warning("results is empty. Call run().")
        return self.results
