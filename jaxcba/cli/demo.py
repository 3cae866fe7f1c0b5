"""`jaxcba demo`: the paper's model end to end - simulate, describe, M-factors, table, PNG panel."""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from jaxcba.cli._common import add_params_argument, int_at_least, load_params, output_folder, seed, voxel_nm

#: The paper's numbers to compare with: image fractions (Sec. 2.3.3, Table 1) and the model's
#: M-factors at 10.57 % graphite (Sec. 4.3).
PAPER = {"solid fraction": 1 - 0.6686, "graphite fraction": 0.1055, "cb fraction": 0.2259,
         "M pore (sigma = 1)": 0.2429, "M solid (graphite 1, cb 0.01)": 0.0357}
SIZES = {"quick": (96, 80.0), "default": (160, 40.0), "paper": (800, 20.0)}


def add_parser(sub):
    p = sub.add_parser(
        "demo",
        help="simulate the paper's model, describe it, compute M-factors, write a PNG panel",
        description="One realization of the model (default: the paper's Table 2), its descriptors, the M-factor "
        "of pore (sigma 1) and solid (graphite 1, cb 0.01), a table against the theory and the paper, and a PNG "
        "panel (phase slice, C(h) - V^2, CPSD). --quick: 96^3 voxels of 80 nm (about a minute on 2 CPU cores); "
        "default 160^3 of 40 nm; --paper-size: 800^3 of 20 nm as in the paper (needs a large machine).",
    )
    add_params_argument(p)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="96^3 voxels at 80 nm")
    size.add_argument("--paper-size", action="store_true", help="800^3 voxels at 20 nm (the paper's window)")
    p.add_argument("--shape", type=int_at_least(16), default=None, help="cube side [voxels], >= 16 (overrides the preset)")
    p.add_argument("--voxel-nm", type=voxel_nm, default=None, help="voxel side [nm] (overrides the preset)")
    p.add_argument("--seed", type=seed, default=0, help="PRNG seed (default 0)")
    p.add_argument("--out", default="jaxcba-demo", help="output folder (demo.png, report.json, volume.tif)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.set_defaults(func=run)
    return p


def _step(msg: str, quiet: bool):
    if not quiet:
        print(f"  {msg} ...", flush=True)
    return time.perf_counter()


def run(args) -> int:
    from jaxcba.io import save_volume, strict_json, write_text_atomic

    params = load_params(args.params)
    preset = "quick" if args.quick else "paper" if args.paper_size else "default"
    n, voxel_nm = SIZES[preset]
    n = n if args.shape is None else args.shape
    voxel_nm = voxel_nm if args.voxel_nm is None else args.voxel_nm
    out = output_folder("demo", args.out, ("volume.tif", "report.json", "demo.png"))
    quiet = args.json
    if not quiet:
        print(f"jaxcba demo: {n}^3 voxels of {voxel_nm:g} nm ({n * voxel_nm / 1000:.1f} µm cube), "
              f"parameters {args.params!r}, seed {args.seed}")
    labels, report, m_pore, m_solid, timings = _measure(params, n, voxel_nm, args.seed, quiet)
    rows = _rows(params, voxel_nm, labels, report, m_pore, m_solid)
    result = {
        "shape": [n, n, n], "voxel_nm": voxel_nm, "seed": args.seed, "params": params.to_dict(),
        "rows": [{"quantity": q, "realization": v, "theory": t_, "paper": PAPER.get(q)} for q, v, t_ in rows],
        "converged": {"pore": bool(m_pore.converged), "solid": bool(m_solid.converged)},
        "seconds": timings, "descriptors": report.to_dict(),
    }
    result = strict_json(result)  # strict JSON: a non-finite number is null, its flag beside it
    out.mkdir(parents=True, exist_ok=True)
    save_volume(out / "volume.tif", labels, voxel_nm=voxel_nm)
    write_text_atomic(out / "report.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    _panel(labels, voxel_nm, report, out / "demo.png", f"{n}³ × {voxel_nm:g} nm, seed {args.seed}")
    status = 0 if all(result["converged"].values()) else 1
    if status:
        print("jaxcba demo: warning: an M-factor solve did not converge (converged: "
              f"{result['converged']}; exit status 1)", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        _print_table(rows, timings, out)
    return status


def _measure(params, n: int, voxel_nm: float, seed: int, quiet: bool):
    """One ``n^3`` realization [voxels of ``voxel_nm`` nm], its descriptors and the two M-factor
    solves: ``(labels, report, m_pore, m_solid, seconds by step)``."""
    from jaxcba import simulate
    from jaxcba.descriptors import describe
    from jaxcba.transport import m_factor

    timings = {}
    t = _step("simulating", quiet)
    labels = np.asarray(simulate(params, (n, n, n), voxel_nm, seed))
    timings["simulate"] = time.perf_counter() - t
    t = _step("describing solid and pore", quiet)
    report = describe(labels, voxel_nm, phases=("solid", "pore"), progress=not quiet and labels.size > 64**3)
    timings["describe"] = time.perf_counter() - t
    t = _step("M-factor of the pore space", quiet)
    m_pore = m_factor(labels, "pore", axis="z")
    t2 = _step("M-factor of the solid (graphite 1, cb 0.01)", quiet)
    timings["m_pore"] = t2 - t
    m_solid = m_factor(labels, "solid", {2: 1.0, 1: 0.01}, axis="z")
    timings["m_solid"] = time.perf_counter() - t2
    return labels, report, m_pore, m_solid, timings


def _rows(params, voxel_nm, labels, report, m_pore, m_solid) -> list[tuple]:
    """The table: ``(quantity, realization, theory or None)``."""
    from jaxcba import theory
    from jaxcba.transport.paper import paper_m_factor

    th = theory.volume_fractions(params, voxel_nm)
    return [
        ("solid fraction", float(np.mean(labels > 0)), float(th.solid)),
        ("graphite fraction", float(np.mean(labels == 2)), float(th.graphite)),
        ("cb fraction", float(np.mean(labels == 1)), float(th.cb)),
        ("S_V solid [1/µm]", report["solid"].surface_density * 1000, None),
        ("r_max pore [nm]", report["pore"].r_max, None),
        ("r_max solid [nm]", report["solid"].r_max, None),
        ("constrictivity pore", report["pore"].constrictivity, None),
        ("constrictivity solid", report["solid"].constrictivity, None),
        ("geodesic tortuosity pore", report["pore"].geodesic_tortuosity, None),
        ("geodesic tortuosity solid", report["solid"].geodesic_tortuosity, None),
        ("M pore (sigma = 1)", float(m_pore.m_factor), None),
        ("M solid (graphite 1, cb 0.01)", float(paper_m_factor(m_solid, labels, "solid", {2: 1.0, 1: 0.01})), None),
        ("sigma_eff / sigma_graphite solid", float(m_solid.m_factor), None),
        ("tau_eff pore", float(m_pore.tau_eff), None),
        ("tau_eff solid", float(m_solid.tau_eff), None),
    ]


def _print_table(rows, timings: dict, out) -> None:
    print()
    print(f"{'quantity':<32} {'realization':>12} {'theory':>10} {'paper':>10}")
    for q, v, t_ in rows:
        print(f"{q:<32} {_fmt(v):>12} {_fmt(t_)} {_fmt(PAPER.get(q))}")
    print()
    print("paper: fractions of the FIB-SEM image (Sec. 2.3.3); M of model realizations at 10.57 % graphite (Sec. 4.3).")
    print("M solid in the paper's (TauFactor's) convention eps * sigma_eff / mean(sigma); see docs/transport.md.")
    print("Small windows scatter: graphite platelets are ~4 µm wide (--paper-size for the paper's 16 µm window).")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"wrote {out / 'demo.png'}, {out / 'report.json'}, {out / 'volume.tif'}")


def _fmt(x) -> str:
    """A number to 4 significant digits, None as a dash, text (e.g. "not percolating") as is."""
    if x is None:
        return f"{'—':>10}"
    return f"{x:>10.4g}" if isinstance(x, (int, float)) else f"{x!s:>10}"


def _panel(labels, voxel_nm, report, path, title):
    from jaxcba.plotting import figure, save_png, show_phases

    fig, ax = figure(1, 3, figsize=(15, 4.6))
    show_phases(ax[0], labels[labels.shape[0] // 2], voxel_nm, f"slice z = {labels.shape[0] // 2} ({title})")
    solid = report["solid"]
    if solid.two_point:  # for two phases C_pore(h) - (1-V)^2 = C_solid(h) - V^2: one curve
        ax[1].plot(solid.two_point["h_nm"], solid.two_point["centered"], color="tab:blue", label="solid (= pore)")
    for phase, colour in (("solid", "tab:blue"), ("pore", "tab:red")):
        pr = report[phase]
        if pr.cpsd:
            ax[2].plot(pr.cpsd["r_nm"], pr.cpsd["fraction"], color=colour, label=phase)
    ax[1].axhline(0, color="0.7", lw=0.8)
    ax[1].set(xlabel="h [nm]", ylabel="C(h) − V²", title="centred two-point coverage (Fig. 7)")
    ax[2].axhline(0.5, color="0.7", lw=0.8, ls="--")
    ax[2].set(xlabel="r [nm]", ylabel="CPSD(r)", title="continuous pore size distribution (Fig. 6)", ylim=(0, 1.02))
    ax[1].legend()
    ax[2].legend()
    fig.tight_layout()
    save_png(fig, path)
