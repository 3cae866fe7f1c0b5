"""Model validation across resolutions (paper Section 3.3, Figs. 5-7).

For ``--n`` realizations of the calibrated model in one physical window, at 20, 40 and 80 nm
voxels (the parameters converted as Section 3.3 says), and for the 20 nm realizations
down-sampled by slice removal to 40 and 80 nm, computes volume fraction, specific surface
S_V, constrictivity and mean geodesic tortuosity of solid and pore (Fig. 5), the CPSD of the
pore space (Fig. 6) and the centred two-point coverage C(h) - V^2 (Fig. 7).
The paper's image values exist only as bar charts, so the table reports the model side
(mean, min, max) per resolution; the theory's solid fraction is printed beside it.
Every resolution is one run of the batch engine (``OUT/runs/<voxel>nm``, the coarsest first:
results kept as each realization finishes; rerun the same command after an interruption and it
resumes).
Writes ``OUT/validation.csv``, ``OUT/curves.json``, ``OUT/fig5.png``, ``OUT/fig6_7.png``.

Usage:  python experiments/validation.py [--out results/validation] [--window-um 2.56] [--n 2]
                                         [--quick | --paper-size]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SCALARS = [("volume_fraction", "eps"), ("surface_density", "S_V [1/nm]"), ("constrictivity", "beta"),
           ("geodesic_tortuosity", "tau")]
MEASURES = ["fractions", "surface_density", "two_point", "cpsd", "constrictivity", "geodesic_tortuosity"]
VOXELS_NM = (20.0, 40.0, 80.0)


def _num(x):
    return float(x) if isinstance(x, (int, float)) and x is not None else float("nan")


def specs(window_um: float, n: int, seed0: int = 0) -> dict[float, dict]:
    """One batch spec per voxel size; the 20 nm realizations are also measured down-sampled x2, x4."""
    out = {}
    for vox in VOXELS_NM:
        spec = {"params": "paper", "seeds": list(range(seed0, seed0 + n)), "shape": int(round(window_um * 1000 / vox)),
                "voxel_nm": vox, "measure": MEASURES, "per_device": 1, "name": f"validation {window_um:g} um, {vox:g} nm"}
        if vox == VOXELS_NM[0]:
            spec["downsample"] = [2, 4]
        out[vox] = spec
    return out


def _values(m: dict, phase: str) -> dict:
    """The Fig. 5 scalars of one phase from a batch row's measures (S_V: of the solid-pore interface;
    beta and tau NaN where the phase does not percolate), through the library's
    :func:`jaxcba.validate.scalar_values` (what ``jaxcba validate`` compares)."""
    from jaxcba.validate import scalar_values

    s = scalar_values(m)
    v = s[("volume_fraction", "solid")]
    return {"eps": v if phase == "solid" else 1.0 - v, "S_V [1/nm]": s[("surface_density", "interface")],
            "beta": s[("constrictivity", phase)], "tau": s[("geodesic_tortuosity", phase)]}


def run(window_um: float, n: int, out: Path, seed0: int = 0):
    """Run (or resume) the three batches under ``out/runs`` and tabulate every case (mean, min, max)."""
    from jaxcba.batch import load_rows, run_batch

    cases, all_specs = {}, specs(window_um, n, seed0)
    for vox in sorted(all_specs, reverse=True):  # coarsest first: the small windows finish before the 800^3 ones
        run_batch(all_specs[vox], out / "runs" / f"{vox:g}nm")
    for vox, spec in all_specs.items():
        folder = out / "runs" / f"{vox:g}nm"
        rows = sorted(load_rows(folder), key=lambda r: r["seed"])
        cases[f"simulated {vox:g} nm"] = rows
        for f in spec.get("downsample", []):
            cases[f"down-sampled {vox * f:g} nm"] = [r["downsampled"][str(f)] for r in rows]
    table, curves = [], {}
    for name, rows in cases.items():
        for phase in ("solid", "pore"):
            for _, label in SCALARS:
                vals = np.array([_num(_values(r, phase)[label]) for r in rows])
                table.append({"case": name, "phase": phase, "descriptor": label, "mean": np.nanmean(vals),
                              "min": np.nanmin(vals), "max": np.nanmax(vals), "n": len(vals)})
        from jaxcba.validate import curve_values

        cs = [curve_values(r) for r in rows]  # centred_C = C(h) - V^2 of the solid, C(0) = V
        curves[name] = {
            "cpsd_r_nm": cs[0]["cpsd_r_nm"].tolist(),
            "cpsd_pore": np.mean([c["cpsd_pore"] for c in cs], axis=0).tolist(),
            "h_nm": cs[0]["h_nm"].tolist(),
            "centred_C": np.mean([c["centred_C"] for c in cs], axis=0).tolist(),
        }
    return table, curves


def plot(rows, curves, out: Path):
    from jaxcba.plotting import figure, save_png

    cases = list(dict.fromkeys(r["case"] for r in rows))
    fig, ax = figure(2, 4, figsize=(18, 7))
    for i, phase in enumerate(("solid", "pore")):
        for j, (_, label) in enumerate(SCALARS):
            sel = [next(r for r in rows if r["case"] == c and r["phase"] == phase and r["descriptor"] == label) for c in cases]
            m = np.array([s["mean"] for s in sel])
            lo = m - np.array([s["min"] for s in sel])
            hi = np.array([s["max"] for s in sel]) - m
            ax[i, j].bar(range(len(cases)), m, yerr=[lo, hi], color="tab:blue" if phase == "solid" else "tab:red")
            ax[i, j].set_xticks(range(len(cases)), [c.replace("simulated", "sim.").replace("down-sampled", "down").replace(" ", "\n", 1) for c in cases], fontsize=7)
            ax[i, j].set_title(f"{label} ({phase})")
    fig.tight_layout()
    save_png(fig, out / "fig5.png")
    fig, ax = figure(1, 2, figsize=(12, 4))
    for name, c in curves.items():
        ls = "-" if name.startswith("simulated") else "--"
        ax[0].plot(c["cpsd_r_nm"], c["cpsd_pore"], ls, label=name)
        ax[1].plot(c["h_nm"], c["centred_C"], ls, label=name)
    ax[0].set(xlabel="r [nm]", ylabel="CPSD(r) of the pore space", title="Fig. 6")
    ax[1].set(xlabel="h [nm]", ylabel="C(h) − V²", title="Fig. 7")
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, out / "fig6_7.png")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/validation")
    ap.add_argument("--window-um", type=float, default=2.56, help="cube side [µm] (default 2.56: 128^3 at 20 nm)")
    ap.add_argument("--n", type=int, default=2, help="realizations per resolution (paper: 5)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="1.92 µm window, 1 realization (CI)")
    g.add_argument("--paper-size", action="store_true", help="16 µm window (800^3 at 20 nm), 5 realizations")
    a = ap.parse_args(argv)
    window, n = a.window_um, a.n
    if a.quick:
        window, n = 1.92, 1
    if a.paper_size:
        window, n = 16.0, 5
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxcba import CBAParams, theory
    from jaxcba.io import write_csv_atomic, write_text_atomic

    out = Path(a.out)
    rows, curves = run(window, n, out)
    write_csv_atomic(out / "validation.csv", rows)
    write_text_atomic(out / "curves.json", json.dumps(curves))
    plot(rows, curves, out)
    th = theory.volume_fractions(CBAParams.paper(), 20.0)
    print(f"validation: {window:g} µm window, {n} realization(s) per case; theory solid fraction {float(th.solid):.4f}")
    print(f"{'case':<22} {'phase':<6} {'descriptor':<12} {'mean':>10} {'min':>10} {'max':>10}")
    for r in rows:
        print(f"{r['case']:<22} {r['phase']:<6} {r['descriptor']:<12} {r['mean']:>10.4g} {r['min']:>10.4g} {r['max']:>10.4g}")
    print(f"wrote {out / 'validation.csv'}, {out / 'fig5.png'}, {out / 'fig6_7.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
