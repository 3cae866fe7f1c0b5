"""Closed-form theory of the CBA model (paper Eqs. 2, 10-25, and the graphite two-point coverage): pure, jittable, differentiable.

Every function takes JAX arrays or :class:`~jaxcba.CBAParams` (fields may be batched or
traced) and returns arrays or small result modules with ``to_dict()``. Lengths in nm.
Precision follows JAX's default float: enable ``jax_enable_x64`` for ~1e-12 accuracy
(float32 gives ~1e-6); the package never flips that switch itself.
"""

from jaxcba.theory.excursion import (
    correlation_from_coverage,
    covariance,
    coverage_from_correlation,
    excursion_fraction,
    fit_eta,
    mu_from_fraction,
    two_point_coverage,
)
from jaxcba.theory.fractions import (
    VolumeFractions,
    ball_fraction,
    lambda_y_for_ball_fraction,
    lambda_y_for_fraction,
    volume_fractions,
)
from jaxcba.theory.grains import GrainMoments, grain_moments
from jaxcba.theory.graphite_covariance import graphite_two_point, mean_grain_covariogram
from jaxcba.theory.miles import GraphiteDensities, graphite_densities, miles_densities
from jaxcba.theory.spheroid import (
    spheroid_functionals,
    spheroid_mean_curvature,
    spheroid_surface,
    spheroid_volume,
)

__all__ = [
    "GraphiteDensities",
    "GrainMoments",
    "VolumeFractions",
    "ball_fraction",
    "correlation_from_coverage",
    "covariance",
    "coverage_from_correlation",
    "excursion_fraction",
    "fit_eta",
    "grain_moments",
    "graphite_two_point",
    "mean_grain_covariogram",
    "graphite_densities",
    "lambda_y_for_ball_fraction",
    "lambda_y_for_fraction",
    "miles_densities",
    "mu_from_fraction",
    "spheroid_functionals",
    "spheroid_mean_curvature",
    "spheroid_surface",
    "spheroid_volume",
    "two_point_coverage",
    "volume_fractions",
]
