"""The float32 pass: the transport solver and the descriptor kernels with ``jax_enable_x64`` off.

tests/conftest.py turns x64 on for every other test (the references need it), so the kernels'
claim to run in float32 is checked here: each kernel runs inside ``jax.enable_x64(False)`` (as in a
user's session without the switch) and is compared with an independent float64 reference.
Tolerances, and what was measured when they were set (24^3 / 20^3 volumes, CPU):

* M-factor (pore; two-conductivity solid 1 / 0.01), both solver paths (``lean=True`` labels,
  ``lean=False`` stored faces) at the default ``rtol=1e-5``: relative 1e-4 against the float64
  solve at ``rtol=1e-11`` (measured 3e-7 on the solid); ``converged`` on every path (this test
  found the inlet plane's current cancelling in float32, since fixed).
* two-point coverage C(h) (radial and axes): absolute 2e-6 against the direct float64 pair sums
  (float32 FFT rounding, ~1e-7 relative to the sums).
* CPSD: equal to scipy's exact EDT CPSD to 1e-6 (integer distances, float32 ratios);
  constrictivity (r_min, r_max, beta): float32 run equal to the x64 run to 1e-6 relative.
* geodesic tortuosity: relative 1e-5 against scipy Dijkstra in float64 (float32 path sums).
* intrinsic volume densities: relative 1e-5 against the float64 product of the (exact, integer)
  configuration histogram and the weights.
"""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from _references import cpsd_scipy, dijkstra_distance
from helpers import synthetic_cba
from jaxcba.descriptors import (
    configuration_histogram,
    constrictivity,
    cpsd,
    geodesic_tortuosity,
    intrinsic_densities,
    two_point_coverage,
)
from jaxcba.descriptors.minkowski import configuration_weights
from jaxcba.transport import effective_conductivity, m_factor
from jaxcba.transport.phases import conductivity_field

SOLID = {2: 1.0, 1: 0.01}


def _x32(fn, *args, **kw):
    """``fn(*args, **kw)`` with x64 off; every array leaf of the result as NumPy (checked not 64-bit)."""
    with jax.enable_x64(False):
        out = jax.tree_util.tree_map(np.asarray, fn(*args, **kw))
    for leaf in jax.tree_util.tree_leaves(out):
        assert leaf.dtype not in (np.float64, np.int64, np.complex128), leaf.dtype
    return out


@pytest.fixture(scope="module")
def labels():
    lab = synthetic_cba((24, 24, 24), mu=0.3, eta_vox=0.25, v1=0.3, seed=3)  # pore 0.41, cb 0.34, graphite 0.25
    assert set(np.unique(lab)) == {0, 1, 2}
    return lab


@pytest.fixture(scope="module")
def pore(labels):
    return labels == 0


# ------------------------------------------------------------------------------ transport
@pytest.fixture(scope="module")
def m_reference(labels):
    """float64 M-factors (stored-face solve in float64, tight tolerances)."""
    out = {}
    for phase, cond in (("pore", {0: 1.0}), ("solid", SOLID)):
        sigma = conductivity_field(labels, phase, cond, jnp.float64)
        r = effective_conductivity(sigma, 0, sigma_ref=max(cond.values()), dtype=jnp.float64, rtol=1e-11,
                                   flux_tol=1e-7, max_iter=20000)
        assert bool(r.converged) and bool(r.percolates) and r.m_factor.dtype == jnp.float64
        out[phase] = float(r.m_factor)
    return out


CASES = [("pore", None, True), ("pore", None, False), ("solid", SOLID, True), ("solid", SOLID, False)]
IDS = ["pore-labels", "pore-stored-faces", "solid-labels", "solid-stored-faces"]


@pytest.fixture(scope="module")
def m32(labels):
    """The float32 solves, once per case."""
    return {(phase, lean): _x32(m_factor, labels, phase, cond, "z", lean=lean) for phase, cond, lean in CASES}


@pytest.mark.parametrize("phase, cond, lean", CASES, ids=IDS)
def test_m_factor_float32(m32, m_reference, phase, cond, lean):
    r = m32[phase, lean]
    chex.assert_type([r.m_factor, r.tau_eff, r.eps], np.float32)
    assert bool(r.percolates)
    np.testing.assert_allclose(r.m_factor, m_reference[phase], rtol=1e-4)
    np.testing.assert_allclose(r.tau_eff * r.m_factor, r.eps, rtol=1e-6)


