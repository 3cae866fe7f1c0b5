"""Transport solver against closed forms (channels, series / parallel layers), finite
differences, vmap vs loop, and its input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcba.transport import SolverOptions, effective_conductivity, m_factor
from jaxcba.transport import cg
from jaxcba.transport import stencil as sten

SHAPE = (12, 12, 12)  # one shape: one compilation per solver configuration


def _channels(shape=SHAPE, axis=0, seed=0):
    """Straight channels along ``axis``: a random set of full lines of conducting voxels."""
    rng = np.random.default_rng(seed)
    cross = [n for a, n in enumerate(shape) if a != axis]
    holes = rng.random(cross) < 0.3
    holes[0, 0] = True
    return np.broadcast_to(np.expand_dims(holes, axis), shape).astype(np.float32)


@pytest.mark.parametrize("axis", ["z", "y", "x"])
@pytest.mark.parametrize("boundary", ["half_voxel", "ghost_voxel"])
def test_straight_channels_tau_one(axis, boundary):
    ax = "zyx".index(axis)
    sigma = _channels(axis=ax)
    r = effective_conductivity(sigma, axis, boundary=boundary)
    assert bool(r.converged) and bool(r.percolates)
    np.testing.assert_allclose(float(r.eps), sigma.mean(), rtol=1e-6)
    np.testing.assert_allclose(float(r.m_factor), sigma.mean(), rtol=1e-4)
    np.testing.assert_allclose(float(r.tau_eff), 1.0, rtol=1e-4)


def test_series_layers_harmonic_mean():
    rng = np.random.default_rng(1)
    s = rng.uniform(0.01, 2.0, SHAPE[0])
    sigma = np.broadcast_to(s[:, None, None], SHAPE).astype(np.float32)
    n0 = SHAPE[0]
    # half-voxel Dirichlet planes: resistance of a column = sum 1/s_i over a length n0
    r = effective_conductivity(sigma, rtol=1e-7)
    np.testing.assert_allclose(float(r.sigma_eff), n0 / np.sum(1 / s), rtol=1e-4)
    # ghost voxels (TauFactor MultiPhaseSolver): extra half voxel of the end layers, length n0 + 1
    r = effective_conductivity(sigma, rtol=1e-7, boundary="ghost_voxel")
    resistance = np.sum(1 / s) + 0.5 / s[0] + 0.5 / s[-1]
    np.testing.assert_allclose(float(r.sigma_eff), (n0 + 1) / resistance, rtol=1e-4)
    np.testing.assert_allclose(float(r.m_factor), float(r.sigma_eff) / s.max(), rtol=1e-6)


@pytest.mark.parametrize("preconditioner", ["multigrid", "jacobi"])
def test_parallel_layers_arithmetic_mean(preconditioner):
    rng = np.random.default_rng(2)
    s = rng.uniform(0.0, 1.0, SHAPE[2])
    s[3] = 0.0  # an insulating sheet parallel to the flow changes nothing
    sigma = np.broadcast_to(s[None, None, :], SHAPE).astype(np.float32)
    r = effective_conductivity(sigma, "z", preconditioner=preconditioner, sigma_ref=1.0)
    np.testing.assert_allclose(float(r.sigma_eff), s.mean(), rtol=1e-4)
    np.testing.assert_allclose(float(r.eps), np.mean(s > 0), rtol=1e-6)


def test_blocked_layer_is_flagged():
    sigma = np.ones(SHAPE, np.float32)
    sigma[7] = 0
    r = effective_conductivity(sigma)
    assert not bool(r.percolates)
    assert bool(r.converged)
    assert float(r.m_factor) == 0.0 and float(r.sigma_eff) == 0.0
    assert np.isinf(float(r.tau_eff))
    assert int(r.iterations) == 0
    assert r.to_dict()["tau_eff"] is None
    # the same layer lies along the flow for the other axes: those percolate
    assert bool(effective_conductivity(sigma, "x").percolates)


def test_isolated_and_dead_end_clusters_change_nothing():
    base = np.zeros(SHAPE, np.float32)
    base[:, 2:5, 2:5] = 1  # a straight channel
    more = base.copy()
    more[4:8, 7:11, 7:11] = 1  # isolated blob
    more[0:4, 8:11, 1:3] = 1  # dead end touching the inlet only
    more[6, 5:8, 3] = 1  # dead-end side branch of the channel
    a = effective_conductivity(base, rtol=1e-7)
    b = effective_conductivity(more, rtol=1e-7)
    assert bool(b.converged)
    np.testing.assert_allclose(float(b.sigma_eff), float(a.sigma_eff), rtol=1e-5)
    np.testing.assert_allclose(float(a.sigma_eff), 9 / 144, rtol=1e-5)
    assert float(b.eps) > float(a.eps)  # eps counts every conducting voxel


def _random_field(seed, shape=SHAPE, p=0.35):
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.2, 1.0, shape)
    s[rng.random(shape) < p] = 0
    return s


def test_preconditioners_agree_and_flux_balances():
    sigma = _random_field(3).astype(np.float32)
    res = {pc: effective_conductivity(sigma, preconditioner=pc, rtol=1e-7) for pc in ("multigrid", "jacobi", "none")}
    ref = float(res["none"].sigma_eff)
    for pc, r in res.items():
        assert bool(r.converged), pc
        assert float(r.flux_imbalance) <= 1e-2
        np.testing.assert_allclose(float(r.sigma_eff), ref, rtol=1e-5, err_msg=pc)
    assert int(res["multigrid"].iterations) < int(res["jacobi"].iterations)


def test_odd_shapes_coarsen_correctly():
    """Odd sizes pair the last voxel with a ghost on every multigrid level."""
    shape = (13, 11, 9)
    rng = np.random.default_rng(8)
    sigma = rng.uniform(0.2, 1.0, shape)
    sigma[rng.random(shape) < 0.3] = 0
    sigma = sigma.astype(np.float32)
    mg = effective_conductivity(sigma, rtol=1e-7, sigma_ref=1.0)
    jac = effective_conductivity(sigma, rtol=1e-7, sigma_ref=1.0, preconditioner="jacobi")
    assert bool(mg.converged) and int(mg.iterations) < int(jac.iterations)
    np.testing.assert_allclose(float(mg.sigma_eff), float(jac.sigma_eff), rtol=1e-5)
    s = rng.uniform(0.1, 1.0, shape[0])
    layers = np.broadcast_to(s[:, None, None], shape).astype(np.float32)
    r = effective_conductivity(layers, rtol=1e-7, initial_guess="zero")
    np.testing.assert_allclose(float(r.sigma_eff), shape[0] / np.sum(1 / s), rtol=1e-4)


def test_flux_read_out_matches_dissipation():
    """The plane currents of the solution equal the dissipation-based sigma_eff."""
    from jaxcba.morphology import percolating_cluster

    @jax.jit
    def solve(sigma):
        cluster, _ = percolating_cluster(sigma > 0, 0)
        st = sten.from_conductivity(jnp.where(cluster, sigma, 0))
        prob = cg.make_problem(st, "jacobi")
        state = cg.initial_state(prob, sten.pad(jnp.zeros(SHAPE)), 1e-12, jnp.asarray(True))
        state = cg.advance(prob, state, 2000, 1e-12, 1e-9)
        return st, state

    st, state = solve(jnp.asarray(_random_field(4), jnp.float64))
    cur = np.asarray(sten.layer_currents(st, state.u))
    np.testing.assert_allclose(cur, cur.mean(), rtol=1e-8)
    np.testing.assert_allclose(float(sten.dissipation(st, state.u)), cur.mean(), rtol=1e-8)


@pytest.mark.parametrize("shape", [(16, 5, 4), (15, 4, 3), (1, 3, 2)])
def test_dissipation_matches_face_by_face_sum(shape):
    """The blocked dissipation equals a plain loop over every face (numpy, float64), the
    Dirichlet faces included (conductance 2 s, inlet u = 1, outlet u = 0), for row counts that
    split into blocks (16), that do not (15) and a single layer."""
    rng = np.random.default_rng(3)
    s = rng.uniform(0.1, 1.0, shape) * (rng.random(shape) > 0.3)
    u = rng.random(shape)
    want = 0.0
    n0, n1, n2 = shape

    def hm(a, b):
        return 2 * a * b / (a + b) if a + b > 0 else 0.0

    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                if i + 1 < n0:
                    want += hm(s[i, j, k], s[i + 1, j, k]) * (u[i, j, k] - u[i + 1, j, k]) ** 2
                if j + 1 < n1:
                    want += hm(s[i, j, k], s[i, j + 1, k]) * (u[i, j, k] - u[i, j + 1, k]) ** 2
                if k + 1 < n2:
                    want += hm(s[i, j, k], s[i, j, k + 1]) * (u[i, j, k] - u[i, j, k + 1]) ** 2
    want += np.sum(2 * s[0] * (1 - u[0]) ** 2) + np.sum(2 * s[-1] * u[-1] ** 2)
    st = sten.from_conductivity(jnp.asarray(s, jnp.float64))
    got = float(sten.dissipation(st, sten.pad(jnp.asarray(u, jnp.float64))))
    np.testing.assert_allclose(got, want, rtol=1e-12)

def test_gradient_matches_finite_differences():
    sigma = jnp.asarray(_random_field(5, p=0.2), jnp.float64)
    opts = SolverOptions(rtol=1e-12, flux_tol=1e-9, max_iter=2000)

    def f(s):
        return effective_conductivity(s, options=opts, dtype=jnp.float64, sigma_ref=1.0).sigma_eff

    g = np.asarray(jax.jit(jax.grad(f))(sigma))
    rng = np.random.default_rng(0)
    idx = [tuple(rng.integers(0, n) for n in SHAPE) for _ in range(6)]
    conducting = [i for i in idx if sigma[i] > 0][:4]
    assert len(conducting) >= 2
    h = 1e-5
    for i in conducting:
        fd = (float(f(sigma.at[i].add(h))) - float(f(sigma.at[i].add(-h)))) / (2 * h)
        np.testing.assert_allclose(g[i], fd, rtol=1e-5, atol=1e-9)
    assert np.all(g[np.asarray(sigma) == 0] == 0)
    assert np.all(g >= -1e-12)  # Rayleigh monotonicity: more conductivity never hurts


def test_gradient_of_series_layers_closed_form():
    s = jnp.linspace(0.3, 1.2, SHAPE[0])
    sigma = jnp.broadcast_to(s[:, None, None], SHAPE).astype(jnp.float64)
    opts = SolverOptions(rtol=1e-12, flux_tol=1e-9)
    g = jax.grad(lambda x: effective_conductivity(x, options=opts, dtype=jnp.float64, sigma_ref=1.0).sigma_eff)(sigma)
    # sigma_eff = n0 / sum(1/s) ; d/ds_i of one layer, spread evenly over its n1 * n2 voxels
    n0, n1, n2 = SHAPE
    total = float(jnp.sum(1 / s))
    expect = n0 / total**2 / s**2 / (n1 * n2)
    np.testing.assert_allclose(np.asarray(g)[:, 0, 0], np.asarray(expect), rtol=1e-7)


def test_vmap_equals_loop():
    fields = np.stack([_random_field(10), _random_field(11, p=0.45), np.ones(SHAPE)]).astype(np.float32)
    fields[2, 5] = 0  # blocked: must not stall the batch
    batched = jax.jit(jax.vmap(lambda s: effective_conductivity(s, sigma_ref=1.0)))(jnp.asarray(fields))
    for b in range(len(fields)):
        one = effective_conductivity(fields[b], sigma_ref=1.0)
        np.testing.assert_allclose(float(batched.sigma_eff[b]), float(one.sigma_eff), rtol=1e-5)
        assert bool(batched.percolates[b]) == bool(one.percolates)
    assert not bool(batched.percolates[2]) and bool(jnp.all(batched.converged))
    d = batched.to_dict()
    assert isinstance(d["sigma_eff"], list) and len(d["sigma_eff"]) == 3


def test_progress_chunks_give_the_same_answer():
    sigma = _random_field(6).astype(np.float32)
    seen = []
    a = effective_conductivity(sigma, preconditioner="jacobi", progress=lambda s: seen.append(int(s.iterations)), chunk=5)
    b = effective_conductivity(sigma, preconditioner="jacobi")
    assert seen[0] == 0 and seen == sorted(seen) and len(seen) > 2
    np.testing.assert_allclose(float(a.sigma_eff), float(b.sigma_eff), rtol=1e-6)
    assert int(a.iterations) >= int(b.iterations)


def test_not_converged_is_reported():
    r = effective_conductivity(_random_field(7).astype(np.float32), preconditioner="none", max_iter=3)
    assert not bool(r.converged) and int(r.iterations) == 3 and float(r.relative_residual) > 1e-5


def test_m_factor_phases_and_axes():
    lab = np.zeros((12, 10, 8), np.uint8)
    lab[:, :, :3] = 2
    lab[:, :, 3:5] = 1
    pore = m_factor(lab, "pore")
    np.testing.assert_allclose(float(pore.m_factor), 3 / 8, rtol=1e-5)
    np.testing.assert_allclose(float(pore.tau_eff), 1, rtol=1e-5)
    solid = m_factor(lab, "solid", {2: 1.0, 1: 0.01})
    np.testing.assert_allclose(float(solid.m_factor), (3 + 0.02) / 8, rtol=1e-5)
    np.testing.assert_allclose(float(solid.eps), 5 / 8, rtol=1e-6)
    # across the stripes nothing of the cb / graphite-only phases percolates in x ... but the
    # solid as a whole does, in series: harmonic mean over x with half-voxel ends
    across = m_factor(lab, "solid", {2: 1.0, 1: 0.01}, axis="x")
    assert not bool(across.percolates)  # the pore stripe at x >= 5 blocks the flow
    graphite_z = m_factor(np.swapaxes(lab, 0, 2), "graphite", axis="x")
    np.testing.assert_allclose(float(graphite_z.m_factor), 3 / 8, rtol=1e-5)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: effective_conductivity(-np.ones(SHAPE)), ">= 0"),
        (lambda: effective_conductivity(np.full(SHAPE, np.nan)), "NaN"),
        (lambda: effective_conductivity(np.full(SHAPE, np.inf)), "finite"),
        (lambda: effective_conductivity(np.zeros(SHAPE)), "absent"),
        (lambda: effective_conductivity(np.ones((4, 4))), "3D"),
        (lambda: effective_conductivity(np.ones(SHAPE), "w"), "axis"),
        (lambda: effective_conductivity(np.ones(SHAPE), rtol=2.0), "rtol"),
        (lambda: effective_conductivity(np.ones(SHAPE), preconditioner="ilu"), "preconditioner"),
        (lambda: m_factor(np.ones(SHAPE, np.uint8), "pore"), "absent"),
        (lambda: m_factor(np.full(SHAPE, 3, np.uint8), "pore"), "labels"),
        (lambda: m_factor(np.zeros(SHAPE, np.uint8), "liquid"), "unknown phase"),
        (lambda: m_factor(np.ones(SHAPE, np.uint8), "solid", {2: 1.0}), "no value"),
        (lambda: m_factor(np.ones(SHAPE, np.uint8), "solid", {2: 1.0, 1: -1}), ">= 0"),
        (lambda: m_factor(np.ones(SHAPE, np.uint8), "solid", {2: 1.0, 1: float("nan")}), ">= 0"),
        (lambda: m_factor(np.ones(SHAPE, np.uint8), "solid", {0: 1.0, 1: 1, 2: 1}), "not in phase"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_coarse_operator_is_galerkin_and_cycle_symmetric():
    from jaxcba.transport import multigrid as mgm

    shape = (7, 6, 5)
    rng = np.random.default_rng(9)
    sigma = rng.uniform(0.1, 1.0, shape)
    sigma[rng.random(shape) < 0.2] = 0
    st = sten.from_conductivity(jnp.asarray(sigma))
    coarse = mgm.coarsen(st)
    uc = sten.pad(jnp.asarray(rng.normal(size=mgm.coarse_shape(shape))))
    galerkin = mgm.restrict(sten.matvec(st, mgm.prolong(uc, shape)))
    np.testing.assert_allclose(np.asarray(sten.matvec(coarse, uc)), np.asarray(galerkin), rtol=1e-12, atol=1e-12)
    h = mgm.build(st, coarse_size=8)
    assert len(h.levels) >= 3
    r1, r2 = (sten.pad(jnp.asarray(rng.normal(size=shape))) for _ in range(2))
    a = float(jnp.sum(mgm.v_cycle(h, r1) * r2))
    b = float(jnp.sum(r1 * mgm.v_cycle(h, r2)))
    np.testing.assert_allclose(a, b, rtol=1e-10)
    assert float(jnp.sum(mgm.v_cycle(h, r1) * r1)) > 0


# ---- the labelled (memory-lean) path ------------------------------------------------------


def _labels(shape, seed, p=(0.45, 0.35, 0.2)):
    rng = np.random.default_rng(seed)
    return rng.choice(3, size=shape, p=p).astype(np.uint8)


@pytest.mark.parametrize("boundary", ["half_voxel", "ghost_voxel"])
@pytest.mark.parametrize("shape", [SHAPE, (13, 11, 9)])
def test_label_path_equals_conductivity_field_path(boundary, shape):
    """The lookup operator on class codes gives the stored-face solve of the same field."""
    from jaxcba.transport import conductivity_field, label_conductivity

    lab = _labels(shape, 20)
    for cond in ({0: 1.0}, {1: 1.0, 2: 1.0}, {2: 1.0, 1: 0.01}, {2: 3.0, 1: 0.5, 0: 0.2}):
        phase = "pore" if list(cond) == [0] else ("solid" if 0 not in cond else None)
        sigma = np.zeros(shape, np.float32)
        for k, v in cond.items():
            sigma[lab == k] = v
        ref = effective_conductivity(sigma, boundary=boundary, rtol=1e-7, sigma_ref=max(cond.values()))
        ours = label_conductivity(lab, cond, boundary=boundary, rtol=1e-7)
        assert bool(ours.converged) and bool(ours.percolates) == bool(ref.percolates)
        np.testing.assert_allclose(float(ours.sigma_eff), float(ref.sigma_eff), rtol=2e-5)
        np.testing.assert_allclose(float(ours.eps), float(ref.eps), rtol=1e-6)
        if phase is not None:
            np.testing.assert_allclose(np.asarray(conductivity_field(lab, phase, cond)), sigma)


def test_label_operator_matches_stored_faces():
    """LabelStencil's looked-up faces, matvec, diagonal and read-outs equal the stored stencil's."""
    lab = _labels((7, 6, 5), 21)
    table = {1: 1.0, 2: 0.01}
    sigma = np.vectorize(lambda v: table.get(v, 0.0))(lab).astype(np.float64)
    for boundary in ("half_voxel", "ghost_voxel"):
        stored = sten.from_conductivity(jnp.asarray(sigma), boundary)
        codes = np.where(lab == 1, 1, np.where(lab == 2, 2, 0))
        looked = sten.from_codes(codes, [1.0, 0.01], boundary, jnp.float64)
        for k in range(3):
            np.testing.assert_allclose(np.asarray(looked.full(k)), np.asarray(stored.g[k]), rtol=1e-12)
        u = sten.pad(jnp.asarray(np.random.default_rng(0).normal(size=lab.shape)))
        np.testing.assert_allclose(np.asarray(sten.matvec(looked, u)), np.asarray(sten.matvec(stored, u)), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(sten.diagonal(looked)), np.asarray(sten.diagonal(stored)), rtol=1e-12)
        np.testing.assert_allclose(float(sten.dissipation(looked, u)), float(sten.dissipation(stored, u)), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(sten.layer_currents(looked, u)), np.asarray(sten.layer_currents(stored, u)), rtol=1e-12)


@pytest.mark.parametrize("boundary", ["half_voxel", "ghost_voxel"])
def test_coarsened_label_operator_equals_coarsened_stored_faces(boundary):
    """Coarse faces looked up from strided codes = the stored fine faces coarsened (odd, even, 1)."""
    from jaxcba.transport import multigrid as mgm

    for i, shape in enumerate([(7, 6, 5), (8, 4, 6), (5, 1, 3), (9, 4, 1), (2, 3, 2)]):
        looked = sten.from_codes(_labels(shape, 30 + i), [0.01, 1.0], boundary, jnp.float64)
        stored = sten.Stencil(g=tuple(looked.full(k) for k in range(3)))
        for a, b in zip(mgm.coarsen(looked).g, mgm.coarsen(stored).g):
            assert a.shape == b.shape
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("guess", ["linear", "zero"])
@pytest.mark.parametrize("boundary", ["half_voxel", "ghost_voxel"])
def test_guess_start_from_face_sums_equals_the_guess_itself(guess, boundary):
    """Residual, dissipation and inlet current of the initial guess without the guess."""
    from jaxcba.transport import solver

    lab = _labels((13, 11, 9), 26)
    cls, _, _ = solver._classes(jnp.asarray(lab), (1, 2), jnp.float64)
    st = sten.from_codes(cls, [0.01, 1.0], boundary, jnp.float64)
    prob = cg.make_problem(st, "jacobi")
    opts = SolverOptions(boundary=boundary, initial_guess=guess)
    u0, r, d, j0 = cg.initial_residual(prob, solver._guess(prob, opts, jnp.float64))
    r2, d2, j2 = sten.guess_start(st, guess, boundary)
    np.testing.assert_allclose(np.asarray(r2), np.asarray(r), rtol=0, atol=1e-15)
    np.testing.assert_allclose(float(d2), float(d), rtol=1e-13)
    np.testing.assert_allclose(float(j2), float(sten.layer_currents(st, u0)[0]), rtol=1e-13)
    np.testing.assert_allclose(float(j2), float(j0), rtol=1e-13)


def test_tracked_scalars_follow_the_iterate():
    """Without u the solve tracks D(u), the inlet current and the plane currents exactly
    (float64): they equal the read-outs of the iterate a solve that keeps u holds."""
    lab = _labels(SHAPE, 27)
    from jaxcba.transport import solver

    cls, _, _ = solver._classes(jnp.asarray(lab), (1, 2), jnp.float64)
    st = sten.from_codes(cls, [0.01, 1.0], "half_voxel", jnp.float64)
    prob = cg.make_problem(st, "multigrid")
    u0 = solver._linear_guess(SHAPE, "half_voxel", jnp.float64)
    kept = cg.initial_state(prob, u0, 1e-15, jnp.asarray(True))
    _, r, d, j0 = cg.initial_residual(prob, u0)
    lean = cg.state_from_residual(prob, r, d, j0, 1e-15, jnp.asarray(True))
    assert lean.u is None
    for stop in (1, 3, 6):
        kept = cg.advance(prob, kept, stop, 1e-15, 1e-15)
        lean = cg.advance(prob, lean, stop, 1e-15, 1e-15)
        assert int(lean.iterations) == int(kept.iterations) == stop
        np.testing.assert_allclose(float(lean.dissipation[0]), float(sten.dissipation(st, kept.u)), rtol=1e-11)
        currents = np.asarray(sten.layer_currents(st, kept.u))
        np.testing.assert_allclose(float(lean.inlet_current[0]), currents[0], rtol=1e-11)
        top = currents.max()
        np.testing.assert_allclose(float(cg.residual_imbalance(lean.r, lean.inlet_current)),
                                   (top - currents.min()) / top, rtol=1e-8)


def test_sum_by_axis_keeps_float32_sums_accurate():
    """A jitted float32 sum of 96^3 positive terms (CPU options of the solver) to 2e-7 (one
    running sum: 5e-7)."""
    from jaxcba.transport import solver

    x = np.random.default_rng(28).uniform(0.5, 1.5, (96, 96, 96)).astype(np.float32)
    total = solver._Jit(lambda a: sten.sum_by_axis(a * 1.0))(jnp.asarray(x))
    np.testing.assert_allclose(float(total), x.astype(np.float64).sum(), rtol=2e-7)


def test_label_path_progress_and_vmap():
    from jaxcba.transport import label_conductivity

    lab = _labels(SHAPE, 22)
    seen = []
    a = m_factor(lab, "solid", {2: 1.0, 1: 0.01}, progress=lambda s: seen.append(int(s.iterations)), chunk=3)
    b = m_factor(lab, "solid", {2: 1.0, 1: 0.01})
    assert seen[0] == 0 and seen == sorted(seen) and len(seen) > 2
    np.testing.assert_allclose(float(a.sigma_eff), float(b.sigma_eff), rtol=1e-5)
    batch = np.stack([lab, _labels(SHAPE, 23)])
    vm = jax.vmap(lambda x: label_conductivity(x, {0: 1.0}))(jnp.asarray(batch))
    for i in range(2):
        np.testing.assert_allclose(float(vm.sigma_eff[i]), float(m_factor(batch[i], "pore").sigma_eff), rtol=1e-5)


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_conductivities_are_rescaled(scale):
    """Only ratios matter: extreme but finite conductivities give the scaled answer."""
    sigma = _random_field(12).astype(np.float32)
    ref = effective_conductivity(sigma, sigma_ref=1.0)
    big = effective_conductivity(sigma * np.float32(scale), sigma_ref=scale)
    assert bool(big.converged)
    np.testing.assert_allclose(float(big.m_factor), float(ref.m_factor), rtol=1e-5)
    lab = _labels(SHAPE, 24)
    a = m_factor(lab, "solid", {2: 1.0, 1: 0.01})
    b = m_factor(lab, "solid", {2: scale, 1: 0.01 * scale})
    np.testing.assert_allclose(float(b.m_factor), float(a.m_factor), rtol=1e-5)
    np.testing.assert_allclose(float(b.sigma_eff), scale * float(a.sigma_eff), rtol=1e-5)


def test_non_finite_residual_stops_at_once():
    sigma = jnp.asarray(_random_field(13), jnp.float32)
    st = sten.from_conductivity(sigma)
    prob = cg.make_problem(st, "multigrid")
    u0 = sten.pad(jnp.full(SHAPE, jnp.nan, jnp.float32))
    state = cg.initial_state(prob, u0, 1e-5, jnp.asarray(True))
    state = jax.jit(cg.advance)(prob, state, 100, 1e-5, 1e-2)
    assert not bool(state.converged) and bool(state.stalled)
    assert int(state.iterations) <= 1


def test_compact_inverse_diagonal():
    """uint16 storage = bfloat16 rounding of the float32 inverse diagonal."""
    from jaxcba.transport import multigrid as mgm

    st = sten.from_conductivity(jnp.asarray(_random_field(14), jnp.float32))
    full = mgm._inverse_diagonal(st)
    compact = mgm.expand(mgm._inverse_diagonal(st, jnp.uint16), jnp.float32)
    np.testing.assert_allclose(np.asarray(compact), np.asarray(full.astype(jnp.bfloat16).astype(jnp.float32)), rtol=0, atol=0)


def test_m_factor_lean_and_field_paths_agree():
    lab = _labels(SHAPE, 25)
    for phase, cond in (("pore", None), ("solid", {2: 1.0, 1: 0.01})):
        a = m_factor(lab, phase, cond)
        b = m_factor(lab, phase, cond, lean=False)
        np.testing.assert_allclose(float(a.m_factor), float(b.m_factor), rtol=2e-5)
        np.testing.assert_allclose(float(a.eps), float(b.eps), rtol=1e-7)


def test_auto_path_follows_the_memory_and_refuses_what_cannot_fit(monkeypatch):
    from jaxcba.transport import phases

    shape = (40, 40, 40)
    lean_need, stored_need = phases.m_factor_bytes(shape, True), phases.m_factor_bytes(shape, False)
    assert lean_need < stored_need
    monkeypatch.setattr(phases, "available_bytes", lambda: stored_need + 1)
    assert phases.choose_path(shape) is True  # the labelled solve: leaner and no slower
    assert phases.choose_path(shape, lean=False) is False
    monkeypatch.setattr(phases, "available_bytes", lambda: (lean_need + stored_need) // 2)
    assert phases.choose_path(shape) is True
    with pytest.raises(ValueError, match="stored-face path.*GiB is available"):
        phases.choose_path(shape, lean=False)
    monkeypatch.setattr(phases, "available_bytes", lambda: lean_need - 1)
    with pytest.raises(ValueError, match=r"needs about .* GiB \(labelled path\)"):
        phases.m_factor(np.zeros(shape, np.uint8), "pore")
    assert phases.choose_path(shape, check_memory=False) is True
    with pytest.raises(ValueError, match="lean must be"):
        phases.choose_path(shape, lean="yes")
