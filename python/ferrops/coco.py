"""COCO bbox evaluation: drop-in ``COCO`` and ``COCOeval`` (SPEC DET-COCO).

``ferrops.coco.COCO`` and ``ferrops.coco.COCOeval`` follow
``pycocotools.coco.COCO`` and ``pycocotools.cocoeval.COCOeval`` for
``iouType="bbox"``: same constructor arguments, ``params``, ``evaluate()``,
``accumulate()``, ``summarize()`` (same printed lines), ``stats`` and ``eval``,
and the same numbers bit for bit, pycocotools' quirks included (crowd matching,
inclusive area-range ends, stable score sorts, unreached recall points at 0,
``maxDets`` other than ``[1, 10, 100]``, ``useCats=0``, id subsets, custom
thresholds, a ground truth with id 0 counted as unmatched, repeated annotation
ids resolving to the last record).

The JSON is parsed in Rust and the matching and accumulation run in Rust across
threads; Python only holds parameters. The Python views of a dataset
(``dataset``, ``anns``, ``imgs``, ``cats``, ``imgToAnns``, ``catToImgs``) are
built on first use.

Differences from pycocotools, all on input it would reject or mishandle:

* bad input raises ``ValueError`` naming the file and the first bad record
  (malformed JSON, a missing key, a non-finite or negative box width/height, a
  non-finite score, a result for an image absent from the ground truth);
* a ground-truth annotation without ``area`` gets the box area and one without
  ``iscrowd`` is not crowd (pycocotools raises ``KeyError``);
* ``loadRes`` of an empty list gives an empty result set;
* only ``iouType="bbox"``.

``evalImgs`` and ``ious`` hold pycocotools' values without pycocotools' memory:
``evalImgs`` is a read-only sequence (``len``, indexing with negative indices
and slices, iteration) whose entries, ``None`` or pycocotools' dict with the
same values and dtypes, are recomputed in Rust from the evaluated units when
read; ``ious`` is a read-only mapping ``(imgId, catId) -> [D, G]`` IoU matrix
(``[]`` where a side is empty), computed on access. ``dtScores`` are Python
floats even where the results file wrote an integer score. ``accumulate()``
reads the Rust results directly, never these views.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import json
import math
import operator
import os
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import _core

__all__ = ["COCO", "COCOeval", "EvalImgs", "Ious", "Params"]


def _is_array_like(obj: Any) -> bool:
    return hasattr(obj, "__iter__") and hasattr(obj, "__len__")


def _json_scalar(obj: Any) -> Any:
    """json.dumps hook: NumPy scalars and arrays as Python numbers and lists."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not a JSON value")


def _first_non_finite(records: Any) -> int | None:
    for i, record in enumerate(records):
        values = record.values() if isinstance(record, dict) else ()
        for value in values:
            numbers = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
            for v in numbers:
                if isinstance(v, (float, np.floating)) and not math.isfinite(v):
                    return i
    return None


def _to_json(obj: Any, function: str, argument: str, source: str, what: str) -> bytes:
    """Encodes Python data for the Rust parser, naming the first record with a
    non-finite number (JSON cannot hold NaN)."""
    try:
        return json.dumps(obj, allow_nan=False, default=_json_scalar).encode()
    except ValueError:
        records = obj.get("annotations", []) if isinstance(obj, dict) else obj
        i = _first_non_finite(records)
        where = f"{what}[{i}]" if i is not None else "a record"
        raise ValueError(
            f"{function}(): argument '{argument}': expected finite numbers, got {source}: {where} has a NaN or infinite value"
        ) from None
    except TypeError as exc:
        raise TypeError(f"{function}(): argument '{argument}': expected JSON-like data, got {source}: {exc}") from None


def _read(path: Any) -> tuple[bytes, str]:
    name = os.fspath(path)
    with open(name, "rb") as f:
        return f.read(), str(name)


