"""Phase masks from labelled volumes (labels 0 pore, 1 carbon black + binder, 2 graphite)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["PHASES", "phase_mask", "check_phase"]

#: Phase name -> description; solid = labels > 0, pore = labels == 0.
PHASES = {
    "solid": "labels > 0 (carbon black + binder and graphite)",
    "pore": "labels == 0",
    "graphite": "labels == 2",
    "cb": "labels == 1 (carbon black + binder)",
}


def check_phase(phase: str) -> str:
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; allowed: {', '.join(PHASES)}")
    return phase


def phase_mask(labels: jax.Array, phase: str) -> jax.Array:
    """Boolean mask of ``phase`` in a labelled ``(..., z, y, x)`` volume (any leading batch axes).

    ``phase`` in {"solid", "pore", "graphite", "cb"}. Raises ``ValueError`` for an unknown phase
    or a volume with fewer than 3 dimensions; label values are checked only for concrete
    (non-traced) NumPy inputs (use :func:`jaxcba.io.check_labels` for full validation).
    """
    check_phase(phase)
    if getattr(labels, "ndim", 0) < 3:
        raise ValueError(f"expected a (z, y, x) labelled volume, got shape {getattr(labels, 'shape', None)}")
    if isinstance(labels, np.ndarray):
        bad = np.setdiff1d(np.unique(labels), (0, 1, 2))
        if bad.size:
            raise ValueError(f"labels must be 0 (pore), 1 (cb), 2 (graphite); found {bad[:5].tolist()}")
    lab = jnp.asarray(labels)
    if phase == "solid":
        return lab > 0
    if phase == "pore":
        return lab == 0
    return lab == (2 if phase == "graphite" else 1)