@pytest.mark.parametrize("phase, lean", [(p, lean) for p, _, lean in CASES], ids=IDS)
def test_m_factor_float32_converges(m32, phase, lean):
    assert bool(m32[phase, lean].converged)


# ----------------------------------------------------------------------------- descriptors
def _two_point_reference(mask, L):
    """Direct float64 pair sums: C(h) for every lag vector, radial and axis means as two_point_coverage defines them."""
    m = mask.astype(np.float64)
    n = mask.shape
    sums = np.zeros(L + 2)
    counts = np.zeros(L + 2)
    axes = np.zeros((3, L + 1))
    for h in itertools.product(range(-L, L + 1), repeat=3):
        a = m[tuple(slice(max(0, -d), n[i] - max(0, d)) for i, d in enumerate(h))]
        b = m[tuple(slice(max(0, d), n[i] - max(0, -d)) for i, d in enumerate(h))]
        c = float(np.sum(a * b)) / a.size
        k = min(int(np.floor(np.sqrt(sum(d * d for d in h)) + 0.5)), L + 1)
        sums[k] += c
        counts[k] += 1
        for ax in range(3):
            if all(d == 0 for i, d in enumerate(h) if i != ax) and h[ax] >= 0:
                axes[ax, h[ax]] = c
    return sums[: L + 1] / counts[: L + 1], axes


def test_two_point_float32(pore):
    mask = pore[:16, :16, :16]
    L = 5
    t = _x32(two_point_coverage, mask, 40.0, L)
    chex.assert_shape(t.C, (L + 1,))
    chex.assert_shape(t.C_axes, (3, L + 1))
    chex.assert_type([t.C, t.C_axes, t.h_nm], np.float32)
    c_ref, axes_ref = _two_point_reference(mask, L)
    np.testing.assert_allclose(t.C, c_ref, atol=2e-6)
    np.testing.assert_allclose(t.C_axes, axes_ref, atol=2e-6)
    np.testing.assert_allclose(t.volume_fraction, mask.mean(), rtol=1e-6)


def test_cpsd_and_constrictivity_float32(pore):
    radii = np.arange(1.0, 6.0, 0.5)
    c = _x32(cpsd, pore, 40.0, radii)
    chex.assert_shape(c.fraction, radii.shape)
    np.testing.assert_allclose(c.fraction, cpsd_scipy(pore, radii), atol=1e-6)
    b32 = _x32(constrictivity, pore, 40.0, radii, axis=0)
    b64 = jax.tree_util.tree_map(np.asarray, constrictivity(pore, 40.0, radii, axis=0))
    assert bool(b32.percolates) and 0 < float(b32.beta) <= 1
    chex.assert_trees_all_close(b32, b64, rtol=1e-6, atol=0)


def test_geodesic_tortuosity_float32(pore):
    mask = pore[:20, :20, :20]
    t = _x32(geodesic_tortuosity, mask, 0)
    chex.assert_type(t.mean, np.float32)
    n = mask.shape[0]
    outlet = np.zeros(mask.shape, bool)
    outlet[-1] = True
    # paths inside the face-connected (6-neighbour) percolating cluster, the one percolation rule
    comp, _ = ndimage.label(mask)
    both = np.intersect1d(comp[0][comp[0] > 0], comp[-1][comp[-1] > 0])
    cluster = np.isin(comp, both)
    start = dijkstra_distance(cluster, outlet & cluster)[0][mask[0]]
    ok = np.isfinite(start)
    assert bool(t.percolates) and int(t.n_starts) == ok.sum()
    np.testing.assert_allclose(t.mean, start[ok].mean() / (n - 1), rtol=1e-5)


def test_intrinsic_densities_float32(labels):
    voxel_nm = 40.0
    for mask in (labels == 0, labels > 0, labels == 2):
        d = _x32(intrinsic_densities, mask, voxel_nm)
        chex.assert_type([d.V_V, d.S_V, d.M_V, d.chi_V], np.float32)
        hist = np.asarray(configuration_histogram(mask), dtype=np.float64)
        dens = configuration_weights() @ hist / np.prod([s - 1 for s in mask.shape])
        ref = [mask.mean(), dens[1] / voxel_nm, dens[2] / voxel_nm**2, dens[3] / voxel_nm**3]
        np.testing.assert_allclose([d.V_V, d.S_V, d.M_V, d.chi_V], ref, rtol=1e-5, atol=1e-12 / voxel_nm**3)


def test_x64_is_restored_after_the_float32_runs():
    assert jnp.asarray(1.0).dtype == jnp.float64, "conftest's x64 switch must hold outside the float32 pass"
