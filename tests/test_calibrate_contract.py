"""Contracts of the calibration layer, run over every result type and every strategy.

* Results: ``to_dict`` is JSON-serialisable and ``from_dict`` reads it back to the same JSON
  (a fixed point of ``json.dumps(type(r).from_dict(json.loads(r.to_json())).to_dict())``).
* Strategies and solvers: frozen, checked on construction (bad values raise ``ValueError``), and
  each ``fit`` returns its stage's result type with a boolean ``converged`` and a message.
"""

import dataclasses
import json
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcba
import jaxcba.preprocess
from helpers import SMALL_GRAPHITE, pore_twin, twin
from jaxcba import calibrate as cal
from jaxcba.calibrate._joint import HeldOut, JointResult

VOXEL = 40.0


@pytest.fixture(scope="module")
def image():
    p = jaxcba.CBAParams.paper().replace(**SMALL_GRAPHITE)
    return twin(tuple(p.to_dict().items()), 48, VOXEL, 3)


def _quadratic(x, a):
    return jnp.sum((x - a) ** 2)


@pytest.fixture(scope="module")
def results(image):
    """One instance of every result type (cheap settings; the joint ones built from their fields)."""
    out = {}
    out["OptimResult"] = cal.minimize(_quadratic, jnp.zeros(2), "lbfgs", args=(jnp.asarray([1.0, -2.0]),))
    out["OptimResult (nelder-mead)"] = cal.minimize(_quadratic, jnp.zeros(2), "nelder-mead",
                                                    args=(jnp.asarray([1.0, -2.0]),))  # grad_norm nan
    out["GraphiteTargets"] = cal.GraphiteTargets.paper()
    out["Stage1Result (eq17)"] = cal.fit_graphite(cal.GraphiteTargets.paper(), 20.0, starts=1, max_steps=50)
    out["Stage1Result (contact)"] = cal.Contact(starts=1).fit(image, VOXEL)
    out["ContactDistribution"] = cal.contact_distribution(image, VOXEL)
    out["Stage2Result (masked)"] = s2 = cal.Masked().fit(image, VOXEL)
    out["Stage2Result (cutout)"] = cal.Cutout(box=(0, 24, 0, 24, 0, 24)).fit(image, VOXEL)
    out["Box"] = cal.Box(0, 4, 1, 5, 2, 6)
    out["ExcursionGivenTheta"] = cal.refit_given_theta(s2, 0.01)
    truth, img = pore_twin(0.0105, 11, n=32)
    v2 = float(jaxcba.theory.volume_fractions(truth, VOXEL).excursion)
    s3 = cal.fit_pores(img, VOXEL, truth, v2, search=cal.Grid(thetas=(0.008, 0.0105, 0.014)),
                       realizations=cal.Realizations(n=1))
    out["Stage3Result"] = s3
    out["ThetaSearch"] = s3.best
    ho = HeldOut(names=("a", "b"), units=("nm", "1"), image=(1.0, float("nan")), staged=(1.1, 2.0), joint=(0.9, 2.0),
                 err_staged=(0.1, float("nan")), err_joint=(0.1, float("nan")), mean_err_staged=0.1,
                 mean_err_joint=0.1, improved=False, window=(8, 8, 8), n_realizations=1, seconds=0.5)
    out["HeldOut"] = ho
    p = jaxcba.CBAParams.paper()
    desc = {"fractions": np.array([0.1, 0.3, 0.6]), "sv": np.array([1e-3, 2e-3])}
    out["JointResult"] = JointResult(
        params=p, initial=p, optim=out["OptimResult"], loss_initial=1.0, loss=0.5, terms_initial={"sv": 1.0},
        terms={"sv": 0.5}, image=desc, model_initial=desc, model=desc, held_out=ho, soft_voxel_nm=80.0,
        window=(8, 8, 8), n_noise=1, softness=1.0, headroom=1.5, weights={"sv": 1.0}, n_tiles=1, converged=True,
        message="ok", seconds=1.0)
    out["DescriptorRow"] = cal.DescriptorRow("x", "1", 0.0, float("nan"), "test")  # rel_error nan -> null
    out["CalibrationResult"] = cal.calibrate(image, VOXEL, [2])
    out["Uncertainty"] = out["CalibrationResult"].uncertainty
    out["UncertaintySet"] = out["Uncertainty"].delta
    out["Interval"] = out["UncertaintySet"].get("eta")
    return out


