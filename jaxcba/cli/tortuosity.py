"""`jaxcba tortuosity VOL.tif|VOL.npy --phase pore|solid [--conductivity 2=1,1=0.01] [--axis z] [--tol 1e-5] [--json]`.

``--devices N`` (``N > 1``) solves on ``N`` z-slabs of the volume over the first ``N`` devices
(:func:`jaxcba.sharded.label_conductivity`: the same M within the solver tolerance): transport
along z (the split axis) only, CG preconditioned by the distributed multigrid V-cycle (the
single-device iteration count) or ``--preconditioner jacobi``, no progress line, the memory of
one device not estimated (:mod:`jaxcba.cli._devices`).
"""

from __future__ import annotations

import argparse
import sys
import time

from jaxcba.cli import _devices
from jaxcba.cli._common import add_force_argument, add_progress_argument, axis, positive_float, print_json

#: Volumes with more voxels than this show a progress line on stderr (unless --json / --quiet).
PROGRESS_VOXELS = 64**3


def parse_conductivity(text: str) -> dict[int, float]:
    """``"2=1,1=0.01"`` -> ``{2: 1.0, 1: 0.01}`` (ValueError with the expected form otherwise)."""
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            label, val = int(key.strip()), float(value.strip())
        except ValueError:
            raise ValueError(f"--conductivity expects LABEL=VALUE pairs like '2=1,1=0.01', got {text!r}") from None
        if not abs(val) < float("inf"):
            raise ValueError(f"--conductivity {label}={value.strip()} is not finite; allowed: finite values >= 0")
        if label in out:
            raise ValueError(f"--conductivity gives label {label} twice")
        out[label] = val
    return out


