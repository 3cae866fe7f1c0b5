"""Simulated anisotropic FIB-SEM volume -> preprocessing -> calibration (issue #9, last acceptance line).

Chain, for one parameter set and one seed:

1. simulate the model at ``--voxel-nm`` (10 nm) cubic voxels in an ``n^3`` window, with the
   parameters converted so that the half-axis law in nm is the one the parameters define at
   ``--params-voxel-nm`` (``jaxcba.model.resolution.convert(..., mode="same_law")``; gamma
   convention: ``A / voxel_nm ~ Gamma(alpha / voxel_nm, rate gamma)``, mean ``alpha / gamma`` nm);
2. drop every other z slice -> a ``10 x 10 x 20`` nm stack (what a FIB-SEM with 20 nm slices
   gives), written by ``jaxcba.io.save_volume`` as a TIFF with voxel metadata;
3. ``jaxcba preprocess STACK.tif --voxel-nm 10,10,20 --to-voxel-nm 20 --out PRE.tif --report``
   (the CLI, run as a user would, in a subprocess), and the same with
   ``--closing-radius 0 --keep-components`` ("slice-drop only": resampling without the
   Section 2.3 clean-up), to separate what the resampling and the clean-up each change;
4. a direct simulation at 20 nm of the same parameters, seed and physical window (a different
   realization: the grid differs) as the reference without any anisotropic path;
5. unless ``--no-calibrate``: ``jaxcba.calibrate.calibrate`` (stages 1, 2, 3) on each 20 nm
   volume, recovered parameters and length scales (``alpha1/gamma``, ``alpha2/gamma``, ``1/eta``,
   ``1/theta``) relative to the truth, seconds per step.

Prints a table and writes ``OUT/results.json`` (and the TIFFs under ``OUT``).

Usage:  python experiments/anisotropic_roundtrip.py [--n 400] [--seed 0] [--voxel-nm 10]
            [--params paper|small-graphite|FILE.json] [--params-voxel-nm NM] [--out DIR]
            [--no-calibrate] [--variants preprocessed,slice-drop,direct]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)  # calibration in float64, as `jaxcba calibrate` runs it

#: Named parameter sets and the voxel size [nm] at which each defines its half-axis law.
PRESETS = {
    "paper": ({}, 20.0),  # Table 2, calibrated at 20 nm
    # the calibration issue's small-graphite twin (bench_calibrate.py), defined at 40 nm voxels:
    # mean half-axes alpha/gamma = 80 nm and 800 nm, ~25 grains per (4 um)^3
    "small-graphite": ({"lambda_x": 4.0e-10, "alpha1": 160.0, "alpha2": 1600.0, "gamma": 2.0}, 40.0),
}
VARIANTS = ("preprocessed", "slice-drop", "direct")
#: Lags [nm] at which the cb two-point coverage is compared.
LAGS_NM = (20, 40, 80, 160)


def load_params(spec: str, params_voxel_nm: float | None):
    """``(params, voxel_nm of their half-axis law)`` from a preset name or a CBAParams JSON file."""
    from jaxcba import CBAParams

    if spec in PRESETS:
        changes, vox = PRESETS[spec]
        return CBAParams.paper().replace(**changes).validate(), float(params_voxel_nm or vox)
    return CBAParams.from_json(spec), float(params_voxel_nm or 20.0)


def scales(p) -> dict:
    """Length scales [nm] that do not depend on the gamma convention's voxel size."""
    return {"alpha1/gamma": p.alpha1 / p.gamma, "alpha2/gamma": p.alpha2 / p.gamma, "1/eta": 1 / p.eta,
            "1/theta": 1 / p.theta}


def measure(vol: np.ndarray, voxel_nm: float) -> dict:
    """Phase fractions, graphite S_V [1/nm] and cb C(h) along the axes at :data:`LAGS_NM`."""
    import jax.numpy as jnp

    from jaxcba.descriptors import intrinsic_densities, two_point_coverage

    lags = [int(round(h / voxel_nm)) for h in LAGS_NM]  # a lag below the voxel (0) is left out
    c = np.asarray(two_point_coverage(jnp.asarray(vol == 1), voxel_nm, max(lags)).C_axes).mean(axis=0)
    return {
        "shape": list(vol.shape), "voxel_nm": voxel_nm,
        "pore": float(np.mean(vol == 0)), "cb": float(np.mean(vol == 1)), "graphite": float(np.mean(vol == 2)),
        "graphite_S_V": float(intrinsic_densities(jnp.asarray(vol == 2), voxel_nm).S_V),
        "cb_C": {str(h): float(c[k]) for h, k in zip(LAGS_NM, lags) if k > 0},
    }