RESULT_NAMES = ["OptimResult", "OptimResult (nelder-mead)", "GraphiteTargets", "Stage1Result (eq17)",
                "Stage1Result (contact)", "ContactDistribution", "Stage2Result (masked)", "Stage2Result (cutout)",
                "Box", "ExcursionGivenTheta", "Stage3Result", "ThetaSearch", "HeldOut", "JointResult",
                "DescriptorRow", "CalibrationResult", "Uncertainty", "UncertaintySet", "Interval"]


@pytest.mark.parametrize("name", RESULT_NAMES)
def test_result_json_round_trip(results, name):
    r = results[name]
    assert isinstance(r, cal.Result) and dataclasses.is_dataclass(r)
    text = r.to_json()
    back = type(r).from_json(text)
    assert type(back) is type(r)
    assert back.to_json() == text
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(r, dataclasses.fields(r)[0].name, None)


def test_every_result_type_is_covered(results):
    import inspect

    types = {obj for _, obj in inspect.getmembers(cal, inspect.isclass) if issubclass(obj, cal.Result)}
    types |= {HeldOut, JointResult, cal.ContactDistribution}
    assert {type(r) for r in results.values()} >= types - {cal.Result}


def test_non_finite_encodings(results):
    row = results["DescriptorRow"].to_dict()
    assert row["fitted"] is None and row["rel_error"] is None
    d = results["Stage2Result (cutout)"].to_dict()
    assert d["v3"] is None and d["theta"] is None
    assert math.isnan(cal.Stage2Result.from_dict(d).v3)
    # strict JSON everywhere (#18): no bare NaN / Infinity, null read back as NaN
    nm = results["OptimResult (nelder-mead)"]
    assert nm.to_dict()["grad_norm"] is None and math.isnan(type(nm).from_json(nm.to_json()).grad_norm)
    ho = results["HeldOut"].to_dict()
    assert ho["image"][1] is None and ho["err_staged"][1] is None
    assert math.isnan(HeldOut.from_dict(ho).image[1])
    cd = cal.ContactDistribution(r_nm=np.array([1.0, 2.0]), y=np.array([0.1, np.inf]), n_voxels=np.array([3, 4]))
    back = cal.ContactDistribution.from_json(cd.to_json())
    assert cd.to_dict()["y"] == [0.1, None] and np.isnan(back.y[1]) and back.n_voxels.dtype.kind == "i"
    for r in results.values():
        json.loads(r.to_json(), parse_constant=lambda c: pytest.fail(f"bare {c} in {type(r).__name__}"))


