"""Independent host references shared by several test files (scipy only, no jaxcba code)."""

import numpy as np
from scipy import ndimage


def cpsd_scipy(mask, radii):
    """CPSD (Eq. 26) of a bool phase: two exact scipy EDTs per radius (erosion, then dilation by the open ball)."""
    mask = np.asarray(mask, dtype=bool)
    depth = ndimage.distance_transform_edt(mask)
    out = []
    for r in radii:
        centres = depth >= r
        out.append(np.count_nonzero(ndimage.distance_transform_edt(~centres) < r) / mask.sum() if centres.any() else 0.0)
    return np.array(out)
