"""Independent host references shared by several test files (scipy only, no jaxcba code)."""

import itertools

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra


def cpsd_scipy(mask, radii):
    """CPSD (Eq. 26) of a bool phase: two exact scipy EDTs per radius (erosion, then dilation by the open ball)."""
    mask = np.asarray(mask, dtype=bool)
    depth = ndimage.distance_transform_edt(mask)
    out = []
    for r in radii:
        centres = depth >= r
        out.append(np.count_nonzero(ndimage.distance_transform_edt(~centres) < r) / mask.sum() if centres.any() else 0.0)
    return np.array(out)


def dijkstra_distance(mask, seeds):
    """Independent reference: scipy Dijkstra on the explicit 26-neighbourhood graph."""
    idx = -np.ones(mask.shape, int)
    pts = np.argwhere(mask)
    idx[mask] = np.arange(len(pts))
    rows, cols, w = [], [], []
    for d in itertools.product((-1, 0, 1), repeat=3):
        if not any(d):
            continue
        q = pts + d
        ok = np.all((q >= 0) & (q < mask.shape), axis=1)
        j = idx[tuple(q[ok].T)]
        good = j >= 0
        rows.append(np.arange(len(pts))[ok][good])
        cols.append(j[good])
        w.append(np.full(good.sum(), np.linalg.norm(d)))
    g = coo_matrix((np.concatenate(w), (np.concatenate(rows), np.concatenate(cols))), shape=(len(pts),) * 2).tocsr()
    out = np.full(mask.shape, np.inf)
    out[mask] = dijkstra(g, indices=idx[seeds & mask], min_only=True)
    return out
