"""Parameters, units and random realizations of the CBA model (paper Section 3.1)."""

from jaxcba.model.params import FIELDS, CBAParams, mean_half_axes_nm
from jaxcba.model.realization import simulate
from jaxcba.model.soft import draw_noise, simulate_soft

__all__ = ["CBAParams", "FIELDS", "mean_half_axes_nm", "simulate", "simulate_soft", "draw_noise"]
