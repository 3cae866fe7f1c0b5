"""`jaxcba preprocess`: segmented FIB-SEM volume -> cubic-voxel labels ready for calibration (Section 2.3)."""

from __future__ import annotations

import argparse

from jaxcba.cli._common import add_force_argument, float_in, int_at_least, int_tuple, output, print_json, voxel_nm


def _triple(text: str) -> tuple[float, float, float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected X,Y,Z in nm, e.g. 10,10,20") from None
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or not all(v == v and 0 < v < float("inf") for v in vals):
        raise argparse.ArgumentTypeError(f"{text!r}: expected one or three positive numbers X,Y,Z [nm]")
    return tuple(vals)


#: ``--raw-shape``: the shape of a ``.raw`` input.
_raw_shape = int_tuple("three positive integers Z,Y,X", lo=1)


def add_parser(sub):
    p = sub.add_parser(
        "preprocess",
        help="clean, segment graphite, resample a segmented volume (paper Sec. 2.3)",
        description="Read a segmented volume (TIFF stack, folder of TIFF slices, .npy, .npz, .raw), map its values "
        "to labels 0 pore / 1 cb / 2 graphite, close the additive phase, remove detached components, optionally "
        "detect graphite from a grey-value volume (85 %% quantile), resample to cubic voxels, down-sample, write.",
    )
    p.add_argument("volume", help="input volume file or folder of .tif slices")
    p.add_argument("--voxel-nm", type=_triple, required=True, metavar="X,Y,Z",
                   help="input voxel size [nm] as X,Y,Z (slice thickness last, e.g. 10,10,20), or one number")
    p.add_argument("--to-voxel-nm", type=voxel_nm, default=None,
                   help="cubic output voxel side [nm] (required when --voxel-nm is not cubic)")
    p.add_argument("--labels", default=None, metavar="RAW=LABEL,...", help="value mapping, e.g. 0=0,128=1,255=2")
    p.add_argument("--grey", default=None, metavar="FILE", help="grey-value/probability volume for graphite detection")
    p.add_argument("--quantile", type=float_in(0.0, 1.0), default=None,
                   help="graphite threshold quantile of --grey (default 0.85; only with --grey)")
    p.add_argument("--crop", default=None, metavar="Z0:Z1,Y0:Y1,X0:X1", help="crop box in input voxels")
    p.add_argument("--closing-radius", type=int_at_least(0), default=1,
                   help="closing cube half-size in voxels (0: off; default 1; at most 64)")
    p.add_argument("--min-component", type=int_at_least(1), default=None,
                   help="remove additive components below this many voxels (default: all but the largest)")
    p.add_argument("--keep-components", action="store_true", help="do not remove detached components")
    p.add_argument("--downsample", type=int, default=1, choices=(1, 2, 4), help="final slice-removal factor")
    p.add_argument("--raw-shape", type=_raw_shape, default=None, metavar="Z,Y,X", help="shape of a .raw input")
    p.add_argument("--raw-dtype", default=None, help="element type of a .raw input, e.g. uint8")
    p.add_argument("--out", required=True, help="output .tif or .npy (written only if every step succeeds)")
    p.add_argument("--report", action="store_true", help="print what each step changed")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_force_argument(p, "memory of the closing or resampling")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    import numpy as np

    from jaxcba._checks import check_voxel_nm
    from jaxcba.io import WRITE_SUFFIXES, parse_mapping, read_volume, save_volume
    from jaxcba.preprocess import Cleanup, GraphiteFromGrey, preprocess

    if args.quantile is not None and args.grey is None:
        raise ValueError("--quantile needs --grey (the grey-value volume it thresholds)")
    if args.min_component is not None and args.keep_components:
        raise ValueError("--min-component and --keep-components contradict each other; give one")
    if (args.raw_shape is None) != (args.raw_dtype is None) or (args.raw_shape is not None
                                                                and not str(args.volume).lower().endswith(".raw")):
        raise ValueError("--raw-shape and --raw-dtype go together, and only with a .raw input")
    if args.raw_dtype is not None:
        try:
            np.dtype(args.raw_dtype)
        except TypeError:
            raise ValueError(f"--raw-dtype {args.raw_dtype!r} is not a NumPy dtype (e.g. uint8, uint16)") from None
    x, y, z = (check_voxel_nm(v, "--voxel-nm") for v in args.voxel_nm)
    if args.to_voxel_nm is None and not x == y == z:
        raise ValueError(f"--voxel-nm {x:g},{y:g},{z:g} is not cubic; give --to-voxel-nm (the cubic output voxel side)")
    output("preprocess", args.out, suffixes=WRITE_SUFFIXES, what="volume")  # a bad --out refused before any work
    cleanup = Cleanup(args.closing_radius, not args.keep_components, args.min_component)
    mapping = None if args.labels is None else parse_mapping(args.labels)
    labels = read_volume(args.volume, mapping=mapping, shape=args.raw_shape, dtype=args.raw_dtype)
    graphite = None
    if args.grey is not None:
        graphite = GraphiteFromGrey(read_volume(args.grey, labels=False),
                                    quantile=0.85 if args.quantile is None else args.quantile)
    out, report = preprocess(labels, (z, y, x), to_voxel_nm=args.to_voxel_nm, box=args.crop, cleanup=cleanup,
                             graphite=graphite, downsample=args.downsample, check_memory=not args.force)
    if out.size == 0:
        raise ValueError(f"the preprocessed volume is empty (shape {out.shape}); check --crop and --to-voxel-nm")
    if min(out.shape) < 2:  # describe, tortuosity's descriptors and calibrate refuse such a volume
        raise ValueError(f"the preprocessed volume has shape {out.shape} (z, y, x): every axis needs at least 2 "
                         "voxels; check the input, --crop, --to-voxel-nm and --downsample")
    save_volume(args.out, out, voxel_nm=report.voxel_nm)
    if args.json:
        print_json({"out": str(args.out), "shape": list(out.shape), **report.to_dict()})
    else:
        if args.report:
            print(report.table())
        print(f"wrote {args.out}: shape {out.shape} (z, y, x), voxel {report.voxel_nm[0]:g} nm; fractions "
              f"pore {(out == 0).mean():.4f}, cb {(out == 1).mean():.4f}, graphite {(out == 2).mean():.4f}")
    return 0
