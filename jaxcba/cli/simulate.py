"""``jaxcba simulate``: one labelled realization of the CBA model, written atomically.

    jaxcba simulate [--params paper|FILE.json] --shape 200 [--voxel-nm 40] [--seed 0]
                    --out vol.tif|vol.npy [--json] [--quiet]
                    [--devices N [--shard z]] [--distributed]

Prints the realized phase fractions beside the theoretical ones (``jaxcba.theory`` at
the same voxel size); ``--json`` prints one JSON object instead. Everything is checked
before any allocation, and the output file appears only once completely written (an existing one is overwritten, with a
note on stderr). Windows that do not fit in memory or need more than
``jaxcba.model.realization.MAX_GRAINS`` grains are refused up front (``--force`` tries anyway).
``--devices N`` makes the window as ``N`` z-slabs on the first ``N`` devices
(:func:`jaxcba.sharded.simulate`: the same labels, bit for bit; the memory of one device is
not estimated then) and gathers it to the host to write it (:mod:`jaxcba.cli._devices`).
"""

from __future__ import annotations

import sys
import time

from jaxcba.cli import _devices
from jaxcba.cli._common import (add_force_argument, add_params_argument, add_progress_argument, int_tuple, load_params,
                                output, print_json, seed, voxel_nm)


#: ``--shape``: one side N or three sides NZ,NY,NX (``x`` also separates); the range is check_window's.
_shape = int_tuple("one side N or three sides NZ,NY,NX (integers)", broadcast=True, lo=None, separators="x")


def add_parser(sub):
    p = sub.add_parser(
        "simulate",
        help="simulate a labelled volume (0 pore, 1 carbon black + binder, 2 graphite)",
        description="Simulate one realization of Xi = Xi1 ∪ (Xi2 ∩ Xi3^c) (paper Section 3.1) and "
        "print its phase fractions beside the theoretical ones.",
    )
    add_params_argument(p)
    p.add_argument("--shape", type=_shape, required=True, metavar="N|NZ,NY,NX", help="window in voxels")
    p.add_argument("--voxel-nm", type=voxel_nm, default=20.0, help="voxel side in nm (default 20)")
    p.add_argument("--seed", type=seed, default=0, help="integer seed of the jax.random key (default 0)")
    p.add_argument("--out", required=True, metavar="VOL.tif|VOL.npy", help="output volume (uint8, z y x)")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of text")
    add_progress_argument(p, "progress bar")
    add_force_argument(p, "memory or grain count")
    _devices.add_device_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    import jax
    import numpy as np

    from jaxcba import io, theory
    from jaxcba._checks import check_finite_result
    from jaxcba.model.realization import simulate
    from jaxcba.model.window import check_window

    out = output("simulate", args.out, suffixes=io.WRITE_SUFFIXES, what="volume")
    params = load_params(args.params)
    shape, voxel_nm = check_window(args.shape, args.voxel_nm)
    _devices.initialize("simulate", args)
    mesh = _devices.device_mesh(args.devices, shape[0], 0, f"the window {'x'.join(map(str, shape))}")
    th = theory.volume_fractions(params, voxel_nm=voxel_nm)
    theo = {
        "graphite": float(th.graphite),
        "cb": float(th.cb),
        "pore": 1.0 - float(th.solid),
        "solid": float(th.solid),
        "pores_removed": float(th.pores_removed),
        "excursion": float(th.excursion),
    }
    check_finite_result(list(theo.values()), "the theoretical volume fractions")
    progress = not args.quiet and not args.json and int(np.prod(shape)) >= 200**3 and sys.stderr.isatty()

    t0 = time.perf_counter()
    if mesh is None:
        vol = np.asarray(simulate(params, shape, voxel_nm, jax.random.key(args.seed), progress=progress,
                                  check_memory=not args.force))
    else:
        from jaxcba import sharded

        vol = _devices.gather(sharded.simulate(params, shape, voxel_nm, jax.random.key(args.seed), mesh=mesh,
                                               progress=progress, check_memory=not args.force))
    seconds = time.perf_counter() - t0
    counts = np.bincount(vol.ravel(), minlength=3).astype(float) / vol.size
    fractions = {"graphite": counts[2], "cb": counts[1], "pore": counts[0]}
    if not _devices.is_main_process():
        return 0  # process 0 writes and reports
    io.save_volume(out, vol)
    if args.json:
        print_json(
            {
                "shape": list(shape),
                "voxel_nm": voxel_nm,
                "seed": args.seed,
                "params": params.to_dict(),
                "out": str(out),
                "fractions": {k: float(v) for k, v in fractions.items()} | {"solid": float(counts[1] + counts[2])},
                "theory": theo,
                "seconds": seconds,
                "devices": args.devices,
            }
        )
        return 0
    on = f" on {args.devices} devices (z-slabs)" if args.devices > 1 else ""
    print(f"simulated {'x'.join(map(str, shape))} voxels at {voxel_nm:g} nm (seed {args.seed}){on} in {seconds:.2f} s -> {out}")
    print(f"{'phase':<10}{'realized':>10}{'theory':>10}")
    for name in ("graphite", "cb", "pore"):
        print(f"{name:<10}{fractions[name]:>10.4f}{theo[name]:>10.4f}")
    print(f"{'solid':<10}{counts[1] + counts[2]:>10.4f}{theo['solid']:>10.4f}")
    return 0
