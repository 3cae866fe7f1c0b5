"""Soft-voxel (differentiable) realizations of Xi = Xi1 ∪ (Xi2 ∩ Xi3^c) from fixed noise.

All randomness is drawn once by :func:`draw_noise` (germ candidates, uniforms for the
half-axes, axes, Exp(1) ball radii, complex white noise for the field); then
:func:`simulate_soft` is a smooth, jittable function of the eight parameters:

* **Germ counts** - each Boolean model gets a fixed pool of candidates: the points of a
  unit-rate Poisson process on ``W x [0, T_max]`` (``W`` the dilated window, volume
  ``|W|`` voxels), i.e. uniform positions with "arrival times" ``T_i``. The germs of
  intensity ``lambda`` are exactly the candidates with ``T_i < lambda |W|`` (a Poisson
  process of intensity ``lambda``). Soft inclusion weight
  ``w_i = sigmoid((lambda |W| - T_i) / (softness sqrt(lambda |W|)))``: the count is
  smoothed on ``softness`` times its Poisson standard deviation, so that the derivative
  in ``lambda`` is spread over several candidates (not a train of spikes) and the
  inclusion becomes the exact Poisson thinning as ``softness -> 0``.
* **Grains** - half-axes ``A = F^-1(u_A; alpha1/voxel_nm) / gamma`` (gamma inverse CDF with
  implicit gradients, :mod:`jaxcba.model.gamma_icdf`), ``C`` likewise, ball radii
  ``R = E / theta`` with ``E ~ Exp(1)``; indicator ``1[d < 0]`` replaced by
  ``sigmoid(-d / softness)`` of the signed distance ``d`` [voxels] (exact for balls,
  first-order for spheroids, :func:`jaxcba.model.raster.signed_distance`).
  Union of a Boolean model: ``p = 1 - prod_i (1 - w_i sigmoid(-d_i / s))``, accumulated
  in log space over each grain's own box.
* **Field** - ``Z`` from the fixed white noise with the exact lattice covariance
  (:mod:`jaxcba.model.gaussian_field`, differentiable in ``eta``);
  ``p2 = sigmoid((Z - mu) / (softness |grad Z|))`` (signed distance to the level set).

Output: ``(graphite, cb)`` probabilities, ``graphite = p1``,
``cb = (1 - p1) p2 (1 - p3)``; the pore probability is ``1 - graphite - cb``.
As ``softness -> 0`` they tend to the indicators of :func:`realize_noise`, the hard
realization made from the same noise.

Validity range: boxes and pools are sized at :func:`draw_noise` time from reference
parameters; ``simulate_soft`` is exact (up to the sigmoid tails, < 4e-4) while every
grain size stays within ``headroom`` times its reference size, the intensities within
``headroom`` times the reference ones, and ``softness <= softness_max``. With concrete
parameters this is checked (``ValueError``); under ``jit``/``grad``/``vmap`` it is the
caller's responsibility (:meth:`SoftNoise.check` outside the trace).

Batching: ``jax.vmap(simulate_soft, in_axes=(0, None, None, None, None))`` over a batch
of parameters (a :class:`CBAParams` with array fields) with one noise, see
:func:`simulate_soft_batch`. Cost ~ sum of box volumes + 4 FFTs; memory ~ a few float
volumes, meant for small windows (<= ~128^3).
"""

from __future__ import annotations

import math
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcba.model import germs as G
from jaxcba.model.gamma_icdf import gamma_icdf
from jaxcba.model.gaussian_field import _white_spectrum_jit, field_and_gradient
from jaxcba.model.params import CBAParams
from jaxcba.model.raster import _box, inside, log_complement
from jaxcba.model.window import check_window

#: Box padding in units of ``softness_max``: sigmoid tails beyond it are < sigmoid(-8) = 3.4e-4.
PAD_SOFTNESS = 8.0
_GRAD_FLOOR = 1e-3  # |grad Z| floor [1/voxel] in the field's signed distance


