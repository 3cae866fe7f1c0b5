"""The finite-volume conduction operator on a voxel grid (matrix-free, 7-point stencil).

Steady conduction ``div(sigma grad u) = 0`` with ``u = 1`` on the inlet plane before the
first layer along axis 0, ``u = 0`` on the outlet plane after the last layer, no flux
through the four other faces. Unknowns are the voxel-centre potentials. Two neighbouring
voxels ``i, j`` exchange the current ``g_ij (u_i - u_j)`` with the harmonic-mean face
conductance ``g_ij = 2 s_i s_j / (s_i + s_j)`` (voxel side = 1, so ``g`` is in the units of
``sigma``). A boundary voxel of conductivity ``s`` is coupled to its Dirichlet plane by

* ``boundary="half_voxel"``: conductance ``2 s`` (the plane is half a voxel away; distance
  between the planes ``n0``) -- TauFactor's ``Solver`` convention;
* ``boundary="ghost_voxel"``: conductance ``s`` (the Dirichlet value sits at the centre of
  a ghost voxel copying the boundary layer; distance ``n0 + 1``) -- TauFactor's
  ``MultiPhaseSolver`` convention.

Layout: every volume-sized array is stored *padded* by one ghost voxel on each side,
``(n0 + 2, n1 + 2, n2 + 2)``; vectors are zero on the ghosts (the homogeneous Dirichlet /
no-flux values), so the stencil needs only slices (no padding in the inner loop, which XLA
compiles to a much slower kernel). ``g[k][i]`` is the conductance of the face between padded
voxels ``i - 1`` and ``i`` along axis ``k``; ``g[0][1]`` and ``g[0][n0 + 1]`` are the
Dirichlet faces. The operator ``A`` (``A u = b``) is symmetric positive definite on every set
of voxels connected to a Dirichlet plane and has zero rows on voxels of zero conductivity.
Everything here is jittable and vmappable.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

BOUNDARIES = {"half_voxel": 2.0, "ghost_voxel": 1.0}
_IN = slice(1, -1)


def harmonic_mean2(a: jax.Array, b: jax.Array) -> jax.Array:
    """``2ab / (a + b)``, 0 where ``a + b <= 1e-18``, with finite gradients everywhere.

    The cut keeps ``(a + b)^2`` in the gradient above float32's underflow (soft fields reach
    ``1e-19``); below it the conductance is < 1e-18 and set to 0 (gradient 0).
    """
    s = a + b
    ok = s > 1e-18
    safe = jnp.where(ok, s, 1)
    return jnp.where(ok, 2 * a * b / safe, 0)


def pad(a: jax.Array) -> jax.Array:
    """Interior ``(n0, n1, n2)`` -> padded layout with zero ghosts."""
    return jnp.pad(a, 1)


def interior(a: jax.Array) -> jax.Array:
    """Padded layout -> interior ``(n0, n1, n2)``."""
    return a[_IN, _IN, _IN]


def _face(k: int, start: int | None, stop: int | None) -> tuple[slice, slice, slice]:
    """Index selecting ``start:stop`` along axis ``k`` and the interior along the others."""
    out = [_IN, _IN, _IN]
    out[k] = slice(start, stop)
    return tuple(out)


class Stencil(eqx.Module):
    """Face conductances of the operator, padded layout (see the module docstring)."""

    g: tuple[jax.Array, jax.Array, jax.Array]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Interior shape ``(n0, n1, n2)``."""
        return tuple(n - 2 for n in self.g[0].shape)


def from_conductivity(sigma: jax.Array, boundary: str = "half_voxel") -> Stencil:
    """Stencil of an interior conductivity field ``sigma`` ``(n0, n1, n2)`` (>= 0); differentiable."""
    factor = BOUNDARIES[boundary]
    sp = pad(sigma)
    g = []
    for k in range(3):
        n = sp.shape[k]
        lo = lax.slice_in_dim(sp, 0, n - 1, axis=k)
        hi = lax.slice_in_dim(sp, 1, n, axis=k)
        widths = [(0, 0)] * 3
        widths[k] = (1, 0)
        g.append(jnp.pad(harmonic_mean2(lo, hi), widths))
    n0 = sigma.shape[0]
    g[0] = g[0].at[1].set(factor * sp[1]).at[n0 + 1].set(factor * sp[n0])
    return Stencil(g=tuple(g))


def _stencil_sum(st: Stencil, up: jax.Array | None) -> jax.Array:
    """Interior of ``A u`` (or of ``diag(A)`` when ``up`` is None)."""
    c = None if up is None else up[_IN, _IN, _IN]
    out = 0
    for k in range(3):
        g_next = st.g[k][_face(k, 2, None)]
        g_prev = st.g[k][_face(k, 1, -1)]
        if up is None:
            out = out + g_next + g_prev
        else:
            out = out + g_next * (c - up[_face(k, 2, None)]) + g_prev * (c - up[_face(k, None, -2)])
    return out


def matvec(st: Stencil, up: jax.Array) -> jax.Array:
    """``A u`` for padded ``u`` (zero ghosts): net current leaving each voxel; padded result."""
    return pad(_stencil_sum(st, up))


def diagonal(st: Stencil) -> jax.Array:
    """Diagonal of ``A`` (sum of the conductances around each voxel), padded."""
    return pad(_stencil_sum(st, None))


def rhs(st: Stencil) -> jax.Array:
    """Right-hand side ``b`` (padded): the inlet plane held at ``u = 1``."""
    return jnp.zeros_like(st.g[0]).at[1, _IN, _IN].set(st.g[0][1, _IN, _IN])


def _with_inlet(up: jax.Array) -> jax.Array:
    """Potentials with the inlet ghost layer at its Dirichlet value 1."""
    return up.at[0].set(1)


def layer_currents(st: Stencil, up: jax.Array) -> jax.Array:
    """Total current through each of the ``n0 + 1`` planes normal to axis 0, inlet first."""
    v = _with_inlet(up)
    drop = v[:-1, _IN, _IN] - v[1:, _IN, _IN]
    return jnp.sum(st.g[0][1:, _IN, _IN] * drop, axis=(1, 2))


def dissipation(st: Stencil, up: jax.Array) -> jax.Array:
    """``sum_faces g (du)^2`` including the Dirichlet faces = total current for a unit drop.

    Stationary in ``u`` at the solution, so its gradient in the conductances needs no
    adjoint solve (paper Eq. 27's sigma_eff is this quadratic form times length / area).
    """
    v = _with_inlet(up)
    total = 0
    for k in range(3):
        n = v.shape[k]
        d = lax.slice_in_dim(v, 1, n, axis=k) - lax.slice_in_dim(v, 0, n - 1, axis=k)
        total = total + jnp.sum(lax.slice_in_dim(st.g[k], 1, n, axis=k) * jnp.square(d))
    return total
