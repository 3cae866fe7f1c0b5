"""``calibrate(labels, voxel_nm)``: the staged pipeline (stages 1, 2, 3) and the joint mode.

Stages (paper Section 3.2): 1 graphite (Eq. 17) -> 2 excursion set (Eqs. 18-21) -> 3 large
pores (Eqs. 24-26). ``stages="joint"`` runs the three stages and then refines all eight
parameters at once through soft realizations (:func:`jaxcba.calibrate.joint.fit_joint`). A subset of stages keeps the other
parameters at ``initial`` (default: the paper's Table 2).

Every stage that did not converge adds a line to ``CalibrationResult.warnings``, is
reported by ``warnings.warn``, and makes ``CalibrationResult.converged`` False: such a
result is flagged, never a silent fit.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Any

import numpy as np

from jaxcba.calibrate._measure import checked_labels
from jaxcba.calibrate.stage1_graphite import GraphiteTargets, Stage1Result, fit_graphite
from jaxcba.calibrate.stage2_excursion import Stage2Result, fit_excursion
from jaxcba.calibrate.stage3_pores import Stage3Result, fit_pores
from jaxcba.model.params import FIELDS, CBAParams


class CalibrationWarning(UserWarning):
    """A calibration stage did not converge (the result is flagged ``converged=False``)."""


@dataclasses.dataclass(frozen=True)
class DescriptorRow:
    """One line of the target-vs-fitted table."""

    name: str
    unit: str
    target: float
    fitted: float
    source: str

    @property
    def rel_error(self) -> float:
        if self.target == 0 or not math.isfinite(self.target):
            return float("nan")
        return (self.fitted - self.target) / abs(self.target)

    def to_dict(self) -> dict:
        return {"name": self.name, "unit": self.unit, "target": _num(self.target), "fitted": _num(self.fitted),
                "rel_error": _num(self.rel_error), "source": self.source}


def _num(x):
    return None if x is None or not math.isfinite(float(x)) else float(x)


@dataclasses.dataclass(frozen=True)
class CalibrationResult:
    """Outcome of :func:`calibrate`.

    Attributes:
        params: the calibrated :class:`CBAParams`.
        voxel_nm: voxel side of the image [nm] (the half-axis convention's).
        stages: which stages ran (``(1, 2, 3)`` or ``"joint"``).
        stage1, stage2, stage3, joint: per-stage results (``None`` when not run).
        rows: target (image) vs fitted (model) descriptors, :class:`DescriptorRow`.
        converged: every stage converged.
        warnings: one line per problem.
        seconds_by_stage: wall time per stage [s].
    """

    params: CBAParams
    voxel_nm: float
    stages: Any
    stage1: Stage1Result | None
    stage2: Stage2Result | None
    stage3: Stage3Result | None
    joint: Any
    rows: tuple
    converged: bool
    warnings: tuple
    seconds_by_stage: dict

    def table(self) -> str:
        """The target-vs-fitted table as aligned text."""
        lines = [f"{'descriptor':<28} {'unit':<7} {'image':>12} {'model':>12} {'rel.err':>8}  source"]
        for r in self.rows:
            rel = r.rel_error
            lines.append(f"{r.name:<28} {r.unit:<7} {r.target:>12.5g} {r.fitted:>12.5g} "
                         f"{(f'{100 * rel:+.1f}%' if math.isfinite(rel) else '-'):>8}  {r.source}")
        lines.append("")
        lines.append("parameters: " + ", ".join(f"{k}={v:.5g}" for k, v in self.params.to_dict().items()))
        lines.append(f"converged: {self.converged}" + ("" if self.converged else " (" + "; ".join(self.warnings) + ")"))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "params": self.params.to_dict(), "voxel_nm": self.voxel_nm,
            "stages": self.stages if isinstance(self.stages, str) else list(self.stages),
            "stage1": None if self.stage1 is None else self.stage1.to_dict(),
            "stage2": None if self.stage2 is None else self.stage2.to_dict(),
            "stage3": None if self.stage3 is None else self.stage3.to_dict(),
            "joint": None if self.joint is None else self.joint.to_dict(),
            "descriptors": [r.to_dict() for r in self.rows], "converged": self.converged,
            "warnings": list(self.warnings), "seconds_by_stage": dict(self.seconds_by_stage),
        }


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


def calibrate(
    labels,
    voxel_nm: float,
    stages=(1, 2, 3),
    method: str = "lbfgs",
    *,
    graphite_targets: GraphiteTargets | dict | None = None,
    initial: CBAParams | None = None,
    stage1_starts: int = 4,
    stage1_options: dict | None = None,
    stage1_descriptor: str = "auto",
    stage2_estimator: str = "masked",
    cutout=None,
    theta_search: str = "golden",
    stage3_profile: bool = True,
    n_realizations: int = 3,
    window=None,
    seed: int = 0,
    joint_options: dict | None = None,
    progress: bool = False,
) -> CalibrationResult:
    """Calibrate the eight parameters to a labelled image (paper Section 3.2).

    Args:
        labels: ``(z, y, x)`` labels: 0 pore, 1 carbon black + binder, 2 graphite.
        voxel_nm: voxel side [nm] (also the gamma half-axis convention's voxel size).
        stages: ``(1, 2, 3)`` (default), a subset, ``"1,2,3"``, or ``"joint"``.
        method: optimiser of the stage 1 and stage 2 fits and of the joint mode
            (``"lbfgs"``, ``"adam"``, ``"nelder-mead"``; the joint mode needs a gradient method).
        graphite_targets: stage 1 targets given as numbers instead of measured.
        initial: parameters for the stages not run (default: Table 2).
        stage1_starts: number of stage 1 starts.
        stage1_options: extra keyword arguments of :func:`fit_graphite` (e.g. ``max_steps``).
        stage1_descriptor: ``"eq17"`` (the paper's V, S, K, N), ``"contact"`` (V and the graphite
            contact distribution, :mod:`jaxcba.calibrate.stage1_contact`) or ``"auto"``
            (default): ``"contact"`` for images coarser than :data:`CONTACT_ABOVE_NM` (the 2x2x2
            K of thin platelets is ~2x too large at 40 nm) with sides of at least
            :data:`CONTACT_MIN_SIDE` voxels, else ``"eq17"``; given
            ``graphite_targets`` always use ``"eq17"``.
        stage2_estimator: ``"masked"`` (default) or ``"cutout"``; ``cutout``: its box.
        theta_search: ``"golden"`` (default), ``"grid"`` or ``"both"``.
        stage3_profile: after the masked stage 2, re-fit its ``(mu, eta, V3)`` at every trial
            ``theta`` of stage 3 and report the values at the chosen ``theta`` (default; see
            :mod:`jaxcba.calibrate.stage3_pores`); ``False``: keep stage 2's ``(mu, eta)``.
            Stage 3 realizations use the image's own graphite unless ``window`` is given.
        n_realizations, window, seed: stage 3 realizations.
        joint_options: keyword arguments of :func:`jaxcba.calibrate.joint.fit_joint` (e.g.
            ``window``, ``n_noise``, ``max_steps``, ``soft_voxel_nm``, ``method``: default
            ``"adam"``, or ``"lbfgs"``).
        progress: tqdm bars on stderr.

    Returns:
        :class:`CalibrationResult`.
    """
    t_all = time.perf_counter()
    stages = parse_stages(stages)
    voxel_nm = float(voxel_nm)
    if not (math.isfinite(voxel_nm) and voxel_nm > 0):
        raise ValueError(f"voxel_nm must be a finite number > 0, got {voxel_nm}")
    vol = checked_labels(labels)
    joint_options = dict(joint_options or {})
    if stages == "joint":
        from jaxcba.calibrate.joint import JOINT_METHODS

        if method == "nelder-mead" and "method" not in joint_options:
            raise ValueError("the joint mode needs a gradient method (adam or lbfgs), not nelder-mead")
        joint_options.setdefault("method", "adam")
        if joint_options["method"] not in JOINT_METHODS:
            raise ValueError(f"joint_options['method'] must be one of {JOINT_METHODS}, got {joint_options['method']!r}")
    run = (1, 2, 3) if stages == "joint" else stages
    values = (initial or CBAParams.paper()).validate().to_dict()
    problems: list[str] = []
    seconds: dict[str, float] = {}
    s1 = s2 = s3 = joint = None

    if 1 in run:
        t0 = time.perf_counter()
        descriptor = _stage1_descriptor(stage1_descriptor, voxel_nm, graphite_targets, min(vol.shape))
        if descriptor == "contact":
            from jaxcba.calibrate.stage1_contact import fit_graphite_contact

            s1 = fit_graphite_contact(vol, voxel_nm, method=method, starts=stage1_starts, progress=progress,
                                      **(stage1_options or {}))
        else:
            targets = (GraphiteTargets.from_labels(vol, voxel_nm) if graphite_targets is None
                       else _targets(graphite_targets))
            s1 = fit_graphite(targets, voxel_nm, method=method, starts=stage1_starts, progress=progress,
                              **(stage1_options or {}))
        values.update(s1.params)
        if not s1.converged:
            problems.append(f"stage 1 did not converge: {s1.message}")
        seconds["stage1"] = time.perf_counter() - t0
    if 2 in run:
        t0 = time.perf_counter()
        s2 = fit_excursion(vol, voxel_nm, estimator=stage2_estimator, cutout=cutout,
                           method="lbfgs" if method == "adam" else method, progress=progress)
        values.update(mu=s2.mu, eta=s2.eta)
        if not s2.converged:
            problems.append(f"stage 2 did not converge: {s2.message}")
        seconds["stage2"] = time.perf_counter() - t0
    if 3 in run:
        from jax.scipy.special import ndtr

        t0 = time.perf_counter()
        base = CBAParams(**values)
        v2 = s2.v2 if s2 is not None else float(1.0 - ndtr(base.mu))
        hint = s2.theta if (s2 is not None and math.isfinite(s2.theta)) else None
        profile = None
        if s2 is not None and s2.estimator == "masked" and stage3_profile:
            from jaxcba.calibrate.stage2_excursion import refit_given_theta

            def profile(theta, s2=s2):
                return refit_given_theta(s2, theta, method="lbfgs" if method == "adam" else method)

        s3 = fit_pores(vol, voxel_nm, base, v2, search=theta_search, theta_hint=hint, n_realizations=n_realizations,
                       window=window, seed=seed, excursion_for_theta=profile, condition_on_graphite=window is None,
                       progress=progress)
        values.update(theta=s3.theta, lambda_y=s3.lambda_y)
        if s3.excursion is not None:  # stage 2's (mu, eta) re-fitted at stage 3's theta
            values.update(mu=s3.excursion.mu, eta=s3.excursion.eta)
            if not s3.excursion.converged:
                problems.append(f"stage 3: the re-fit of stage 2's (eta, V3) at theta = {s3.theta:.4g} nm^-1 "
                                "did not converge")
        if not s3.converged:
            problems.append(f"stage 3: {s3.message}")
        seconds["stage3"] = time.perf_counter() - t0
    if stages == "joint":
        from jaxcba.calibrate.joint import fit_joint

        t0 = time.perf_counter()
        joint = fit_joint(vol, voxel_nm, CBAParams(**values).validate(), seed=joint_options.pop("seed", seed),
                          progress=progress, **joint_options)
        values.update(joint.params.to_dict())
        if not joint.converged:
            problems.append(f"joint mode did not converge: {joint.message}")
        seconds["joint"] = time.perf_counter() - t0
    params = CBAParams(**values).validate()
    rows = _descriptor_rows(vol, voxel_nm, params, s1, s2, s3)
    if joint is not None:
        rows.extend(_joint_rows(joint))
    for msg in problems:
        warnings.warn(msg, CalibrationWarning, stacklevel=2)
    seconds["total"] = time.perf_counter() - t_all
    return CalibrationResult(
        params=params, voxel_nm=voxel_nm, stages=stages, stage1=s1, stage2=s2, stage3=s3, joint=joint,
        rows=tuple(rows), converged=not problems, warnings=tuple(problems), seconds_by_stage=seconds,
    )


#: ``stage1_descriptor="auto"`` uses the contact distribution for voxels coarser than this [nm].
CONTACT_ABOVE_NM = 25.0


#: ... and windows of at least this many voxels per side (the contact distribution is measured
#: at r = 3 .. side/8 voxels with minus sampling, so smaller windows leave too few radii).
CONTACT_MIN_SIDE = 64


def _stage1_descriptor(choice: str, voxel_nm: float, graphite_targets, side: int = CONTACT_MIN_SIDE) -> str:
    if choice not in ("auto", "eq17", "contact"):
        raise ValueError(f"stage1_descriptor must be 'auto', 'eq17' or 'contact', got {choice!r}")
    if graphite_targets is not None:
        if choice == "contact":
            raise ValueError("stage1_descriptor='contact' measures the image; it cannot use given graphite_targets")
        return "eq17"
    if choice == "auto":
        return "contact" if voxel_nm > CONTACT_ABOVE_NM and side >= CONTACT_MIN_SIDE else "eq17"
    return choice


def _targets(t) -> GraphiteTargets:
    from jaxcba.calibrate.stage1_graphite import _as_targets

    return _as_targets(t)


def _descriptor_rows(vol, voxel_nm, params, s1, s2, s3) -> list[DescriptorRow]:
    """Image vs model: graphite densities, phase fractions, C_G(h) misfit, CPSD misfit."""
    import jax.numpy as jnp

    from jaxcba.calibrate.stage1_graphite import model_densities
    from jaxcba.theory import volume_fractions

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
        rows.append(DescriptorRow("cb | graphite-free", "1", s2.q, float(vf.cb / (1.0 - vf.graphite)), "theory"))
        c_fit, how = s2.c_fit, f"stage 2 ({s2.estimator})"
        ex = None if s3 is None else s3.excursion
        if ex is not None:
            from jaxcba.calibrate.stage2_excursion import masked_model

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
    import jax.numpy as jnp

    from jaxcba.calibrate._measure import masked_axis_two_point
    from jaxcba.theory import graphite_two_point

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


__all__ = ["CalibrationResult", "CalibrationWarning", "DescriptorRow", "calibrate", "parse_stages", "FIELDS"]
