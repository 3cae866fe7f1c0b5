"""The M-factor in the paper's (TauFactor's) convention for several conductivities.

The paper computes ``M = eps / tau_eff`` (Eq. 27) with TauFactor. For a phase with one
conductivity that is ``sigma_eff / sigma``, our :attr:`TransportResult.m_factor`. For the
two-conductivity solid (graphite 1, carbon black + binder 0.01) TauFactor's
``MultiPhaseSolver`` defines ``tau = D_mean / D_eff`` with the volume-weighted mean
conductivity ``D_mean = sum_i eps_i sigma_i`` over the whole window, so the paper's

    M_paper = eps / tau = eps * sigma_eff / sum_i eps_i sigma_i,

which is ``eps / sum_i eps_i sigma_i`` (about 3 for Table 2's fractions) times
``sigma_eff / sigma_max``. Measured: with the paper's conductivities this factor brings
the model's solid M from about 0.010 to about 0.030, against the paper's 0.0357
(``docs/transport.md``, "Which M?").
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxcba.transport.phases import conductivity_field


def paper_m_factor(result, labels, phase: str = "solid", conductivity=None):
    """``eps * sigma_eff / mean(sigma)`` for ``result`` of :func:`~jaxcba.transport.m_factor` on ``labels``.

    ``mean(sigma)`` is the conductivity field averaged over the whole window (TauFactor's
    ``D_mean``). Equals ``result.m_factor`` for a single conductivity. Jittable / vmappable.
    """
    sigma = conductivity_field(labels, phase, conductivity)
    mean_sigma = jnp.mean(sigma)
    return jnp.where(mean_sigma > 0, result.eps * result.sigma_eff / jnp.where(mean_sigma > 0, mean_sigma, 1.0), 0.0)


__all__ = ["paper_m_factor"]
