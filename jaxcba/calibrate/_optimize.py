"""The optimiser runners of every calibration stage: optax L-BFGS / Adam under ``jit``, scipy
Nelder–Mead, and a host-side loop for losses too costly to compile twice.

A solver is an options object, checked when it is made: :class:`LBFGS` (optax L-BFGS, zoom line
search), :class:`Adam` (optax Adam) or :class:`NelderMead` (scipy). ``minimize(loss_fn, x0,
solver)`` minimises a scalar ``loss_fn(x, *args)`` over a pytree ``x`` (unconstrained
coordinates) and returns an :class:`OptimResult`; ``solver`` may also be a method name with
keyword options (``minimize(f, x0, "adam", learning_rate=0.1)``, :func:`make_solver`).

The gradient methods run entirely under ``jit``: ``lax.while_loop`` over steps on a
:class:`LoopState`, in chunks of ``chunk`` steps so that a progress bar can advance between
chunks. The compiled runner is cached per ``(loss_fn, solver, structure of x0 and args)``: new
``x0`` or new ``args`` do not recompile, and step budgets share a runner (the budget is a
dynamic loop bound).

Stopping rules, one :class:`Status` each (``OptimResult.status``; ``message`` says it in words):

* ``GTOL``: the infinity norm of the gradient ``<= gtol`` -> converged.
* ``FTOL``: L-BFGS: an accepted step lowers the loss by less than ``ftol * max(|loss|, tiny)``;
  Adam: the same for ``patience`` consecutive steps -> converged.
* ``LINESEARCH_STALLED``: the line search could not decrease the loss at a gradient norm
  ``<= max(1e3 gtol, 1e-6)`` -> converged; at a larger gradient ``LINESEARCH_FAILED``.
* ``NONFINITE``, ``BUDGET`` (``max_steps`` reached) -> ``converged=False``: such a result is never
  a silent fit (the pipeline warns and flags it).
* Nelder–Mead and scipy L-BFGS-B: ``SCIPY_CONVERGED`` / ``SCIPY_FAILED`` with scipy's message.

Evaluation counts: ``n_fev`` counts loss evaluations, ``n_grad`` gradient evaluations. With L-BFGS
and Adam every evaluation is a ``value_and_grad`` (``n_fev == n_grad``): one at ``x0`` plus one
per line-search trial (L-BFGS) or per step (Adam). Nelder–Mead never evaluates a gradient.

:func:`minimize_host` drives one compiled ``value_and_grad`` from a Python loop (Adam, or scipy
L-BFGS-B for :class:`LBFGS`), with an optional periodic refresh of the loss's auxiliary state
(the joint mode's bias-correction anchor). :func:`run_starts` is the one multi-start runner.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize
from jax.flatten_util import ravel_pytree

from jaxcba._progress import meter
from jaxcba.calibrate._result import Result, field

METHODS = ("lbfgs", "adam", "nelder-mead")


class Status(enum.IntEnum):
    """Why an optimiser stopped (module docstring); ``RUNNING`` only inside the loop."""

    RUNNING = 0
    GTOL = 1
    FTOL = 2
    NONFINITE = 3
    LINESEARCH_FAILED = 4
    BUDGET = 5
    LINESEARCH_STALLED = 6
    SCIPY_CONVERGED = 7
    SCIPY_FAILED = 8

    @property
    def converged(self) -> bool:
        return self in (Status.GTOL, Status.FTOL, Status.LINESEARCH_STALLED, Status.SCIPY_CONVERGED)


_MESSAGES = {
    Status.GTOL: "gradient norm below gtol",
    Status.FTOL: "relative loss reduction below ftol",
    Status.NONFINITE: "loss or gradient became non-finite",
    Status.LINESEARCH_FAILED: "line search failed to decrease the loss",
    Status.LINESEARCH_STALLED: "line search could not decrease the loss further at a small gradient",
}


# ------------------------------------------------------------------------------ solvers
def _check_positive(obj, *names, integer=False):
    for name in names:
        v = getattr(obj, name)
        ok = (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) if integer else isinstance(v, (int, float))
        if not ok or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be a finite {'integer' if integer else 'number'} > 0, "
                             f"got {v!r}")


@dataclasses.dataclass(frozen=True)
class LBFGS:
    """optax L-BFGS with a zoom line search (``minimize``), or scipy L-BFGS-B (``minimize_host``).

    ``max_steps``: iteration budget; ``gtol``, ``ftol``: stopping rules (module docstring);
    ``memory_size``: stored curvature pairs; ``max_linesearch_steps``: zoom iterations per step.
    """

    max_steps: int = 500
    gtol: float = 1e-8
    ftol: float = 1e-12
    memory_size: int = 10
    max_linesearch_steps: int = 30
    method = "lbfgs"

    def __post_init__(self):
        _check_positive(self, "max_steps", "memory_size", "max_linesearch_steps", integer=True)
        _check_positive(self, "gtol", "ftol")


@dataclasses.dataclass(frozen=True)
class Adam:
    """optax Adam with step ``learning_rate`` (in the units of ``x``).

    ``max_steps``: step budget; ``gtol``; ``ftol`` and ``patience``: converged when the loss
    improves by less than ``ftol`` (relative) over ``patience`` steps (module docstring).
    """

    max_steps: int = 500
    learning_rate: float = 0.05
    gtol: float = 1e-8
    ftol: float = 1e-12
    patience: int = 20
    method = "adam"

    def __post_init__(self):
        _check_positive(self, "max_steps", "patience", integer=True)
        _check_positive(self, "learning_rate", "gtol", "ftol")


@dataclasses.dataclass(frozen=True)
class NelderMead:
    """scipy Nelder–Mead (adaptive above 3 parameters). ``max_steps``: iteration budget;
    ``xatol``, ``fatol``: scipy's simplex tests; ``max_fev``: evaluation budget (default
    ``max(2000, 400 n)`` for ``n`` parameters)."""

    max_steps: int = 500
    xatol: float = 1e-8
    fatol: float = 1e-14
    max_fev: int | None = None
    method = "nelder-mead"

    def __post_init__(self):
        _check_positive(self, "max_steps", integer=True)
        _check_positive(self, "xatol", "fatol")
        if self.max_fev is not None:
            _check_positive(self, "max_fev", integer=True)


Solver = LBFGS | Adam | NelderMead
_SOLVERS = {"lbfgs": LBFGS, "adam": Adam, "nelder-mead": NelderMead}
_ALL_OPTIONS = {f.name for cls in _SOLVERS.values() for f in dataclasses.fields(cls)}


def make_solver(method: "str | Solver" = "lbfgs", **options) -> Solver:
    """A solver object from a method name and keyword options.

    Options that belong to another method (e.g. ``learning_rate`` for ``"lbfgs"``) are ignored,
    so one set of options can serve every method; an option no method has is a ``TypeError``.
    A solver object is returned as is (``options`` must then be empty).
    """
    if isinstance(method, (LBFGS, Adam, NelderMead)):
        if options:
            raise TypeError(f"options {sorted(options)} given with a solver object {method}: set them on the object")
        return method
    if method not in _SOLVERS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    unknown = set(options) - _ALL_OPTIONS
    if unknown:
        raise TypeError(f"unknown optimiser option(s) {sorted(unknown)}; known: {sorted(_ALL_OPTIONS)}")
    cls = _SOLVERS[method]
    own = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in options.items() if k in own})


# ------------------------------------------------------------------------------ result
def _flat(x) -> list:
    return np.asarray(ravel_pytree(x)[0], dtype=float).tolist()


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimResult(Result):
    """Outcome of one optimiser run.

    Attributes:
        x: the best point found (same pytree structure as ``x0``; written flat to JSON).
        loss: ``loss_fn(x)``.
        loss_history: loss after each iteration, starting with the loss at ``x0``
            (Nelder–Mead: the best loss so far after each function evaluation).
        n_fev, n_grad: loss and gradient evaluations (``n_grad`` 0 for Nelder–Mead).
        seconds: wall time of the run, compilation included (``compile_seconds``: tracing and
            compiling, 0 when cached).
        method: ``"lbfgs"``, ``"adam"`` or ``"nelder-mead"``.
        converged: whether a convergence test fired (not merely a step budget).
        message: which stopping rule fired, in words; ``status``: the same as a :class:`Status`.
        n_steps: optimiser iterations taken.
        grad_norm: infinity norm of the gradient at ``x`` (nan for Nelder–Mead).
        fev_history: cumulative loss evaluations after each entry of ``loss_history``
            (``None`` for Nelder–Mead, where entry k is evaluation k + 1).
    """

    x: Any = field(None, encode=_flat, decode=lambda v: np.asarray(v, dtype=float))
    loss: float = field(encode=float)
    loss_history: np.ndarray = field(default_factory=lambda: np.zeros(0),
                                     encode=lambda h: np.asarray(h, dtype=float).tolist())
    n_fev: int = field(encode=int)
    n_grad: int = field(encode=int)
    seconds: float = field(encode=float)
    method: str
    converged: bool = field(encode=bool)
    message: str
    n_steps: int = field(0, encode=int)
    grad_norm: float = field(float("nan"), encode=float)
    compile_seconds: float = field(0.0, encode=float)
    fev_history: np.ndarray | None = field(None, json=False)
    status: Status | None = field(None, json=False)


# ------------------------------------------------------------------------------ minimize
def minimize(loss_fn: Callable[..., jax.Array], x0: Any, method: "str | Solver" = "lbfgs", *, args: tuple = (),
             chunk: int = 50, progress: bool = False, desc: str | None = None, **options) -> OptimResult:
    """Minimise ``loss_fn(x, *args)`` (scalar, jittable) from ``x0``.

    Args:
        loss_fn: scalar loss of a pytree ``x`` and ``args``; jittable (and differentiable in
            ``x`` for the gradient methods). Use a module-level function and pass data through
            ``args`` so that the compiled runner is reused between calls.
        x0: starting point, any pytree of float arrays.
        method: a solver (:class:`LBFGS`, :class:`Adam`, :class:`NelderMead`) or a method name
            with its options as keywords (:func:`make_solver`).
        args: extra (dynamic) arguments of ``loss_fn``.
        chunk: optimiser steps per compiled chunk (progress granularity).
        progress, desc: a tqdm bar on stderr and its label.

    Returns:
        :class:`OptimResult`; ``converged=False`` with a reason in ``message`` when no
        convergence test fired.
    """
    solver = make_solver(method, **options)
    flat0, unravel = ravel_pytree(x0)
    flat0 = jnp.asarray(flat0)
    if not jnp.issubdtype(flat0.dtype, jnp.floating):
        flat0 = flat0.astype(jnp.result_type(float))
    if flat0.size == 0:
        raise ValueError("x0 has no parameters to optimise")
    if not bool(jnp.all(jnp.isfinite(flat0))):
        raise ValueError(f"x0 must be finite, got {np.asarray(flat0).tolist()}")
    problem = _Problem(loss_fn, flat0, unravel, tuple(args))
    if isinstance(solver, NelderMead):
        return _nelder_mead(problem, solver, progress, desc or solver.method)
    return _gradient(problem, solver, chunk, progress, desc or solver.method)


class _Problem(NamedTuple):
    loss_fn: Callable
    flat0: jax.Array
    unravel: Callable
    args: tuple

    def signature(self) -> tuple:
        """What the compiled runner depends on besides the solver: the loss and the structures."""
        out = jax.eval_shape(self.unravel, self.flat0)
        leaves = jax.tree_util.tree_leaves((self.flat0, self.args))
        return (self.loss_fn, jax.tree_util.tree_structure((self.flat0, self.args)),
                tuple((np.shape(a), (a.dtype if hasattr(a, "dtype") else np.result_type(a)).str) for a in leaves),
                (jax.tree_util.tree_structure(out), tuple((l.shape, l.dtype.str) for l in jax.tree_util.tree_leaves(out))))


# ----------------------------------------------------------------------------- gradient
class LoopState(NamedTuple):
    """The carry of the jitted optimiser loop (one ``lax.while_loop`` step per optimiser step)."""

    x: jax.Array  # flat parameters
    opt_state: Any  # optax state
    value: jax.Array  # loss at x
    grad: jax.Array  # gradient at x
    it: jax.Array  # steps taken
    n_fev: jax.Array  # loss evaluations so far
    history: jax.Array  # (n_hist,) loss after each step (nan beyond it)
    fevs: jax.Array  # (n_hist,) n_fev after each step
    status: jax.Array  # a Status (RUNNING while the loop goes on)
    small: jax.Array  # consecutive steps with a relative reduction below ftol


_RUNNERS: dict = {}


def _history_length(max_steps: int) -> int:
    """Static history buffer: a power of two >= max_steps + 1 (at least 2048), so that step
    budgets share one compiled runner (the budget itself is a dynamic loop bound)."""
    return max(2048, 1 << int(max_steps).bit_length())


def _optax(solver):
    if isinstance(solver, LBFGS):
        linesearch = optax.scale_by_zoom_linesearch(max_linesearch_steps=solver.max_linesearch_steps,
                                                    initial_guess_strategy="one")
        return optax.lbfgs(memory_size=solver.memory_size, linesearch=linesearch)
    return optax.adam(solver.learning_rate)


def _make_runner(problem: _Problem, solver, n_hist: int):
    """``(init, run_chunk)`` jitted: ``init(flat0, args) -> LoopState``, ``run_chunk(state, stop_it, args)``."""
    loss_fn, unravel = problem.loss_fn, problem.unravel
    opt = _optax(solver)
    lbfgs = isinstance(solver, LBFGS)
    need_small = 1 if lbfgs else solver.patience

    def f(flat, args):
        return loss_fn(unravel(flat), *args)

    value_and_grad = jax.value_and_grad(f)

    def init(flat0, args):
        value, grad = value_and_grad(flat0, args)
        history = jnp.full((n_hist,), jnp.nan, dtype=value.dtype).at[0].set(value)
        fevs = jnp.zeros((n_hist,), dtype=jnp.int32).at[0].set(1)
        status = jnp.where(jnp.isfinite(value) & jnp.all(jnp.isfinite(grad)), Status.RUNNING, Status.NONFINITE)
        status = jnp.where((status == Status.RUNNING) & (jnp.max(jnp.abs(grad)) <= solver.gtol), Status.GTOL, status)
        return LoopState(flat0, opt.init(flat0), value, grad, jnp.asarray(0), jnp.asarray(1, jnp.int32), history,
                         fevs, status, jnp.asarray(0))

    def propose(s: LoopState, args):
        """One optax step: ``(x_new, opt_state, value_new, grad_new, n_fev, line search failed)``."""
        if lbfgs:
            updates, state = opt.update(s.grad, s.opt_state, s.x, value=s.value, grad=s.grad,
                                        value_fn=lambda z: f(z, args))
            info = optax.tree_utils.tree_get(state, "info")
            value_new = optax.tree_utils.tree_get(state, "value")
            # the zoom line search returns stepsize 0 when it cannot decrease the loss
            return (optax.apply_updates(s.x, updates), state, value_new, optax.tree_utils.tree_get(state, "grad"),
                    s.n_fev + info.num_linesearch_steps.astype(jnp.int32), ~(value_new < s.value))
        updates, state = opt.update(s.grad, s.opt_state, s.x)
        x_new = optax.apply_updates(s.x, updates)
        value_new, grad_new = value_and_grad(x_new, args)
        return x_new, state, value_new, grad_new, s.n_fev + 1, jnp.asarray(False)

    def step(s: LoopState, args) -> LoopState:
        x_new, state, value_new, grad_new, n_fev, ls_failed = propose(s, args)
        finite = jnp.isfinite(value_new) & jnp.all(jnp.isfinite(grad_new))
        small_step = jnp.abs(s.value - value_new) <= solver.ftol * jnp.maximum(jnp.abs(s.value),
                                                                             jnp.finfo(s.value.dtype).tiny)
        small = jnp.where(small_step, s.small + 1, 0)
        new_status = jnp.where(
            ~finite, Status.NONFINITE,
            jnp.where(jnp.max(jnp.abs(grad_new)) <= solver.gtol, Status.GTOL,
                      jnp.where(ls_failed, Status.LINESEARCH_FAILED,
                                jnp.where(small >= need_small, Status.FTOL, Status.RUNNING))))
        keep_old = (ls_failed | ~finite) if lbfgs else ~finite  # a failed line search leaves x unchanged
        it = s.it + 1
        value_new = jnp.where(keep_old, s.value, value_new)
        return LoopState(jnp.where(keep_old, s.x, x_new), state, value_new, jnp.where(keep_old, s.grad, grad_new),
                         it, n_fev, s.history.at[it].set(value_new), s.fevs.at[it].set(n_fev), new_status, small)

    def run_chunk(s: LoopState, stop_it, args) -> LoopState:
        return jax.lax.while_loop(lambda c: (c.status == Status.RUNNING) & (c.it < stop_it),
                                  lambda c: step(c, args), s)

    return jax.jit(init), jax.jit(run_chunk)


def _compiled_runner(problem: _Problem, solver):
    """The cached ``(init, run_chunk)`` for ``problem`` and ``solver`` and the seconds spent compiling."""
    n_hist = _history_length(solver.max_steps)
    key = (dataclasses.replace(solver, max_steps=1), n_hist) + problem.signature()
    if key in _RUNNERS:
        return _RUNNERS[key], 0.0
    init, run_chunk = _make_runner(problem, solver, n_hist)
    tc = time.perf_counter()
    state_shape = jax.eval_shape(init, problem.flat0, problem.args)
    init = init.lower(problem.flat0, problem.args).compile()
    run_chunk = run_chunk.lower(state_shape, jnp.asarray(0), problem.args).compile()
    _RUNNERS[key] = (init, run_chunk)
    return _RUNNERS[key], time.perf_counter() - tc


def _gradient(problem: _Problem, solver, chunk: int, progress: bool, desc: str) -> OptimResult:
    t0 = time.perf_counter()
    (init, run_chunk), compile_s = _compiled_runner(problem, solver)
    s = init(problem.flat0, problem.args)
    bar = meter(solver.max_steps, desc, enabled=progress)
    done = 0
    while True:
        s = run_chunk(s, jnp.asarray(min(done + chunk, solver.max_steps)), problem.args)
        it = int(s.it)
        bar.update(it - done)
        bar.set_postfix_str(f"loss={float(s.value):.4g}")
        done = it
        if int(s.status) != Status.RUNNING or it >= solver.max_steps:
            break
    bar.close()
    jax.block_until_ready(s.x)
    seconds = time.perf_counter() - t0
    gnorm = float(jnp.max(jnp.abs(s.grad)))
    status, message = _gradient_status(Status(int(s.status)), gnorm, solver)
    n = int(s.it)
    return OptimResult(
        x=problem.unravel(s.x), loss=float(s.value), loss_history=np.asarray(s.history[: n + 1]),
        fev_history=np.asarray(s.fevs[: n + 1]), n_fev=int(s.n_fev), n_grad=int(s.n_fev), seconds=seconds,
        method=solver.method, converged=status.converged, message=message, n_steps=n, grad_norm=gnorm,
        compile_seconds=compile_s, status=status,
    )


def _gradient_status(status: Status, gnorm: float, solver) -> tuple[Status, str]:
    """The final status and its message (a stalled line search at a small gradient counts as converged)."""
    if status in (Status.GTOL, Status.FTOL):
        return status, _MESSAGES[status]
    if status == Status.LINESEARCH_FAILED and gnorm <= max(1e3 * solver.gtol, 1e-6):
        return Status.LINESEARCH_STALLED, _MESSAGES[Status.LINESEARCH_STALLED]
    if status in (Status.NONFINITE, Status.LINESEARCH_FAILED):
        return status, _MESSAGES[status] + f" (gradient norm {gnorm:.3g})"
    return Status.BUDGET, f"step budget max_steps={solver.max_steps} exhausted (gradient norm {gnorm:.3g})"


# ------------------------------------------------------------------------- Nelder-Mead
_NM_FUNS: dict = {}


def _nelder_mead(problem: _Problem, solver: NelderMead, progress: bool, desc: str) -> OptimResult:
    key = problem.signature()
    if key not in _NM_FUNS:
        loss_fn, unravel = problem.loss_fn, problem.unravel
        _NM_FUNS[key] = jax.jit(lambda flat, a: loss_fn(unravel(flat), *a))
    f, args, dtype = _NM_FUNS[key], problem.args, problem.flat0.dtype
    t0 = time.perf_counter()
    f(problem.flat0, args).block_until_ready()
    compile_s = time.perf_counter() - t0
    history: list[float] = []
    bar = meter(None, desc, unit="evaluation", enabled=progress)

    def fun(z):
        value = float(f(jnp.asarray(z, dtype=dtype), args))
        value = value if np.isfinite(value) else np.inf
        history.append(min(history[-1], value) if history else value)
        if len(history) % 50 == 0:
            bar.update(50)
            bar.set_postfix_str(f"loss={history[-1]:.4g}")
        return value

    n = problem.flat0.size
    max_fev = solver.max_fev if solver.max_fev is not None else max(2000, 400 * n)
    res = scipy.optimize.minimize(
        fun, np.asarray(problem.flat0, dtype=float), method="Nelder-Mead",
        options={"maxiter": max(solver.max_steps, max_fev), "maxfev": max_fev, "xatol": solver.xatol,
                 "fatol": solver.fatol, "adaptive": n > 3},
    )
    bar.close()
    converged = bool(res.success) and np.isfinite(res.fun)
    return OptimResult(
        x=problem.unravel(jnp.asarray(res.x, dtype=dtype)), loss=float(res.fun), loss_history=np.asarray(history),
        n_fev=int(res.nfev), n_grad=0, seconds=time.perf_counter() - t0, method="nelder-mead", converged=converged,
        message=str(res.message) if converged else f"not converged: {res.message}", n_steps=int(res.nit),
        compile_seconds=compile_s, status=Status.SCIPY_CONVERGED if converged else Status.SCIPY_FAILED,
    )


# ------------------------------------------------------------------------- multi-start
def run_starts(loss_fn, starts, solver, args_of: Callable[[int], tuple] = lambda i: (), *, progress: bool = False,
               desc: str = "start") -> list[OptimResult]:
    """One :func:`minimize` run per start ``x0`` in ``starts``; ``args_of(i)`` gives start ``i``'s ``args``."""
    return [minimize(loss_fn, x0, solver, args=args_of(i), progress=progress, desc=f"{desc} {i + 1}/{len(starts)}")
            for i, x0 in enumerate(starts)]


