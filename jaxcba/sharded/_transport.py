"""Effective conductivity of a z-sharded conductivity field (paper Eq. 27) by domain decomposition.

The discretisation, boundary conditions, stopping rule and read-out are those of
:func:`jaxcba.transport.effective_conductivity` (transport along z, the sharded axis):

* finite volumes on voxel centres, harmonic-mean face conductances, Dirichlet planes
  ``u = 1 / 0`` before the first and after the last z-plane (``half_voxel``: conductance
  ``2 s``, distance ``nz``; ``ghost_voxel``: ``s``, distance ``nz + 1``), no flux elsewhere;
* only the cluster joining inlet and outlet conducts (6-connected, as
  ``jaxcba.morphology.percolating_cluster``): a distributed morphological reconstruction,
  local flood fills alternating with the exchange of the two border planes until no shard
  changes (``psum`` of the change flags);
* preconditioned CG: the 7-point stencil needs the neighbour shards' border planes
  (one-plane halo, two ``ppermute`` per operator application); dot products are local sums
  added by ``psum``; stop when ``|b - A u| / |b| <= rtol`` and the flux imbalance of the
  ``nz + 1`` plane currents (``pmax`` / ``pmin``) is ``<= flux_tol``, aiming ten times lower
  when the first holds without the second;
* ``sigma_eff = L / A_cross * sum_faces g (du)^2`` (the dissipation, ``psum``-ed).

Preconditioner: the single-device multigrid V-cycle on the slabs (``_multigrid``), which is
the single-device preconditioner up to float rounding, so CG takes the single-device number
of iterations for any device count; or Jacobi (``preconditioner="jacobi"``: more iterations,
growing with ``nz``, the same answer to the solver tolerance).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxcba.transport import multigrid as mg
from jaxcba.transport import stencil as sten
from jaxcba.transport.result import TransportResult
from jaxcba.transport.solver import CPU_COMPILER_OPTIONS, _options
from jaxcba.transport.stencil import BOUNDARIES
from jaxcba.sharded import _mesh as M
from jaxcba.sharded import _multigrid as SM
from jaxcba.sharded._descriptors import _sharded


#: Preconditioners of the sharded solve.
PRECONDITIONERS = ("multigrid", "jacobi")


def _shift(x, axis: int, step: int):
    """``x`` moved by ``step`` (+1 / -1) along ``axis``, zero-filled."""
    n = x.shape[axis]
    if step > 0:
        body = lax.slice_in_dim(x, 0, n - 1, axis=axis)
        return jnp.concatenate([jnp.zeros_like(lax.slice_in_dim(x, 0, 1, axis=axis)), body], axis=axis)
    body = lax.slice_in_dim(x, 1, n, axis=axis)
    return jnp.concatenate([body, jnp.zeros_like(lax.slice_in_dim(x, 0, 1, axis=axis))], axis=axis)


def _reconstruct(mask, seed, ax: str, n: int):
    """Voxels of ``mask`` 6-connected to ``seed`` (both local bool slabs), over all shards."""

    def local_fill(x, prev, nxt):
        def cond(s):
            return s[1]

        def body(s):
            y, _ = s
            ext = jnp.concatenate([prev, y, nxt], axis=0)
            grown = y | ext[:-2] | ext[2:]
            for a in (1, 2):
                grown = grown | _shift(y, a, 1) | _shift(y, a, -1)
            grown = grown & mask
            return grown, jnp.any(grown != y)

        return lax.while_loop(cond, body, (x, jnp.asarray(True)))[0]

    def cond(s):
        return s[1]

    def body(s):
        x, _ = s
        prev, nxt = SM.halos(x, ax, n)
        y = local_fill(x, prev, nxt)
        return y, lax.psum(jnp.any(y != x).astype(jnp.int32), ax) > 0

    return lax.while_loop(cond, body, (seed & mask, jnp.asarray(True)))[0]


def _faces(st: sten.Stencil):
    """Face conductances of the slab from its padded stencil: ``gz (lz + 1, ny, nx)`` (face
    ``j`` between planes ``j - 1`` and ``j``; Dirichlet faces at the two ends of the mesh),
    ``gy (lz, ny + 1, nx)``, ``gx (lz, ny, nx + 1)`` with zero (no-flux) outer faces."""
    return st.g[0][1:, 1:-1, 1:-1], st.g[1][1:-1, 1:, 1:-1], st.g[2][1:-1, 1:-1, 1:]


def _matvec(st: sten.Stencil, u, ax: str, n: int):
    """``A u`` on the slab (homogeneous Dirichlet values at the ends)."""
    return sten._stencil_sum(st, SM.padded(u, ax, n))


def _plane_currents(g, u, ax: str, n: int):
    """Currents through the local planes: face ``j = 0 .. lz - 1`` (inlet ghost at u = 1 on
    the first shard), and the outlet plane on the last shard (``-inf``-free: returned apart)."""
    gz = g[0]
    d = lax.axis_index(ax)
    prev, _ = SM.halos(u, ax, n)
    prev = jnp.where(d == 0, jnp.ones_like(prev), prev)
    before = jnp.concatenate([prev, u[:-1]], axis=0)
    planes = jnp.sum(gz[:-1] * (before - u), axis=(1, 2))
    outlet = jnp.sum(gz[-1] * u[-1])
    return planes, outlet


def _imbalance(g, u, ax: str, n: int):
    planes, outlet = _plane_currents(g, u, ax, n)
    last = lax.axis_index(ax) == n - 1
    hi = lax.pmax(jnp.maximum(jnp.max(planes), jnp.where(last, outlet, -jnp.inf)), ax)
    lo = lax.pmin(jnp.minimum(jnp.min(planes), jnp.where(last, outlet, jnp.inf)), ax)
    return jnp.where(hi > 0, (hi - lo) / jnp.where(hi > 0, hi, 1), 0.0)


def _dissipation(g, u, ax: str, n: int):
    gz, gy, gx = g
    d = lax.axis_index(ax)
    prev, _ = SM.halos(u, ax, n)
    prev = jnp.where(d == 0, jnp.ones_like(prev), prev)  # inlet ghost at u = 1
    before = jnp.concatenate([prev, u[:-1]], axis=0)
    total = jnp.sum(gz[:-1] * jnp.square(before - u))
    total = total + jnp.where(d == n - 1, jnp.sum(gz[-1] * jnp.square(u[-1])), 0.0)  # outlet ghost at 0
    total = total + jnp.sum(gy[:, 1:-1] * jnp.square(u[:, 1:] - u[:, :-1]))
    total = total + jnp.sum(gx[:, :, 1:-1] * jnp.square(u[:, :, 1:] - u[:, :, :-1]))
    return lax.psum(total, ax)


class _Program:
    """``jax.jit`` of the solve with the single-device solver's XLA:CPU options on the CPU
    backend (``transport.solver.CPU_COMPILER_OPTIONS``: no YNNPACK fusions, which store stencil
    slices; measured 82 -> 66 B/voxel at 64^3 on one host device), none elsewhere."""

    def __init__(self, fun, **kw):
        self._fun, self._kw, self._by_backend = fun, kw, {}

    def _get(self):
        backend = jax.default_backend()
        if backend not in self._by_backend:
            opts = CPU_COMPILER_OPTIONS if backend == "cpu" else None
            self._by_backend[backend] = jax.jit(self._fun, compiler_options=opts, **self._kw)
        return self._by_backend[backend]

    def __call__(self, *args, **kw):
        return self._get()(*args, **kw)

    def lower(self, *args, **kw):
        return self._get().lower(*args, **kw)


def _solve(sigma, sigma_ref, rtol, flux_tol, max_iter, *, mesh, boundary, shape, preconditioner="multigrid"):
    ax = M.axis_of(mesh)
    n = M.size_of(mesh)
    nz, ny, nx = shape
    factor = BOUNDARIES[boundary]
    length = nz if boundary == "half_voxel" else nz + 1
    dtype = sigma.dtype

    def local(s, sigma_ref, rtol, flux_tol, max_iter):
        d = lax.axis_index(ax)
        lz = s.shape[0]
        psum = partial(lax.psum, axis_name=ax)
        dot = lambda a, b: psum(jnp.sum(jnp.sum(a * b, axis=(1, 2))))  # noqa: E731
        eps = psum(jnp.sum((s > 0).astype(jnp.int32)).astype(jnp.float32)).astype(dtype) / (nz * ny * nx)
        # the percolating cluster
        planes = d * lz + jnp.arange(lz)
        first = jnp.broadcast_to((planes == 0)[:, None, None], s.shape)
        last = jnp.broadcast_to((planes == nz - 1)[:, None, None], s.shape)
        from_first = _reconstruct(s > 0, first, ax, n)
        cluster = _reconstruct(from_first, last, ax, n)
        percolates = psum(jnp.any(cluster).astype(jnp.int32)) > 0
        top = lax.pmax(jnp.max(s), ax)
        c = jnp.where(top > 0, top, 1)
        sa = jnp.where(cluster, s / c, 0).astype(dtype)
        st = SM.local_stencil(sa, ax, n, factor)
        g = _faces(st)
        gz = g[0]
        if preconditioner == "multigrid":
            hier = SM.build(st, shape, ax, n)
            dinv = sten.interior(hier.levels[0].inv_diag) if hier.levels else sten.interior(mg._inverse_diagonal(st))
            precondition = partial(SM.v_cycle, hier)
        else:
            dinv = sten.interior(mg._inverse_diagonal(st))
            precondition = lambda r: dinv * r  # noqa: E731
        b = jnp.zeros_like(sa).at[0].set(jnp.where(d == 0, gz[0], 0))
        b_norm = jnp.sqrt(dot(b, b))
        bn = jnp.where(b_norm > 0, b_norm, 1)
        prof = 1 - (planes.astype(dtype) + 0.5) / nz if boundary == "half_voxel" else 1 - (planes.astype(dtype) + 1) / (nz + 1)
        u = jnp.where(dinv > 0, jnp.broadcast_to(prof[:, None, None], s.shape), 0).astype(dtype)
        r = b - _matvec(st, u, ax, n)
        # p = 0, rz = 0: the first step's p = M r (beta = 0), so the V-cycle is traced once
        state = dict(u=u, r=r, p=jnp.zeros_like(r), rz=jnp.zeros((), dtype), res=jnp.sqrt(dot(r, r)) / bn,
                     target=jnp.asarray(rtol, dtype), imb=jnp.where(percolates, _imbalance(g, u, ax, n), 0).astype(dtype),
                     it=jnp.asarray(0, jnp.int32), converged=~percolates, stalled=jnp.asarray(False))

        def step(t):
            zv = precondition(t["r"])
            rz = dot(t["r"], zv)
            beta = jnp.where(t["rz"] > 0, rz / jnp.where(t["rz"] > 0, t["rz"], 1), 0)
            p = zv + beta * t["p"]
            q = _matvec(st, p, ax, n)
            pq = dot(p, q)
            alpha = jnp.where(pq > 0, rz / jnp.where(pq > 0, pq, 1), 0)
            r = t["r"] - alpha * q
            return dict(t, u=t["u"] + alpha * p, r=r, p=p, rz=rz, res=jnp.sqrt(dot(r, r)) / bn, it=t["it"] + 1)

        floor = jnp.finfo(dtype).eps * 1e-2

        def outer(t):
            t = lax.while_loop(lambda x: (x["res"] > x["target"]) & (x["it"] < max_iter), step, t)
            imb = _imbalance(g, t["u"], ax, n)
            reached = t["res"] <= t["target"]
            done = reached & (t["res"] <= rtol) & (imb <= flux_tol)
            target = jnp.where(reached & ~done, t["target"] * 0.1, t["target"])
            bad = ~jnp.isfinite(t["res"]) | ~jnp.isfinite(imb)
            done = done & ~bad
            stalled = (~done & (target < floor)) | bad
            return dict(t, imb=imb.astype(dtype), converged=done, target=target.astype(dtype), stalled=stalled)

        t = lax.while_loop(lambda x: (~x["converged"]) & (~x["stalled"]) & (x["it"] < max_iter), outer, state)
        sigma_eff = c * _dissipation(g, t["u"], ax, n) * (length / (ny * nx))
        sigma_eff = jnp.where(percolates, sigma_eff, 0)
        ref = jnp.asarray(sigma_ref, dtype)
        m = sigma_eff / ref
        tau = jnp.where(m > 0, eps / jnp.where(m > 0, m, 1), jnp.inf)
        return (sigma_eff, m, eps, tau, ref, t["imb"], jnp.where(percolates, t["res"], 0).astype(dtype), t["it"],
                t["converged"], percolates)

    out = jax.shard_map(local, mesh=mesh, in_specs=(P(ax), P(), P(), P(), P()), out_specs=(P(),) * 10,
                        check_vma=False)(sigma, sigma_ref, rtol, flux_tol, max_iter)
    return out


_solve_program = _Program(_solve, static_argnames=("mesh", "boundary", "shape", "preconditioner"))


def effective_conductivity(sigma, axis="z", *, mesh=None, sigma_ref=None, options=None, dtype=jnp.float32,
                           **option_kw) -> TransportResult:
    """:func:`jaxcba.transport.effective_conductivity` of a z-sharded field, transport along z.

    Args:
        sigma: ``(z, y, x)`` conductivities ``>= 0`` (any units), a z-sharded ``jax.Array``
            or a host array sharded over ``mesh``.
        axis: must be ``'z'`` / ``0`` (the sharded axis); transpose the volume for another.
        sigma_ref: reference conductivity for ``M`` (default: the largest value).
        options: a ``jaxcba.transport.SolverOptions``, or its fields as keywords (``rtol=1e-6``),
            as for one device. ``preconditioner``: ``"multigrid"`` (default: the single-device
            V-cycle, distributed, so the single-device iteration count for any device count) or
            ``"jacobi"``; ``initial_guess="linear"`` and ``sweeps=1`` only.
    Returns:
        ``TransportResult`` (``m_factor`` = M, ``tau_eff`` = eps / M, Eq. 27).
    """
    from jaxcba._checks import check_number

    options = _options(options, option_kw)  # checks rtol, flux_tol, max_iter, boundary
    if axis not in ("z", 0):
        raise ValueError(f"axis must be 'z' (0), the sharded axis, for a sharded solve, got {axis!r}")
    if options.preconditioner not in PRECONDITIONERS:
        raise ValueError(f"preconditioner must be one of {PRECONDITIONERS} for a sharded solve, "
                         f"got {options.preconditioner!r}")
    if options.initial_guess != "linear" or options.sweeps != 1:
        raise ValueError("a sharded solve starts from the linear profile with one smoothing sweep: "
                         f"initial_guess must be 'linear' and sweeps 1, got {options.initial_guess!r} and {options.sweeps}")
    rtol, flux_tol, max_iter = options.rtol, options.flux_tol, int(options.max_iter)
    boundary, preconditioner = options.boundary, options.preconditioner
    sigma = _sharded(sigma, mesh, 1, "the conductivity field")
    mesh = M.mesh_of(sigma)
    if sigma.dtype != dtype:
        sigma = sigma.astype(dtype)
    top = float(jnp.max(sigma))
    if not math.isfinite(top) or bool(jnp.any(~jnp.isfinite(sigma))):
        raise ValueError("conductivities must be finite")
    if bool(jnp.any(sigma < 0)):
        raise ValueError(f"conductivities must be >= 0, got a minimum of {float(jnp.min(sigma))}")
    if top <= 0:
        raise ValueError("no conducting voxel: the conducting phase is absent (all conductivities are 0)")
    ref = top if sigma_ref is None else check_number(sigma_ref, "sigma_ref", lo=0.0, lo_open=True)
    out = _solve_program(sigma, jnp.asarray(ref, dtype), jnp.asarray(rtol, dtype), jnp.asarray(flux_tol, dtype),
                         jnp.asarray(max_iter, jnp.int32), mesh=mesh, boundary=boundary, shape=tuple(sigma.shape),
                         preconditioner=preconditioner)
    return TransportResult(*out)


def label_conductivity(labels, conductivity: dict, axis="z", *, mesh=None, sigma_ref=None, **kw) -> TransportResult:
    """:func:`effective_conductivity` of the field ``{label: sigma}[labels]`` (labels not listed insulate)."""
    items = {int(k): float(v) for k, v in dict(conductivity).items()}
    if not any(v > 0 for v in items.values()):
        raise ValueError("no conducting label: every conductivity is 0")
    labels = _sharded(labels, mesh, 1, "the labels")
    table = np.zeros(256, np.float32)
    for k, v in items.items():
        if not 0 <= k < 256:
            raise ValueError(f"labels must be in [0, 255], got {k}")
        table[k] = v
    sigma = jnp.asarray(table)[labels.astype(jnp.int32)]
    ref = max(items.values()) if sigma_ref is None else sigma_ref
    return effective_conductivity(sigma, axis, mesh=M.mesh_of(labels), sigma_ref=ref, **kw)
