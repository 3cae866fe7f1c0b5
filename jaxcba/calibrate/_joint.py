"""Joint mode: all eight parameters at once by gradient descent through soft-voxel realizations.

After the staged fit, :func:`fit_joint` refines the eight parameters together on one
descriptor-matching loss, differentiated through :func:`jaxcba.simulate_soft` with FIXED noise
(:func:`jaxcba.draw_noise`, drawn once at the staged parameters), so the loss is a deterministic,
differentiable function of the parameters. The set-up is a :class:`Joint` options object.

**Grid.** The model is realized softly at ``soft_voxel_nm = factor * voxel_nm`` (default the
integer factor closest to 80 nm / ``voxel_nm``, at least 1) in ``n_noise`` windows of ``window^3``
voxels. Parameters stay in the image's half-axis convention; inside the loss they are converted
to the same half-axis law at ``soft_voxel_nm`` (``alpha' = alpha f``, ``gamma' = gamma f``).

**Same estimator on both sides.** The image is point-sampled at ``soft_voxel_nm`` (every
``factor``-th voxel, up to 8 of the ``factor^3`` offsets) and turned into soft fields
``p = sigmoid(sd / softness)`` with ``sd`` the signed distance to the phase boundary (exact EDT,
boundary half-way between voxel centres), for graphite and for the solid; image descriptors are
averaged over tiles of the model's window.

**Soft descriptors** (:func:`soft_descriptors`, jittable, differentiable) of ``p_graphite``,
``p_solid``: volume fractions of graphite, cb, pore; ``S_V`` of graphite and solid [nm^-1],
``(2/3) sum_axes mean |Δ_a p| / voxel_nm``; axis two-point coverage of the three phases at lags
``1..max_lag``; the soft granulometry ``G(k) = mean(open_k(p_pore)) / mean(p_pore)``,
``k = 1..n_open``, grey openings by cubes of side ``2k + 1`` (a proxy of Eq. 26's CPSD, which
stays held out).

**Bias correction** (``bias_correction=True``): the model's descriptors are
``D_soft(x) + [D_img(hard(x_a)) - D_soft(x_a)]``, the offset taken from the hard realization of
the same noise (:func:`jaxcba.model.realize_noise`) through the image pipeline at an anchor
``x_a`` (the start; Adam re-anchors every ``reanchor`` steps).

Loss: ``sum_g w_g mean(r_g^2)`` over the groups :data:`GROUPS` — ``fractions`` (relative), ``sv``
(relative), ``c2`` (difference / the image's phase fraction), ``gran`` (absolute) — with the
model's descriptors averaged over the noise draws.

**Coordinates** (:func:`params_from_x`): ``x`` (8,), 0 at the staged parameters;
``log p = log p0 + b tanh(x / b)`` for ``lambda_X, lambda_Y, theta`` (``b = 0.9 log headroom``) and
``alpha1, alpha2, gamma`` (``b = 0.45 log headroom``); ``log eta`` and ``mu`` free.

**Optimiser**: :class:`~jaxcba.calibrate.Adam` (default) or :class:`~jaxcba.calibrate.LBFGS`
(scipy L-BFGS-B) through :func:`jaxcba.calibrate.minimize_host`: one jitted ``value_and_grad``
from a host loop; the best iterate is returned.

**Held-out check** (:func:`held_out_comparison`): hard realizations (``jaxcba.simulate``, the
image's voxel size, the same keys for both parameter sets) at the staged and at the joint
parameters, against the image, on descriptors NOT in the loss (:data:`HELD_OUT`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from jaxcba._checks import check_voxel_nm
from jaxcba.calibrate._measure import checked_labels
from jaxcba.calibrate._optimize import Adam, LBFGS, OptimResult, Refresh, make_solver, minimize_host
from jaxcba.calibrate._result import Result
from jaxcba.descriptors import constrictivity, geodesic_tortuosity
from jaxcba.descriptors.pore_size import radius_grid
from jaxcba.descriptors.report import per_phase
from jaxcba.model import draw_noise, realize_noise, simulate, simulate_soft
from jaxcba.model.params import FIELDS, CBAParams

JOINT_METHODS = ("adam", "lbfgs")
GROUPS = ("fractions", "sv", "c2", "gran")
_BOUND = {"lambda_x": 0.9, "alpha1": 0.45, "alpha2": 0.45, "gamma": 0.45, "theta": 0.9, "lambda_y": 0.9}
_FLOOR = 0.02  # floor of a phase fraction used as a scale


# ----------------------------------------------------------------------- soft descriptors


def _tv(p):
    return sum(jnp.mean(jnp.sqrt(jnp.square(jnp.diff(p, axis=a)) + 1e-10)) for a in range(3))


def _axis_c2(p, max_lag):
    """``mean_a mean_x p(x) p(x + k e_a)``, ``k = 1..max_lag``, of a stack ``(m, z, y, x)`` -> ``(m, max_lag)``.

    Zero-padded FFT along each axis; pairs inside the window only (no wrap-around)."""
    out = 0.0
    for a in (1, 2, 3):
        n = p.shape[a]
        f = jnp.fft.rfft(p, n=2 * n, axis=a)
        ac = jnp.moveaxis(jnp.fft.irfft(f * jnp.conj(f), n=2 * n, axis=a), a, -1)[..., 1:max_lag + 1]
        pairs = np.arange(n - 1, n - 1 - max_lag, -1) * (p.shape[1] * p.shape[2] * p.shape[3] // n)
        out = out + jnp.sum(ac, axis=(1, 2)) / pairs
    return out / 3.0


def _granulometry(p, n_open):
    """``G(k) = mean(open_k(p)) / mean(p)``, ``k = 1..n_open``: grey opening by the cube of side ``2k + 1``."""
    out = []
    for k in range(1, n_open + 1):
        w = (2 * k + 1,) * 3
        e = jax.lax.reduce_window(jnp.pad(p, k, constant_values=1.0), jnp.inf, jax.lax.min, w, (1, 1, 1), "VALID")
        d = jax.lax.reduce_window(jnp.pad(e, k, constant_values=0.0), -jnp.inf, jax.lax.max, w, (1, 1, 1), "VALID")
        out.append(jnp.mean(d))
    return jnp.stack(out) / jnp.maximum(jnp.mean(p), 1e-12)


def soft_descriptors(p_graphite, p_solid, voxel_nm: float, max_lag: int = 8, n_open: int = 4) -> dict:
    """Descriptors of soft fields (``(z, y, x)`` floats in [0, 1]; ``p_solid >= p_graphite``).

    Returns ``{"fractions": (3,) graphite/cb/pore, "sv": (2,) graphite/solid [nm^-1],
    "c2": (3, max_lag) graphite/cb/pore, "gran": (n_open,)}``. Jittable and differentiable
    (``voxel_nm``, ``max_lag``, ``n_open`` static).
    """
    pg = jnp.asarray(p_graphite)
    ps = jnp.asarray(p_solid)
    pc = ps - pg
    pp = 1.0 - ps
    frac = jnp.stack([jnp.mean(pg), jnp.mean(pc), jnp.mean(pp)])
    sv = jnp.stack([_tv(pg), _tv(ps)]) * (2.0 / 3.0) / voxel_nm
    c2 = _axis_c2(jnp.stack([pg, pc, pp]), max_lag)
    return {"fractions": frac, "sv": sv, "c2": c2, "gran": _granulometry(pp, n_open)}


def soft_fields_of_labels(labels, softness: float) -> tuple[np.ndarray, np.ndarray]:
    """Soft ``(p_graphite, p_solid)`` of a hard label image: ``sigmoid(signed distance / softness)``.

    The signed distance [voxels] of a voxel centre to the phase boundary, positive inside,
    with the boundary half-way between voxel centres (exact EDT, scipy): the same edge profile
    as :func:`jaxcba.simulate_soft`'s sigmoid of the signed distance.
    """
    vol = np.asarray(labels)

    def soft(mask):
        if mask.all():
            return np.ones(mask.shape, np.float32)
        if not mask.any():
            return np.zeros(mask.shape, np.float32)
        sd = np.where(mask, ndimage.distance_transform_edt(mask) - 0.5, 0.5 - ndimage.distance_transform_edt(~mask))
        return (1.0 / (1.0 + np.exp(-sd / softness))).astype(np.float32)

    return soft(vol == 2), soft(vol > 0)


def _tiles(shape, window):
    starts = [range(0, n - w + 1, w) for n, w in zip(shape, window)]
    return [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]


@partial(jax.jit, static_argnames=("voxel_nm", "max_lag", "n_open"))
def _desc_jit(pg, ps, voxel_nm, max_lag, n_open):
    return soft_descriptors(pg, ps, voxel_nm, max_lag, n_open)


def image_soft_descriptors(labels, voxel_nm: float, factor: int, window, softness: float, max_lag: int,
                           n_open: int, max_offsets: int = 8) -> tuple[dict, int]:
    """Image descriptors at ``factor * voxel_nm``: mean over sampling offsets and window tiles.

    Returns ``(descriptors, number of tiles)``.
    """
    vol = np.asarray(labels)
    offsets = [(a, b, c) for a in range(factor) for b in range(factor) for c in range(factor)][:max_offsets]
    acc, n = None, 0
    for oz, oy, ox in offsets:
        sub = vol[oz::factor, oy::factor, ox::factor]
        pg, ps = soft_fields_of_labels(sub, softness)
        for z, y, x in _tiles(sub.shape, window):
            sl = (slice(z, z + window[0]), slice(y, y + window[1]), slice(x, x + window[2]))
            d = _desc_jit(jnp.asarray(pg[sl]), jnp.asarray(ps[sl]), float(voxel_nm * factor), max_lag, n_open)
            d = {k: np.asarray(v, float) for k, v in d.items()}
            acc = d if acc is None else {k: acc[k] + d[k] for k in acc}
            n += 1
    return {k: v / n for k, v in acc.items()}, n


# --------------------------------------------------------------------- coordinates / loss


def params_from_x(x, p0: CBAParams, headroom: float) -> CBAParams:
    """The bounded reparametrisation (module docstring): ``x = 0`` gives ``p0``."""
    vals = {}
    logh = math.log(headroom)
    for i, name in enumerate(FIELDS):
        v0 = getattr(p0, name)
        if name == "mu":
            vals[name] = v0 + x[i]
        elif name == "eta":
            vals[name] = v0 * jnp.exp(x[i])
        else:
            b = _BOUND[name] * logh
            vals[name] = v0 * jnp.exp(b * jnp.tanh(x[i] / b))
    return CBAParams(**vals)


def _at_voxel(p: CBAParams, factor: float) -> CBAParams:
    """Same half-axis law at ``factor`` times the voxel side (``convert(..., mode="same_law")``)."""
    return p.replace(alpha1=p.alpha1 * factor, alpha2=p.alpha2 * factor, gamma=p.gamma * factor)


def _loss_from_desc(model: dict, image: dict, weights: dict):
    fi = image["fractions"]
    scale = jnp.maximum(fi, _FLOOR)
    r = {
        "fractions": (model["fractions"] - fi) / scale,
        "sv": (model["sv"] - image["sv"]) / image["sv"],
        "c2": (model["c2"] - image["c2"]) / scale[:, None],
        "gran": model["gran"] - image["gran"],
    }
    terms = {g: jnp.mean(jnp.square(r[g])) for g in GROUPS}
    return sum(weights[g] * terms[g] for g in GROUPS), terms


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True, kw_only=True)
class HeldOut(Result):
    """Held-out descriptors on hard realizations: image vs staged vs joint parameters.

    ``names``, ``units``; ``image``, ``staged``, ``joint``: values (model: mean over
    ``n_realizations``; NaN where a phase does not percolate); ``err_staged``, ``err_joint``:
    relative errors ``|model - image| / |image|``; ``mean_err_staged``, ``mean_err_joint`` over the
    descriptors finite in both; ``improved``: ``mean_err_joint < mean_err_staged``.
    """

    names: tuple[str, ...]
    units: tuple[str, ...]
    image: tuple[float, ...]
    staged: tuple[float, ...]
    joint: tuple[float, ...]
    err_staged: tuple[float, ...]
    err_joint: tuple[float, ...]
    mean_err_staged: float
    mean_err_joint: float
    improved: bool
    window: tuple[int, ...]
    n_realizations: int
    seconds: float

    def table(self) -> str:
        lines = [f"{'held-out descriptor':<26} {'image':>10} {'staged':>10} {'joint':>10}"]
        for i, n in enumerate(self.names):
            lines.append(f"{n + ' [' + self.units[i] + ']':<26} {self.image[i]:>10.4g} {self.staged[i]:>10.4g} "
                         f"{self.joint[i]:>10.4g}")
        lines.append(f"{'mean relative error':<26} {'':>10} {self.mean_err_staged:>10.3f} {self.mean_err_joint:>10.3f}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True, kw_only=True)
class JointResult(Result):
    """Outcome of :func:`fit_joint`.

    Attributes:
        params: joint parameters (image convention); ``initial``: the staged ones.
        optim: :class:`OptimResult` (``x`` (8,) in the coordinates of :func:`params_from_x`).
        loss_initial, loss: the loss at the staged and at the joint parameters.
        terms_initial, terms: per-group loss terms (unweighted).
        image, model_initial, model: soft descriptors (dicts of arrays, :func:`soft_descriptors`).
        held_out: :class:`HeldOut` or ``None``.
        soft_voxel_nm [nm], window [soft voxels], n_noise, softness, headroom, weights, n_tiles: the set-up.
        converged, message, seconds [s].
    """

    params: CBAParams
    initial: CBAParams
    optim: OptimResult
    loss_initial: float
    loss: float
    terms_initial: dict[str, float]
    terms: dict[str, float]
    image: dict[str, np.ndarray]
    model_initial: dict[str, np.ndarray]
    model: dict[str, np.ndarray]
    held_out: HeldOut | None
    soft_voxel_nm: float
    window: tuple[int, ...]
    n_noise: int
    softness: float
    headroom: float
    weights: dict[str, float]
    n_tiles: int
    converged: bool
    message: str
    seconds: float


# ----------------------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class Joint:
    """The joint mode's set-up (module docstring); checked on construction.

    Attributes:
        soft_voxel_nm: voxel of the soft realizations [nm], an integer multiple of the image's
            (default: the multiple closest to 80 nm, at least the image's voxel).
        window: side of the soft windows [soft voxels] (capped to the image's extent).
        n_noise: fixed noise draws (windows) per loss evaluation.
        softness: sigmoid edge width [soft voxels], in (0, 4]; ``headroom`` (> 1): validity range
            of the noise.
        max_lag: two-point lags [soft voxels]; ``n_open``: granulometry steps.
        weights: per-group weights (:data:`GROUPS`, default 1).
        solver: :class:`~jaxcba.calibrate.Adam` (default: 40 steps, rate 0.03, ``ftol`` 1e-3 over
            5 steps, ``gtol`` 1e-6) or :class:`~jaxcba.calibrate.LBFGS` (scipy L-BFGS-B).
        bias_correction: add the anchor offset; ``reanchor``: Adam re-anchors every that many
            steps (0: never; L-BFGS keeps the first anchor).
        held_out: run :func:`held_out_comparison` (``n_hard`` realizations of
            ``min(image, hard_window)^3`` at the image's voxel size, seed + 1).
        seed: noise seed (``None``: :func:`fit_joint`'s ``seed``; in the pipeline, stage 3's).
    """

    soft_voxel_nm: float | None = None
    window: int = 48
    n_noise: int = 2
    softness: float = 1.0
    headroom: float = 1.5
    max_lag: int = 8
    n_open: int = 4
    weights: dict | None = None
    solver: Adam | LBFGS = Adam(max_steps=40, learning_rate=0.03, ftol=1e-3, patience=5, gtol=1e-6)
    bias_correction: bool = True
    reanchor: int = 10
    held_out: bool = True
    n_hard: int = 2
    hard_window: int | None = 96
    seed: int | None = None

    def __post_init__(self):
        if not isinstance(self.solver, (Adam, LBFGS)):
            raise ValueError(f"the joint mode needs a gradient method: {', '.join(JOINT_METHODS)}; got {self.solver!r}")
        if min(self.n_noise, self.window, self.max_lag, self.n_open, self.n_hard) < 1 or self.reanchor < 0:
            raise ValueError("n_noise, window, max_lag, n_open and n_hard must be >= 1 and reanchor >= 0, got "
                             f"{self.n_noise}, {self.window}, {self.max_lag}, {self.n_open}, {self.n_hard}, {self.reanchor}")
        if not (0 < self.softness <= 4) or self.headroom <= 1:
            raise ValueError(f"softness must lie in (0, 4] voxels and headroom > 1, got {self.softness}, {self.headroom}")
        group_weights(self.weights)

    @classmethod
    def from_options(cls, method: str = "adam", **options) -> "Joint":
        """From the keyword form (``method``, the optimiser's ``max_steps``, ``learning_rate``, ``ftol``,
        ``patience``, ``gtol`` and this class's fields), e.g. the former ``joint_options`` dict."""
        if method not in JOINT_METHODS:
            raise ValueError(f"the joint mode needs a gradient method: {', '.join(JOINT_METHODS)}; got {method!r}")
        names = {"max_steps", "learning_rate", "ftol", "patience", "gtol"}
        solver_opts = {k: options.pop(k) for k in list(options) if k in names}
        base = cls().solver
        defaults = {k: getattr(base, k) for k in names}
        return cls(solver=make_solver(method, **(defaults | solver_opts)), **options)


def group_weights(weights) -> dict[str, float]:
    """``weights`` over :data:`GROUPS` (missing groups 1); ``ValueError`` for unknown groups or values < 0."""
    w = {g: 1.0 for g in GROUPS}
    for k, v in (weights or {}).items():
        if k not in w or not (math.isfinite(float(v)) and float(v) >= 0):
            raise ValueError(f"weights: unknown group or bad value {k}={v!r}; groups {GROUPS}, values >= 0")
        w[k] = float(v)
    return w


# ----------------------------------------------------------------------------- fitting


def _grid(shape, voxel_nm: float, opts: Joint) -> tuple[int, tuple, int]:
    """``(factor, soft window, max_lag)``: the soft voxel as a multiple of the image's, checked."""
    if opts.soft_voxel_nm is None:
        factor = max(1, int(round(80.0 / voxel_nm)))
    else:
        factor = float(opts.soft_voxel_nm) / voxel_nm
        if not (math.isfinite(factor) and factor >= 1 and abs(factor - round(factor)) < 1e-9):
            raise ValueError(f"soft_voxel_nm must be an integer multiple >= 1 of voxel_nm={voxel_nm}, "
                             f"got {opts.soft_voxel_nm}")
        factor = int(round(factor))
    sub_shape = tuple(-(-n // factor) for n in shape)
    if min(sub_shape) < 8:
        raise ValueError(f"the image sampled at {voxel_nm * factor} nm is {sub_shape}: too small for the joint mode "
                         "(need >= 8 voxels per axis); use a smaller soft_voxel_nm")
    win = tuple(min(int(opts.window), n) for n in sub_shape)
    return factor, win, int(min(opts.max_lag, min(win) // 2))


class SoftLoss:
    """The joint loss at fixed noise: ``value_and_grad(x, offset) -> ((loss, (terms, soft descriptors)), grad)``
    (jitted once) and ``anchor(x, soft descriptors) -> offset`` (the bias correction at ``x``)."""

    def __init__(self, vol, voxel_nm: float, initial: CBAParams, opts: Joint, seed: int):
        self.factor, self.win, self.max_lag = _grid(vol.shape, voxel_nm, opts)
        self.vs, self.initial, self.opts = voxel_nm * self.factor, initial, opts
        self.weights = group_weights(opts.weights)
        self.image, self.n_tiles = image_soft_descriptors(vol, voxel_nm, self.factor, self.win, opts.softness,
                                                          self.max_lag, opts.n_open)
        self.image_j = {k: jnp.asarray(v, jnp.float32) for k, v in self.image.items()}
        p_soft0 = _at_voxel(initial, float(self.factor))
        keys = jax.random.split(jax.random.PRNGKey(seed), opts.n_noise)
        self.noises = [draw_noise(k, self.win, self.vs, p_soft0, headroom=opts.headroom,
                                  softness_max=opts.softness) for k in keys]
        self.value_and_grad = jax.jit(jax.value_and_grad(self._loss_terms, has_aux=True))

    def params(self, x) -> CBAParams:
        """The parameters at ``x`` at the soft voxel size."""
        return _at_voxel(params_from_x(x, self.initial, self.opts.headroom), float(self.factor))

    def _model_desc(self, x):
        p, acc = self.params(x), None
        for nz in self.noises:
            pg, pc = simulate_soft(p, nz, self.win, self.vs, self.opts.softness)
            d = soft_descriptors(pg, pg + pc, self.vs, self.max_lag, self.opts.n_open)
            acc = d if acc is None else jax.tree_util.tree_map(jnp.add, acc, d)
        return jax.tree_util.tree_map(lambda a: a / len(self.noises), acc)

    def _loss_terms(self, x, offset):
        d = self._model_desc(x)
        loss, terms = _loss_from_desc(jax.tree_util.tree_map(jnp.add, d, offset), self.image_j, self.weights)
        return loss, (terms, d)

    def anchor(self, x, d_soft) -> dict:
        """Offset = image-pipeline descriptors of the hard realizations from the same noise - soft ones."""
        p = _at_voxel(CBAParams(**params_from_x(jnp.asarray(x), self.initial, self.opts.headroom).to_dict()),
                      float(self.factor))
        acc = None
        for nz in self.noises:
            pg, ps = soft_fields_of_labels(np.asarray(realize_noise(p, nz, self.win, self.vs)), self.opts.softness)
            d = {k: np.asarray(v, float) for k, v in _desc_jit(jnp.asarray(pg), jnp.asarray(ps), self.vs,
                                                                self.max_lag, self.opts.n_open).items()}
            acc = d if acc is None else {k: acc[k] + d[k] for k in acc}
        return {k: jnp.asarray(acc[k] / len(self.noises) - np.asarray(d_soft[k], float), jnp.float32) for k in acc}


def fit_joint(labels, voxel_nm: float, initial: CBAParams, method: str = "adam", *, options: Joint | None = None,
              seed: int = 0, progress: bool = False, **legacy) -> JointResult:
    """Refine all eight parameters from ``initial`` (the staged result) on the soft loss.

    Args:
        labels: ``(z, y, x)`` labels (0 pore, 1 cb, 2 graphite).
        voxel_nm: voxel side of the image [nm] (the parameters' half-axis convention).
        initial: start (the staged parameters).
        options: the set-up, :class:`Joint` (default ``Joint.from_options(method, **legacy)``:
            the keyword form, ``method`` ``"adam"`` or ``"lbfgs"``).
        seed: noise seed (unless ``options.seed`` is set); the held-out realizations use ``seed + 1``.
        progress: tqdm bar on stderr.
    """
    t_start = time.perf_counter()
    if options is None:
        options = Joint.from_options(method, **legacy)
    elif legacy or method != "adam":
        raise ValueError("give the joint mode's settings either as options=Joint(...) or as keywords, not both")
    seed = seed if options.seed is None else int(options.seed)
    vol = checked_labels(labels)
    voxel_nm = check_voxel_nm(voxel_nm)
    if not isinstance(initial, CBAParams):
        raise ValueError(f"initial must be a CBAParams, got {type(initial).__name__}")
    initial = CBAParams(**initial.to_dict()).validate()
    _grid(vol.shape, voxel_nm, options)
    if np.count_nonzero(vol == 0) == 0:
        raise ValueError("the volume has no pore voxels (label 0): the joint loss's pore terms are undefined")
    soft = SoftLoss(vol, voxel_nm, initial, options, seed)
    opt, first, last = _optimise(soft, options, progress)
    params = CBAParams(**params_from_x(jnp.asarray(opt.x), initial, options.headroom).to_dict()).validate()
    ho = None
    if options.held_out:
        hw = tuple(min(int(options.hard_window or n), n) for n in vol.shape)
        ho = held_out_comparison(vol, voxel_nm, initial, params, window=hw, n_realizations=options.n_hard,
                                 seed=seed + 1)
    fl = lambda t: {k: float(v) for k, v in t.items()}  # noqa: E731
    arr = lambda d: {k: np.asarray(v, float) for k, v in d.items()}  # noqa: E731
    return JointResult(
        params=params, initial=initial, optim=opt, loss_initial=first[0], loss=last[0], terms_initial=fl(first[1]),
        terms=fl(last[1]), image=arr(soft.image), model_initial=arr(first[2]), model=arr(last[2]), held_out=ho,
        soft_voxel_nm=soft.vs, window=soft.win, n_noise=int(options.n_noise), softness=float(options.softness),
        headroom=float(options.headroom), weights=soft.weights, n_tiles=soft.n_tiles, converged=opt.converged,
        message=opt.message, seconds=time.perf_counter() - t_start,
    )


def _optimise(soft: SoftLoss, options: Joint, progress: bool):
    """Anchor at ``x = 0``, run the solver; ``(OptimResult, (loss, terms, descriptors) at the start and at the end)``."""
    vg = soft.value_and_grad
    x0 = jnp.zeros(8, jnp.float32)
    zero = {k: jnp.zeros_like(v) for k, v in soft.image_j.items()}
    tc = time.perf_counter()
    (_, (_, d_soft0)), _ = vg(x0, zero)
    compile_s = time.perf_counter() - tc
    offset0 = soft.anchor(x0, d_soft0) if options.bias_correction else zero
    (l0, (terms0, _)), g0 = vg(x0, offset0)
    refresh = None
    if options.bias_correction and options.reanchor:
        refresh = Refresh(lambda x, aux: soft.anchor(x, aux[1]), options.reanchor)
    opt, offset = minimize_host(vg, x0, options.solver, offset0, start=(l0, g0), refresh=refresh,
                                progress=progress, desc=f"joint ({options.solver.method})")
    opt = dataclasses.replace(opt, compile_seconds=compile_s, seconds=opt.seconds + compile_s)
    (l1, (terms1, d1)), _ = vg(jnp.asarray(opt.x, jnp.float32), offset)
    d0 = jax.tree_util.tree_map(jnp.add, d_soft0, offset0)
    d1 = jax.tree_util.tree_map(jnp.add, d1, offset)
    return opt, (float(l0), terms0, d0), (float(l1), terms1, d1)


# ----------------------------------------------------------------------------- held out

HELD_OUT = (("pore r_max (CPSD)", "nm"), ("pore r_min (intrusion z)", "nm"), ("pore constrictivity", "1"),
            ("pore geodesic tortuosity z", "1"), ("solid geodesic tortuosity z", "1"))


def held_out_descriptors(labels, voxel_nm: float, radii_vox) -> np.ndarray:
    """:data:`HELD_OUT` of one hard label volume, shape (5,) (NaN where a phase does not percolate)."""
    def one(phase, m):
        c = constrictivity(m, voxel_nm, radii_vox=radii_vox, axis=0) if phase == "pore" else None
        return c, geodesic_tortuosity(m, 0)

    d = per_phase(jnp.asarray(labels), ("pore", "solid"), one)
    (c, tp), (_, ts) = d["pore"], d["solid"]
    return np.array([float(c.r_max_nm), float(c.r_min_nm), float(c.beta), float(tp.mean), float(ts.mean)])


def held_out_comparison(labels, voxel_nm: float, staged: CBAParams, joint: CBAParams, *, window=None,
                        n_realizations: int = 2, seed: int = 1) -> HeldOut:
    """Held-out descriptors of the image (mean over window tiles) vs hard realizations of
    ``window`` at the staged and the joint parameters (same keys: common random numbers)."""
    t0 = time.perf_counter()
    vol = checked_labels(labels)
    window = tuple(vol.shape) if window is None else tuple(int(s) for s in window)
    radii = tuple(float(r) for r in radius_grid(0.25 * min(window)))
    img = np.nanmean([held_out_descriptors(vol[z:z + window[0], y:y + window[1], x:x + window[2]], voxel_nm, radii)
                      for z, y, x in _tiles(vol.shape, window)[:8]], axis=0)
    keys = jax.random.split(jax.random.PRNGKey(seed), n_realizations)
    vals = {}
    for name, p in (("staged", staged), ("joint", joint)):
        vals[name] = np.nanmean([held_out_descriptors(simulate(p, window, voxel_nm, k), voxel_nm, radii)
                                 for k in keys], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        es = np.abs(vals["staged"] - img) / np.abs(img)
        ej = np.abs(vals["joint"] - img) / np.abs(img)
    ok = np.isfinite(es) & np.isfinite(ej)
    ms = float(np.mean(es[ok])) if ok.any() else float("nan")
    mj = float(np.mean(ej[ok])) if ok.any() else float("nan")
    f = lambda a: tuple(float(v) for v in a)  # noqa: E731
    return HeldOut(
        names=tuple(n for n, _ in HELD_OUT), units=tuple(u for _, u in HELD_OUT), image=f(img),
        staged=f(vals["staged"]), joint=f(vals["joint"]), err_staged=f(es), err_joint=f(ej), mean_err_staged=ms,
        mean_err_joint=mj, improved=bool(mj < ms), window=window, n_realizations=int(n_realizations),
        seconds=time.perf_counter() - t0,
    )
