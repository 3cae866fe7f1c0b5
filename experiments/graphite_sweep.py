"""Virtual materials testing (paper Section 3.4, Table 3, Fig. 8): vary the graphite intensity.

For the seven lambda_X of Table 3 and ``--seeds`` realizations each, runs through the batch
engine (``jaxcba.batch``; resumable: rerun the same command after an interruption) the
volume fractions, constrictivity, mean geodesic tortuosity and the M-factor of the pore
(sigma = 1) and of the solid (graphite 1, carbon black + binder 0.01), then fits

    Eq. 28:  M = eps^a beta^b / tau^c  (a, b, c >= 0; both phases pooled, log least squares)
    Eq. 29:  M = c1 V1 + c0            (per phase; V1 = realized graphite fraction)

where M is in the paper's (TauFactor's) convention eps * sigma_eff / mean(sigma) (for the
solid about 3x sigma_eff / sigma_graphite; docs/transport.md), and prints them beside the paper's (a = 2.1939, b = 0, c = 5.0152; solid c0 = -0.02061,
c1 = 0.5588; pore c0 = 0.4556, c1 = -1.874; M at 10.57 % graphite: solid 0.0357, pore 0.2429).
Writes ``OUT/runs/`` (batch results), ``OUT/sweep.csv``, ``OUT/fits.csv``, ``OUT/fig8.png``.

Usage:  python experiments/graphite_sweep.py [--out results/graphite_sweep] [--shape 96] [--voxel-nm 80]
                                             [--seeds 2] [--quick | --paper-size]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

LAMBDAS = [2.21e-11, 3.55e-11, 4.93e-11, 6.36e-11, 7.81e-11, 9.33e-11, 1.09e-10]
PAPER = {"a": 2.1939, "b": 0.0, "c": 5.0152, "solid_c0": -0.02061, "solid_c1": 0.5588, "pore_c0": 0.4556,
         "pore_c1": -1.874, "solid_M_at_10.57%": 0.0357, "pore_M_at_10.57%": 0.2429}
MEASURES = ["fractions", "constrictivity", "geodesic_tortuosity", "m_factor_pore", "m_factor_solid"]


def spec(shape: int, voxel_nm: float, seeds: int) -> dict:
    return {"params": "paper", "sweep": {"lambda_x": LAMBDAS}, "seeds": list(range(seeds)), "shape": shape,
            "voxel_nm": voxel_nm, "measure": MEASURES, "name": "graphite_sweep"}


def table(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        for phase in ("solid", "pore"):
            m = r[f"m_factor_{phase}"]
            out.append({
                "lambda_x": r["params"]["lambda_x"], "seed": r["seed"], "phase": phase,
                "V1": r["fractions"]["graphite"],
                "eps": r["fractions"][phase],
                "beta": r["constrictivity"][phase]["beta"],
                "tau_geodesic": r["geodesic_tortuosity"][phase]["mean"],
                "M": m["M_paper"], "sigma_eff_over_sigma_max": m["M"], "tau_eff": m["tau_eff"],
                "converged": m["converged"],
            })
    return out


def fit_eq28(t: list[dict]) -> dict:
    """a, b, c >= 0 of log M = a log eps + b log beta - c log tau (pooled, finite positive rows)."""
    rows = [r for r in t if all(isinstance(r[k], (int, float)) and np.isfinite(r[k]) and r[k] > 0
                                for k in ("eps", "beta", "tau_geodesic", "M"))]
    if len(rows) < 3:
        return {"a": float("nan"), "b": float("nan"), "c": float("nan"), "n": len(rows)}
    A = np.array([[np.log(r["eps"]), np.log(r["beta"]), -np.log(r["tau_geodesic"])] for r in rows])
    y = np.array([np.log(r["M"]) for r in rows])
    coef, _ = nnls(A, y)
    return {"a": float(coef[0]), "b": float(coef[1]), "c": float(coef[2]), "n": len(rows)}


def fit_eq29(t: list[dict], phase: str) -> dict:
    rows = [r for r in t if r["phase"] == phase and np.isfinite(r["M"])]
    v1 = np.array([r["V1"] for r in rows])
    m = np.array([r["M"] for r in rows])
    c1, c0 = np.polyfit(v1, m, 1)
    return {"c0": float(c0), "c1": float(c1), "M_at_10.57%": float(c0 + c1 * 0.1057)}



def plot(t, fits, path):
    from jaxcba.plotting import figure, save_png

    fig, ax = figure(1, 4, figsize=(17, 4))
    colours = {"solid": "tab:blue", "pore": "tab:red"}
    for phase, col in colours.items():
        rows = [r for r in t if r["phase"] == phase]
        v1 = np.array([r["V1"] for r in rows])
        for k, key in enumerate(("eps", "beta", "tau_geodesic", "M")):
            y = np.array([r[key] if isinstance(r[key], (int, float)) else np.nan for r in rows], float)
            ax[k].plot(v1, y, "o", color=col, alpha=0.7, label=phase)
        f = fits[f"eq29_{phase}"]
        xs = np.linspace(v1.min(), v1.max(), 20)
        ax[3].plot(xs, f["c1"] * xs + f["c0"], "-", color=col, label=f"{phase} Eq. 29")
        ax[3].plot(xs, PAPER[f"{phase}_c1"] * xs + PAPER[f"{phase}_c0"], ":", color=col, label=f"{phase} paper Eq. 29")
    for a_, lab in zip(ax, ("volume fraction ε", "constrictivity β", "geodesic tortuosity τ", "M-factor")):
        a_.set(xlabel="graphite fraction V1", title=lab)
    ax[3].legend(fontsize=7)
    ax[0].legend()
    fig.tight_layout()
    save_png(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/graphite_sweep")
    ap.add_argument("--shape", type=int, default=96, help="cube side [voxels] (default 96)")
    ap.add_argument("--voxel-nm", type=float, default=80.0, help="voxel side [nm] (default 80)")
    ap.add_argument("--seeds", type=int, default=2, help="realizations per lambda_X (paper: 5)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="40^3 voxels at 80 nm, 1 seed (CI)")
    g.add_argument("--paper-size", action="store_true", help="the paper's 16 um window as 400^3 voxels of 40 nm, 5 seeds")
    a = ap.parse_args(argv)
    shape, voxel_nm, seeds = a.shape, a.voxel_nm, a.seeds
    if a.quick:
        shape, voxel_nm, seeds = 40, 80.0, 1
    if a.paper_size:
        shape, voxel_nm, seeds = 400, 40.0, 5

    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxcba.batch import load_rows, run_batch
    from jaxcba.io import write_csv_atomic

    out = Path(a.out)
    summary = run_batch(spec(shape, voxel_nm, seeds), out / "runs", per_device=1)
    t = table(load_rows(out / "runs"))
    fits = {"eq28": fit_eq28(t), "eq29_solid": fit_eq29(t, "solid"), "eq29_pore": fit_eq29(t, "pore")}
    write_csv_atomic(out / "sweep.csv", t)
    fit_rows = [
        {"coefficient": "a (Eq. 28)", "jaxcba": fits["eq28"]["a"], "paper": PAPER["a"]},
        {"coefficient": "b (Eq. 28)", "jaxcba": fits["eq28"]["b"], "paper": PAPER["b"]},
        {"coefficient": "c (Eq. 28)", "jaxcba": fits["eq28"]["c"], "paper": PAPER["c"]},
    ]
    for phase in ("solid", "pore"):
        f = fits[f"eq29_{phase}"]
        fit_rows += [
            {"coefficient": f"{phase} c0 (Eq. 29)", "jaxcba": f["c0"], "paper": PAPER[f"{phase}_c0"]},
            {"coefficient": f"{phase} c1 (Eq. 29)", "jaxcba": f["c1"], "paper": PAPER[f"{phase}_c1"]},
            {"coefficient": f"{phase} M at V1 = 10.57 %", "jaxcba": f["M_at_10.57%"], "paper": PAPER[f"{phase}_M_at_10.57%"]},
        ]
    write_csv_atomic(out / "fits.csv", fit_rows)
    plot(t, fits, out / "fig8.png")
    print(f"graphite sweep: {len(LAMBDAS)} lambda_X x {seeds} seed(s), {shape}^3 voxels of {voxel_nm:g} nm "
          f"({summary.done} run now, {summary.skipped} resumed)")
    print(f"{'coefficient':<28} {'jaxcba':>10} {'paper':>10}")
    for r in fit_rows:
        print(f"{r['coefficient']:<28} {r['jaxcba']:>10.4g} {r['paper']:>10.4g}")
    n_bad = sum(1 for r in t if not r["converged"])
    if n_bad:
        print(f"warning: {n_bad} transport solve(s) did not converge (see sweep.csv)")
    print(f"wrote {out / 'sweep.csv'}, {out / 'fits.csv'}, {out / 'fig8.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
