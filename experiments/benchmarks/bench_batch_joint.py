"""The batch's joint CPSD + constrictivity kernel against the two measures run one after the other.

Usage:  python experiments/benchmarks/bench_batch_joint.py [--shape 256] [--voxel-nm 20] [--repeat 2]

One realization of the paper's parameters (Table 2, seed 1), both phases, the batch's radius grid
(:func:`jaxcba.batch.measures._radii_vox`); in one process, each way warmed up first, then the fastest
of ``--repeat`` calls: ``measure_batch("cpsd")`` + ``measure_batch("constrictivity")`` (what a spec
with both measures ran before the joint kernel) against ``measure_batch("cpsd+constrictivity")``.
Checks that the values are equal.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import jaxcba
from jaxcba.batch.measures import measure_batch


def _best(fn, repeat: int) -> float:
    fn()  # warm-up (compilation)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, default=256)
    ap.add_argument("--voxel-nm", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    n = args.shape
    vol = jaxcba.simulate(jaxcba.CBAParams.paper(), (n, n, n), args.voxel_nm, 1)
    batch = jax.device_put(np.asarray(vol)[None])
    out = {}

    def apart():
        out["apart"] = {m: measure_batch(m, batch, args.voxel_nm) for m in ("cpsd", "constrictivity")}

    def joint():
        out["joint"] = measure_batch("cpsd+constrictivity", batch, args.voxel_nm)

    t_apart = _best(apart, args.repeat)
    t_joint = _best(joint, args.repeat)
    same = all(np.array_equal(out["apart"][m][p][k], out["joint"][m][p][k], equal_nan=True)
               for m in ("cpsd", "constrictivity") for p in ("solid", "pore") for k in out["joint"][m][p])
    print(f"{n}³ at {args.voxel_nm:g} nm, both phases, warm, fastest of {args.repeat}: cpsd then constrictivity "
          f"{t_apart:.1f} s, joint {t_joint:.1f} s, ratio {t_apart / t_joint:.2f}x; values equal: {same}")


if __name__ == "__main__":
    main()
