"""Shared test builders: finite differences, blobs, synthetic structures and model twins.

Independent of the model layer where a test needs an independent reference (the numpy
structures below); ``twin`` uses ``jaxcba.simulate`` and caches per arguments.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys

import numpy as np


# ------------------------------------------------------------------ finite differences
def fd_grad(f, x, rel: float = 1e-5, abs_step: float = 0.0) -> np.ndarray:
    """Central differences of a scalar ``f`` at ``x`` (step ``rel * |x_i|``, at least ``abs_step``)."""
    x = np.asarray(x, dtype=float)
    g = np.zeros_like(x)
    for i in range(x.size):
        h = max(rel * abs(x.flat[i]), abs_step)
        e = np.zeros_like(x)
        e.flat[i] = h
        g.flat[i] = (float(f(x + e)) - float(f(x - e))) / (2 * h)
    return g


# ------------------------------------------------------------------------------- blobs
def digital_ball(n: int, r: float, centre=None) -> np.ndarray:
    """Bool ``(n, n, n)``: voxel centres at distance ``< r`` from ``centre`` (default the middle voxel)."""
    c = (n // 2,) * 3 if centre is None else centre
    z, y, x = np.ogrid[:n, :n, :n]
    return (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r


def soft_ball(n: int, r: float, s: float) -> np.ndarray:
    """float32 ``(n, n, n)``: ``sigmoid(-(|x - c| - r) / s)`` around the window's centre (exact signed distance)."""
    z, y, x = np.mgrid[:n, :n, :n] - (n - 1) / 2.0
    d = np.sqrt(z * z + y * y + x * x) - r  # negative inside
    return (1.0 / (1.0 + np.exp(d / s))).astype(np.float32)


# ------------------------------------------------------------------ synthetic structures
def gaussian_field(shape, eta_vox, seed):
    """Gaussian field, unit variance, covariance ~1/(1 + (eta_vox d)^2) (d in voxels, periodic), zero mean."""
    rng = np.random.default_rng(seed)
    d2 = np.zeros(shape)
    for a, n in enumerate(shape):
        k = np.minimum(np.arange(n), n - np.arange(n)).astype(float)
        d2 = d2 + (k**2).reshape([-1 if i == a else 1 for i in range(3)])
    cov = 1.0 / (1.0 + eta_vox**2 * d2)
    spec = np.clip(np.fft.fftn(cov).real, 0.0, None)
    # drop the zero-frequency mode: the covariance decays like h^-2, so the window mean of the field
    # fluctuates by ~0.1 at 64^3 and would swamp the fraction tests; the covariance becomes
    # (rho - c0) / (1 - c0) with c0 = mean(rho) ~ 0.008 here
    spec[0, 0, 0] = 0.0
    z = np.fft.ifftn(np.fft.fftn(rng.standard_normal(shape)) * np.sqrt(spec)).real
    return z / math.sqrt(spec.mean())


def boolean_balls(shape, v3, theta_vox, seed, margin=None):
    """Boolean model of open balls with Exp(theta) radii and volume fraction ``v3`` (Eq. 24)."""
    rng = np.random.default_rng(seed)
    lam = -math.log1p(-v3) * theta_vox**3 / (8 * math.pi)
    margin = int(math.ceil(8.0 / theta_vox)) if margin is None else margin
    big = [n + 2 * margin for n in shape]
    n = rng.poisson(lam * np.prod(big))
    centres = rng.uniform(0, 1, (n, 3)) * big - margin
    radii = rng.exponential(1.0 / theta_vox, n)
    out = np.zeros(shape, bool)
    for c, r in zip(centres, radii):
        lo = [max(0, int(math.floor(ci - r))) for ci in c]
        hi = [min(s, int(math.ceil(ci + r)) + 1) for ci, s in zip(c, shape)]
        if any(h <= l for l, h in zip(lo, hi)):
            continue
        g = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        d2 = sum((gi - ci) ** 2 for gi, ci in zip(g, c))
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] |= d2 < r * r
    return out


def synthetic_cba(shape, mu, eta_vox, v3=0.0, theta_vox=0.3, v1=0.0, seed=0):
    """Labels of Xi1 ∪ (Xi2 ∩ Xi3^c) with ball-shaped "graphite" (fraction v1)."""
    cb = gaussian_field(shape, eta_vox, seed) >= mu
    if v3 > 0:
        cb &= ~boolean_balls(shape, v3, theta_vox, seed + 1000)
    labels = cb.astype(np.uint8)
    if v1 > 0:
        labels[boolean_balls(shape, v1, 0.2, seed + 2000)] = 2
    return labels



# ------------------------------------------------------------------------------- twins
#: Table 2 with small graphite (mean half-axes 40 / 200 nm), so that 64^3 windows at 40 nm are representative.
SMALL_GRAPHITE = dict(lambda_x=1.5e-8, alpha1=80.0, alpha2=400.0, gamma=2.0)


def params_with_balls(theta: float, v3: float = 0.18, **changes):
    """Table 2 with ``changes``, ball radii ``Exp(theta)`` [nm^-1] and the ball fraction ``v3`` (Eq. 24)."""
    import jaxcba

    p = jaxcba.CBAParams.paper().replace(**changes, theta=theta)
    return p.replace(lambda_y=float(-math.log1p(-v3) * theta**3 / (8 * math.pi)))


@functools.lru_cache(maxsize=None)
def twin(params_items: tuple, n: int, voxel_nm: float, seed: int) -> np.ndarray:
    """``jaxcba.simulate`` of ``dict(params_items)`` in ``(n, n, n)`` (cached; pass ``tuple(p.to_dict().items())``)."""
    import jax

    import jaxcba

    p = jaxcba.CBAParams(**dict(params_items))
    return np.asarray(jaxcba.simulate(p, (n, n, n), voxel_nm, jax.random.PRNGKey(seed)))


def pore_twin(theta: float, seed: int, n: int = 64, voxel_nm: float = 40.0):
    """``(params, labels)``: :data:`SMALL_GRAPHITE` with V3 = 0.18 balls of mean radius ``1 / theta``."""
    p = params_with_balls(theta, **SMALL_GRAPHITE)
    return p, twin(tuple(p.to_dict().items()), n, voxel_nm, seed)


# ------------------------------------------------------------------------ subprocesses
def host_devices_env(n: int) -> dict:
    """The environment for a subprocess that sees ``n`` host CPU devices: this process's
    environment (with the test session's XLA_FLAGS, see conftest.py) plus
    ``--xla_force_host_platform_device_count=n`` and ``JAX_PLATFORMS=cpu``."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()
    return dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")


def run_on_host_devices(script: str, n: int = 4, timeout: float = 900) -> dict:
    """Run the test file ``script`` as a program on ``n`` host devices; the JSON of its last stdout line."""
    r = subprocess.run([sys.executable, script], env=host_devices_env(n), capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])