def preprocess_cli(stack: Path, out: Path, voxel_nm: float, extra=()) -> tuple[str, float]:
    """Run ``jaxcba preprocess`` as a user would on a ``(2 v, v, v)`` stack (``v = voxel_nm``, z slices
    twice as thick), resampling to ``2 v`` cubes; returns (its stdout, seconds)."""
    v, c = f"{voxel_nm:g}", f"{2.0 * voxel_nm:g}"
    cmd = [sys.executable, "-m", "jaxcba", "preprocess", str(stack), "--voxel-nm", f"{v},{v},{c}",
           "--to-voxel-nm", c, "--out", str(out), "--report", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout, time.perf_counter() - t0


def run_calibration(vol, voxel_nm: float, truth, seed: int) -> dict:
    from jaxcba.calibrate import calibrate
    from jaxcba.theory import volume_fractions

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = calibrate(vol, voxel_nm, stages=(1, 2, 3), seed=seed)
    seconds = time.perf_counter() - t0
    vf, vt = volume_fractions(res.params, voxel_nm), volume_fractions(truth, voxel_nm)
    st, sf = scales(truth), scales(res.params)
    return {
        "params": res.params.to_dict(), "converged": res.converged, "warnings": list(res.warnings),
        "python_warnings": [str(w.message)[:200] for w in caught], "seconds": seconds,
        "seconds_by_stage": dict(res.seconds_by_stage),
        "fraction_rel_err": {ph: float(getattr(vf, ph)) / float(getattr(vt, ph)) - 1 for ph in ("graphite", "cb", "solid")},
        "scale_rel_err": {k: sf[k] / st[k] - 1 for k in st},
        "table": res.table(),
    }


def roundtrip(params, params_voxel_nm: float, n: int, seed: int, voxel_nm: float, out: Path,
              calibrate: bool = True, variants=VARIANTS) -> dict:
    from jaxcba import simulate
    from jaxcba.io import read_volume, read_voxel_size, save_volume
    from jaxcba.model.resolution import convert
    from jaxcba.theory import graphite_densities, volume_fractions

    coarse = 2.0 * voxel_nm
    fine_p = convert(params, params_voxel_nm, voxel_nm, "same_law")
    truth = convert(params, params_voxel_nm, coarse, "same_law")  # the law the 20 nm calibration should find
    out.mkdir(parents=True, exist_ok=True)
    seconds, cli_reports = {}, {}

    t0 = time.perf_counter()
    fine = np.asarray(simulate(fine_p, (n,) * 3, voxel_nm, jax.random.key(seed)))
    seconds["simulate_fine"] = time.perf_counter() - t0
    stack = fine[::2]  # every other z slice: voxels (2v, v, v) in (z, y, x)
    stack_path = save_volume(out / "stack_10x10x20.tif", stack, voxel_nm=(coarse, voxel_nm, voxel_nm))
    if read_voxel_size(stack_path) != (coarse, voxel_nm, voxel_nm):
        raise RuntimeError(f"{stack_path}: voxel size not kept: {read_voxel_size(stack_path)}")

    vols = {}
    for name, extra in (("preprocessed", ()), ("slice-drop", ("--closing-radius", "0", "--keep-components"))):
        if name not in variants:
            continue
        path = out / f"{name}_20nm.tif"
        text, s = preprocess_cli(stack_path, path, voxel_nm, extra)
        seconds[f"preprocess[{name}]"] = s
        cli_reports[name] = text
        if read_voxel_size(path) != (coarse,) * 3:
            raise RuntimeError(f"{path}: expected {coarse} nm cubes, metadata says {read_voxel_size(path)}")
        vols[name] = read_volume(path)
    if "direct" in variants:
        side = int(round(n * voxel_nm / coarse))
        t0 = time.perf_counter()
        vols["direct"] = np.asarray(simulate(truth, (side,) * 3, coarse, jax.random.key(seed)))
        seconds["simulate_direct"] = time.perf_counter() - t0

    vt = volume_fractions(truth, coarse)
    theory = {"pore": 1 - float(vt.solid), "cb": float(vt.cb), "graphite": float(vt.graphite),
              "graphite_S_V": float(graphite_densities(truth, coarse).S)}
    desc = {f"fine ({voxel_nm:g} nm)": measure(fine, voxel_nm)} | {k: measure(v, coarse) for k, v in vols.items()}
    result = {"params_given": params.to_dict(), "params_voxel_nm": params_voxel_nm, "truth_coarse_law": truth.to_dict(),
              "simulated_10nm_law": fine_p.to_dict(), "n": n, "seed": seed, "voxel_nm": voxel_nm,
              "window_nm": n * voxel_nm, "theory": theory, "descriptors": desc, "cli_reports": cli_reports,
              "truth_scales_nm": scales(truth), "calibration": {}}
    if calibrate:
        for name, vol in vols.items():
            t0 = time.perf_counter()
            result["calibration"][name] = run_calibration(vol, coarse, truth, seed)
            seconds[f"calibrate[{name}]"] = time.perf_counter() - t0
    result["seconds"] = seconds
    return result


def table(res: dict) -> str:
    """Plain-text table of fractions, descriptors and recovery."""
    d, th = res["descriptors"], res["theory"]
    cols = list(d)
    w = 15
    lines = [f"window {res['window_nm'] / 1000:g} um, {res['n']}^3 at {res['voxel_nm']:g} nm, seed {res['seed']}; "
             f"truth ({2 * res['voxel_nm']:g} nm law): " + ", ".join(f"{k}={v:.4g}" for k, v in res["truth_coarse_law"].items()), "",
             f"{'image descriptor':<22}" + "".join(f"{c:>{w}}" for c in cols) + f"{'theory':>{w}}"]
    for key in ("pore", "cb", "graphite", "graphite_S_V"):
        lines.append(f"{key:<22}" + "".join(f"{d[c][key]:>{w}.5g}" for c in cols) + f"{th[key]:>{w}.5g}")
    for h in LAGS_NM:
        lines.append(f"{'cb C(' + str(h) + ' nm)':<22}" + "".join(f"{d[c]['cb_C'].get(str(h), float('nan')):>{w}.5g}" for c in cols))
    cal = res["calibration"]
    if cal:
        names = list(cal)
        lines += ["", f"{'calibrated / truth - 1':<22}" + "".join(f"{c:>{w}}" for c in names) + f"{'truth':>{w}}"]
        for ph in ("graphite", "cb", "solid"):
            lines.append(f"{'V ' + ph:<22}" + "".join(f"{cal[c]['fraction_rel_err'][ph]:>+{w}.3f}" for c in names))
        for k, a in res["truth_scales_nm"].items():
            lines.append(f"{k:<22}" + "".join(f"{cal[c]['scale_rel_err'][k]:>+{w}.3f}" for c in names)
                         + f"{a:>{w - 3}.4g} nm")
        for k in ("lambda_x", "mu", "lambda_y"):
            t = res["truth_coarse_law"][k]
            lines.append(f"{k:<22}" + "".join(f"{cal[c]['params'][k] / t - 1:>+{w}.3f}" for c in names) + f"{t:>{w}.4g}")
        lines.append(f"{'converged':<22}" + "".join(f"{str(cal[c]['converged']):>{w}}" for c in names))
        for st in ("stage1", "stage2", "stage3"):
            lines.append(f"{'seconds ' + st:<22}" + "".join(f"{cal[c]['seconds_by_stage'].get(st, 0):>{w}.1f}" for c in names))
    lines += ["", "seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in res["seconds"].items())]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="window side in fine voxels (default 400 = 4 um at 10 nm)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--voxel-nm", type=float, default=10.0, help="fine (in-plane) voxel side [nm]; slices are twice that")
    ap.add_argument("--params", default="paper", help=f"{' | '.join(PRESETS)} | a CBAParams JSON file")
    ap.add_argument("--params-voxel-nm", type=float, default=None,
                    help="voxel size [nm] at which --params define the half-axis law (paper 20, small-graphite 40, JSON 20)")
    ap.add_argument("--out", default="results/anisotropic_roundtrip")
    ap.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    args = ap.parse_args(argv)
    if args.n < 8 or args.n % 2:
        ap.error("--n must be an even number >= 8")
    variants = tuple(v for v in args.variants.split(",") if v)
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        ap.error(f"unknown variant(s) {bad}; allowed: {','.join(VARIANTS)}")
    params, pvox = load_params(args.params, args.params_voxel_nm)
    out = Path(args.out)
    res = roundtrip(params, pvox, args.n, args.seed, args.voxel_nm, out, args.calibrate, variants)
    res["params_spec"] = args.params
    for name, text in res["cli_reports"].items():
        print(f"--- jaxcba preprocess ({name}) ---\n{text.rstrip()}")
    for name, cal in res["calibration"].items():
        print(f"--- calibration of '{name}' ---\n{cal['table']}")
    text = table(res)
    print("\n" + text)
    from jaxcba.io import write_text_atomic

    write_text_atomic(out / "results.json", json.dumps(res, indent=2) + "\n")
    write_text_atomic(out / "table.txt", text + "\n")
    print(f"\nwrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
