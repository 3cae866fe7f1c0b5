"""`jaxcba describe VOL.tif|VOL.npy --voxel-nm 20 [--phase solid] [--json] [--plot out.png]`."""

from __future__ import annotations

from jaxcba.cli._common import add_force_argument, axis, int_at_least, output, print_json, voxel_nm

#: Volumes with more voxels than this show a progress bar on stderr (unless --quiet).
PROGRESS_VOXELS = 64**3

_JSON_KEYS = (
    "volume_fraction",
    "surface_density",
    "two_point",
    "cpsd",
    "r_min",
    "r_max",
    "constrictivity",
    "geodesic_tortuosity",
    "radii_bounded",
)


def add_parser(sub):
    from jaxcba.descriptors.phases import PHASES
    from jaxcba.descriptors.report import DESCRIPTORS

    p = sub.add_parser(
        "describe",
        help="morphological descriptors of a labelled volume (Sections 3.2-3.3)",
        description="Volume fraction, intrinsic volume densities, two-point coverage, CPSD, r_min, r_max, "
        "constrictivity and mean geodesic tortuosity of the phases of a labelled volume "
        "(0 pore, 1 carbon black + binder, 2 graphite).",
    )
    p.add_argument("volume", metavar="VOL.tif|VOL.npy", help="labelled (z, y, x) volume")
    p.add_argument("--voxel-nm", type=voxel_nm, required=True, help="voxel side length [nm]")
    p.add_argument(
        "--phase", action="append", choices=tuple(PHASES), help="phase to describe (repeatable; default: solid and pore)"
    )
    p.add_argument(
        "--only", action="append", choices=DESCRIPTORS, metavar="DESCRIPTOR",
        help=f"compute only these descriptors (repeatable; default all: {', '.join(DESCRIPTORS)})",
    )
    p.add_argument("--axis", type=axis, default=0, metavar="0|1|2|z|y|x",
                   help="transport axis for r_min and tortuosity (default 0 = z)")
    p.add_argument("--json", action="store_true", help="print one JSON object {phase: {descriptor: value}}")
    p.add_argument("--plot", metavar="OUT.png", help="write C(h) - V^2 and CPSD curves as PNG")
    p.add_argument("--max-lag-vox", type=int_at_least(1), default=None, help="largest lag of C(h) [voxels] (default min(shape)/2, at most 100)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_force_argument(p, "memory")
    p.set_defaults(func=run)
    return p


def report_json(report) -> dict:
    """{phase: {key: value}} with the keys of the command's JSON output."""
    return {ph.phase: {k: getattr(ph, k) for k in _JSON_KEYS} for ph in report.phases}


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x:.6g}"


def _bounded(phase, value):
    """``value``, or "not bounded" where the phase fills the window (``radii_bounded`` false)."""
    return "not bounded" if value is None and phase.radii_bounded is False else value


def print_table(report) -> None:
    names = [p.phase for p in report.phases]
    rows = [
        ("volume_fraction [1]", lambda p: p.volume_fraction),
        ("surface_density [1/nm]", lambda p: p.surface_density),
        ("M_V [1/nm^2]", lambda p: p.intrinsic and p.intrinsic["M_V"]),
        ("chi_V [1/nm^3]", lambda p: p.intrinsic and p.intrinsic["chi_V"]),
        ("r_min [nm]", lambda p: _bounded(p, p.r_min)),
        ("r_max [nm]", lambda p: _bounded(p, p.r_max)),
        ("constrictivity [1]", lambda p: _bounded(p, p.constrictivity)),
        ("geodesic_tortuosity [1]", lambda p: p.geodesic_tortuosity),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"volume {report.shape[0]}x{report.shape[1]}x{report.shape[2]} voxels of {report.voxel_nm:g} nm, axis {report.axis}")
    print(" " * width + "".join(f"  {n:>16}" for n in names))
    for label, get in rows:
        print(f"{label:<{width}}" + "".join(f"  {_fmt(get(p)):>16}" for p in report.phases))
    for note in report.notes:
        print(f"note: {note}")


def plot(report, path: str) -> None:
    from jaxcba.cli._common import save_png
    from jaxcba.plotting import figure

    fig, (a1, a2) = figure(1, 2, figsize=(10, 4))
    for p in report.phases:
        if p.two_point:
            a1.plot(p.two_point["h_nm"], p.two_point["centered"], label=p.phase)
        if p.cpsd:
            a2.plot(p.cpsd["r_nm"], p.cpsd["fraction"], label=p.phase)
    a1.set(xlabel="h [nm]", ylabel="C(h) - V$^2$", title="centered two-point coverage")
    a2.set(xlabel="r [nm]", ylabel="CPSD(r)", title="continuous pore size distribution")
    for a in (a1, a2):
        if a.lines:
            a.legend()
        a.axhline(0, color="0.7", lw=0.8)
    fig.tight_layout()
    save_png(fig, path)  # atomic: never a half-written PNG



def run(args) -> int:
    from jaxcba.descriptors.report import DESCRIPTORS, describe
    from jaxcba.io import load_volume

    if args.plot is not None:
        output("describe", args.plot, "--plot", suffixes=(".png",), what="plot")
    labels = load_volume(args.volume)
    phases = tuple(dict.fromkeys(args.phase)) if args.phase else ("solid", "pore")
    which = tuple(dict.fromkeys(args.only)) if args.only else DESCRIPTORS
    if args.max_lag_vox is not None and args.max_lag_vox > min(labels.shape) - 1:
        raise ValueError(f"--max-lag-vox {args.max_lag_vox} is out of range; allowed: 1 to {min(labels.shape) - 1} "
                         f"(below the smallest side of the volume of shape {labels.shape})")
    report = describe(labels, args.voxel_nm, phases=phases, which=which, axis=args.axis, max_lag_vox=args.max_lag_vox,
                      progress=labels.size > PROGRESS_VOXELS and not args.quiet, check_memory=not args.force)
    if args.json:
        print_json(report_json(report))
    else:
        print_table(report)
    if args.plot:
        plot(report, args.plot)
    return 0