class COCO:
    """A COCO dataset (ground truth or detections), pycocotools' ``COCO``.

    Args:
        annotation_file (str | os.PathLike | dict | None): a COCO JSON file, or
            the already loaded dict; ``None`` for an empty dataset (fill
            ``dataset`` and call ``createIndex()``, as with pycocotools).
    """

    def __init__(self, annotation_file: Any = None) -> None:
        self._dataset: dict | None = None
        self._path: str | None = None
        self._results_of: COCO | None = None
        self._index: dict | None = None
        self._rust: Any = None
        if annotation_file is None:
            self._dataset = {}
        elif isinstance(annotation_file, dict):
            self._dataset = annotation_file
        elif isinstance(annotation_file, (str, os.PathLike)):
            print("loading annotations into memory...")
            tic = time.time()
            data, self._path = _read(annotation_file)
            self._rust = _core.coco_parse_ground_truth(data, self._path)
            print(f"Done (t={time.time() - tic:0.2f}s)")
        else:
            raise TypeError(
                "COCO(): argument 'annotation_file': expected a path, a dict or None, "
                f"got {type(annotation_file).__name__}"
            )

    @classmethod
    def _from_rust(cls, data: Any, results_of: COCO | None = None) -> COCO:
        """A dataset already parsed in Rust; its Python views are built from the columns."""
        coco = cls()
        coco._dataset = None
        coco._rust = data
        coco._results_of = results_of
        return coco

    # -- the Rust dataset and the lazily built Python views -----------------------------

    @property
    def _data(self) -> Any:
        """The parsed dataset in Rust, (re)built from ``dataset`` when needed."""
        if self._rust is None:
            assert self._dataset is not None
            payload = _to_json(self._dataset, "COCO", "annotation_file", "<dict>", "annotations")
            self._rust = _core.coco_parse_ground_truth(payload, "<dict>")
        return self._rust

    @property
    def dataset(self) -> dict:
        if self._dataset is None:
            if self._path is not None:
                with open(self._path) as f:
                    self._dataset = json.load(f)
            elif self._results_of is not None:
                self._dataset = self._results_dataset()
            else:
                self._dataset = self._ground_truth_dataset()
        return self._dataset

    @dataset.setter
    def dataset(self, value: dict) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"COCO.dataset: expected a dict, got {type(value).__name__}")
        self._dataset = value
        self._path = None
        self._results_of = None
        self._rust = None
        self._index = None

    def _results_dataset(self) -> dict:
        gt = self._results_of
        assert gt is not None
        columns = self._data.columns()
        annotations = []
        for i, (image_id, category_id, (x, y, w, h), score, area) in enumerate(
            zip(
                columns["image_id"].tolist(),
                columns["category_id"].tolist(),
                columns["bbox"].tolist(),
                columns["score"].tolist(),
                columns["area"].tolist(),
            )
        ):
            annotations.append(
                {
                    "image_id": image_id,
                    "bbox": [x, y, w, h],
                    "score": score,
                    "category_id": category_id,
                    "segmentation": [[x, y, x, y + h, x + w, y + h, x + w, y]],
                    "area": area,
                    "id": i + 1,
                    "iscrowd": 0,
                }
            )
        return {
            "info": copy.deepcopy(gt.dataset.get("info", {})),
            "images": list(gt.dataset.get("images", [])),
            "categories": copy.deepcopy(gt.dataset.get("categories", [])),
            "annotations": annotations,
        }

    def _ground_truth_dataset(self) -> dict:
        columns = self._data.columns()
        annotations = [
            {"id": i, "image_id": image_id, "category_id": category_id, "bbox": bbox, "area": area, "iscrowd": int(crowd)}
            for i, image_id, category_id, bbox, area, crowd in zip(
                columns["id"].tolist(),
                columns["image_id"].tolist(),
                columns["category_id"].tolist(),
                columns["bbox"].tolist(),
                columns["area"].tolist(),
                columns["iscrowd"].tolist(),
            )
        ]
        return {
            "images": [{"id": i} for i in self._data.image_ids().tolist()],
            "categories": [{"id": c} for c in self._data.category_ids().tolist()],
            "annotations": annotations,
        }

    def createIndex(self) -> None:  # noqa: N802 (pycocotools' name)
        """Rebuilds the index, and the Rust dataset when ``dataset`` was assigned."""
        print("creating index...")
        if self._dataset is not None and self._path is None and self._results_of is None:
            self._rust = None
            _ = self._data
        self._index = None
        print("index created!")

    def _get_index(self) -> dict:
        if self._index is None:
            anns, cats, imgs = {}, {}, {}
            img_to_anns, cat_to_imgs = defaultdict(list), defaultdict(list)
            dataset = self.dataset
            for ann in dataset.get("annotations", []):
                img_to_anns[ann["image_id"]].append(ann)
                anns[ann["id"]] = ann
            for img in dataset.get("images", []):
                imgs[img["id"]] = img
            for cat in dataset.get("categories", []):
                cats[cat["id"]] = cat
            if "annotations" in dataset and "categories" in dataset:
                for ann in dataset["annotations"]:
                    cat_to_imgs[ann["category_id"]].append(ann["image_id"])
            self._index = {"anns": anns, "cats": cats, "imgs": imgs, "imgToAnns": img_to_anns, "catToImgs": cat_to_imgs}
        return self._index

    anns = property(lambda self: self._get_index()["anns"])
    cats = property(lambda self: self._get_index()["cats"])
    imgs = property(lambda self: self._get_index()["imgs"])
    imgToAnns = property(lambda self: self._get_index()["imgToAnns"])  # noqa: N815
    catToImgs = property(lambda self: self._get_index()["catToImgs"])  # noqa: N815

    # -- pycocotools' query API -----------------------------------------------------------

    def info(self) -> None:
        for key, value in self.dataset["info"].items():
            print(f"{key}: {value}")

    def getAnnIds(self, imgIds: Any = [], catIds: Any = [], areaRng: Any = [], iscrowd: Any = None) -> list:  # noqa: B006,N802,N803
        """Ids of the annotations on the given images, of the given categories,
        with area strictly inside ``areaRng``, of the given crowd flag."""
        img_ids = imgIds if _is_array_like(imgIds) else [imgIds]
        cat_ids = catIds if _is_array_like(catIds) else [catIds]
        if len(img_ids) == len(cat_ids) == len(areaRng) == 0:
            anns = self.dataset["annotations"]
        else:
            if len(img_ids) != 0:
                img_to_anns = self.imgToAnns
                anns = list(itertools.chain.from_iterable(img_to_anns[i] for i in img_ids if i in img_to_anns))
            else:
                anns = self.dataset["annotations"]
            if len(cat_ids) != 0:
                anns = [a for a in anns if a["category_id"] in cat_ids]
            if len(areaRng) != 0:
                anns = [a for a in anns if areaRng[0] < a["area"] < areaRng[1]]
        if iscrowd is not None:
            return [a["id"] for a in anns if a["iscrowd"] == iscrowd]
        return [a["id"] for a in anns]

    def getCatIds(self, catNms: Any = [], supNms: Any = [], catIds: Any = []) -> list:  # noqa: B006,N802,N803
        """Ids of the categories with the given names, supercategories and ids."""
        nms = catNms if _is_array_like(catNms) else [catNms]
        sups = supNms if _is_array_like(supNms) else [supNms]
        ids = catIds if _is_array_like(catIds) else [catIds]
        if len(nms) == len(sups) == len(ids) == 0 and self._dataset is None:
            return self._data.category_ids().tolist()
        cats = self.dataset.get("categories", [])
        if len(nms):
            cats = [c for c in cats if c["name"] in nms]
        if len(sups):
            cats = [c for c in cats if c["supercategory"] in sups]
        if len(ids):
            cats = [c for c in cats if c["id"] in ids]
        return [c["id"] for c in cats]

    def getImgIds(self, imgIds: Any = [], catIds: Any = []) -> list:  # noqa: B006,N802,N803
        """Ids of the given images that hold every given category."""
        img_ids = imgIds if _is_array_like(imgIds) else [imgIds]
        cat_ids = catIds if _is_array_like(catIds) else [catIds]
        if len(img_ids) == len(cat_ids) == 0:
            if self._index is None and self._dataset is None:
                # From the Rust dataset: no Python view needed. dict keys: first
                # occurrence of each id.
                return list(dict.fromkeys(self._data.image_ids().tolist()))
            return list(self.imgs.keys())
        ids = set(img_ids)
        for i, cat_id in enumerate(cat_ids):
            if i == 0 and len(ids) == 0:
                ids = set(self.catToImgs[cat_id])
            else:
                ids &= set(self.catToImgs[cat_id])
        return list(ids)

    def _load(self, table: dict, ids: Any) -> list:
        if _is_array_like(ids):
            return [table[i] for i in ids]
        if isinstance(ids, (int, np.integer)):
            return [table[ids]]
        return []

    def loadAnns(self, ids: Any = []) -> list:  # noqa: B006,N802
        return self._load(self.anns, ids)

    def loadCats(self, ids: Any = []) -> list:  # noqa: B006,N802
        return self._load(self.cats, ids)

    def loadImgs(self, ids: Any = []) -> list:  # noqa: B006,N802
        return self._load(self.imgs, ids)

    def loadRes(self, resFile: Any) -> COCO:  # noqa: N802,N803
        """Loads bbox detection results against this ground truth.

        Args:
            resFile (str | os.PathLike | list[dict] | ndarray[N, 7]): a JSON file
                or list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
                "score"}`` records, or rows ``(image_id, x, y, w, h, score,
                category_id)``.

        Returns:
            COCO: the results, with ids ``1..N`` in input order, ``area = w * h``
            and ``iscrowd = 0``.
        """
        print("Loading and preparing results...")
        tic = time.time()
        if isinstance(resFile, (str, os.PathLike)):
            data, source = _read(resFile)
            rust = _core.coco_parse_results(data, self._data, source)
        elif isinstance(resFile, np.ndarray):
            rust = self._results_from_array(resFile)
        elif isinstance(resFile, list):
            payload = _to_json(resFile, "COCO.loadRes", "resFile", "<list>", "results")
            rust = _core.coco_parse_results(payload, self._data, "<list>")
        else:
            raise TypeError(
                "COCO.loadRes(): argument 'resFile': expected a path, a list of dicts or an [N, 7] array, "
                f"got {type(resFile).__name__}"
            )
        res = COCO._from_rust(rust, results_of=self)
        print(f"DONE (t={time.time() - tic:0.2f}s)")
        return res

    def _results_from_array(self, data: np.ndarray) -> Any:
        if data.ndim != 2 or data.shape[1] != 7:
            raise ValueError(f"COCO.loadRes(): argument 'resFile': expected an [N, 7] array, got shape {data.shape}")
        if data.dtype.kind not in "fiu":
            raise TypeError(f"COCO.loadRes(): argument 'resFile': expected a numeric array, got dtype {data.dtype}")
        # pycocotools multiplies w * h in the array's own precision.
        area = (data[:, 3] * data[:, 4]).astype(np.float64)
        return _core.coco_results_from_arrays(
            self._data,
            np.ascontiguousarray(data[:, 0].astype(np.int64)),
            np.ascontiguousarray(data[:, 6].astype(np.int64)),
            np.ascontiguousarray(data[:, 1:5], dtype=np.float64),
            np.ascontiguousarray(data[:, 5], dtype=np.float64),
            np.ascontiguousarray(area),
            "<ndarray>",
        )

    def loadNumpyAnnotations(self, data: np.ndarray) -> list:  # noqa: N802
        """Rows ``(image_id, x, y, w, h, score, category_id)`` as result dicts."""
        return [
            {"image_id": int(r[0]), "bbox": [r[1], r[2], r[3], r[4]], "score": r[5], "category_id": int(r[6])}
            for r in data
        ]