def best_finite(runs: list[OptimResult]) -> OptimResult:
    """The run with the lowest finite loss (the first run if none is finite)."""
    best = runs[0]
    for res in runs[1:]:
        if np.isfinite(res.loss) and res.loss < best.loss:
            best = res
    return best


# ------------------------------------------------------------------------- host loops
class _Best(NamedTuple):
    loss: float
    x: np.ndarray
    grad_norm: float
    state: Any


@dataclasses.dataclass(frozen=True)
class Refresh:
    """Re-linearisation of a host loop's loss (:func:`minimize_host` with :class:`Adam`):
    every ``every`` steps (an integer >= 1) ``state = fn(x, aux)``."""

    fn: Callable
    every: int

    def __post_init__(self):
        if not callable(self.fn):
            raise ValueError(f"Refresh.fn must be callable, got {self.fn!r}")
        _check_positive(self, "every", integer=True)


def minimize_host(value_and_grad: Callable, x0, solver: "LBFGS | Adam", state: Any = None, *, start=None,
                  refresh: Refresh | None = None, progress: bool = False,
                  desc: str = "host") -> tuple[OptimResult, Any]:
    """Minimise from a Python loop over one compiled ``value_and_grad(x, state) -> ((loss, aux), grad)``.

    For losses that cost seconds per evaluation (a host round-trip per step is then free and the
    loss is compiled once). :class:`Adam`: optax steps; converged when the gradient norm is
    ``<= gtol`` or the best loss improved by less than ``ftol`` (relative) over the last
    ``patience`` steps; with ``refresh`` (:class:`Refresh`), every ``refresh.every`` steps
    ``state = refresh.fn(x, aux)`` re-linearises the loss (a ``ValueError`` from it keeps the old
    state), after which losses are compared only within the new segment. :class:`LBFGS`: scipy L-BFGS-B (``maxiter=max_steps``,
    ``maxfun=2 max_steps``, its ``ftol`` is ``solver.ftol / 100``), ``state`` fixed.

    ``start``: ``(loss, grad)`` at ``x0`` when already evaluated.
    Returns ``(OptimResult of the best iterate, the state at it)``.
    """
    if start is None:
        (l0, _), g0 = value_and_grad(x0, state)
        start = (l0, g0)
    l0, g0 = float(start[0]), np.asarray(start[1])
    if not (math.isfinite(l0) and np.all(np.isfinite(g0))):
        res = OptimResult(x=np.asarray(x0, float), loss=l0, loss_history=np.asarray([l0]), n_fev=1, n_grad=1,
                          seconds=0.0, method=solver.method, converged=False,
                          message="loss or gradient non-finite at start", status=Status.NONFINITE)
        return res, state
    bar = meter(solver.max_steps, desc, enabled=progress)
    t0 = time.perf_counter()
    best = _Best(l0, np.asarray(x0, float), float(np.max(np.abs(g0))), state)
    if isinstance(solver, Adam):
        out = _host_adam(value_and_grad, x0, g0, solver, best, refresh, bar)
    else:
        out = _host_lbfgsb(value_and_grad, x0, solver, best, bar)
    bar.close()
    best, history, fevs, status, message, (n_steps, n_fev) = out
    result = OptimResult(
        x=best.x, loss=best.loss, loss_history=np.asarray(history), n_fev=n_fev, n_grad=n_fev,
        seconds=time.perf_counter() - t0, method=solver.method, converged=status.converged, message=message,
        n_steps=n_steps, grad_norm=best.grad_norm, fev_history=None if fevs is None else np.asarray(fevs),
        status=status,
    )
    return result, best.state


