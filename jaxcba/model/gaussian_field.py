"""Stationary Gaussian random field Z with covariance rho(h) = 1 / (1 + (eta h)^2) (Eq. 2).

Spectral synthesis on the periodic grid of the window (voxel units):

    S(k) = DFT of the minimum-image covariance c(n) = rho(|n_min|)   (real, even)
    Z    = irfftn( sqrt(max(S, 0) * n_vox) * xi )

with ``xi`` standard complex normal white noise in the half-spectrum layout
``(nz, ny, nx // 2 + 1)``. The planes ``kx = 0`` (and ``kx = nx / 2`` for even ``nx``) are
made Hermitian explicitly, ``(xi + conj(xi[-k])) / sqrt(2)``, so ``xi`` has exactly the
law of the DFT of real white noise / sqrt(n_vox) and the inverse transform is well
defined on every backend. Then ``Cov(Z(n), Z(m)) = c(n - m)`` on the torus:

* exact for lags up to half the window side along each axis;
* longer lags see ``rho(L - h)`` instead of ``rho(h)`` (the field is periodic), an error
  below ``rho(L / 2)``: ~1e-4 for 800^3 at 20 nm and for 200^3 at 80 nm, 4e-3 for 128^3
  at 20 nm;
* the small negative values of ``S`` that the truncated (minimum-image) covariance has
  are clipped; the clipped mass is ~1e-3 of the variance at 64^3 (20 nm), ~1e-5 at
  256^3, and shrinks with the window.

Because ``S`` is even along each axis it is computed on the non-negative octant only
(``(nz//2+1, ny//2+1, nx//2+1)``, an eighth of the volume) by three 1-D cosine transforms
(even extension + rfft), in float32: its rounding error is ~1e-5 per coefficient (it
scales with ``||c||_2``, not with the window), negligible against the mean coefficient 1.

Two synthesis routes share the same noise and spectrum:

* :func:`field_and_gradient` - the whole field (and optionally its spectral gradient)
  at once, differentiable in ``eta``; for the soft path (small windows).
* :func:`excursion_labels` - the hard path: the noise is generated, scaled, inverse
  transformed and thresholded slab by slab, so the peak memory is one complex
  half-spectrum (~4 bytes/voxel) plus the uint8 labels.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

#: Target number of complex elements per slab in the chunked routines (32 MiB).
_SLAB_ELEMS = 1 << 22


def half_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Shape of the rfft half-spectrum of a real ``(nz, ny, nx)`` array."""
    nz, ny, nx = shape
    return (nz, ny, nx // 2 + 1)


def _mirror(n: int) -> jnp.ndarray:
    """Index map k -> min(k, n - k) for k in [0, n): DFT frequency to octant index."""
    k = jnp.arange(n, dtype=jnp.int32)
    return jnp.minimum(k, n - k)


def _cosine_transform(x: jnp.ndarray, axis: int, n: int) -> jnp.ndarray:
    """DFT along ``axis`` of the even sequence of length ``n`` whose first n//2+1 values are ``x``.

    Returns the (real) first n//2+1 coefficients.
    """
    full = jnp.take(x, _mirror(n), axis=axis)
    return jnp.real(jnp.fft.rfft(full, axis=axis)).astype(x.dtype)


def spectrum_octant(shape: tuple[int, int, int], eta_vox, dtype=jnp.float32) -> jnp.ndarray:
    """DFT of the minimum-image covariance on the non-negative octant of frequencies.

    Args:
        shape: window ``(nz, ny, nx)`` [voxels].
        eta_vox: inverse correlation length [1/voxel] (may be traced).
    Returns:
        ``S`` of shape ``(nz//2+1, ny//2+1, nx//2+1)``; ``S[kz, ky, kx]`` is the
        spectrum at frequencies ``(+-kz, +-ky, +-kx)``. Mean of S over all frequencies = 1.
    """
    axes = [jnp.arange(n // 2 + 1, dtype=dtype) for n in shape]
    r2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
    eta = jnp.asarray(eta_vox, dtype)
    c = 1.0 / (1.0 + eta * eta * r2)
    for axis, n in enumerate(shape):
        c = _cosine_transform(c, axis, n)
    return c


def _safe_sqrt(s: jnp.ndarray) -> jnp.ndarray:
    """sqrt(max(s, 0)) with a zero (not NaN) gradient where s <= 0."""
    pos = s > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)


def amplitude_octant(shape, eta_vox, dtype=jnp.float32) -> jnp.ndarray:
    """``sqrt(max(S, 0) * n_vox)``: the amplitude multiplying unit complex white noise."""
    n_vox = float(math.prod(shape))
    return _safe_sqrt(spectrum_octant(shape, eta_vox, dtype)) * jnp.asarray(math.sqrt(n_vox), dtype)


def _expand_octant(oct_: jnp.ndarray, shape, kz: jnp.ndarray | None = None) -> jnp.ndarray:
    """Octant array -> half-spectrum layout ``(nz or len(kz), ny, nx//2+1)`` by mirroring."""
    nz, ny, _ = shape
    iz = _mirror(nz) if kz is None else jnp.minimum(kz, nz - kz)
    return oct_[iz][:, _mirror(ny)]


def white_spectrum(key, shape: tuple[int, int, int]) -> jnp.ndarray:
    """Unit complex normal noise (Re, Im ~ N(0, 1/2)) of shape ``half_shape(shape)``, complex64.

    Drawn in z-slabs from ``fold_in(key, slab)``; the slab layout depends on ``shape``
    only, so a key always gives the same noise. Hermitian planes are *not* yet
    symmetrised (see :func:`hermitian_planes`).
    """
    return _white_spectrum(key, tuple(int(s) for s in shape), None)


@partial(jax.jit, static_argnums=(1,))
def _white_spectrum_jit(key, shape):
    return _white_spectrum(key, shape, None)


def _slab(nz: int, row: int) -> int:
    return max(1, min(nz, _SLAB_ELEMS // max(row, 1)))


def _white_spectrum(key, shape, amp_oct):
    """Chunked noise generation, optionally multiplied by the amplitude on the fly."""
    nz, ny, mx = half_shape(shape)
    zc = _slab(nz, ny * mx)
    n_slabs = -(-nz // zc)
    out = jnp.zeros((nz, ny, mx), jnp.complex64)

    def body(i, out):
        z0 = jnp.minimum(i * zc, nz - zc)  # last slab overlaps its predecessor: deterministic
        xi = jax.random.normal(jax.random.fold_in(key, i), (zc, ny, mx), jnp.complex64)
        if amp_oct is not None:
            kz = z0 + jnp.arange(zc, dtype=jnp.int32)
            xi = xi * _expand_octant(amp_oct, shape, kz).astype(jnp.float32)
        return lax.dynamic_update_slice(out, xi, (z0, 0, 0))

    return lax.fori_loop(0, n_slabs, body, out)


def _flip_k(plane: jnp.ndarray) -> jnp.ndarray:
    """plane[k] -> plane[-k mod n] along the first two axes."""
    for ax in (0, 1):
        plane = jnp.roll(jnp.flip(plane, axis=ax), 1, axis=ax)
    return plane


def hermitian_planes(x: jnp.ndarray, nx: int) -> jnp.ndarray:
    """Make the kx = 0 (and kx = nx/2) planes Hermitian: (x + conj(x[-k])) / sqrt(2)."""
    cols = [0] + ([nx // 2] if nx % 2 == 0 and nx > 1 else [])
    for c in cols:
        p = x[:, :, c]
        x = x.at[:, :, c].set(((p + jnp.conj(_flip_k(p))) * (1.0 / math.sqrt(2.0))).astype(x.dtype))
    return x


def _freq(n: int, dtype) -> jnp.ndarray:
    """Angular frequencies 2 pi k / n for the DFT layout, Nyquist set to 0 (for derivatives)."""
    k = jnp.fft.fftfreq(n).astype(dtype) * (2 * math.pi)
    if n % 2 == 0:
        k = k.at[n // 2].set(0.0)
    return k


def field_and_gradient(xi, shape, eta_vox, *, gradient: bool = False, dtype=jnp.float32):
    """Field ``Z`` (and its gradient norm) from unit white noise ``xi``; differentiable in eta.

    Args:
        xi: complex white noise, shape ``half_shape(shape)`` (from :func:`white_spectrum`).
        shape: window ``(nz, ny, nx)``.
        eta_vox: [1/voxel].
        gradient: also return ``|grad Z|`` [1/voxel] by spectral differentiation.
    Returns:
        ``Z`` (real, ``shape``), or ``(Z, |grad Z|)``.
    """
    nz, ny, nx = shape
    cdtype = jnp.complex128 if dtype == jnp.float64 else jnp.complex64
    amp = _expand_octant(amplitude_octant(shape, eta_vox, dtype), shape)
    x = hermitian_planes(xi.astype(cdtype) * amp, nx)
    z = jnp.fft.irfftn(x, s=shape, axes=(0, 1, 2)).astype(dtype)
    if not gradient:
        return z
    kz = _freq(nz, dtype)[:, None, None]
    ky = _freq(ny, dtype)[None, :, None]
    kx = _freq(nx, dtype)[None, None, : nx // 2 + 1]
    g2 = jnp.zeros(shape, dtype)
    for k in (kz, ky, kx):
        dz = jnp.fft.irfftn(x * (1j * k), s=shape, axes=(0, 1, 2)).astype(dtype)
        g2 = g2 + dz * dz
    return z, jnp.sqrt(g2)


@partial(jax.jit, static_argnums=(1,))
def excursion_labels(key, shape, eta_vox, mu):
    """uint8 volume: 1 where Z >= mu, else 0 (the hard excursion set Xi2), slab-wise.

    Peak memory ~ 8 * nz * ny * (nx//2+1) bytes (one complex64 half-spectrum) plus the
    uint8 output and the float32 octant amplitude (1/8 of the volume).
    """
    nz, ny, nx = shape
    mx = nx // 2 + 1
    amp = amplitude_octant(shape, eta_vox, jnp.float32)
    x = _white_spectrum(key, shape, amp)

    # inverse DFT along z and y, in place, over slabs of kx columns; the Hermitian
    # planes (kx = 0, nx/2) are symmetrised inside the loop (no extra copy of x)
    wc = max(1, min(mx, _SLAB_ELEMS // (nz * ny)))
    n_cols = -(-mx // wc)
    herm_cols = jnp.asarray([0] + ([nx // 2] if nx % 2 == 0 and nx > 1 else []), jnp.int32)

    def zy_body(i, x):
        c0 = jnp.minimum(i * wc, mx - wc)
        orig = lax.dynamic_slice(x, (0, 0, c0), (nz, ny, wc))
        cols = c0 + jnp.arange(wc, dtype=jnp.int32)
        herm = jnp.any(cols[:, None] == herm_cols[None, :], axis=1)
        sym = ((orig + jnp.conj(_flip_k(orig))) * (1.0 / math.sqrt(2.0))).astype(orig.dtype)
        slab = jnp.where(herm[None, None, :], sym, orig)
        # overlapping last slab: transform only columns not yet done
        done = cols < i * wc
        out = jnp.fft.ifft2(slab, axes=(0, 1)).astype(jnp.complex64)
        return lax.dynamic_update_slice(x, jnp.where(done[None, None, :], orig, out), (0, 0, c0))

    x = lax.fori_loop(0, n_cols, zy_body, x)

    # real inverse DFT along x and thresholding, over slabs of z
    zc = _slab(nz, ny * nx)
    n_slabs = -(-nz // zc)
    labels = jnp.zeros(shape, jnp.uint8)
    mu32 = jnp.asarray(mu, jnp.float32)

    def x_body(i, labels):
        z0 = jnp.minimum(i * zc, nz - zc)
        slab = lax.dynamic_slice(x, (z0, 0, 0), (zc, ny, mx))
        z = jnp.fft.irfft(slab, n=nx, axis=2).astype(jnp.float32)
        return lax.dynamic_update_slice(labels, (z >= mu32).astype(jnp.uint8), (z0, 0, 0))

    return lax.fori_loop(0, n_slabs, x_body, labels)


def field_from_key(key, shape, eta_vox, dtype=jnp.float32) -> jnp.ndarray:
    """The real field Z of :func:`excursion_labels` for ``key`` (whole array; for tests)."""
    shape = tuple(int(s) for s in shape)
    return field_and_gradient(_white_spectrum_jit(key, shape), shape, eta_vox, dtype=dtype)


__all__ = [
    "half_shape",
    "spectrum_octant",
    "amplitude_octant",
    "white_spectrum",
    "hermitian_planes",
    "field_and_gradient",
    "excursion_labels",
    "field_from_key",
]