class Params:
    """Evaluation parameters, pycocotools' ``Params`` for bbox.

    Attributes:
        imgIds, catIds: ids to evaluate (default: all of the ground truth).
        iouThrs (ndarray[T]): ``0.5:0.05:0.95``. recThrs (ndarray[R]): ``0:0.01:1``.
        maxDets: ``[1, 10, 100]``. areaRng: ``[[0, 1e10], [0, 32**2], [32**2,
        96**2], [96**2, 1e10]]`` with labels ``areaRngLbl``. useCats: 1.
    """

    def __init__(self, iouType: str = "segm") -> None:  # noqa: N803
        if iouType != "bbox":
            raise ValueError(
                f"COCOeval(): argument 'iouType': expected 'bbox' (the only type ferrops evaluates), got {iouType!r}"
            )
        self.setDetParams()
        self.iouType = iouType
        self.useSegm = None

    def setDetParams(self) -> None:  # noqa: N802
        self.imgIds: list = []
        self.catIds: list = []
        # linspace, not arange: arange's points drift above the decimal values.
        self.iouThrs = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
        self.recThrs = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
        self.maxDets = [1, 10, 100]
        self.areaRng = [[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]]
        self.areaRngLbl = ["all", "small", "medium", "large"]
        self.useCats = 1


