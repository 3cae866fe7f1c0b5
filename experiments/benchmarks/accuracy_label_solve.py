"""Float32 accuracy of the two transport solver paths against a float64 reference.

On random three-class labels (0.45 / 0.35 / 0.2, seed 20) of an ``n^3`` cube, for four
conductivity maps (pore, solid at sigma = 1, graphite 1 / carbon-binder 0.01, three classes),
solves once in float64 with the stored-face path to rtol 1e-12 (the reference), then in
float32 with the stored-face path (``effective_conductivity``, keeps ``u``) and the labelled
path (``label_conductivity``, tracks the dissipation as a scalar), both to ``--rtol``.
Prints ``sigma_eff / reference - 1`` of each and their iterations.

    python experiments/benchmarks/accuracy_label_solve.py --n 64 --rtol 1e-7
"""

from __future__ import annotations

import argparse


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="cube side [voxels]")
    ap.add_argument("--rtol", type=float, default=1e-7, help="relative residual of the float32 solves")
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    from jaxcba.transport import effective_conductivity, label_conductivity

    shape = (args.n,) * 3
    lab = np.random.default_rng(20).choice(3, size=shape, p=(0.45, 0.35, 0.2)).astype(np.uint8)
    print(f"{args.n}³ random labels, float32 solves to rtol {args.rtol:g}; error = sigma_eff / float64 reference - 1")
    for cond in ({0: 1.0}, {1: 1.0, 2: 1.0}, {2: 1.0, 1: 0.01}, {2: 3.0, 1: 0.5, 0: 0.2}):
        sigma = np.zeros(shape, np.float32)
        for k, v in cond.items():
            sigma[lab == k] = v
        ref = max(cond.values())
        truth = float(effective_conductivity(sigma.astype(np.float64), rtol=1e-12, flux_tol=1e-10, sigma_ref=ref,
                                             dtype=jnp.float64).sigma_eff)
        stored = effective_conductivity(sigma, rtol=args.rtol, sigma_ref=ref)
        lean = label_conductivity(lab, cond, rtol=args.rtol)
        print(f"  {str(cond):28s} M {truth / ref:.6f}  stored (keeps u) {float(stored.sigma_eff) / truth - 1:+.2e} "
              f"({int(stored.iterations)} it.)  labelled (no u) {float(lean.sigma_eff) / truth - 1:+.2e} "
              f"({int(lean.iterations)} it.)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
