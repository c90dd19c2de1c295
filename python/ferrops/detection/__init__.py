"""Detection metrics (SPEC section 2), the family's public module: VOC average
precision, a torchmetrics-style ``MeanAveragePrecision``, and results of a COCO
evaluation (precision-recall curves, a plot helper, AP per category).

The COCO evaluation itself is :mod:`ferrops.coco` (a drop-in for pycocotools);
``MeanAveragePrecision`` feeds it from tensors, so its numbers are torchmetrics'
(which runs pycocotools) bit for bit before the final cast to float32.

One name per benchmark in every layer (CONTRIBUTING.md): COCO is ``coco``
(``ferrops.coco``, core ``detection::coco``, bindings ``coco_*``), VOC is ``voc``
(``_voc.py`` here, core ``detection::voc``, bindings ``voc_*``).
"""

from __future__ import annotations

from ._mean_average_precision import MeanAveragePrecision
from ._pr_curves import per_category_ap, plot_pr_curves, pr_curves
from ._rotated_eval import evaluate_rotated
from ._voc import voc_ap, voc_eval

__all__ = ["MeanAveragePrecision", "per_category_ap", "plot_pr_curves", "pr_curves", "voc_ap", "voc_eval"]
__all__ += ["evaluate_rotated"]

# Public names report this module, where users import them from (reprs, pickles,
# help()), not the private file that defines them.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