def _snapshot(p: Params) -> Params:
    """A copy of the parameters evaluate() ran with. pycocotools deep-copies; the
    values are immutable numbers, so copying the containers is enough (and far
    cheaper than deep-copying thousands of NumPy scalars)."""
    q = copy.copy(p)
    for name, value in vars(p).items():
        if isinstance(value, np.ndarray):
            setattr(q, name, value.copy())
        elif isinstance(value, list):
            setattr(q, name, [list(v) if isinstance(v, list) else copy.deepcopy(v) if isinstance(v, dict) else v for v in value])
    return q


def _int_ids(name: str, ids: Any) -> np.ndarray:
    array = np.asarray(ids)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise TypeError(f"COCOeval.evaluate(): argument 'params.{name}': expected a list of integer ids, got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array, dtype=np.int64)


class EvalImgs(Sequence):
    """pycocotools' ``COCOeval.evalImgs``, built entry by entry on access.

    ``K * A * I`` entries, category-major, then area range, then image: ``None``
    where the (category, image) pair has neither ground truth nor detections,
    otherwise a dict with ``image_id``, ``category_id``, ``aRng``, ``maxDet``,
    ``dtIds``, ``gtIds`` (matching order: not ignored first), ``dtMatches``
    (float64 [T, D]), ``gtMatches`` (float64 [T, G]), ``dtScores``,
    ``gtIgnore`` (int64 [G]; float64 when G is 0, as NumPy makes it from an
    empty list) and ``dtIgnore`` (bool [T, D]). Each read recomputes the entry's
    matching in Rust; iteration computes entries in parallel batches.
    """

    _BATCH = 4096

    def __init__(self, evaluation: Any, img_ids: list, cat_ids: list, area_rngs: list, max_det: Any) -> None:
        self._evaluation = evaluation
        self._img_ids = img_ids
        self._cat_ids = cat_ids
        self._area_rngs = area_rngs
        self._max_det = max_det

    def __len__(self) -> int:
        return len(self._evaluation)

    def _entries(self, start: int, stop: int) -> list:
        num_images, num_areas = len(self._img_ids), len(self._area_rngs)
        out: list = []
        for flat, arrays in enumerate(self._evaluation.entries(start, stop), start):
            if arrays is None:
                out.append(None)
                continue
            k, rest = divmod(flat, num_areas * num_images)
            a, i = divmod(rest, num_images)
            dt_ids, gt_ids, dt_matches, gt_matches, dt_scores, gt_ignore, dt_ignore = arrays
            out.append(
                {
                    "image_id": self._img_ids[i],
                    "category_id": self._cat_ids[k],
                    "aRng": self._area_rngs[a],
                    "maxDet": self._max_det,
                    "dtIds": dt_ids,
                    "gtIds": gt_ids,
                    "dtMatches": dt_matches,
                    "gtMatches": gt_matches,
                    "dtScores": dt_scores,
                    "gtIgnore": gt_ignore if len(gt_ids) else np.zeros(0),
                    "dtIgnore": dt_ignore,
                }
            )
        return out

    def __getitem__(self, index: Any) -> Any:
        n = len(self)
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step == 1:
                return self._entries(start, max(start, stop))
            return [self._entries(i, i + 1)[0] for i in range(start, stop, step)]
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(
                f"COCOeval.evalImgs[]: argument 'index': expected an integer or a slice, got {type(index).__name__}"
            ) from None
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"COCOeval.evalImgs[]: argument 'index': expected an index in [-{n}, {n}), got {index}")
        return self._entries(i, i + 1)[0]

    def __iter__(self) -> Iterator:
        n = len(self)
        for start in range(0, n, self._BATCH):
            yield from self._entries(start, min(start + self._BATCH, n))

    def __repr__(self) -> str:
        return f"<ferrops.coco.EvalImgs: {len(self)} entries, computed on access>"


