"""``calibrate(labels, voxel_nm)``: the staged pipeline (stages 1, 2, 3) and the joint mode.

Stages (paper Section 3.2): 1 graphite (:class:`Eq17` or :class:`Contact`) -> 2 excursion set
(:class:`Masked` or :class:`Cutout`) -> 3 large pores (:class:`Pores`: a theta search, the
realizations, the profile re-fit of stage 2) -> optionally the joint refinement of all eight
parameters (:class:`Joint`). A subset of stages keeps the other parameters at ``initial``
(default: the paper's Table 2).

Every stage that did not converge adds a line to ``CalibrationResult.warnings``, is reported
by ``warnings.warn`` (:class:`CalibrationWarning`), and makes ``CalibrationResult.converged``
False: such a result is flagged, never a silent fit.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from jaxcba._checks import check_voxel_nm
from jaxcba.calibrate._joint import Joint, JointResult, fit_joint
from jaxcba.calibrate._measure import checked_labels, masked_axis_two_point
from jaxcba.calibrate._optimize import METHODS
from jaxcba.calibrate._result import Result, field
from jaxcba.calibrate._stage1_contact import Contact
from jaxcba.calibrate._stage1_graphite import Eq17, Stage1Result, model_densities, stage1_solver
from jaxcba.calibrate._stage2_excursion import (
    Cutout,
    Masked,
    Stage2Result,
    estimator_of,
    masked_model,
    refit_given_theta,
)
from jaxcba.calibrate._stage3_pores import FromStage2, Realizations, Stage3Result, fit_pores, searches_of
from jaxcba.calibrate._targets import check_graphite_for_stage1
from jaxcba.calibrate._uncertainty import (Bootstrap, StageFits, Uncertainty, bootstrap_uncertainty, delta_uncertainty,
                                           write_params)
from jaxcba.model.params import CBAParams
from jaxcba.theory import graphite_two_point, volume_fractions


class CalibrationWarning(UserWarning):
    """A calibration stage did not converge (the result is flagged ``converged=False``)."""


@dataclasses.dataclass(frozen=True)
class DescriptorRow(Result):
    """One line of the target (image) vs fitted (model) table; non-finite numbers are JSON null."""

    _json_order = ("name", "unit", "target", "fitted", "rel_error", "source")

    name: str
    unit: str
    target: float
    fitted: float
    source: str = ""

    @property
    def rel_error(self) -> float:
        if self.target == 0 or not math.isfinite(self.target):
            return float("nan")
        return (self.fitted - self.target) / abs(self.target)


def _stages_encode(stages):
    return stages if isinstance(stages, str) else list(stages)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CalibrationResult(Result):
    """Outcome of :func:`calibrate`.

    Attributes:
        params: the calibrated :class:`CBAParams`.
        voxel_nm: voxel side of the image [nm] (the half-axis convention's).
        stages: which stages ran (``(1, 2, 3)`` or ``"joint"``).
        stage1, stage2, stage3, joint: per-stage results (``None`` when not run).
        rows: target (image) vs fitted (model) descriptors, :class:`DescriptorRow` (JSON: ``descriptors``).
        converged: every stage converged; ``warnings``: one line per problem.
        seconds_by_stage: wall time per stage [s].
    """

    params: CBAParams
    voxel_nm: float
    stages: tuple | str = field(encode=_stages_encode, decode=lambda v: parse_stages(v))
    stage1: Stage1Result | None = None
    stage2: Stage2Result | None = None
    stage3: Stage3Result | None = None
    joint: JointResult | None = None
    rows: tuple[DescriptorRow, ...] = field((), key="descriptors")
    converged: bool
    warnings: tuple[str, ...] = ()
    seconds_by_stage: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    uncertainty: Uncertainty | None = None

    def write_params(self, path=None) -> str:
        """``params.json``: the eight values and the ``uncertainty`` block beside them (strict JSON,
        written atomically to ``path`` if given; loadable by :meth:`CBAParams.from_json`)."""
        return write_params(path, self.params, self.uncertainty)

    def table(self) -> str:
        """The target-vs-fitted table as aligned text."""
        lines = [f"{'descriptor':<28} {'unit':<7} {'image':>12} {'model':>12} {'rel.err':>8}  source"]
        for r in self.rows:
            rel = r.rel_error
            lines.append(f"{r.name:<28} {r.unit:<7} {r.target:>12.5g} {r.fitted:>12.5g} "
                         f"{(f'{100 * rel:+.1f}%' if math.isfinite(rel) else '-'):>8}  {r.source}")
        lines.append("")
        lines.append("parameters: " + ", ".join(f"{k}={v:.5g}" for k, v in self.params.to_dict().items()))
        lines.extend(f"note: {n}" for n in self.notes)
        if self.uncertainty is not None:
            lines.append("")
            lines.append(self.uncertainty.table())
            lines.append("")
        lines.append(f"converged: {self.converged}" + ("" if self.converged else " (" + "; ".join(self.warnings) + ")"))
        return "\n".join(lines)


def parse_stages(stages) -> tuple[int, ...] | str:
    """``(1, 2, 3)``-like, ``"1,2,3"`` or ``"joint"`` -> a sorted tuple of stages or ``"joint"``."""
    if isinstance(stages, str):
        if stages.strip().lower() == "joint":
            return "joint"
        try:
            stages = [int(s) for s in stages.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"stages {stages!r} must be 'joint' or a comma-separated subset of 1,2,3") from None
    out = tuple(sorted(set(int(s) for s in stages)))
    if not out or any(s not in (1, 2, 3) for s in out):
        raise ValueError(f"stages must be 'joint' or a non-empty subset of (1, 2, 3), got {stages!r}")
    return out


# ------------------------------------------------------------------------------ options
#: ``stage1="auto"`` uses the contact distribution for voxels coarser than this [nm].
CONTACT_ABOVE_NM = 25.0
#: ... and windows of at least this many voxels per side (the contact distribution is measured
#: at r = 3 .. side/8 voxels with minus sampling, so smaller windows leave too few radii).
CONTACT_MIN_SIDE = 64


@dataclasses.dataclass(frozen=True)
class Pores:
    """Stage 3's set-up in the pipeline.

    ``search``: ``"golden"`` (:class:`ScanBrent`, default), ``"grid"`` (:class:`Grid`), ``"both"``, a
    strategy or a tuple of them; ``realizations``: :class:`Realizations` (default 3, the image's
    window and graphite, seed 0); ``profile``: after the masked stage 2, re-fit its
    ``(mu, eta, V3)`` at every trial theta and report the values at the chosen theta (default);
    ``False``: keep stage 2's ``(mu, eta)``.
    """

    search: object = "golden"
    realizations: Realizations = Realizations()
    profile: bool = True

    def __post_init__(self):
        searches_of(self.search)
        if not isinstance(self.realizations, Realizations):
            raise ValueError(f"Pores.realizations must be a Realizations(...), got {self.realizations!r}")


def stage1_strategy(choice, voxel_nm: float, side: int = CONTACT_MIN_SIDE, starts: int = 4) -> "Eq17 | Contact":
    """``"auto"``, ``"eq17"``, ``"contact"`` or a strategy -> the stage 1 strategy.

    ``"auto"``: :class:`Contact` for voxels coarser than :data:`CONTACT_ABOVE_NM` with sides of at
    least :data:`CONTACT_MIN_SIDE` voxels (the 2x2x2 K of thin platelets is ~2x too large at 40 nm),
    else :class:`Eq17`."""
    if isinstance(choice, (Eq17, Contact)):
        return choice
    if choice not in ("auto", "eq17", "contact"):
        raise ValueError(f"stage1_descriptor must be 'auto', 'eq17' or 'contact', got {choice!r}")
    if choice == "auto":
        choice = "contact" if voxel_nm > CONTACT_ABOVE_NM and side >= CONTACT_MIN_SIDE else "eq17"
    return Contact(starts=starts) if choice == "contact" else Eq17(starts=starts)


@dataclasses.dataclass(frozen=True)
class Strategies:
    """The options object of :func:`calibrate`: one strategy per stage.

    ``stage1``: :class:`Eq17`, :class:`Contact`, ``"eq17"``, ``"contact"`` or ``"auto"`` (default;
    :func:`stage1_strategy`); ``stage2``: :class:`Masked` (default, ``"masked"``) or :class:`Cutout`
    (``"cutout"``: the box found automatically); ``stage3``: :class:`Pores` (default ``Pores()``);
    ``joint``: :class:`Joint` to refine all eight parameters after stages 1-3 (``stages="joint"``
    alone uses ``Joint()``; its seed defaults to stage 3's), or ``None``; ``uncertainty``:
    ``True`` (default): standard errors and 95 % intervals by the delta method, a
    :class:`Bootstrap`: the parametric bootstrap as well, ``False``: none.
    ``calibrate(..., stage1=X)`` is ``calibrate(..., strategies=Strategies(stage1=X))``.
    """

    stage1: object = "auto"
    stage2: object = "masked"
    stage3: Pores | None = None
    joint: Joint | None = None
    uncertainty: "bool | Bootstrap" = True

    def __post_init__(self):
        if not (isinstance(self.stage1, (Eq17, Contact)) or self.stage1 in ("auto", "eq17", "contact")):
            raise ValueError(f"stage1 must be Eq17(...), Contact(...), 'auto', 'eq17' or 'contact', got {self.stage1!r}")
        if not (isinstance(self.stage2, (Masked, Cutout)) or self.stage2 in ("masked", "cutout")):
            raise ValueError(f"stage2 must be Masked(...), Cutout(...), 'masked' or 'cutout', got {self.stage2!r}")
        if self.stage3 is not None and not isinstance(self.stage3, Pores):
            raise ValueError(f"stage3 must be Pores(...) or None, got {self.stage3!r}")
        if self.joint is not None and not isinstance(self.joint, Joint):
            raise ValueError(f"joint must be Joint(...) or None, got {self.joint!r}")
        if not isinstance(self.uncertainty, (bool, Bootstrap)):
            raise ValueError(f"uncertainty must be True, False or Bootstrap(n, ...), got {self.uncertainty!r}")

    def stages_repr(self) -> str:
        """``Strategies(stage1=.., stage2=.., stage3=.., joint=..)``: the four stage strategies
        (what identifies a bootstrap's calibration of its twins)."""
        return f"Strategies({', '.join(f'{k}={getattr(self, k)!r}' for k in _STAGE_FIELDS)})"


_STAGE_FIELDS = ("stage1", "stage2", "stage3", "joint")
_STRATEGY_FIELDS = _STAGE_FIELDS + ("uncertainty",)


def _strategies_from(strategies: Strategies | None, keywords: dict) -> Strategies:
    """``strategies`` or the strategy keywords ``stage1=`` .. ``joint=`` (popped from ``keywords``), not both."""
    given = {k: keywords.pop(k) for k in _STRATEGY_FIELDS if k in keywords}
    if strategies is None:
        return Strategies(**given)
    if not isinstance(strategies, Strategies):
        raise ValueError(f"strategies must be a Strategies(...), got {strategies!r}")
    if given:
        raise ValueError(f"give {sorted(given)} on the strategies=Strategies(...) object, not beside it")
    return strategies


_LEGACY = ("graphite_targets", "stage1_starts", "stage1_options", "stage1_descriptor", "stage2_estimator", "cutout",
           "theta_search", "stage3_profile", "n_realizations", "window", "seed", "joint_options")


class _Plan:
    """The strategies of one :func:`calibrate` run (from the objects, or from the keyword form)."""

    def __init__(self, vol, voxel_nm, stages, method, strategies: Strategies | None, keywords: dict):
        kw = dict(keywords)
        chosen = _strategies_from(strategies, kw)
        unknown = set(kw) - set(_LEGACY)
        if unknown:
            raise TypeError(f"calibrate() got unexpected keyword argument(s) {sorted(unknown)}")
        stage1, stage2, stage3, joint = (getattr(chosen, k) for k in _STAGE_FIELDS)
        self.uncertainty = chosen.uncertainty
        self.stage1 = _stage1_from(stage1, voxel_nm, min(vol.shape), method, kw.pop("stage1_starts", 4),
                                   kw.pop("graphite_targets", None), kw.pop("stage1_options", None),
                                   kw.pop("stage1_descriptor", None))
        self.stage2 = estimator_of(kw.pop("stage2_estimator", stage2), kw.pop("cutout", None))
        self.stage3 = _pores_from(stage3, kw)
        self.joint_seed = self.stage3.realizations.seed
        self.joint = _joint_from(joint, stages, method, kw.pop("joint_options", None))
        if self.joint is not None and self.joint.seed is not None:
            self.joint_seed = self.joint.seed
        self.stages = "joint" if self.joint is not None else stages
        self.run = (1, 2, 3) if self.joint is not None else stages


def _stage1_from(stage1, voxel_nm, side, method, starts, targets, options, descriptor) -> "Eq17 | Contact":
    """The stage 1 strategy; ``starts``, ``targets``, ``options``, ``descriptor``: the keyword form."""
    if descriptor is not None:
        stage1 = descriptor
    if isinstance(stage1, (Eq17, Contact)):
        if targets is not None or options or starts != 4:
            raise ValueError("give graphite_targets, stage1_starts and stage1_options on the stage1 object")
        return stage1
    if targets is not None:
        if stage1 == "contact":
            raise ValueError("stage1_descriptor='contact' measures the image; it cannot use given graphite_targets")
        stage1 = "eq17"
    kind = type(stage1_strategy(stage1, voxel_nm, side))
    options = dict(options or {})
    if kind is Contact:
        fields = {k: options.pop(k) for k in ("r_min_vox",) if k in options}
        return Contact(starts=starts, solver=stage1_solver(method, **options) if options else None, **fields)
    fields = {k: options.pop(k) for k in ("weight_nm", "term_weights", "bounds") if k in options}
    solver = stage1_solver(method, adam_rate=0.02, **options) if options else None
    return Eq17(starts=starts, targets=targets, solver=solver, **fields)


def _pores_from(stage3, kw) -> Pores:
    """``stage3`` or the keyword form (``theta_search``, ``stage3_profile``, ``n_realizations``, ``window``, ``seed``)."""
    keys = ("theta_search", "stage3_profile", "n_realizations", "window", "seed")
    given = {k: kw.pop(k) for k in keys if k in kw}
    if stage3 is not None:
        if given:
            raise ValueError(f"give {sorted(given)} on the stage3=Pores(...) object")
        return stage3
    window = given.get("window")
    real = Realizations(n=given.get("n_realizations", 3), window=window, seed=given.get("seed", 0),
                        condition_on_graphite=window is None)
    return Pores(search=given.get("theta_search", "golden"), realizations=real, profile=given.get("stage3_profile", True))


def _joint_from(joint, stages, method, joint_options) -> Joint | None:
    """The joint mode's options: ``joint``, the keyword form ``joint_options``, or the defaults for ``stages="joint"``."""
    if joint is not None:
        if joint_options is not None:
            raise ValueError("give the joint mode's settings as joint=Joint(...) or as joint_options, not both")
        if stages not in ("joint", (1, 2, 3)):
            raise ValueError(f"the joint mode runs after all three stages; stages={stages!r} with joint=...")
        return joint
    if stages != "joint":
        if joint_options is not None:
            raise ValueError("joint_options need stages='joint'")
        return None
    opts = dict(joint_options or {})
    if method == "nelder-mead" and "method" not in opts:
        raise ValueError("the joint mode needs a gradient method (adam or lbfgs), not nelder-mead")
    return Joint.from_options(**opts)


def calibrate(labels, voxel_nm: float, stages=(1, 2, 3), method: str = "lbfgs", *,
              strategies: Strategies | None = None, initial: CBAParams | None = None, progress: bool = False,
              **keywords) -> CalibrationResult:
    """Calibrate the eight parameters to a labelled image (paper Section 3.2).

    Args:
        labels: ``(z, y, x)`` labels: 0 pore, 1 carbon black + binder, 2 graphite.
        voxel_nm: voxel side [nm] (also the gamma half-axis convention's voxel size).
        stages: ``(1, 2, 3)`` (default), a subset, ``"1,2,3"``, or ``"joint"`` (the three stages, then
            the joint mode with ``joint`` or its defaults).
        method: optimiser of stages 1 and 2 (and stage 3's profile re-fits): ``"lbfgs"``,
            ``"adam"`` or ``"nelder-mead"``, or a solver object; a strategy's own ``solver`` wins.
        strategies: :class:`Strategies` (``stage1``, ``stage2``, ``stage3``, ``joint``,
            ``uncertainty``); default ``Strategies()``.
        initial: parameters of the stages not run (default: Table 2).
        progress: tqdm bars on stderr.
        **keywords: the fields of :class:`Strategies` as keywords (``stage1=Eq17(...)``,
            ``stage2=``, ``stage3=``, ``joint=``, ``uncertainty=``: ``True`` (default), the delta
            method's standard errors and 95 % intervals in ``CalibrationResult.uncertainty``; a
            :class:`Bootstrap`: the parametric bootstrap as well; ``False``: none; not together
            with ``strategies``), or the
            older keyword form of the strategies: ``graphite_targets``, ``stage1_starts``,
            ``stage1_options``, ``stage1_descriptor``, ``stage2_estimator``, ``cutout``,
            ``theta_search``, ``stage3_profile``, ``n_realizations``, ``window``, ``seed``,
            ``joint_options`` (docs/calibration.md).

    Returns:
        :class:`CalibrationResult`.
    """
    t_all = time.perf_counter()
    stages = parse_stages(stages)
    voxel_nm = check_voxel_nm(voxel_nm)
    if isinstance(method, str) and method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    vol = checked_labels(labels)
    plan = _Plan(vol, voxel_nm, stages, method, strategies, keywords)
    uncertainty = plan.uncertainty
    run = _Run(vol, voxel_nm, method, progress, (initial or CBAParams.paper()).validate().to_dict())
    run.sensitivity = uncertainty is not False
    notes = _two_phase(vol, plan, run)
    s1 = run.timed("stage1", _stage1, plan) if 1 in plan.run else None
    s2 = run.timed("stage2", _stage2, plan) if 2 in plan.run else None
    s3 = run.timed("stage3", _stage3, plan, s2) if 3 in plan.run else None
    j = run.timed("joint", _joint, plan) if plan.joint is not None else None
    params = CBAParams(**run.values).validate()
    rows = _descriptor_rows(vol, voxel_nm, params, s1, s2, s3)
    if j is not None:
        rows.extend(_joint_rows(j))
    unc = None
    if uncertainty is not False:
        unc = run.timed("uncertainty", _uncertainty, plan, params, (s1, s2, s3, j), uncertainty, initial, stages)
    for msg in run.problems:
        warnings.warn(msg, CalibrationWarning, stacklevel=2)
    run.seconds["total"] = time.perf_counter() - t_all
    return CalibrationResult(
        params=params, voxel_nm=voxel_nm, stages=plan.stages, stage1=s1, stage2=s2, stage3=s3, joint=j,
        rows=tuple(rows), converged=not run.problems, warnings=tuple(run.problems), seconds_by_stage=run.seconds,
        notes=tuple(notes), uncertainty=unc,
    )


def _two_phase(vol, plan: _Plan, run: "_Run") -> list[str]:
    """A pore/solid image (no label 2): the sub-model without graphite (lambda_x = 0, stages 2 and 3).
    An image with too little graphite for stage 1: ``ValueError`` (:func:`check_graphite_for_stage1`)."""
    if np.any(vol == 2):
        if 1 in plan.run and getattr(plan.stage1, "targets", None) is None:
            check_graphite_for_stage1(vol)
        return []
    if plan.joint is not None:
        raise ValueError("the joint mode needs an image with graphite (label 2); this image has labels 0 and 1 "
                         "only: calibrate it with --stages 2,3 (the two-phase sub-model, lambda_x = 0)")
    if plan.run == (1,):
        raise ValueError("stage 1 fits the graphite (label 2), and this image has none (labels 0 and 1 only): "
                         "run --stages 2,3 for the two-phase sub-model without graphite (lambda_x = 0)")
    plan.run = tuple(s for s in plan.run if s != 1)
    plan.stages = plan.run
    run.values["lambda_x"] = 0.0
    return ["two-phase image (labels 0 pore, 1 solid; no graphite): fitted the sub-model without graphite, "
            "lambda_x = 0 (stages 2 and 3); alpha1, alpha2, gamma are unused placeholders"]


def _uncertainty(run: "_Run", plan: _Plan, params: CBAParams, results, uncertainty, initial, stages) -> Uncertainty:
    s1, s2, s3, j = results
    fits = StageFits(s1, s2, s3, stage1_from_image=getattr(plan.stage1, "targets", None) is None, joint=j is not None)
    delta = delta_uncertainty(run.vol, run.voxel_nm, params, fits)
    boot = None
    if isinstance(uncertainty, Bootstrap):
        strategies = Strategies(stage1=plan.stage1, stage2=plan.stage2, stage3=plan.stage3, joint=plan.joint,
                                uncertainty=False)
        twin_stages = (1, 2, 3) if plan.joint is not None else stages

        def recalibrate(twin):
            return calibrate(twin, run.voxel_nm, twin_stages, run.method, strategies=strategies, initial=initial)

        settings = {"stages": _stages_encode(twin_stages), "method": str(run.method),
                    "strategies": strategies.stages_repr(),
                    "initial": (initial or CBAParams.paper()).to_dict()}
        fixed = {i.name: "fixed" for i in delta.parameters if i.method == "fixed"}
        boot = bootstrap_uncertainty(params, run.vol.shape, run.voxel_nm, recalibrate, uncertainty, settings=settings,
                                     fixed=fixed, progress=run.progress)
    return Uncertainty(delta=delta, bootstrap=boot)


class _Run:
    """The state of one :func:`calibrate` run: the parameter values so far, the problems, the timings."""

    def __init__(self, vol, voxel_nm, method, progress, values):
        self.vol, self.voxel_nm, self.method, self.progress, self.values = vol, voxel_nm, method, progress, values
        self.problems: list[str] = []
        self.seconds: dict[str, float] = {}
        self.sensitivity = False

    def timed(self, name, stage, *args):
        t0 = time.perf_counter()
        out = stage(self, *args)
        self.seconds[name] = time.perf_counter() - t0
        return out


def _stage1(run: _Run, plan: _Plan) -> Stage1Result:
    s1 = plan.stage1.fit_image(run.vol, run.voxel_nm, run.method, run.progress)
    run.values.update(s1.params)
    if not s1.converged:
        run.problems.append(f"stage 1 did not converge: {s1.message}")
    return s1


def _stage2(run: _Run, plan: _Plan) -> Stage2Result:
    s2 = plan.stage2.fit(run.vol, run.voxel_nm, run.method, run.progress)
    run.values.update(mu=s2.mu, eta=s2.eta)
    if not s2.converged:
        run.problems.append(f"stage 2 did not converge: {s2.message}")
    return s2


def _stage3(run: _Run, plan: _Plan, s2: Stage2Result | None) -> Stage3Result:
    base = CBAParams(**run.values)
    v2 = s2.v2 if s2 is not None else float(1.0 - ndtr(base.mu))
    hint = s2.theta if (s2 is not None and math.isfinite(s2.theta)) else None
    profile = None
    if s2 is not None and s2.estimator == "masked" and plan.stage3.profile:
        profile = functools.partial(refit_given_theta, s2, method=run.method)  # theta -> the re-fitted stage 2

    s3 = fit_pores(run.vol, run.voxel_nm, base, FromStage2(v2, theta_hint=hint, profile=profile),
                   search=plan.stage3.search, realizations=plan.stage3.realizations, progress=run.progress,
                   sensitivity=run.sensitivity)
    run.values.update(theta=s3.theta, lambda_y=s3.lambda_y)
    if s3.excursion is not None:  # stage 2's (mu, eta) re-fitted at stage 3's theta
        run.values.update(mu=s3.excursion.mu, eta=s3.excursion.eta)
        if not s3.excursion.converged:
            run.problems.append(f"stage 3: the re-fit of stage 2's (eta, V3) at theta = {s3.theta:.4g} nm^-1 "
                                "did not converge")
    if not s3.converged:
        run.problems.append(f"stage 3: {s3.message}")
    return s3


def _joint(run: _Run, plan: _Plan) -> JointResult:
    j = fit_joint(run.vol, run.voxel_nm, CBAParams(**run.values).validate(), options=plan.joint,
                  seed=plan.joint_seed, progress=run.progress)
    run.values.update(j.params.to_dict())
    if not j.converged:
        run.problems.append(f"joint mode did not converge: {j.message}")
    return j


def _descriptor_rows(vol, voxel_nm, params, s1, s2, s3) -> list[DescriptorRow]:
    """Image vs model: graphite densities, phase fractions, C_G(h) misfit, CPSD misfit."""
    rows = []
    if s1 is not None:
        d = np.asarray(model_densities(jnp.asarray([params.lambda_x, params.alpha1, params.alpha2, params.gamma]),
                                       voxel_nm))
        for i, (name, unit) in enumerate((("graphite V_V", "1"), ("graphite S_V", "nm^-1"), ("graphite K_V (M_V)", "nm^-2"),
                                          ("graphite N_V (chi_V)", "nm^-3"))):
            used = s1.descriptor == "eq17" or i == 0
            rows.append(DescriptorRow(name, unit, float(s1.targets.as_array()[i]), float(d[i]),
                                      "stage 1, Miles" + ("" if used else " (held out)")))
        if s1.contact is not None:
            rows.append(DescriptorRow("graphite contact y(r) rms rel.", "1", 0.0, s1.residuals["y_rms"],
                                      "stage 1 (contact distribution)"))
        if np.any(vol == 2):
            rows.append(_graphite_two_point_row(vol, voxel_nm, params))
    vf = volume_fractions(params, voxel_nm)
    n = vol.size
    rows.append(DescriptorRow("graphite fraction", "1", np.count_nonzero(vol == 2) / n, float(vf.graphite), "theory"))
    rows.append(DescriptorRow("cb fraction", "1", np.count_nonzero(vol == 1) / n, float(vf.cb), "theory"))
    rows.append(DescriptorRow("solid fraction", "1", np.count_nonzero(vol) / n, float(vf.solid), "theory (Eq. 22)"))
    if s2 is not None:
        if s2.estimator == "cutout":  # a box free of graphite and large pores: the excursion set's fraction V2
            rows.append(DescriptorRow("cb | cutout box", "1", s2.q, float(vf.excursion), "theory (V2)"))
        else:  # the whole graphite-free region, thinned by the large pores: V2 (1 - V3)
            rows.append(DescriptorRow("cb | graphite-free", "1", s2.q, float(vf.cb / (1.0 - vf.graphite)), "theory"))
        c_fit, how = s2.c_fit, f"stage 2 ({s2.estimator})"
        ex = None if s3 is None else s3.excursion
        if ex is not None:
            c_fit = np.asarray(masked_model(jnp.asarray(s2.h_nm), s2.q, ex.eta, ex.theta, ex.v3))
            how = "stage 2 (masked) at stage 3's theta"
        rms = float(np.sqrt(np.mean((c_fit[1:] - s2.c_obs[1:]) ** 2)))
        rows.append(DescriptorRow("C(h) rms misfit", "1", 0.0, rms, how))
    if s3 is not None:
        rows.append(DescriptorRow("pore CPSD L1 distance", "nm", 0.0, s3.l1, f"stage 3 ({s3.best.method})"))
        r50_img = _r50(s3.r_nm, s3.cpsd_image)
        r50_mod = _r50(s3.r_nm, s3.best.cpsd_model)
        rows.append(DescriptorRow("pore r_max (CPSD=0.5)", "nm", r50_img, r50_mod, "stage 3 realizations"))
    return rows


def _graphite_two_point_row(vol, voxel_nm, params) -> DescriptorRow:
    """Held-out check of stage 1: rms over axis lags ``1 .. min(shape) / 4`` voxels of the graphite
    correlation ``(C1(h) - p^2) / (p - p^2)``, image (its own ``p``) vs the model's closed form
    (:func:`jaxcba.theory.graphite_two_point`). Not in Eq. 17; unbiased at any voxel size."""
    graphite = vol == 2
    max_lag = max(1, min(vol.shape) // 4)
    lags = np.unique(np.round(np.geomspace(1, max_lag, 10)).astype(int))
    c_img, _ = masked_axis_two_point(graphite, np.ones(vol.shape, bool), int(lags.max()))
    p_img = c_img[0]
    c_mod = np.asarray(graphite_two_point(params, jnp.asarray(np.concatenate([[0], lags]) * voxel_nm), voxel_nm))
    corr_img = (c_img[lags] - p_img**2) / (p_img - p_img**2)
    corr_mod = (c_mod[1:] - c_mod[0] ** 2) / (c_mod[0] - c_mod[0] ** 2)
    rms = float(np.sqrt(np.mean((corr_mod - corr_img) ** 2)))
    return DescriptorRow("graphite corr. rms misfit", "1", 0.0, rms,
                         f"held out: C1(h), h = {lags[0]}..{lags[-1]} voxels")


def _joint_rows(joint) -> list[DescriptorRow]:
    """Joint loss (staged -> joint) and held-out descriptors (image vs joint; the staged value in ``source``)."""
    rows = [DescriptorRow("joint soft loss", "1", joint.loss_initial, joint.loss,
                          f"joint ({joint.optim.method}); image column: at the staged params")]
    ho = joint.held_out
    if ho is not None:
        for i, name in enumerate(ho.names):
            rows.append(DescriptorRow(f"{name} (held out)", ho.units[i], ho.image[i], ho.joint[i],
                                      f"hard realizations; staged {ho.staged[i]:.4g}"))
        rows.append(DescriptorRow("held-out mean rel. error", "1", ho.mean_err_staged, ho.mean_err_joint,
                                  "image column: staged; model: joint" + (" (improved)" if ho.improved else "")))
    return rows


def _r50(r, c) -> float:
    c = np.asarray(c)
    idx = np.nonzero(c < 0.5)[0]
    if idx.size == 0:
        return float("nan")
    i = int(idx[0])
    if i == 0:
        return float(r[0])
    # linear interpolation between r[i-1] (>= 0.5) and r[i] (< 0.5)
    return float(r[i - 1] + (c[i - 1] - 0.5) / (c[i - 1] - c[i]) * (r[i] - r[i - 1]))
