"""Joint mode: all eight parameters at once by gradient descent through soft-voxel realizations.

The staged pipeline fits each sub-model to its own descriptors; the joint mode then refines
all eight parameters together on one descriptor-matching loss, differentiated through
:func:`jaxcba.simulate_soft` with FIXED noise (:func:`jaxcba.draw_noise`, drawn once at the
staged parameters).

**Grid.** The model is realized softly at ``soft_voxel_nm = factor * voxel_nm`` (default
the integer factor closest to 80 nm / ``voxel_nm``, at least 1) in ``n_noise`` windows of
``window^3`` voxels. Parameters stay in the image's half-axis convention; inside the loss
they are converted to the same half-axis law at ``soft_voxel_nm``
(``alpha' = alpha f``, ``gamma' = gamma f``, :func:`jaxcba.model.resolution.convert`,
``mode="same_law"``).

**Same estimator on both sides.** The image is point-sampled at ``soft_voxel_nm`` (every
``factor``-th voxel, all ``factor^3`` offsets, up to 8) - the model's own discretization -
and turned into soft fields with the same edge profile as the model:
``p = sigmoid(sd / softness)`` with ``sd`` the signed distance to the phase boundary
(exact EDT, boundary half-way between voxel centres), for graphite and for the solid
(``cb = solid - graphite``). Image descriptors are averaged over tiles of the model's
window, so window-edge effects of the estimators cancel.

**Soft descriptors** (:func:`soft_descriptors`, jittable, differentiable) of fields
``p_graphite``, ``p_solid``:

* volume fractions of graphite, cb, pore: ``mean(p)``;
* ``S_V`` of graphite and of the solid [nm^-1]: ``(2/3) sum_axes mean |Δ_a p| / voxel_nm``
  (total variation; ``E(|n_x| + |n_y| + |n_z|) = 3/2`` for isotropic surfaces);
* two-point coverage of graphite, cb and pore along the axes at lags ``1..max_lag``:
  ``mean_a mean_x p(x) p(x + k e_a)``;
* a CPSD-like pore-size term: the soft granulometry ``G(k) = mean(open_k(p_pore)) /
  mean(p_pore)``, ``k = 1..n_open``, with the grey opening (min filter, then max filter;
  differentiable almost everywhere) by the cube of side ``2k + 1`` voxels; the window
  border is not a wall (as in Eq. 26's CPSD). It is a proxy (cubes, not balls; a soft
  field, not a set), not Eq. 26's CPSD, which stays held out (measured on hard realizations).

**Bias correction.** The soft path is not the image pipeline: a union ``1 - prod(1 - sigma_i)``
of blurred grains and the blur of sub-voxel grains put more mass outside the hard set than the
sigmoid of the hard set's signed distance does (at 40 nm a 1-voxel grain's soft volume is
several times its hard volume), so soft and image descriptors differ even at the truth. With
``bias_correction=True`` (default) the model's descriptors are
``D_soft(x) + [D_img(hard(x_a)) - D_soft(x_a)]``: the offset in brackets, constant in ``x``,
is the image pipeline applied to the hard realization from the same noise
(:func:`jaxcba.model.realize_noise`, the ``softness -> 0`` limit) minus the soft descriptors,
both at an anchor ``x_a`` (the start; Adam re-anchors every ``reanchor`` steps). At the anchor
the comparison is hard vs hard through the same estimator; the gradient is the soft path's.

Loss: ``sum_g w_g mean(r_g^2)`` over the groups ``fractions`` (relative), ``sv``
(relative), ``c2`` (difference / the image's phase fraction), ``gran`` (absolute), with the
model's descriptors averaged over the noise draws.

**Coordinates.** ``x`` (8,) unconstrained, 0 at the staged parameters:
``log p = log p0 + b tanh(x / b)`` for ``lambda_X, lambda_Y, theta`` (``b = 0.9 log headroom``)
and ``alpha1, alpha2, gamma`` (``b = 0.45 log headroom``: the mean half-axis stays within
``headroom^0.9``), so that the soft realizations stay inside the noise's validity range;
``log eta = log eta0 + x`` and ``mu = mu0 + x`` are free.

**Optimisers.** ``"adam"`` (optax, default) and ``"lbfgs"`` (scipy L-BFGS-B) both drive one
jitted ``value_and_grad`` from a host loop: a soft realization costs seconds, so a host
round-trip per step is free, and the loss is compiled once (the generic runner
:func:`jaxcba.calibrate.minimize` would compile it twice, in its ``init`` and its loop).
The result is an :class:`~jaxcba.calibrate.OptimResult`; the best iterate is returned.

**Held-out check** (:func:`held_out_comparison`): hard realizations (``jaxcba.simulate``, the
image's voxel size, the same keys for both parameter sets) at the staged and at the joint
parameters, against the image, on descriptors NOT in the loss: the pore CPSD's ``r_max``
(Eq. 26), the pore phase's ``r_min`` and constrictivity ``beta`` (intrusion along z), and the
mean geodesic tortuosity of pore and solid along z. ``improved``: the mean relative error
over these descriptors is lower at the joint parameters.
"""

