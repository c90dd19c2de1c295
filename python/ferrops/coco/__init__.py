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
* only ``iouType="bbox"``;
* ids are integers or strings (as in pycocotools, SPEC DET-COCO-IDS), but
  integer ids below ``-2**62`` are refused (string ids are coded there), and
  ``evaluate()`` refuses string annotation ids up front (pycocotools fails on the
  first match, storing ids in float arrays);
* one Rust reader judges a file (SPEC DET-COCO-JSON): invalid UTF-8, nesting
  deeper than 128 levels, ``NaN``/``Infinity`` literals or a top level that is
  not an object are a ``ValueError`` naming the file, and ``dataset`` is built
  by that reader (equal to what Python's ``json`` makes of an accepted file).

``evalImgs`` and ``ious`` hold pycocotools' values without pycocotools' memory:
``evalImgs`` is a read-only sequence (``len``, indexing with negative indices
and slices, iteration) whose entries, ``None`` or pycocotools' dict with the
same values and dtypes, are recomputed in Rust from the evaluated units when
read; ``ious`` is a read-only mapping ``(imgId, catId) -> [D, G]`` IoU matrix
(``[]`` where a side is empty), computed on access. ``dtScores`` are Python
floats even where the results file wrote an integer score. ``accumulate()``
reads the Rust results directly, never these views.

The package is split by job: ``_json`` (Python data and files to the parser's
bytes), ``_dataset`` (``COCO``), ``_params`` (``Params``, the iouTypes),
``_views`` (``evalImgs`` and ``ious``), ``_eval`` (``COCOeval``).
"""

from __future__ import annotations

from . import analysis  # noqa: F401 (ferrops.coco.analysis, without a separate import)
from ._dataset import COCO
from ._eval import COCOeval
from ._params import Params
from ._views import EvalImgs, Ious

__all__ = ["COCO", "COCOeval", "EvalImgs", "Ious", "Params"]

# Public names report this module, where users import them from (reprs, pickles,
# help()), not the private file that defines them.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
