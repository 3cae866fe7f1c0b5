"""The paper's M convention (TauFactor multiphase: eps * sigma_eff / mean sigma); the comparison
with TauFactor itself is in test_transport_taufactor."""

import numpy as np
import pytest

from jaxcba.transport import m_factor
from jaxcba.transport.paper import paper_m_factor


def _three_phase(seed, n=32):
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:n, :n, :n]
    lab = np.zeros((n, n, n), np.uint8)
    for _ in range(60):  # carbon-black balls
        c, r = rng.uniform(0, n, 3), rng.uniform(2, 4)
        lab[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r] = 1
    for _ in range(3):  # graphite plates along z, through part of the window
        y0, z0 = rng.integers(0, n - 3), rng.integers(0, n // 2)
        lab[z0 : z0 + n // 2, y0 : y0 + 2, :] = 2
    lab[:, n // 2 - 1 : n // 2 + 1, n // 2 - 1 : n // 2 + 1] = np.maximum(lab[:, n // 2 - 1 : n // 2 + 1, n // 2 - 1 : n // 2 + 1], 1)
    return lab  # the cb rod along z makes the solid percolate


def test_single_conductivity_equals_m_factor():
    lab = _three_phase(0)
    r = m_factor(lab, "pore")
    assert float(paper_m_factor(r, lab, "pore")) == pytest.approx(float(r.m_factor), rel=1e-6)


def test_two_conductivities_convention_factor():
    """The paper's M (TauFactor multiphase, eps / tau; checked against TauFactor itself in
    test_transport_taufactor) differs from ours by eps / sum(eps_i sigma_i)."""
    lab = _three_phase(2)
    cond = {2: 1.0, 1: 0.01}
    ours = m_factor(lab, "solid", cond, axis="z", boundary="ghost_voxel", rtol=1e-7, flux_tol=1e-4)
    eps = float(np.mean(lab > 0))
    mean_sigma = np.mean(lab == 2) * 1.0 + np.mean(lab == 1) * 0.01
    ratio = float(paper_m_factor(ours, lab, "solid", cond)) / float(ours.m_factor)
    assert ratio == pytest.approx(eps / mean_sigma, rel=1e-5)


def test_harmonic_mean_gradient_finite_for_tiny_soft_conductivities():
    import jax
    import jax.numpy as jnp

    from jaxcba.transport.stencil import harmonic_mean2

    a = jnp.array([1e-20, 1e-19, 1e-10, 0.0, 1.0], jnp.float32)
    b = jnp.array([1e-20, 3e-19, 1e-10, 0.0, 0.01], jnp.float32)
    g = jax.grad(lambda x: jnp.sum(harmonic_mean2(x, b)))(a)
    assert bool(jnp.all(jnp.isfinite(g)))
    assert float(g[-1]) == pytest.approx(2 * 0.01**2 / 1.01**2, rel=1e-5)