class CandidatePool(eqx.Module):
    """Germ candidates of one Boolean model, sorted into box classes (static layout).

    Arrays (``P`` rows, grains of class ``c`` in rows ``lo[c]:hi[c]``):
    ``centres (P, 3)`` [voxels]; ``arrival (P,)`` unit-rate arrival times [counts];
    ``u (P, 2)`` uniforms of the half-axes A, C (graphite) or ``(P, 1)`` Exp(1) radii
    (balls); ``axes (P, 3)`` symmetry axes (graphite; zeros for balls).
    """

    centres: jax.Array
    arrival: jax.Array
    u: jax.Array
    axes: jax.Array
    kind: str = eqx.field(static=True)
    volume: float = eqx.field(static=True)  # |W| [voxel^3]
    t_max: float = eqx.field(static=True)  # arrival times cover [0, t_max]
    sides: tuple = eqx.field(static=True)
    lo: tuple = eqx.field(static=True)
    hi: tuple = eqx.field(static=True)
    margin: float = eqx.field(static=True)  # edge margin of W [voxels]


class SoftNoise(eqx.Module):
    """Fixed randomness of a soft realization (from :func:`draw_noise`); a pytree.

    ``xi``: complex white noise of the field, ``half_shape(shape)``; ``graphite``,
    ``balls``: :class:`CandidatePool`; static ``shape``, ``voxel_nm``, ``headroom``,
    ``softness_max`` and the reference parameters (as a dict) the pools were sized for.
    """

    xi: jax.Array
    graphite: CandidatePool
    balls: CandidatePool
    shape: tuple = eqx.field(static=True)
    voxel_nm: float = eqx.field(static=True)
    headroom: float = eqx.field(static=True)
    softness_max: float = eqx.field(static=True)
    reference: tuple = eqx.field(static=True)  # ((name, value), ...) in physical units

    def check(self, params: CBAParams, softness) -> None:
        """``ValueError`` if concrete ``params``/``softness`` leave the validity range."""
        if not isinstance(params, CBAParams):
            raise ValueError(f"params must be a CBAParams, got {type(params).__name__}")
        leaves = [getattr(params, k) for k in ("lambda_x", "alpha1", "alpha2", "gamma", "theta", "lambda_y")]
        if any(isinstance(v, jax.core.Tracer) for v in leaves + [softness]):
            return
        params.validate()
        s = np.asarray(softness, dtype=float)
        if not np.all(np.isfinite(s)) or np.any(s <= 0) or np.any(s > self.softness_max * (1 + 1e-6)):
            raise ValueError(f"softness must be in (0, {self.softness_max}] voxels (the noise's softness_max), got {softness!r}")
        ref = dict(self.reference)
        h = self.headroom
        lam_x = np.asarray(params.lambda_x, float) * self.voxel_nm**3 * self.graphite.volume
        lam_y = np.asarray(params.lambda_y, float) * self.voxel_nm**3 * self.balls.volume
        if np.any(lam_x > self.graphite.t_max) or np.any(lam_y > self.balls.t_max):
            raise ValueError(
                f"intensities exceed the candidate pools (headroom {h} x reference lambda_x={ref['lambda_x']:.4g}, "
                f"lambda_y={ref['lambda_y']:.4g} nm^-3); draw the noise with larger headroom or other reference params"
            )
        ratio_r = ref["theta"] / np.asarray(params.theta, float)
        scale_g = _size_scale(params, ref, self.voxel_nm)
        if np.any(ratio_r > h) or np.any(scale_g > h):
            raise ValueError(
                f"grain sizes exceed {h} x those of the reference parameters the noise was drawn for "
                f"(ball scale {float(np.max(ratio_r)):.3g}, spheroid scale {float(np.max(scale_g)):.3g}); "
                "draw the noise with larger headroom or other reference params"
            )


