"""Excursion set Xi2 = {Z >= mu} of a standard Gaussian field (paper Eqs. 2, 18-21).

Covariance ``rho(h) = 1 / (1 + (eta h)^2)`` (Eq. 2), volume fraction ``V2 = 1 - Phi(mu)``
(Eq. 18), plug-in ``mu = Phi^-1(1 - V2)`` (Eq. 19) and the two-point coverage (Eq. 21
*with the factor 1/(2 pi) that the paper omits*, docs/model.md, "Pitfalls")

    C(h) = V2^2 + 1/(2 pi) int_0^rho(h) exp(-mu^2 / (1 + t)) / sqrt(1 - t^2) dt,

which equals the bivariate normal orthant probability ``P(Z1 >= mu, Z2 >= mu)`` with
correlation ``rho``. With ``t = sin(phi)`` the integrand ``exp(-mu^2 / (1 + sin phi))``
is smooth on ``[0, arcsin rho]`` and a fixed Gauss-Legendre rule is exact to ~1e-15
(float64) for ``rho`` in [-0.99, 1]. Everything is jittable and differentiable.
"""

from __future__ import annotations

from functools import partial

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr, ndtri

from jaxcba.theory._inputs import array_arg, check_values, checked
from jaxcba.theory._quadrature import gauss_legendre

_N_NODES = 48


def _f(x):
    return jnp.asarray(x, dtype=jnp.result_type(x, float))


def _check_h_eta(h_nm, eta):
    h_nm = check_values(array_arg(h_nm), "h_nm", lo=0.0, allowed="finite distances >= 0 [nm]")
    return (h_nm, check_values(array_arg(eta), "eta", lo=0.0, lo_open=True, allowed="finite > 0 [nm^-1]")), {}


def _check_h_mu_eta(h_nm, mu, eta, n: int = _N_NODES):
    (h_nm, eta), _ = _check_h_eta(h_nm, eta)
    return (h_nm, check_values(array_arg(mu), "mu", allowed="finite real numbers"), eta, n), {}


def _check_rho_mu(rho, mu, n: int = _N_NODES):
    rho = check_values(array_arg(rho), "rho", lo=-1.0, hi=1.0, allowed="finite numbers in [-1, 1]")
    return (rho, check_values(array_arg(mu), "mu", allowed="finite real numbers"), n), {}


def _check_mu(mu):
    return (check_values(array_arg(mu), "mu", allowed="finite real numbers"),), {}


@checked(_check_h_eta)
def covariance(h_nm, eta):
    """``rho(h) = 1 / (1 + (eta h)^2)`` (Eq. 2); ``h_nm`` [nm], ``eta`` [nm^-1]."""
    return 1.0 / (1.0 + (_f(eta) * _f(h_nm)) ** 2)


@checked(_check_mu)
def excursion_fraction(mu):
    """``V2 = 1 - Phi(mu) = Phi(-mu)`` (Eq. 18)."""
    return ndtr(-_f(mu))


def mu_from_fraction(v2):
    """Plug-in threshold ``mu = Phi^-1(1 - V2)`` (Eq. 19), ``V2`` in (0, 1)."""
    return -ndtri(_f(v2))


@checked(_check_rho_mu)
@partial(jax.jit, static_argnames=('n',))
def coverage_from_correlation(rho, mu, n: int = _N_NODES):
    """``P(Z1 >= mu, Z2 >= mu)`` for standard normals with correlation ``rho`` (Eq. 21 corrected).

    ``rho`` in [-1, 1] and ``mu`` broadcast against each other.
    """
    rho, mu = jnp.broadcast_arrays(_f(rho), _f(mu))
    x, w = gauss_legendre(n)
    upper = jnp.arcsin(jnp.clip(rho, -1.0, 1.0))[..., None]
    phi = 0.5 * upper * (x + 1.0)
    integrand = jnp.exp(-(mu[..., None] ** 2) / (1.0 + jnp.sin(phi)))
    integral = 0.5 * upper[..., 0] * jnp.sum(w * integrand, axis=-1)
    v2 = excursion_fraction(mu)
    return v2 * v2 + integral / (2.0 * math.pi)


