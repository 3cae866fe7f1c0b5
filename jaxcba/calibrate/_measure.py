"""Image-side measurements used by the calibration stages (thin wrappers of the descriptors layer)."""

from __future__ import annotations

import numpy as np

from jaxcba.descriptors.pore_size import cpsd
from jaxcba.io import check_labels


def checked_labels(labels, name: str = "labels") -> np.ndarray:
    """``labels`` as a ``uint8`` ``(z, y, x)`` array with values in {0, 1, 2} (``ValueError`` otherwise)."""
    vol = check_labels(np.asarray(labels), name=name)
    if min(vol.shape) < 2:
        raise ValueError(f"{name}: every axis needs at least 2 voxels, got shape {vol.shape}")
    return vol


def axis_pair_counts(phase, region, max_lag: int, count=np.count_nonzero) -> tuple[np.ndarray, np.ndarray]:
    """The pair sums of :func:`masked_axis_two_point`, reduced by ``count``.

    For each lag ``k = 1..max_lag`` [voxels] and axis ``a``, the boolean maps
    ``phase(x) & phase(x + k e_a)`` and ``region(x) & region(x + k e_a)`` of the pairs inside the
    window (indexed by the pair's first voxel ``x``) are reduced by ``count`` and summed over the
    three axes. ``count`` maps a boolean array to a number (default: the number of its true
    entries) or to a fixed-shape array (e.g. per-block sums); a lag longer than an axis adds
    nothing along that axis.

    Returns ``(A, B)`` (phase pairs, region pairs), floats of shape ``(max_lag, *count's shape)``.
    """
    f = np.asarray(phase, dtype=bool)
    m = np.asarray(region, dtype=bool)
    zero = np.zeros(np.shape(count(np.zeros(f.shape, dtype=bool))))
    A = np.broadcast_to(zero, (max_lag, *zero.shape)).copy()
    B = A.copy()
    for axis in range(3):
        size = f.shape[axis]
        for k in range(1, min(max_lag, size - 1) + 1):
            a = [slice(None)] * 3
            b = [slice(None)] * 3
            a[axis] = slice(0, size - k)
            b[axis] = slice(k, size)
            A[k - 1] += count(f[tuple(a)] & f[tuple(b)])  # exact integer pair counts
            B[k - 1] += count(m[tuple(a)] & m[tuple(b)])
    return A, B


def masked_axis_two_point(phase, region, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-point coverage of ``phase`` restricted to ``region``, along the three axes.

    ``C(k) = sum_x phase(x) phase(x + k e_a) / sum_x region(x) region(x + k e_a)`` summed over
    the axes ``a`` and the pairs inside the window (no wrap-around), for lags
    ``k = 0..max_lag`` voxels: the probability that two points ``k`` voxels apart are both in
    ``phase``, given both lie in ``region`` (``phase`` must be a subset of ``region``). The
    model's ``C(h)`` is isotropic, so axis lags estimate it without interpolation. The pair
    sums are :func:`axis_pair_counts`'; ``C(0)`` is the fraction of ``region`` in ``phase``.

    Returns ``(C, n_pairs)``, each of shape ``(max_lag + 1,)``.
    """
    f = np.asarray(phase, dtype=bool)
    m = np.asarray(region, dtype=bool)
    A, B = axis_pair_counts(f, m, max_lag)
    c = np.concatenate([[3.0 * np.count_nonzero(f)], A])
    n = np.concatenate([[3.0 * np.count_nonzero(m)], B])
    with np.errstate(invalid="ignore", divide="ignore"):
        return c / n, n


def pore_cpsd(labels, voxel_nm: float, radii_vox: np.ndarray) -> np.ndarray:
    """CPSD (Eq. 26) of the pore phase (label 0) at ``radii_vox``: fractions, shape ``(len(radii),)``
    (:func:`jaxcba.descriptors.pore_size.cpsd`)."""
    pore = np.asarray(labels) == 0
    if not pore.any():
        raise ValueError("the volume has no pore voxels (label 0): its pore size distribution is undefined")
    res = cpsd(pore, voxel_nm, radii_vox=np.asarray(radii_vox, dtype=float))
    return np.asarray(res.fraction, dtype=float)


def l1_distance(radii_nm: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """``∫ |a(r) - b(r)| dr`` [nm] by the trapezoid rule on the radius grid."""
    d = np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))
    return float(np.trapezoid(d, radii_nm))