def _size_scale(params, ref: dict, voxel_nm: float) -> np.ndarray:
    """Upper bound of (half-axis at params) / (half-axis at ref) over all quantiles."""
    from scipy import stats

    q = np.array([1e-9, 1e-6, 1e-3, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 1 - 1e-6, 1 - 1e-9])
    out = 0.0
    for a_name in ("alpha1", "alpha2"):
        k = np.asarray(getattr(params, a_name), float) / voxel_nm
        k_ref = ref[a_name] / voxel_nm
        x = stats.gamma.ppf(q[:, None], np.atleast_1d(k)[None, :]) / np.atleast_1d(np.asarray(params.gamma, float))
        x_ref = stats.gamma.ppf(q, k_ref)[:, None] / ref["gamma"]
        out = np.maximum(out, np.max(x / x_ref, axis=0))
    return out


# ------------------------------------------------------------------------ drawing


def _graphite_marks_vox(u, axes, shape1, shape2, rate):
    """Marks (n_z, n_y, n_x, L, s) [voxels] from the fixed uniforms; differentiable."""
    k = jnp.stack([jnp.asarray(shape1, u.dtype), jnp.asarray(shape2, u.dtype)])
    ac = gamma_icdf(u, k[None, :]) / rate  # one (n, 2) call: one compiled Newton loop
    return G.spheroid_marks(axes.astype(ac.dtype), ac[:, 0], ac[:, 1])


@partial(jax.jit, static_argnums=(1,))
def _draw_chunk(key, kind: str):
    """One chunk of ``DRAW_CHUNK`` candidates: unit-cube positions, arrival uniforms, marks."""
    n = G.DRAW_CHUNK
    k_c, k_t, k_u, k_a = jax.random.split(key, 4)
    pos = jax.random.uniform(k_c, (n, 3), jnp.float32)
    t = jax.random.uniform(k_t, (n,), jnp.float32)
    if kind == "ball":
        u = jax.random.exponential(k_u, (n, 1), jnp.float32)
        axes = jnp.zeros((n, 3), jnp.float32)
    else:
        u = jax.random.uniform(k_u, (n, 2), jnp.float32)
        uu = jax.random.uniform(k_a, (n, 2), jnp.float32)
        axes = G.axis_from_uniforms(uu[:, 0], uu[:, 1])
    return pos, t, u, axes


