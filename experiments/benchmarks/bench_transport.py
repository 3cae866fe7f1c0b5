"""Benchmark: jaxcba.transport vs TauFactor (CPU), same volumes, same process.

For each size and case (pore / solid with conductivity 1 = TauFactor ``Solver``; solid with
graphite 1, carbon black + binder 0.01 = ``MultiPhaseSolver``) it reports wall seconds,
iterations, peak memory (TauFactor: resident-set growth above the level before the run, sampled
every 2 ms in a thread; jaxcba: XLA's memory analysis of the compiled solve, arguments +
outputs + temporaries) and the relative error of tau against a tight float64 reference of the
same discretisation (jaxcba, rtol 1e-9). TauFactor runs at its default convergence
(1 % flux imbalance and tau stable to 2e-3 over 100 sweeps); jaxcba at its defaults
(relative residual 1e-5 and 1 % flux imbalance). jaxcba times: "cold" includes JIT
compilation (once per shape and options), "warm" is a second call.

    python experiments/benchmarks/bench_transport.py --sizes 128 256 --cases pore solid two
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import numpy as np
import psutil


def balls(n, count, radius, rng):
    """Union of balls (Boolean model) in an n^3 box, built ball by ball in its bounding box."""
    out = np.zeros((n, n, n), bool)
    r = radius
    for c in rng.uniform(0, n, (count, 3)):
        lo = [max(int(v - r) - 1, 0) for v in c]
        hi = [min(int(v + r) + 2, n) for v in c]
        z, y, x = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] |= (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r
    return out


def volume(n, seed=0):
    """Graphite (2): balls r = 8, carbon black + binder (1): balls r = 4.5, else pore (0).

    Same intensities as tests/test_transport_taufactor.py: solid ~0.45, graphite ~0.12.
    """
    rng = np.random.default_rng(seed)
    scale = (n / 48) ** 3
    graphite = balls(n, int(round(8 * scale)), 8.0, rng)
    cb = balls(n, int(round(160 * scale)), 4.5, rng) & ~graphite
    return np.where(graphite, 2, np.where(cb, 1, 0)).astype(np.uint8)


class PeakRSS:
    """Peak resident-set growth (MB) during a ``with`` block, sampled in a thread."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.mb = (self.peak - self.base) / 1e6


CASES = {
    "pore": ("pore", None, "half_voxel"),
    "solid": ("solid", None, "half_voxel"),
    "two": ("solid", {2: 1.0, 1: 0.01}, "ghost_voxel"),
}


def tau_of(case, labels, sigma_eff):
    """TauFactor's tau: eps / M for Solver; D_mean / D_eff for MultiPhaseSolver."""
    phase, cond, _ = CASES[case]
    if cond is None:
        eps = np.mean(labels == 0) if phase == "pore" else np.mean(labels > 0)
        return eps / sigma_eff
    return sum(np.mean(labels == k) * c for k, c in cond.items()) / sigma_eff


def run_taufactor(case, labels, iter_limit):
    import taufactor as tf

    phase, cond, _ = CASES[case]
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        if cond is None:
            mask = (labels == 0) if phase == "pore" else (labels > 0)
            s = tf.Solver(mask.astype(np.uint8), device="cpu")
            s.solve(verbose=False, iter_limit=iter_limit)
            sigma = float(s.D_rel[0])
        else:
            s = tf.MultiPhaseSolver(labels, cond=cond, device="cpu")
            s.solve(verbose=False, iter_limit=iter_limit)
            sigma = float(np.asarray(s.D_eff).ravel()[0])
        seconds = time.perf_counter() - t0
    return dict(seconds=seconds, iterations=int(s.iter), converged=bool(s.converged), sigma_eff=sigma, peak_mb=mem.mb)


