"""Effective conductivity of a voxel conductivity field (paper Eq. 27), jittable and differentiable.

Pipeline: keep only the cluster of conducting voxels that joins inlet and outlet
(``jaxcba.morphology.percolating_cluster``; isolated and dead-end clusters carry no current
and would make the operator singular), build the stencil, solve ``A u = b`` by
preconditioned CG (``jaxcba.transport.cg``), then

    sigma_eff = L / A_cross * sum_faces g (du)^2

(the dissipated power for a unit potential drop; ``L`` the distance between the Dirichlet
planes, ``A_cross`` the cross-section in voxels). That quadratic form is stationary in ``u``
at the solution, so ``d sigma_eff / d sigma`` is the explicit derivative with ``u`` held fixed:
implicit differentiation with the adjoint equal to the forward solution, no second solve.
Gradients are exact up to the solver tolerance (the error is quadratic in the residual) and
are taken with the set of conducting voxels held fixed.

Two entry points share the CG and multigrid code:

* ``effective_conductivity(sigma)``: any float field; the operator stores its three face
  arrays (differentiable);
* ``label_conductivity(labels, {label: sigma})`` (what ``m_factor`` runs): the operator is one
  ``uint8`` class code per voxel with the face conductances looked up when used, the finest
  inverse diagonal is stored as bfloat16 bits; not differentiable.

Conductivities are solved divided by their maximum (only ratios matter), so any finite
values work; a non-finite residual ends the solve with ``converged=False``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxcba._checks import check_dtype_floating, check_positive, release_freed_memory
from jaxcba.morphology import percolating_cluster
from jaxcba.transport import cg
from jaxcba.transport import stencil as sten
from jaxcba.transport.result import TransportResult

AXES = {"z": 0, "y": 1, "x": 2}


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """Static solver settings (hashable: one compilation per shape and options).

    Attributes:
        rtol: relative residual ``|b - A u| / |b|`` to reach.
        flux_tol: largest allowed ``(max - min) / max`` of the plane currents (TauFactor uses 1e-2).
        max_iter: CG iteration limit; beyond it the result says ``converged=False``.
        preconditioner: ``"multigrid"`` (aggregation V-cycle, default), ``"jacobi"`` or ``"none"``.
        boundary: ``"half_voxel"`` (Dirichlet planes on the outer voxel faces; TauFactor
            ``Solver``) or ``"ghost_voxel"`` (Dirichlet values one voxel outside;
            TauFactor ``MultiPhaseSolver``).
        initial_guess: ``"linear"`` (the straight-channel profile) or ``"zero"``.
        sweeps: Jacobi sweeps before and after each coarse correction.
        chunk: CG iterations between two calls of a solve's ``progress`` callback (the
            single-device solves; unused without ``progress``).
    """

    rtol: float = 1e-5
    flux_tol: float = 1e-2
    max_iter: int = 5000
    preconditioner: str = "multigrid"
    boundary: str = "half_voxel"
    initial_guess: str = "linear"
    sweeps: int = 1
    chunk: int = 25

    def __post_init__(self):
        if not (0 < self.rtol < 1):
            raise ValueError(f"rtol must be in (0, 1), got {self.rtol}")
        if not (0 < self.flux_tol <= 1):
            raise ValueError(f"flux_tol must be in (0, 1], got {self.flux_tol}")
        if int(self.max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        if self.preconditioner not in cg.PRECONDITIONERS:
            raise ValueError(f"preconditioner must be one of {cg.PRECONDITIONERS}, got {self.preconditioner!r}")
        if self.boundary not in sten.BOUNDARIES:
            raise ValueError(f"boundary must be one of {tuple(sten.BOUNDARIES)}, got {self.boundary!r}")
        if self.initial_guess not in ("linear", "zero"):
            raise ValueError(f"initial_guess must be 'linear' or 'zero', got {self.initial_guess!r}")
        if int(self.sweeps) < 1:
            raise ValueError(f"sweeps must be >= 1, got {self.sweeps}")
        if int(self.chunk) < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")


def axis_index(axis: int | str) -> int:
    """``0|1|2`` or ``'z'|'y'|'x'`` -> 0, 1, 2 (ValueError otherwise)."""
    if isinstance(axis, str) and axis in AXES:
        return AXES[axis]
    if isinstance(axis, (int,)) and not isinstance(axis, bool) and axis in (0, 1, 2):
        return int(axis)
    raise ValueError(f"axis must be one of 'z', 'y', 'x' (or 0, 1, 2), got {axis!r}")


def _length(n0: int, boundary: str) -> int:
    return n0 if boundary == "half_voxel" else n0 + 1


def _linear_guess(shape, boundary: str, dtype) -> jax.Array:
    n0 = shape[0]
    i = jnp.arange(n0, dtype=dtype)
    prof = 1 - (i + 0.5) / n0 if boundary == "half_voxel" else 1 - (i + 1) / (n0 + 1)
    return sten.pad(jnp.broadcast_to(prof[:, None, None], shape).astype(dtype))


def _start(st, rtol, percolates, opts: SolverOptions, dtype, diag_dtype=None):
    """Linear system of the operator ``st`` and the initial CG state."""
    prob = cg.make_problem(st, opts.preconditioner, sweeps=opts.sweeps, diag_dtype=diag_dtype)
    return prob, _initial(prob, rtol, percolates, opts, dtype)


def _scale(x: jax.Array) -> jax.Array:
    """The largest value (1 if none is positive): conductivities are solved divided by it."""
    top = jnp.max(x)
    return jnp.where(top > 0, top, 1)


def _prepare(sigma: jax.Array, rtol, opts: SolverOptions):
    """Percolating cluster, linear system and initial CG state (inputs: axis-0 field)."""
    cluster, percolates = percolating_cluster(sigma > 0, axis=0)
    active_sigma = jnp.where(cluster, sigma / _scale(sigma), 0)
    prob, state = _start(sten.from_conductivity(active_sigma, opts.boundary), rtol, percolates, opts, sigma.dtype)
    return prob, state, cluster, percolates


def _result(sigma_eff, sigma_ref, eps, percolates, state: cg.State, dtype) -> TransportResult:
    sigma_eff = jnp.where(percolates, sigma_eff, 0)
    ref = jnp.asarray(sigma_ref, dtype)
    m = sigma_eff / ref
    safe_m = jnp.where(m > 0, m, 1)
    tau = jnp.where(m > 0, eps / safe_m, jnp.inf)
    return TransportResult(
        sigma_eff=sigma_eff,
        m_factor=m,
        eps=eps,
        tau_eff=tau,
        sigma_ref=ref,
        flux_imbalance=state.imbalance,
        relative_residual=jnp.where(percolates, state.res, 0).astype(dtype),
        iterations=state.iterations,
        converged=state.converged,
        percolates=percolates,
    )


def _finish(sigma, sigma_ref, cluster, percolates, state: cg.State, opts: SolverOptions) -> TransportResult:
    """Differentiable read-out: sigma_eff from the dissipation with ``u`` held fixed.

    The field enters divided by its (gradient-stopped) maximum ``c`` and ``sigma_eff`` is
    multiplied by ``c``: exact, since ``sigma_eff`` is homogeneous of degree 1 in ``sigma``.
    """
    n0, n1, n2 = sigma.shape
    c = jax.lax.stop_gradient(_scale(sigma))
    st = sten.from_conductivity(jnp.where(cluster, sigma / c, 0), opts.boundary)
    u = jax.lax.stop_gradient(state.u)
    sigma_eff = c * sten.dissipation(st, u) * (_length(n0, opts.boundary) / (n1 * n2))
    eps = jnp.mean((sigma > 0).astype(sigma.dtype))
    return _result(sigma_eff, sigma_ref, eps, percolates, state, sigma.dtype)


def _solve(sigma: jax.Array, sigma_ref: jax.Array, tols, opts: SolverOptions) -> TransportResult:
    """``tols = (rtol, flux_tol, max_iter)`` are traced (no recompilation when they change);
    ``opts`` supplies the static choices (preconditioner, boundary, guess, sweeps)."""
    rtol, flux_tol, max_iter = tols
    prob, state, cluster, percolates = _prepare(jax.lax.stop_gradient(sigma), rtol, opts)
    state = cg.advance(prob, state, max_iter, rtol, flux_tol)
    return _finish(sigma, sigma_ref, cluster, percolates, state, opts)


# ---- labelled volumes: the operator is looked up from 1-byte class codes -------------------

#: Storage dtype of the finest multigrid level's inverse diagonal on the labelled path.
LABEL_DIAG_DTYPE = jnp.uint16  # bfloat16 bits


def _classes(labels: jax.Array, codes: tuple, dtype):
    """``uint8`` class codes of the percolating cluster (0 elsewhere), the conducting fraction
    and whether anything percolates.

    ``labels``: integer ``(n0, n1, n2)`` (axis 0 = transport); ``codes[j - 1]`` is the label
    of class ``j``; other labels insulate.
    """
    cls = jnp.zeros(labels.shape, jnp.uint8)
    for j, lab in enumerate(codes, start=1):
        cls = jnp.where(labels == lab, jnp.uint8(j), cls)
    conducting = cls > 0
    eps = jnp.mean(conducting, dtype=dtype)
    cluster, percolates = percolating_cluster(conducting, axis=0)
    return jnp.where(cluster, cls, jnp.uint8(0)), eps, percolates


def _label_problem(cls: jax.Array, values: jax.Array, opts: SolverOptions, dtype) -> cg.Problem:
    """Operator and preconditioner of class codes ``cls`` with conductivities ``values[j - 1]`` (> 0)."""
    values = jnp.asarray(values, dtype)
    st = sten.from_codes(cls, values / _scale(values), opts.boundary, dtype)
    diag_dtype = LABEL_DIAG_DTYPE if jnp.dtype(dtype) == jnp.float32 else None
    return cg.make_problem(st, opts.preconditioner, sweeps=opts.sweeps, diag_dtype=diag_dtype)


def _guess(prob: cg.Problem, opts: SolverOptions, dtype) -> jax.Array:
    """The padded initial guess (``opts.initial_guess``)."""
    shape = prob.stencil.shape
    if opts.initial_guess == "linear":
        return _linear_guess(shape, opts.boundary, dtype)
    return sten.pad(jnp.zeros(shape, dtype))


def _initial(prob: cg.Problem, rtol, percolates, opts: SolverOptions, dtype) -> cg.State:
    """Initial CG state (``opts.initial_guess``)."""
    return cg.initial_state(prob, _guess(prob, opts, dtype), rtol, percolates)


def _initial_residual(prob: cg.Problem, opts: SolverOptions, dtype):
    """Residual, dissipation and inlet current of the guess, from face sums (no guess is stored)."""
    return sten.guess_start(prob.stencil, opts.initial_guess, opts.boundary)


def _prepare_labels(labels: jax.Array, values: jax.Array, rtol, codes: tuple, opts: SolverOptions, dtype):
    """Class codes of the percolating cluster, linear system and initial CG state (one program)."""
    cls, eps, percolates = _classes(labels, codes, dtype)
    prob = _label_problem(cls, values, opts, dtype)
    return prob, cg.state_from_residual(prob, *_initial_residual(prob, opts, dtype), rtol, percolates), eps, percolates


def _finish_labels(values, sigma_ref, eps, percolates, state: cg.State, opts: SolverOptions):
    """Read-out of a labelled solve: ``sigma_eff`` from the tracked dissipation (``u`` is not kept)."""
    dtype = state.r.dtype
    n0, n1, n2 = (n - 2 for n in state.r.shape)
    d = state.dissipation[0]
    sigma_eff = _scale(jnp.asarray(values, dtype)) * d * (_length(n0, opts.boundary) / (n1 * n2))
    return _result(sigma_eff, sigma_ref, eps, percolates, state, dtype)


def _solve_labels(labels, values, sigma_ref, tols, codes: tuple, opts: SolverOptions, dtype) -> TransportResult:
    rtol, flux_tol, max_iter = tols
    prob, state, eps, percolates = _prepare_labels(labels, values, rtol, codes, opts, dtype)
    state = cg.advance(prob, state, max_iter, rtol, flux_tol)
    return _finish_labels(values, sigma_ref, eps, percolates, state, opts)


def _static(opts: SolverOptions) -> SolverOptions:
    """The options with the traced and host-only fields reset, so that they do not key the jit cache."""
    return dataclasses.replace(opts, rtol=0.5, flux_tol=1.0, max_iter=1, chunk=1)


def _tols(opts: SolverOptions, dtype):
    return (jnp.asarray(opts.rtol, dtype), jnp.asarray(opts.flux_tol, dtype), jnp.asarray(opts.max_iter, jnp.int32))


#: XLA:CPU options of the solver's programs: no YNNPACK library fusions. Those take stencil
#: slices as separate materialised inputs (about 50 bytes per voxel per operator application
#: and half the speed); XLA's own loop fusion computes the face lookups in place.
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


class _Jit:
    """``jax.jit`` with :data:`CPU_COMPILER_OPTIONS` on the CPU backend (none elsewhere)."""

    def __init__(self, fun, **kw):
        self._fun, self._kw, self._by_backend = fun, kw, {}

    def _get(self, traced: bool = False):
        # inside another trace (jit / grad / vmap of a caller) only a plain jit may nest
        backend = "traced" if traced else jax.default_backend()
        if backend not in self._by_backend:
            opts = CPU_COMPILER_OPTIONS if backend == "cpu" else None
            self._by_backend[backend] = jax.jit(self._fun, compiler_options=opts, **self._kw)
        return self._by_backend[backend]

    def __call__(self, *args):
        traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(args))
        return self._get(traced)(*args)

    def lower(self, *args):
        return self._get().lower(*args)

    def compile(self, *args):
        """The compiled program for ``args`` (arrays or ``ShapeDtypeStruct`` pytrees); call it
        with the non-static arguments only."""
        return self.lower(*args).compile()


_solve_jit = _Jit(_solve, static_argnums=3)
_prepare_jit = _Jit(_prepare, static_argnums=2)
_finish_jit = _Jit(_finish, static_argnums=5)
# the state is dead once advanced: its buffers are reused (no second copy of the CG vectors)
_advance_jit = _Jit(cg.advance, donate_argnums=1)
_solve_labels_jit = _Jit(_solve_labels, static_argnums=(4, 5, 6))
_classes_jit = _Jit(_classes, static_argnums=(1, 2))
_label_problem_jit = _Jit(_label_problem, static_argnums=(2, 3))
_initial_residual_jit = _Jit(_initial_residual, static_argnums=(1, 2))
_from_residual_jit = _Jit(cg.state_from_residual, donate_argnums=1)  # r: its buffer is reused
_finish_labels_jit = _Jit(_finish_labels, static_argnums=5)


def _advance_chunked(prob, state, tols, max_iter: int, progress, chunk: int, advance=None) -> cg.State:
    """Advance in chunks of ``chunk`` iterations, calling ``progress(state)`` between them.

    ``advance(prob, state, stop, rtol, flux_tol)``: default :data:`_advance_jit`."""
    rtol, flux_tol, _ = tols
    advance = _advance_jit if advance is None else advance
    progress(state)
    while not bool(state.finished(max_iter)):
        stop = min(int(state.iterations) + int(chunk), max_iter)
        state = advance(prob, state, jnp.asarray(stop, jnp.int32), rtol, flux_tol)
        progress(state)
    return state


def _stage(name: str, program, *args):
    """Run one compiled stage of the labelled solve and release the heap it freed (a hook for
    memory traces: ``experiments/benchmarks/trace_transport_memory.py`` wraps it)."""
    out = program(*args)
    release_freed_memory()
    return out


#: Compiled labelled solves by shape, dtype and options (the most recent few).
_LABEL_PROGRAMS: dict = {}


def _label_programs(labels, values, sigma_ref, tols, codes: tuple, static: SolverOptions, dtype) -> dict:
    """The labelled solve's six programs, compiled from shapes alone before any volume-sized
    array exists: compilation's heap then does not add to the solve's peak. Cached."""
    key = (labels.shape, labels.dtype, labels.sharding, values.shape, codes, static, jnp.dtype(dtype))
    if key not in _LABEL_PROGRAMS:
        if len(_LABEL_PROGRAMS) >= 8:
            _LABEL_PROGRAMS.pop(next(iter(_LABEL_PROGRAMS)))
        _LABEL_PROGRAMS[key] = _compile_label_programs(labels, values, sigma_ref, tols, codes, static, dtype)
    return _LABEL_PROGRAMS[key]


def _compile_label_programs(labels, values, sigma_ref, tols, codes: tuple, static: SolverOptions, dtype) -> dict:
    """Each stage compiled from the output shapes of the one before (``out_info``)."""
    rtol, flux_tol, _ = tols
    out = {"classes": _classes_jit.compile(labels, codes, dtype)}
    cls, eps, percolates = out["classes"].out_info
    out["problem"] = _label_problem_jit.compile(cls, values, static, dtype)
    prob = out["problem"].out_info
    out["residual"] = _initial_residual_jit.compile(prob, static, dtype)
    out["start"] = _from_residual_jit.compile(prob, *out["residual"].out_info, rtol, percolates)
    state = out["start"].out_info
    stop = jax.ShapeDtypeStruct((), jnp.int32)
    out["advance"] = _advance_jit.compile(prob, state, stop, rtol, flux_tol)
    out["finish"] = _finish_labels_jit.compile(values, sigma_ref, eps, percolates, state, static)
    release_freed_memory()
    return out


#: Keywords of the solve besides the ``SolverOptions`` fields.
CALL_OPTIONS = ("progress", "dtype")


def _options(options, option_kw) -> SolverOptions:
    fields = tuple(f.name for f in dataclasses.fields(SolverOptions))
    unknown = sorted(k for k in option_kw if k not in fields)
    if unknown:
        raise ValueError(f"unknown solver option(s) {', '.join(map(repr, unknown))}; allowed: "
                         f"{', '.join(fields + CALL_OPTIONS)}")
    if options is None:
        return SolverOptions(**option_kw)
    if not isinstance(options, SolverOptions):
        raise ValueError(f"options must be a SolverOptions, got {type(options).__name__}")
    if option_kw:
        return dataclasses.replace(options, **option_kw)
    return options


def _check_shape(sigma) -> None:
    if sigma.ndim != 3:
        raise ValueError(f"expected a 3D (z, y, x) conductivity field, got shape {sigma.shape}")
    if min(sigma.shape) < 1:
        raise ValueError(f"the volume is empty: shape {sigma.shape}")


def _host_scale(host: np.ndarray, dtype) -> float:
    """Check a concrete conductivity field on the host (in its own precision, where small values
    are not flushed to zero) and return its largest value, by which it is solved divided (only
    ratios matter, so any finite positive values work in ``dtype``)."""
    if not np.issubdtype(host.dtype, np.number) or np.issubdtype(host.dtype, np.complexfloating):
        raise ValueError(f"conductivities must be real numbers, got dtype {host.dtype}")
    if np.isnan(host).any():
        raise ValueError("conductivities must not be NaN")
    if not np.isfinite(host).all():
        raise ValueError("conductivities must be finite")
    low = host.min()
    if low < 0:
        raise ValueError(f"conductivities must be >= 0, got a minimum of {float(low)}")
    top = float(host.max())
    if not top > 0:
        raise ValueError("no conducting voxel: the conducting phase is absent (all conductivities are 0)")
    return top


def check_ratios(values, dtype) -> float:
    """The largest of ``values`` (finite, >= 0, at least one > 0); ``ValueError`` when a positive
    value divided by it is below ``dtype``'s smallest normal number (it would solve as 0)."""
    values = [float(v) for v in values]
    top = max(values)
    tiny = float(jnp.finfo(dtype).tiny)
    small = [v for v in values if 0 < v / top < tiny]
    if small:
        raise ValueError(f"conductivity {small[0]:g} is {small[0] / top:.3g} times the largest ({top:g}): below "
                         f"{jnp.dtype(dtype).name}'s smallest normal ratio {tiny:.3g}, it would solve as 0; "
                         "set it to 0 (insulating) or use dtype=float64")
    return top