class Ious(Mapping):
    """pycocotools' ``COCOeval.ious``: ``(imgId, catId) -> ious``, computed on access.

    Keys are every evaluated image with every evaluated category (``-1`` with
    ``useCats=0``), image-major as pycocotools builds them. A value is the
    float64 ``[D, G]`` IoU matrix of the pair's detections (best score first, at
    most ``maxDets[-1]``) and ground truth (file order), Fortran-ordered as
    pycocotools returns it, or ``[]`` where either side is empty.
    """

    def __init__(self, evaluation: Any, img_ids: list, cat_ids: list) -> None:
        self._evaluation = evaluation
        self._img_ids = img_ids
        self._cat_ids = cat_ids
        self._positions: tuple[dict, dict] | None = None

    def __len__(self) -> int:
        return len(self._img_ids) * len(self._cat_ids)

    def __iter__(self) -> Iterator:
        return ((img_id, cat_id) for img_id in self._img_ids for cat_id in self._cat_ids)

    def __getitem__(self, key: Any) -> Any:
        if self._positions is None:
            self._positions = ({i: n for n, i in enumerate(self._img_ids)}, {c: n for n, c in enumerate(self._cat_ids)})
        images, categories = self._positions
        try:
            img_id, cat_id = key
            i, k = images[img_id], categories[cat_id]
        except (TypeError, ValueError, KeyError):
            raise KeyError(key) from None
        ious = self._evaluation.unit_ious(k * len(self._img_ids) + i)
        return [] if ious is None else np.asfortranarray(ious)

    def __repr__(self) -> str:
        return f"<ferrops.coco.Ious: {len(self)} (imgId, catId) pairs, computed on access>"


