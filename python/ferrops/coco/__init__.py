"""COCO box, mask and keypoint evaluation: drop-in ``COCO``, ``COCOeval`` and
``mask`` (SPEC DET-COCO, DET-COCO-SEGM, DET-OKS), and analyses of an evaluation
(``analysis``: per-category tables, P/R/F1, confusion matrix, TIDE; SPEC
DET-ANALYSIS, DET-TIDE).

``ferrops.coco.COCO`` and ``ferrops.coco.COCOeval`` follow
``pycocotools.coco.COCO`` and ``pycocotools.cocoeval.COCOeval`` for
``iouType="bbox"``, ``"segm"`` and ``"keypoints"``: same constructor arguments, ``params``, ``evaluate()``,
``accumulate()``, ``summarize()`` (same printed lines), ``stats`` and ``eval``,
and the same numbers bit for bit, pycocotools' quirks included (crowd matching,
inclusive area-range ends, stable score sorts, unreached recall points at 0,
``maxDets`` other than ``[1, 10, 100]``, ``useCats=0``, id subsets, custom
thresholds, a ground truth with id 0 counted as unmatched, repeated annotation
ids resolving to the last record).

The JSON is parsed in Rust and the matching and accumulation run in Rust across
threads; Python only holds parameters. Keypoint OKS follows pycocotools'
``computeOks`` in NumPy's arithmetic order (``setKpParams`` included).
Segmentations are kept as written and turned into run-length masks
(compressed, about 2 bytes a run) on the first segm evaluation, pycocotools'
``annToRLE`` of each record (ground truth that no detection is compared with
is checked but not rasterised); mask IoU intersects runs, never dense masks.
``ferrops.coco.mask`` is ``ferrops.mask``. The Python views of a dataset
(``dataset``, ``anns``, ``imgs``, ``cats``, ``imgToAnns``, ``catToImgs``) are
built on first use.

Differences from pycocotools, all on input it would reject or mishandle:

* bad input raises ``ValueError`` naming the file and the first bad record
  (malformed JSON, a missing key, a non-finite or negative box width/height, a
  non-finite score, a result for an image absent from the ground truth);
* a ground-truth annotation without ``area`` gets the box area and one without
  ``iscrowd`` is not crowd (pycocotools raises ``KeyError``);
* ``loadRes`` of an empty list gives an empty result set;
* segm: a malformed segmentation (runs not summing to the image's pixels, bad
  characters, an RLE ``size`` other than the image's, polygon parts of fewer
  than 3 points or an odd count, NaN) is a ``ValueError`` naming the file and
  the record, raised by ``loadRes`` for mask results and by ``evaluate()`` for
  ground truth (pycocotools crashes, reads out of bounds or gives garbage);
  mask results may also be polygons or uncompressed RLE (pycocotools wants
  compressed RLE), a first part of 4 numbers is read as boxes as in
  pycocotools but works for a list too; ``counts`` may be ``str`` or ``bytes``;
* ids are integers or strings (as in pycocotools, SPEC DET-COCO-IDS), but
  integer ids below ``-2**62`` are refused (string ids are coded there), and
  ``evaluate()`` refuses string annotation ids up front (pycocotools fails on the
  first match, storing ids in float arrays);
* one Rust reader judges a file (SPEC DET-COCO-JSON): invalid UTF-8, nesting
  deeper than 128 levels, ``NaN``/``Infinity`` literals or a top level that is
  not an object are a ``ValueError`` naming the file, and ``dataset`` is built
  by that reader (equal to what Python's ``json`` makes of an accepted file).

``eval["precision"]``, ``["recall"]`` and ``["scores"]`` are pycocotools'
arrays (same shape, dtype and values) as views of category-major buffers.
``evalImgs`` and ``ious`` hold pycocotools' values without pycocotools' memory:
``evalImgs`` is a read-only sequence (``len``, indexing with negative indices
and slices, iteration) whose entries, ``None`` or pycocotools' dict with the
same values and dtypes, are recomputed in Rust from the evaluated units when
read; ``ious`` is a read-only mapping ``(imgId, catId) -> [D, G]`` IoU (or OKS) matrix
(``[]`` where a side is empty), computed on access. ``dtScores`` are Python
floats even where the results file wrote an integer score. ``accumulate()``
reads the Rust results directly, never these views.

The package is split by job: ``_json`` (Python data and files to the parser's
bytes), ``_dataset`` (``COCO``), ``_params`` (``Params``, the iouTypes),
``_views`` (``evalImgs`` and ``ious``), ``_eval`` (``COCOeval``).
"""

from __future__ import annotations

from . import analysis  # noqa: F401 (ferrops.coco.analysis, without a separate import)
from . import mask as mask  # ferrops.mask under pycocotools.mask's path
from ._dataset import COCO
from ._eval import COCOeval
from ._params import Params
from ._views import EvalImgs, Ious

__all__ = ["COCO", "COCOeval", "EvalImgs", "Ious", "Params"]

from ._install import PycocotoolsSwitch, install_as_pycocotools, uninstall_as_pycocotools  # noqa: E402

__all__ += ["PycocotoolsSwitch", "install_as_pycocotools", "uninstall_as_pycocotools"]

# Public names report this module, where users import them from (reprs, pickles,
# help()), not the private file that defines them.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
