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


def _theory(params, voxel_nm: float) -> dict:
    """Theoretical volume fractions [1] of ``params`` at ``voxel_nm`` [nm] (``jaxcba.theory``), checked finite."""
    from jaxcba import theory
    from jaxcba._checks import check_finite_result

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
    return theo


def _show_progress(args, shape) -> bool:
    """Whether to draw the progress bar: text output to a terminal, at least 200^3 voxels."""
    import numpy as np

    return not args.quiet and not args.json and int(np.prod(shape)) >= 200**3 and sys.stderr.isatty()


def _realize(args, params, shape, voxel_nm: float, mesh, progress: bool):
    """``(vol, seconds)``: the uint8 ``(z, y, x)`` labels on the host (z-slabs on ``mesh`` unless
    ``None``) and the wall time [s] it took."""
    import jax
    import numpy as np

    from jaxcba.model.realization import simulate

    t0 = time.perf_counter()
    if mesh is None:
        vol = np.asarray(simulate(params, shape, voxel_nm, jax.random.key(args.seed), progress=progress,
                                  check_memory=not args.force))
    else:
        from jaxcba import sharded

        vol = _devices.gather(sharded.simulate(params, shape, voxel_nm, jax.random.key(args.seed), mesh=mesh,
                                               progress=progress, check_memory=not args.force))
    return vol, time.perf_counter() - t0


def _fractions(vol) -> dict:
    """Realized volume fractions [1] of the labels ``vol``: graphite, cb, pore, solid."""
    import numpy as np

    counts = np.bincount(vol.ravel(), minlength=3).astype(float) / vol.size
    return {"graphite": counts[2], "cb": counts[1], "pore": counts[0], "solid": counts[1] + counts[2]}


def _print_json(args, shape, voxel_nm: float, params, out, fractions: dict, theo: dict, seconds: float) -> None:
    """The ``--json`` report: one JSON object on stdout."""
    print_json(
        {
            "shape": list(shape),
            "voxel_nm": voxel_nm,
            "seed": args.seed,
            "params": params.to_dict(),
            "out": str(out),
            "fractions": {k: float(v) for k, v in fractions.items()},
            "theory": theo,
            "seconds": seconds,
            "devices": args.devices,
        }
    )


def _print_text(args, shape, voxel_nm: float, out, fractions: dict, theo: dict, seconds: float) -> None:
    """The text report: what was simulated, then the realized and theoretical fraction of each phase."""
    on = f" on {args.devices} devices (z-slabs)" if args.devices > 1 else ""
    print(f"simulated {'x'.join(map(str, shape))} voxels at {voxel_nm:g} nm (seed {args.seed}){on} in {seconds:.2f} s -> {out}")
    print(f"{'phase':<10}{'realized':>10}{'theory':>10}")
    for name in ("graphite", "cb", "pore", "solid"):
        print(f"{name:<10}{fractions[name]:>10.4f}{theo[name]:>10.4f}")


def run(args) -> int:
    from jaxcba import io
    from jaxcba.model.window import check_window

    out = output("simulate", args.out, suffixes=io.WRITE_SUFFIXES, what="volume")
    params = load_params(args.params)
    shape, voxel_nm = check_window(args.shape, args.voxel_nm)
    _devices.initialize("simulate", args)
    mesh = _devices.device_mesh(args.devices, shape[0], 0, f"the window {'x'.join(map(str, shape))}")
    theo = _theory(params, voxel_nm)
    vol, seconds = _realize(args, params, shape, voxel_nm, mesh, _show_progress(args, shape))
    fractions = _fractions(vol)
    if not _devices.is_main_process():
        return 0  # process 0 writes and reports
    io.save_volume(out, vol)
    if args.json:
        _print_json(args, shape, voxel_nm, params, out, fractions, theo, seconds)
    else:
        _print_text(args, shape, voxel_nm, out, fractions, theo, seconds)
    return 0
