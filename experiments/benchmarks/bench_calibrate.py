"""Benchmark of the calibration: stage 1 (Eq. 17) by optax L-BFGS vs scipy Nelder–Mead, and
the staged pipeline on a synthetic volume.

Part 1 (always): Table 1's image targets (voxel 20 nm), from each default start both methods
minimise the same scaled Eq. 17 in the same log coordinates. "At equal loss" means: the
common level ``L* = max(final loss of L-BFGS, final loss of Nelder–Mead)``; each method's
evaluations until it first reached ``L*`` (L-BFGS: value-and-gradient evaluations, line-search
trials included; Nelder–Mead: function evaluations) and the seconds up to then (run time,
compilation excluded, pro rata of the evaluations). Ratio = Nelder–Mead / L-BFGS (> 1: the
gradient method needs fewer).

Part 2 (``--pipeline N``): simulate an ``N^3`` volume at ``--voxel-nm`` from known parameters
(``--twins``: the paper's Table 2 and the other twins of :data:`TWINS`), time the staged
pipeline (stages 1, 2, 3) and, with ``--joint``, the joint mode after it; print recovered
volume fractions and length scales (mean half-axes alpha/gamma, 1/eta, 1/theta) relative to
the truth for the staged and the joint parameters side by side, and the joint mode's
held-out descriptors on hard realizations.

    python experiments/benchmarks/bench_calibrate.py                 # part 1
    python experiments/benchmarks/bench_calibrate.py --pipeline 200  # + pipeline on 200^3
    python experiments/benchmarks/bench_calibrate.py --skip-stage1 --pipeline 128 --joint \
        --twins paper,coarse-pores,small-graphite
"""

from __future__ import annotations

import argparse
import resource
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from jaxcba.calibrate import GraphiteTargets, eq17_loss, evaluations_to_reach, fit_graphite  # noqa: E402
from jaxcba.calibrate import default_starts  # noqa: E402
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


#: Synthetic twins: the paper's Table 2 and two others (finer Gaussian field with larger pores; smaller graphite).
TWINS = {
    "paper": {},
    "coarse-pores": {"mu": 0.35, "eta": 0.0095, "theta": 0.008, "v3": 0.15},
    "small-graphite": {"lambda_x": 4.0e-10, "alpha1": 160.0, "alpha2": 1600.0, "gamma": 2.0},
}


def twin_params(name: str) -> CBAParams:
    from jaxcba.theory import lambda_y_for_ball_fraction

    spec = dict(TWINS[name])
    v3 = spec.pop("v3", None)
    p = CBAParams.paper().replace(**spec)
    if v3 is not None:  # lambda_Y for a given ball fraction (Eq. 24 inverted)
        p = p.replace(lambda_y=float(lambda_y_for_ball_fraction(v3, p.theta)))
    return p


def _scales(p):
    return {"a = alpha1/gamma": p.alpha1 / p.gamma, "c = alpha2/gamma": p.alpha2 / p.gamma, "1/eta": 1 / p.eta,
            "1/theta": 1 / p.theta}


def pipeline(n: int, voxel_nm: float, seed: int, method: str, twins=("paper",), joint: bool = False,
             joint_steps: int = 20, joint_window: int = 48, joint_noise: int = 2) -> list[dict]:
    import warnings

    from jaxcba import simulate
    from jaxcba.calibrate import calibrate
    from jaxcba.calibrate import CalibrationWarning
    from jaxcba.theory import volume_fractions

    out = []
    for name in twins:
        params = twin_params(name)
        t0 = time.perf_counter()
        labels = np.asarray(simulate(params, (n, n, n), voxel_nm, jax.random.PRNGKey(seed)))
        t_sim = time.perf_counter() - t0
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if joint:
                res = calibrate(labels, voxel_nm, stages="joint", method=method, joint_options=dict(
                    max_steps=joint_steps, window=joint_window, n_noise=joint_noise, n_hard=2, hard_window=96))
            else:
                res = calibrate(labels, voxel_nm, stages=(1, 2, 3), method=method)
        t_cal = time.perf_counter() - t0
        staged = res.joint.initial if joint else res.params
        fits = {"staged": staged} | ({"joint": res.params} if joint else {})
        print(f"\n=== twin '{name}' on {n}^3 at {voxel_nm} nm: simulate {t_sim:.1f} s, calibration {t_cal:.1f} s "
              f"(stage seconds: { {k: round(v, 1) for k, v in res.seconds_by_stage.items()} }), "
              f"peak RSS {peak_rss_mb():.0f} MB; calibration warnings: "
              f"{[str(w.message)[:120] for w in caught if issubclass(w.category, CalibrationWarning)]}")
        print(res.table())
        vt = volume_fractions(params, voxel_nm)
        img = {"graphite": np.count_nonzero(labels == 2) / labels.size, "cb": np.count_nonzero(labels == 1) / labels.size,
               "solid": np.count_nonzero(labels) / labels.size}
        print(f"\n{'recovery (fitted / truth - 1)':<34}" + "".join(f"{k:>10}" for k in fits))
        row = {"twin": name, "n": n, "seconds": t_cal, "stage_seconds": dict(res.seconds_by_stage),
               "converged": res.converged}
        for ph in ("graphite", "cb", "solid"):
            vals = [float(getattr(volume_fractions(p, voxel_nm), ph)) / float(getattr(vt, ph)) - 1 for p in fits.values()]
            print(f"  volume fraction {ph:<17}" + "".join(f"{v:>+10.3f}" for v in vals)
                  + f"   (image / truth - 1: {img[ph] / float(getattr(vt, ph)) - 1:+.3f})")
            row[f"V_{ph}"] = vals
        truth_scales = _scales(params)
        for key, a in truth_scales.items():
            vals = [_scales(p)[key] / a - 1 for p in fits.values()]
            print(f"  {key + f' (truth {a:.0f} nm)':<32}" + "".join(f"{v:>+10.3f}" for v in vals))
            row[key] = vals
        if joint and res.joint.held_out is not None:
            print(res.joint.held_out.table())
            row["held_out"] = res.joint.held_out.to_dict()
            row["joint_loss"] = (res.joint.loss_initial, res.joint.loss)
        out.append(row)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=4, help="number of default starts (1-6)")
    ap.add_argument("--method", default="lbfgs", choices=["lbfgs", "adam"])
    ap.add_argument("--pipeline", type=int, default=0, metavar="N", help="also time the staged pipeline on N^3")
    ap.add_argument("--voxel-nm", type=float, default=40.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--twins", default="paper", help=f"comma-separated subset of {','.join(TWINS)}")
    ap.add_argument("--joint", action="store_true", help="also run the joint mode (staged and joint side by side)")
    ap.add_argument("--joint-steps", type=int, default=20)
    ap.add_argument("--joint-window", type=int, default=48)
    ap.add_argument("--joint-noise", type=int, default=2)
    ap.add_argument("--skip-stage1", action="store_true", help="skip part 1 (stage 1 vs Nelder-Mead)")
    args = ap.parse_args(argv)
    if not args.skip_stage1:
        stage1(args.starts, args.method)
    if args.pipeline:
        pipeline(args.pipeline, args.voxel_nm, args.seed, args.method, tuple(args.twins.split(",")), args.joint,
                 args.joint_steps, args.joint_window, args.joint_noise)


if __name__ == "__main__":
    main()