def _unscale(result: TransportResult, scale: float, sigma_ref) -> TransportResult:
    """The result of a solve on conductivities divided by ``scale`` in the input's units:
    ``sigma_eff * scale`` and ``sigma_ref`` (``M`` and ``tau_eff`` are ratios, unchanged).
    Concrete results are scaled in float64 on the host (no flush of tiny values)."""
    if scale == 1.0:
        return result
    eff = result.sigma_eff
    if isinstance(eff, jax.core.Tracer) or isinstance(result.sigma_ref, jax.core.Tracer):
        new = (eff * scale, result.sigma_ref * scale)
    else:
        dt = np.asarray(eff).dtype
        new = (jnp.asarray((np.asarray(eff, np.float64) * scale).astype(dt)),
               jnp.asarray(np.asarray(np.float64(sigma_ref), np.float64).astype(dt)))
    return eqx.tree_at(lambda r: (r.sigma_eff, r.sigma_ref), result, new)


def _check_ref(sigma_ref):
    """``sigma_ref`` > 0 and finite when concrete (a traced value is used as it is)."""
    if sigma_ref is None or isinstance(sigma_ref, jax.core.Tracer):
        return sigma_ref
    return check_positive(sigma_ref, "sigma_ref")


def effective_conductivity(
    sigma: jax.Array,
    axis: int | str = 0,
    *,
    sigma_ref: float | jax.Array | None = None,
    options: SolverOptions | None = None,
    progress: Callable[[cg.State], None] | None = None,
    dtype=jnp.float32,
    **option_kw,
) -> TransportResult:
    """Effective conductivity, M-factor and tortuosity of a voxel conductivity field.

    Solves ``div(sigma grad u) = 0`` with ``u = 1 / 0`` on the two faces normal to ``axis``
    and no flux elsewhere (harmonic-mean face conductances), by preconditioned CG.

    Args:
        sigma: ``(z, y, x)`` conductivities ``>= 0`` (any units; 0 = insulating). Under
            ``jax.grad`` the result is differentiable in ``sigma`` (implicit, see module doc).
        axis: transport direction, ``'z'|'y'|'x'`` or ``0|1|2``.
        sigma_ref: intrinsic reference conductivity for ``M`` (default: ``max(sigma)``).
        options: a ``SolverOptions``; or pass its fields as keywords (``rtol=1e-6``, ``chunk=5``).
        progress: optional ``callback(state)`` run between chunks of ``options.chunk`` CG
            iterations (for progress bars; this path is not jittable / vmappable / differentiable).
        dtype: floating dtype of the volume-sized arrays (default float32).

    Returns:
        ``TransportResult`` (jittable; ``jax.vmap`` over a leading batch axis of ``sigma``).
    """
    options = _options(options, option_kw)
    ax = axis_index(axis)
    dtype = check_dtype_floating(dtype)
    sigma_ref = _check_ref(sigma_ref)
    scale = 1.0
    if isinstance(sigma, jax.core.Tracer):  # values unknown under jit / vmap / grad tracing
        sigma = jnp.asarray(sigma, dtype)
        _check_shape(sigma)
    else:
        host = np.asarray(sigma)
        _check_shape(host)
        scale = _host_scale(host, dtype)
        check_ratios([np.min(host, initial=scale, where=host > 0), scale], dtype)
        if scale != 1.0:  # solved divided by the largest value (float64 on the host): only ratios matter
            scaled = host.astype(np.float64)
            scaled /= scale
            sigma = scaled.astype(dtype)
            del scaled
            sigma_ref = scale if sigma_ref is None else sigma_ref
        sigma = jnp.asarray(sigma, dtype)
    sigma = jnp.moveaxis(sigma, ax, 0)
    ref = sigma_ref
    if sigma_ref is None:
        sigma_ref = jnp.max(sigma)
    elif scale != 1.0:
        sigma_ref = sigma_ref / scale
    tols = _tols(options, sigma.dtype)
    static = _static(options)
    if progress is None:
        return _unscale(_solve_jit(sigma, sigma_ref, tols, static), scale, ref)
    prob, state, cluster, percolates = _prepare_jit(sigma, tols[0], static)
    state = _advance_chunked(prob, state, tols, options.max_iter, progress, options.chunk)
    del prob
    return _unscale(_finish_jit(sigma, sigma_ref, cluster, percolates, state, static), scale, ref)


