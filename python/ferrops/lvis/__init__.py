"""LVIS evaluation: drop-in ``LVIS``, ``LVISResults`` and ``LVISEval`` (SPEC DET-LVIS).

``ferrops.lvis`` follows lvis-api (the ``lvis`` package) for ``iou_type="segm"``
(its default: mask IoU) and ``"bbox"``: same constructors, ``params``, ``run()``, ``evaluate()``, ``accumulate()``,
``summarize()``, ``print_results()`` (same lines), ``get_results()``,
``results`` and ``eval``, and the same numbers bit for bit: the federated rules
(a detection of a category neither annotated on its image nor in the image's
``neg_category_ids`` is left out; an unmatched detection of a category in
``not_exhaustive_category_ids`` is ignored), annotations with area outside
``(0, inf)`` left out, the rare/common/frequent groups (APr, APc, APf), the
per-image cap of ``LVISResults`` (``max_dets=300``), the precision and recall
arrays. For segm, each record's ``segmentation`` (polygons, uncompressed or
compressed RLE with str or bytes counts; a box result without one: its box's
polygon) becomes a mask on its image as lvis-api's ``ann_to_rle`` makes it, and
masks are compared without crowd, as lvis-api does; mask results take the
mask's area (and box, where they have none). It works under NumPy 2 (lvis-api
does not import there).

Fixed AP (Dave et al. 2021, "Evaluating Large-Vocabulary Object Detectors: The
Devil is in the Details"): the top 10,000 detections per category over the whole
set, no per-image cap::

    dt = LVISResults(gt, "results.json", max_dets=-1, max_dets_per_cat=10000)
    ev = LVISEval(gt, dt, "bbox")
    ev.params.max_dets = -1  # the label the paper's script prints
    ev.run()

The JSON is parsed in Rust and evaluated by the COCO evaluation's matching and
accumulation, across threads. Differences from lvis-api, all on input it would
reject, mishandle or that costs memory:

* bad input raises ``ValueError`` naming the file and the first bad record: a
  category without ``frequency`` (or not "r", "c", "f"), an image without
  ``neg_category_ids`` or ``not_exhaustive_category_ids`` (raised by
  ``LVISEval``), a result for an image or a category absent from the ground
  truth (lvis-api asserts on the image and drops the category silently);
* ids are integers; repeated ground-truth annotation ids, repeated
  ``params.cat_ids``, ``params.use_cats = 0`` (lvis-api then evaluates nothing)
  and an area range with an infinite upper end are refused;
* a segmentation that does not convert (a polygon of fewer than 3 points, bad
  RLE characters, an RLE of another size than its image) is a ``ValueError``
  naming the file and the record, for every record lvis-api converts; mask
  results given as polygons or uncompressed RLE are accepted (lvis-api's
  ``LVISResults`` takes compressed RLE only);
* ``eval`` has no ``dt_pointers`` and ``eval_imgs`` / ``ious`` stay empty
  (lvis-api keeps one dict per (category, area, image));
* an empty results list gives an empty result set (lvis-api fails on it); the
  results' ``dataset`` holds lvis-api's keys (``image_id``, ``category_id``,
  ``bbox``, ``score``, ``segmentation``, ``area``, ``id``), not extra keys of the
  input records.
"""

from __future__ import annotations

from ._dataset import LVIS, LVISResults
from ._eval import LVISEval, Params

__all__ = ["LVIS", "LVISEval", "LVISResults", "Params"]

# Public names report this module, where users import them from.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
