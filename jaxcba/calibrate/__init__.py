"""Calibration of the eight parameters from a labelled image (paper Section 3.2).

* :func:`minimize` / :class:`OptimResult`: one runner for optax L-BFGS / Adam and scipy
  Nelder–Mead, used by every stage.
* Stage 1 (:func:`fit_graphite`): graphite Boolean model from intrinsic volumes (Eq. 17).
* Stage 2 (:func:`fit_excursion`): mu (Eq. 19) and eta (Eq. 21) of the excursion set.
* Stage 3 (:func:`fit_pores`): theta by CPSD matching (Eq. 26), lambda_Y by Eq. 25; after the
  masked stage 2 with stage 2's fit re-done at each trial theta (:func:`refit_given_theta`).
* :func:`calibrate`: the staged pipeline -> :class:`CalibrationResult` (``jaxcba calibrate``).
"""

from jaxcba.calibrate.optimize import METHODS, OptimResult, evaluations_to_reach, minimize
from jaxcba.calibrate.stage1_graphite import (
    PAPER_TARGETS,
    GraphiteTargets,
    Stage1Result,
    default_starts,
    eq17_loss,
    fit_graphite,
)

from jaxcba.calibrate.stage2_excursion import ExcursionGivenTheta, Stage2Result, fit_excursion, refit_given_theta
from jaxcba.calibrate.stage3_pores import Stage3Result, fit_pores
from jaxcba.calibrate.pipeline import CalibrationResult, CalibrationWarning, calibrate

__all__ = [
    "calibrate", "CalibrationResult", "CalibrationWarning", "fit_excursion", "Stage2Result", "fit_pores",
    "Stage3Result", "refit_given_theta", "ExcursionGivenTheta",
    "METHODS", "OptimResult", "minimize", "evaluations_to_reach",
    "GraphiteTargets", "Stage1Result", "fit_graphite", "eq17_loss", "default_starts", "PAPER_TARGETS",
]
