"""`jaxcba tortuosity VOL.tif|VOL.npy --phase pore|solid [--conductivity 2=1,1=0.01] [--axis z] [--tol 1e-5] [--json]`."""

from __future__ import annotations

import argparse
import sys
import time

from jaxcba.cli._common import positive_float, print_json

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
        if label in out:
            raise ValueError(f"--conductivity gives label {label} twice")
        out[label] = val
    return out


def _conductivity_arg(text: str) -> dict[int, float]:
    try:
        return parse_conductivity(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    p.add_argument("--axis", choices=("z", "y", "x"), default="z", help="transport direction (default z)")
    p.add_argument("--tol", type=positive_float, default=1e-5, help="relative residual |b - Au| / |b| to reach (default 1e-5)")
    p.add_argument("--flux-tol", type=positive_float, default=1e-2, help="largest plane-current imbalance (default 1e-2, TauFactor's)")
    p.add_argument("--max-iter", type=int, default=5000, help="CG iteration limit (default 5000)")
    p.add_argument(
        "--preconditioner", choices=("multigrid", "jacobi", "none"), default="multigrid", help="CG preconditioner (default multigrid)"
    )
    p.add_argument(
        "--boundary", choices=("half_voxel", "ghost_voxel"), default="half_voxel",
        help="Dirichlet planes on the outer voxel faces (TauFactor Solver, default) or one voxel outside (TauFactor MultiPhaseSolver)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--force", action="store_true", help="run even when the memory estimate exceeds the available memory")
    p.set_defaults(func=run)
    return p


def _progress_printer(max_iter: int):
    """Progress line: iteration, residual and an ETA from the residual's decay rate so far."""
    import math

    start = time.perf_counter()
    first = {}

    def show(state) -> None:
        res, target = float(state.res), float(state.target)
        elapsed = time.perf_counter() - start
        first.setdefault("res", res)
        eta = ""
        done = math.log(first["res"] / res) if 0 < res < first["res"] else 0.0
        left = math.log(res / target) if res > target > 0 else 0.0
        if done > 0 and int(state.iterations) > 0:
            eta = f"  ETA {elapsed * left / done:6.0f} s"
        print(
            f"\r  iteration {int(state.iterations):5d}/{max_iter}  residual {res:.2e}  "
            f"target {target:.1e}  {elapsed:6.1f} s{eta}",
            end="", file=sys.stderr, flush=True,
        )

    return show


def run(args) -> int:
    import jax.numpy as jnp

    from jaxcba.io import load_volume
    from jaxcba.transport import m_factor

    if not 1 <= args.max_iter <= 10**7:
        raise ValueError(f"--max-iter must be in [1, 1e7], got {args.max_iter}")
    if not args.tol < 1 or not args.flux_tol <= 1:
        raise ValueError(f"--tol must be < 1 and --flux-tol <= 1, got {args.tol} and {args.flux_tol}")
    labels = load_volume(args.volume)
    show = labels.size > PROGRESS_VOXELS and not (args.json or args.quiet)
    start = time.perf_counter()
    result = m_factor(
        labels, args.phase, args.conductivity, args.axis,
        rtol=args.tol, flux_tol=args.flux_tol, max_iter=args.max_iter,
        preconditioner=args.preconditioner, boundary=args.boundary, dtype=jnp.float32,
        progress=_progress_printer(args.max_iter) if show else None, check_memory=not args.force,
    )
    out = result.to_dict()
    seconds = time.perf_counter() - start
    if show:
        print(file=sys.stderr)
    out.update(phase=args.phase, axis=args.axis, shape=list(labels.shape), seconds=seconds)
    if args.json:
        print_json(out)
    else:
        tau = "inf (no percolating path)" if out["tau_eff"] is None else f"{out['tau_eff']:.6g}"
        print(f"volume {'x'.join(map(str, labels.shape))}, phase {args.phase}, axis {args.axis}")
        print(f"eps        {out['eps']:.6g}")
        print(f"tau_eff    {tau}")
        print(f"M          {out['m_factor']:.6g}   (sigma_eff {out['sigma_eff']:.6g}, sigma_ref {out['sigma_ref']:g})")
        print(f"percolates {out['percolates']}")
        print(f"iterations {out['iterations']}  converged {out['converged']}  residual {out['relative_residual']:.2e}  "
              f"flux imbalance {out['flux_imbalance']:.2e}")
        print(f"seconds    {seconds:.3f}")
    if not out["converged"]:
        print("jaxcba tortuosity: warning: not converged within --max-iter; raise it or loosen --tol", file=sys.stderr)
    return 0