def _draw_candidates(key, kind: str, n: int):
    parts = [_draw_chunk(jax.random.fold_in(key, j), kind) for j in range(max(1, -(-n // G.DRAW_CHUNK)))]
    return tuple(np.concatenate([np.asarray(p[i]) for p in parts])[:n] for i in range(4))


def _graphite_extent_host(u, axes, shape1, shape2, rate):
    """Half-extents [voxels] of spheroids from their uniforms (scipy, float64; for box sizing)."""
    from scipy import stats

    a = stats.gamma.ppf(np.asarray(u[:, 0], float), shape1) / rate
    c = stats.gamma.ppf(np.asarray(u[:, 1], float), shape2) / rate
    marks = np.concatenate([np.asarray(axes, float), np.maximum(a, c)[:, None], np.minimum(a, c)[:, None]], axis=1)
    return G.half_extent("spheroid", marks)


#: Box sides of the soft path: steps of ~1.5x (few classes -> few compiled loops).
LADDER_SOFT = np.asarray(sorted({4, 6} | {int(2 * round(1.5**k)) for k in range(2, 30)}), dtype=np.int64)


def _pool(kind, key, shape, lam_ref, sf_ref, headroom, pad, extent_fn, eps, ladder=LADDER_SOFT):
    """Candidates of one Boolean model at up to ``headroom`` x the reference intensity/sizes."""

    def sf_h(t):
        return sf_ref(np.maximum(np.asarray(t, float) - pad, 0.0) / headroom)

    margin = G.margin_vox(lam_ref * headroom, shape, sf_h, eps)
    dims = np.asarray(shape, float) + 2 * margin
    volume = float(np.prod(dims))
    t_max = headroom * lam_ref * volume
    k_n, k_d = jax.random.split(key)
    n = G.poisson_count(k_n, t_max)
    pos, t, u, axes = _draw_candidates(k_d, kind, n)
    centres = (pos.astype(np.float64) * dims - margin).astype(np.float32)
    # sorted uniforms = arrival times of the unit-rate process on [0, t_max] given n points
    arrival = (np.sort(t.astype(np.float64)) * t_max).astype(np.float32)
    e = headroom * extent_fn(u, axes) + pad  # bound of the half-extent [voxels]
    c = centres.astype(np.float64)
    hits = np.all((c + e[:, None] >= 0.5) & (c - e[:, None] <= np.asarray(shape, float) - 0.5), axis=1)
    centres, arrival, u, axes, e = centres[hits], arrival[hits], u[hits], axes[hits], e[hits]
    b = G.box_side(e, ladder) if e.size else np.zeros(0, np.int64)
    b = np.minimum(b, max(shape))  # boxes are clipped to the window: merge the classes beyond it
    order = np.argsort(b, kind="stable")
    centres, arrival, u, axes, b = centres[order], arrival[order], u[order], axes[order], b[order]
    sides = tuple(int(s) for s in np.unique(b))
    hi = tuple(int(x) for x in np.searchsorted(b, np.asarray(sides), side="right"))
    lo = (0,) + hi[:-1]
    return CandidatePool(
        centres=jnp.asarray(centres), arrival=jnp.asarray(arrival), u=jnp.asarray(u), axes=jnp.asarray(axes),
        kind=kind, volume=volume, t_max=float(t_max), sides=sides, lo=lo, hi=hi, margin=float(margin),
    )  # fmt: skip


def draw_noise(
    key,
    shape,
    voxel_nm: float,
    params: CBAParams | None = None,
    *,
    headroom: float = 1.5,
    softness_max: float = 1.0,
    eps: float = 1e-6,
) -> SoftNoise:
    """Draw the fixed randomness of soft realizations (host-side sizing, once).

    Args:
        key: ``jax.random`` key (or int seed).
        shape: window ``(nz, ny, nx)`` [voxels] or one int.
        voxel_nm: voxel side [nm].
        params: reference parameters the pools and boxes are sized for (default: the
            paper's Table 2); :func:`simulate_soft` is valid for parameters whose
            intensities and grain sizes are within ``headroom`` times these.
        headroom: factor > 1 (see above).
        softness_max: largest ``softness`` [voxels] to be used; boxes are padded by
            ``8 softness_max`` voxels.
        eps: expected number of grains missed by the edge margins.
    Returns:
        :class:`SoftNoise`.
    """
    shape, voxel_nm = check_window(shape, voxel_nm)
    params = CBAParams.paper() if params is None else params
    if not isinstance(params, CBAParams):
        raise ValueError(f"params must be a CBAParams, got {type(params).__name__}")
    params.validate()
    if not (math.isfinite(headroom) and headroom >= 1):
        raise ValueError(f"headroom must be a finite number >= 1, got {headroom!r}")
    if not (math.isfinite(softness_max) and softness_max > 0):
        raise ValueError(f"softness_max must be a finite number > 0 [voxels], got {softness_max!r}")
    if math.prod(shape) > 256**3:
        raise ValueError(f"soft realizations are meant for small windows (<= 256^3 voxels), got {shape}")
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    ref = {k: float(v) for k, v in params.to_dict().items()}
    p = params.in_voxels(voxel_nm)
    pad = PAD_SOFTNESS * softness_max
    k_field, k_g, k_b = jax.random.split(key, 3)
    xi = _white_spectrum_jit(k_field, shape)

    s1, s2, rate = float(p["shape1"]), float(p["shape2"]), float(p["gamma"])
    theta = float(p["theta"])

    def g_extent(u, axes):
        return _graphite_extent_host(u, axes, s1, s2, rate)

    graphite = _pool("spheroid", k_g, shape, float(p["lambda_x"]), G.graphite_sf(s1, s2, rate), headroom, pad, g_extent, eps)
    balls = _pool("ball", k_b, shape, float(p["lambda_y"]), G.ball_sf(theta), headroom, pad,
                  lambda u, axes: np.asarray(u[:, 0], float) / theta, eps)  # fmt: skip
    return SoftNoise(
        xi=xi, graphite=graphite, balls=balls, shape=shape, voxel_nm=voxel_nm, headroom=float(headroom),
        softness_max=float(softness_max), reference=tuple(ref.items()),
    )  # fmt: skip


# --------------------------------------------------------------------- evaluation


def _marks(pool: CandidatePool, pv: dict, dtype):
    if pool.kind == "ball":
        return (pool.u[:, :1].astype(dtype) / pv["theta"]).astype(dtype)
    return _graphite_marks_vox(pool.u.astype(dtype), pool.axes, pv["shape1"], pv["shape2"], pv["gamma"]).astype(dtype)


def _log_empty(pool: CandidatePool, lam_vox, pv, softness, shape, dtype):
    """``log P(voxel not covered)`` of a soft Boolean model: sum_i log(1 - w_i sigma_i)."""
    acc = jnp.zeros(shape, dtype)
    if not pool.sides:
        return acc
    marks = _marks(pool, pv, dtype)
    mean = lam_vox * pool.volume
    logit = (mean - pool.arrival.astype(dtype)) / (softness * jnp.sqrt(mean))
    for side, lo, hi in zip(pool.sides, pool.lo, pool.hi):
        acc = log_complement(
            acc, pool.centres[lo:hi], marks[lo:hi], logit[lo:hi], softness, box=(side,) * 3, kind=pool.kind
        )
    return acc


def _voxel_params(params: CBAParams, voxel_nm: float, dtype) -> dict:
    return {k: jnp.asarray(v, dtype) for k, v in params.in_voxels(voxel_nm).items()}


def simulate_soft(params: CBAParams, noise: SoftNoise, shape, voxel_nm: float, softness, *, dtype=jnp.float32):
    """Soft realization: per-voxel probabilities ``(graphite, cb)`` in [0, 1], shape ``(z, y, x)`` each.

    Differentiable (``jax.grad``) in all eight fields of ``params`` and in ``softness``;
    jittable with ``noise`` as an argument; vmappable over parameters.

    Args:
        params: :class:`CBAParams` (physical units; may be traced).
        noise: from :func:`draw_noise` with the same ``shape`` and ``voxel_nm``.
        shape, voxel_nm: must match the noise (checked).
        softness: width [voxels] of the sigmoid edges (and, in count units, of the smooth
            germ inclusion), in ``(0, noise.softness_max]``.
        dtype: float32 (default) or float64 (needs ``jax_enable_x64``).
    """
    shape, voxel_nm = check_window(shape, voxel_nm)
    if not isinstance(noise, SoftNoise):
        raise ValueError(f"noise must come from jaxcba.draw_noise, got {type(noise).__name__}")
    if tuple(noise.shape) != shape or noise.voxel_nm != voxel_nm:
        raise ValueError(
            f"noise was drawn for shape {noise.shape} at {noise.voxel_nm} nm, not {shape} at {voxel_nm} nm"
        )
    noise.check(params, softness)
    s = jnp.asarray(softness, dtype)
    pv = _voxel_params(params, voxel_nm, dtype)
    log_e1 = _log_empty(noise.graphite, pv["lambda_x"], pv, s, shape, dtype)
    log_e3 = _log_empty(noise.balls, pv["lambda_y"], pv, s, shape, dtype)
    z, grad = field_and_gradient(noise.xi, shape, pv["eta"], gradient=True, dtype=dtype)
    p2 = jax.nn.sigmoid((z - pv["mu"]) / (s * jnp.maximum(grad, _GRAD_FLOOR)))
    p1 = -jnp.expm1(log_e1)
    e1 = jnp.exp(log_e1)
    cb = e1 * p2 * jnp.exp(log_e3)
    return p1, cb


def simulate_soft_batch(params: CBAParams, noise: SoftNoise, shape, voxel_nm: float, softness, *, dtype=jnp.float32):
    """:func:`simulate_soft` vmapped over a batch of parameters (array fields with a leading
    axis ``B`` are mapped, scalar fields shared).

    Returns ``(graphite, cb)``, each ``(B, nz, ny, nx)``. The validity range is checked
    for every parameter set before tracing.
    """
    noise.check(params, softness)
    axes = jax.tree_util.tree_map(lambda v: 0 if jnp.ndim(v) > 0 else None, params)
    f = jax.vmap(lambda p: simulate_soft(p, noise, shape, voxel_nm, softness, dtype=dtype), in_axes=(axes,))
    return f(params)


def soft_labels(graphite, cb) -> jax.Array:
    """Most probable label per voxel (uint8: 0 pore, 1 cb, 2 graphite) of a soft volume."""
    pore = 1.0 - graphite - cb
    return jnp.argmax(jnp.stack([pore, cb, graphite]), axis=0).astype(jnp.uint8)


def _hard_union(pool: CandidatePool, lam_vox, pv, shape, dtype):
    vol = jnp.zeros(shape, jnp.bool_)
    if not pool.sides:
        return vol
    marks = _marks(pool, pv, dtype)
    included = pool.arrival.astype(dtype) < lam_vox * pool.volume
    for side, lo, hi in zip(pool.sides, pool.lo, pool.hi):
        box = tuple(min(side, n) for n in shape)

        def body(i, vol, box=box):
            starts, (dz, dy, dx) = _box(pool.centres[i], box, shape, dtype)
            mask = inside(pool.kind, dz, dy, dx, marks[i]) & included[i]
            sub = lax.dynamic_slice(vol, starts, box)
            return lax.dynamic_update_slice(vol, sub | mask, starts)

        vol = lax.fori_loop(lo, hi, body, vol)
    return vol


@partial(jax.jit, static_argnames=("shape", "voxel_nm", "dtype"))
def _realize(params, noise, shape, voxel_nm, dtype):
    pv = _voxel_params(params, voxel_nm, dtype)
    g = _hard_union(noise.graphite, pv["lambda_x"], pv, shape, dtype)
    b = _hard_union(noise.balls, pv["lambda_y"], pv, shape, dtype)
    z = field_and_gradient(noise.xi, shape, pv["eta"], dtype=dtype)
    cb = (z >= pv["mu"]) & ~b
    return jnp.where(g, jnp.uint8(2), jnp.where(cb, jnp.uint8(1), jnp.uint8(0)))


def realize_noise(params: CBAParams, noise: SoftNoise, shape, voxel_nm: float, *, dtype=jnp.float32) -> jax.Array:
    """The hard realization (uint8 labels) made from the same noise as :func:`simulate_soft`.

    Germs ``T_i < lambda |W|``, closed spheroids, open balls, ``Z >= mu``: the limit of
    the soft volume as ``softness -> 0``. (A different volume than
    ``simulate(params, shape, voxel_nm, key)``, which lays out its noise differently.)
    """
    shape, voxel_nm = check_window(shape, voxel_nm)
    if tuple(noise.shape) != shape or noise.voxel_nm != voxel_nm:
        raise ValueError(f"noise was drawn for shape {noise.shape} at {noise.voxel_nm} nm, not {shape} at {voxel_nm} nm")
    noise.check(params, noise.softness_max)
    return _realize(params, noise, shape, voxel_nm, dtype)


__all__ = [
    "SoftNoise",
    "CandidatePool",
    "draw_noise",
    "simulate_soft",
    "simulate_soft_batch",
    "soft_labels",
    "realize_noise",
    "PAD_SOFTNESS",
]
