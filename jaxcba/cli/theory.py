"""`jaxcba theory`: closed-form numbers of the model for a parameter set (paper Eqs. 10-25)."""

from __future__ import annotations

import numpy as np

from jaxcba.cli._common import add_params_argument, load_params, print_json, voxel_nm

#: Distances [nm] at which C(h) of the excursion set is printed.
H_NM = (0.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0)


def add_parser(sub):
    p = sub.add_parser(
        "theory",
        help="closed-form densities, volume fractions and C(h) of the model",
        description="Miles' densities of the graphite Boolean model (Eqs. 10-16), the volume fractions "
        "(Eqs. 18, 22, 24) and the two-point coverage of the excursion set (Eq. 21 with 1/(2 pi) restored).",
    )
    add_params_argument(p)
    p.add_argument("--voxel-nm", type=voxel_nm, default=20.0,
                   help="voxel side [nm] of the gamma half-axis convention (default 20, as calibrated)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=run)
    return p


def compute(params, voxel_nm: float) -> dict:
    """The numbers `jaxcba theory` prints, as a JSON-ready dict (``ValueError`` if one is not finite)."""
    from jaxcba import theory
    from jaxcba._checks import check_finite_result

    h = np.asarray(H_NM)
    out = {
        "params": params.to_dict(),
        "voxel_nm": voxel_nm,
        "graphite": theory.graphite_densities(params, voxel_nm).to_dict(),
        "volume_fractions": theory.volume_fractions(params, voxel_nm).to_dict(),
        "two_point": {
            "h_nm": h.tolist(),
            "C": np.asarray(theory.two_point_coverage(h, params.mu, params.eta)).tolist(),
        },
    }
    for key in ("graphite", "volume_fractions"):
        check_finite_result(list(out[key].values()), f"the {key.replace('_', ' ')} at {voxel_nm:g} nm voxels")
    check_finite_result(out["two_point"]["C"], "the two-point coverage")
    return out


def run(args) -> int:
    params = load_params(args.params)
    out = compute(params, args.voxel_nm)
    if args.json:
        print_json(out)
        return 0
    g, f, t = out["graphite"], out["volume_fractions"], out["two_point"]
    print(f"jaxcba theory: parameters {args.params!r}, half-axis convention at {args.voxel_nm:g} nm voxels")
    print()
    print("graphite Boolean model Xi1 (Miles, Eqs. 10-13)")
    for key, name, unit in (("V", "V_1 volume fraction", "1"), ("S", "S_1 surface density", "nm^-1"),
                            ("K", "K_1 mean curvature density", "nm^-2"), ("N", "N_1 Euler char. density", "nm^-3")):
        print(f"  {name:<30} {g[key]:>12.5g}  [{unit}]")
    print()
    print("volume fractions (Eqs. 18, 22, 24)")
    for key, name in (("graphite", "graphite (V1)"), ("cb", "carbon black + binder"),
                      ("pores_removed", "pore balls (V3)"), ("excursion", "excursion set (V2)"),
                      ("solid", "solid (Eq. 22)")):
        print(f"  {name:<30} {f[key]:>12.5f}")
    print()
    print("two-point coverage of Xi2 (Eq. 21, 1/(2 pi) restored)")
    print("  " + "  ".join(f"{h:>8.0f}" for h in t["h_nm"]) + "   h [nm]")
    print("  " + "  ".join(f"{c:>8.5f}" for c in t["C"]) + "   C(h)")
    return 0
