"""Seconds and peak memory of every stage of jaxcba from 128³ to 800³, peers side by side.

Each (stage, size) runs in a **fresh process**, so its peak resident set (``ru_maxrss``) is the
whole process: Python, the JAX runtime, the compiled program, the input volume and every
buffer. Bytes/voxel = that peak / voxel count. The volume is a realization of the paper's
calibrated model (Table 2) at 20 nm, cached under ``--cache``. Every jaxcba stage goes through
the public entry point a user calls (``describe`` for the descriptors, ``m_factor`` for the
M-factors), is run twice on the same volume, and reports the first call (with compilation)
and the second ("warm"); ``--once`` runs it once (for 800³). Peers run in their own fresh
processes on the same volume; where radii apply, porespy gets the integer radii up to the same
largest one (it accepts no others), while jaxcba's ``describe`` runs its 0.5-voxel grid (twice
as many radii), so the ratios below are conservative; ``--peer-radii`` gives jaxcba the peer's
integer radii instead (``cpsd`` / ``constrictivity`` called directly), for an equal-work ratio:

    intrinsic       quantimpy.minkowski.functionals
    two_point       porespy.metrics.two_point_correlation
    cpsd            porespy.filters.local_thickness (its histogram is the CPSD)
    constrictivity  porespy.filters.local_thickness + porosimetry(inlets = face z = 0)
    m_pore, m_solid taufactor.Solver;  m_solid_2cond taufactor.MultiPhaseSolver {2: 1, 1: 0.01}

"Above the runtime" subtracts the resident set after importing JAX and jaxcba (about 0.25 GB,
before the volume is loaded), which dominates small windows. Ratio = peer seconds / jaxcba
warm seconds (> 1: jaxcba faster); with ``--peer-warm`` the peer runs twice as well and its
second call is used (its one-time warm-up, e.g. numba compilation, left out); ``--repeat K``
makes K warm calls of each and reports the fastest (for stages of a fraction of a second). The cost growth
exponent is the least-squares slope of log(warm seconds) against log(voxels) over the sizes run.

    python experiments/benchmarks/bench_scale.py --sizes 128,256,400 --peers 256,400
    python experiments/benchmarks/bench_scale.py --sizes 800 --once --stages two_point,cpsd
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("simulate", "intrinsic", "two_point", "cpsd", "constrictivity", "geodesic", "m_pore", "m_solid", "m_solid_2cond")
PEERS = {
    "intrinsic": "quantimpy",
    "two_point": "porespy",
    "cpsd": "porespy",
    "constrictivity": "porespy",
    "m_pore": "taufactor",
    "m_solid": "taufactor",
    "m_solid_2cond": "taufactor",
}
DESCRIBE = {
    "intrinsic": ("volume_fraction", "intrinsic"),
    "two_point": ("two_point",),
    "cpsd": ("cpsd",),
    "constrictivity": ("constrictivity",),
    "geodesic": ("geodesic_tortuosity",),
}
SOLID_2COND = {2: 1.0, 1: 0.01}
LEAN = {"auto": "auto", "true": True, "false": False}
VOXEL_NM = 20.0


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def volume_path(cache: Path, n: int, seed: int) -> Path:
    return cache / f"paper_{n}_20nm_seed{seed}.npy"


def make_volume(cache: Path, n: int, seed: int) -> Path:
    """The cached paper realization ``n³`` at 20 nm (made in this process if missing)."""
    path = volume_path(cache, n, seed)
    if not path.exists():
        import numpy as np

        import jaxcba

        cache.mkdir(parents=True, exist_ok=True)
        vol = np.asarray(jaxcba.simulate(jaxcba.CBAParams.paper(), (n, n, n), VOXEL_NM, seed))
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vol)
        os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- workers (fresh process each)


def _peer_radii(mask):
    """porespy's radii [voxels]: the integers up to jaxcba's largest default radius (it takes no others)."""
    import numpy as np

    from jaxcba.descriptors.pore_size import default_radii_vox

    return np.unique(np.ceil(default_radii_vox(mask)))


def _jaxcba_call(stage: str, labels, phase: str, n: int, seed: int, lean="auto", peer_radii=False):
    import jax

    import jaxcba
    from jaxcba.descriptors import describe, pore_size
    from jaxcba.transport import m_factor

    if peer_radii and stage in ("cpsd", "constrictivity"):
        mask = labels == 0 if phase == "pore" else labels > 0
        radii = tuple(_peer_radii(mask))  # outside the timed call, as for the peer

        def run():
            if stage == "cpsd":
                return {"radii": len(radii), "r_max": float(pore_size.cpsd(mask, VOXEL_NM, radii_vox=radii).r_half_nm)}
            c = pore_size.constrictivity(mask, VOXEL_NM, radii_vox=radii)
            return {"radii": len(radii), "r_max": float(c.r_max_nm), "r_min": float(c.r_min_nm)}

        return run
    if stage == "simulate":
        return lambda: jax.block_until_ready(jaxcba.simulate(jaxcba.CBAParams.paper(), (n, n, n), VOXEL_NM, seed))
    if stage in DESCRIBE:
        return lambda: describe(labels, VOXEL_NM, phases=(phase,), which=DESCRIBE[stage])
    if stage == "m_pore":
        return lambda: jax.block_until_ready(m_factor(labels, "pore", axis="z", lean=lean))
    if stage == "m_solid":
        return lambda: jax.block_until_ready(m_factor(labels, "solid", axis="z", lean=lean))
    if stage == "m_solid_2cond":
        return lambda: jax.block_until_ready(m_factor(labels, "solid", SOLID_2COND, axis="z", lean=lean))
    raise ValueError(stage)


def _summary(stage: str, out) -> dict:
    """A few numbers of the result, to check that jaxcba and the peer measured the same thing."""
    if isinstance(out, dict):
        return out
    if stage in DESCRIBE:
        p = out.phases[0]
        keys = ("volume_fraction", "surface_density", "r_max", "r_min", "constrictivity", "geodesic_tortuosity")
        d = {k: getattr(p, k) for k in keys if getattr(p, k) is not None}
        if p.two_point:
            d["C_1"] = p.two_point["C"][1]
        return d
    if stage.startswith("m_"):
        return {"M": float(out.m_factor), "tau": float(out.tau_eff), "iterations": int(out.iterations),
                "converged": bool(out.converged)}
    return {}


def _peer_call(stage: str, labels, phase: str):
    import numpy as np

    mask = labels == 0 if phase == "pore" else labels > 0
    if stage == "intrinsic":
        import quantimpy.minkowski as mk

        return lambda: {"functionals": [float(v) for v in mk.functionals(mask)]}
    if stage == "two_point":
        import porespy as ps

        return lambda: {"C_1": float(np.asarray(ps.metrics.two_point_correlation(mask, bins=100).probability)[1])}
    if stage in ("cpsd", "constrictivity"):
        import porespy as ps

        radii = _peer_radii(mask)

        def run():
            lt = ps.filters.local_thickness(mask, sizes=radii)
            out = {"radii": len(radii)}
            if stage == "constrictivity":
                inlets = np.zeros_like(mask)
                inlets[0] = True
                ps.filters.porosimetry(mask, inlets=inlets, sizes=radii)
            out["lt_mean"] = float(lt[mask].mean())
            return out

        return run
    if stage.startswith("m_"):
        import taufactor as tf

        def run():
            if stage == "m_solid_2cond":
                s = tf.MultiPhaseSolver(labels, cond=SOLID_2COND, device="cpu")
                s.solve(verbose=False)
                return {"D_eff": float(np.asarray(s.D_eff).ravel()[0]), "converged": bool(s.converged)}
            m = (labels == 0) if stage == "m_pore" else (labels > 0)
            s = tf.Solver(m.astype(np.uint8), device="cpu")
            s.solve(verbose=False)
            return {"M": float(s.D_rel[0]), "converged": bool(s.converged)}

        return run
    raise ValueError(f"no peer for {stage}")


def _current_rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(args) -> None:
    import numpy as np

    if args.who == "jaxcba":
        import jax.numpy as jnp

        import jaxcba  # noqa: F401 - runtime and package loaded before the baseline is read

        jnp.zeros(8).block_until_ready()
    baseline = _current_rss()
    n = args.n
    labels = None if args.stage == "simulate" else np.load(volume_path(Path(args.cache), n, args.seed))
    if args.who == "jaxcba":
        import jax

        jax.config.update("jax_enable_x64", False)
        fn = _jaxcba_call(args.stage, labels, args.phase, n, args.seed, LEAN[args.lean], args.peer_radii)
    else:
        fn = _peer_call(args.stage, labels, args.phase)
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    warm = None
    if not args.once and (args.who == "jaxcba" or args.peer_warm):
        for _ in range(args.repeat):  # the fastest of the warm calls: short stages are noisy
            t0 = time.perf_counter()
            out = fn()
            warm = min(time.perf_counter() - t0, warm or float("inf"))
    summary = _summary(args.stage, out) if args.who == "jaxcba" else out
    peak = _peak_rss()
    print("RESULT " + json.dumps({
        "stage": args.stage, "who": args.who, "n": n, "phase": args.phase, "lean": args.lean, "first_s": first, "warm_s": warm,
        "peak_rss_gb": peak / 1e9, "bytes_per_voxel": peak / n**3, "runtime_gb": baseline / 1e9,
        "net_bytes_per_voxel": (peak - baseline) / n**3, "summary": summary,
    }), flush=True)


# ----------------------------------------------------------------------------- driver


def run_one(stage, who, n, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--stage", stage, "--who", who, "--n", str(n), "--phase", args.phase,
           "--seed", str(args.seed), "--cache", args.cache, "--lean", args.lean]
    cmd += [flag for flag, on in (("--once", args.once), ("--peer-radii", args.peer_radii), ("--peer-warm", args.peer_warm))
            if on] + ["--repeat", str(args.repeat)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"stage": stage, "who": who, "n": n, "error": f"timed out after {args.timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"stage": stage, "who": who, "n": n, "error": f"rc {proc.returncode} after {time.perf_counter() - t0:.0f} s: "
            + " | ".join(tail)}


def growth_exponent(rows, stage) -> float | None:
    import numpy as np

    pts = [(r["n"] ** 3, r.get("warm_s") or r["first_s"]) for r in rows
           if r.get("stage") == stage and r.get("who") == "jaxcba" and "error" not in r]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128,256,400", help="cube sides [voxels], comma-separated")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    ap.add_argument("--peers", default="", help="sizes at which the peers run too (e.g. 256,400)")
    ap.add_argument("--peer-stages", default=",".join(PEERS), help="stages whose peer runs (default all with a peer)")
    ap.add_argument("--phase", default="pore", choices=("pore", "solid"), help="phase of the descriptor stages")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--once", action="store_true", help="one call per stage (no warm repeat), for the largest sizes")
    ap.add_argument("--lean", default="auto", choices=tuple(LEAN), help="m_factor's solver path (auto: the labelled one)")
    ap.add_argument("--peer-radii", action="store_true",
                    help="cpsd / constrictivity: jaxcba on porespy's integer radii (equal work) instead of describe's 0.5-voxel grid")
    ap.add_argument("--peer-warm", action="store_true",
                    help="run each peer twice too and take its second call for the ratio (numba / torch warm-up excluded)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="warm calls per process; the fastest is reported (for stages of a fraction of a second)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per process")
    ap.add_argument("--cache", default="results/bench_scale", help="folder of the cached volumes")
    ap.add_argument("--out", default="results/bench_scale/results.jsonl", help="JSON lines, appended as each run ends")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--who", default="jaxcba", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    peer_sizes = {int(s) for s in args.peers.split(",") if s}
    stages = [s for s in args.stages.split(",") if s]
    peer_stages = {s for s in args.peer_stages.split(",") if s}
    unknown = set(stages) - set(STAGES)
    if unknown:
        ap.error(f"unknown stage(s) {sorted(unknown)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sizes:
        make_volume(Path(args.cache), n, args.seed)
        for stage in stages:
            whos = ["jaxcba"] + (["peer"] if n in peer_sizes and stage in PEERS and stage in peer_stages else [])
            for who in whos:
                row = run_one(stage, who, n, args)
                row["peer"] = PEERS.get(stage) if who == "peer" else None
                row["date"] = time.strftime("%Y-%m-%d %H:%M")
                rows.append(row)
                with out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                if "error" in row:
                    print(f"{stage:15s} {who:7s} {n:4d}³  {row['error']}", flush=True)
                else:
                    warm = f"{row['warm_s']:8.1f}" if row.get("warm_s") is not None else "       -"
                    print(f"{stage:15s} {who:7s} {n:4d}³  first {row['first_s']:8.1f} s  warm {warm} s  "
                          f"peak {row['peak_rss_gb']:6.2f} GB = {row['bytes_per_voxel']:6.1f} B/voxel "
                          f"({row['net_bytes_per_voxel']:6.1f} above the runtime)", flush=True)
    for stage in stages:
        e = growth_exponent(rows, stage)
        if e is not None:
            print(f"{stage:15s} cost ~ voxels^{e:.2f}")
        for n in sorted(peer_sizes & set(sizes)):
            ours = [r for r in rows if r.get("stage") == stage and r["n"] == n and r["who"] == "jaxcba" and "error" not in r]
            peer = [r for r in rows if r.get("stage") == stage and r["n"] == n and r["who"] == "peer" and "error" not in r]
            if ours and peer:
                t = ours[0].get("warm_s") or ours[0]["first_s"]
                p = peer[0].get("warm_s") or peer[0]["first_s"]
                print(f"{stage:15s} {n}³ {PEERS[stage]} / jaxcba = {p / t:.2f}"
                      + (" (both warm)" if peer[0].get("warm_s") else " (peer first call)"))


if __name__ == "__main__":
    main()
