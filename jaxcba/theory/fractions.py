"""Volume fractions of the three components and of Xi (paper Eqs. 10, 18, 22-25).

Pore balls Xi3 (open balls, Exp(theta) radii, ``E[R^3] = 6 / theta^3``, Eq. 24):

    V3 = 1 - exp(-lambda_Y 8 pi / theta^3)                      (24)
    V  = V1 + V2 (1 - V1) (1 - V3)                               (22)
    lambda_Y = -theta^3 / (8 pi) log((V - V1) / (V2 (1 - V1)))   (25)
"""

from __future__ import annotations


import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxcba.theory._inputs import check_params, check_values, check_voxel, checked
from jaxcba.theory._results import Result
from jaxcba.theory.excursion import excursion_fraction
from jaxcba.theory.miles import graphite_densities


def _f(x):
    return jnp.asarray(x, dtype=jnp.result_type(x, float))


def _check_balls(lambda_y, theta):
    return (check_values(lambda_y, "lambda_y", lo=0.0), check_values(theta, "theta", lo=0.0, lo_open=True)), {}


@checked(_check_balls)
def ball_fraction(lambda_y, theta):
    """``V3`` of the Boolean model of balls with Exp(``theta``) radii (Eq. 24).

    ``lambda_y`` [L^-3], ``theta`` [L^-1] in one length unit L (e.g. nm).
    """
    lam, th = _f(lambda_y), _f(theta)
    return -jnp.expm1(-lam * 8.0 * math.pi / th**3)


def lambda_y_for_ball_fraction(v3, theta):
    """``lambda_Y`` [L^-3] of balls with Exp(``theta``) radii covering the fraction ``v3`` (Eq. 24
    inverted; ``0 <= v3 < 1``), ``theta`` [L^-1]."""
    v3, th = _f(v3), _f(theta)
    return -jnp.log1p(-v3) * th**3 / (8.0 * math.pi)


def lambda_y_for_fraction(v_total, v1, v2, theta):
    """``lambda_Y`` [L^-3] giving total solid fraction ``v_total`` (Eq. 25), ``theta`` [L^-1].

    NaN (or negative) when ``v_total`` is outside ``(V1, V1 + V2 (1 - V1)]``: no pore balls
    can then reach it; callers should check.
    """
    v, v1, v2, th = _f(v_total), _f(v1), _f(v2), _f(theta)
    return -(th**3) / (8.0 * math.pi) * jnp.log((v - v1) / (v2 * (1.0 - v1)))


class VolumeFractions(Result):
    """Volume fractions of the CBA model, each of the whole window.

    Attributes:
        graphite: V1, graphite spheroids (Eq. 10) [1].
        cb: carbon black + binder, ``V2 (1 - V1) (1 - V3)`` [1].
        pores_removed: V3, the pore balls that thin Xi2 (Eq. 24) [1].
        solid: ``V = V1 + V2 (1 - V1) (1 - V3)`` (Eq. 22) [1].
        excursion: V2 = 1 - Phi(mu), the excursion set alone (Eq. 18) [1].
    """

    graphite: Any
    cb: Any
    pores_removed: Any
    solid: Any
    excursion: Any


def _check_fractions(params, voxel_nm: float = 20.0):
    return (check_params(params), check_voxel(voxel_nm)), {}


@checked(_check_fractions)
@jax.jit
def volume_fractions(params, voxel_nm: float = 20.0) -> VolumeFractions:
    """Volume fractions of ``params`` (:class:`~jaxcba.CBAParams`, batched or traced).

    ``voxel_nm`` enters only through the gamma half-axis convention of V1. Concrete
    parameters are validated first (``ValueError`` naming the field and its range).
    """
    v1 = graphite_densities(params, voxel_nm).V
    v2 = excursion_fraction(params.mu)
    v3 = ball_fraction(params.lambda_y, params.theta)
    cb = v2 * (1.0 - v1) * (1.0 - v3)
    return VolumeFractions(graphite=v1, cb=cb, pores_removed=v3, solid=v1 + cb, excursion=v2)


__all__ = ["VolumeFractions", "ball_fraction", "lambda_y_for_fraction", "volume_fractions"]