def _tick(bar, val):
    bar.update(1)
    bar.set_postfix_str(f"loss={val:.4g}")


def _host_adam(value_and_grad, x0, g0, solver: Adam, best: _Best, refresh: Refresh | None, bar):
    opt = optax.adam(solver.learning_rate)
    x = jnp.asarray(x0)
    opt_state, g, state = opt.init(x), jnp.asarray(g0, x.dtype), best.state
    history, fevs = [best.loss], [1]
    status, message, n = Status.BUDGET, f"step budget max_steps={solver.max_steps} exhausted", 0
    since, anchors = 0, []
    for n in range(1, solver.max_steps + 1):
        upd, opt_state = opt.update(g, opt_state, x)
        x = optax.apply_updates(x, upd)
        if refresh is not None and n % refresh.every == 0 and n < solver.max_steps:
            (_, aux), _ = value_and_grad(x, state)
            try:
                state = refresh.fn(x, aux)
                since = len(history)  # a new loss from here on: compare only later values
                best = best._replace(loss=float("inf"))
                anchors.append(n)
            except ValueError:  # the refresh is impossible here: keep the old state
                pass
        (val, _), g = value_and_grad(x, state)
        val, gn = float(val), float(jnp.max(jnp.abs(g)))
        history.append(val)
        fevs.append(n + 1)
        _tick(bar, val)
        if not (math.isfinite(val) and math.isfinite(gn)):
            status, message = Status.NONFINITE, _MESSAGES[Status.NONFINITE]
            break
        if val < best.loss:
            best = _Best(val, np.asarray(x, float), gn, state)
        if gn <= solver.gtol:
            status, message = Status.GTOL, _MESSAGES[Status.GTOL]
            break
        if len(history) - since > solver.patience:
            old = min(history[since: len(history) - solver.patience])
            if old - best.loss <= solver.ftol * abs(old):
                status = Status.FTOL
                message = f"best loss improved by < {solver.ftol:g} (relative) over {solver.patience} steps"
                break
    if anchors:
        message += f" (re-anchored at steps {anchors}; the loss is comparable within each segment)"
    return best, history, fevs, status, message, (n, len(history))


