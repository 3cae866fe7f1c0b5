"""jaxcba: differentiable JAX toolkit for the stochastic 3D model of the nanoporous
binder-conductive additive phase in Li-ion cathodes (Gräfensteiner et al., 2025).

Volumes are ``(z, y, x)`` arrays with labels 0 pore, 1 carbon black + binder, 2 graphite;
lengths are in nanometres unless a name says ``_vox``.

Precision: jaxcba never changes JAX's global configuration. The closed-form theory and
calibration are accurate to ~1e-7 in float32 and ~1e-12 in float64; enable float64 with
``jax.config.update("jax_enable_x64", True)`` for the latter (the ``jaxcba`` command
does). Volumes are always created with explicit dtypes (uint8 / float32).
"""

from jaxcba import descriptors, theory, transport
from jaxcba.model import CBAParams, draw_noise, simulate, simulate_batch, simulate_soft, simulate_soft_batch

__version__ = "0.1.0"
__all__ = ["CBAParams", "simulate", "simulate_batch", "simulate_soft", "simulate_soft_batch", "draw_noise", "theory",
           "descriptors", "transport"]