@checked(_check_h_mu_eta)
@partial(jax.jit, static_argnames=('n',))
def two_point_coverage(h_nm, mu, eta, n: int = _N_NODES):
    """Two-point coverage ``C(h)`` of Xi2 (Eq. 21 with the 1/(2 pi) restored).

    Args:
        h_nm: distances [nm], any shape.
        mu: threshold [1]; eta: covariance scale [nm^-1] (broadcast with ``h_nm``).
    Returns ``C(h)`` [1]; ``C(0) = V2``, ``C(inf) = V2^2``.
    """
    return coverage_from_correlation(covariance(h_nm, eta), mu, n)


@partial(jax.jit, static_argnames=('iterations',))
def correlation_from_coverage(c, mu, iterations: int = 60):
    """Inverse of :func:`coverage_from_correlation` in ``rho`` in [0, 1] (the paper's bisection).

    ``c`` is clipped to ``[V2^2, V2]``. The value comes from bisection; one Newton step on
    top (with the bisection result held constant) makes it differentiable in ``c`` and ``mu``.
    """
    c, mu = jnp.broadcast_arrays(_f(c), _f(mu))
    v2 = excursion_fraction(mu)
    c = jnp.clip(c, v2 * v2, v2)

    def step(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        below = coverage_from_correlation(mid, mu) < c
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iterations, step, (jnp.zeros_like(c), jnp.ones_like(c)))
    r0 = jax.lax.stop_gradient(0.5 * (lo + hi))
    # dC/drho = exp(-mu^2 / (1 + rho)) / (2 pi sqrt(1 - rho^2)), kept away from rho = 1
    r_safe = jnp.minimum(r0, 1.0 - 1e-12)
    slope = jnp.exp(-(mu**2) / (1.0 + r_safe)) / (2.0 * math.pi * jnp.sqrt((1.0 - r_safe) * (1.0 + r_safe)))
    return r0 - (coverage_from_correlation(r0, mu) - c) / slope


@partial(jax.jit, static_argnames=('iterations',))
def fit_eta(h_nm, c_obs, mu, weights=None, iterations: int = 30):
    """Least-squares ``eta`` [nm^-1] of Eq. 21 (corrected) to an observed two-point coverage.

    Minimises ``sum w (C(h; mu, eta) - c_obs)^2`` over ``eta > 0`` by Gauss-Newton in
    ``log eta`` (fixed iteration count, jittable), started from the median of the
    non-parametric estimates ``eta_i = sqrt(1/rho_i - 1) / h_i`` with ``rho_i`` from
    :func:`correlation_from_coverage` (the paper's two-step procedure, Section 3.2.2).

    Args:
        h_nm: distances [nm], shape ``(m,)``, ``h > 0``.
        c_obs: observed C(h) [1], shape ``(m,)``.
        mu: threshold (e.g. the plug-in of Eq. 19).
        weights: optional non-negative weights, shape ``(m,)``.
    """
    h = _f(h_nm)
    c_obs = _f(c_obs)
    mu = _f(mu)
    w = jnp.ones_like(h) if weights is None else _f(weights)
    rho = jnp.clip(correlation_from_coverage(c_obs, mu), 1e-6, 1.0 - 1e-9)
    eta_i = jnp.sqrt(1.0 / rho - 1.0) / h
    useful = (rho > 0.05) & (rho < 0.95) & (w > 0)
    eta0 = jnp.where(jnp.any(useful), jnp.nanmedian(jnp.where(useful, eta_i, jnp.nan)), jnp.median(eta_i))
    u0 = jnp.log(jax.lax.stop_gradient(eta0))

    def residual(u):
        return jnp.sqrt(w) * (two_point_coverage(h, mu, jnp.exp(u)) - c_obs)

    def gauss_newton(_, u):
        r = residual(u)
        j = jax.jacfwd(residual)(u)
        step = jnp.sum(j * r) / jnp.maximum(jnp.sum(j * j), 1e-300)
        return u - jnp.clip(step, -1.0, 1.0)

    u = jax.lax.fori_loop(0, iterations, gauss_newton, u0)
    return jnp.exp(u)


__all__ = [
    "covariance",
    "excursion_fraction",
    "mu_from_fraction",
    "coverage_from_correlation",
    "two_point_coverage",
    "correlation_from_coverage",
    "fit_eta",
]
