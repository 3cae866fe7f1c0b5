"""`jaxcba describe VOL.tif|VOL.npy --voxel-nm 20 [--phase solid] [--json] [--plot out.png]`.

``--devices N`` (``N > 1``) splits the volume into ``N`` z-slabs over the first ``N`` devices
for the descriptors :mod:`jaxcba.sharded` computes (:data:`SHARDED`: volume fraction and
intrinsic volumes from exact counts, the two-point coverage by a distributed FFT, the CPSD and
r_max by a distributed EDT and an opening with a halo of the largest ball); the others
(:data:`GATHERED`: r_min, constrictivity and geodesic tortuosity, which rest on path searches
not distributed yet) run on the whole volume on one device, as without ``--devices``, and a
note on stderr names them once.
"""

from __future__ import annotations

from jaxcba.cli import _devices
from jaxcba.cli._common import (add_force_argument, add_progress_argument, axis, int_at_least, output, print_json,
                                voxel_nm)

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

#: Descriptor groups (``--only``) with a sharded implementation (:mod:`jaxcba.sharded`); with
#: "constrictivity", its r_max comes from the sharded CPSD too.
SHARDED = ("volume_fraction", "intrinsic", "two_point", "cpsd")
#: Descriptor groups that run on the gathered volume on one device with ``--devices N``
#: ("constrictivity": r_min by intrusion and beta; "geodesic_tortuosity").
GATHERED = ("constrictivity", "geodesic_tortuosity")


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
    add_progress_argument(p, "progress bar")
    add_force_argument(p, "memory")
    _devices.add_device_arguments(p)
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
    _devices.initialize("describe", args)
    halo = 2 if "intrinsic" in which else 1  # a 2x2x2 cell spans two z-planes
    mesh = _devices.device_mesh(args.devices, labels.shape[0], halo, f"the volume {'x'.join(map(str, labels.shape))}")
    options = {"axis": args.axis, "max_lag_vox": args.max_lag_vox,
               "progress": labels.size > PROGRESS_VOXELS and not args.quiet, "check_memory": not args.force}
    if mesh is None:
        report = describe(labels, args.voxel_nm, phases=phases, which=which, **options)
    else:
        report = describe_sharded(labels, args.voxel_nm, phases, which, mesh, **options)
    with _devices.main_process_output():
        _output(args, report)
    return 0


def _check_phases_present(labels, phases) -> None:
    """``ValueError`` for an empty phase (the check of :func:`jaxcba.descriptors.describe`)."""
    import numpy as np

    from jaxcba.descriptors.phases import check_phase

    if not phases:
        raise ValueError("phases must name at least one of solid, pore, graphite, cb")
    lo, hi = int(labels.min()), int(labels.max())
    present = {"pore": lo == 0, "solid": hi > 0, "graphite": hi == 2}
    for p in phases:
        check_phase(p)
        if not (present[p] if p in present else bool(np.any(labels == 1))):
            raise ValueError(f"phase {p!r} is empty (no voxel of it in the volume)")


#: The keyword options of :func:`jaxcba.descriptors.describe` that :func:`describe_sharded` takes.
DESCRIBE_OPTIONS = {"axis": 0, "max_lag_vox": None, "progress": False, "check_memory": True}


def describe_sharded(labels, voxel_nm, phases, which, mesh, **options):
    """:func:`jaxcba.descriptors.describe` with the :data:`SHARDED` descriptors computed on
    z-slabs over ``mesh`` (:mod:`jaxcba.sharded`) and the :data:`GATHERED` ones on the whole
    volume on one device (a note on stderr names them). Same :class:`Report`.

    ``options``: describe's keyword options (:data:`DESCRIBE_OPTIONS`: ``axis``, ``max_lag_vox``,
    ``progress``, ``check_memory``); another name is a ``TypeError``.
    The CPSD and r_max [nm] (with "cpsd" or "constrictivity") come from :func:`jaxcba.sharded.cpsd`
    on the single-device radius grid (:func:`jaxcba.sharded.default_radii_vox`, 0.5 voxel). Its
    opening needs slabs at least as thick as the window of the largest ball [planes], known once
    the largest distance of each phase is found (a distributed EDT per phase): ``ValueError``
    then, before any opening and before the gathered descriptors. A phase that fills the window
    (no wall: the grid reaches ``max(shape) - 1``) has its CPSD computed on the gathered mask.
    """
    import dataclasses

    from jaxcba import sharded
    from jaxcba.io import check_labels

    unknown = sorted(set(options) - set(DESCRIBE_OPTIONS))
    if unknown:
        raise TypeError(f"describe_sharded() got unexpected keyword argument(s) {unknown}")
    options = DESCRIBE_OPTIONS | options
    labels = check_labels(labels, name="labels")
    if min(labels.shape) < 2:
        raise ValueError(f"every axis needs at least 2 voxels, got shape {labels.shape}")
    _check_phases_present(labels, phases)
    lab = sharded.shard_volume(labels, mesh)
    lo, hi = int(labels.min()), int(labels.max())
    fills = {"pore": hi == 0, "solid": lo > 0, "graphite": lo == 2, "cb": lo == hi == 1}
    opening = bool({"cpsd", "constrictivity"} & set(which))
    radii = _opening_radii(lab, labels.shape, phases, fills, mesh) if opening else {}
    base = _gathered(labels, voxel_nm, phases, which, fills, options)
    if not set(which) & set(SHARDED) and not opening:
        return base
    out = []
    for ph in base.phases:
        fields = _sharded_fields(lab, labels, ph.phase, voxel_nm, which, mesh, radii, options["max_lag_vox"])
        out.append(dataclasses.replace(ph, **fields))
    return dataclasses.replace(base, phases=tuple(out), notes=tuple(_notes(base.notes, phases, which, fills)))