def label_conductivity(
    labels,
    conductivity: dict,
    axis: int | str = 0,
    *,
    sigma_ref: float | None = None,
    options: SolverOptions | None = None,
    progress: Callable[[cg.State], None] | None = None,
    dtype=jnp.float32,
    **option_kw,
) -> TransportResult:
    """Effective conductivity of a labelled volume, ``{label: sigma}`` (the memory-lean path).

    The same solve as :func:`effective_conductivity` on the field ``sigma[labels]``, but the
    operator is stored as one ``uint8`` class code per voxel (face conductances are looked up
    when used) and the finest level's inverse diagonal as bfloat16, and the potential ``u``
    is not kept (the dissipation and the plane currents are tracked as scalars, see
    :mod:`jaxcba.transport.cg`): about 1 + 2 + 8 (the CG vectors ``r, p``) + 3 (coarse
    levels) bytes per voxel in float32. Not differentiable (labels are integers).

    Args:
        labels: integer ``(z, y, x)`` volume.
        conductivity: ``{label: sigma}``, finite ``sigma >= 0``, at least one ``> 0``; labels
            not listed insulate. Only ratios matter: the values are solved divided by the largest.
        sigma_ref: reference for ``M`` (default: the largest value).
        progress, options, dtype, **option_kw: as for :func:`effective_conductivity`
            (the state handed to ``progress`` is valid only during the call).
    """
    options = _options(options, option_kw)
    ax = axis_index(axis)
    dtype = check_dtype_floating(dtype)
    ref = _check_ref(sigma_ref)
    given = {}
    for k, v in dict(conductivity).items():
        given[int(k)] = check_positive(v, f"conductivity of label {k}", allow_zero=True)
    items = sorted((k, v) for k, v in given.items() if v > 0)
    if not items:
        raise ValueError("no conducting label: every conductivity is 0")
    codes = tuple(k for k, _ in items)
    # solved divided by the largest value (in float64 here): only ratios matter, so any finite
    # positive values work in float32 (1e-38 would be flushed to 0 there, 1e38 overflow)
    scale = check_ratios([v for _, v in items], dtype)
    values = jnp.asarray([v / scale for _, v in items], dtype)
    ref = scale if ref is None else ref
    sigma_ref = ref / scale
    labels = jnp.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"expected a 3D (z, y, x) labelled volume, got shape {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    labels = jnp.moveaxis(labels, ax, 0)
    tols = _tols(options, jnp.dtype(dtype))
    static = _static(options)
    dtype = jnp.dtype(dtype)
    if isinstance(labels, jax.core.Tracer):  # inside a caller's jit / vmap: one program
        if progress is not None:
            raise ValueError("progress= needs concrete labels (it is not available under jit / vmap)")
        return _unscale(_solve_labels_jit(labels, values, sigma_ref, tols, codes, static, dtype), scale, ref)
    # Concrete labels: one program per stage, so that no stage's temporaries meet another's
    # buffers (the peak is the CG loop's: codes, inverse diagonal, coarse levels, r, p, x1).
    # The guess lives only in the program of its residual: the solve never holds u, r, p at once.
    sigma_ref = jnp.asarray(sigma_ref, dtype)
    run = _label_programs(labels, values, sigma_ref, tols, codes, static, dtype)
    cls, eps, percolates = _stage("classes", run["classes"], labels)
    del labels
    prob = _stage("problem", run["problem"], cls, values)
    del cls
    r, d, j0 = _stage("residual", run["residual"], prob)
    state = _stage("start", run["start"], prob, r, d, j0, tols[0], percolates)
    del r
    chunk = options.chunk
    if progress is None:
        progress, chunk = (lambda s: None), options.max_iter
    advance = lambda *a: _stage("advance", run["advance"], *a)  # noqa: E731
    state = _advance_chunked(prob, state, tols, options.max_iter, progress, chunk, advance)
    return _unscale(_stage("finish", run["finish"], values, sigma_ref, eps, percolates, state), scale, ref)
