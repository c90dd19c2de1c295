"""``LVIS`` and ``LVISResults``: an LVIS ground truth and its detection results,
parsed in Rust, with lvis-api's Python views and query API built on first use."""

from __future__ import annotations

import copy
import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import _core
from .. import mask as mask_utils
from .._dispatch import check_int
from .._errors import type_error
from ..coco._json import Path, read, to_json

#: An LVIS JSON record or dataset: JSON data, typed by its keys only at run time.
Record = dict[str, Any]


class LVIS:
    """An LVIS ground truth, lvis-api's ``LVIS``.

    Args:
        annotation_path (str | os.PathLike | dict): an LVIS JSON file (images with
            ``neg_category_ids`` and ``not_exhaustive_category_ids``, categories
            with ``frequency``), or the already loaded dict.

    A bad file raises ``ValueError`` naming the file and the first bad record;
    missing federated fields are reported by ``LVISEval``, which needs them.
    """

    def __init__(self, annotation_path: Path | Record) -> None:
        self.logger = logging.getLogger(__name__)
        self._dataset: Record | None = None
        self._path: str | None = None
        self._index: dict[str, Any] | None = None
        if isinstance(annotation_path, dict):
            self._dataset = annotation_path
            payload = to_json(annotation_path, "LVIS", "annotation_path", "<dict>", "annotations")
            self._rust = _core.lvis_parse_ground_truth(payload, "<dict>")
        elif isinstance(annotation_path, (str, os.PathLike)):
            data, self._path = read(annotation_path)
            self._rust = _core.lvis_parse_ground_truth(data, self._path)
        else:
            raise type_error("LVIS", "annotation_path", "a path or a dict", type(annotation_path).__name__)

    # -- the lazily built Python views ----------------------------------------------------

    @property
    def dataset(self) -> Record:
        if self._dataset is None:
            assert self._path is not None
            # Read by the Rust reader that accepted the file, so the two agree.
            data, name = read(self._path)
            self._dataset = _core.coco_load_json(data, name, "LVIS", "annotation_path")
        return self._dataset

    def _create_index(self) -> None:
        anns: dict[Any, Record] = {}
        imgs: dict[Any, Record] = {}
        cats: dict[Any, Record] = {}
        img_ann_map: defaultdict[Any, list[Record]] = defaultdict(list)
        cat_img_map: defaultdict[Any, list[Any]] = defaultdict(list)
        for ann in self.dataset["annotations"]:
            img_ann_map[ann["image_id"]].append(ann)
            anns[ann["id"]] = ann
        for img in self.dataset["images"]:
            imgs[img["id"]] = img
        for cat in self.dataset["categories"]:
            cats[cat["id"]] = cat
        for ann in self.dataset["annotations"]:
            cat_img_map[ann["category_id"]].append(ann["image_id"])
        self._index = {"anns": anns, "imgs": imgs, "cats": cats, "img_ann_map": img_ann_map, "cat_img_map": cat_img_map}

    def _view(self, name: str) -> Any:
        if self._index is None:
            self._create_index()
        assert self._index is not None
        return self._index[name]

    anns = property(lambda self: self._view("anns"))
    imgs = property(lambda self: self._view("imgs"))
    cats = property(lambda self: self._view("cats"))
    img_ann_map = property(lambda self: self._view("img_ann_map"))
    cat_img_map = property(lambda self: self._view("cat_img_map"))

    # -- lvis-api's query API -------------------------------------------------------------

    def get_ann_ids(
        self,
        img_ids: Iterable[int] | None = None,
        cat_ids: Iterable[int] | None = None,
        area_rng: tuple[float, float] | list[float] | None = None,
    ) -> list[int]:
        """Ids of the annotations on ``img_ids``, of ``cat_ids``, with area
        strictly inside ``area_rng`` (``[0, inf]`` when only ``cat_ids`` is given)."""
        if img_ids is not None:
            anns = [ann for img_id in img_ids for ann in self.img_ann_map[img_id]]
        else:
            anns = self.dataset["annotations"]
        if cat_ids is None and area_rng is None:
            return [ann["id"] for ann in anns]
        cats = set(cat_ids) if cat_ids is not None else set()
        lo, hi = area_rng if area_rng is not None else (0, float("inf"))
        return [ann["id"] for ann in anns if ann["category_id"] in cats and lo < ann["area"] < hi]

    def get_cat_ids(self) -> list[int]:
        if self._index is None:
            return list(dict.fromkeys(self._rust.category_ids().tolist()))
        return list(self.cats.keys())

    def get_img_ids(self) -> list[int]:
        if self._index is None:
            return list(dict.fromkeys(self._rust.image_ids().tolist()))
        return list(self.imgs.keys())

    @staticmethod
    def _load_helper(table: dict[Any, Record], ids: Iterable[Any] | None) -> list[Record]:
        return list(table.values()) if ids is None else [table[i] for i in ids]

    def load_anns(self, ids: Iterable[int] | None = None) -> list[Record]:
        return self._load_helper(self.anns, ids)

    def load_cats(self, ids: Iterable[int] | None) -> list[Record]:
        return self._load_helper(self.cats, ids)

    def load_imgs(self, ids: Iterable[int] | None) -> list[Record]:
        return self._load_helper(self.imgs, ids)

    def ann_to_rle(self, ann: Record) -> Any:
        """An annotation's segmentation (polygons, uncompressed or compressed RLE)
        as compressed RLE, on its image's height and width (``ferrops.mask``)."""
        img = self.imgs[ann["image_id"]]
        h, w = img["height"], img["width"]
        segm = ann["segmentation"]
        if isinstance(segm, list):
            return mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
        if isinstance(segm["counts"], list):
            return mask_utils.frPyObjects(segm, h, w)
        return segm

    def ann_to_mask(self, ann: Record) -> np.ndarray:
        """An annotation's segmentation as an ``[H, W]`` uint8 mask."""
        return mask_utils.decode(self.ann_to_rle(ann))


