"""Two-point coverage of the graphite Boolean model Xi1 (an addition to the paper's stage 1).

For a stationary Boolean model with intensity ``lambda`` and i.i.d. isotropic grains ``E``
(Chiu et al., Eq. 3.27):

    C1(h) = P(x in Xi1, x + h in Xi1) = 1 - 2 q + q^2 exp(lambda * g(h)),   q = exp(-lambda E|E|),

with ``g(h) = E|E ∩ (E + h u)|`` the mean covariogram of the grain (``u`` uniform on the
sphere). An oblate spheroid with half-axes ``(m, M, M)`` is the unit ball ``B`` mapped by
``A = diag(m, M, M)``, so ``|E ∩ (E + x)| = m M^2 |B ∩ (B + A^-1 x)|`` with the ball's
covariogram ``|B ∩ (B + r)| = (4 pi / 3) (1 - 3 r / 4 + r^3 / 16)`` for ``r <= 2`` (0 beyond).
For ``x`` at angle ``phi`` to the symmetry axis, ``|A^-1 x|^2 = h^2 (t^2 / m^2 + (1 - t^2) / M^2)``
with ``t = cos phi`` uniform on [0, 1] for an isotropic grain. Hence

    g(h) = (4 pi / 3) E[ m M^2 ∫_0^1 b(h sqrt(t^2 / m^2 + (1 - t^2) / M^2)) dt ],   b(r) = (1 - 3r/4 + r^3/16)_+.

The expectation runs over the half-axes of the paper's grains (``m = min(A, C)``,
``M = max(A, C)``, ``A = X1 voxel_nm / gamma``, ``C = X2 voxel_nm / gamma``, ``X_i ~
Gamma(alpha_i / voxel_nm)``; :mod:`jaxcba.theory.grains`). It is computed as a product rule:
``T = X1 + X2 ~ Gamma(k1 + k2)`` by Gauss-Legendre in ``log T`` (sinh-mapped, truncated at a
log-density drop of 45), ``W = X1 / T ~ Beta(k1, k2)`` by the logit-Beta rule of
:func:`jaxcba.theory.grains.beta_rule`, and ``t`` by Gauss-Legendre on ``[0, t_c]`` where
``t_c`` is the direction at which ``r`` reaches 2 (so the integrand is smooth on the piece).

Why: the two-point coverage of a voxel image at lattice lags is an unbiased estimate of
``C1(h)`` at any voxel size, unlike the 2x2x2 estimates of ``K`` and ``N`` of thin platelets
(docs/calibration.md). It pins the platelets' major half-axis where ``K`` measured at 40 nm
does not. Checks (tests): ``g(0) = E|E|``, ``g'(0) = -E S / 4`` (so ``C1'(0) = -S_V / 4``,
Miles' Eq. 11), a ball's closed form, Monte Carlo for one spheroid, realizations.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp

from jaxcba.theory._quadrature import gauss_legendre
from jaxcba.theory._inputs import checked
from jaxcba.theory.grains import beta_rule, grain_moments

_LOG_DROP = 45.0


def _gamma_log_rule(k, n: int):
    """Nodes ``T`` and weights (sum 1) for ``T ~ Gamma(k, 1)``: Gauss-Legendre in
    ``x = log(T / k)`` (log-density ``k (x - e^x)`` up to a constant), sinh-mapped.
    ``k`` has any shape; results have shape ``k.shape + (n,)``."""
    k = jnp.asarray(k)[..., None]
    ks = jax.lax.stop_gradient(k)
    width = 1.0 / jnp.sqrt(ks)

    def drop(x):
        return ks * (jnp.expm1(x) - x)

    def newton(x0):  # convex drop, started beyond the root: monotone convergence
        def step(_, x):
            return x - (drop(x) - _LOG_DROP) / (ks * jnp.expm1(x))

        return jax.lax.fori_loop(0, 40, step, x0)

    right = newton(jnp.sqrt(2.0 * _LOG_DROP) * width)  # drop >= k x^2 / 2 for x > 0
    left = newton(-(_LOG_DROP / ks + 1.0))  # drop >= k (-x - 1) for x < 0
    v_lo, v_hi = jnp.arcsinh(left / width), jnp.arcsinh(right / width)
    z, w = gauss_legendre(n)
    half = 0.5 * (v_hi - v_lo)
    v = v_lo + half * (z + 1.0)
    x = width * jnp.sinh(v)
    weight = w * half * width * jnp.cosh(v) * jnp.exp(-k * (jnp.expm1(x) - x))
    weight = weight / jnp.sum(weight, -1, keepdims=True)
    return k * jnp.exp(x), weight


def _ball_overlap(r):
    """``|B ∩ (B + r)| / |B|`` for the unit ball, ``r >= 0``."""
    return jnp.where(r < 2.0, 1.0 - 0.75 * r + r**3 / 16.0, 0.0)


def spheroid_covariogram(h, m, M, n_t: int = 12):
    """Orientation-averaged covariogram ``E_u |E ∩ (E + h u)|`` of the oblate spheroid with
    half-axes ``(m, M, M)``, ``m <= M``, at distance ``h`` (same length unit L). Broadcasts;
    returns ``[L^3]``."""
    h, m, M = jnp.broadcast_arrays(*(jnp.asarray(v, dtype=jnp.result_type(v, float)) for v in (h, m, M)))
    alpha = (h / M) ** 2  # r^2 at t = 0 (h in the equatorial plane)
    beta = h * h * (1.0 / (m * m) - 1.0 / (M * M))  # r^2 = alpha + beta t^2
    inside = alpha < 4.0
    safe_gap = jnp.where(inside, 4.0 - alpha, 1.0)
    safe_beta = jnp.where(beta > 0, beta, 1.0)
    t_c = jnp.where(beta > 0, jnp.minimum(1.0, jnp.sqrt(safe_gap / safe_beta)), 1.0)
    t_c = jnp.where(inside, t_c, 0.0)
    z, w = gauss_legendre(n_t)
    t = 0.5 * t_c[..., None] * (z + 1.0)
    r = jnp.sqrt(jnp.maximum(alpha[..., None] + beta[..., None] * t * t, 0.0))
    integral = 0.5 * t_c * jnp.sum(w * _ball_overlap(r), -1)
    return (4.0 * math.pi / 3.0) * m * M * M * integral


def _check_grain_h(params, h_nm, voxel_nm: float = 20.0, n_w: int = 24, n_t: int = 24, n_dir: int = 12):
    from jaxcba.theory._inputs import array_arg, check_params, check_values, check_voxel

    h_nm = check_values(array_arg(h_nm), "h_nm", lo=0.0, allowed="finite distances >= 0 [nm]")
    return (check_params(params), h_nm, check_voxel(voxel_nm), n_w, n_t, n_dir), {}


@checked(_check_grain_h)
@partial(jax.jit, static_argnames=("n_w", "n_t", "n_dir"))
def mean_grain_covariogram(params, h_nm, voxel_nm: float = 20.0, n_w: int = 24, n_t: int = 24, n_dir: int = 12):
    """``g(h) = E|E ∩ (E + h u)|`` [nm^3] of the random graphite grain, shape of ``h_nm``.

    Args:
        params: :class:`~jaxcba.CBAParams` (``alpha1``, ``alpha2``, ``gamma``; scalars, may be traced).
        h_nm: distances [nm], any shape.
        voxel_nm: voxel side [nm] of the gamma half-axis convention.
        n_w, n_t, n_dir: nodes per piece of the ``W`` rule, of the ``log T`` rule, of the
            direction rule (static).
    """
    k1 = jnp.asarray(params.alpha1, dtype=jnp.result_type(params.alpha1, float)) / voxel_nm
    k2 = jnp.asarray(params.alpha2, dtype=jnp.result_type(params.alpha2, float)) / voxel_nm
    scale = voxel_nm / jnp.asarray(params.gamma, dtype=jnp.result_type(params.gamma, float))
    w, one_minus_w, w_weight = beta_rule(k1, k2, n_w)  # (2 n_w,)
    t, t_weight = _gamma_log_rule(k1 + k2, n_t)  # (n_t,)
    size = scale * t[:, None]  # (n_t, 1)
    m = size * jnp.minimum(w, one_minus_w)[None, :]
    big = size * jnp.maximum(w, one_minus_w)[None, :]
    weight = t_weight[:, None] * w_weight[None, :]
    h = jnp.asarray(h_nm, dtype=m.dtype)
    g = spheroid_covariogram(h[..., None, None], m, big, n_dir)
    return jnp.sum(weight * g, axis=(-2, -1))


@checked(_check_grain_h)
@partial(jax.jit, static_argnames=("n_w", "n_t", "n_dir"))
def graphite_two_point(params, h_nm, voxel_nm: float = 20.0, n_w: int = 24, n_t: int = 24, n_dir: int = 12):
    """Two-point coverage ``C1(h)`` of the graphite Boolean model (module docstring), shape of ``h_nm``.

    ``C1(0) = V1`` (Eq. 10) and ``C1(h) -> V1^2`` for large ``h``. Arguments as
    :func:`mean_grain_covariogram`; ``params.lambda_x`` [nm^-3] is used too.
    """
    lam = jnp.asarray(params.lambda_x, dtype=jnp.result_type(params.lambda_x, float))
    mean_v = grain_moments(params, voxel_nm).V
    q = jnp.exp(-lam * mean_v)
    g = mean_grain_covariogram(params, h_nm, voxel_nm, n_w, n_t, n_dir)
    return 1.0 - 2.0 * q + q * q * jnp.exp(lam * g)


__all__ = ["graphite_two_point", "mean_grain_covariogram", "spheroid_covariogram"]
