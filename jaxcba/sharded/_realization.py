"""One realization sharded along z: the Gaussian field by a distributed slab FFT, then the grains.

The same key gives, voxel for voxel, the volume of :func:`jaxcba.model.simulate` (paper
Eq. 4: ``Xi = Xi1 ∪ (Xi2 ∩ Xi3^c)``), computed over a 1-D device mesh:

1. Spectrum ``S`` of the covariance (Eq. 2): the single-device path computes it on the
   octant of non-negative frequencies by three cosine transforms (z, y, x). Here the octant's
   x-columns are split over the devices for the z and y transforms, the rows are mirrored to
   the full ``kz`` range and transposed (``all_to_all``) to z-slabs for the x transform, so
   each device ends with the amplitude of its own ``kz`` rows, ``(nz/n, ny/2+1, nx/2+1)``.
2. Noise: the single-device path draws the half spectrum in z-slabs of ``zc`` rows from
   ``fold_in(key, slab)``; every device draws the slabs that meet its ``kz`` rows and keeps
   the rows it owns (for a row, the slab that the single-device loop writes last).
3. Inverse transform (:func:`jaxcba.sharded._fft.irfftn_z`): y and z on x-column slabs after
   one ``all_to_all`` (the Hermitian planes ``kx = 0, nx/2`` are symmetrised there, where
   all ``(kz, ky)`` are local), x on z-slabs after a second one; threshold ``Z >= mu``.
4. Grains: the germs and marks are drawn on the host exactly as in the single-device path
   (same keys, same size classes); each device paints the grains whose z-extent meets its
   slab, in boxes clamped into the slab, evaluating each grain at the global voxel centres.
   No halo is exchanged: a grain that spans several slabs is painted by each of them.

Working set per device: ~10 bytes per voxel of its slab during the field (two copies of its
complex half spectrum while transposing, the amplitude, the labels), then the uint8 slab.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxcba.model import germs as G
from jaxcba.model.gaussian_field import _cosine_transform, _flip_k, _mirror, _safe_sqrt, _slab
from jaxcba.model.realization import (
    EPS,
    VoxelParams,
    _as_key,
    _check_eps,
    _draw_layer,
    _layers,
    check_grains,
)
from jaxcba.model.window import check_window
from jaxcba.sharded import _mesh as M
from jaxcba.sharded._fft import irfftn_z, padded, transpose


# ------------------------------------------------------------------- the Gaussian field


def _amplitude_rows(shape, eta_vox, axis_name: str, n: int):
    """This device's rows of ``sqrt(max(S, 0) * n_vox)``: ``(nz/n, ny//2+1, nx//2+1)`` float32,
    row ``r`` holding ``kz = d * nz/n + r`` (bit-identical to the single-device octant rows)."""
    nz, ny, nx = shape
    oy, ox = ny // 2 + 1, nx // 2 + 1
    oxp = padded(ox, n)
    w = oxp // n
    d = lax.axis_index(axis_name)
    dtype = jnp.float32
    az = jnp.arange(nz // 2 + 1, dtype=dtype)
    ay = jnp.arange(oy, dtype=dtype)
    ax = (jnp.minimum(d * w + jnp.arange(w, dtype=jnp.int32), ox - 1)).astype(dtype)  # padding: repeats
    r2 = az[:, None, None] ** 2 + ay[None, :, None] ** 2 + ax[None, None, :] ** 2
    eta = jnp.asarray(eta_vox, dtype)
    c = 1.0 / (1.0 + eta * eta * r2)
    c = _cosine_transform(c, 0, nz)
    c = _cosine_transform(c, 1, ny)
    c = c[_mirror(nz)]  # (nz, oy, w): octant rows -> kz rows
    c = transpose(c, axis_name, 0, 2)[:, :, :ox]  # (nz/n, oy, ox)
    s = _cosine_transform(c, 2, nx)
    return _safe_sqrt(s) * jnp.asarray(math.sqrt(float(nz * ny * nx)), dtype)


def _noise_rows(key, shape, amp, axis_name: str, n: int, mp: int):
    """This device's ``kz`` rows of the scaled noise ``xi * amplitude``, ``(nz/n, ny, mp)`` complex64.

    Reproduces ``gaussian_field._white_spectrum``: slab ``i`` (``zc`` rows from
    ``fold_in(key, i)``) starts at ``min(i * zc, nz - zc)``; a row belongs to the last slab
    that covers it.
    """
    nz, ny, nx = shape
    mx = nx // 2 + 1
    lz = nz // n
    zc = _slab(nz, ny * mx)
    n_slabs = -(-nz // zc)
    owner = lambda kz: jnp.where(kz >= nz - zc, n_slabs - 1, kz // zc)  # noqa: E731
    owner_np = lambda kz: np.where(kz >= nz - zc, n_slabs - 1, kz // zc)  # noqa: E731
    starts = np.arange(n) * lz
    k_max = int(np.max(owner_np(starts + lz - 1) - owner_np(starts) + 1))
    d = lax.axis_index(axis_name)
    a = d * lz
    first, last = owner(a), owner(a + lz - 1)
    W = min(zc, lz)
    t = jnp.arange(W, dtype=jnp.int32)
    ymap = _mirror(ny)
    x = jnp.zeros((lz, ny, mp), jnp.complex64)

    def body(j, x):
        i = jnp.minimum(first + j, last)
        z0 = jnp.minimum(i * zc, nz - zc)
        xi = jax.random.normal(jax.random.fold_in(key, i), (zc, ny, mx), jnp.complex64)
        ws = jnp.clip(z0 - a, 0, lz - W).astype(jnp.int32)  # window of local rows holding the slab's rows here
        rows = ws + t + a - z0  # slab row of each window row
        valid = (rows >= 0) & (rows < zc) & (owner(a + ws + t) == i)
        sel = jnp.take(xi, jnp.clip(rows, 0, zc - 1), axis=0)
        amp_rows = jnp.take(amp, ws + t, axis=0)[:, ymap]
        sel = sel * amp_rows.astype(jnp.float32)
        zero = jnp.int32(0)
        old = lax.dynamic_slice(x, (ws, zero, zero), (W, ny, mx))
        return lax.dynamic_update_slice(x, jnp.where(valid[:, None, None], sel, old), (ws, zero, zero))

    return lax.fori_loop(0, k_max, body, x)


def _hermitian(nx: int):
    herm = [0] + ([nx // 2] if nx % 2 == 0 and nx > 1 else [])

    def column_fn(block, cols):
        is_h = jnp.any(cols[:, None] == jnp.asarray(herm, jnp.int32)[None, :], axis=1)
        sym = ((block + jnp.conj(_flip_k(block))) * (1.0 / math.sqrt(2.0))).astype(block.dtype)
        return jnp.where(is_h[None, None, :], sym, block)

    return column_fn


@partial(jax.jit, static_argnums=(1, 4, 5))
def _field_program(key, shape, eta_vox, mu, mesh, real):
    nz, ny, nx = shape
    n = M.size_of(mesh)
    axis_name = M.axis_of(mesh)
    mp = padded(nx // 2 + 1, n)

    def local(key, eta_vox, mu):
        amp = _amplitude_rows(shape, eta_vox, axis_name, n)
        x = _noise_rows(key, shape, amp, axis_name, n, mp)
        del amp
        if real:
            return irfftn_z(x, nx, axis_name, n, column_fn=_hermitian(nx))
        mu32 = jnp.asarray(mu, jnp.float32)
        return irfftn_z(x, nx, axis_name, n, column_fn=_hermitian(nx), out_fn=lambda z: z >= mu32,
                        out_dtype=jnp.uint8)

    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P()), out_specs=P(axis_name), check_vma=False)(
        key, jnp.asarray(eta_vox, jnp.float32), jnp.asarray(mu, jnp.float32))


def _check_field_split(shape, mesh):
    M.check_split(shape[0], M.size_of(mesh), 0, f"the window {'x'.join(map(str, shape))}")


def excursion_labels(key, shape, eta_vox: float, mu: float, *, mesh=None) -> jax.Array:
    """The excursion set ``{Z >= mu}`` as uint8, sharded along z; equals
    ``jaxcba.model.gaussian_field.excursion_labels(key, shape, eta_vox, mu)`` bit for bit.

    ``shape`` [voxels], ``eta_vox`` [1/voxel], ``mu`` the threshold (Eq. 18).
    """
    mesh = M.as_mesh(mesh)
    shape = tuple(int(s) for s in shape)
    _check_field_split(shape, mesh)
    return _field_program(_as_key(key), shape, float(eta_vox), float(mu), mesh, False)


def gaussian_field(key, shape, eta_vox: float, *, mesh=None) -> jax.Array:
    """The real field ``Z`` (float32, z-sharded) whose excursion set :func:`excursion_labels` thresholds;
    equals ``jaxcba.model.gaussian_field.field_from_key`` to float tolerance (for tests)."""
    mesh = M.as_mesh(mesh)
    shape = tuple(int(s) for s in shape)
    _check_field_split(shape, mesh)
    return _field_program(_as_key(key), shape, float(eta_vox), 0.0, mesh, True)


# --------------------------------------------------------------------------- grains


def _paint_local(vol, centres, marks, count, value, *, box, kind, axis_name):
    """``jaxcba.model.raster.paint`` on a z-slab: boxes clamped into the slab, offsets from the
    global voxel index (so every voxel gets the single-device float expression)."""
    from jaxcba.model.raster import inside

    lz, ny, nx = vol.shape
    a = lax.axis_index(axis_name) * lz
    box = (min(box[0], lz), min(box[1], ny), min(box[2], nx))
    shape = vol.shape
    origin = (a, 0, 0)

    def body(i, vol):
        c = centres[i]
        starts, offs = [], []
        for ax_ in range(3):
            b, n_ = box[ax_], shape[ax_]
            s = jnp.clip(jnp.floor(c[ax_]).astype(jnp.int32) - box[ax_] // 2 - origin[ax_], 0, n_ - b)
            o = (origin[ax_] + s + jnp.arange(b, dtype=jnp.int32)).astype(jnp.float32) + 0.5 - c[ax_].astype(jnp.float32)
            shp = [1, 1, 1]
            shp[ax_] = b
            starts.append(s)
            offs.append(o.reshape(shp))
        mask = inside(kind, *offs, marks[i])
        sub = lax.dynamic_slice(vol, starts, box)
        sub = jnp.where(mask, jnp.asarray(value, vol.dtype), sub)
        return lax.dynamic_update_slice(vol, sub, starts)

    return lax.fori_loop(0, count[0], body, vol)


@partial(jax.jit, static_argnames=("box", "kind", "mesh", "value"), donate_argnums=0)
def _paint_program(vol, centres, marks, count, *, value, box, kind, mesh):
    axis_name = M.axis_of(mesh)
    f = partial(_paint_local, value=value, box=box, kind=kind, axis_name=axis_name)
    spec = P(axis_name)
    return jax.shard_map(f, mesh=mesh, in_specs=(spec, spec, spec, spec), out_specs=spec, check_vma=False)(
        vol, centres, marks, count)


def split_grains(kind: str, centres: np.ndarray, marks: np.ndarray, nz: int, n: int):
    """Per shard, the rows of grains whose z-extent reaches the shard's voxel centres.

    Returns ``(centres (n, P, 3), marks (n, P, m), counts (n,))``, ``P`` a power of two.
    """
    e = G.half_extent(kind, marks)
    cz = centres[:, 0].astype(np.float64)
    lz = nz // n
    rows = []
    for d in range(n):
        lo, hi = d * lz + 0.5, (d + 1) * lz - 0.5
        rows.append(np.flatnonzero((cz + e >= lo - 1.0) & (cz - e <= hi + 1.0)))
    p = G.bucket(max((r.size for r in rows), default=0), minimum=1)
    c_out = np.zeros((n, p, centres.shape[1]), np.float32)
    m_out = np.zeros((n, p, marks.shape[1]), np.float32)
    for d, r in enumerate(rows):
        c_out[d, : r.size], m_out[d, : r.size] = centres[r], marks[r]
    return c_out, m_out, np.asarray([r.size for r in rows], np.int32)


def _paint_layer(vol, layer, key, shape, mesh, bar=None):
    n = M.size_of(mesh)
    c, m = _draw_layer(layer, key, shape)
    pk = G.pack(layer.kind, c, m, shape)
    for side, lo, hi in zip(pk.sides, pk.lo, pk.hi):
        cs, ms, counts = split_grains(layer.kind, pk.centres[lo:hi], pk.marks[lo:hi], shape[0], n)
        p = cs.shape[1]
        vol = _paint_program(vol, M.put_z(cs.reshape(n * p, -1), mesh), M.put_z(ms.reshape(n * p, -1), mesh),
                             M.put_z(counts, mesh), value=layer.value, box=(int(side),) * 3, kind=layer.kind, mesh=mesh)
        if bar is not None:
            bar.update(1)
    return vol


def simulate(params, shape, voxel_nm: float, key, *, mesh=None, eps: float = EPS, progress: bool = False,
             check_memory: bool = True) -> jax.Array:
    """One realization of the CBA model (paper Eq. 4) sharded along z over ``mesh``.

    Same arguments and labels as :func:`jaxcba.model.simulate` (0 pore, 1 carbon black +
    binder, 2 graphite; ``shape`` [voxels], ``voxel_nm`` [nm]), and for the same key the same
    volume, bit for bit. ``mesh``: a 1-D :class:`jax.sharding.Mesh`, a device count, or
    ``None`` (all devices). ``check_memory`` applies the grain-count limit (the memory of one
    device is not checked: the window is spread over the mesh).

    Returns:
        uint8 ``jax.Array`` ``(nz, ny, nx)`` with ``NamedSharding(mesh, P(axis))``.
    Raises:
        ValueError: the single-device checks, or a device count that does not divide ``nz``
            - before any work.
    """
    shape, voxel_nm = check_window(shape, voxel_nm)
    p = VoxelParams.of(params, voxel_nm)
    eps = _check_eps(eps)
    mesh = M.as_mesh(mesh)
    _check_field_split(shape, mesh)
    key = _as_key(key)
    balls, graphite = _layers(p, shape, eps)
    check_grains((balls, graphite), shape, force=not check_memory)
    k_field, k_balls, k_graphite = jax.random.split(key, 3)
    bar = None
    if progress:
        from jaxcba._progress import meter

        bar = meter(None, f"simulate {'x'.join(map(str, shape))} on {M.size_of(mesh)} devices", "step")
    vol = _field_program(k_field, shape, p.eta, p.mu, mesh, False)
    if bar is not None:
        bar.update(1)
    vol = _paint_layer(vol, balls, k_balls, shape, mesh, bar)
    vol = _paint_layer(vol, graphite, k_graphite, shape, mesh, bar)
    if bar is not None:
        bar.close()
    return vol
