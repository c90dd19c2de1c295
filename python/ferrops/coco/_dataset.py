"""``COCO``: a COCO dataset (ground truth or detection results), parsed in Rust,
with pycocotools' Python views and query API built on first use."""

from __future__ import annotations

import copy
import hashlib
import itertools
import os
import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from .. import _core
from .. import mask as mask_api
from .._errors import type_error, value_error
from ._ids import decode
from ._json import Path, read, to_json

#: A COCO JSON record or dataset: JSON data, typed by its keys only at run time.
Record = dict[str, Any]

#: An id or a collection of ids, as pycocotools' query methods take them (ids
#: are integers or strings).
Ids = int | str | Collection[int | str] | npt.NDArray[Any]


def _is_array_like(obj: object) -> bool:
    return hasattr(obj, "__iter__") and hasattr(obj, "__len__")


def _collection(ids: object) -> Collection[Any]:
    """``ids`` itself when it is a collection (pycocotools' duck test), else ``[ids]``."""
    return cast("Collection[Any]", ids) if _is_array_like(ids) else [ids]


def _attach_keypoints(annotations: list[Record], columns: dict[str, np.ndarray]) -> None:
    """Each result's ``keypoints`` list, where it has one (CSR columns of the Rust dataset)."""
    values = columns["keypoints_values"].tolist()
    ends = columns["keypoints_ends"].tolist()
    for j, (annotation, present) in enumerate(zip(annotations, columns["keypoints_present"].tolist())):
        if present:
            annotation["keypoints"] = values[ends[j - 1] if j else 0 : ends[j]]


