"""``ferrops.coco.mask`` is ``ferrops.mask`` (pycocotools.mask's API), under the
path pycocotools users import it from (``from pycocotools import mask``)."""

import sys

from .. import mask as _mask
from ..mask import RLE, area, decode, encode, frPyObjects, iou, mask_iou, merge, toBbox

__all__ = ["RLE", "area", "decode", "encode", "frPyObjects", "iou", "mask_iou", "merge", "toBbox"]

# One module under both names: patching or inspecting one is the other.
sys.modules[__name__] = _mask
