"""The optimiser runner: optax L-BFGS / Adam and scipy Nelder–Mead against closed-form minima."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcba.calibrate import OptimResult, evaluations_to_reach, minimize


def rosenbrock(x, a):
    return jnp.sum(a * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


_A = np.array([[3.0, 1.0, 0.2], [1.0, 2.0, 0.5], [0.2, 0.5, 1.5]])
_B = np.array([1.0, -2.0, 0.5])


def quadratic(x, a, b):
    return 0.5 * x @ a @ x - b @ x


@pytest.mark.parametrize("method", ["lbfgs", "nelder-mead"])
def test_rosenbrock_minimum(method):
    res = minimize(rosenbrock, jnp.array([-1.2, 1.0]), method, args=(100.0,))
    assert isinstance(res, OptimResult)
    assert res.converged, res.message
    np.testing.assert_allclose(np.asarray(res.x), [1.0, 1.0], atol=1e-4)
    assert res.loss < 1e-8
    assert res.method == method
    assert res.loss_history[0] == pytest.approx(24.2)  # f(-1.2, 1) of Rosenbrock
    # the history never increases (accepted steps only / best-so-far)
    assert np.all(np.diff(res.loss_history) <= 1e-12)


def test_lbfgs_needs_fewer_evaluations_than_nelder_mead():
    lb = minimize(rosenbrock, jnp.array([-1.2, 1.0]), "lbfgs", args=(100.0,))
    nm = minimize(rosenbrock, jnp.array([-1.2, 1.0]), "nelder-mead", args=(100.0,))
    assert lb.n_grad == lb.n_fev and nm.n_grad == 0
    assert lb.fev_history[-1] == lb.n_fev and len(nm.loss_history) == nm.n_fev
    k_lb, k_nm = evaluations_to_reach(lb, 1e-8), evaluations_to_reach(nm, 1e-8)
    assert k_lb is not None and k_nm is not None and k_lb < k_nm


@pytest.mark.parametrize("method", ["lbfgs", "adam", "nelder-mead"])
def test_quadratic_matches_linear_solve(method):
    expected = np.linalg.solve(_A, _B)
    res = minimize(quadratic, jnp.zeros(3), method, args=(jnp.asarray(_A), jnp.asarray(_B)), max_steps=3000,
                   learning_rate=0.05, gtol=1e-9)
    assert res.converged, res.message
    np.testing.assert_allclose(np.asarray(res.x), expected, atol=1e-5)
    assert res.loss == pytest.approx(-0.5 * _B @ expected, abs=1e-9)


def test_pytree_parameters_and_no_recompile():
    def loss(p, c):
        return (p["a"] - c) ** 2 + jnp.sum((p["b"] + 1.0) ** 2)

    x0 = {"a": jnp.asarray(0.0), "b": jnp.zeros(2)}
    r1 = minimize(loss, x0, "lbfgs", args=(jnp.asarray(3.0),))
    r2 = minimize(loss, x0, "lbfgs", args=(jnp.asarray(-2.0),))
    assert float(r1.x["a"]) == pytest.approx(3.0, abs=1e-6) and float(r2.x["a"]) == pytest.approx(-2.0, abs=1e-6)
    np.testing.assert_allclose(np.asarray(r2.x["b"]), [-1.0, -1.0], atol=1e-6)
    assert r2.compile_seconds == 0.0  # cached runner reused for new args
    d = r1.to_dict()
    assert d["method"] == "lbfgs" and len(d["x"]) == 3 and d["converged"] is True


def test_budget_exhausted_is_reported():
    res = minimize(rosenbrock, jnp.array([-1.2, 1.0]), "lbfgs", args=(100.0,), max_steps=3)
    assert not res.converged
    assert "max_steps=3" in res.message
    assert res.n_steps == 3
    nm = minimize(rosenbrock, jnp.array([-1.2, 1.0]), "nelder-mead", args=(100.0,), max_fev=20)
    assert not nm.converged and "not converged" in nm.message


@pytest.mark.parametrize("method", ["lbfgs", "adam"])
def test_non_finite_loss_is_reported(method):
    def loss(x, c):
        return jnp.sum(jnp.log(x + c))  # goes to -inf / nan as x decreases below -c

    res = minimize(loss, jnp.array([1.0]), method, args=(0.5,), max_steps=200, learning_rate=0.5)
    assert not res.converged
    assert np.isfinite(res.loss)  # the last finite point is returned, flagged


def test_bad_input():
    with pytest.raises(ValueError, match="unknown method"):
        minimize(rosenbrock, jnp.zeros(2), "bfgs", args=(1.0,))
    with pytest.raises(ValueError, match="finite"):
        minimize(rosenbrock, jnp.array([np.nan, 1.0]), args=(1.0,))
