"""Instance masks in ``MeanAveragePrecision`` (``iou_type="segm"`` or ``("bbox",
"segm")``), as torchmetrics feeds them to pycocotools: each image's ``[N, H, W]``
masks run-length encoded at ``update()`` and kept compressed, and at
``compute()`` COCO datasets built record by record the way torchmetrics'
``_get_coco_format`` builds them, so the segm evaluation (mask IoU on the RLEs)
sees exactly what pycocotools sees there."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from .. import mask as mask_api
from .._dispatch import host_array
from .._errors import describe, value_error
from ..coco import COCO

IouType = Literal["bbox", "segm"]
#: One image's masks: ``((h, w), compressed counts)`` per instance, torchmetrics' state.
ImageMasks = tuple[tuple[tuple[int, int], bytes], ...]


def check_iou_type(function: str, iou_type: object) -> tuple[IouType, ...]:
    """torchmetrics' rule: a type or a tuple (or list, which torchmetrics also takes)
    of them, each "bbox" or "segm"."""
    types = (iou_type,) if isinstance(iou_type, str) else tuple(iou_type) if isinstance(iou_type, list) else iou_type
    if not isinstance(types, tuple) or not types or any(t not in ("bbox", "segm") for t in types):
        raise value_error(function, "iou_type", "'bbox', 'segm' or a tuple of them", repr(iou_type))
    return types


def encode_masks(function: str, which: str, index: int, masks: npt.ArrayLike, count: int) -> ImageMasks:
    """``[N, H, W]`` boolean masks of one image as their compressed RLEs."""
    array = host_array(function, which, masks)
    if array.ndim != 3 or array.shape[0] != count:
        expected = f"masks of shape [{count}, H, W] (one per label)"
        raise value_error(function, which, expected, f"shape {array.shape} at index {index}")
    if array.dtype not in (np.bool_, np.uint8):
        raise value_error(function, which, "bool masks", f"{describe(array)} at index {index}")
    if count == 0:
        return ()
    # [N, H, W] seen as [H, W, N]: encode() reads each mask column by column, as
    # pycocotools reads np.asfortranarray(mask), whatever the memory order.
    rles = mask_api.encode(array.transpose(1, 2, 0))
    return tuple(((int(r["size"][0]), int(r["size"][1])), bytes(r["counts"])) for r in rles)


def mask_areas(masks: Sequence[ImageMasks]) -> list[npt.NDArray[np.uint32]]:
    """pycocotools' ``area`` of each mask, per image."""
    return [
        np.asarray(mask_api.area([{"size": list(s), "counts": c} for s, c in image]), dtype=np.uint32)
        if image
        else np.zeros(0, dtype=np.uint32)
        for image in masks
    ]


def coco_datasets(
    state: dict[str, list[Any]], iou_types: tuple[IouType, ...], average: Literal["macro", "micro"]
) -> tuple[COCO, COCO]:
    """``(ground truth, detections)`` for the segm evaluation, with torchmetrics'
    records: images without masks left out when boxes are not evaluated too
    (so their detections count nowhere), areas from the masks (a positive
    ``area`` given with the target wins), annotation ids from 1 in image order,
    and one category 0 under micro averaging."""
    micro = average == "micro"
    det_labels = [np.zeros_like(x) if micro else x for x in state["det_labels"]]
    gt_labels = [np.zeros_like(x) if micro else x for x in state["gt_labels"]]
    labels = det_labels + gt_labels
    classes = np.unique(np.concatenate(labels)).tolist() if labels else []
    categories = [{"id": 0, "name": "0"}] if micro else [{"id": c, "name": str(c)} for c in classes]
    with_boxes = "bbox" in iou_types
    gt = _coco_format(gt_labels, state["gt_masks"], state["gt_boxes"] if with_boxes else None, categories)
    dt = _coco_format(det_labels, state["det_masks"], state["det_boxes"] if with_boxes else None, categories)
    for record, crowd, area in zip(
        gt.dataset["annotations"], _flat(state["gt_crowds"], gt), _flat(state["gt_area"], gt)
    ):
        record["iscrowd"] = int(crowd)
        if area > 0:
            record["area"] = area
    for record, score in zip(dt.dataset["annotations"], _flat(state["det_scores"], dt)):
        record["score"] = float(score)
    for coco in (gt, dt):
        coco.createIndex()
    return gt, dt


def _flat(values: list[np.ndarray], coco: COCO) -> list[Any]:
    """One value per record of ``coco`` (its images' values, in image order)."""
    kept = [image["id"] for image in coco.dataset["images"]]
    return [v for i in kept for v in np.asarray(values[i]).reshape(-1).tolist()]


def _coco_format(
    labels: list[np.ndarray],
    masks: list[ImageMasks],
    boxes: list[np.ndarray] | None,
    categories: list[dict[str, Any]],
) -> COCO:
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, (image_labels, image_masks) in enumerate(zip(labels, masks)):
        if not image_masks and boxes is None:
            continue
        image: dict[str, Any] = {"id": image_id}
        if image_masks:
            image["height"], image["width"] = image_masks[0][0]
        images.append(image)
        image_boxes = boxes[image_id].tolist() if boxes is not None else None
        for k, label in enumerate(np.asarray(image_labels).reshape(-1).tolist()):
            size, counts = image_masks[k]
            rle = {"size": list(size), "counts": counts}
            record: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "area": int(mask_api.area(rle)),
                "category_id": label,
                "iscrowd": 0,
                "segmentation": rle,
            }
            # torchmetrics writes no box with "segm" alone; the segm evaluation never
            # reads one, but ferrops' reader wants one, so the mask's box stands in.
            record["bbox"] = image_boxes[k] if image_boxes is not None else mask_api.toBbox(rle).tolist()
            annotations.append(record)
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    return coco
