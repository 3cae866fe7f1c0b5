"""Parameters, units and random realizations of the CBA model (paper Section 3.1).

Hard realizations: :func:`simulate` (one key), :func:`simulate_batch` (a batch of keys,
the documented batch entry point); soft (differentiable) ones: :func:`draw_noise` then
:func:`simulate_soft` / :func:`simulate_soft_batch` (a batch of parameters).
Resolution changes (Section 3.3): :mod:`jaxcba.model.resolution`.
"""

from jaxcba.model import resolution
from jaxcba.model.params import FIELDS, CBAParams, mean_half_axes_nm
from jaxcba.model.realization import simulate, simulate_balls, simulate_batch
from jaxcba.model.soft import SoftNoise, draw_noise, realize_noise, simulate_soft, simulate_soft_batch, soft_labels

__all__ = [
    "CBAParams",
    "FIELDS",
    "mean_half_axes_nm",
    "simulate",
    "simulate_batch",
    "simulate_balls",
    "simulate_soft",
    "simulate_soft_batch",
    "draw_noise",
    "realize_noise",
    "soft_labels",
    "SoftNoise",
    "resolution",
]
