"""Hard ternary realizations of Xi = Xi1 ∪ (Xi2 ∩ Xi3^c) (paper Section 3.1, Eq. 4).

Labels: 0 pore, 1 carbon black + binder ("cb"), 2 graphite. A realization is built in
place in one uint8 volume, in three passes:

1. ``Xi2`` - the excursion set ``{Z >= mu}`` of the Gaussian field (label 1), see
   :mod:`jaxcba.model.gaussian_field` (periodic spectral synthesis, slab-wise);
2. ``Xi3`` - open pore balls clear labels to 0;
3. ``Xi1`` - graphite spheroids set label 2.

Germs come from the window dilated by an edge margin (expected number of missed grains
<= ``eps``); marks are drawn on the device from the key, then sorted into box-size
classes on the host (once per realization, a few kB), and each class is rasterised by
one compiled loop over its grains (:mod:`jaxcba.model.raster`). Cost ~ sum of box
volumes + one FFT; peak memory ~6.5 bytes per voxel (measured figures in
``experiments/benchmarks/RESULTS.md``).

Reproducibility: the key alone fixes the volume - all counts, marks and the field noise
are derived from it with fixed splits, independent of the device and of batching
(:func:`simulate_batch` gives, for each key, the same volume as :func:`simulate`).
Voxels whose field value lies within float rounding (~1e-6) of ``mu`` may differ
between backends whose FFTs round differently.

Batching: :func:`simulate_batch` (the fields of all keys by one ``jax.vmap``-ed call,
then the grains window by window). The
function itself is not traceable in the key (the pools are sized on the host); inside
``jit``/``vmap``/``grad`` use the soft path (:mod:`jaxcba.model.soft`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxcba.model import germs as G
from jaxcba.model.gaussian_field import excursion_labels
from jaxcba.model.params import CBAParams
from jaxcba.model.raster import paint_jit
from jaxcba.model.window import check_memory as _check_window_memory, check_window

#: Default expected number of grains missed by the edge margins, per realization.
EPS = 1e-6
#: Largest expected number of grains (pore balls + graphite spheroids, margins included) of one
#: realization: beyond it the marks alone take GBs and painting minutes (the paper's 800^3
#: window at 20 nm has ~4e4). ``check_memory=False`` lifts it.
MAX_GRAINS = 2e7


@dataclass(frozen=True)
class VoxelParams:
    """The eight parameters as Python floats in voxel units (Section 3.3)."""

    lambda_x: float
    shape1: float
    shape2: float
    gamma: float
    mu: float
    eta: float
    theta: float
    lambda_y: float

    @classmethod
    def of(cls, params: CBAParams, voxel_nm: float) -> "VoxelParams":
        if not isinstance(params, CBAParams):
            raise ValueError(f"params must be a CBAParams, got {type(params).__name__}")
        for name in ("lambda_x", "alpha1", "alpha2", "gamma", "mu", "eta", "theta", "lambda_y"):
            v = getattr(params, name)
            if isinstance(v, jax.core.Tracer):
                raise ValueError(
                    "hard realizations need concrete parameters (not traced by jit/vmap/grad); "
                    "use jaxcba.simulate_soft for differentiable or vmapped parameters"
                )
            if np.ndim(v) != 0:
                raise ValueError(f"parameter {name} must be a scalar for a hard realization, got shape {np.shape(v)}")
        params.validate()
        return cls(**{k: float(v) for k, v in params.in_voxels(voxel_nm).items()})


@dataclass(frozen=True)
class Layer:
    """One Boolean model of a realization: how to draw its germs and what label to paint."""

    kind: str  # "ball" | "spheroid"
    value: int
    lam: float  # intensity [vox^-3]
    margin: float  # [vox]
    draw: Callable[[Any, int], tuple[Any, Any]]  # (key, n) -> (centres, marks)

    def mean_count(self, shape) -> float:
        return self.lam * math.prod(n + 2 * self.margin for n in shape)


def _layers(p: VoxelParams, shape, eps: float, ball_grow: float = 0.0) -> tuple[Layer, Layer]:
    mb = G.margin_vox(p.lambda_y, shape, lambda t: G.ball_sf(p.theta)(np.maximum(np.asarray(t) - ball_grow, 0)), eps)
    mg = G.margin_vox(p.lambda_x, shape, G.graphite_sf(p.shape1, p.shape2, p.gamma), eps)
    balls = Layer("ball", 0, p.lambda_y, mb, lambda k, n: G.draw_balls(k, n, shape, mb, p.theta, ball_grow))
    graphite = Layer(
        "spheroid", 2, p.lambda_x, mg, lambda k, n: G.draw_graphite(k, n, shape, mg, p.shape1, p.shape2, p.gamma)
    )
    return balls, graphite


def _as_key(key):
    from jaxcba._checks import check_key

    if isinstance(key, jax.core.Tracer):
        raise ValueError(
            "simulate needs a concrete key (it sizes its pools on the host); for a batch use "
            "jaxcba.model.simulate_batch(params, shape, voxel_nm, keys), inside jit/vmap/grad use simulate_soft"
        )
    return check_key(key)


def _check_eps(eps) -> float:
    from jaxcba._checks import check_number

    return check_number(eps, "eps", lo=0.0, hi=1.0, lo_open=True, hi_open=True)


def check_grains(layers, shape, batch: int = 1, force: bool = False) -> None:
    """``ValueError`` when the expected grain count of the layers exceeds :data:`MAX_GRAINS`."""
    from jaxcba._checks import check_work

    counts = {"pore balls (lambda_y)": layers[0].mean_count(shape), "graphite grains (lambda_x)": layers[1].mean_count(shape)}
    total = batch * sum(counts.values())
    worst = max(counts, key=counts.get)
    check_work(total, MAX_GRAINS, f"the window {'x'.join(map(str, shape))} with these parameters", "grains",
               force=force, hint=f"most are {worst}; lower the intensity or the window")


def _draw_layer(layer: Layer, key, shape):
    """Host arrays (centres, marks) of one realization of a layer."""
    k_count, k_marks = jax.random.split(key)
    mean = layer.mean_count(shape)
    n = G.poisson_count(k_count, mean)
    return G.draw_rows(layer.draw, k_marks, n)


def _paint_layer(vol, layer: Layer, key, shape, bar=None):
    c, m = _draw_layer(layer, key, shape)
    pk = G.pack(layer.kind, c, m, shape)
    rows = G.pool_size(pk.count, layer.mean_count(shape))
    centres, marks = jnp.asarray(G.pad_rows(pk.centres, rows)), jnp.asarray(G.pad_rows(pk.marks, rows))
    for side, lo, hi in zip(pk.sides, pk.lo, pk.hi):
        vol = paint_jit(vol, centres, marks, jnp.int32(lo), jnp.int32(hi), layer.value, box=(side,) * 3, kind=layer.kind)
        if bar is not None:
            bar.update(1)
    return vol


def _progress(enabled: bool, desc: str):
    if not enabled:
        return None
    from jaxcba._progress import meter

    return meter(None, desc, "step")


def simulate(params: CBAParams, shape, voxel_nm: float, key, *, eps: float = EPS, progress: bool = False,
             check_memory: bool = True) -> jax.Array:
    """One realization of the CBA model as labels (paper Eq. 4).

    Args:
        params: model parameters in physical units (validated; must be concrete scalars).
        shape: window ``(nz, ny, nx)`` [voxels] or one int for a cube.
        voxel_nm: voxel side [nm]; parameters are converted as in Section 3.3.
        key: a ``jax.random`` key (or an int seed).
        eps: expected number of grains missed by the edge margins.
        progress: show a progress bar on stderr.
        check_memory: refuse (``ValueError``) a window that does not fit in memory or whose
            expected grain count exceeds :data:`MAX_GRAINS`; ``False`` tries anyway.
    Returns:
        uint8 array ``(nz, ny, nx)``: 0 pore, 1 carbon black + binder, 2 graphite.
    Raises:
        ValueError: bad shape, voxel size, key, eps or parameters, or a window that does not
            fit in memory or needs too many grains (the message says how much) - before any
            allocation.
    """
    shape, voxel_nm = check_window(shape, voxel_nm)
    p = VoxelParams.of(params, voxel_nm)
    eps = _check_eps(eps)
    if check_memory:
        _check_window_memory(shape)
    key = _as_key(key)
    balls, graphite = _layers(p, shape, eps)
    check_grains((balls, graphite), shape, force=not check_memory)
    k_field, k_balls, k_graphite = jax.random.split(key, 3)
    bar = _progress(progress, f"simulate {'x'.join(map(str, shape))}")
    vol = excursion_labels(k_field, shape, p.eta, p.mu)
    if bar is not None:
        bar.update(1)
    vol = _paint_layer(vol, balls, k_balls, shape, bar)
    vol = _paint_layer(vol, graphite, k_graphite, shape, bar)
    if bar is not None:
        bar.close()
    return vol


def simulate_batch(params: CBAParams, shape, voxel_nm: float, keys, *, eps: float = EPS,
                   check_memory: bool = True) -> jax.Array:
    """Realizations for a batch of keys: the batch entry point of the hard path.

    The Gaussian fields of all keys are made by one ``jax.vmap``-ed call; the grains are
    then painted window by window with the same compiled loops (a vmapped per-grain
    loop would turn every box update into a scatter over the whole batch, ~30x slower
    on CPU). Entry ``b`` equals ``simulate(params, shape, voxel_nm, keys[b])``.

    Args:
        keys: ``(B,)`` typed keys (``jax.random.split(key, B)``) or ``(B, 2)`` raw keys.
    Returns:
        uint8 ``(B, nz, ny, nx)``.
    """
    shape, voxel_nm = check_window(shape, voxel_nm)
    p = VoxelParams.of(params, voxel_nm)
    eps = _check_eps(eps)
    if isinstance(keys, jax.core.Tracer):
        _as_key(keys)
    keys = jnp.asarray(keys) if not isinstance(keys, jax.Array) else keys
    if keys.ndim < 1 or not (jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key)
                             or (keys.dtype == jnp.uint32 and keys.ndim == 2 and keys.shape[1] == 2)):
        raise ValueError(f"keys must be (B,) typed keys (jax.random.split(key, B)) or (B, 2) uint32 raw keys, "
                         f"got dtype {keys.dtype} and shape {keys.shape}")
    n_batch = keys.shape[0]
    if check_memory:
        _check_window_memory(shape, n_batch, "this batch of windows")
    balls, graphite = _layers(p, shape, eps)
    check_grains((balls, graphite), shape, n_batch, force=not check_memory)
    split = jax.vmap(lambda k: jax.random.split(k, 3))(keys)
    fields = jax.vmap(lambda k: excursion_labels(k, shape, p.eta, p.mu))(split[:, 0])
    out = []
    for b in range(n_batch):
        vol = fields[b]
        vol = _paint_layer(vol, balls, split[b, 1], shape)
        out.append(_paint_layer(vol, graphite, split[b, 2], shape))
    del fields
    return jnp.stack(out)


def simulate_balls(
    shape, voxel_nm: float, lambda_y: float, theta: float, key, *, grow_nm: float = 0.0, eps: float = EPS
) -> jax.Array:
    """The pore-ball Boolean model alone, dilated: ``Xi3 ⊕ B(o, grow_nm)`` as a bool volume.

    ``Xi3`` is the union of open balls ``B(Y_i, R_i)``, ``R_i ~ Exp(theta)``, germs of
    intensity ``lambda_y`` [nm^-3]; ``theta`` [nm^-1]. The volume fraction of the
    dilated set is the empty-space (spherical contact) distribution function
    ``H(r) = 1 - exp(-lambda_y (4 pi / 3) E[(R + r)^3])`` at ``r = grow_nm``.
    """
    shape, voxel_nm = check_window(shape, voxel_nm)
    for name, v in (("lambda_y", lambda_y), ("theta", theta)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    if not (math.isfinite(grow_nm) and grow_nm >= 0):
        raise ValueError(f"grow_nm must be a finite number >= 0, got {grow_nm!r}")
    eps = _check_eps(eps)
    _check_window_memory(shape)
    p = VoxelParams(1.0, 1.0, 1.0, 1.0, 0.0, 1.0, theta * voxel_nm, lambda_y * voxel_nm**3)
    balls, _ = _layers(p, shape, eps, ball_grow=grow_nm / voxel_nm)
    balls = Layer("ball", 1, balls.lam, balls.margin, balls.draw)
    vol = jnp.zeros(shape, jnp.uint8)
    return _paint_layer(vol, balls, _as_key(key), shape).astype(bool)


__all__ = ["simulate", "simulate_batch", "simulate_balls", "VoxelParams", "EPS", "MAX_GRAINS", "check_grains"]
