"""Benchmark of hard realizations (jaxcba.simulate) at the paper's parameters.

    python experiments/benchmarks/bench_simulate.py [--sizes 200@80,400@40,800@20] [--batch 16] [--json]

Each window runs in a fresh subprocess so that its peak RSS (ru_maxrss) is its own:
seconds of the first call (with compilation) and of a second call (other key, warm),
peak RSS in bytes per voxel, and the realized fractions. Then a vmapped batch
(``simulate_batch``) of ``--batch`` x 128^3 windows at 80 nm vs a Python loop of
``simulate``. Peer: porespy.generators.overlapping_spheres (a Boolean model of balls,
the closest peer generator; it has no spheroids or Gaussian fields) for a window of the
same size with the pore balls' porosity and mean radius, timed in the same process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
import jax, numpy as np
import jaxcba
from jaxcba.model.realization import simulate
n, vox, peer = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
p = jaxcba.CBAParams.paper()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t = time.perf_counter(); v = np.asarray(simulate(p, n, vox, jax.random.key(0))); first = time.perf_counter() - t
del v
t = time.perf_counter(); v = np.asarray(simulate(p, n, vox, jax.random.key(1))); warm = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out = {"n": n, "voxel_nm": vox, "first_s": first, "warm_s": warm, "peak_rss_bytes": rss, "baseline_rss_bytes": base,
       "bytes_per_voxel": rss / n**3, "fractions": {k: float((v == i).mean()) for k, i in (("graphite", 2), ("cb", 1), ("pore", 0))}}
if peer:
    try:
        import porespy as ps
        th = float(jaxcba.theory.ball_fraction(p.lambda_y, p.theta))
        t = time.perf_counter()
        ps.generators.overlapping_spheres(shape=[n, n, n], r=max(1, round(1 / (p.theta * vox))), porosity=1 - th)
        out["peer_s"] = time.perf_counter() - t
    except Exception as exc:  # noqa: BLE001
        out["peer_error"] = f"{type(exc).__name__}: {exc}"
print("RESULT " + json.dumps(out))
"""

BATCH = r"""
import json, sys, time
import jax, numpy as np
import jaxcba
from jaxcba.model.realization import simulate, simulate_batch
b = int(sys.argv[1]); p = jaxcba.CBAParams.paper(); keys = jax.random.split(jax.random.key(0), b)
simulate_batch(p, 128, 80.0, keys[:b]).block_until_ready()  # compile
t = time.perf_counter(); simulate_batch(p, 128, 80.0, jax.random.split(jax.random.key(1), b)).block_until_ready(); tb = time.perf_counter() - t
simulate(p, 128, 80.0, keys[0]).block_until_ready()
t = time.perf_counter()
for k in jax.random.split(jax.random.key(1), b):
    simulate(p, 128, 80.0, k).block_until_ready()
tl = time.perf_counter() - t
print("RESULT " + json.dumps({"batch": b, "vmap_s": tb, "loop_s": tl, "loop_over_vmap": tl / tb}))
"""


def _run(code: str, *args: str, timeout: float = 1800) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="200@80,400@40,800@20", help="comma list of N@VOXEL_NM")
    ap.add_argument("--batch", type=int, default=16, help="batch size of the vmap-vs-loop comparison (0: skip)")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for item in args.sizes.split(","):
        n, vox = item.split("@")
        t = time.perf_counter()
        r = _run(CHILD, n, vox, "0" if args.no_peer else "1")
        r.setdefault("wall_s", time.perf_counter() - t)
        rows.append(r)
        if not args.json:
            print(json.dumps(r), flush=True)
    batch = _run(BATCH, str(args.batch)) if args.batch else None
    if args.json:
        print(json.dumps({"windows": rows, "batch": batch}, indent=2))
    else:
        print(json.dumps(batch))
        print("\n| window | voxel | first call [s] | warm [s] | peak RSS [B/voxel] | porespy overlapping_spheres [s] | ratio peer/warm |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            if "error" in r:
                print(f"| ? | ? | error: {r['error']} |")
                continue
            peer = r.get("peer_s")
            print(
                f"| {r['n']}^3 | {r['voxel_nm']:g} nm | {r['first_s']:.1f} | {r['warm_s']:.1f} | {r['bytes_per_voxel']:.2f} | "
                f"{peer:.1f} | {peer / r['warm_s']:.2f} |" if peer else f"| {r['n']}^3 | {r['voxel_nm']:g} nm | {r['first_s']:.1f} | "
                f"{r['warm_s']:.1f} | {r['bytes_per_voxel']:.2f} | - | - |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
