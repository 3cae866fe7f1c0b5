"""Checks of the concrete inputs of the public theory functions, in Python before tracing.

The formulas themselves stay pure and jittable; each public function is a thin wrapper that
checks whatever is concrete (traced values inside ``jit``/``grad``/``vmap`` are skipped: no
concrete value exists) and then calls the jitted formula. Python lists become arrays.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxcba._checks import VOXEL_NM_RANGE


def traced(x) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def array_arg(x):
    """Lists and tuples of numbers as an array (the jitted formulas take arrays, not lists)."""
    if isinstance(x, (list, tuple)):
        try:
            return jnp.asarray(x)
        except (TypeError, ValueError):
            raise ValueError(f"expected numbers, got {x!r}") from None
    return x


def _concrete(x, name: str) -> np.ndarray | None:
    if traced(x):
        return None
    if isinstance(x, (str, bytes)) or x is None or isinstance(x, bool):
        raise ValueError(f"{name} = {x!r} is not a number")
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} = {x!r} is not a number (or array of numbers)") from None
    return arr


def _first_bad(arr: np.ndarray, ok: np.ndarray) -> str:
    if arr.ndim == 0:
        return repr(float(arr))
    return f"array of shape {arr.shape} containing {float(arr[~ok].flat[0])!r}"


def check_values(x, name: str, *, lo: float | None = None, lo_open: bool = False, hi: float | None = None,
                 allowed: str | None = None):
    """``x`` unchanged after checking that its concrete entries are finite and in range."""
    arr = _concrete(x, name)
    if arr is None:
        return x
    ok = np.isfinite(arr)
    if lo is not None:
        ok &= (arr > lo) if lo_open else (arr >= lo)
    if hi is not None:
        ok &= arr <= hi
    if not np.all(ok):
        if allowed is None:
            parts = ["finite"]
            if lo is not None:
                parts.append(f"{'>' if lo_open else '>='} {lo:g}")
            if hi is not None:
                parts.append(f"<= {hi:g}")
            allowed = " and ".join(parts)
        raise ValueError(f"{name} = {_first_bad(arr, ok)} is out of range; allowed: {allowed}")
    return x


def check_voxel(voxel_nm, name: str = "voxel_nm"):
    lo, hi = VOXEL_NM_RANGE
    return check_values(voxel_nm, name, lo=lo, hi=hi, allowed=f"a finite number in [{lo:g}, {hi:g}] [nm]")


def check_params(params):
    """``params.validate()`` for a :class:`~jaxcba.CBAParams` (traced fields skipped)."""
    from jaxcba.model.params import CBAParams

    if not isinstance(params, CBAParams):
        raise ValueError(f"params must be a jaxcba.CBAParams, got {type(params).__name__}")
    params.validate()
    return params


def checked(check):
    """Decorator: run ``check(*args, **kwargs)`` (which returns the possibly converted
    ``(args, kwargs)``) before calling the jitted function ``fn``."""

    def wrap(fn):
        @functools.wraps(fn)
        def public(*args, **kwargs):
            args, kwargs = check(*args, **kwargs)
            return fn(*args, **kwargs)

        return public

    return wrap
