"""Cross-check against TauFactor (optional peer tool) on random Boolean-ball volumes.

TauFactor's conventions (read from taufactor/taufactor.py):
* ``Solver`` (binary): Dirichlet values on the outer faces of the first / last voxel layer
  (ghost value ``2 * bc`` counted twice = conductance ``2 s`` to the face, i.e. half a voxel),
  length ``Nx``; ``D_rel = mean plane flux * Nx / (Ny Nz)``, ``tau = VF / D_rel`` with VF the
  volume fraction of *all* phase voxels -> our ``boundary="half_voxel"``, ``m_factor``, ``tau_eff``.
* ``MultiPhaseSolver``: ghost voxels copying the boundary layer's conductivity, Dirichlet at
  their centres, length ``Nx + 1``; ``D_eff = mean flux * (Nx + 1) / (Ny Nz)`` and
  ``tau = D_mean / D_eff`` with ``D_mean = sum_phase VF * cond`` -> our
  ``boundary="ghost_voxel"``, ``sigma_eff``.
TauFactor stops at a 1 % flux imbalance, so its own error is ~0.1-0.3 %; we ask for 1 %.
"""

import numpy as np
import pytest

from jaxcba.transport import m_factor
from jaxcba.transport.paper import paper_m_factor

tf = pytest.importorskip("taufactor")

N = 48


def balls(n, count, radius, rng):
    """Union of ``count`` balls of ``radius`` voxels with uniform centres (Boolean model)."""
    out = np.zeros((n, n, n), bool)
    z, y, x = np.ogrid[:n, :n, :n]
    for c in rng.uniform(0, n, (count, 3)):
        out |= (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < radius**2
    return out


def volume(seed, n=N):
    """Labels: graphite (2) = large balls, carbon black + binder (1) = small balls, else pore.

    Solid fraction ~0.45 (graphite ~0.12), both phases percolate along z.
    """
    rng = np.random.default_rng(seed)
    scale = n / N
    graphite = balls(n, 8, 8.0 * scale, rng)
    cb = balls(n, 160, 4.5 * scale, rng) & ~graphite
    return np.where(graphite, 2, np.where(cb, 1, 0)).astype(np.uint8)


SEEDS = (0, 1, 2)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("phase", ["pore", "solid"])
def test_binary_phase_against_taufactor_solver(seed, phase):
    labels = volume(seed)
    mask = labels == 0 if phase == "pore" else labels > 0
    ref = tf.Solver(mask.astype(np.uint8), device="cpu")
    tau_ref = float(ref.solve(verbose=False)[0])
    assert ref.converged and 0 < tau_ref < np.inf
    ours = m_factor(labels, phase)  # default boundary = TauFactor Solver's
    assert bool(ours.converged) and bool(ours.percolates)
    np.testing.assert_allclose(float(ours.tau_eff), tau_ref, rtol=1e-2)
    np.testing.assert_allclose(float(ours.m_factor), float(ref.D_rel[0]), rtol=1e-2)
    np.testing.assert_allclose(float(ours.eps), float(ref.VF[0]), rtol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_two_conductivities_against_taufactor_multiphase(seed):
    # 32^3: TauFactor's SOR needs ~10^4 sweeps at a conductivity contrast of 100
    labels = volume(seed, 32)
    cond = {2: 1.0, 1: 0.01}
    ref = tf.MultiPhaseSolver(labels, cond=cond, device="cpu")
    tau_ref = float(ref.solve(verbose=False, iter_limit=50000)[0])
    assert ref.converged
    ours = m_factor(labels, "solid", cond, boundary="ghost_voxel")
    assert bool(ours.converged)
    np.testing.assert_allclose(float(ours.sigma_eff), float(ref.D_eff[0]), rtol=1e-2)
    d_mean = sum(np.mean(labels == k) * c for k, c in cond.items())
    np.testing.assert_allclose(d_mean / float(ours.sigma_eff), tau_ref, rtol=1e-2)
    # the paper's convention (TauFactor multiphase): M = eps / tau with eps the solid fraction
    eps = float(np.mean(labels > 0))
    np.testing.assert_allclose(float(paper_m_factor(ours, labels, "solid", cond)), eps / tau_ref, rtol=1e-2)
