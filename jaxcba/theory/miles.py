"""Miles' formulas for the graphite Boolean model Xi1 (paper Eqs. 10-13).

For a stationary Boolean model with intensity ``lambda`` and i.i.d. convex grains of mean
volume ``V``, surface area ``S`` and integral of mean curvature ``K`` (a ball of radius r
has ``K = 4 pi r``), the densities of the intrinsic volumes are (Chiu et al., Eqs.
3.45-3.48):

    V_V = 1 - exp(-lambda V)                                                 (10)
    S_V = lambda (1 - V_V) S                                                 (11)
    K_V = lambda (1 - V_V) (K - pi^2 lambda S^2 / 32)                        (12)
    N_V = lambda (1 - V_V) (1 - lambda K S / (4 pi) + pi lambda^2 S^3 / 384)  (13)

Units: with lengths in nm, ``V_V`` [1], ``S_V`` [nm^-1], ``K_V`` [nm^-2], ``N_V`` [nm^-3].
Table 1's ``K_1`` and ``N_1`` of the calibrated model are not reproducible from Table 2
(docs/model.md, "Pitfalls"); these functions give the independent values.
"""

from __future__ import annotations

from functools import partial

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxcba.theory._inputs import checked
from jaxcba.theory._results import Result
from jaxcba.theory.grains import grain_moments


class GraphiteDensities(Result):
    """Intrinsic-volume densities of Xi1 (Eqs. 10-13).

    Attributes:
        V: volume fraction V_1 [1].
        S: surface area per volume S_1 [nm^-1].
        K: integral of mean curvature per volume K_1 [nm^-2].
        N: Euler characteristic (connectivity number) per volume N_1 [nm^-3].
    """

    V: Any
    S: Any
    K: Any
    N: Any


@jax.jit
def miles_densities(lambda_x, mean_v, mean_s, mean_k) -> GraphiteDensities:
    """Eqs. 10-13 from the intensity [L^-3] and the mean grain functionals [L^3, L^2, L].

    All arguments broadcast; any consistent length unit L.
    """
    lam = jnp.asarray(lambda_x, dtype=jnp.result_type(lambda_x, float))
    v_v = -jnp.expm1(-lam * mean_v)
    free = lam * (1.0 - v_v)
    s_v = free * mean_s
    k_v = free * (mean_k - math.pi**2 * lam * mean_s**2 / 32.0)
    n_v = free * (1.0 - lam * mean_k * mean_s / (4.0 * math.pi) + math.pi * lam**2 * mean_s**3 / 384.0)
    return GraphiteDensities(V=v_v, S=s_v, K=k_v, N=n_v)


def _check_densities(params, voxel_nm: float = 20.0, n: int = 64):
    from jaxcba.theory._inputs import check_params, check_voxel

    return (check_params(params), check_voxel(voxel_nm), n), {}


@checked(_check_densities)
@partial(jax.jit, static_argnames=('n',))
def graphite_densities(params, voxel_nm: float = 20.0, n: int = 64) -> GraphiteDensities:
    """``V, S, K, N`` of the graphite Boolean model of ``params`` (Eqs. 10-16).

    Args:
        params: :class:`~jaxcba.CBAParams` (uses ``lambda_x``, ``alpha1``, ``alpha2``,
            ``gamma``; fields may be batched or traced).
        voxel_nm: voxel side [nm] of the gamma half-axis convention (the paper: 20).
        n: quadrature nodes per piece of the grain expectation (static).
    """
    m = grain_moments(params, voxel_nm, n)
    return miles_densities(params.lambda_x, m.V, m.S, m.K)


__all__ = ["GraphiteDensities", "miles_densities", "graphite_densities"]
