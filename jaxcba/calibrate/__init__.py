"""Calibration of the eight parameters from a labelled image (paper Section 3.2).

* :func:`minimize` / :class:`OptimResult`: one runner for optax L-BFGS / Adam and scipy
  Nelder–Mead, used by every stage.
* Stage 1 (:func:`fit_graphite`): graphite Boolean model from intrinsic volumes (Eq. 17).
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

__all__ = [
    "METHODS", "OptimResult", "minimize", "evaluations_to_reach",
    "GraphiteTargets", "Stage1Result", "fit_graphite", "eq17_loss", "default_starts", "PAPER_TARGETS",
]
