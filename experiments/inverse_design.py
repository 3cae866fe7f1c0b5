"""Inverse design (beyond the paper): choose lambda_X (optionally alpha1, alpha2) so that the
solid M-factor (graphite 1, carbon black + binder 0.01, transport along z) reaches a requested
value, by gradients through soft realizations and the differentiable solver; verify with hard
realizations.

Method
------
* ``K`` fixed noises (``jaxcba.draw_noise``), drawn once for reference parameters that bound the
  search box (lambda_X <= ``--lambda-max``; alphas <= ``--alpha-span`` x the paper's), so that
  every iterate stays in the soft path's validity range. Gradients never re-draw.
* Soft conductivity field (per voxel, from ``(g, c) = jaxcba.simulate_soft(...)``)::

      sigma = max(g * 1 + (1 - g) * c * 0.01, SIGMA_FLOOR),   SIGMA_FLOOR = 1e-6

  i.e. the expected conductivity of a voxel that is graphite with probability ``g`` and
  carbon black + binder with probability ``(1 - g) c`` (``c`` = P(cb | not graphite) as returned;
  the soft ``cb`` output is already ``(1 - p1) p2 (1 - p3)``, so we use
  ``sigma = g + 0.01 * cb``). Pore voxels of the hard field have sigma = 0; in the soft field
  they keep sigmoid tails (1e-30 ... 1e-3). The floor exists because the solver's harmonic-mean
  face conductance ``2ab/(a+b)`` has NaN gradients when both neighbours are below ~1e-19 in
  float32 (``(a+b)^2`` underflows); 1e-6 is 1e-4 of the carbon-black conductivity and moves M
  by < 1e-6 (measured: 0.033891 vs 0.033896 on 32^3). Every voxel then conducts, so the
  solver's percolating cluster is the whole window and the implicit gradient is exact.
* Loss (z = log of the free parameters)::

      L(z) = (log M_hat(z) - log M_target)^2  [+ reg * |z_alpha - z_alpha,paper|^2]

  with ``M_hat = mean_k M_soft,k(z) * stop_gradient(mean_k M_hard,k(z) / mean_k M_soft,k(z))``:
  the value is the mean HARD M-factor on the same K noises (``jaxcba.model.soft.realize_noise``),
  the gradient is that of the soft mean (its elasticity d log M / d z). ``--no-hard-correction``
  uses the plain soft mean as the value (the soft field over-conducts: at softness 0.25 the soft
  M is 2-10x the hard one, see docs/experiments.md). Optimiser: optax Adam, exponentially
  decaying step, iterates projected into the search box; the design is the iterate with the
  smallest loss.
* Verification: mean hard M at the design (a) on the K design noises, (b) on ``--fresh`` new
  realizations by ``jaxcba.simulate`` with unseen seeds; relative errors and standard errors.
  At these window sizes one realization's M scatters by ~100 % (graphite platelets 4 um wide
  in a 4-5 um window either span it or not), so (b) is limited by sampling error; see
  docs/experiments.md.

Writes ``OUT/history.csv`` (one row per step), ``OUT/verification.csv``, ``OUT/scan.csv``
(hard M vs lambda_X around the design), ``OUT/summary.json``, ``OUT/inverse_design.png``.

Usage:  python experiments/inverse_design.py [--out results/inverse_design] [--target 0.01]
            [--shape 48] [--voxel-nm 80] [--noises 8] [--steps 12] [--softness 0.25]
            [--fresh 8] [--alphas] [--no-hard-correction] [--target-lambda L] [--quick]

``--quick`` (CI): 32^3, 4 noises, 8 steps, 4 fresh seeds, and a twin target (``--target-lambda
9e-11``: the mean hard M of the design noises at that lambda_X, reachable by construction).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import time
from pathlib import Path

import numpy as np

SOLID = {2: 1.0, 1: 0.01}  # the paper's solid conductivities (graphite, carbon black + binder)
SIGMA_FLOOR = 1e-6
PAPER_LAMBDA_RANGE = (2.21e-11, 1.09e-10)  # Table 3's smallest and largest lambda_X [nm^-3]


# ----------------------------------------------------------------------------- pieces


def soft_sigma(graphite, cb, floor: float = SIGMA_FLOOR):
    """Expected voxel conductivity ``g * 1 + cb * 0.01`` (cb = (1 - g) P(cb | not graphite)), floored."""
    import jax.numpy as jnp

    return jnp.maximum(graphite * SOLID[2] + cb * SOLID[1], floor)


def _pad_pools(pools):
    """Give candidate pools of the same model one static layout (same box classes, same row
    counts) by appending inert candidates (arrival time 2 t_max + 1: weight sigmoid(-huge) = 0,
    never included in the hard volume), so that one compiled function serves every noise."""
    import jax.numpy as jnp

    from jaxcba.model.soft import CandidatePool

    sides = sorted({s for p in pools for s in p.sides})
    counts = {s: max(p.hi[p.sides.index(s)] - p.lo[p.sides.index(s)] if s in p.sides else 0 for p in pools)
              for s in sides}
    hi = tuple(int(x) for x in np.cumsum([counts[s] for s in sides]))
    lo = (0,) + hi[:-1]
    out = []
    for p in pools:
        parts = {k: [] for k in ("centres", "arrival", "u", "axes")}
        for s in sides:
            n = p.hi[p.sides.index(s)] - p.lo[p.sides.index(s)] if s in p.sides else 0
            sl = slice(p.lo[p.sides.index(s)], p.hi[p.sides.index(s)]) if s in p.sides else slice(0, 0)
            pad = counts[s] - n
            u_fill = 0.5 if p.kind != "ball" else 1.0
            axis = np.zeros((pad, 3), np.float32)
            if p.kind != "ball":
                axis[:, 2] = 1.0
            parts["centres"] += [np.asarray(p.centres)[sl], np.zeros((pad, 3), np.float32)]
            parts["arrival"] += [np.asarray(p.arrival)[sl], np.full(pad, 2 * p.t_max + 1, np.float32)]
            parts["u"] += [np.asarray(p.u)[sl], np.full((pad, p.u.shape[1]), u_fill, np.float32)]
            parts["axes"] += [np.asarray(p.axes)[sl], axis]
        arr = {k: np.concatenate(v).astype(np.float32) for k, v in parts.items()}
        arr = {k: jnp.asarray(v) for k, v in arr.items()}
        out.append(CandidatePool(centres=arr["centres"], arrival=arr["arrival"], u=arr["u"], axes=arr["axes"],
                                 kind=p.kind, volume=p.volume, t_max=p.t_max, sides=tuple(sides), lo=lo, hi=hi,
                                 margin=p.margin))
    return out


def uniform_layout(noises):
    """The same noises with one static layout (see :func:`_pad_pools`); values are unchanged.

    The pools' window geometry (volume, margin, t_max) depends only on the reference
    parameters and the shape, so it is common to all noises drawn for them (checked)."""
    from jaxcba.model.soft import SoftNoise

    for kind in ("graphite", "balls"):
        geo = {(getattr(n, kind).volume, getattr(n, kind).t_max, getattr(n, kind).margin) for n in noises}
        if len(geo) != 1:
            raise ValueError(f"noises were drawn for different reference parameters ({kind} pools differ)")
    g = _pad_pools([n.graphite for n in noises])
    b = _pad_pools([n.balls for n in noises])
    return [SoftNoise(xi=n.xi, graphite=gk, balls=bk, shape=n.shape, voxel_nm=n.voxel_nm, headroom=n.headroom,
                      softness_max=n.softness_max, reference=n.reference) for n, gk, bk in zip(noises, g, b)]


class Problem:
    """The fixed noises, the free parameters and the compiled soft / hard M-factor of each noise."""

    def __init__(self, shape: int, voxel_nm: float, n_noise: int, softness: float, free: tuple[str, ...],
                 lambda_bounds: tuple[float, float], alpha_span: float, seed: int = 0):
        import jax

        import jaxcba

        self.shape = (shape,) * 3
        self.voxel_nm = float(voxel_nm)
        self.softness = float(softness)
        self.free = free
        self.base = jaxcba.CBAParams.paper()
        lo, hi = lambda_bounds
        bounds = {"lambda_x": (lo, hi)}
        for a in ("alpha1", "alpha2"):
            v = float(getattr(self.base, a))
            bounds[a] = (v / alpha_span, v * alpha_span) if a in free else (v, v)
        self.bounds = bounds
        # pools and boxes sized for the largest intensity and grains of the search box:
        # gamma half-axes are stochastically increasing in alpha, so every iterate is covered.
        ref = self.base.replace(lambda_x=hi, alpha1=bounds["alpha1"][1], alpha2=bounds["alpha2"][1])
        noises = [jaxcba.draw_noise(jax.random.key(seed * 1000 + k), self.shape, self.voxel_nm, params=ref,
                                    headroom=1.0, softness_max=self.softness) for k in range(n_noise)]
        self.noises = uniform_layout(noises)  # one compilation for all noises
        self._soft = self._make_soft()

    # z = log(free parameters)
    def z0(self):
        return np.log([float(getattr(self.base, n)) for n in self.free])

    def params(self, z):
        import jax.numpy as jnp

        return self.base.replace(**{n: jnp.exp(z[i]) for i, n in enumerate(self.free)})

    def concrete(self, z):
        return self.base.replace(**{n: float(np.exp(z[i])) for i, n in enumerate(self.free)})

    def project(self, z):
        lo = np.log([self.bounds[n][0] for n in self.free])
        hi = np.log([self.bounds[n][1] for n in self.free]) - 1e-6  # strictly inside the pools
        return np.clip(np.asarray(z, float), lo, hi)

    def _make_soft(self):
        import jax

        import jaxcba
        from jaxcba.transport import effective_conductivity

        shape, vox, s = self.shape, self.voxel_nm, self.softness

        def m_soft(z, noise):
            g, cb = jaxcba.simulate_soft(self.params(z), noise, shape, vox, s)
            r = effective_conductivity(soft_sigma(g, cb), "z", sigma_ref=SOLID[2])
            return r.m_factor, r.converged

        return jax.jit(jax.value_and_grad(m_soft, has_aux=True))

    def soft(self, z):
        """Per-noise soft M and dM/dz: arrays (K,), (K, len(z)); NaN-checked."""
        import jax.numpy as jnp

        p = self.concrete(z)
        vals, grads = [], []
        for nz in self.noises:
            nz.check(p, self.softness)
            (m, conv), g = self._soft(jnp.asarray(z, jnp.float32), nz)
            vals.append(float(m))
            grads.append(np.asarray(g, float))
        vals, grads = np.array(vals), np.array(grads)
        if not (np.all(np.isfinite(vals)) and np.all(np.isfinite(grads))):
            raise FloatingPointError(f"soft M or its gradient is not finite at {p!r}: {vals}, {grads}")
        return vals, grads

    def hard(self, z):
        """Per-noise hard M (the volume ``realize_noise`` makes from the same noise)."""
        from jaxcba.model.soft import realize_noise

        p = self.concrete(z)
        return np.array([hard_m(realize_noise(p, nz, self.shape, self.voxel_nm)) for nz in self.noises])


def hard_m(labels) -> float:
    """Solid M-factor along z of a hard labelled volume (0 when nothing percolates)."""
    from jaxcba.transport import m_factor

    if not np.any(np.asarray(labels) > 0):
        return 0.0
    return float(m_factor(labels, "solid", SOLID, axis="z").m_factor)


def fresh_m(params, shape: int, voxel_nm: float, seeds) -> np.ndarray:
    """Hard M of new realizations ``jaxcba.simulate(params, ..., seed)``."""
    import jaxcba

    return np.array([hard_m(jaxcba.simulate(params, (shape,) * 3, voxel_nm, int(s))) for s in seeds])


def _sem(x) -> float:
    x = np.asarray(x, float)
    return float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("nan")


def _log_floor(m: float) -> float:
    return math.log(max(m, 1e-12))


# ------------------------------------------------------------------------- optimise


def optimise(prob: Problem, target: float, steps: int, lr: float, decay: float, hard_correction: bool,
             reg: float, log=print) -> list[dict]:
    """Adam on z = log(free params); returns the history (one dict per evaluated iterate)."""
    import optax

    # short memories (b1 = 0.5, b2 = 0.7): steps of about lr in log-parameter units whatever the
    # gradient scale (the soft elasticity is ~2x off the hard one), shrinking by `decay` per step
    opt = optax.adam(optax.exponential_decay(lr, 1, decay), b1=0.5, b2=0.7)
    z = prob.project(prob.z0())
    state = opt.init(z)
    z_ref = prob.z0()
    hist = []
    for step in range(steps):
        t0 = time.time()
        m_s, g_s = prob.soft(z)
        m_h = prob.hard(z)
        ms, mh = float(m_s.mean()), float(m_h.mean())
        value = mh if hard_correction else ms
        r = _log_floor(value) - math.log(target)
        is_alpha = np.array([n != "lambda_x" for n in prob.free])
        loss = r * r + reg * float(np.sum(((z - z_ref) * is_alpha) ** 2))
        # d/dz (log M_hat) = d/dz log(mean soft)  (the correction factor is held fixed)
        grad = 2 * r * g_s.mean(axis=0) / max(ms, 1e-12) + 2 * reg * (z - z_ref) * is_alpha
        row = {"step": step, **{n: float(np.exp(z[i])) for i, n in enumerate(prob.free)},
               "M_soft": ms, "M_hard": mh, "M_value": value, "target": target, "loss": loss,
               **{f"dL/dlog_{n}": float(grad[i]) for i, n in enumerate(prob.free)},
               "elasticity_soft": float(g_s.mean(axis=0)[0] / max(ms, 1e-12)), "seconds": time.time() - t0}
        hist.append(row)
        log(f"step {step:2d}  lambda_x={row['lambda_x']:.4e}" +
            "".join(f"  {n}={row[n]:.4g}" for n in prob.free if n != "lambda_x") +
            f"  M_soft={ms:.5f}  M_hard={mh:.5f}  target={target:.5f}  loss={loss:.3e}  ({row['seconds']:.1f} s)")
        if step == steps - 1:
            break
        upd, state = opt.update(grad, state, z)
        z = prob.project(optax.apply_updates(z, upd))
    return hist


# ----------------------------------------------------------------------------- output


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    keys = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def plot(hist, scan, verif, target, path):
    from jaxcba.plotting import figure, save_png

    fig, ax = figure(1, 3, figsize=(15, 4))
    steps = [h["step"] for h in hist]
    ax[0].semilogy(steps, [max(h["loss"], 1e-12) for h in hist], "o-")
    ax[0].set(xlabel="step", ylabel="loss (log M − log M*)²", title="loss")
    ax[1].semilogy(steps, [h["M_soft"] for h in hist], "s-", label="soft (mean over noises)")
    ax[1].semilogy(steps, [h["M_hard"] for h in hist], "o-", label="hard, same noises")
    ax[1].axhline(target, color="k", ls="--", label="target")
    ax[1].set(xlabel="step", ylabel="solid M-factor", title="M vs step")
    ax[1].legend(fontsize=8)
    lam = np.array([s["lambda_x"] for s in scan])
    per = np.array([s["M_hard_per_noise"] for s in scan])
    for k in range(per.shape[1]):
        ax[2].plot(lam, per[:, k], "-", color="0.75", lw=0.8, label="one design noise" if k == 0 else None)
    ax[2].plot(lam, [s["M_hard_mean"] for s in scan], "o-", label="hard, design noises (mean)")
    f = next(v for v in verif if v["set"] == "fresh seeds")
    ax[2].errorbar([f["lambda_x"]], [f["mean_M"]], yerr=[[min(2 * f["sem_M"], 0.9 * f["mean_M"])], [2 * f["sem_M"]]], fmt="D", color="tab:red",
                   label=f"hard, {f['n']} fresh seeds (±2 s.e.)")
    ax[2].axhline(target, color="k", ls="--", label="target")
    ax[2].axvline(f["lambda_x"], color="tab:red", ls=":", lw=0.8)
    ax[2].set(xscale="log", yscale="log", xlabel="λ_X [nm⁻³]", ylabel="solid M-factor", title="hard M around the design")
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


# ------------------------------------------------------------------------------- main


def run(a) -> dict:
    from jaxcba.io import write_text_atomic

    out = Path(a.out)
    free = ("lambda_x", "alpha1", "alpha2") if a.alphas else ("lambda_x",)
    t0 = time.time()
    prob = Problem(a.shape, a.voxel_nm, a.noises, a.softness, free, (a.lambda_min, a.lambda_max), a.alpha_span, a.seed)
    print(f"inverse design: solid M along z -> {'twin' if a.target_lambda else f'{a.target:g}'}; {a.shape}^3 voxels of {a.voxel_nm:g} nm, "
          f"{a.noises} design noise(s), softness {a.softness:g} voxel, free {', '.join(free)}, "
          f"{'hard-corrected' if not a.no_hard_correction else 'pure soft'} loss")
    if a.target_lambda is not None:  # twin experiment: a target the design noises reach by construction
        zt = prob.project(np.log([a.target_lambda] + [float(getattr(prob.base, n)) for n in free[1:]]))
        a.target = float(prob.hard(zt).mean())
        print(f"twin target: mean hard M on the design noises at lambda_X = {a.target_lambda:.4g} is {a.target:.5f}")
    zb = [np.log([PAPER_LAMBDA_RANGE[i]] + [float(getattr(prob.base, n)) for n in free[1:]]) for i in (0, 1)]
    bracket = [float(prob.hard(prob.project(z)).mean()) for z in zb]
    print(f"hard M on the design noises at lambda_X = {PAPER_LAMBDA_RANGE[0]:.3g} / {PAPER_LAMBDA_RANGE[1]:.3g}: "
          f"{bracket[0]:.5f} / {bracket[1]:.5f}")
    if not bracket[0] <= a.target <= bracket[1]:
        print(f"warning: the target {a.target:g} is outside that bracket; the design may hit the search box")

    hist = optimise(prob, a.target, a.steps, a.lr, a.decay, not a.no_hard_correction, a.reg)
    best = min(hist, key=lambda h: h["loss"])
    z = np.log([best[n] for n in free])
    design = prob.concrete(z)

    # verification: the design noises and fresh seeds
    m_same = prob.hard(z)
    seeds = list(range(10_000 + a.seed * 1000, 10_000 + a.seed * 1000 + a.fresh))
    m_fresh = fresh_m(design, a.shape, a.voxel_nm, seeds)
    verif = []
    for name, m in (("design noises", m_same), ("fresh seeds", m_fresh)):
        mean = float(m.mean())
        verif.append({"set": name, "n": int(m.size), "lambda_x": float(design.lambda_x), "alpha1": float(design.alpha1),
                      "alpha2": float(design.alpha2), "target": a.target, "mean_M": mean, "sem_M": _sem(m),
                      "rel_error": mean / a.target - 1, "per_realization": " ".join(f"{v:.6g}" for v in m)})
    # hard M vs lambda_X around the design (design noises)
    scan = []
    for f in a.scan:
        zf = prob.project(z + np.log([f] + [1.0] * (len(free) - 1)))
        m = prob.hard(zf)
        scan.append({"factor": f, "lambda_x": float(np.exp(zf[0])), "M_hard_mean": float(m.mean()),
                     "M_hard_per_noise": m.tolist()})

    write_text_atomic(out / "history.csv", _csv(hist))
    write_text_atomic(out / "verification.csv", _csv(verif))
    write_text_atomic(out / "scan.csv", _csv([{**s, "M_hard_per_noise": " ".join(f"{v:.6g}" for v in s["M_hard_per_noise"])}
                                              for s in scan]))
    summary = {"target": a.target, "design": design.to_dict(), "best_step": best["step"],
               "bracket_M_at_paper_lambda_range": bracket, "verification": verif, "tolerance": a.tolerance,
               "settings": {k: v for k, v in vars(a).items() if k != "out"}, "seconds": time.time() - t0}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    plot(hist, scan, verif, a.target, out / "inverse_design.png")

    print(f"\ndesign (step {best['step']}): " + ", ".join(f"{n} = {float(getattr(design, n)):.5g}" for n in free))
    print(f"{'verification':<16} {'n':>3} {'mean hard M':>12} {'s.e.':>9} {'target':>9} {'rel. error':>11}")
    for v in verif:
        print(f"{v['set']:<16} {v['n']:>3} {v['mean_M']:>12.5f} {v['sem_M']:>9.5f} {v['target']:>9.5f} {v['rel_error']:>+11.1%}")
    ok = abs(verif[0]["rel_error"]) <= a.tolerance
    print(f"design-noise error {'within' if ok else 'OUTSIDE'} the {a.tolerance:.0%} tolerance; "
          f"fresh-seed error {verif[1]['rel_error']:+.1%} ± {verif[1]['sem_M'] / a.target:.1%} (1 s.e., sampling)")
    print(f"wrote {out / 'history.csv'}, {out / 'verification.csv'}, {out / 'scan.csv'}, {out / 'inverse_design.png'} "
          f"({time.time() - t0:.0f} s)")
    return summary


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/inverse_design", help="output folder")
    ap.add_argument("--target", type=float, default=0.01, help="requested solid M-factor (default 0.01)")
    ap.add_argument("--target-lambda", type=float, default=None,
                    help="twin experiment: the target is the mean hard M on the design noises at this lambda_X")
    ap.add_argument("--shape", type=int, default=48, help="cube side [voxels] (default 48)")
    ap.add_argument("--voxel-nm", type=float, default=80.0, help="voxel side [nm] (default 80)")
    ap.add_argument("--noises", type=int, default=8, help="fixed design noises K (default 8)")
    ap.add_argument("--softness", type=float, default=0.25, help="soft edge width [voxels] (default 0.25)")
    ap.add_argument("--steps", type=int, default=12, help="optimiser steps (default 12)")
    ap.add_argument("--lr", type=float, default=0.25, help="Adam step on log-parameters (default 0.25)")
    ap.add_argument("--decay", type=float, default=0.8, help="step decay per iteration (default 0.8)")
    ap.add_argument("--fresh", type=int, default=8, help="fresh-seed realizations for verification (default 8)")
    ap.add_argument("--alphas", action="store_true", help="also optimise alpha1, alpha2 (regularised to the paper's)")
    ap.add_argument("--alpha-span", type=float, default=1.5, help="alphas within [paper/span, paper*span]")
    ap.add_argument("--reg", type=float, default=0.05, help="weight of |log alpha - log alpha_paper|^2")
    ap.add_argument("--lambda-min", type=float, default=1.5e-11, help="search box for lambda_X [nm^-3]")
    ap.add_argument("--lambda-max", type=float, default=1.3e-10, help="search box for lambda_X [nm^-3]")
    ap.add_argument("--no-hard-correction", action="store_true", help="use the plain soft mean as the loss value")
    ap.add_argument("--tolerance", type=float, default=0.10, help="stated tolerance of the design-noise check")
    ap.add_argument("--scan", type=float, nargs="+", default=[0.6, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5],
                    help="lambda_X factors around the design for the scan")
    ap.add_argument("--seed", type=int, default=0, help="seed of the design noises and fresh seeds")
    ap.add_argument("--quick", action="store_true", help="CI size: 32^3, 4 noises, 8 steps, 4 fresh seeds, twin target")
    a = ap.parse_args(argv)
    if a.quick:
        a.shape, a.noises, a.steps, a.fresh, a.scan = 32, 4, 8, 4, [0.75, 1.0, 1.33]
        if a.target_lambda is None:
            a.target_lambda = 9.0e-11
    if a.target_lambda is not None and not (math.isfinite(a.target_lambda) and a.target_lambda > 0):
        raise ValueError(f"--target-lambda must be a finite number > 0 [nm^-3], got {a.target_lambda}")
    for name in ("target", "voxel_nm", "softness", "lr", "lambda_min", "lambda_max", "alpha_span", "tolerance"):
        v = getattr(a, name)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number > 0, got {v}")
    if not 0 < a.decay <= 1:
        raise ValueError(f"--decay must be in (0, 1], got {a.decay}")
    if a.shape < 8 or a.noises < 1 or a.steps < 1 or a.fresh < 1:
        raise ValueError("--shape must be >= 8 and --noises, --steps, --fresh >= 1")
    if not a.lambda_min < a.lambda_max:
        raise ValueError(f"--lambda-min ({a.lambda_min}) must be below --lambda-max ({a.lambda_max})")
    if a.alpha_span < 1:
        raise ValueError(f"--alpha-span must be >= 1, got {a.alpha_span}")
    return a


def main(argv=None) -> int:
    try:
        a = parse(argv)
    except ValueError as e:
        print(f"error: {e}")
        return 2
    run(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