class COCOeval:
    """pycocotools' ``COCOeval`` for ``iouType="bbox"``, computed in Rust.

    Args:
        cocoGt (COCO): ground truth. cocoDt (COCO): detections (``cocoGt.loadRes``).
        iouType (str): must be "bbox" (pycocotools' default "segm" is not supported).

    After ``evaluate()`` and ``accumulate()``, ``eval`` holds ``precision``
    (ndarray[T, R, K, A, M]), ``recall`` (ndarray[T, K, A, M]) and ``scores``
    (ndarray[T, R, K, A, M]), -1 where a setting has no ground truth;
    ``summarize()`` prints the 12 lines and fills ``stats`` (ndarray[12]).
    """

    def __init__(self, cocoGt: COCO | None = None, cocoDt: COCO | None = None, iouType: str = "segm") -> None:  # noqa: N803
        for name, value in (("cocoGt", cocoGt), ("cocoDt", cocoDt)):
            if value is not None and not isinstance(value, COCO):
                raise TypeError(f"COCOeval(): argument '{name}': expected a ferrops.coco.COCO, got {type(value).__name__}")
        self.cocoGt = cocoGt
        self.cocoDt = cocoDt
        self.params = Params(iouType=iouType)
        self.evalImgs: Any = []
        self.ious: Any = {}
        self._evaluation: Any = None
        self.eval: dict = {}
        self._paramsEval: Any = {}
        self.stats: Any = []
        if cocoGt is not None:
            self.params.imgIds = sorted(cocoGt.getImgIds())
            self.params.catIds = sorted(cocoGt.getCatIds())

    def evaluate(self) -> None:
        """Matches detections to ground truth per image and category (Rust, threaded)."""
        tic = time.time()
        print("Running per image evaluation...")
        p = self.params
        if p.useSegm is not None:
            raise ValueError(f"COCOeval.evaluate(): argument 'params.useSegm': expected None (bbox only), got {p.useSegm!r}")
        if p.iouType != "bbox":
            raise ValueError(f"COCOeval.evaluate(): argument 'params.iouType': expected 'bbox', got {p.iouType!r}")
        if self.cocoGt is None or self.cocoDt is None:
            raise ValueError("COCOeval.evaluate(): arguments 'cocoGt' and 'cocoDt': expected COCO datasets, got None")
        print(f"Evaluate annotation type *{p.iouType}*")
        p.imgIds = list(np.unique(p.imgIds))
        if p.useCats:
            p.catIds = list(np.unique(p.catIds))
        p.maxDets = sorted(p.maxDets)
        if len(p.maxDets) == 0 or any(int(m) != m or m < 1 for m in p.maxDets):
            raise ValueError(f"COCOeval.evaluate(): argument 'params.maxDets': expected positive integers, got {p.maxDets}")
        area_rngs = np.asarray(p.areaRng, dtype=np.float64).reshape(-1, 2) if len(p.areaRng) else np.zeros((0, 2))
        iou_thrs = np.ascontiguousarray(np.asarray(p.iouThrs, dtype=np.float64).reshape(-1))
        self.params = p
        self._evaluation = _core.coco_evaluate(
            self.cocoGt._data,
            self.cocoDt._data,
            _int_ids("imgIds", p.imgIds),
            _int_ids("catIds", p.catIds),
            bool(p.useCats),
            iou_thrs,
            np.ascontiguousarray(area_rngs),
            int(p.maxDets[-1]),
        )
        cat_ids = list(p.catIds) if p.useCats else [-1]
        img_ids = list(p.imgIds)
        self.evalImgs = EvalImgs(self._evaluation, img_ids, cat_ids, list(p.areaRng), p.maxDets[-1])
        self.ious = Ious(self._evaluation, img_ids, cat_ids)
        self._paramsEval = _snapshot(self.params)
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
            raise ValueError(
                f"COCOeval.accumulate(): argument 'p.iouThrs': expected the {self._evaluation.num_thresholds} thresholds "
                f"evaluate() ran with, got {T}"
            )
        pe = self._paramsEval
        set_k = set(pe.catIds if pe.useCats else [-1])
        set_a = set(map(tuple, pe.areaRng))
        set_m = set(pe.maxDets)
        set_i = set(pe.imgIds)
        k_list = [n for n, k in enumerate(p.catIds) if k in set_k]
        m_list = [int(m) for m in p.maxDets if m in set_m]
        a_list = [n for n, a in enumerate(map(tuple, p.areaRng)) if a in set_a]
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
            np.ascontiguousarray(np.asarray(p.recThrs, dtype=np.float64).reshape(-1)),
        )
        self.eval = {
            "params": p,
            "counts": [T, R, K, A, M],
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "precision": precision,
            "recall": recall,
            "scores": scores,
        }
        print(f"DONE (t={time.time() - tic:0.2f}s).")

    def _summarize(
        self, ap: int = 1, iouThr: float | None = None, areaRng: str = "all", maxDets: int = 100, category: int | None = None  # noqa: N803
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
