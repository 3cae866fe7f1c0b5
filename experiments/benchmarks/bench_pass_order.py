"""Order of the separable min-plus passes on XLA's CPU backend: x (the minor axis) first or last.

Usage:  python experiments/benchmarks/bench_pass_order.py [--n 256] [--planes 64] [--window 20]

Two kernels, each timed warm (fastest of 3) in both orders in one process, results checked equal:

* ``plane``: what each CPSD ball dilation does per plane (pore_size.py): a ``lax.scan`` over
  ``--planes`` random planes of ``n x n`` squared 1D distances (int16), windowed min-plus along y
  then x, or x then y, compared with the threshold and counted.
* ``edt``: :func:`jaxcba.descriptors.distance._min_plus_pass` over a whole ``(n/1.6)^3`` float32
  volume (2 % random sites), axes z, y, x or x, y, z (``squared_distance_to``).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcba.descriptors.distance import _min_plus_pass
from jaxcba.descriptors.pore_size import _min_plus


def _best(fn, arg) -> tuple[float, object]:
    out = jax.block_until_ready(fn(arg))
    times = []
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(fn(arg))
        times.append(time.perf_counter() - t)
    return min(times), out


def plane_kernel(order, w: int):
    t, cap = w * w, (w + 1) ** 2

    def plane(c, d):
        f = d.astype(jnp.int16)
        f = f * f
        for axis in order:  # as pore_size's per-plane dilation: pad with the cap, then the min-plus taps
            pad = [(0, 0)] * 2
            pad[axis] = (w, w)
            f = _min_plus(jnp.pad(f, pad, constant_values=cap), axis, w, w, d.shape[axis])
        return c + jnp.sum(f < t, dtype=jnp.int32), None

    return jax.jit(lambda d: lax.scan(plane, jnp.int32(0), d)[0])


def edt_kernel(order, w: int):
    def f(sites):
        g = jnp.where(sites, jnp.float32(0), jnp.float32(jnp.inf))
        for axis in order:
            g = _min_plus_pass(g, axis, w)
        return g

    return jax.jit(f)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--planes", type=int, default=64)
    ap.add_argument("--window", type=int, default=20)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    w = args.window
    d = jnp.asarray(rng.integers(0, w + 2, size=(args.planes, args.n, args.n)).astype(np.uint8))
    t_yx, c_yx = _best(plane_kernel((0, 1), w), d)
    t_xy, c_xy = _best(plane_kernel((1, 0), w), d)
    print(f"plane: {args.planes} planes of {args.n}², w = {w}: y then x {t_yx * 1e3:.1f} ms, x then y "
          f"{t_xy * 1e3:.1f} ms, ratio {t_yx / t_xy:.2f}x; counts equal: {int(c_yx) == int(c_xy)}")
    m = int(args.n / 1.6)
    sites = jnp.asarray(rng.random((m, m, m)) < 0.02)
    t_zyx, e_zyx = _best(edt_kernel((0, 1, 2), w), sites)
    t_xyz, e_xyz = _best(edt_kernel((2, 1, 0), w), sites)
    print(f"edt: {m}³, w = {w}: z, y, x {t_zyx:.3f} s, x, y, z {t_xyz:.3f} s, ratio {t_zyx / t_xyz:.2f}x; "
          f"equal: {bool(jnp.array_equal(e_zyx, e_xyz))}")


if __name__ == "__main__":
    main()