# ----------------------------------------------------------------------------- strategies
STRATEGIES = {
    "Eq17": (lambda: cal.Eq17(starts=1), dict(term_weights=(0, 1, 1, 1))),
    "Contact": (lambda: cal.Contact(starts=1), dict(starts=0)),
    "Masked": (lambda: cal.Masked(), dict(max_lag_nm=-1.0)),
    "Cutout": (lambda: cal.Cutout(box=(0, 24, 0, 24, 0, 24)), dict(large_pore_nm=float("nan"))),
    "ScanBrent": (lambda: cal.ScanBrent(bracket=(0.005, 0.02), ratio=2.0), dict(ratio=0.5)),
    "Grid": (lambda: cal.Grid(thetas=(0.008, 0.014)), dict(thetas=())),
    "Realizations": (lambda: cal.Realizations(n=1), dict(n=0)),
    "Pores": (lambda: cal.Pores(search="grid"), dict(search="random")),
    "Joint": (lambda: cal.Joint(window=16), dict(headroom=1.0)),
    "LBFGS": (lambda: cal.LBFGS(max_steps=10), dict(gtol=-1.0)),
    "Adam": (lambda: cal.Adam(learning_rate=0.1), dict(learning_rate=0.0)),
    "NelderMead": (lambda: cal.NelderMead(max_fev=100), dict(max_steps=0)),
    "Strategies": (lambda: cal.Strategies(stage2=cal.Masked(), stage3=cal.Pores()), dict(stage2="random")),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_is_frozen_and_checked(name):
    make, bad = STRATEGIES[name]
    s = make()
    assert dataclasses.is_dataclass(s) and s == make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(s, dataclasses.fields(s)[0].name, None)
    with pytest.raises(ValueError):
        dataclasses.replace(s, **bad)


@pytest.mark.parametrize("name, stage", [("Eq17", cal.Stage1Result), ("Contact", cal.Stage1Result),
                                         ("Masked", cal.Stage2Result), ("Cutout", cal.Stage2Result)])
def test_stage_strategy_fits(image, name, stage):
    s = STRATEGIES[name][0]()
    res = s.fit_image(image, VOXEL) if hasattr(s, "fit_image") else s.fit(image, VOXEL)
    assert isinstance(res, stage) and isinstance(res.converged, bool) and res.message


@pytest.mark.parametrize("name", ["ScanBrent", "Grid"])
def test_search_strategy_fits(name):
    truth, img = pore_twin(0.0105, 11, n=32)
    v2 = float(jaxcba.theory.volume_fractions(truth, VOXEL).excursion)
    res = cal.fit_pores(img, VOXEL, truth, v2, search=STRATEGIES[name][0](), realizations=cal.Realizations(n=1))
    assert isinstance(res, cal.Stage3Result) and res.best.method == STRATEGIES[name][0]().name
    assert isinstance(res.converged, bool) and res.message and res.theta in res.best.thetas + (res.best.theta,)


@pytest.mark.parametrize("solver", [cal.LBFGS(), cal.Adam(max_steps=2000), cal.NelderMead()], ids=lambda s: s.method)
def test_solver_minimises_a_quadratic(solver):
    res = cal.minimize(_quadratic, jnp.zeros(2), solver, args=(jnp.asarray([1.0, -2.0]),))
    assert res.converged and res.status.converged, res.message
    np.testing.assert_allclose(np.asarray(res.x), [1.0, -2.0], atol=1e-3)
    assert res.method == solver.method


def _tree_quadratic(x, a):
    return sum(jnp.sum((u - v) ** 2) for u, v in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(a)))


@pytest.mark.parametrize("solver", [cal.LBFGS(), cal.Adam(max_steps=2000), cal.NelderMead()], ids=lambda s: s.method)
def test_solver_keeps_the_pytree_of_x0(solver):
    x0 = {"a": jnp.zeros(2), "b": jnp.zeros((1, 2))}
    target = {"a": jnp.asarray([1.0, -2.0]), "b": jnp.asarray([[0.5, 3.0]])}
    res = cal.minimize(_tree_quadratic, x0, solver, args=(target,))
    assert res.converged, res.message
    chex.assert_trees_all_equal_shapes(res.x, x0)
    chex.assert_trees_all_close(res.x, target, atol=1e-3)


def _untimed(d):
    """``d`` without its wall times (``seconds``, ``compile_seconds``, ``seconds_by_stage``)."""
    if isinstance(d, dict):
        return {k: _untimed(v) for k, v in d.items() if "seconds" not in k}
    return [_untimed(v) for v in d] if isinstance(d, list) else d


def test_strategies_object_is_the_keyword_form(image, results):
    """``strategies=Strategies(stage2=X)`` is ``stage2=X``; both at once is an error."""
    res = cal.calibrate(image, VOXEL, [2], strategies=cal.Strategies(stage2="masked"))
    assert _untimed(res.to_dict()) == _untimed(results["CalibrationResult"].to_dict())
    with pytest.raises(ValueError, match="strategies"):
        cal.calibrate(image, VOXEL, [2], strategies=cal.Strategies(), stage2="masked")
    with pytest.raises(TypeError, match="unexpected keyword"):
        cal.calibrate(image, VOXEL, [2], stage4="x")


# --------------------------------------------------------------------- newer option objects
def _keep(x, aux):
    return aux


