"""Array conversion the detection modules share.

``host_array`` is general (any family that keeps an input's own dtype needs it)
and belongs in ``ferrops._dispatch``; it lives here until it moves there.
"""

from __future__ import annotations

import numpy as np


def host_array(x: object) -> np.ndarray:
    """``x`` as a NumPy array of its own dtype: a tensor detached and copied to
    the host, anything else through ``np.asarray`` (no copy when it is an array)."""
    detach = getattr(x, "detach", None)
    if detach is not None:
        return detach().cpu().numpy()
    return np.asarray(x)
