"""One optimiser runner for every calibration stage: optax L-BFGS / Adam, scipy Nelder–Mead.

``minimize(loss_fn, x0, method=...)`` minimises a scalar ``loss_fn(x, *args)`` over a
pytree ``x`` (unconstrained coordinates: the callers pass logs of positive parameters)
and returns an :class:`OptimResult`. The gradient methods run entirely under ``jit``:
``lax.while_loop`` over optimiser steps, in chunks of ``chunk`` steps so that a progress
bar can advance between chunks without a host round-trip per step. The compiled runner
is cached per ``(loss_fn, method, options, structure of x0 and args)``, so calling
``minimize`` again with new ``x0`` or new ``args`` (e.g. other targets, other starts)
does not recompile.

Stopping rules (all methods report which one fired in ``message``):

* ``gtol``: the infinity norm of the gradient in the optimiser's coordinates
  ``<= gtol`` -> converged.
* ``ftol``: L-BFGS: an accepted step that lowers the loss by less than
  ``ftol * max(|loss|, tiny)`` -> converged (the usual relative-reduction test);
  Adam: the same test holding for ``patience`` consecutive steps.
* Nelder–Mead: scipy's ``xatol``/``fatol`` simplex tests.
* ``max_steps`` reached, a non-finite loss, or a failed line search without a small
  gradient -> ``converged=False`` and a message saying so. Such a result is never a
  silent fit: the pipeline warns and flags it.

Evaluation counts: ``n_fev`` counts evaluations of the loss, ``n_grad`` of its gradient.
With L-BFGS and Adam every evaluation is a ``value_and_grad`` (``n_fev == n_grad``): one
at ``x0`` plus one per line-search trial (L-BFGS, optax's zoom line search) or per step
(Adam). Nelder–Mead never evaluates a gradient.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

METHODS = ("lbfgs", "adam", "nelder-mead")


@dataclasses.dataclass(frozen=True)
class OptimResult:
    """Outcome of one optimiser run.

    Attributes:
        x: the best point found (same pytree structure as ``x0``).
        loss: ``loss_fn(x)``.
        loss_history: loss after each iteration, starting with the loss at ``x0``
            (Nelder–Mead: the best loss so far after each function evaluation).
        n_fev: number of loss evaluations.
        n_grad: number of gradient evaluations (0 for Nelder–Mead).
        seconds: wall time of the run, compilation included (see ``compile_seconds``).
        method: ``"lbfgs"``, ``"adam"`` or ``"nelder-mead"``.
        converged: whether a convergence test fired (not merely a step budget).
        message: which stopping rule fired, in words.
        n_steps: optimiser iterations taken.
        grad_norm: infinity norm of the final gradient (nan for Nelder–Mead).
        compile_seconds: time spent tracing and compiling (0 when cached).
        fev_history: cumulative loss evaluations after each entry of ``loss_history``
            (``None`` for Nelder–Mead, where entry k is evaluation k + 1).
    """

    x: Any
    loss: float
    loss_history: np.ndarray
    n_fev: int
    n_grad: int
    seconds: float
    method: str
    converged: bool
    message: str
    n_steps: int = 0
    grad_norm: float = float("nan")
    compile_seconds: float = 0.0
    fev_history: np.ndarray | None = None

    def to_dict(self) -> dict:
        """JSON-serialisable summary (``x`` flattened to a list of floats)."""
        flat = np.asarray(ravel_pytree(self.x)[0], dtype=float)
        return {
            "x": flat.tolist(),
            "loss": float(self.loss),
            "loss_history": np.asarray(self.loss_history, dtype=float).tolist(),
            "n_fev": int(self.n_fev),
            "n_grad": int(self.n_grad),
            "seconds": float(self.seconds),
            "method": self.method,
            "converged": bool(self.converged),
            "message": self.message,
            "n_steps": int(self.n_steps),
            "grad_norm": float(self.grad_norm),
            "compile_seconds": float(self.compile_seconds),
        }


def minimize(
    loss_fn: Callable[..., jax.Array],
    x0: Any,
    method: str = "lbfgs",
    *,
    args: tuple = (),
    max_steps: int = 500,
    gtol: float = 1e-8,
    ftol: float = 1e-12,
    learning_rate: float = 0.05,
    patience: int = 20,
    memory_size: int = 10,
    max_linesearch_steps: int = 30,
    xatol: float = 1e-8,
    fatol: float = 1e-14,
    max_fev: int | None = None,
    chunk: int = 50,
    progress: bool = False,
    desc: str | None = None,
) -> OptimResult:
    """Minimise ``loss_fn(x, *args)`` (scalar, jittable) from ``x0``.

    Args:
        loss_fn: scalar loss of a pytree ``x`` (unconstrained coordinates) and ``args``.
            Must be jittable (and differentiable in ``x`` for the gradient methods).
            Use a module-level function and pass data through ``args`` so that the
            compiled runner is reused between calls.
        x0: starting point, any pytree of float arrays.
        method: ``"lbfgs"`` (optax L-BFGS with zoom line search), ``"adam"``
            (optax Adam, step ``learning_rate``) or ``"nelder-mead"`` (scipy).
        args: extra (dynamic) arguments of ``loss_fn``.
        max_steps: iteration budget of the gradient methods (Nelder–Mead: its
            iteration budget too).
        gtol, ftol, patience: stopping rules (module docstring).
        learning_rate: Adam's step size in the units of ``x``.
        memory_size, max_linesearch_steps: L-BFGS options.
        xatol, fatol, max_fev: Nelder–Mead options (``max_fev`` default
            ``200 * len(x)`` evaluations... scaled like scipy's default, but at least 2000).
        chunk: optimiser steps per compiled chunk (progress granularity).
        progress: show a tqdm bar on stderr.
        desc: label of the progress bar.

    Returns:
        :class:`OptimResult`. ``converged=False`` with a reason in ``message`` when no
        convergence test fired.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    flat0, unravel = ravel_pytree(x0)
    flat0 = jnp.asarray(flat0)
    if not jnp.issubdtype(flat0.dtype, jnp.floating):
        flat0 = flat0.astype(jnp.result_type(float))
    if flat0.size == 0:
        raise ValueError("x0 has no parameters to optimise")
    if not bool(jnp.all(jnp.isfinite(flat0))):
        raise ValueError(f"x0 must be finite, got {np.asarray(flat0).tolist()}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if method == "nelder-mead":
        return _nelder_mead(loss_fn, flat0, unravel, args, max_steps, xatol, fatol, max_fev, progress, desc)
    return _gradient(
        loss_fn, flat0, unravel, args, method, max_steps, gtol, ftol, learning_rate, patience,
        memory_size, max_linesearch_steps, chunk, progress, desc,
    )


# ----------------------------------------------------------------------------- gradient
_RUNNERS: dict = {}

# carry layout (a tuple so that lax.while_loop sees a fixed pytree):
# x, opt_state, value, grad, it, n_fev, (loss history, n_fev history), status, small_count
# status: 0 running, 1 gtol, 2 ftol, 3 non-finite, 4 line search failed
_STATUS = {
    1: "gradient norm below gtol",
    2: "relative loss reduction below ftol",
    3: "loss or gradient became non-finite",
    4: "line search failed to decrease the loss",
}


def _history_length(max_steps: int) -> int:
    """Static history buffer: a power of two >= max_steps + 1 (at least 2048), so that step
    budgets share one compiled runner (the budget itself is a dynamic loop bound)."""
    return max(2048, 1 << int(max_steps).bit_length())


def _make_runner(loss_fn, unravel, method, n_hist, gtol, ftol, learning_rate, patience, memory_size, max_ls):
    def f(flat, args):
        return loss_fn(unravel(flat), *args)

    if method == "lbfgs":
        linesearch = optax.scale_by_zoom_linesearch(max_linesearch_steps=max_ls, initial_guess_strategy="one")
        opt = optax.lbfgs(memory_size=memory_size, linesearch=linesearch)
    else:
        opt = optax.adam(learning_rate)

    value_and_grad = jax.value_and_grad(f)

    def init(flat0, args):
        value, grad = value_and_grad(flat0, args)
        history = jnp.full((n_hist,), jnp.nan, dtype=value.dtype).at[0].set(value)
        fevs = jnp.zeros((n_hist,), dtype=jnp.int32).at[0].set(1)
        status = jnp.where(jnp.isfinite(value) & jnp.all(jnp.isfinite(grad)), 0, 3)
        status = jnp.where((status == 0) & (jnp.max(jnp.abs(grad)) <= gtol), 1, status)
        return (flat0, opt.init(flat0), value, grad, jnp.asarray(0), jnp.asarray(1, jnp.int32), (history, fevs), status,
                jnp.asarray(0))

    def step(carry, args):
        x, state, value, grad, it, n_fev, (history, fevs), status, small = carry
        if method == "lbfgs":
            fn = lambda z: f(z, args)  # noqa: E731
            updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fn)
            x_new = optax.apply_updates(x, updates)
            value_new = optax.tree_utils.tree_get(state, "value")
            grad_new = optax.tree_utils.tree_get(state, "grad")
            info = optax.tree_utils.tree_get(state, "info")
            n_fev = n_fev + info.num_linesearch_steps.astype(jnp.int32)
            # the zoom line search returns stepsize 0 when it cannot decrease the loss
            ls_failed = ~(value_new < value)
        else:
            updates, state = opt.update(grad, state, x)
            x_new = optax.apply_updates(x, updates)
            value_new, grad_new = value_and_grad(x_new, args)
            n_fev = n_fev + 1
            ls_failed = jnp.asarray(False)
        finite = jnp.isfinite(value_new) & jnp.all(jnp.isfinite(grad_new))
        reduction = value - value_new
        small_step = jnp.abs(reduction) <= ftol * jnp.maximum(jnp.abs(value), jnp.finfo(value.dtype).tiny)
        small = jnp.where(small_step, small + 1, 0)
        gnorm = jnp.max(jnp.abs(grad_new))
        need_small = 1 if method == "lbfgs" else patience
        new_status = jnp.where(
            ~finite, 3,
            jnp.where(gnorm <= gtol, 1,
                      jnp.where(ls_failed, 4, jnp.where(small >= need_small, 2, 0))),
        )
        if method == "lbfgs":
            # a failed line search leaves x unchanged: keep the old point
            keep_old = ls_failed | ~finite
        else:
            keep_old = ~finite
        x_new = jnp.where(keep_old, x, x_new)
        value_new = jnp.where(keep_old, value, value_new)
        grad_new = jnp.where(keep_old, grad, grad_new)
        it = it + 1
        history = history.at[it].set(value_new)
        fevs = fevs.at[it].set(n_fev)
        return (x_new, state, value_new, grad_new, it, n_fev, (history, fevs), new_status, small)

    def run_chunk(carry, stop_it, args):
        def cond(c):
            return (c[7] == 0) & (c[4] < stop_it)

        return jax.lax.while_loop(cond, lambda c: step(c, args), carry)

    return jax.jit(init), jax.jit(run_chunk)


def _gradient(loss_fn, flat0, unravel, args, method, max_steps, gtol, ftol, learning_rate, patience,
              memory_size, max_ls, chunk, progress, desc):
    args = tuple(args)
    n_hist = _history_length(max_steps)
    key = (
        loss_fn, method, n_hist, gtol, ftol, learning_rate, patience, memory_size, max_ls,
        jax.tree_util.tree_structure((flat0, args)),
        tuple((np.shape(a), np.result_type(a).str) for a in jax.tree_util.tree_leaves((flat0, args))),
        _unravel_signature(unravel, flat0),
    )
    t0 = time.perf_counter()
    compile_s = 0.0
    if key not in _RUNNERS:
        _RUNNERS[key] = _make_runner(loss_fn, unravel, method, n_hist, gtol, ftol, learning_rate, patience,
                                     memory_size, max_ls)
        init, run_chunk = _RUNNERS[key]
        tc = time.perf_counter()
        init = init.lower(flat0, args).compile()
        carry_shape = jax.eval_shape(_RUNNERS[key][0], flat0, args)
        run_chunk = run_chunk.lower(carry_shape, jnp.asarray(0), args).compile()
        compile_s = time.perf_counter() - tc
        _RUNNERS[key] = (init, run_chunk)
    init, run_chunk = _RUNNERS[key]
    carry = init(flat0, args)
    bar = _progress_bar(progress, max_steps, desc or method)
    done_steps = 0
    while True:
        stop = min(done_steps + chunk, max_steps)
        carry = run_chunk(carry, jnp.asarray(stop), args)
        it = int(carry[4])
        status = int(carry[7])
        if bar is not None:
            bar.update(it - done_steps)
            bar.set_postfix(loss=f"{float(carry[2]):.4g}")
        done_steps = it
        if status != 0 or it >= max_steps:
            break
    if bar is not None:
        bar.close()
    x, _, value, grad, it, n_fev, (history, fevs), status, _ = carry
    jax.block_until_ready(x)
    seconds = time.perf_counter() - t0
    status = int(status)
    gnorm = float(jnp.max(jnp.abs(grad)))
    if status in (1, 2):
        converged, message = True, _STATUS[status]
    elif status == 4 and gnorm <= max(1e3 * gtol, 1e-6):
        converged, message = True, "line search could not decrease the loss further at a small gradient"
    elif status in (3, 4):
        converged, message = False, _STATUS[status] + f" (gradient norm {gnorm:.3g})"
    else:
        converged, message = False, f"step budget max_steps={max_steps} exhausted (gradient norm {gnorm:.3g})"
    n = int(it)
    return OptimResult(
        x=unravel(x), loss=float(value), loss_history=np.asarray(history[: n + 1]),
        fev_history=np.asarray(fevs[: n + 1]), n_fev=int(n_fev),
        n_grad=int(n_fev), seconds=seconds, method=method, converged=converged, message=message, n_steps=n,
        grad_norm=gnorm, compile_seconds=compile_s,
    )


def _unravel_signature(unravel, flat0):
    out = jax.eval_shape(unravel, flat0)
    return (jax.tree_util.tree_structure(out), tuple((l.shape, l.dtype.str) for l in jax.tree_util.tree_leaves(out)))


# ------------------------------------------------------------------------- Nelder-Mead
_NM_FUNS: dict = {}


def _nelder_mead(loss_fn, flat0, unravel, args, max_steps, xatol, fatol, max_fev, progress, desc):
    import scipy.optimize

    args = tuple(args)
    key = (loss_fn, jax.tree_util.tree_structure((flat0, args)), _unravel_signature(unravel, flat0))
    if key not in _NM_FUNS:
        _NM_FUNS[key] = jax.jit(lambda flat, a: loss_fn(unravel(flat), *a))
    f = _NM_FUNS[key]
    dtype = flat0.dtype
    t0 = time.perf_counter()
    tc = time.perf_counter()
    f(flat0, args).block_until_ready()
    compile_s = time.perf_counter() - tc
    history: list[float] = []
    best = [np.inf]
    bar = _progress_bar(progress, None, desc or "nelder-mead")

    def fun(z):
        value = float(f(jnp.asarray(z, dtype=dtype), args))
        if not np.isfinite(value):
            value = np.inf
        best[0] = min(best[0], value)
        history.append(best[0])
        if bar is not None and len(history) % 50 == 0:
            bar.update(50)
            bar.set_postfix(loss=f"{best[0]:.4g}")
        return value

    n = flat0.size
    max_fev = max_fev if max_fev is not None else max(2000, 400 * n)
    res = scipy.optimize.minimize(
        fun, np.asarray(flat0, dtype=float), method="Nelder-Mead",
        options={"maxiter": max(max_steps, max_fev), "maxfev": max_fev, "xatol": xatol, "fatol": fatol,
                 "adaptive": n > 3},
    )
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    converged = bool(res.success) and np.isfinite(res.fun)
    message = str(res.message) if converged else f"not converged: {res.message}"
    return OptimResult(
        x=unravel(jnp.asarray(res.x, dtype=dtype)), loss=float(res.fun), loss_history=np.asarray(history),
        n_fev=int(res.nfev), n_grad=0, seconds=seconds, method="nelder-mead", converged=converged,
        message=message, n_steps=int(res.nit), compile_seconds=compile_s,
    )


def _progress_bar(enabled, total, desc):
    if not enabled:
        return None
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False)


def evaluations_to_reach(result: OptimResult, target: float) -> int | None:
    """Loss evaluations ``result`` needed until its loss first was ``<= target``.

    Gradient methods: the cumulative evaluations (line-search trials included) at the
    first iteration whose loss reached ``target``. Nelder–Mead: the number of the first
    evaluation reaching it. ``None`` if never.
    """
    hist = np.asarray(result.loss_history, dtype=float)
    hits = np.nonzero(hist <= target)[0]
    if hits.size == 0:
        return None
    k = int(hits[0])
    if result.fev_history is None:
        return k + 1
    return int(result.fev_history[k])


__all__ = ["OptimResult", "minimize", "evaluations_to_reach", "METHODS"]
