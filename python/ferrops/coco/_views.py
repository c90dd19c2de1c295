"""pycocotools' ``COCOeval.evalImgs`` and ``COCOeval.ious``, as read-only views
computed in Rust on access instead of held in memory."""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import numpy as np

from .. import _core

#: One ``evalImgs`` entry: pycocotools' dict (ids, matches, scores, ignore flags).
EvalImg = dict[str, Any]


class EvalImgs(Sequence["EvalImg | None"]):
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

    def __init__(
        self,
        evaluation: _core.CocoEvaluation,
        img_ids: list[int],
        cat_ids: list[int],
        area_rngs: list[list[float]],
        max_det: int,
    ) -> None:
        self._evaluation = evaluation
        self._img_ids = img_ids
        self._cat_ids = cat_ids
        self._area_rngs = area_rngs
        self._max_det = max_det

    def __len__(self) -> int:
        return len(self._evaluation)

    def _entries(self, start: int, stop: int) -> list[EvalImg | None]:
        num_images, num_areas = len(self._img_ids), len(self._area_rngs)
        out: list[EvalImg | None] = []
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

    @overload
    def __getitem__(self, index: int) -> EvalImg | None: ...

    @overload
    def __getitem__(self, index: slice) -> list[EvalImg | None]: ...

    def __getitem__(self, index: int | slice) -> EvalImg | None | list[EvalImg | None]:
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

    def __iter__(self) -> Iterator[EvalImg | None]:
        n = len(self)
        for start in range(0, n, self._BATCH):
            yield from self._entries(start, min(start + self._BATCH, n))

    def __repr__(self) -> str:
        return f"<ferrops.coco.EvalImgs: {len(self)} entries, computed on access>"


class Ious(Mapping[tuple[int, int], "np.ndarray | list[Any]"]):
    """pycocotools' ``COCOeval.ious``: ``(imgId, catId) -> ious``, computed on access.

    Keys are every evaluated image with every evaluated category (``-1`` with
    ``useCats=0``), image-major as pycocotools builds them. A value is the
    float64 ``[D, G]`` IoU matrix of the pair's detections (best score first, at
    most ``maxDets[-1]``) and ground truth (file order), Fortran-ordered as
    pycocotools returns it, or ``[]`` where either side is empty.
    """

    def __init__(self, evaluation: _core.CocoEvaluation, img_ids: list[int], cat_ids: list[int]) -> None:
        self._evaluation = evaluation
        self._img_ids = img_ids
        self._cat_ids = cat_ids
        self._positions: tuple[dict[int, int], dict[int, int]] | None = None

    def __len__(self) -> int:
        return len(self._img_ids) * len(self._cat_ids)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((img_id, cat_id) for img_id in self._img_ids for cat_id in self._cat_ids)

    def __getitem__(self, key: tuple[int, int]) -> np.ndarray | list[Any]:
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