def _opening_radii(lab, shape, phases, fills, mesh) -> dict:
    """``{phase: radius grid [voxels]}`` of the sharded opening of each phase that does not fill
    the window; ``ValueError`` when the slabs are thinner than the window of its largest ball."""
    from jaxcba import sharded
    from jaxcba.descriptors.phases import phase_mask
    from jaxcba.sharded._descriptors import _ball_halo
    from jaxcba.sharded._mesh import check_split, mesh_of, size_of

    radii = {}
    text = "x".join(map(str, shape))
    for p in phases:
        if not fills[p]:
            r = sharded.default_radii_vox(phase_mask(lab, p), mesh=mesh)
            check_split(shape[0], size_of(mesh_of(lab)), _ball_halo(tuple(float(x) for x in r)),
                        f"the volume {text} for the CPSD of {p} (largest ball r = {r[-1]:g} voxels; the halo "
                        "is its window)")
            radii[p] = r
    return radii


def _gathered(labels, voxel_nm, phases, which, fills, options):
    """The :data:`GATHERED` descriptors by :func:`jaxcba.descriptors.describe` on the whole volume
    (an empty :class:`Report` when there are none); the note on stderr naming them."""
    import sys

    from jaxcba.descriptors.report import PhaseReport, Report, describe

    gathered = tuple(w for w in which if w in GATHERED)
    named = [{"constrictivity": "r_min, constrictivity"}.get(w, w) for w in gathered]
    named += [f"cpsd of {p} (it fills the window)" for p in phases if fills[p] and "cpsd" in which]
    if named:
        print(f"jaxcba describe: note: no sharded implementation yet for {', '.join(named)}: gathered to one "
              "device and computed on the whole volume (the other descriptors on the z-slabs)", file=sys.stderr)
    if gathered:
        return describe(labels, voxel_nm, phases=phases, which=gathered, **options)
    return Report(voxel_nm=float(voxel_nm), shape=tuple(int(s) for s in labels.shape), axis=options["axis"],
                  phases=tuple(PhaseReport(phase=p) for p in phases))


def _notes(notes, phases, which, fills) -> list[str]:
    """The gathered report's ``notes`` with those of describe's CPSD, in describe's order, when
    the CPSD ran sharded only."""
    notes = list(notes)
    if {"cpsd", "constrictivity"} & set(which) and "constrictivity" not in which:
        cpsd_notes = ["r_min by intrusion through the face index 0 of the axis; radii grid 0.5 voxel"]
        cpsd_notes += [f"{p} fills the window: no wall bounds its balls, so r_min, r_max and constrictivity "
                       "are not bounded within the window (null, radii_bounded false)" for p in phases if fills[p]]
        at = 1 if "geodesic_tortuosity" in which else 0
        notes[at:at] = cpsd_notes
    return notes


def _sharded_fields(lab, labels, phase, voxel_nm, which, mesh, radii, max_lag_vox) -> dict:
    """The :data:`SHARDED` fields of one phase's :class:`PhaseReport` from the z-sharded labels ``lab``
    (a phase that fills the window: its CPSD on the gathered ``labels``)."""
    import dataclasses

    import numpy as np

    from jaxcba import sharded
    from jaxcba.descriptors import pore_size
    from jaxcba.descriptors.phases import phase_mask
    from jaxcba.descriptors.report import _f, _list

    mask = phase_mask(lab, phase)
    fields = {}
    if "intrinsic" in which:
        d = sharded.intrinsic_densities(mask, voxel_nm, mesh=mesh)
        fields["intrinsic"] = {k: float(np.asarray(v)) for k, v in dataclasses.asdict(d).items()}
        fields["surface_density"] = fields["intrinsic"]["S_V"]
    if "volume_fraction" in which:
        # the exact count / the voxels (one device: a float32 mean, within a float32 ulp of it)
        fields["volume_fraction"] = float(sharded.volume_fraction(mask, mesh=mesh))
    if "two_point" in which:
        tp = sharded.two_point_coverage(mask, voxel_nm, max_lag_vox, mesh=mesh)
        fields["two_point"] = {k: np.asarray(getattr(tp, k), dtype=np.float64).tolist()
                               for k in ("h_nm", "C", "centered", "C_axes")}
    if {"cpsd", "constrictivity"} & set(which):
        bounded = phase in radii
        if bounded:
            c = sharded.cpsd(mask, voxel_nm, radii_vox=radii[phase], mesh=mesh)
        elif "cpsd" in which:  # a full phase: its grid outgrows the slabs
            c = pore_size.cpsd(np.asarray(phase_mask(labels, phase)), voxel_nm)
        fields["radii_bounded"] = bounded
        fields["r_max"] = _f(c.r_max_nm) if bounded else None
        if "cpsd" in which:
            fields["cpsd"] = {"r_nm": _list(c.r_nm), "fraction": _list(c.fraction)}
    return fields


def _output(args, report) -> None:
    if args.json:
        print_json(report_json(report))
    else:
        print_table(report)
    if args.plot:
        plot(report, args.plot)