def _host_lbfgsb(value_and_grad, x0, solver: LBFGS, best: _Best, bar):
    history = [best.loss]

    def fun(z):
        (val, _), g = value_and_grad(jnp.asarray(z, jnp.float32), best.state)
        val = float(val)
        history.append(val)
        _tick(bar, val)
        return (val if math.isfinite(val) else np.inf), np.asarray(g, float)

    res = scipy.optimize.minimize(fun, np.asarray(x0, float), jac=True, method="L-BFGS-B",
                                  options={"maxiter": solver.max_steps, "maxfun": 2 * solver.max_steps,
                                           "gtol": solver.gtol, "ftol": solver.ftol * 1e-2})
    history = [history[0]] + history[2:]  # scipy evaluates x0 again first
    if float(res.fun) < best.loss:
        best = _Best(float(res.fun), np.asarray(res.x, float), float(np.max(np.abs(res.jac))), best.state)
    converged = bool(res.success)
    status = Status.SCIPY_CONVERGED if converged else Status.SCIPY_FAILED
    message = str(res.message) if converged else f"not converged: {res.message}"
    return best, history, None, status, message, (int(res.nit), int(res.nfev) + 1)


def evaluations_to_reach(result: OptimResult, target: float) -> int | None:
    """Loss evaluations ``result`` needed until its loss first was ``<= target``.

    Gradient methods: the cumulative evaluations (line-search trials included) at the first
    iteration whose loss reached ``target``. Nelder–Mead: the number of the first evaluation
    reaching it. ``None`` if never.
    """
    hits = np.nonzero(np.asarray(result.loss_history, dtype=float) <= target)[0]
    if hits.size == 0:
        return None
    k = int(hits[0])
    return k + 1 if result.fev_history is None else int(result.fev_history[k])
