"""Preconditioned conjugate gradients for the conduction operator, in ``lax.while_loop``.

Stopping rule (both must hold): the relative residual ``|b - A u|_2 / |b|_2 <= rtol`` and the
flux imbalance ``(max - min) / max`` of the currents through the ``n0 + 1`` planes normal to
the transport axis ``<= flux_tol`` (TauFactor's criterion, which it applies with 1e-2). The
inner loop runs CG to the current residual target; the outer loop then checks the flux
balance and, if it fails, asks for a ten times smaller residual. The state is a pytree, so a
caller can advance it in chunks of iterations (progress bars) with one compiled function.
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
    """The linear system and its preconditioner (built once per conductivity field)."""

    stencil: sten.Stencil
    b: jax.Array
    b_norm: jax.Array
    inv_diag: jax.Array
    hierarchy: mg.Hierarchy | None
    preconditioner: str = eqx.field(static=True)

    def apply_preconditioner(self, r: jax.Array) -> jax.Array:
        if self.preconditioner == "multigrid":
            return mg.v_cycle(self.hierarchy, r)
        if self.preconditioner == "jacobi":
            return self.inv_diag * r
        return jnp.where(self.inv_diag > 0, r, 0)


class State(eqx.Module):
    """CG iterate and the bookkeeping of the stopping rule."""

    u: jax.Array
    r: jax.Array
    p: jax.Array
    rz: jax.Array
    res: jax.Array  # relative residual of the recursion
    target: jax.Array  # current residual target of the inner loop
    imbalance: jax.Array
    iterations: jax.Array
    converged: jax.Array
    stalled: jax.Array  # residual target fell below float precision without flux balance

    def finished(self, max_iter) -> jax.Array:
        return self.converged | self.stalled | (self.iterations >= max_iter)


def make_problem(
    st: sten.Stencil, preconditioner: str = "multigrid", *, coarse_size: int = 512, sweeps: int = 1, omega: float = 0.8, scale: float = 1.5
) -> Problem:
    """Right-hand side, Jacobi diagonal and (for ``"multigrid"``) the V-cycle hierarchy of ``st``."""
    if preconditioner not in PRECONDITIONERS:
        raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got {preconditioner!r}")
    b = sten.rhs(st)
    inv = mg._inverse_diagonal(st)
    hier = mg.build(st, coarse_size, sweeps, omega, scale) if preconditioner == "multigrid" else None
    return Problem(st, b, jnp.sqrt(_dot(b, b)), inv, hier, preconditioner)


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    # Two-stage sum keeps float32 rounding error small on large volumes.
    return jnp.sum(jnp.sum(a * b, axis=(1, 2)))


def flux_imbalance(st: sten.Stencil, u: jax.Array) -> jax.Array:
    """``(max - min) / max`` of the plane currents (0 when no current flows)."""
    cur = sten.layer_currents(st, u)
    top = jnp.max(cur)
    return jnp.where(top > 0, (top - jnp.min(cur)) / jnp.where(top > 0, top, 1), 0.0)


def initial_state(prob: Problem, u0: jax.Array, rtol: float, active: jax.Array) -> State:
    """CG state from the initial guess ``u0``; ``active=False`` (nothing percolates) is done."""
    u0 = jnp.where(prob.inv_diag > 0, u0, 0).astype(prob.b.dtype)
    r = prob.b - sten.matvec(prob.stencil, u0)
    z = prob.apply_preconditioner(r)
    res = _relative(prob, r)
    f32 = prob.b.dtype
    return State(
        u=u0,
        r=r,
        p=z,
        rz=_dot(r, z),
        res=res,
        target=jnp.asarray(rtol, f32),
        imbalance=jnp.where(active, flux_imbalance(prob.stencil, u0), 0).astype(f32),
        iterations=jnp.asarray(0, jnp.int32),
        converged=~jnp.asarray(active),
        stalled=jnp.asarray(False),
    )


def _relative(prob: Problem, r: jax.Array) -> jax.Array:
    bn = jnp.where(prob.b_norm > 0, prob.b_norm, 1)
    return jnp.sqrt(_dot(r, r)) / bn


def _step(prob: Problem, s: State) -> State:
    q = sten.matvec(prob.stencil, s.p)
    pq = _dot(s.p, q)
    alpha = jnp.where(pq > 0, s.rz / jnp.where(pq > 0, pq, 1), 0)
    u = s.u + alpha * s.p
    r = s.r - alpha * q
    z = prob.apply_preconditioner(r)
    rz = _dot(r, z)
    beta = jnp.where(s.rz > 0, rz / jnp.where(s.rz > 0, s.rz, 1), 0)
    return eqx.tree_at(
        lambda t: (t.u, t.r, t.p, t.rz, t.res, t.iterations),
        s,
        (u, r, z + beta * s.p, rz, _relative(prob, r), s.iterations + 1),
    )


def advance(prob: Problem, s: State, stop: jax.Array, rtol: float, flux_tol: float) -> State:
    """Iterate until converged or ``s.iterations == stop`` (a traced int: chunked solves)."""
    stop = jnp.asarray(stop, jnp.int32)

    def inner_cond(t: State):
        return (t.res > t.target) & (t.iterations < stop)

    floor = jnp.finfo(s.u.dtype).eps * 1e-2

    def outer_cond(t: State):
        return (~t.converged) & (~t.stalled) & (t.iterations < stop)

    def outer_body(t: State):
        t = lax.while_loop(inner_cond, lambda x: _step(prob, x), t)
        imb = flux_imbalance(prob.stencil, t.u)
        reached = t.res <= t.target
        done = reached & (t.res <= rtol) & (imb <= flux_tol)
        # Flux balance not there yet at this residual: aim ten times lower.
        target = jnp.where(reached & ~done, t.target * 0.1, t.target)
        stalled = ~done & (target < floor)
        return eqx.tree_at(
            lambda x: (x.imbalance, x.converged, x.target, x.stalled),
            t,
            (imb.astype(t.imbalance.dtype), done, target.astype(t.target.dtype), stalled),
        )

    return lax.while_loop(outer_cond, outer_body, s)
