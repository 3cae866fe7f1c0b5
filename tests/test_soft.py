"""Soft realizations: limit softness -> 0, gradients vs finite differences, batching, theory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcba
from jaxcba import theory
from jaxcba.model import FIELDS
from jaxcba.model.soft import draw_noise, realize_noise, simulate_soft, simulate_soft_batch, soft_labels

PAPER = jaxcba.CBAParams.paper()
SHAPE = (64, 64, 64)


@pytest.fixture(scope="module")
def noise64():
    return draw_noise(jax.random.key(0), SHAPE, 80.0, softness_max=0.25)


@pytest.fixture(scope="module")
def soft64():
    return jax.jit(simulate_soft, static_argnums=(2, 3))


def test_converges_to_hard_from_same_noise(noise64, soft64):
    hard = np.asarray(realize_noise(PAPER, noise64, SHAPE, 80.0))
    assert set(np.unique(hard)) == {0, 1, 2}
    g, cb = soft64(PAPER, noise64, SHAPE, 80.0, 0.05)
    g, cb = np.asarray(g), np.asarray(cb)
    assert g.shape == cb.shape == SHAPE
    assert g.min() >= 0 and g.max() <= 1 and cb.min() >= 0 and (g + cb).max() <= 1 + 1e-6
    agree = (np.asarray(soft_labels(g, cb)) == hard).mean()
    assert agree >= 0.995, agree
    # and the soft fractions equal the hard ones closely
    assert abs(g.mean() - (hard == 2).mean()) < 2e-3
    assert abs(cb.mean() - (hard == 1).mean()) < 4e-3
    # softer -> further from the hard volume, but still close in mean
    g2, cb2 = soft64(PAPER, noise64, SHAPE, 80.0, 0.25)
    assert (np.asarray(soft_labels(g2, cb2)) == hard).mean() < agree + 1e-9


def test_value_tracks_theory(noise64, soft64):
    """Mean graphite / cb probability near V1 and V2(1-V1)(1-V3) on one 5 um window.

    sd of one 64^3 window at 80 nm: graphite ~0.03 (few grains ~4 um wide), cb ~0.015
    (the window mean of the long-range correlated field fluctuates); the 200^3 hard
    windows of test_realization.py pin the fractions down to ~0.005."""
    th = theory.volume_fractions(PAPER, voxel_nm=80.0)
    g, cb = soft64(PAPER, noise64, SHAPE, 80.0, 0.25)
    assert abs(float(g.mean()) - float(th.graphite)) < 0.09
    assert abs(float(cb.mean()) - float(th.cb)) < 0.045


@pytest.mark.slow  # one float64 value_and_grad compilation (~20-40 s on 2 cores)
def test_gradient_matches_finite_differences():
    """d/dp of mean graphite + mean cb probabilities, every parameter, same noise, float64."""
    shape = (32, 32, 32)
    nz = draw_noise(jax.random.key(3), shape, 80.0, softness_max=0.5)

    def stat(p):
        g, cb = simulate_soft(p, nz, shape, 80.0, 0.5, dtype=jnp.float64)
        return g.mean() + 0.5 * cb.mean()

    vg = jax.jit(jax.value_and_grad(stat))

    def f(p):
        return vg(p)[0]

    base = {k: float(v) for k, v in PAPER.to_dict().items()}
    _, grad = vg(PAPER)
    for name in FIELDS:
        h = 1e-4 * abs(base[name])
        up = f(PAPER.replace(**{name: base[name] + h}))
        dn = f(PAPER.replace(**{name: base[name] - h}))
        fd = float(up - dn) / (2 * h)
        g = float(getattr(grad, name))
        assert np.isfinite(g), name
        scale = abs(base[name])  # compare d stat / d log p
        assert abs(g - fd) * scale < 2e-3 * max(abs(fd) * scale, 1e-3), (name, g, fd)
        assert abs(g) * scale > 1e-6, (name, g)  # every parameter matters


@pytest.mark.slow  # compiles the vmapped soft realization
def test_vmap_over_parameters(noise64, soft64):
    lam = jnp.asarray([PAPER.lambda_x, 1.3 * PAPER.lambda_x])
    mu = jnp.asarray([PAPER.mu, 0.2])
    batch = PAPER.replace(lambda_x=lam, mu=mu)
    g, cb = simulate_soft_batch(batch, noise64, SHAPE, 80.0, 0.25)
    assert g.shape == (2,) + SHAPE
    g1, cb1 = soft64(PAPER.replace(lambda_x=1.3 * PAPER.lambda_x, mu=0.2), noise64, SHAPE, 80.0, 0.25)
    assert np.allclose(np.asarray(g[1]), np.asarray(g1), atol=1e-3)
    assert np.allclose(np.asarray(cb[1]), np.asarray(cb1), atol=1e-3)
    assert float(g[1].mean()) > float(g[0].mean())  # more germs, more graphite


def test_noise_validity_checks(noise64):
    with pytest.raises(ValueError, match="softness"):
        simulate_soft(PAPER, noise64, SHAPE, 80.0, 1.0)
    with pytest.raises(ValueError, match="intensities"):
        simulate_soft(PAPER.replace(lambda_x=3 * PAPER.lambda_x), noise64, SHAPE, 80.0, 0.1)
    with pytest.raises(ValueError, match="grain sizes"):
        simulate_soft(PAPER.replace(theta=PAPER.theta / 2), noise64, SHAPE, 80.0, 0.1)
    with pytest.raises(ValueError, match="noise was drawn"):
        simulate_soft(PAPER, noise64, (32, 32, 32), 80.0, 0.1)
    with pytest.raises(ValueError, match="voxel_nm"):
        draw_noise(jax.random.key(0), 16, -1.0)
    with pytest.raises(ValueError, match="every side"):
        draw_noise(jax.random.key(0), (16, 0, 16), 80.0)


@pytest.mark.slow
def test_soft_graphite_fraction_tracks_theory_as_window_grows():
    # Smaller platelets (mean C = 406 nm) so that windows of 1-2 µm hold many grains.
    p = PAPER.replace(alpha2=800.0, lambda_x=1.0e-9)
    v1 = float(theory.volume_fractions(p, 40.0).graphite)  # 0.0726
    soft = jax.jit(simulate_soft, static_argnums=(2, 3))
    stats = {}
    for n in (24, 48):
        vals = []
        for s in range(4):
            noise = draw_noise(jax.random.key(s), (n,) * 3, 40.0, p, softness_max=0.05)
            g, _ = soft(p, noise, (n,) * 3, 40.0, 0.05)
            vals.append(float(jnp.mean(g)))
        stats[n] = (np.mean(vals), np.std(vals, ddof=1) / 2.0)  # mean and its standard error (4 noises)
    for n, (m, se) in stats.items():  # each within 3 standard errors of Eq. 10
        assert abs(m - v1) <= 3 * se + 2e-3, (n, m, se, v1)
    assert stats[48][1] < stats[24][1]  # the scatter shrinks with the window
    assert abs(stats[48][0] - v1) < 0.02
