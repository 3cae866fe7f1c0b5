"""Labelled volume -> conductivity field, and the one-call M-factor of a phase (paper Eq. 27).

Labels: 0 pore, 1 carbon black + binder ("cb"), 2 graphite; solid = labels > 0. The paper's
solid-phase M-factor uses ``conductivity={2: 1.0, 1: 0.01}`` (graphite 100 x carbon black +
binder, Section 4) and the pore phase conductivity 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxcba.model.window import available_bytes
from jaxcba.transport.result import TransportResult
from jaxcba._checks import check_dtype_floating
from jaxcba.transport.solver import _unscale, check_ratios, effective_conductivity, label_conductivity

#: Phase name -> the labels it holds.
PHASE_LABELS = {"pore": (0,), "solid": (1, 2), "cb": (1,), "graphite": (2,)}

#: The paper's solid-phase conductivities (graphite 1, carbon black + binder 0.01).
PAPER_SOLID_CONDUCTIVITY = {2: 1.0, 1: 0.01}


def _check_map(phase: str, conductivity: Mapping[int, float] | None) -> dict[int, float]:
    if phase not in PHASE_LABELS:
        raise ValueError(f"unknown phase {phase!r}; allowed: {', '.join(PHASE_LABELS)}")
    own = PHASE_LABELS[phase]
    if conductivity is None:
        return {lab: 1.0 for lab in own}
    out = {}
    for key, value in dict(conductivity).items():
        try:
            lab = int(key)
            val = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"conductivity must map integer labels to numbers, got {key!r}: {value!r}") from None
        if lab not in own:
            raise ValueError(f"label {lab} is not in phase {phase!r} (labels {own}); conductivity keys must be among them")
        if not np.isfinite(val) or val < 0:
            raise ValueError(f"conductivity of label {lab} must be finite and >= 0, got {value!r}")
        out[lab] = val
    missing = [lab for lab in own if lab not in out]
    if missing:
        raise ValueError(f"conductivity gives no value for label(s) {missing} of phase {phase!r}; give every label (0 = insulating)")
    if max(out.values()) <= 0:
        raise ValueError(f"all conductivities of phase {phase!r} are 0: nothing conducts")
    return out


def conductivity_field(labels, phase: str = "pore", conductivity: Mapping[int, float] | None = None, dtype=jnp.float32) -> jax.Array:
    """Per-voxel conductivity ``(..., z, y, x)`` of ``phase`` in a labelled volume.

    Args:
        labels: integer labels (0 pore, 1 cb, 2 graphite), any leading batch axes.
        phase: ``"pore"``, ``"solid"``, ``"cb"`` or ``"graphite"``; voxels outside it get 0.
        conductivity: ``{label: sigma}`` for every label of the phase (default 1 for each),
            e.g. ``{2: 1.0, 1: 0.01}`` for the solid.
    """
    cmap = _check_map(phase, conductivity)
    lab = jnp.asarray(labels)
    sigma = jnp.zeros(lab.shape, dtype)
    for key, val in cmap.items():
        sigma = jnp.where(lab == key, jnp.asarray(val, dtype), sigma)
    return sigma


#: Peak memory of the two solver paths [bytes per voxel of the volume, input and process
#: included], as measured at 400^3 by experiments/benchmarks/bench_scale.py and an RSS trace:
#: the float32 field with stored face conductances (65 at 400^3; 90 leaves room for the
#: first call's compilation), and the labelled path (1-byte class codes, faces looked up when
#: used, no potential kept, programs compiled before the volume's arrays exist: 22.8 at
#: 400^3, of which 3.2 is the runtime; 24 leaves room).
STORED_BYTES_PER_VOXEL = 90.0
LEAN_BYTES_PER_VOXEL = 24.0


def m_factor_bytes(shape, lean: bool) -> int:
    """Estimated peak memory [bytes] of :func:`m_factor` on a ``shape`` volume."""
    return int(np.prod(shape) * (LEAN_BYTES_PER_VOXEL if lean else STORED_BYTES_PER_VOXEL))


def choose_path(shape, lean: bool | str = "auto", check_memory: bool = True) -> bool:
    """``lean`` resolved for a ``shape`` volume: ``"auto"`` takes the labelled solve (a third of
    the stored-face solve's memory and, with its face lookups by one gather, no slower: 256³ on
    the shared 2-core CPU, warm, pore 16.1 against 26.1 s, two-conductivity solid 36.9 against
    60.1 s); ``ValueError`` with the estimate and the limit when the chosen path does not fit
    (unless ``check_memory=False``)."""
    if lean not in (True, False, "auto"):
        raise ValueError(f"lean must be True, False or 'auto', got {lean!r}")
    free = available_bytes()
    if lean == "auto":
        lean = True
    need = m_factor_bytes(shape, lean)
    if check_memory and free is not None and need > free:
        raise ValueError(
            f"the transport solve on a {'x'.join(map(str, shape))} volume needs about {need / 2**30:.1f} GiB "
            f"({'labelled' if lean else 'stored-face'} path) but only {free / 2**30:.1f} GiB is available; "
            "use a smaller window (or check_memory=False to try anyway)"
        )
    return bool(lean)


def m_factor(
    labels,
    phase: str = "pore",
    conductivity: Mapping[int, float] | None = None,
    axis: int | str = "z",
    *,
    lean: bool | str = "auto",
    check_memory: bool = True,
    **solver_kw,
) -> TransportResult:
    """M-factor ``M = sigma_eff / sigma_ref`` and ``tau_eff = eps / M`` of a phase (Eq. 27).

    Args:
        labels: labelled ``(z, y, x)`` volume (0 pore, 1 cb, 2 graphite). Dimensionless: the
            voxel size does not enter (M and tau_eff are ratios).
        phase: ``"pore"`` | ``"solid"`` | ``"cb"`` | ``"graphite"``.
        conductivity: ``{label: sigma}`` for the phase's labels (default 1 each); the paper's
            solid uses ``{2: 1.0, 1: 0.01}``. ``sigma_ref`` is the largest value given. Only
            ratios matter: the values are solved divided by the largest (in float64), so any
            finite values >= 0 work (e.g. 1e-38 or 1e38); a positive ratio below the dtype's
            smallest normal number (1.2e-38 in float32) is refused.
        axis: transport direction ``"z"|"y"|"x"`` or ``0|1|2``.
        lean: ``True`` or ``"auto"`` (default): solve on the labels (about 29 bytes per voxel
            at 400³, 21 at 800³); ``False``: on the float32 conductivity field with stored face
            conductances (``effective_conductivity``, about 65-90 bytes per voxel, no faster;
            :func:`choose_path`). Both give the same M within the solver tolerance.
        check_memory: refuse (``ValueError``, before any work) a volume whose estimated need
            (:func:`m_factor_bytes`) exceeds the available memory.
        **solver_kw: ``SolverOptions`` fields (``rtol``, ``flux_tol``, ``max_iter``,
            ``preconditioner``, ``boundary``, ...) or ``progress=``, ``chunk=``, ``dtype=`` (a
            floating dtype, default float32); an unknown name is a ``ValueError`` listing them.

    Returns:
        ``TransportResult`` with ``eps`` the volume fraction of the phase's conducting voxels.
        Raises ``ValueError`` for an unknown phase, bad conductivities, labels outside
        {0, 1, 2} or a phase absent from the volume.
    """
    cmap = _check_map(phase, conductivity)
    dtype = check_dtype_floating(solver_kw.pop("dtype", jnp.float32))
    scale = check_ratios(cmap.values(), dtype)  # only ratios matter: solved divided by the largest
    if not isinstance(labels, jax.core.Tracer):
        arr = np.asarray(labels)
        if arr.ndim != 3:
            raise ValueError(f"expected a 3D (z, y, x) labelled volume, got shape {arr.shape}")
        from jaxcba.io import check_labels

        arr = check_labels(arr, name="labels")
        if not any(np.any(arr == k) for k, v in cmap.items() if v > 0):
            raise ValueError(f"phase {phase!r} is absent from the volume (no voxel with a conducting label)")
        lean = choose_path(arr.shape, lean, check_memory)
    elif lean == "auto":
        lean = True
    if not lean:
        sigma = conductivity_field(labels, phase, {k: v / scale for k, v in cmap.items()}, dtype)
        return _unscale(effective_conductivity(sigma, axis, sigma_ref=1.0, dtype=dtype, **solver_kw), scale, scale)
    return label_conductivity(labels, cmap, axis, sigma_ref=scale, dtype=dtype, **solver_kw)