from __future__ import annotations

import dataclasses
import math
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxcba.calibrate._measure import checked_labels
from jaxcba.calibrate.optimize import OptimResult
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
    from scipy import ndimage

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


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Held-out descriptors on hard realizations: image vs staged vs joint parameters.

    ``names``; ``image``, ``staged``, ``joint``: values (model: mean over ``n_realizations``);
    ``err_staged``, ``err_joint``: relative errors ``|model - image| / |image|``;
    ``mean_err_staged``, ``mean_err_joint`` over the finite ones; ``improved``.
    """

    names: tuple
    units: tuple
    image: tuple
    staged: tuple
    joint: tuple
    err_staged: tuple
    err_joint: tuple
    mean_err_staged: float
    mean_err_joint: float
    improved: bool
    window: tuple
    n_realizations: int
    seconds: float

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    def table(self) -> str:
        lines = [f"{'held-out descriptor':<26} {'image':>10} {'staged':>10} {'joint':>10}"]
        for i, n in enumerate(self.names):
            lines.append(f"{n + ' [' + self.units[i] + ']':<26} {self.image[i]:>10.4g} {self.staged[i]:>10.4g} "
                         f"{self.joint[i]:>10.4g}")
        lines.append(f"{'mean relative error':<26} {'':>10} {self.mean_err_staged:>10.3f} {self.mean_err_joint:>10.3f}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class JointResult:
    """Outcome of :func:`fit_joint`.

    Attributes:
        params: joint parameters (image convention); ``initial``: the staged ones.
        optim: :class:`OptimResult` (``x`` in the coordinates of :func:`params_from_x`).
        loss_initial, loss: the loss at the staged and at the joint parameters.
        terms_initial, terms: per-group loss terms (unweighted).
        image, model_initial, model: soft descriptors (dicts of arrays).
        held_out: :class:`HeldOut` or ``None``.
        soft_voxel_nm, window, n_noise, softness, headroom, weights, n_tiles: the set-up.
        converged, message, seconds.
    """

    params: CBAParams
    initial: CBAParams
    optim: OptimResult
    loss_initial: float
    loss: float
    terms_initial: dict
    terms: dict
    image: dict
    model_initial: dict
    model: dict
    held_out: HeldOut | None
    soft_voxel_nm: float
    window: tuple
    n_noise: int
    softness: float
    headroom: float
    weights: dict
    n_tiles: int
    converged: bool
    message: str
    seconds: float

    def to_dict(self) -> dict:
        arr = lambda d: {k: np.asarray(v, float).tolist() for k, v in d.items()}  # noqa: E731
        return {
            "params": self.params.to_dict(), "initial": self.initial.to_dict(), "optim": self.optim.to_dict(),
            "loss_initial": self.loss_initial, "loss": self.loss, "terms_initial": dict(self.terms_initial),
            "terms": dict(self.terms), "image": arr(self.image), "model_initial": arr(self.model_initial),
            "model": arr(self.model), "held_out": None if self.held_out is None else self.held_out.to_dict(),
            "soft_voxel_nm": self.soft_voxel_nm, "window": list(self.window), "n_noise": self.n_noise,
            "softness": self.softness, "headroom": self.headroom, "weights": dict(self.weights),
            "n_tiles": self.n_tiles, "converged": self.converged, "message": self.message, "seconds": self.seconds,
        }


# ----------------------------------------------------------------------------- fitting


def fit_joint(
    labels,
    voxel_nm: float,
    initial: CBAParams,
    method: str = "adam",
    *,
    soft_voxel_nm: float | None = None,
    window: int = 48,
    n_noise: int = 2,
    softness: float = 1.0,
    headroom: float = 1.5,
    max_lag: int = 8,
    n_open: int = 4,
    weights: dict | None = None,
    max_steps: int = 40,
    learning_rate: float = 0.03,
    ftol: float = 1e-3,
    patience: int = 5,
    gtol: float = 1e-6,
    bias_correction: bool = True,
    reanchor: int = 10,
    seed: int = 0,
    held_out: bool = True,
    n_hard: int = 2,
    hard_window: int | None = 96,
    progress: bool = False,
) -> JointResult:
    """Refine all eight parameters from ``initial`` (the staged result) on the soft loss.

    Args:
        labels: ``(z, y, x)`` labels (0 pore, 1 cb, 2 graphite).
        voxel_nm: voxel side of the image [nm] (the parameters' half-axis convention).
        initial: start (the staged parameters).
        method: ``"adam"`` (optax) or ``"lbfgs"`` (scipy L-BFGS-B), module docstring.
        soft_voxel_nm: voxel of the soft realizations, an integer multiple of ``voxel_nm``
            (default: the multiple closest to 80 nm, at least ``voxel_nm``).
        window: side of the soft windows [soft voxels] (capped to the image's extent).
        n_noise: number of fixed noise draws (windows) per loss evaluation.
        softness: sigmoid edge width [soft voxels]; ``headroom``: validity range of the noise.
        max_lag: two-point lags [soft voxels]; n_open: granulometry steps.
        weights: per-group weights (``fractions``, ``sv``, ``c2``, ``gran``; default 1).
        max_steps, learning_rate, ftol, patience, gtol: optimiser budget and stopping rules
            (converged: gradient inf-norm ``<= gtol`` or the best loss improved by less than
            ``ftol`` relative over the last ``patience`` steps; L-BFGS: scipy's own tests).
        bias_correction: add the anchor offset (module docstring, "Bias correction").
        reanchor: Adam re-computes the offset at the current point every ``reanchor``
            steps (0: never; L-BFGS keeps the first anchor).
        seed: noise seed; the held-out realizations use ``seed + 1``.
        held_out: run :func:`held_out_comparison` (``n_hard`` realizations of
            ``min(image, hard_window)^3`` at the image's voxel size).
        progress: tqdm bar on stderr.
    """
    import jaxcba

    t_start = time.perf_counter()
    if method not in JOINT_METHODS:
        raise ValueError(f"the joint mode needs a gradient method: {', '.join(JOINT_METHODS)}; got {method!r}")
    vol = checked_labels(labels)
    voxel_nm = float(voxel_nm)
    if not isinstance(initial, CBAParams):
        raise ValueError(f"initial must be a CBAParams, got {type(initial).__name__}")
    initial = CBAParams(**initial.to_dict()).validate()
    if soft_voxel_nm is None:
        factor = max(1, int(round(80.0 / voxel_nm)))
    else:
        factor = float(soft_voxel_nm) / voxel_nm
        if not (math.isfinite(factor) and factor >= 1 and abs(factor - round(factor)) < 1e-9):
            raise ValueError(f"soft_voxel_nm must be an integer multiple >= 1 of voxel_nm={voxel_nm}, got {soft_voxel_nm}")
        factor = int(round(factor))
    vs = voxel_nm * factor
    sub_shape = tuple(-(-n // factor) for n in vol.shape)
    if min(sub_shape) < 8:
        raise ValueError(f"the image sampled at {vs} nm is {sub_shape}: too small for the joint mode (need >= 8 "
                         "voxels per axis); use a smaller soft_voxel_nm")
    win = tuple(min(int(window), n) for n in sub_shape)
    max_lag = int(min(max_lag, min(win) // 2))
    if n_noise < 1 or max_steps < 1:
        raise ValueError(f"n_noise and max_steps must be >= 1, got {n_noise}, {max_steps}")
    if not (0 < softness <= 4) or headroom <= 1:
        raise ValueError(f"softness must lie in (0, 4] voxels and headroom > 1, got {softness}, {headroom}")
    if np.count_nonzero(vol == 0) == 0:
        raise ValueError("the volume has no pore voxels (label 0): the joint loss's pore terms are undefined")
    w = {g: 1.0 for g in GROUPS}
    for k, v in (weights or {}).items():
        if k not in w or not (math.isfinite(float(v)) and float(v) >= 0):
            raise ValueError(f"weights: unknown group or bad value {k}={v!r}; groups {GROUPS}, values >= 0")
        w[k] = float(v)

    image, n_tiles = image_soft_descriptors(vol, voxel_nm, factor, win, softness, max_lag, n_open)
    image_j = {k: jnp.asarray(v, jnp.float32) for k, v in image.items()}
    p_soft0 = _at_voxel(initial, float(factor))
    keys = jax.random.split(jax.random.PRNGKey(seed), n_noise)
    noises = [jaxcba.draw_noise(k, win, vs, p_soft0, headroom=headroom, softness_max=softness) for k in keys]

    def model_desc(x):
        p = _at_voxel(params_from_x(x, initial, headroom), float(factor))
        acc = None
        for nz in noises:
            pg, pc = jaxcba.simulate_soft(p, nz, win, vs, softness)
            d = soft_descriptors(pg, pg + pc, vs, max_lag, n_open)
            acc = d if acc is None else jax.tree_util.tree_map(jnp.add, acc, d)
        return jax.tree_util.tree_map(lambda a: a / len(noises), acc)

    def loss_terms(x, offset):
        d = model_desc(x)
        loss, terms = _loss_from_desc(jax.tree_util.tree_map(jnp.add, d, offset), image_j, w)
        return loss, (terms, d)

    vg = jax.jit(jax.value_and_grad(loss_terms, has_aux=True))

    def anchor(x, d_soft):
        """Offset = image-pipeline descriptors of the hard realizations from the same noise - soft ones."""
        p = _at_voxel(CBAParams(**params_from_x(jnp.asarray(x), initial, headroom).to_dict()), float(factor))
        acc = None
        for nz in noises:
            hard = np.asarray(jaxcba.model.realize_noise(p, nz, win, vs))
            pg, ps = soft_fields_of_labels(hard, softness)
            d = {k: np.asarray(v, float) for k, v in _desc_jit(jnp.asarray(pg), jnp.asarray(ps), vs, max_lag,
                                                                n_open).items()}
            acc = d if acc is None else {k: acc[k] + d[k] for k in acc}
        return {k: jnp.asarray(acc[k] / len(noises) - np.asarray(d_soft[k], float), jnp.float32) for k in acc}

    x0 = jnp.zeros(8, jnp.float32)
    zero = {k: jnp.zeros_like(v) for k, v in image_j.items()}
    tc = time.perf_counter()
    (_, (_, d_soft0)), _ = vg(x0, zero)
    compile_s = time.perf_counter() - tc
    offset = anchor(x0, d_soft0) if bias_correction else zero
    offset_init = offset
    (l0, (terms0, _)), g0 = vg(x0, offset)
    opt, offset = _run(vg, anchor if bias_correction else None, offset, x0, float(l0), np.asarray(g0), method,
                       max_steps, learning_rate, ftol, patience, gtol, reanchor, progress)
    opt = dataclasses.replace(opt, compile_seconds=compile_s, seconds=opt.seconds + compile_s)
    (l1, (terms1, d1)), _ = vg(jnp.asarray(opt.x, jnp.float32), offset)
    d0 = jax.tree_util.tree_map(jnp.add, d_soft0, offset_init)
    d1 = jax.tree_util.tree_map(jnp.add, d1, offset)
    params = CBAParams(**params_from_x(jnp.asarray(opt.x), initial, headroom).to_dict()).validate()
    ho = None
    if held_out:
        hw = tuple(min(int(hard_window or n), n) for n in vol.shape)
        ho = held_out_comparison(vol, voxel_nm, initial, params, window=hw, n_realizations=n_hard, seed=seed + 1)
    fl = lambda t: {k: float(v) for k, v in t.items()}  # noqa: E731
    arr = lambda d: {k: np.asarray(v, float) for k, v in d.items()}  # noqa: E731
    return JointResult(
        params=params, initial=initial, optim=opt, loss_initial=float(l0), loss=float(l1), terms_initial=fl(terms0),
        terms=fl(terms1), image=arr(image), model_initial=arr(d0), model=arr(d1), held_out=ho, soft_voxel_nm=vs,
        window=win, n_noise=int(n_noise), softness=float(softness), headroom=float(headroom), weights=w,
        n_tiles=n_tiles, converged=opt.converged, message=opt.message, seconds=time.perf_counter() - t_start,
    )


def _run(vg, anchor, offset, x0, l0, g0, method, max_steps, lr, ftol, patience, gtol, reanchor, progress):
    """Host loop over one jitted ``value_and_grad(x, offset)`` (module docstring).

    Returns ``(OptimResult, offset at the returned point)``.
    """
    bar = None
    if progress:
        import sys

        from tqdm.auto import tqdm

        bar = tqdm(total=max_steps, desc=f"joint ({method})", file=sys.stderr, leave=False)
    t0 = time.perf_counter()
    history = [l0]
    fevs = [1]
    best = (l0, np.asarray(x0, float), float(np.max(np.abs(g0))), offset)
    if not (math.isfinite(l0) and np.all(np.isfinite(g0))):
        res = OptimResult(x=np.asarray(x0, float), loss=l0, loss_history=np.asarray(history), n_fev=1, n_grad=1,
                          seconds=0.0, method=method, converged=False, message="loss or gradient non-finite at start")
        return res, offset
    if method == "adam":
        import optax

        opt = optax.adam(lr)
        x = jnp.asarray(x0)
        state = opt.init(x)
        g = jnp.asarray(g0, x.dtype)
        converged, message, n = False, f"step budget max_steps={max_steps} exhausted", 0
        since, anchors = 0, []
        for n in range(1, max_steps + 1):
            upd, state = opt.update(g, state, x)
            x = optax.apply_updates(x, upd)
            if anchor is not None and reanchor and n % reanchor == 0 and n < max_steps:
                (_, (_, d_soft)), _ = vg(x, offset)
                try:
                    offset = anchor(x, d_soft)
                    since = len(history)  # a new loss from here on: compare only later values
                    best = (float("inf"),) + best[1:]
                    anchors.append(n)
                except ValueError:  # left the noise's validity range for hard realizations: keep the offset
                    pass
            (val, _), g = vg(x, offset)
            val = float(val)
            gn = float(jnp.max(jnp.abs(g)))
            history.append(val)
            fevs.append(n + 1)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{val:.4g}")
            if not (math.isfinite(val) and math.isfinite(gn)):
                message = "loss or gradient became non-finite"
                break
            if val < best[0]:
                best = (val, np.asarray(x, float), gn, offset)
            if gn <= gtol:
                converged, message = True, "gradient norm below gtol"
                break
            if len(history) - since > patience:
                old = min(history[since: len(history) - patience])
                if old - best[0] <= ftol * abs(old):
                    converged, message = True, f"best loss improved by < {ftol:g} (relative) over {patience} steps"
                    break
        n_steps, n_fev = n, len(history)
        if anchors:
            message += f" (re-anchored at steps {anchors}; the loss is comparable within each segment)"
    else:
        import scipy.optimize

        def fun(z):
            (val, _), g = vg(jnp.asarray(z, jnp.float32), offset)
            val = float(val)
            history.append(val)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{val:.4g}")
            return (val if math.isfinite(val) else np.inf), np.asarray(g, float)

        res = scipy.optimize.minimize(fun, np.asarray(x0, float), jac=True, method="L-BFGS-B",
                                      options={"maxiter": max_steps, "maxfun": 2 * max_steps, "gtol": gtol,
                                               "ftol": ftol * 1e-2})
        history = [history[0]] + history[2:]  # scipy evaluates x0 again first
        if float(res.fun) < best[0]:
            best = (float(res.fun), np.asarray(res.x, float), float(np.max(np.abs(res.jac))), offset)
        converged = bool(res.success)
        message = str(res.message) if converged else f"not converged: {res.message}"
        n_steps, n_fev = int(res.nit), int(res.nfev) + 1
        fevs = None
    if bar is not None:
        bar.close()
    result = OptimResult(
        x=best[1], loss=best[0], loss_history=np.asarray(history), n_fev=n_fev, n_grad=n_fev,
        seconds=time.perf_counter() - t0, method=method, converged=converged, message=message, n_steps=n_steps,
        grad_norm=best[2], fev_history=None if fevs is None else np.asarray(fevs),
    )
    return result, best[3]


# ----------------------------------------------------------------------------- held out

HELD_OUT = (("pore r_max (CPSD)", "nm"), ("pore r_min (intrusion z)", "nm"), ("pore constrictivity", "1"),
            ("pore geodesic tortuosity z", "1"), ("solid geodesic tortuosity z", "1"))


def held_out_descriptors(labels, voxel_nm: float, radii_vox) -> np.ndarray:
    """:data:`HELD_OUT` of one hard label volume (NaN where a phase does not percolate)."""
    from jaxcba.descriptors import constrictivity, geodesic_tortuosity

    vol = jnp.asarray(labels)
    pore = vol == 0
    c = constrictivity(pore, voxel_nm, radii_vox=radii_vox, axis=0)
    tp = geodesic_tortuosity(pore, 0)
    ts = geodesic_tortuosity(vol > 0, 0)
    return np.array([float(c.r_max_nm), float(c.r_min_nm), float(c.beta), float(tp.mean), float(ts.mean)])


def held_out_comparison(labels, voxel_nm: float, staged: CBAParams, joint: CBAParams, *, window=None,
                        n_realizations: int = 2, seed: int = 1) -> HeldOut:
    """Held-out descriptors of the image (mean over window tiles) vs hard realizations of
    ``window`` at the staged and the joint parameters (same keys: common random numbers)."""
    import jaxcba

    from jaxcba.descriptors.pore_size import radius_grid

    t0 = time.perf_counter()
    vol = checked_labels(labels)
    window = tuple(vol.shape) if window is None else tuple(int(s) for s in window)
    radii = tuple(float(r) for r in radius_grid(0.25 * min(window)))
    img = np.nanmean([held_out_descriptors(vol[z:z + window[0], y:y + window[1], x:x + window[2]], voxel_nm, radii)
                      for z, y, x in _tiles(vol.shape, window)[:8]], axis=0)
    keys = jax.random.split(jax.random.PRNGKey(seed), n_realizations)
    vals = {}
    for name, p in (("staged", staged), ("joint", joint)):
        vals[name] = np.nanmean([held_out_descriptors(jaxcba.simulate(p, window, voxel_nm, k), voxel_nm, radii)
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


__all__ = ["fit_joint", "JointResult", "HeldOut", "held_out_comparison", "held_out_descriptors",
           "soft_descriptors", "soft_fields_of_labels", "image_soft_descriptors", "params_from_x", "JOINT_METHODS",
           "GROUPS", "HELD_OUT"]
