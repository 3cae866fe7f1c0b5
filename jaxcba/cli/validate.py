"""`jaxcba validate IMAGE --voxel-nm V --params fit.json [--n 5] [--downsample 2,4] [--seed S] --out DIR`."""

from __future__ import annotations

import sys

from jaxcba._progress import interactive
from jaxcba.cli._common import (add_force_argument, add_progress_argument, int_at_least, int_tuple, load_fit,
                                output_folder, print_json, seed, voxel_nm)
from jaxcba.io import load_volume

#: The files a validation writes into ``--out``.
OUTPUTS = ("validation.csv", "validation.json", "fig1_cubes.png", "fig5_scalars.png", "fig6_cpsd.png",
           "fig7_two_point.png")


#: ``--downsample``: comma-separated integers >= 2 (``none`` or ``''``: the image's resolution only).
factors = int_tuple("integer factors >= 2 such as 2,4 (or none)", lengths=None, lo=2, none=True)


def add_parser(sub):
    p = sub.add_parser(
        "validate",
        help="image vs realizations of its fitted model at three resolutions (Section 3.3)",
        description="Model validation on your own labelled image (0 pore, 1 carbon black + binder, 2 graphite; "
        "or 0/1 only with a two-phase fit, lambda_x = 0): N realizations of the fitted model in the image's "
        "window and voxel size; volume fraction, S_V, r_max, r_min, constrictivity, mean geodesic tortuosity, "
        "CPSD and C(h) - V^2 of solid and pore, image vs model (mean, min, max) at the image's resolution and "
        "down-sampled by slice removal. Writes validation.csv, validation.json and four PNGs into --out and "
        "prints one verdict per descriptor and a summary line.",
    )
    p.add_argument("image", metavar="IMAGE.tif|IMAGE.npy", help="labelled (z, y, x) image")
    p.add_argument("--voxel-nm", type=voxel_nm, required=True, help="voxel side length of the image [nm]")
    p.add_argument("--params", required=True, metavar="FIT.json",
                   help="fitted parameters (jaxcba calibrate --out; an uncertainty block is passed through)")
    p.add_argument("--n", type=int_at_least(2), default=5, help="number of realizations (>= 2; default 5, the paper's)")
    p.add_argument("--downsample", type=factors, default=(2, 4), metavar="F1,F2",
                   help="down-sampling factors by slice removal (default 2,4; 'none' for the image's resolution only)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the realizations (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--json", action="store_true", help="print validation.json's content instead of the table")
    add_progress_argument(p, "progress bar")
    add_force_argument(p, "window fit and memory")
    p.set_defaults(func=run)
    return p


def _fmt(x) -> str:
    return "-" if x != x else f"{x:.4g}"  # NaN -> "-"


def print_table(result) -> None:
    print(f"image {'x'.join(map(str, result.shape))} voxels of {result.voxel_nm:g} nm; {result.n} realizations "
          f"(seed {result.seed}); resolutions {', '.join(f'{result.voxel_nm * f:g} nm' for f in result.factors)}")
    head = f"{'voxel':>7}  {'descriptor':<20} {'phase':<9} {'image':>10} {'mean':>10} {'min':>10} {'max':>10} {'z':>7}  verdict"
    print(head)
    for r in result.rows:
        verdict = ("not compared (not measured)" if not r.comparable else "in range" if r.in_range
                   else "consistent" if r.consistent else "OUTSIDE")
        print(f"{r.voxel_nm:>5g}nm  {r.descriptor:<20} {r.phase:<9} {_fmt(r.image):>10} {_fmt(r.mean):>10} "
              f"{_fmt(r.min):>10} {_fmt(r.max):>10} {_fmt(r.z):>7}  {verdict}")
    for note in result.notes:
        print(f"note: {note}")
    print(result.summary)


def run(args) -> int:
    from jaxcba.validate import validate  # on use: the descriptors and transport layers

    out = output_folder("validate", args.out, OUTPUTS)
    fit = load_fit(args.params)  # a bad fit file fails before the image is read
    labels = load_volume(args.image)
    result = validate(labels, args.voxel_nm, fit, n=args.n, downsample=args.downsample, key=args.seed,
                      progress=not args.quiet and interactive(), force=args.force)
    paths = result.save(out)
    if args.json:
        print_json(result.to_dict())
    else:
        print_table(result)
        print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0