def _max_dets(function: str, argument: str, value: object) -> int | None:
    """lvis-api's convention: a cut at ``value >= 0``, none below."""
    n = check_int(function, argument, value, -(2**63), "an integer (negative: no limit)")
    return n if n >= 0 else None


class LVISResults(LVIS):
    """Detection results against an LVIS ground truth, lvis-api's ``LVISResults``.

    Args:
        lvis_gt (LVIS | str): the ground truth (or its file).
        results (str | os.PathLike | list[dict]): a JSON file or list of
            ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` (box
            results; a ``segmentation`` beside is what ``segm`` evaluation
            compares, the box's polygon where there is none) or of
            ``{"image_id", "category_id", "segmentation", "score"}`` (mask
            results: an RLE ``{"size": [h, w], "counts": str | bytes}``, or
            polygons). The first record decides, as in lvis-api.
        max_dets (int): detections kept per image, the best scores of an image
            that has more (lvis-api's cut; 300 is LVIS' official value); negative
            keeps all.
        max_dets_per_cat (int): detections kept per category over the whole set,
            best scores first; negative (the default) keeps all. Fixed AP (Dave et
            al. 2021) is ``max_dets=-1, max_dets_per_cat=10000``.

    The results get lvis-api's ids ``1..N`` in their new order (grouped by image
    when cut per image) and ``area = w * h`` for box results; mask results get
    the mask's area and, where they have no ``bbox``, the mask's box. A result
    for an image or category absent from the ground truth, or a mask result
    whose segmentation is malformed, is a ``ValueError`` naming the record.
    """

    def __init__(
        self, lvis_gt: LVIS | Path, results: Path | list[Record], max_dets: int = 300, max_dets_per_cat: int = -1
    ) -> None:
        if isinstance(lvis_gt, LVIS):
            gt = lvis_gt
        elif isinstance(lvis_gt, (str, os.PathLike)):
            gt = LVIS(lvis_gt)
        else:
            raise TypeError(f"Unsupported type {lvis_gt} of lvis_gt.")
        per_image = _max_dets("LVISResults", "max_dets", max_dets)
        per_category = _max_dets("LVISResults", "max_dets_per_cat", max_dets_per_cat)
        self.logger = logging.getLogger(__name__)
        self._gt = gt
        self._path = None
        self._dataset = None
        self._index = None
        # The input, for the segmentations the dataset view shows as given.
        self._records: list[Record] | None = None
        self._results_path: str | None = None
        if isinstance(results, (str, os.PathLike)):
            data, source = read(results)
            self._results_path = source
        elif isinstance(results, list):
            self._records = results
            data, source = to_json(results, "LVISResults", "results", "<list>", "results"), "<list>"
        else:
            raise type_error("LVISResults", "results", "a path or a list of dicts", type(results).__name__)
        self._results = _core.lvis_parse_results(data, gt._rust, source, per_image, per_category)
        self._rust = gt._rust

    def _given_segmentations(self) -> list[Any] | None:
        """Each input record's ``segmentation`` (None where it has none), or
        None when no record has one."""
        if not self._results.has_segmentation:
            return None
        records = self._records
        if records is None:
            assert self._results_path is not None
            # Read by the Rust reader that accepted the file.
            data, name = read(self._results_path)
            records = _core.coco_load_json(data, name, "LVISResults", "results")
        return [r.get("segmentation") if isinstance(r, dict) else None for r in records]

    @property
    def dataset(self) -> Record:
        if self._dataset is None:
            columns = self._results.columns()
            given = self._given_segmentations()
            annotations = []
            for i, image_id, category_id, (x, y, w, h), score, area, row in zip(
                columns["id"].tolist(),
                columns["image_id"].tolist(),
                columns["category_id"].tolist(),
                columns["bbox"].tolist(),
                columns["score"].tolist(),
                columns["area"].tolist(),
                columns["source_row"].tolist(),
            ):
                segmentation = given[row] if given is not None else None
                if segmentation is None:  # lvis-api writes the box's polygon
                    segmentation = [[x, y, x, y + h, x + w, y + h, x + w, y]]
                annotations.append(
                    {
                        "image_id": image_id,
                        "category_id": category_id,
                        "bbox": [x, y, w, h],
                        "score": score,
                        "segmentation": segmentation,
                        "area": area,
                        "id": i,
                    }
                )
            gt = self._gt.dataset
            dataset = {key: copy.deepcopy(value) for key, value in gt.items() if key != "annotations"}
            dataset["annotations"] = annotations
            self._dataset = dataset
        return self._dataset

    def get_cat_ids(self) -> list[int]:
        return list(self.cats.keys()) if self._index is not None else self._gt.get_cat_ids()

    def get_img_ids(self) -> list[int]:
        return list(self.imgs.keys()) if self._index is not None else self._gt.get_img_ids()

    def get_top_results(self, img_id: int, score_thrs: float) -> list[Record]:
        """The results on ``img_id`` scoring above ``score_thrs``."""
        anns = self.load_anns(self.get_ann_ids(img_ids=[img_id]))
        return [ann for ann in anns if ann["score"] > score_thrs]
