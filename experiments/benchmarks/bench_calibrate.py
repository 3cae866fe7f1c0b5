"""Benchmark of the calibration: stage 1 (Eq. 17) by optax L-BFGS vs scipy Nelder–Mead, and
the staged pipeline on a synthetic volume.

Part 1 (always): Table 1's image targets (voxel 20 nm), from each default start both methods
minimise the same scaled Eq. 17 in the same log coordinates. "At equal loss" means: the
common level ``L* = max(final loss of L-BFGS, final loss of Nelder–Mead)``; each method's
evaluations until it first reached ``L*`` (L-BFGS: value-and-gradient evaluations, line-search
trials included; Nelder–Mead: function evaluations) and the seconds up to then (run time,
compilation excluded, pro rata of the evaluations). Ratio = Nelder–Mead / L-BFGS (> 1: the
gradient method needs fewer).

Part 2 (``--pipeline N``): simulate an ``N^3`` volume at ``--voxel-nm`` from the paper's
parameters and time the whole staged pipeline (stages 1, 2, 3).

    python experiments/benchmarks/bench_calibrate.py                 # part 1
    python experiments/benchmarks/bench_calibrate.py --pipeline 200  # + pipeline on 200^3
"""

from __future__ import annotations

import argparse
import resource
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from jaxcba.calibrate import GraphiteTargets, eq17_loss, evaluations_to_reach, fit_graphite  # noqa: E402
from jaxcba.calibrate.stage1_graphite import default_starts  # noqa: E402
from jaxcba.model.params import CBAParams  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def stage1(n_starts: int, method: str) -> list[dict]:
    targets = GraphiteTargets.paper()
    table2 = eq17_loss(CBAParams.paper(), targets, 20.0)
    starts = default_starts(targets, 20.0, n_starts)
    # warm-up compiles both runners once (excluded from the timings)
    fit_graphite(targets, 20.0, method=method, starts=starts[:1])
    fit_graphite(targets, 20.0, method="nelder-mead", starts=starts[:1])
    scale = float(np.sum((np.array([1.0, 20.0, 400.0, 8000.0]) * targets.as_array()) ** 2))
    rows = []
    print(f"Eq. 17 loss of Table 2's parameters (theory layer): {table2:.4e}")
    header = (f"{'start':>5} {'method':>12} {'Eq17 loss':>11} {'<Table2':>7} {'evals':>6} {'evals@L*':>8} "
              f"{'s@L*':>8} {'conv':>5}")
    print(header)
    for i, s in enumerate(starts):
        g = fit_graphite(targets, 20.0, method=method, starts=[s], max_steps=2000)
        nm = fit_graphite(targets, 20.0, method="nelder-mead", starts=[s], max_fev=20000)
        rg, rn = g.runs[0], nm.runs[0]
        level = max(rg.loss, rn.loss) * (1 + 1e-9)
        kg, kn = evaluations_to_reach(rg, level), evaluations_to_reach(rn, level)
        tg = (rg.seconds - rg.compile_seconds) * kg / rg.n_fev
        tn = (rn.seconds - rn.compile_seconds) * kn / rn.n_fev
        for name, res, r, k, t in ((method, g, rg, kg, tg), ("nelder-mead", nm, rn, kn, tn)):
            print(f"{i:>5} {name:>12} {res.loss:>11.4e} {str(res.loss < table2):>7} {r.n_fev:>6} {k:>8} "
                  f"{t:>8.4f} {str(r.converged):>5}")
        rows.append({"start": i, "loss_grad": g.loss, "loss_nm": nm.loss, "evals_grad": kg, "evals_nm": kn,
                     "s_grad": tg, "s_nm": tn, "level": level * scale})
    ev = np.array([r["evals_nm"] / r["evals_grad"] for r in rows])
    sec = np.array([r["s_nm"] / max(r["s_grad"], 1e-9) for r in rows])
    print(f"\nratio Nelder-Mead / {method} at equal loss: evaluations {ev.min():.1f}-{ev.max():.1f} "
          f"(median {np.median(ev):.1f}), seconds {sec.min():.1f}-{sec.max():.1f} (median {np.median(sec):.1f}); "
          f"starts below Table 2's loss: {sum(min(r['loss_grad'], 1e300) < table2 for r in rows)}/{len(rows)}")
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    return rows


def pipeline(n: int, voxel_nm: float, seed: int, method: str) -> None:
    from jaxcba import simulate
    from jaxcba.calibrate import calibrate

    params = CBAParams.paper()
    t0 = time.perf_counter()
    labels = np.asarray(simulate(params, (n, n, n), voxel_nm, jax.random.PRNGKey(seed)))
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = calibrate(labels, voxel_nm, stages=(1, 2, 3), method=method)
    t_cal = time.perf_counter() - t0
    print(f"\npipeline on {n}^3 at {voxel_nm} nm: simulate {t_sim:.1f} s, staged calibration {t_cal:.1f} s "
          f"(stage seconds: {res.seconds_by_stage}), peak RSS {peak_rss_mb():.0f} MB")
    print(res.table())
    from jaxcba.theory import volume_fractions

    vt, vf = volume_fractions(params, voxel_nm), volume_fractions(res.params, voxel_nm)
    print("\ntwin recovery (fitted / truth - 1):")
    for name in ("graphite", "cb", "solid"):
        print(f"  volume fraction {name:<9} {float(getattr(vf, name)) / float(getattr(vt, name)) - 1:+.3f}")
    p, q = params, res.params
    for name, a, b in (("mean half-axis a = alpha1/gamma", p.alpha1 / p.gamma, q.alpha1 / q.gamma),
                       ("mean half-axis c = alpha2/gamma", p.alpha2 / p.gamma, q.alpha2 / q.gamma),
                       ("1/eta", 1 / p.eta, 1 / q.eta), ("1/theta", 1 / p.theta, 1 / q.theta)):
        print(f"  {name:<32} truth {a:9.1f} nm  fitted {b:9.1f} nm  {b / a - 1:+.3f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=4, help="number of default starts (1-6)")
    ap.add_argument("--method", default="lbfgs", choices=["lbfgs", "adam"])
    ap.add_argument("--pipeline", type=int, default=0, metavar="N", help="also time the staged pipeline on N^3")
    ap.add_argument("--voxel-nm", type=float, default=40.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    stage1(args.starts, args.method)
    if args.pipeline:
        pipeline(args.pipeline, args.voxel_nm, args.seed, args.method)


if __name__ == "__main__":
    main()
