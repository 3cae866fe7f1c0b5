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

* CPSD and ``r_max`` (Eq. 26): two global steps. The squared distance to the phase's
  complement by the distributed EDT (:mod:`jaxcba.sharded._distance`: x and y passes local,
  ``all_to_all`` to whole z-columns for the z pass and back), capped at the largest ball; the
  opening by each ball reaches ``halo`` planes (the largest ball's window) into the next
  slabs, so the radius levels are exchanged once with ``ppermute`` (slabs must be at least
  ``halo`` planes thick). Every device counts the covered voxels of its planes, the host adds
  the counts (int64): the curve and ``r_max`` equal the single-device ones. The default radius
  grid needs the largest distance: a distributed EDT per window tried (16, 32, ...), ``pmax``.
  Intrusion (``r_min``), constrictivity and local thickness are not sharded (the intrusion's
  widest-path transform is a global fixed point, not done here).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxcba._checks import check_voxel_nm
from jaxcba.descriptors import pore_size as PS
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
from jaxcba.sharded._distance import largest_distance, local_squared_distance
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


# ------------------------------------------------------------------- CPSD and r_max (Eq. 26)


def _halo_planes(v, hw: int, ax: str, n: int):
    """``v`` with ``hw`` planes of the previous and of the next device before and after it
    (zeros beyond the volume's faces); needs ``hw <= v.shape[0]``."""
    if hw == 0:
        return v
    if n == 1:
        zeros = jnp.zeros((hw,) + v.shape[1:], v.dtype)
        return jnp.concatenate([zeros, v, zeros], axis=0)
    prev = lax.ppermute(v[v.shape[0] - hw :], ax, perm=[(d, d + 1) for d in range(n - 1)])
    nxt = lax.ppermute(v[:hw], ax, perm=[(d + 1, d) for d in range(n - 1)])
    return jnp.concatenate([prev, v, nxt], axis=0)


@partial(jax.jit, static_argnames=("radii", "mesh", "slab_planes"))
def _opening_program(mask, radii, mesh, slab_planes=None):
    """Per-device voxel counts ``(n, R)`` int32 of the openings of ``mask`` by the balls of ``radii``.

    On each device: the squared distance to the nearest voxel off the mask, capped at
    ``(halo + 1)^2`` (the distributed EDT in integers, window ``halo`` = the window of the
    largest ball), the radius levels of :func:`jaxcba.descriptors.pore_size._levels`, a halo of
    ``halo`` level planes from each neighbour (``ppermute``), then for every radius the dilation
    of its centres on the device's planes (sub-slabs of at most ~2^23 voxels, ``lax.map``) and
    the covered voxels counted; a radius with no centre in reach of a sub-slab costs a test.
    """
    ax = M.axis_of(mesh)
    n = M.size_of(mesh)
    nz, ny, nx = mask.shape
    lz = nz // n
    thresholds = PS._thresholds(radii)
    buckets = PS._buckets(thresholds)
    hw = max(w for w, _ in buckets)
    cap = (hw + 1) ** 2
    ldt = PS._level_dtype(len(thresholds) + 1)
    table = jnp.asarray(1 + np.searchsorted(thresholds, np.arange(cap + 1), side="right"), ldt)  # level of dt^2
    slab, n_slabs = PS._slab_layout(lz, ny * nx, slab_planes)
    order = np.concatenate([np.asarray(ix) for _, ix in buckets])  # bucket order -> radius order
    inv = np.argsort(order)

    def local(m):
        d2 = local_squared_distance(~m, ax, n, hw, cap)
        lev = jnp.where(m, jnp.take(table, d2.astype(jnp.int32), mode="clip"), jnp.zeros((), ldt))
        del d2
        lev = _halo_planes(lev, hw, ax, n)  # (lz + 2 hw, ny, nx)
        lev = jnp.pad(lev, ((0, n_slabs * slab - lz), (0, 0), (0, 0)))

        def one(s):
            region = lax.dynamic_slice_in_dim(lev, s * slab, slab + 2 * hw, 0)
            region = jnp.pad(region, ((0, 0), (hw, hw), (hw, hw)))
            inside = (s * slab + jnp.arange(slab) < lz)[:, None, None]
            counts = []
            for wb, ix in buckets:
                cut = (slice(hw - wb, hw + slab + wb), slice(hw - wb, hw + ny + wb), slice(hw - wb, hw + nx + wb))
                sub = region[cut]
                top = jnp.max(sub)

                def step(_, xs, sub=sub, top=top, wb=wb):
                    i, t = xs
                    level = (i + 1).astype(ldt)  # centres of radius i: level >= i + 2
                    c = lax.cond(top > level,
                                 lambda: jnp.sum(PS._covered(sub, level, t, wb, slab, ny, nx) & inside, dtype=jnp.int32),
                                 lambda: jnp.int32(0))
                    return None, c

                xs = (jnp.asarray(ix, jnp.int32), jnp.asarray(thresholds[list(ix)], jnp.int32))
                counts.append(lax.scan(step, None, xs)[1])
            return jnp.concatenate(counts)

        return jnp.sum(lax.map(one, jnp.arange(n_slabs)), axis=0, dtype=jnp.int32)[inv][None]

    return jax.shard_map(local, mesh=mesh, in_specs=P(ax), out_specs=P(ax), check_vma=False)(mask)


def default_radii_vox(mask, step: float = 0.5, *, mesh=None) -> np.ndarray:
    """:func:`jaxcba.descriptors.pore_size.default_radii_vox` of a z-sharded mask: the radius
    grid ``1, 1 + step, ...`` [voxels] up to the largest distance-to-boundary, found by the
    distributed EDT (:func:`jaxcba.sharded.largest_distance`). Same grid as the single device."""
    mask = _sharded(mask, mesh, 0, "the mask")
    if int(phase_counts(mask.astype(jnp.uint8), 2)[1]) == 0:
        raise ValueError("the phase is empty (no True voxel): its pore size distribution is undefined")
    return PS.radius_grid(largest_distance(mask), step)


def cpsd(mask, voxel_nm: float = 1.0, radii_vox=None, *, mesh=None) -> PS.PoreSizeDistribution:
    """:func:`jaxcba.descriptors.cpsd` of a z-sharded phase mask (Eq. 26) and ``r_max = CPSD^-1(0.5)``.

    Two global steps: the distance transform (the distributed EDT, two ``all_to_all``) and the
    opening, a dilation of the ball centres that reaches ``halo`` planes into the neighbouring
    slabs (``halo`` = the window of the largest ball, about the largest radius [voxels]); one
    ``ppermute`` of ``halo`` level planes each way. The covered-voxel counts of the slabs are
    added up on the host (int64), so the curve equals the single-device one (the same integer
    counts, the same float32 division) and so does ``r_max``.

    Args:
        mask: bool ``(z, y, x)``, host array or z-sharded ``jax.Array``.
        voxel_nm: voxel side [nm].
        radii_vox: strictly increasing radii [voxels]; default :func:`default_radii_vox` (one
            distributed EDT per window tried, on the devices).
        mesh: a 1-D mesh, a device count or ``None``.

    ``ValueError`` before any work when ``voxel_nm`` or ``radii_vox`` is invalid, the device
    count does not divide ``nz``, a host mask is empty (a sharded one: after one count), or,
    with ``radii_vox`` given, a slab is thinner than the halo of the largest ball; with the
    default grid the halo is known once the largest distance is found, and it is checked then,
    before the opening.
    """
    voxel_nm = check_voxel_nm(voxel_nm)
    radii = None if radii_vox is None else PS._check_radii(radii_vox)
    what = "the mask (CPSD halo: the window of the largest ball)"
    if getattr(mask, "ndim", None) == 3 and isinstance(mask, np.ndarray) and not mask.any():
        raise ValueError("the phase is empty (no True voxel): its pore size distribution is undefined")
    mask = _sharded(mask, mesh, 0 if radii is None else _ball_halo(radii), what)
    mesh = M.mesh_of(mask)
    mask = mask if mask.dtype == jnp.bool_ else mask.astype(bool)
    n_phase = int(phase_counts(mask.astype(jnp.uint8), 2)[1])
    if n_phase == 0:
        raise ValueError("the phase is empty (no True voxel): its pore size distribution is undefined")
    if radii is None:
        radii = PS._check_radii(PS.radius_grid(largest_distance(mask)))
        M.check_split(mask.shape[0], M.size_of(mesh), _ball_halo(radii), what)
    counts = _host_sum(_opening_program(mask, radii, mesh))
    frac = jnp.asarray(counts.astype(np.float32) / np.float32(n_phase))
    r_vox = jnp.asarray(radii, jnp.float32)
    return PS.PoreSizeDistribution(r_nm=r_vox * voxel_nm, fraction=frac,
                                   r_half_nm=PS.radius_at_half(r_vox, frac) * voxel_nm)


def _ball_halo(radii) -> int:
    """Planes of levels a slab needs from each neighbour: the window of the largest ball."""
    return max(w for w, _ in PS._buckets(PS._thresholds(radii)))
