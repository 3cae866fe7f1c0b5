"""The result of a transport solve."""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np

FIELDS = (
    "sigma_eff",
    "m_factor",
    "eps",
    "tau_eff",
    "sigma_ref",
    "flux_imbalance",
    "relative_residual",
    "iterations",
    "converged",
    "percolates",
)


class TransportResult(eqx.Module):
    """Effective transport of one volume (scalars; leading batch axis under ``vmap``).

    Attributes:
        sigma_eff: effective conductivity along the axis, in the units of the input
            conductivities (Eq. 27: ``M = sigma_eff / sigma_ref``).
        m_factor: ``M = sigma_eff / sigma_ref`` (0 when nothing percolates).
        eps: volume fraction of the conducting voxels (``sigma > 0``), percolating or not.
        tau_eff: effective tortuosity ``eps / M`` (Eq. 27; ``inf`` when ``M = 0``).
        sigma_ref: reference (largest intrinsic) conductivity.
        flux_imbalance: ``(max - min) / max`` of the currents through the planes normal to
            the axis (TauFactor's convergence measure).
        relative_residual: ``|b - A u| / |b|`` of the CG recursion at exit.
        iterations: CG iterations.
        converged: both stopping criteria met (True when nothing percolates).
        percolates: a conducting path joins the inlet and outlet faces.
    """

    sigma_eff: jax.Array
    m_factor: jax.Array
    eps: jax.Array
    tau_eff: jax.Array
    sigma_ref: jax.Array
    flux_imbalance: jax.Array
    relative_residual: jax.Array
    iterations: jax.Array
    converged: jax.Array
    percolates: jax.Array

    def to_dict(self) -> dict:
        """JSON-serialisable dict (floats / ints / bools, or lists of them for a batch)."""
        out = {}
        for name in FIELDS:
            value = np.asarray(getattr(self, name))
            if value.dtype == bool:
                value = value.astype(bool)
                out[name] = value.tolist()
            elif np.issubdtype(value.dtype, np.integer):
                out[name] = value.astype(int).tolist()
            else:
                v = value.astype(float)
                # JSON has no inf/nan: tau_eff of a blocked volume is reported as None.
                out[name] = np.where(np.isfinite(v), v, np.nan).tolist()
                out[name] = _nan_to_none(out[name])
        return out


def _nan_to_none(v):
    if isinstance(v, list):
        return [_nan_to_none(x) for x in v]
    return None if v != v else v
