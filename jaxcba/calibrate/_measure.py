"""Image-side measurements used by the calibration stages (thin wrappers of the descriptors layer)."""

from __future__ import annotations

import numpy as np

from jaxcba.io import check_labels


def checked_labels(labels, name: str = "labels") -> np.ndarray:
    """``labels`` as a ``uint8`` ``(z, y, x)`` array with values in {0, 1, 2} (``ValueError`` otherwise)."""
    vol = check_labels(np.asarray(labels), name=name)
    if min(vol.shape) < 2:
        raise ValueError(f"{name}: every axis needs at least 2 voxels, got shape {vol.shape}")
    return vol


def graphite_densities_of_image(labels, voxel_nm: float):
    """Intrinsic-volume densities (V, S, K, N) of the graphite phase (label 2) of an image.

    Uses :func:`jaxcba.descriptors.minkowski.intrinsic_densities` (K = its ``M_V``,
    N = its ``chi_V``). Raises ``ValueError`` when there is no graphite.
    """
    from jaxcba.calibrate.stage1_graphite import GraphiteTargets
    from jaxcba.descriptors.minkowski import intrinsic_densities

    vol = checked_labels(labels)
    graphite = vol == 2
    if not graphite.any():
        raise ValueError("the volume has no graphite (label 2): stage 1 (graphite Boolean model, Eq. 17) is "
                         "impossible; give graphite targets explicitly or calibrate a volume with graphite")
    d = intrinsic_densities(graphite, voxel_nm)
    return GraphiteTargets(V=float(d.V_V), S=float(d.S_V), K=float(d.M_V), N=float(d.chi_V))
