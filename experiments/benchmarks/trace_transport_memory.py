"""Where the labelled transport solve's peak memory sits: resident set stage by stage.

Runs ``m_factor(lean=True)`` once on the cached paper realization of ``bench_scale.py``
(Table 2 at 20 nm, seed 1), samples the process's resident set every 50 ms and marks the
start and end of each of the solve's stages (compilation of all six programs, then the
percolating cluster, operator and multigrid levels, residual of the guess, initial state, CG
iterations, read-out); at the start of the CG loop it lists the live device arrays. Prints M,
the iterations, the seconds, the peak (``ru_maxrss``) in bytes per voxel, and the largest
resident set within each stage.

    python experiments/benchmarks/trace_transport_memory.py --n 400 --phase pore
    python experiments/benchmarks/trace_transport_memory.py --n 400 --phase solid --two-conductivity
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="cube side [voxels]")
    ap.add_argument("--phase", default="pore", choices=("pore", "solid"))
    ap.add_argument("--two-conductivity", action="store_true", help="solid with graphite 1, carbon black + binder 0.01")
    ap.add_argument("--cache", default="results/bench_scale", help="folder of bench_scale.py's cached volumes")
    args = ap.parse_args(argv)

    import subprocess

    import numpy as np

    import bench_scale

    path = bench_scale.volume_path(Path(args.cache), args.n, 1)
    if not path.exists():  # simulated in another process: its compilation stays out of this one's memory
        here = str(Path(__file__).resolve().parent)
        code = (f"import sys; sys.path.insert(0, {here!r}); import bench_scale; from pathlib import Path; "
                f"bench_scale.make_volume(Path({args.cache!r}), {args.n}, 1)")
        subprocess.run([sys.executable, "-c", code], check=True)
    import jax

    import jaxcba.transport.solver as solver
    from jaxcba.transport import m_factor

    runtime = _rss()
    vol = np.load(path)
    n_vox = vol.size
    trace, marks, done = [], [], threading.Event()

    def sampler():
        while not done.is_set():
            trace.append((time.time(), _rss()))
            time.sleep(0.05)

    stage, compile_programs = solver._stage, solver._compile_label_programs

    def traced(name, program, *a):
        marks.append((time.time(), f"{name} start", _rss()))
        if name == "advance" and not any(m[1] == "advance start" for m in marks[:-1]):
            live = jax.live_arrays()
            print(f"live device arrays at the CG loop's start: {len(live)}, "
                  f"{sum(x.nbytes for x in live) / n_vox:.1f} B/voxel", flush=True)
        out = jax.block_until_ready(stage(name, program, *a))
        marks.append((time.time(), f"{name} end", _rss()))
        return out

    def compiling(*a):
        marks.append((time.time(), "compile start", _rss()))
        out = compile_programs(*a)
        marks.append((time.time(), "compile end", _rss()))
        return out

    solver._stage, solver._compile_label_programs = traced, compiling
    cond = {2: 1.0, 1: 0.01} if args.two_conductivity else None
    threading.Thread(target=sampler, daemon=True).start()
    t0 = time.time()
    r = jax.block_until_ready(m_factor(vol, args.phase, cond, axis="z", lean=True))
    seconds = time.time() - t0
    done.set()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"{args.n}³ {args.phase}{' graphite 1 / cb 0.01' if cond else ''}: M {float(r.m_factor):.6f}, "
          f"{int(r.iterations)} iterations, {seconds:.1f} s; runtime {runtime / 1e9:.3f} GB; "
          f"peak {peak / 1e9:.3f} GB = {peak / n_vox:.2f} B/voxel")
    for i, (t, label, at_mark) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else float("inf")
        top = max([at_mark] + [m for s, m in trace if t <= s < end])
        print(f"  {t - t0:8.1f} s  {label:26s} largest until the next mark {top / 1e9:.3f} GB ({top / n_vox:.1f} B/voxel)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