class COCO:
    """A COCO dataset (ground truth or detections), pycocotools' ``COCO``.

    Args:
        annotation_file (str | os.PathLike | dict | None): a COCO JSON file, or
            the already loaded dict; ``None`` for an empty dataset (fill
            ``dataset`` and call ``createIndex()``, as with pycocotools).
    """

    def __init__(self, annotation_file: Path | Record | None = None) -> None:
        self._dataset: Record | None = None
        self._path: str | None = None
        self._results_of: COCO | None = None
        self._index: dict[str, dict[Any, Any]] | None = None
        self._rust: _core.CocoData | None = None
        # For a dataset given as a dict: the digest of the JSON ``_rust`` was
        # parsed from (see ``_evaluated_data``).
        self._parsed_digest: bytes | None = None
        # loadRes of a list (or file): its records, whose segmentations the view
        # shows as given.
        self._result_records: list[Record] | None = None
        self._result_path: str | None = None
        if annotation_file is None:
            self._dataset = {}
        elif isinstance(annotation_file, dict):
            self._dataset = annotation_file
        elif isinstance(annotation_file, (str, os.PathLike)):
            print("loading annotations into memory...")
            tic = time.time()
            data, self._path = read(annotation_file)
            self._rust = _core.coco_parse_ground_truth(data, self._path)
            print(f"Done (t={time.time() - tic:0.2f}s)")
        else:
            raise type_error("COCO", "annotation_file", "a path, a dict or None", type(annotation_file).__name__)

    @classmethod
    def _from_rust(cls, data: _core.CocoData, results_of: COCO | None = None) -> COCO:
        """A dataset already parsed in Rust; its Python views are built from the columns."""
        coco = cls()
        coco._dataset = None
        coco._rust = data
        coco._results_of = results_of
        return coco

    # -- the Rust dataset and the lazily built Python views -----------------------------

    @property
    def _data(self) -> _core.CocoData:
        """The parsed dataset in Rust, (re)built from ``dataset`` when needed."""
        if self._rust is None:
            assert self._dataset is not None
            self._parse_dict()
            assert self._rust is not None
        return self._rust

    def _parse_dict(self, payload: bytes | None = None) -> None:
        assert self._dataset is not None
        if payload is None:
            payload = to_json(self._dataset, "COCO", "annotation_file", "<dict>", "annotations")
        self._rust = _core.coco_parse_ground_truth(payload, "<dict>")
        self._parsed_digest = hashlib.blake2b(payload, digest_size=16).digest()

    def _built_from_dict(self) -> bool:
        """A dataset given (or assigned) as a dict, not read from a file or loadRes."""
        return self._dataset is not None and self._path is None and self._results_of is None

    def _evaluated_data(self) -> _core.CocoData:
        """The Rust dataset as ``COCOeval.evaluate`` reads it. pycocotools reads
        the annotation dicts themselves at evaluation, so edits made to a
        dataset given as a dict after ``createIndex()`` count (torchmetrics sets
        each detection's ``area`` per iouType that way): such a dataset is parsed
        again when its JSON changed since it was parsed (the converted masks are
        kept when it did not)."""
        if self._rust is not None and self._built_from_dict():
            assert self._dataset is not None
            payload = to_json(self._dataset, "COCO", "annotation_file", "<dict>", "annotations")
            if hashlib.blake2b(payload, digest_size=16).digest() != self._parsed_digest:
                self._parse_dict(payload)
        return self._data

    def _ids(self, codes: np.ndarray) -> list[Any]:
        """The ids (ints, strs) of a column of the Rust dataset."""
        return decode(codes, self._data.id_strings())

    @property
    def dataset(self) -> Record:
        if self._dataset is None:
            if self._path is not None:
                # Read by the Rust reader that accepted the file at load, so the
                # two never disagree (Python's json would differ on bad UTF-8 or
                # deep nesting, with errors that do not name the file).
                data, name = read(self._path)
                self._dataset = _core.coco_load_json(data, name, "COCO", "annotation_file")
            elif self._results_of is not None:
                self._dataset = self._results_dataset()
            else:
                self._dataset = self._ground_truth_dataset()
        return self._dataset

    @dataset.setter
    def dataset(self, value: Record) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"COCO.dataset: expected a dict, got {type(value).__name__}")
        self._dataset = value
        self._path = None
        self._results_of = None
        self._rust = None
        self._parsed_digest = None
        self._index = None

    def _results_dataset(self) -> Record:
        gt = self._results_of
        assert gt is not None
        columns = self._data.columns()
        records = self._result_records
        if records is None and self._result_path is not None:
            # Read by the Rust reader that accepted the file at load.
            data, name = read(self._result_path)
            records = _core.coco_load_json(data, name, "COCO.loadRes", "resFile")
        given = [r.get("segmentation") for r in records] if records is not None else itertools.repeat(None)
        annotations = []
        for i, (image_id, category_id, (x, y, w, h), score, area, segmentation) in enumerate(
            zip(
                self._ids(columns["image_id"]),
                self._ids(columns["category_id"]),
                columns["bbox"].tolist(),
                columns["score"].tolist(),
                columns["area"].tolist(),
                given,
            )
        ):
            if segmentation is None:  # loadRes writes the box's polygon
                segmentation = [[x, y, x, y + h, x + w, y + h, x + w, y]]
            annotations.append(
                {
                    "image_id": image_id,
                    "bbox": [x, y, w, h],
                    "score": score,
                    "category_id": category_id,
                    "segmentation": segmentation,
                    "area": area,
                    "id": i + 1,
                    "iscrowd": 0,
                }
            )
        if "keypoints_values" in columns:
            _attach_keypoints(annotations, columns)
        return {
            "info": copy.deepcopy(gt.dataset.get("info", {})),
            "images": list(gt.dataset.get("images", [])),
            "categories": copy.deepcopy(gt.dataset.get("categories", [])),
            "annotations": annotations,
        }

    def _ground_truth_dataset(self) -> Record:
        columns = self._data.columns()
        annotations = [
            {
                "id": i,
                "image_id": image_id,
                "category_id": category_id,
                **({"bbox": bbox} if bbox[0] == bbox[0] else {}),  # NaN: the record had no box
                "area": area,
                "iscrowd": int(crowd),
            }
            for i, image_id, category_id, bbox, area, crowd in zip(
                self._ids(columns["id"]),
                self._ids(columns["image_id"]),
                self._ids(columns["category_id"]),
                columns["bbox"].tolist(),
                columns["area"].tolist(),
                columns["iscrowd"].tolist(),
            )
        ]
        return {
            "images": [{"id": i} for i in self._ids(self._data.image_ids())],
            "categories": [{"id": c} for c in self._ids(self._data.category_ids())],
            "annotations": annotations,
        }

    def createIndex(self) -> None:  # noqa: N802 (pycocotools' name)
        """Rebuilds the index; a ``dataset`` given as a dict is parsed again on
        first use (``evaluate()`` reads it as it stands then)."""
        print("creating index...")
        if self._built_from_dict():
            self._rust = None
            self._parsed_digest = None
        self._index = None
        print("index created!")

    def _get_index(self) -> dict[str, dict[Any, Any]]:
        if self._index is None:
            anns: dict[Any, Record] = {}
            cats: dict[Any, Record] = {}
            imgs: dict[Any, Record] = {}
            img_to_anns: defaultdict[Any, list[Record]] = defaultdict(list)
            cat_to_imgs: defaultdict[Any, list[Any]] = defaultdict(list)
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

    def getAnnIds(
        self, imgIds: Ids = [], catIds: Ids = [], areaRng: Collection[float] = [], iscrowd: int | None = None
    ) -> list[Any]:  # noqa: N802,N803
        """Ids of the annotations on the given images, of the given categories,
        with area strictly inside ``areaRng``, of the given crowd flag."""
        img_ids, cat_ids = _collection(imgIds), _collection(catIds)
        area_rng = cast("Sequence[float]", areaRng)
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
                anns = [a for a in anns if area_rng[0] < a["area"] < area_rng[1]]
        if iscrowd is not None:
            return [a["id"] for a in anns if a["iscrowd"] == iscrowd]
        return [a["id"] for a in anns]

    def getCatIds(
        self, catNms: str | Collection[str] = [], supNms: str | Collection[str] = [], catIds: Ids = []
    ) -> list[Any]:  # noqa: N802,N803
        """Ids of the categories with the given names, supercategories and ids."""
        nms, sups, ids = _collection(catNms), _collection(supNms), _collection(catIds)
        if len(nms) == len(sups) == len(ids) == 0 and self._dataset is None:
            return self._ids(self._data.category_ids())
        cats = self.dataset.get("categories", [])
        if len(nms):
            cats = [c for c in cats if c["name"] in nms]
        if len(sups):
            cats = [c for c in cats if c["supercategory"] in sups]
        if len(ids):
            cats = [c for c in cats if c["id"] in ids]
        return [c["id"] for c in cats]

    def getImgIds(self, imgIds: Ids = [], catIds: Ids = []) -> list[Any]:  # noqa: N802,N803
        """Ids of the given images that hold every given category."""
        img_ids, cat_ids = _collection(imgIds), _collection(catIds)
        if len(img_ids) == len(cat_ids) == 0:
            if self._index is None and self._dataset is None:
                # From the Rust dataset: no Python view needed. dict keys: first
                # occurrence of each id.
                return list(dict.fromkeys(self._ids(self._data.image_ids())))
            return list(self.imgs.keys())
        ids = set(img_ids)
        for i, cat_id in enumerate(cat_ids):
            if i == 0 and len(ids) == 0:
                ids = set(self.catToImgs[cat_id])
            else:
                ids &= set(self.catToImgs[cat_id])
        return list(ids)

    def _load(self, table: dict[Any, Record], ids: Ids) -> list[Record]:
        if _is_array_like(ids):
            return [table[i] for i in _collection(ids)]
        if isinstance(ids, (int, np.integer)):
            return [table[ids]]
        return []

    def loadAnns(self, ids: Ids = []) -> list[Record]:  # noqa: N802
        return self._load(self.anns, ids)

    def loadCats(self, ids: Ids = []) -> list[Record]:  # noqa: N802
        return self._load(self.cats, ids)

    def loadImgs(self, ids: Ids = []) -> list[Record]:  # noqa: N802
        return self._load(self.imgs, ids)

    def loadRes(self, resFile: Path | list[Record] | np.ndarray) -> COCO:  # noqa: N802,N803
        """Loads detection results (boxes or masks) against this ground truth.

        Args:
            resFile (str | os.PathLike | list[dict] | ndarray[N, 7]): a JSON file
                or list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
                "score"}`` records (a ``segmentation`` too, or instead of the
                box: an RLE ``{"size": [h, w], "counts": str | bytes}``), or rows
                ``(image_id, x, y, w, h, score, category_id)``.

        Returns:
            COCO: the results, with ids ``1..N`` in input order and ``iscrowd =
            0``. As in pycocotools the first record decides: with a box, ``area
            = w * h`` (a missing segmentation is the box's polygon); without, the
            mask's area, and its box where none is given.
        """
        print("Loading and preparing results...")
        tic = time.time()
        if isinstance(resFile, (str, os.PathLike)):
            data, source = read(resFile)
            rust = _core.coco_parse_results(data, self._data, source)
        elif isinstance(resFile, np.ndarray):
            rust = self._results_from_array(resFile)
        elif isinstance(resFile, list):
            payload = to_json(resFile, "COCO.loadRes", "resFile", "<list>", "results")
            rust = _core.coco_parse_results(payload, self._data, "<list>")
        else:
            raise type_error(
                "COCO.loadRes", "resFile", "a path, a list of dicts or an [N, 7] array", type(resFile).__name__
            )
        res = COCO._from_rust(rust, results_of=self)
        if isinstance(resFile, list):
            res._result_records = resFile
        elif isinstance(resFile, (str, os.PathLike)):
            res._result_path = os.fspath(resFile)
        print(f"DONE (t={time.time() - tic:0.2f}s)")
        return res

    def _results_from_array(self, data: np.ndarray) -> _core.CocoData:
        if data.ndim != 2 or data.shape[1] != 7:
            raise value_error("COCO.loadRes", "resFile", "an [N, 7] array", f"shape {data.shape}")
        if data.dtype.kind not in "fiu":
            raise type_error("COCO.loadRes", "resFile", "a numeric array", f"dtype {data.dtype}")
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

    def annToRLE(self, ann: Record) -> mask_api.RLE:  # noqa: N802
        """pycocotools' ``annToRLE``: the annotation's mask as a compressed RLE.

        Polygons (the parts merged) and uncompressed RLEs are converted for the
        image's ``height`` and ``width``; a compressed RLE is returned as it is.
        An uncompressed RLE of another size than the image's is a ``ValueError``.
        """
        image = self.imgs[ann["image_id"]]
        h, w = image["height"], image["width"]
        segm = ann["segmentation"]
        if isinstance(segm, list):
            return mask_api.merge(mask_api.frPyObjects(segm, h, w))
        if isinstance(segm["counts"], list):
            return cast(mask_api.RLE, mask_api.frPyObjects(segm, h, w))
        return cast(mask_api.RLE, segm)

    def annToMask(self, ann: Record) -> npt.NDArray[np.uint8]:  # noqa: N802
        """pycocotools' ``annToMask``: the annotation's mask, ndarray[H, W] uint8."""
        return mask_api.decode(self.annToRLE(ann))

    def loadNumpyAnnotations(self, data: np.ndarray) -> list[Record]:  # noqa: N802
        """Rows ``(image_id, x, y, w, h, score, category_id)`` as result dicts."""
        return [
            {"image_id": int(r[0]), "bbox": [r[1], r[2], r[3], r[4]], "score": r[5], "category_id": int(r[6])}
            for r in data
        ]

    # -- pickling (DataLoader workers, torch.distributed.all_gather_object) ---------------
    # The Rust dataset is not pickled: the state is what it was parsed from (the
    # file's bytes, the dataset dict, or the results' records and their ground
    # truth), and unpickling parses it again with the same reader, so the copy
    # evaluates exactly as the original. The index is rebuilt on first use.

    def __getstate__(self) -> dict[str, Any]:
        if self._results_of is not None:
            return {"results_of": self._results_of, **self._results_state()}
        if self._dataset is None and self._path is not None:
            data, source = read(self._path)
            return {"json": data, "source": source}
        return {"dataset": self.dataset}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
        if "results_of" in state:
            gt: COCO = state["results_of"]
            records, source = state["records"], "<unpickled results>"
            self._dataset = None
            self._results_of = gt
            if state["as"] == "arrays":
                ids = np.array([(r["image_id"], r["category_id"]) for r in records], dtype=np.int64).reshape(-1, 2)
                self._rust = _core.coco_results_from_arrays(
                    gt._data,
                    np.ascontiguousarray(ids[:, 0]),
                    np.ascontiguousarray(ids[:, 1]),
                    np.array([r["bbox"] for r in records], dtype=np.float64).reshape(-1, 4),
                    np.array([r["score"] for r in records], dtype=np.float64),
                    np.array([r["area"] for r in records], dtype=np.float64),
                    source,
                )
            else:
                payload = to_json(records, "COCO.loadRes", "resFile", source, "results")
                self._rust = _core.coco_parse_results(payload, gt._data, source)
                if state["as"] in ("given", "masks"):  # the view reads mask results' records
                    self._result_records = records
        elif "json" in state:
            data, source = state["json"], state["source"]
            self._dataset = None
            self._rust = _core.coco_parse_ground_truth(data, source)
            if os.path.isfile(source):
                self._path = source  # `dataset` is read from it when asked for, as at load
            else:  # unpickled on a machine without the file: the dict from the same bytes
                self._dataset = _core.coco_load_json(data, source, "COCO", "annotation_file")
        else:
            self._dataset = state["dataset"]

    def _results_state(self) -> dict[str, Any]:
        """Records that load into these results again, and how to load them:
        "given" (the list loadRes had), "arrays" (box results with integer ids,
        each record's area kept: an ``[N, 7]`` float32 array's areas were
        computed in float32, which loading a list would redo in float64),
        "boxes" (box results whose records carry masks) or "masks" (mask
        results: loaded without their boxes and areas, which loadRes computes
        from the masks again)."""
        if self._result_records is not None:
            return {"records": self._result_records, "as": "given"}
        records = self.dataset["annotations"]
        if not self._data.leads_with_segmentation:
            ints = all(type(r["image_id"]) is int and type(r["category_id"]) is int for r in records)
            return {"records": records, "as": "arrays" if ints else "boxes"}
        if all(r["area"] == r["bbox"][2] * r["bbox"][3] for r in records):
            return {"records": records, "as": "boxes"}
        masks = [{k: r[k] for k in ("image_id", "category_id", "score", "segmentation")} for r in records]
        return {"records": masks, "as": "masks"}
