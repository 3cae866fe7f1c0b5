"""Preconditioned conjugate gradients for the conduction operator, in ``lax.while_loop``.

Stopping rule (both must hold): the relative residual ``|b - A u|_2 / |b|_2 <= rtol`` and the
flux imbalance ``(max - min) / max`` of the currents through the ``n0 + 1`` planes normal to
the transport axis ``<= flux_tol`` (TauFactor's criterion, which it applies with 1e-2). The
inner loop runs CG to the current residual target; the outer loop then checks the flux
balance and, if it fails, asks for a ten times smaller residual. The state is a pytree, so a
caller can advance it in chunks of iterations (progress bars) with one compiled function.
A non-finite residual or flux ends the solve at once (``stalled``, not ``converged``).

Each iteration is a few passes over the volume that recompute ``A p`` and the smoother's
last step instead of storing them (``_step``); the carried vectors are ``u, r, p`` (or only
``r, p``, below) and the right-hand side is stored as the inlet layer only. Dot products add the volume's blocks
elementwise before reducing (:func:`blocked_sum`): XLA:CPU stores a reduction's input.

Without ``u`` (:func:`state_from_residual` with ``u0=None``, 4 bytes per voxel less in float32) the solve still knows
everything the M-factor needs, as scalars updated with each step ``u += alpha p``:

* the dissipation ``D(u) = sum_faces g (du)^2 = u.Au - 2 b.u + sum(b)`` changes by
  ``-2 alpha p.r + alpha^2 p.Ap = -alpha r.z`` (``p.r = r.z`` in PCG);
* the inlet current ``J_0 = sum g (1 - u)`` over the inlet faces by ``-alpha b.p``;
* the current through plane ``k`` is ``J_k = J_0 - sum_{i <= k} R_i``, ``R_i`` the sum of the
  residual over layer ``i`` (the net current leaving it), which gives the flux imbalance.

Both sums are compensated (Kahan), so their float32 rounding stays at the level of one
increment, not of their number.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from jaxcba.transport import multigrid as mg
from jaxcba.transport import stencil as sten

PRECONDITIONERS = ("multigrid", "jacobi", "none")


class Problem(eqx.Module):
    """The linear system and its preconditioner (built once per operator).

    ``b`` is the right-hand side on the inlet layer (padded layer 1, shape ``(n1, n2)``);
    it is zero elsewhere, so no volume-sized ``b`` is stored. With ``"multigrid"`` the
    inverse diagonal lives in the hierarchy's finest level only (``diag_inverse``).
    """

    own_stencil: sten.Stencil | sten.LabelStencil | None
    b: jax.Array
    b_norm: jax.Array
    inv_diag: jax.Array | None
    hierarchy: mg.Hierarchy | None
    preconditioner: str = eqx.field(static=True)

    @property
    def stencil(self):
        """The operator (held once: by the hierarchy's finest level with ``"multigrid"``)."""
        return self.hierarchy.levels[0].stencil if self.own_stencil is None else self.own_stencil

    @property
    def diag_inverse(self) -> jax.Array:
        return self.hierarchy.levels[0].inv_diag if self.inv_diag is None else self.inv_diag

    def apply_preconditioner(self, r: jax.Array) -> jax.Array:
        if self.preconditioner == "multigrid":
            return mg.v_cycle(self.hierarchy, r)
        dinv = mg.expand(self.diag_inverse, r.dtype)
        if self.preconditioner == "jacobi":
            return dinv * r
        return jnp.where(dinv > 0, r, 0)

    def residual(self, u: jax.Array) -> jax.Array:
        """``b - A u`` (padded)."""
        return (-sten.matvec(self.stencil, u)).at[1, 1:-1, 1:-1].add(self.b)


class State(eqx.Module):
    """CG iterate and the bookkeeping of the stopping rule.

    ``u`` is None when the solve does not keep the iterate; ``dissipation``
    and ``inlet_current`` (``[sum, Kahan compensation]``, float) are tracked either way.
    """

    u: jax.Array | None
    r: jax.Array
    p: jax.Array
    rz: jax.Array
    res: jax.Array  # relative residual of the recursion
    target: jax.Array  # current residual target of the inner loop
    imbalance: jax.Array
    iterations: jax.Array
    converged: jax.Array
    stalled: jax.Array  # residual target fell below float precision without flux balance
    dissipation: jax.Array  # D(u) of the iterate, [sum, compensation]
    inlet_current: jax.Array  # current through the inlet faces, [sum, compensation]

    def finished(self, max_iter) -> jax.Array:
        return self.converged | self.stalled | (self.iterations >= max_iter)


def make_problem(
    st,
    preconditioner: str = "multigrid",
    *,
    coarse_size: int = 512,
    sweeps: int = 1,
    omega: float = 0.8,
    scale: float = 1.5,
    diag_dtype=None,
) -> Problem:
    """Right-hand side, Jacobi diagonal and (for ``"multigrid"``) the V-cycle hierarchy of ``st``.

    ``st``: a stored :class:`~jaxcba.transport.stencil.Stencil` or a ``LabelStencil``;
    ``diag_dtype``: storage dtype of the fine inverse diagonal (default: the operator's).
    """
    if preconditioner not in PRECONDITIONERS:
        raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got {preconditioner!r}")
    b = sten.inlet(st)
    if preconditioner == "multigrid":
        hier = mg.build(st, coarse_size, sweeps, omega, scale, diag_dtype)
        inv = None
    else:
        hier = None
        inv = mg._inverse_diagonal(st, diag_dtype)
    return Problem(None if hier is not None else st, b, jnp.sqrt(jnp.sum(b * b)), inv, hier, preconditioner)


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    # Two-stage sum keeps float32 rounding error small on large volumes.
    return jnp.sum(jnp.sum(a * b, axis=(1, 2)))


def blocked_sum(integrand, fine, coarse=(), *, n0: int, blocks: int = 8) -> jax.Array:
    """``sum(integrand(fine, coarse))`` added up block by block along axis 0.

    XLA:CPU stores the whole input of a reduction. Here the volume is cut into ``B`` blocks
    of ``t = n0 / B`` rows (static slices; ``B`` the largest of ``blocks, 4, 2`` with
    ``n0 % 2B == 0``, else 1) and the ``B`` block integrands are added elementwise (one loop
    that fuses their computation) before the reduction, which then stores ``1 / B`` of the
    volume. ``fine``: pytree whose volume leaves are padded fine arrays ``(n0 + 2, ...)``;
    block ``b`` gets rows ``[b t, b t + t + 2)`` (its halo included). ``coarse``: padded
    coarse arrays ``(n0 / 2 + 2, ...)``, block rows ``[b t / 2, b t / 2 + t / 2 + 2)``.
    ``integrand`` returns the ``(t, n1, n2)`` interior terms of its block.
    """
    nb, t = sten.row_blocks(n0, blocks)
    if nb == 1:
        return sten.sum_by_axis(integrand(fine, coarse))
    acc = 0
    for b in range(nb):
        acc = acc + integrand(sten.cut_rows(fine, b * t, t + 2, n0 + 2), sten.cut_rows(coarse, b * t // 2, t // 2 + 2, n0 // 2 + 2))
    return sten.sum_by_axis(acc)


def flux_imbalance(st, u: jax.Array) -> jax.Array:
    """``(max - min) / max`` of the plane currents (0 when no current flows)."""
    st, u = mg.passes((st, u))  # keeps the face lookups in the loop (else hoisted and stored)
    return _spread(sten.layer_currents(st, u))


def _spread(cur: jax.Array) -> jax.Array:
    """``(max - min) / max`` of plane currents, 0 when no current flows."""
    top = jnp.max(cur)
    return jnp.where(top > 0, (top - jnp.min(cur)) / jnp.where(top > 0, top, 1), 0.0)


def _kahan(acc: jax.Array, x: jax.Array) -> jax.Array:
    """``[sum, compensation]`` plus ``x``, compensated (Kahan)."""
    y = x - acc[1]
    t = acc[0] + y
    return jnp.stack([t, (t - acc[0]) - y])


def _tracked(x: jax.Array) -> jax.Array:
    return jnp.stack([x, jnp.zeros_like(x)])


def initial_residual(prob: Problem, u0: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(u0, r, D, J_0)``: the masked guess, its residual ``b - A u0``, dissipation and inlet current."""
    u0 = jnp.where(prob.diag_inverse > 0, u0, 0).astype(prob.b.dtype)
    r = mg.passes(prob.residual(u0))
    st = prob.stencil
    return u0, r, sten.dissipation(st, u0), sten.inlet_current(st, u0)


def initial_state(prob: Problem, u0: jax.Array, rtol: float, active: jax.Array) -> State:
    """CG state from the initial guess ``u0``; ``active=False`` (nothing percolates) is done."""
    u0, r, d, j0 = initial_residual(prob, u0)
    return state_from_residual(prob, r, d, j0, rtol, active, u0)


def state_from_residual(prob: Problem, r, dissipation, inlet_current, rtol, active, u0=None) -> State:
    """CG state from the residual of the guess (:func:`initial_residual`,
    :func:`~jaxcba.transport.stencil.guess_start`); ``u0=None``: the iterate is not carried
    (see the module docstring)."""
    # p = z = M r: the update p = z + beta p of an iteration with beta = 0 (same passes, same memory)
    p, rz = _precondition(prob, r, jnp.zeros_like(r), jnp.zeros((), r.dtype))
    res = _relative(prob, r)
    f32 = prob.b.dtype
    imb = flux_imbalance(prob.stencil, u0) if u0 is not None else residual_imbalance(r, inlet_current)
    return State(
        u=u0,
        r=r,
        p=p,
        rz=rz,
        res=res,
        target=jnp.asarray(rtol, f32),
        imbalance=jnp.where(active, imb, 0).astype(f32),
        iterations=jnp.asarray(0, jnp.int32),
        converged=~jnp.asarray(active),
        stalled=jnp.asarray(False),
        dissipation=_tracked(jnp.asarray(dissipation, f32)),
        inlet_current=_tracked(jnp.asarray(inlet_current, f32)),
    )


def residual_imbalance(r: jax.Array, inlet_current: jax.Array) -> jax.Array:
    """``(max - min) / max`` of the plane currents ``J_k = J_0 - sum_{i <= k} R_i`` of the
    residual ``r`` (padded, zero ghosts) and the inlet current ``J_0`` (a scalar or
    ``[sum, compensation]``); 0 when no current flows."""
    j0 = inlet_current[0] if jnp.ndim(inlet_current) else inlet_current
    layers = jnp.sum(r, axis=(1, 2))[1:-1]  # a reduction of the stored r: no copy of it
    return _spread(jnp.concatenate([j0[None], j0 - jnp.cumsum(layers)]))


def _relative(prob: Problem, r: jax.Array) -> jax.Array:
    bn = jnp.where(prob.b_norm > 0, prob.b_norm, 1)
    rr = blocked_sum(lambda f, c: jnp.square(sten.interior(f)), r, n0=r.shape[0] - 2)
    return jnp.sqrt(rr) / bn


def _precondition(prob: Problem, r: jax.Array, p: jax.Array, rz_old: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``z = M r``, ``rz = r . z`` and the search direction ``z + beta p`` (``beta = rz / rz_old``,
    0 when ``rz_old <= 0``), written into ``p``'s buffer.

    With the multigrid preconditioner (one sweep) ``z`` is not stored: after the coarse
    correction ``e``, ``z = x1 + omega D^-1 (r - A x1)`` with ``x1 = omega D^-1 r + s P e``
    (both recomputed at each stencil point, :func:`multigrid.smooth_interior`) runs once for
    ``r . z`` and once more fused into the in-place update of ``p``.
    """
    def beta_of(rz):
        return jnp.where(rz_old > 0, rz / jnp.where(rz_old > 0, rz_old, 1), 0)

    if prob.preconditioner == "multigrid" and prob.hierarchy.sweeps == 1:
        inner = (slice(1, -1),) * 3
        h = prob.hierarchy
        e = mg.coarse_correction(h, 0, r)
        lv = h.levels[0]
        st, dinv, rb, eb = mg.passes((lv.stencil, lv.inv_diag, r, e))
        z = lambda f, c: mg.smooth_interior(*f, c[0], h.omega, h.scale)  # noqa: E731
        rz = blocked_sum(lambda f, c: sten.interior(f[2]) * z(f, c), (st, dinv, rb), (eb,), n0=r.shape[0] - 2)
        beta = beta_of(rz)
        st, dinv, rb, eb, _ = mg.passes((lv.stencil, lv.inv_diag, r, e, rz))
        return p.at[inner].set(z((st, dinv, rb), (eb,)) + beta * p[inner]), rz
    z = prob.apply_preconditioner(r)
    rz = _dot(r, z)
    return z + beta_of(rz) * p, rz


def _step(prob: Problem, s: State) -> State:
    """One PCG iteration in passes over the volume (see ``multigrid.passes``).

    ``q = A p`` is not stored: it is recomputed in the pass for ``p.q`` and in
    the one that updates ``r`` in place; ``z = M r`` is not stored either (:func:`_precondition`).
    The carried vectors are ``u`` (unless None), ``r, p``, updated in place; no other
    volume-sized array lives.
    """
    inner = (slice(1, -1),) * 3
    n0 = s.p.shape[0] - 2
    st = mg.passes((prob.stencil, s.rz))[0]
    pq = blocked_sum(lambda f, c: sten.interior(f[1]) * sten._stencil_sum(*f), (st, s.p), n0=n0)
    alpha = jnp.where(pq > 0, s.rz / jnp.where(pq > 0, pq, 1), 0)
    bp = sten.sum_by_axis(prob.b * s.p[1, 1:-1, 1:-1])
    dissipation = _kahan(s.dissipation, -alpha * s.rz)
    inlet_current = _kahan(s.inlet_current, -alpha * bp)
    st = mg.passes((prob.stencil, alpha))[0]
    order = s.rz
    u = None
    if s.u is not None:
        u = s.u.at[inner].add(alpha * s.p[inner])  # in place (a new u would be one more volume)
        # the in-place update of p must follow the update of u, the last read of the old p: a data
        # dependence (0 * u[1, 1, 1]; floats are not simplified) orders them, else XLA copies p twice
        order = s.rz + 0 * u[1, 1, 1]
    r = mg.passes(s.r.at[inner].add(-alpha * sten._stencil_sum(st, s.p)))
    p, rz = _precondition(prob, r, s.p, order + 0 * bp)
    return eqx.tree_at(
        lambda t: (t.u, t.r, t.p, t.rz, t.res, t.iterations, t.dissipation, t.inlet_current),
        s,
        (u, r, p, rz, _relative(prob, r), s.iterations + 1, dissipation, inlet_current),
        is_leaf=lambda x: x is None,
    )


def advance(prob: Problem, s: State, stop: jax.Array, rtol: float, flux_tol: float) -> State:
    """Iterate until converged or ``s.iterations == stop`` (a traced int: chunked solves)."""
    stop = jnp.asarray(stop, jnp.int32)

    def inner_cond(t: State):
        # NaN fails ``res > target``: a non-finite residual leaves the inner loop at once
        return (t.res > t.target) & (t.iterations < stop)

    floor = jnp.finfo(s.r.dtype).eps * 1e-2

    def outer_cond(t: State):
        return (~t.converged) & (~t.stalled) & (t.iterations < stop)

    def outer_body(t: State):
        t = lax.while_loop(inner_cond, lambda x: _step(prob, x), t)
        imb = flux_imbalance(prob.stencil, t.u) if t.u is not None else residual_imbalance(t.r, t.inlet_current)
        reached = t.res <= t.target
        done = reached & (t.res <= rtol) & (imb <= flux_tol)
        # Flux balance not there yet at this residual: aim ten times lower.
        target = jnp.where(reached & ~done, t.target * 0.1, t.target)
        # A non-finite residual or flux (overflow, breakdown) ends the solve unconverged.
        bad = ~jnp.isfinite(t.res) | ~jnp.isfinite(imb)
        done = done & ~bad
        stalled = (~done & (target < floor)) | bad
        return eqx.tree_at(
            lambda x: (x.imbalance, x.converged, x.target, x.stalled),
            t,
            (imb.astype(t.imbalance.dtype), done, target.astype(t.target.dtype), stalled),
        )

    return lax.while_loop(outer_cond, outer_body, s)
