"""Stage 1's targets: the intrinsic-volume densities (V, S, K, N) of the graphite phase."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxcba.calibrate._measure import checked_labels
from jaxcba.calibrate._result import Result
from jaxcba.descriptors.minkowski import intrinsic_densities

TERMS = ("V", "S", "K", "N")
UNITS = {"V": "1", "S": "nm^-1", "K": "nm^-2", "N": "nm^-3"}

#: Table 1 of the paper, "tomographic image data" row (voxel 20 nm).
PAPER_TARGETS = {"V": 0.10550, "S": 1.4526e-3, "K": 4.2043e-7, "N": 1.6344e-9}


@dataclasses.dataclass(frozen=True)
class GraphiteTargets(Result):
    """Intrinsic-volume densities of the graphite phase: V [1], S [nm^-1], K [nm^-2], N [nm^-3].

    K is the density of the integral of mean curvature (the descriptors layer's ``M_V``),
    N the Euler characteristic density (``chi_V``). Checked on construction: finite numbers,
    ``0 < V < 1``, ``S > 0``.
    """

    V: float
    S: float
    K: float
    N: float

    def __post_init__(self):
        for t in TERMS:
            v = getattr(self, t)
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"graphite target {t} must be a number, got {v!r}") from None
            if not math.isfinite(v):
                raise ValueError(f"graphite target {t} = {v} is not finite; all four targets V, S, K, N must be finite numbers")
            object.__setattr__(self, t, v)
        if not 0.0 < self.V < 1.0:
            if self.V == 0.0:
                raise ValueError("graphite volume fraction V is 0: the volume has no graphite (label 2), so stage 1 "
                                 "(graphite Boolean model, Eq. 17) is impossible")
            raise ValueError(f"graphite target V = {self.V} must lie in (0, 1)")
        if not self.S > 0.0:
            raise ValueError(f"graphite target S = {self.S} nm^-1 must be > 0")

    @classmethod
    def paper(cls) -> "GraphiteTargets":
        """Table 1, image row."""
        return cls(**PAPER_TARGETS)

    @classmethod
    def from_labels(cls, labels, voxel_nm: float) -> "GraphiteTargets":
        """Densities of the graphite phase (label 2) of a labelled volume (:func:`graphite_densities_of_image`)."""
        return graphite_densities_of_image(labels, voxel_nm)

    def as_array(self) -> np.ndarray:
        """``(V, S, K, N)``, shape (4,)."""
        return np.array([self.V, self.S, self.K, self.N], dtype=float)


#: Adjacencies of the graphite K and N estimators (measured choice, docs/calibration.md): on
#: twins of Table 2 at 20 nm, ``curvature="8"`` gives K within 2 % and ``euler="26"`` N within
#: 2e-11 nm^-3 of Miles' values, where the descriptors layer's defaults ("4", "6") give
#: K +46 % and N -1.2e-9 (thin platelets: foreground voxels touching at edges/corners belong
#: to one grain).
GRAPHITE_EULER = "26"
GRAPHITE_CURVATURE = "8"


def graphite_densities_of_image(labels, voxel_nm: float, *, euler: str = GRAPHITE_EULER,
                                curvature: str = GRAPHITE_CURVATURE):
    """Intrinsic-volume densities (V, S, K, N) of the graphite phase (label 2) of an image.

    Uses :func:`jaxcba.descriptors.minkowski.intrinsic_densities` (K = its ``M_V``,
    N = its ``chi_V``) with 26-adjacency for the Euler characteristic and 8-adjacency on the
    sections for the mean curvature (``euler``, ``curvature``: see :data:`GRAPHITE_EULER`).
    Raises ``ValueError`` when there is no graphite.
    """
    vol = checked_labels(labels)
    graphite = vol == 2
    if not graphite.any():
        raise ValueError("the volume has no graphite (label 2): stage 1 (graphite Boolean model, Eq. 17) is "
                         "impossible; give graphite targets explicitly or calibrate a volume with graphite")
    d = intrinsic_densities(graphite, voxel_nm, euler=euler, curvature=curvature)
    return GraphiteTargets(V=float(d.V_V), S=float(d.S_V), K=float(d.M_V), N=float(d.chi_V))


def as_targets(t) -> GraphiteTargets:
    """``GraphiteTargets``, a dict with keys V, S, K, N, or 4 numbers -> ``GraphiteTargets``."""
    if isinstance(t, GraphiteTargets):
        return t
    if isinstance(t, dict):
        missing = [k for k in TERMS if k not in t]
        if missing:
            raise ValueError(f"graphite targets need keys V, S, K, N; missing {missing}")
        return GraphiteTargets(**{k: t[k] for k in TERMS})
    vals = list(np.asarray(t, dtype=float).ravel())
    if len(vals) != 4:
        raise ValueError(f"graphite targets must be 4 numbers (V, S, K, N), got {len(vals)}")
    return GraphiteTargets(*vals)


#: Stage 1 needs at least this many graphite particles (26-connected components) ...
MIN_GRAPHITE_PARTICLES = 5
#: ... and at least this fraction of the window in graphite.
MIN_GRAPHITE_FRACTION = 0.005


def check_graphite_for_stage1(labels) -> None:
    """``ValueError`` saying what was found and what is needed when an image has graphite (label 2)
    but too little of it for stage 1 (fewer than :data:`MIN_GRAPHITE_PARTICLES` particles or less than
    :data:`MIN_GRAPHITE_FRACTION` of the window): with so few grains the graphite model's four
    parameters are not determined by the image. An image without graphite is not refused here (the
    two-phase path of the pipeline)."""
    import scipy.ndimage

    vol = np.asarray(labels)
    graphite = vol == 2
    n_vox = int(np.count_nonzero(graphite))
    if n_vox == 0:
        return
    frac = n_vox / vol.size
    n_particles = int(scipy.ndimage.label(graphite, structure=np.ones((3, 3, 3), bool))[1])
    if n_particles < MIN_GRAPHITE_PARTICLES or frac < MIN_GRAPHITE_FRACTION:
        raise ValueError(
            f"too little graphite (label 2) for stage 1: found {n_vox} voxels ({100 * frac:.3g} % of the window "
            f"{'x'.join(map(str, vol.shape))}) in {n_particles} particle(s); stage 1 needs at least "
            f"{MIN_GRAPHITE_PARTICLES} particles and {100 * MIN_GRAPHITE_FRACTION:g} % of the window. Calibrate a "
            "larger window, or relabel the graphite as 1 (or 0) to fit the two-phase sub-model without graphite "
            "(lambda_x = 0), or run --stages 2,3 with the graphite parameters of --initial")
