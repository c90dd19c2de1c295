"""Analyses of a COCO evaluation (SPEC DET-ANALYSIS, DET-TIDE).

* :func:`per_category` / :func:`per_category_table`: pycocotools' summary values
  per category (AP, AP50, AP75, AP per area, AR), as data and as text;
* :func:`precision_recall_f1`: precision, recall and F1 per category at a score
  threshold, and the F1-maximising threshold;
* :func:`confusion_matrix` / :func:`confusion_matrix_table`: detections against
  ground truth across classes, plus background;
* :func:`tide`: the TIDE error breakdown (classification, localisation, both,
  duplicate, background, missed; dAP of fixing each), equal to ``tidecv``.

The first two read an evaluated ``COCOeval`` and work for every iouType it
evaluates; the confusion matrix and TIDE match boxes or masks across classes
themselves (``iou_type="segm"``, ``mode="mask"``).
"""

from __future__ import annotations

from ._analysis import confusion_matrix, confusion_matrix_table, per_category, per_category_table, precision_recall_f1
from ._tide import TideResult, tide

__all__ = [
    "TideResult",
    "confusion_matrix",
    "confusion_matrix_table",
    "per_category",
    "per_category_table",
    "precision_recall_f1",
    "tide",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
