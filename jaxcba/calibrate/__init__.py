"""Calibration of the eight parameters from a labelled image (paper Section 3.2).

The public API, listed once here (the modules are private):

* :func:`calibrate` -> :class:`CalibrationResult`: the staged pipeline (``jaxcba calibrate``),
  configured by strategy objects (one options object, :class:`Strategies`, or as keywords): ``stage1=`` :class:`Eq17` | :class:`Contact`, ``stage2=``
  :class:`Masked` | :class:`Cutout`, ``stage3=`` :class:`Pores` (``search=`` :class:`ScanBrent` |
  :class:`Grid`, ``realizations=`` :class:`Realizations`), ``joint=`` :class:`Joint` | ``None``.
* Stage 1 (:func:`fit_graphite`, :func:`fit_graphite_contact`): the graphite Boolean model from
  intrinsic volumes (Eq. 17) or from the contact distribution.
* Stage 2 (:func:`fit_excursion`, :func:`refit_given_theta`): mu (Eq. 19) and eta (Eq. 21).
* Stage 3 (:func:`fit_pores`, :class:`FromStage2`): theta by CPSD matching (Eq. 26), lambda_Y by Eq. 25.
* Joint mode (:func:`fit_joint`): all eight parameters through soft realizations.
* Optimisers: :func:`minimize` with :class:`LBFGS`, :class:`Adam`, :class:`NelderMead`;
  :func:`minimize_host` (:class:`Refresh`); :class:`OptimResult`, :class:`Status`.
* Uncertainty (every calibration, ``CalibrationResult.uncertainty``): :func:`delta_uncertainty`
  (:class:`StageFits`, :class:`Delta`: implicit derivatives of the stage losses, block covariance
  of the descriptors) and
  :func:`bootstrap_uncertainty` (:class:`Bootstrap`: twins from the fitted parameters), as
  :class:`Uncertainty` / :class:`UncertaintySet` / :class:`Interval`.
* Every result derives from :class:`Result` (``to_dict`` / ``from_dict`` / ``to_json``).
"""

from jaxcba.calibrate._box import Box
from jaxcba.calibrate._cutout import find_cutout, large_pore_region, largest_free_box
from jaxcba.calibrate._joint import HeldOut, Joint, JointResult, fit_joint, held_out_comparison
from jaxcba.calibrate._optimize import (
    METHODS,
    LBFGS,
    Adam,
    NelderMead,
    OptimResult,
    Refresh,
    Status,
    evaluations_to_reach,
    make_solver,
    minimize,
    minimize_host,
)
from jaxcba.calibrate._pipeline import (
    CalibrationResult,
    CalibrationWarning,
    DescriptorRow,
    Pores,
    Strategies,
    calibrate,
    parse_stages,
    stage1_strategy,
)
from jaxcba.calibrate._result import Result
from jaxcba.calibrate._stage1_contact import Contact, ContactDistribution, contact_distribution, fit_graphite_contact
from jaxcba.calibrate._stage1_graphite import (
    DEFAULT_BOUNDS,
    Eq17,
    Stage1Result,
    default_starts,
    eq17_loss,
    eq17_weights,
    fit_graphite,
    model_densities,
)
from jaxcba.calibrate._stage2_excursion import (
    ESTIMATORS,
    Cutout,
    ExcursionGivenTheta,
    Masked,
    Stage2Result,
    fit_excursion,
    refit_given_theta,
)
from jaxcba.calibrate._stage3_pores import (
    PAPER_THETA_GRID,
    SEARCHES,
    FromStage2,
    Grid,
    Realizations,
    ScanBrent,
    Stage3Result,
    ThetaSearch,
    fit_pores,
    lambda_y_for,
)
from jaxcba.calibrate._targets import (
    MIN_GRAPHITE_FRACTION,
    MIN_GRAPHITE_PARTICLES,
    PAPER_TARGETS,
    GraphiteTargets,
    check_graphite_for_stage1,
    graphite_densities_of_image,
)
from jaxcba.calibrate._uncertainty import (
    DERIVED,
    Bootstrap,
    Delta,
    Interval,
    StageFits,
    Uncertainty,
    UncertaintySet,
    bootstrap_set,
    bootstrap_uncertainty,
    delta_uncertainty,
    derived_values,
    implicit_jacobian,
    profile_jacobian,
    stage1_jacobian,
    stage2_jacobian,
)

__all__ = [
    "calibrate", "Strategies", "CalibrationResult", "CalibrationWarning", "DescriptorRow", "parse_stages",
    "stage1_strategy", "Eq17", "Contact", "Masked", "Cutout", "Pores", "ScanBrent", "Grid", "Realizations",
    "Joint", "fit_graphite", "fit_graphite_contact", "fit_excursion", "refit_given_theta", "fit_pores", "FromStage2",
    "fit_joint", "held_out_comparison", "minimize", "minimize_host", "Refresh", "LBFGS", "Adam", "NelderMead",
    "OptimResult", "Status", "Result", "Box", "contact_distribution", "ContactDistribution", "default_starts",
    "eq17_loss", "eq17_weights", "evaluations_to_reach", "ExcursionGivenTheta", "find_cutout",
    "graphite_densities_of_image", "GraphiteTargets", "HeldOut", "JointResult", "lambda_y_for",
    "large_pore_region", "largest_free_box", "make_solver", "model_densities", "Stage1Result", "Stage2Result",
    "Stage3Result", "ThetaSearch", "DEFAULT_BOUNDS", "ESTIMATORS", "METHODS", "PAPER_TARGETS",
    "PAPER_THETA_GRID", "SEARCHES", "Bootstrap", "Delta", "StageFits", "Uncertainty", "UncertaintySet", "Interval",
    "delta_uncertainty", "bootstrap_uncertainty", "bootstrap_set", "derived_values", "implicit_jacobian", "stage1_jacobian",
    "stage2_jacobian", "profile_jacobian", "check_graphite_for_stage1", "DERIVED", "MIN_GRAPHITE_PARTICLES",
    "MIN_GRAPHITE_FRACTION",
]
