"""`jaxcba calibrate VOL.tif|VOL.npy --voxel-nm 20 [--stages 1,2,3|joint] [--method lbfgs] [--out params.json] [--json]`."""

from __future__ import annotations

from jaxcba.cli._common import (add_force_argument, add_progress_argument, int_at_least, int_where, output, print_json,
                                seed, voxel_nm)


def add_parser(sub):
    from jaxcba.calibrate import ESTIMATORS, METHODS, SEARCHES

    p = sub.add_parser(
        "calibrate",
        help="fit the eight model parameters to a labelled volume (Section 3.2)",
        description="Calibrate the CBA model to a labelled (z, y, x) volume (0 pore, 1 carbon black + binder, "
        "2 graphite): stage 1 graphite (Eq. 17), stage 2 excursion set (Eqs. 18-21), stage 3 large pores "
        "(Eqs. 24-26). Writes the parameters in the CBAParams JSON format and prints image vs model descriptors.",
    )
    p.add_argument("volume", metavar="VOL.tif|VOL.npy", help="labelled (z, y, x) volume")
    p.add_argument("--voxel-nm", type=voxel_nm, required=True, help="voxel side length [nm]")
    p.add_argument("--stages", default="1,2,3", help="comma-separated subset of 1,2,3 (default all; the others "
                   "keep --initial's values), or 'joint': stages 1-3, then all eight parameters at once through "
                   "soft realizations")
    p.add_argument("--method", default="lbfgs", choices=METHODS, help="optimiser of stages 1-2 and of stage 3's re-fits (default lbfgs)")
    p.add_argument("--joint-method", default="adam", choices=("adam", "lbfgs"), help="optimiser of the joint mode")
    p.add_argument("--joint-steps", type=int_at_least(1), default=40, help="joint mode: optimiser step budget (default 40)")
    p.add_argument("--joint-window", type=int_at_least(1), default=None, help="joint mode: soft window side [soft voxels] "
                   "(default 48, capped to the image's sides; a larger value given is refused)")
    p.add_argument("--joint-noise", type=int_at_least(1), default=2, help="joint mode: fixed noise draws (default 2)")
    p.add_argument("--joint-voxel-nm", type=voxel_nm, default=None,
                   help="joint mode: voxel of the soft realizations, a multiple of --voxel-nm (default ~80 nm)")
    p.add_argument("--starts", type=int_at_least(1), default=4, help="stage 1 starts (default 4)")
    p.add_argument("--stage1-descriptor", default="auto", choices=("auto", "eq17", "contact"),
                   help="stage 1 targets: eq17 (the paper's V, S, K, N), contact (V and the graphite contact "
                        "distribution, for coarse voxels), auto (contact above 25 nm; default)")
    p.add_argument("--estimator", default="masked", choices=ESTIMATORS, help="stage 2 estimator (default masked)")
    p.add_argument("--cutout", default=None, metavar="z0:z1,y0:y1,x0:x1|auto",
                   help="stage 2 cutout box (voxel indices; implies --estimator cutout)")
    p.add_argument("--theta-search", default="golden", choices=SEARCHES, help="stage 3 search (default golden)")
    p.add_argument("--no-stage3-profile", action="store_true",
                   help="keep stage 2's (mu, eta) in stage 3 instead of re-fitting them at each trial theta")
    p.add_argument("--realizations", type=int_at_least(1), default=3, help="stage 3 realizations per theta (default 3)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the stage 3 realizations")
    p.add_argument("--initial", default="paper", metavar="paper|FILE.json",
                   help="parameters of the stages not run (default: Table 2)")
    p.add_argument("--out", metavar="params.json", help="write the calibrated parameters (CBAParams JSON)")
    p.add_argument("--report", metavar="report.json", help="write the full calibration report (all stages)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")
    p.add_argument("--bootstrap", type=int_where(lambda b: b == 0 or b >= 2, "0 (off) or a number of twins >= 2", "twins"),
                   default=0, metavar="B",
                   help="also the parametric bootstrap's intervals: B >= 2 twins simulated from the fitted parameters "
                        "in the image's window and voxel size, recalibrated (slow: B calibrations; resumable)")
    p.add_argument("--bootstrap-dir", metavar="DIR", default=None,
                   help="folder of the bootstrap twins' rows (default: OUT.bootstrap beside --out, else "
                        "./calibrate.bootstrap); a rerun skips the finished twins")
    add_progress_argument(p, "progress bars")
    add_force_argument(p, "memory or work of stage 3's realizations and the joint mode")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    import json

    from jaxcba import calibrate as cal
    from jaxcba.cli._common import load_params
    from jaxcba.io import load_volume, write_text_atomic

    stages = cal.parse_stages(args.stages)  # bad --stages fails before reading the volume
    for opt, path in (("--out", args.out), ("--report", args.report)):
        if path:
            output("calibrate", path, opt, suffixes=(".json",))
    joint = None
    if stages == "joint":
        joint = cal.Joint.from_options(args.joint_method, max_steps=args.joint_steps, n_noise=args.joint_noise,
                                       soft_voxel_nm=args.joint_voxel_nm,
                                       **({} if args.joint_window is None else {"window": args.joint_window}))
    initial = load_params(args.initial)
    vol = load_volume(args.volume)
    _check_cost(args, stages, joint, vol.shape)
    if args.cutout is not None or args.estimator == "cutout":
        stage2 = cal.Cutout(box=None if args.cutout in (None, "auto") else args.cutout)
    else:
        stage2 = cal.Masked()
    stage3 = cal.Pores(search=args.theta_search, realizations=cal.Realizations(n=args.realizations, seed=args.seed),
                       profile=not args.no_stage3_profile)
    stage1 = cal.stage1_strategy(args.stage1_descriptor, args.voxel_nm, min(vol.shape), starts=args.starts)
    uncertainty = True
    if args.bootstrap:
        folder = args.bootstrap_dir or ((args.out + ".bootstrap") if args.out else "calibrate.bootstrap")
        uncertainty = cal.Bootstrap(args.bootstrap, folder=folder)
    res = cal.calibrate(vol, args.voxel_nm, stages, args.method, initial=initial, stage1=stage1, stage2=stage2,
                        stage3=stage3, joint=joint, progress=not args.quiet, uncertainty=uncertainty)
    if args.out:
        res.write_params(args.out)  # the eight values and the uncertainty block beside them
    report = res.to_dict()
    if args.report:
        write_text_atomic(args.report, json.dumps(report, indent=2, allow_nan=False) + "\n")  # strict JSON
    if args.json:
        print_json(report)
    else:
        print(res.table())
    return 0 if res.converged else 1


def _check_cost(args, stages, joint, shape) -> None:
    """Refuse, before any work, what cannot fit or would not end: stage 3's realizations and the
    joint mode's soft windows (estimates in :mod:`jaxcba._checks`; ``--force`` overrides), and a
    ``--joint-window`` larger than the image at the soft voxel (it would be capped silently)."""
    from jaxcba._checks import check_joint_cost, check_stage3_cost
    from jaxcba.calibrate._joint import _grid

    if stages == "joint" or 3 in stages:
        check_stage3_cost(shape, args.realizations, force=args.force)
    if joint is not None:
        factor, win, _ = _grid(shape, args.voxel_nm, joint)
        sides = tuple(-(-n // factor) for n in shape)
        if args.joint_window is not None and args.joint_window > min(sides):
            raise ValueError(f"--joint-window {args.joint_window} is larger than the image at the soft voxel of "
                             f"{args.voxel_nm * factor:g} nm ({'x'.join(map(str, sides))} voxels); allowed: 1 .. "
                             f"{min(sides)}")
        check_joint_cost(win, joint.n_noise, force=args.force)
