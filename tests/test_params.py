import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcba import CBAParams
from jaxcba.model.params import FIELDS

TABLE2 = dict(lambda_x=6.355e-11, alpha1=205, alpha2=3944, gamma=1.971, mu=0.499, eta=0.0127, theta=0.0105, lambda_y=9.340e-9)


def test_paper_is_table2():
    assert CBAParams.paper().to_dict() == pytest.approx(TABLE2, rel=0)


def test_json_round_trip_has_exactly_the_eight_keys(tmp_path):
    p = CBAParams.paper().replace(mu=-0.3)
    path = tmp_path / "p.json"
    p.to_json(path)
    data = json.loads(path.read_text())
    assert list(data) == list(FIELDS)
    assert CBAParams.from_json(path).to_dict() == p.to_dict()


@pytest.mark.parametrize(
    "change, field",
    [
        ({"gamma": -1.0}, "gamma"),
        ({"lambda_x": -1e-12}, "lambda_x"),
        ({"alpha1": float("nan")}, "alpha1"),
        ({"eta": float("inf")}, "eta"),
        ({"theta": -0.01}, "theta"),
        ({"lambda_y": -1e-9}, "lambda_y"),
        ({"mu": float("nan")}, "mu"),
    ],
)
def test_validate_names_field_and_range(change, field):
    with pytest.raises(ValueError, match=field) as err:
        CBAParams.paper().replace(**change).validate()
    assert "allowed" in str(err.value)


def test_mu_may_be_negative():
    CBAParams.paper().replace(mu=-2.0).validate()


def test_lambda_x_zero_is_the_two_phase_sub_model():
    CBAParams.paper().replace(lambda_x=0.0).validate()


def test_from_dict_rejects_missing_and_extra_keys():
    d = dict(TABLE2)
    del d["eta"]
    with pytest.raises(ValueError, match="missing.*eta"):
        CBAParams.from_dict(d)
    with pytest.raises(ValueError, match="unknown.*zeta"):
        CBAParams.from_dict({**TABLE2, "zeta": 1.0})
    with pytest.raises(ValueError, match="must be a number"):
        CBAParams.from_dict({**TABLE2, "mu": "high"})


def test_is_a_pytree_through_jit_grad_vmap():
    p = CBAParams.paper()
    f = lambda q: q.lambda_x * q.alpha1 + q.mu**2  # noqa: E731
    g = jax.jit(jax.grad(f))(jax.tree_util.tree_map(jnp.asarray, p))
    assert float(g.mu) == pytest.approx(2 * 0.499)
    assert float(g.lambda_x) == pytest.approx(205.0)
    batch = jax.tree_util.tree_map(lambda v: jnp.full((3,), v), p)
    out = jax.vmap(f)(batch)
    assert out.shape == (3,)
    assert len(jax.tree_util.tree_leaves(p)) == 8
    assert isinstance(p, eqx.Module)


def test_in_voxels_section_3_3():
    v = CBAParams.paper().in_voxels(40.0)
    assert v["lambda_x"] == pytest.approx(6.355e-11 * 40**3)
    assert v["shape1"] == pytest.approx(205 / 40)
    assert v["eta"] == pytest.approx(0.0127 * 40)
    assert v["gamma"] == 1.971 and v["mu"] == 0.499
    np.testing.assert_allclose(v["lambda_y"], 9.34e-9 * 64000)
