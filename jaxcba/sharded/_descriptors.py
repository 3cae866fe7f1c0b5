"""Descriptors of a z-sharded phase mask (paper Eqs. 6-9, 20) by domain decomposition.

* Volume fraction / phase counts: each device counts its slab, the host adds the counts
  (exact integers, int64).
* Intrinsic volume densities (2x2x2 configurations, Eqs. 6-9): a cell spans two z-planes,
  so every device receives the first plane of the next device (a one-plane halo,
  ``ppermute``) and codes the cells between its planes and that one; the last device has no
  next and codes one cell-plane fewer. The 256 configuration counts are added up (int64), so the
  histogram equals the single-device one exactly and the densities are computed from it by
  the same formula.
* Two-point coverage (Eq. 20): the zero-padded autocorrelation by a distributed FFT - 2-D
  transforms of each device's z-slices, ``all_to_all`` to ky-slabs for the correlation along
  z, ``all_to_all`` to slabs of lag planes ``h_z`` for the inverse 2-D transforms; each
  device bins its lag planes and ``psum`` adds the radial sums. Equal to the single-device
  estimate to float32 rounding (~1e-7).

Descriptors that need a global step beyond a reduction (CPSD, r_max: Euclidean distance
transforms) are described in docs/sharding.md.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxcba.descriptors.minkowski import IntrinsicDensities, _CORNERS, configuration_weights
from jaxcba.descriptors.two_point import (
    TwoPointCoverage,
    checked_max_lag,
    _lag_plane,
    _overlap,
    _padded_shape,
    _radial_geometry,
)
from jaxcba.sharded import _mesh as M
from jaxcba.sharded._fft import pad_axis, padded, transpose


def _sharded(x, mesh, halo: int = 0, what: str = "the volume") -> jax.Array:
    """``x`` as a z-sharded ``jax.Array`` over ``mesh`` (or over its own mesh when it is one)."""
    if getattr(x, "ndim", None) != 3:
        raise ValueError(f"expected a 3D (z, y, x) array, got shape {getattr(x, 'shape', None)}")
    own = M.mesh_of(x)
    mesh = own if (mesh is None and own is not None) else M.as_mesh(mesh)
    M.check_split(int(x.shape[0]), M.size_of(mesh), halo, what)
    if own is mesh or (own is not None and own == mesh):
        return x
    return M.shard_volume(x, mesh)


# ------------------------------------------------------------------------------- counts


@partial(jax.jit, static_argnames=("n_labels", "mesh"))
def _counts_program(labels, n_labels, mesh):
    """Per-device label counts ``(n, n_labels)`` int32 (added on the host in int64: a window
    of 2000^3 voxels overflows int32)."""
    ax = M.axis_of(mesh)

    def local(v):
        c = lax.map(lambda sl: jnp.bincount(sl.ravel().astype(jnp.int32), length=n_labels), v)
        return jnp.sum(c, axis=0, dtype=jnp.int32)[None]

    return jax.shard_map(local, mesh=mesh, in_specs=P(ax), out_specs=P(ax), check_vma=False)(labels)


def _host_sum(per_device) -> np.ndarray:
    if not per_device.is_fully_addressable:  # several processes: each holds its own rows
        from jax.experimental import multihost_utils

        per_device = multihost_utils.process_allgather(per_device, tiled=True)
    return np.asarray(per_device).astype(np.int64).sum(axis=0)


def phase_counts(labels, n_labels: int = 3, *, mesh=None) -> np.ndarray:
    """Voxels of each label ``0 .. n_labels - 1`` (host int64 array): the slab counts, added up."""
    labels = _sharded(labels, mesh, 0, "the labels")
    return _host_sum(_counts_program(labels, int(n_labels), M.mesh_of(labels)))


def volume_fraction(mask, *, mesh=None) -> float:
    """Point-count volume fraction of a boolean mask (Eq. 6), from the exact voxel count."""
    mask = _sharded(mask, mesh, 0, "the mask")
    ones = int(_host_sum(_counts_program(mask.astype(jnp.uint8), 2, M.mesh_of(mask)))[1])
    return ones / float(np.prod(mask.shape))


# ------------------------------------------------------------------------- 2x2x2 cells


def _next_plane(v, ax: str, n: int):
    """The first z-plane of the next device (zeros on the last device)."""
    return lax.ppermute(v[:1], ax, perm=[(d + 1, d) for d in range(n - 1)]) if n > 1 else jnp.zeros_like(v[:1])


@partial(jax.jit, static_argnames=("mesh",))
def _histogram_program(mask, mesh):
    ax = M.axis_of(mesh)
    n = M.size_of(mesh)

    def local(m):
        m = m.astype(jnp.uint8)
        lz = m.shape[0]
        ext = jnp.concatenate([m, _next_plane(m, ax, n)], axis=0)  # (lz + 1, ny, nx)
        shp = (lz, m.shape[1] - 1, m.shape[2] - 1)
        code = jnp.zeros(shp, jnp.uint8)
        for k, (dz, dy, dx) in enumerate(_CORNERS.tolist()):
            code = code + (ext[dz : dz + shp[0], dy : dy + shp[1], dx : dx + shp[2]] << k)
        last = lax.axis_index(ax) == n - 1
        valid = jnp.where(last, jnp.arange(lz) < lz - 1, True).astype(jnp.int32)  # the last cell plane needs a next device
        per_slice = lax.map(lambda c: jnp.bincount(c.ravel().astype(jnp.int32), length=256), code)
        return jnp.sum(per_slice * valid[:, None], axis=0, dtype=jnp.int32)[None]

    return jax.shard_map(local, mesh=mesh, in_specs=P(ax), out_specs=P(ax), check_vma=False)(mask)


def configuration_histogram(mask, *, mesh=None) -> np.ndarray:
    """Counts of the 256 2x2x2 configurations (host ``(256,)`` int64: the slab counts added
    up), equal to :func:`jaxcba.descriptors.configuration_histogram` of the whole mask."""
    mask = _sharded(mask, mesh, 2, "the mask")
    if min(mask.shape) < 2:
        raise ValueError(f"each axis needs at least 2 voxels for 2x2x2 configurations, got shape {mask.shape}")
    return _host_sum(_histogram_program(mask, M.mesh_of(mask)))


def intrinsic_densities(mask, voxel_nm: float = 1.0, *, euler: str = "6", curvature: str = "4",
                        mesh=None) -> IntrinsicDensities:
    """:func:`jaxcba.descriptors.intrinsic_densities` of a z-sharded mask (Eqs. 6-9);
    ``V_V`` [1], ``S_V`` [nm^-1], ``M_V`` [nm^-2], ``chi_V`` [nm^-3]."""
    mask = _sharded(mask, mesh, 2, "the mask")
    hist = configuration_histogram(mask)
    w = jnp.asarray(configuration_weights(euler, curvature), dtype=jnp.float32)
    n_cells = float(np.prod([s - 1 for s in mask.shape]))
    dens = (w @ hist.astype(jnp.float32)) / n_cells
    h = jnp.asarray(voxel_nm, jnp.float32)
    return IntrinsicDensities(V_V=jnp.float32(volume_fraction(mask)), S_V=dens[1] / h, M_V=dens[2] / h**2,
                              chi_V=dens[3] / h**3)


# ---------------------------------------------------------------------- two-point coverage


@partial(jax.jit, static_argnames=("L", "mesh"))
def _coverage_program(mask, L: int, mesh):
    ax = M.axis_of(mesh)
    n = M.size_of(mesh)
    shape = mask.shape
    N0, N1, N2 = _padded_shape(shape, L)
    N1p = padded(N1, n)
    Lp = padded(L + 1, n)
    lp = Lp // n
    cz, cy, cx = (_overlap(s, L) for s in shape)
    cz_pad = np.ones(Lp, np.float32)
    cz_pad[: L + 1] = cz[L:]
    g = jnp.arange(-L, L + 1, dtype=jnp.float32)
    plane_r2 = g[:, None] ** 2 + g[None, :] ** 2
    plane_overlap = jnp.asarray(cy[:, None] * cx[None, :])

    def local(m):
        spectra = lax.map(lambda sl: jnp.fft.rfft2(sl.astype(jnp.float32), s=(N1, N2)), m)  # (lz, N1, K2)
        spectra = transpose(pad_axis(spectra, 1, N1p), ax, 1, 0)  # (nz, N1p / n, K2)
        f = jnp.fft.fft(spectra, n=N0, axis=0)
        del spectra
        q = jnp.fft.ifft(f.real**2 + f.imag**2, axis=0)[: L + 1].astype(jnp.complex64)
        del f
        q = transpose(pad_axis(q, 0, Lp), ax, 0, 1)[:, :N1]  # (Lp / n, N1, K2): this device's lag planes
        d = lax.axis_index(ax)

        def bin_plane(_, j):
            dz = d * lp + j
            c = _lag_plane(q[j], N1, N2, L) / (plane_overlap * jnp.asarray(cz_pad)[dz])
            k = jnp.minimum(jnp.floor(jnp.sqrt(dz.astype(jnp.float32) ** 2 + plane_r2) + 0.5), L + 1).astype(jnp.int32)
            weight = jnp.where(dz > 0, 2.0, 1.0) * jnp.where(dz <= L, 1.0, 0.0)
            s = weight.astype(jnp.float32) * jax.ops.segment_sum(c.ravel(), k.ravel(), num_segments=L + 2)
            return None, (s, c[L, L], c[L:, L], c[L, L:])

        _, (sums, c_z, c_y, c_x) = lax.scan(bin_plane, None, jnp.arange(lp))
        return lax.psum(jnp.sum(sums, axis=0), ax)[: L + 1], c_z, c_y[:1], c_x[:1]

    sums, c_z, c_y, c_x = jax.shard_map(local, mesh=mesh, in_specs=P(ax), out_specs=(P(), P(ax), P(ax), P(ax)),
                                        check_vma=False)(mask)
    # replicated, so that every process can read the axis curves (multi-host)
    return sums, lax.with_sharding_constraint(jnp.stack([c_z[: L + 1], c_y[0], c_x[0]]), M.replicated(mesh))


def two_point_coverage(mask, voxel_nm: float = 1.0, max_lag_vox: int | None = None, *,
                       mesh=None) -> TwoPointCoverage:
    """:func:`jaxcba.descriptors.two_point_coverage` of a z-sharded mask (Eq. 20), lags in nm.

    Working memory per device ~ 1/n of the single-device one (:func:`two_point_bytes`), plus
    the ``all_to_all`` buffers.
    """
    mask = _sharded(mask, mesh, 0, "the mask")
    L = checked_max_lag(mask.shape, max_lag_vox)
    sums, axes = _coverage_program(mask, L, M.mesh_of(mask))
    n_per, r_mean = _radial_geometry(L)
    h_nm = jnp.asarray(r_mean, jnp.float32) * jnp.asarray(voxel_nm, jnp.float32)
    vf = jnp.float32(volume_fraction(mask))
    return TwoPointCoverage(h_nm=h_nm, C=sums / jnp.asarray(n_per), C_axes=axes, volume_fraction=vf)
