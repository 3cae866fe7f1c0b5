"""Batch engine throughput: jobs/s on 1, 2, 4 (host) devices, and vmapped vs Python-loop measuring.

Usage:  python experiments/benchmarks/bench_batch.py [--shape 48] [--jobs 16] [--measure fractions,two_point]

Part 1 runs the same sweep in fresh processes with XLA_FLAGS=--xla_force_host_platform_device_count=N
(on a GPU/TPU machine, N real devices are used instead when --real-devices is given). Part 2 times,
in this process, measuring a stack of B volumes by one jit(vmap(kernel)) call against a Python loop
of the jitted single-volume kernel over the same volumes (compilation excluded: each is warmed up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sweep_spec(shape, n_jobs, measures):
    lam = [2.21e-11, 4.93e-11, 7.81e-11, 1.09e-10]
    seeds = list(range(max(1, n_jobs // len(lam))))
    return {"params": "paper", "sweep": {"lambda_x": lam}, "seeds": seeds, "shape": shape, "voxel_nm": 80,
            "measure": measures}


def run_devices(n_devices, spec, per_device, real):
    with tempfile.TemporaryDirectory() as d:
        sp = Path(d) / "spec.json"
        sp.write_text(json.dumps(spec))
        env = dict(os.environ)
        if not real:
            env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}", JAX_PLATFORMS="cpu")
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "jaxcba", "batch", str(sp), "--out", str(Path(d) / "out"),
                            "--no-progress", "--json", "--per-device", str(per_device)],
                           env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            raise SystemExit(r.stderr)
        s = json.loads(r.stdout)
        return s, wall


def vmap_vs_loop(shape, n, measures):
    import jax
    import numpy as np

    from jaxcba import CBAParams, simulate
    from jaxcba.batch.measures import MEASURES, measure_batch

    vols = np.stack([np.asarray(simulate(CBAParams.paper(), shape, 80.0, s)) for s in range(n)])
    out = {}
    for m in measures:
        measure_batch(m, vols, 80.0)  # warm-up / compile
        t = time.perf_counter()
        jax.block_until_ready(measure_batch(m, vols, 80.0))
        t_vmap = time.perf_counter() - t
        single = jax.jit(lambda v, m=m: MEASURES[m](v, 80.0))
        jax.block_until_ready(single(vols[0]))
        t = time.perf_counter()
        for v in vols:
            jax.block_until_ready(single(v))
        t_loop = time.perf_counter() - t
        out[m] = (t_vmap, t_loop)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shape", type=int, default=48)
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--measure", default="fractions,surface_density,two_point")
    ap.add_argument("--real-devices", action="store_true", help="use the machine's devices instead of host devices")
    a = ap.parse_args()
    measures = a.measure.split(",")
    spec = sweep_spec(a.shape, a.jobs, measures)
    print(f"sweep: {a.jobs} jobs, {a.shape}^3 voxels at 80 nm, measures {measures}")
    print(f"{'devices':>8} {'jobs':>5} {'run s':>8} {'jobs/s':>8} {'wall s (with start-up)':>24}")
    base = None
    counts = (1,) if a.real_devices else (1, 2, 4)
    for n in counts:
        s, wall = run_devices(n, spec, per_device=max(1, 4 // n), real=a.real_devices)
        base = base or s["jobs_per_second"]
        print(f"{s['devices']:>8} {s['done']:>5} {s['seconds']:>8.2f} {s['jobs_per_second']:>8.3f} {wall:>24.1f}"
              f"   (x{s['jobs_per_second'] / base:.2f} vs 1 device)")
    print()
    print(f"vmapped batch vs Python loop, {a.jobs} volumes of {a.shape}^3 (seconds, compiled):")
    for m, (tv, tl) in vmap_vs_loop(a.shape, a.jobs, measures).items():
        print(f"  {m:<20} vmap {tv:8.3f}   loop {tl:8.3f}   loop/vmap = {tl / tv:.2f}")


if __name__ == "__main__":
    main()