def run_jaxcba(case, labels, **kw):
    import jax

    from jaxcba.transport import m_factor

    phase, cond, boundary = CASES[case]
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        r = m_factor(labels, phase, cond, "z", boundary=boundary, **kw)
        jax.block_until_ready(r)
        cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = jax.block_until_ready(m_factor(labels, phase, cond, "z", boundary=boundary, **kw))
    warm = time.perf_counter() - t0
    return dict(
        seconds=warm, cold_seconds=cold, iterations=int(r.iterations), converged=bool(r.converged),
        sigma_eff=float(r.sigma_eff), peak_mb=xla_peak_mb(case, labels), rss_cold_mb=mem.mb,
        flux_imbalance=float(r.flux_imbalance),
    )


def xla_peak_mb(case, labels):
    """Arguments + outputs + temporaries of the compiled labelled solve (``m_factor``'s), from XLA's memory analysis.

    (The resident-set growth of a JAX call mostly measures the compiler and the allocator's
    reuse of earlier buffers, so the compiled program's own figure is reported instead.)
    """
    import jax
    import jax.numpy as jnp

    from jaxcba.transport import phases, solver

    phase, cond, boundary = CASES[case]
    cmap = phases._check_map(phase, cond)
    items = sorted((k, v) for k, v in cmap.items() if v > 0)
    opts = solver.SolverOptions(boundary=boundary)
    lab = jax.ShapeDtypeStruct(labels.shape, jnp.asarray(labels).dtype)
    lowered = solver._solve_labels_jit.lower(
        lab, jnp.asarray([v for _, v in items], jnp.float32), 1.0, solver._tols(opts, jnp.float32),
        tuple(k for k, _ in items), solver._static(opts), jnp.dtype(jnp.float32))
    m = lowered.compile().memory_analysis()
    return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes) / 1e6


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128])
    p.add_argument("--cases", nargs="+", choices=tuple(CASES), default=list(CASES))
    p.add_argument("--tf-iter-limit", type=int, default=20000, help="TauFactor sweep limit (default 20000)")
    p.add_argument("--no-reference", action="store_true", help="skip the float64 reference solve")
    p.add_argument("--json", metavar="OUT.json")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import torch

    jax.config.update("jax_enable_x64", True)  # for the reference solve only; the runs use float32
    rows = []
    print(f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} threads {torch.get_num_threads()}, "
          f"{psutil.cpu_count()} CPUs")
    for n in args.sizes:
        labels = volume(n)
        fr = [float(np.mean(labels == k)) for k in (0, 1, 2)]
        print(f"\n{n}^3: pore {fr[0]:.3f}, cb {fr[1]:.3f}, graphite {fr[2]:.3f}", flush=True)
        for case in args.cases:
            ours = run_jaxcba(case, labels)
            peer = run_taufactor(case, labels, args.tf_iter_limit)
            row = dict(size=n, case=case, jaxcba=ours, taufactor=peer, ratio=peer["seconds"] / ours["seconds"],
                       ratio_cold=peer["seconds"] / ours["cold_seconds"])
            if not args.no_reference:
                from jaxcba.transport import m_factor

                phase, cond, boundary = CASES[case]
                ref = m_factor(labels, phase, cond, "z", boundary=boundary, rtol=1e-9, flux_tol=1e-6,
                               max_iter=20000, dtype=jnp.float64)
                tau_ref = tau_of(case, labels, float(ref.sigma_eff))
                row["tau_reference"] = tau_ref
                for who in ("jaxcba", "taufactor"):
                    row[who]["tau"] = tau_of(case, labels, row[who]["sigma_eff"])
                    row[who]["tau_rel_error"] = abs(row[who]["tau"] / tau_ref - 1)
            rows.append(row)
            for who in ("jaxcba", "taufactor"):
                d = row[who]
                extra = f" (cold {d['cold_seconds']:.2f} s)" if who == "jaxcba" else ""
                err = f", tau err {d['tau_rel_error']:.1e}" if "tau_rel_error" in d else ""
                print(f"  {case:5s} {who:9s} {d['seconds']:8.2f} s{extra}, {d['iterations']:6d} it, "
                      f"conv {d['converged']}, peak +{d['peak_mb']:.0f} MB{err}", flush=True)
            print(f"  {case:5s} ratio taufactor/jaxcba: {row['ratio']:.1f}x warm, {row['ratio_cold']:.1f}x cold", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