#: name -> (make, a bad replacement, the words its ValueError must name).
OPTIONS = {
    "Refresh": (lambda: cal.Refresh(_keep, 5), dict(every=0), r"Refresh\.every .* > 0"),
    "Refresh (fn)": (lambda: cal.Refresh(_keep, 5), dict(fn=3), r"Refresh\.fn must be callable"),
    "StageFits": (lambda: cal.StageFits(), dict(joint="yes"), r"StageFits\.joint must be True or False"),
    "Delta": (lambda: cal.Delta(), dict(blocks=1), r"Delta\.blocks .* >= 2"),
    "Delta (level)": (lambda: cal.Delta(), dict(level=1.5), r"Delta\.level .* \(0, 1\)"),
    "Bootstrap": (lambda: cal.Bootstrap(2, seed=3), dict(n=1), r"Bootstrap\.n .* >= 2"),
    "FromStage2": (lambda: cal.FromStage2(0.3, theta_hint=0.01), dict(v2=1.5), r"v2 must lie in \(0, 1\)"),
    "FromStage2 (profile)": (lambda: cal.FromStage2(0.3), dict(profile=3), r"FromStage2\.profile must be a function"),
    "Cleanup": (lambda: jaxcba.preprocess.Cleanup(closing_radius=2), dict(remove_components=False,
                                                                            min_component_voxels=5),
                r"min_component_voxels needs remove_components=True"),
    "GraphiteFromGrey": (lambda: jaxcba.preprocess.GraphiteFromGrey(np.zeros((4, 4, 4)), quantile=0.5),
                         dict(quantile=1.5), r"quantile .* \(0, 1\)"),
    "SolverOptions": (lambda: jaxcba.transport.SolverOptions(chunk=5), dict(chunk=0), r"chunk must be >= 1"),
    "Strategies (uncertainty)": (lambda: cal.Strategies(uncertainty=cal.Bootstrap(2)), dict(uncertainty="yes"),
                                 r"uncertainty must be True, False or Bootstrap"),
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_option_object_is_frozen_checked_and_round_trips(name):
    make, bad, words = OPTIONS[name]
    s = make()
    assert dataclasses.is_dataclass(s)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(s, dataclasses.fields(s)[0].name, None)
    with pytest.raises(ValueError, match=words):
        dataclasses.replace(s, **bad)
    # round trip through its fields: the same object back (GraphiteFromGrey compares by identity:
    # its fields instead, the grey volume by value)
    back = type(s)(**{f.name: getattr(s, f.name) for f in dataclasses.fields(s)})
    if type(s).__eq__ is object.__eq__:
        for f in dataclasses.fields(s):
            np.testing.assert_array_equal(getattr(back, f.name), getattr(s, f.name))
    else:
        assert back == s == make() and dataclasses.replace(s) == s


def test_strategies_stage_repr_is_the_four_stage_strategies():
    """A bootstrap folder's spec names the twins' strategies by the four stages (uncertainty left out)."""
    s = cal.Strategies(stage2=cal.Masked(), uncertainty=False)
    assert s.stages_repr() == "Strategies(stage1='auto', stage2=Masked(max_lag_nm=None, solver=None), stage3=None, joint=None)"
    assert s.stages_repr() == cal.Strategies(stage2=cal.Masked(), uncertainty=cal.Bootstrap(2)).stages_repr()


def test_minimize_host_refreshes_every_n_steps():
    """Adam in a host loop: ``state = refresh.fn(x, aux)`` after steps every, 2 every, ... (never at the last)."""
    calls = []

    def value_and_grad(x, state):
        return (jnp.sum((x - state) ** 2), x), 2.0 * (x - state)

    def refresh(x, aux):
        calls.append(float(aux[0]))
        return jnp.asarray([1.0])

    solver = cal.Adam(max_steps=12, learning_rate=0.1, patience=100)
    x0 = jnp.asarray([3.0])
    res, state = cal.minimize_host(value_and_grad, x0, solver, jnp.zeros(1), refresh=cal.Refresh(refresh, 5))
    assert len(calls) == 2 and "re-anchored at steps [5, 10]" in res.message, res.message
    assert float(state[0]) == 1.0
    _, none = cal.minimize_host(value_and_grad, x0, solver, jnp.zeros(1))
    assert float(none[0]) == 0.0