def _conductivity_arg(text: str) -> dict[int, float]:
    try:
        return parse_conductivity(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _g(value, spec: str) -> str:
    """A number in ``spec``, or ``-`` for a value that is missing (not finite)."""
    return "-" if value is None else format(value, spec)


def add_parser(sub):
    from jaxcba.transport import PHASE_LABELS

    p = sub.add_parser(
        "tortuosity",
        help="effective tortuosity and M-factor of a phase (Eq. 27)",
        description="Solve steady conduction through one phase of a labelled volume (0 pore, 1 carbon "
        "black + binder, 2 graphite) with u = 1 / 0 on the two faces normal to --axis and no flux "
        "elsewhere; print the volume fraction eps, M = sigma_eff / sigma_ref and tau_eff = eps / M. "
        "The paper's solid phase uses --phase solid --conductivity 2=1,1=0.01.",
    )
    p.add_argument("volume", metavar="VOL.tif|VOL.npy", help="labelled (z, y, x) volume")
    p.add_argument("--phase", choices=tuple(PHASE_LABELS), default="pore", help="conducting phase (default pore)")
    p.add_argument(
        "--conductivity", type=_conductivity_arg, metavar="L=S,...",
        help="conductivity of each label of the phase, e.g. 2=1,1=0.01 (default 1 for each)",
    )
    p.add_argument("--axis", type=axis, default=0, metavar="0|1|2|z|y|x", help="transport direction (default z)")
    p.add_argument("--tol", type=positive_float, default=1e-5, help="relative residual |b - Au| / |b| to reach (default 1e-5)")
    p.add_argument("--flux-tol", type=positive_float, default=1e-2, help="largest plane-current imbalance (default 1e-2, TauFactor's)")
    p.add_argument("--max-iter", type=int, default=5000, help="CG iteration limit (default 5000)")
    p.add_argument(
        "--preconditioner", choices=("multigrid", "jacobi", "none"), default=None,
        help="CG preconditioner (default multigrid; multigrid or jacobi with --devices N > 1)"
    )
    p.add_argument(
        "--boundary", choices=("half_voxel", "ghost_voxel"), default="half_voxel",
        help="Dirichlet planes on the outer voxel faces (TauFactor Solver, default) or one voxel outside (TauFactor MultiPhaseSolver)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_progress_argument(p, "progress line")
    add_force_argument(p, "memory")
    _devices.add_device_arguments(p)
    p.set_defaults(func=run)
    return p


def _progress_printer(max_iter: int, bar):
    """Progress callback: the bar counts the per cent of the residual's log-decay to the target
    (so its ETA follows the decay rate so far), with the iteration and residual beside it."""
    import math

    first = {}

    def show(state) -> None:
        res, target = float(state.res), float(state.target)
        first.setdefault("res", res)
        span = math.log(first["res"] / target) if first["res"] > target > 0 else 0.0
        done = math.log(first["res"] / res) if 0 < res < first["res"] else 0.0
        pct = min(100.0, 100.0 * done / span) if span > 0 else 0.0
        bar.update(max(0.0, pct - bar.n))
        bar.set_postfix_str(f"iteration {int(state.iterations)}/{max_iter}, residual {res:.2e} (target {target:.1e})")

    return show


def run(args) -> int:
    from jaxcba._checks import axis_name
    from jaxcba.io import load_volume

    if not 1 <= args.max_iter <= 10**7:
        raise ValueError(f"--max-iter must be in [1, 1e7], got {args.max_iter}")
    if not args.tol < 1 or not args.flux_tol <= 1:
        raise ValueError(f"--tol must be < 1 and --flux-tol <= 1, got {args.tol} and {args.flux_tol}")
    if args.devices > 1 and args.axis != 0:
        raise ValueError(f"--devices {args.devices} solves along the split axis z only, got --axis {axis_name(args.axis)}; "
                         "transpose the volume so that the transport axis is z, or use --devices 1")
    if args.devices > 1 and args.preconditioner == "none":
        raise ValueError(f"--preconditioner none is not offered with --devices {args.devices}; "
                         "allowed: multigrid, jacobi")
    _devices.initialize("tortuosity", args)
    labels = load_volume(args.volume)
    mesh = _devices.device_mesh(args.devices, labels.shape[0], 1, f"the volume {'x'.join(map(str, labels.shape))}")
    if mesh is None:
        result, seconds = _solve(args, labels)
    else:
        result, seconds = _solve_sharded(args, labels, mesh)
    with _devices.main_process_output():
        return _report(args, labels, result, seconds)


def _solve(args, labels):
    """The single-device solve (:func:`jaxcba.transport.m_factor`)."""
    import jax.numpy as jnp

    from jaxcba._progress import meter
    from jaxcba.transport import m_factor

    show = labels.size > PROGRESS_VOXELS and not (args.json or args.quiet)
    start = time.perf_counter()
    # only ratios matter: m_factor solves the conductivities divided by their largest (float64)
    # and reports sigma_eff and sigma_ref in the units given
    cond = args.conductivity
    with meter(100, "jaxcba tortuosity", "%", enabled=show,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}] {postfix}") as bar:
        result = m_factor(
            labels, args.phase, cond, args.axis,
            rtol=args.tol, flux_tol=args.flux_tol, max_iter=args.max_iter,
            preconditioner=args.preconditioner or "multigrid", boundary=args.boundary, dtype=jnp.float32,
            progress=_progress_printer(args.max_iter, bar) if show else None, check_memory=not args.force,
        )
    return result, time.perf_counter() - start


def _solve_sharded(args, labels, mesh):
    """The solve on z-slabs over ``mesh`` (:func:`jaxcba.sharded.label_conductivity`), with the
    single-device checks and units of :func:`jaxcba.transport.m_factor`."""
    import jax.numpy as jnp
    import numpy as np

    from jaxcba import sharded
    from jaxcba.io import check_labels
    from jaxcba.transport.phases import _check_map
    from jaxcba.transport.solver import _unscale, check_ratios

    cmap = _check_map(args.phase, args.conductivity)
    scale = check_ratios(cmap.values(), jnp.float32)  # solved divided by the largest, as m_factor does
    labels = check_labels(labels, name="labels")
    if not any(np.any(labels == k) for k, v in cmap.items() if v > 0):
        raise ValueError(f"phase {args.phase!r} is absent from the volume (no voxel with a conducting label)")
    start = time.perf_counter()
    result = sharded.label_conductivity(
        labels, {k: v / scale for k, v in cmap.items()}, "z", mesh=mesh, sigma_ref=1.0,
        rtol=args.tol, flux_tol=args.flux_tol, max_iter=args.max_iter, boundary=args.boundary, dtype=jnp.float32,
        preconditioner=args.preconditioner or "multigrid",
    )
    return _unscale(result, scale, scale), time.perf_counter() - start


def _report(args, labels, result, seconds) -> int:
    from jaxcba._checks import axis_name

    out = result.to_dict()
    if out["converged"] and out["m_factor"] is None:  # never a missing M reported as converged
        out["converged"] = False
    out.update(phase=args.phase, axis=axis_name(args.axis), shape=list(labels.shape), seconds=seconds,
               devices=args.devices)
    if args.json:
        print_json(out)
    else:
        tau = "inf (no percolating path)" if out["tau_eff"] is None else f"{out['tau_eff']:.6g}"
        on = f", {args.devices} devices (z-slabs)" if args.devices > 1 else ""
        print(f"volume {'x'.join(map(str, labels.shape))}, phase {args.phase}, axis {out['axis']}{on}")
        print(f"eps        {_g(out['eps'], '.6g')}")
        print(f"tau_eff    {tau}")
        print(f"M          {_g(out['m_factor'], '.6g')}   (sigma_eff {_g(out['sigma_eff'], '.6g')}, "
              f"sigma_ref {_g(out['sigma_ref'], 'g')})")
        print(f"percolates {out['percolates']}")
        print(f"iterations {out['iterations']}  converged {out['converged']}  residual "
              f"{_g(out['relative_residual'], '.2e')}  flux imbalance {_g(out['flux_imbalance'], '.2e')}")
        print(f"seconds    {seconds:.3f}")
    if not out["converged"]:
        if out["m_factor"] is None:
            reason = "the effective conductivity is not finite (floating-point overflow)"
        elif out["relative_residual"] is None or out["flux_imbalance"] is None:
            reason = "the residual became non-finite (floating-point overflow) and the solve stopped"
        elif out["iterations"] >= args.max_iter:
            reason = f"--max-iter {args.max_iter} reached; raise it or loosen --tol / --flux-tol"
        else:
            reason = "the solver stalled before reaching --tol / --flux-tol"
        print(f"jaxcba tortuosity: warning: not converged: {reason} (exit status 1)", file=sys.stderr)
        return 1
    return 0
