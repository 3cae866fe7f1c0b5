"""experiments/inverse_design.py: the --quick form designs lambda_X whose hard M hits the target.

Stated tolerance (docs/experiments.md): at CI size (32^3 at 80 nm, 4 design noises) the check is
the twin experiment's -- the mean HARD solid M-factor on the design noises at the designed
lambda_X is within 10 % of the requested value (a target those noises reach by construction).
The fresh-seed mean is only checked to be positive and finite here: one realization's M
scatters by ~100 % at this window size, so 4 fresh seeds cannot resolve 10 %
(docs/experiments.md gives the measurement at a larger size).
"""

import csv
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1] / "experiments"


def _load():
    spec = importlib.util.spec_from_file_location("inverse_design", ROOT / "inverse_design.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_soft_sigma_floor_and_gradient():
    """The soft conductivity field is finite, floored, and its M has a finite, positive
    derivative in the graphite probability even where sigmoid tails underflow to 0."""
    import jax
    import jax.numpy as jnp

    from jaxcba.transport import effective_conductivity

    mod = _load()
    rng = np.random.default_rng(0)
    g = jnp.asarray((rng.random((12, 12, 12)) < 0.3) * 1.0, jnp.float32)  # exact 0/1 "probabilities"
    cb = jnp.asarray(rng.random((12, 12, 12)) * 0.5, jnp.float32) * (1 - g)
    cb = cb.at[:, :, :4].set(0.0)  # a block with sigma = 0 before the floor
    s = mod.soft_sigma(g, cb)
    assert float(s.min()) == pytest.approx(mod.SIGMA_FLOOR)

    def m(t):
        return effective_conductivity(mod.soft_sigma(g * t, cb), "z", sigma_ref=1.0).m_factor

    d = jax.grad(m)(jnp.float32(1.0))
    assert np.isfinite(float(d)) and float(d) > 0


def test_bad_arguments_exit_2(capsys):
    mod = _load()
    assert mod.main(["--target", "-1"]) == 2
    assert "--target" in capsys.readouterr().out
    assert mod.main(["--lambda-min", "2e-10", "--lambda-max", "1e-10"]) == 2


@pytest.mark.slow
def test_quick_twin_design_within_tolerance(tmp_path):
    mod = _load()
    assert mod.main(["--quick", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    with open(tmp_path / "verification.csv") as fh:
        verif = {r["set"]: r for r in csv.DictReader(fh)}
    same = verif["design noises"]
    assert abs(float(same["rel_error"])) <= summary["tolerance"] == 0.10
    fresh = verif["fresh seeds"]
    assert int(fresh["n"]) == 4 and math.isfinite(float(fresh["mean_M"])) and float(fresh["mean_M"]) > 0
    with open(tmp_path / "history.csv") as fh:
        hist = list(csv.DictReader(fh))
    assert len(hist) == 8 and all(math.isfinite(float(h["dL/dlog_lambda_x"])) for h in hist)
    # the soft path's elasticity d log M / d log lambda_X is positive (more graphite conducts better)
    assert all(float(h["elasticity_soft"]) > 0 for h in hist)
    assert (tmp_path / "inverse_design.png").stat().st_size > 1000
