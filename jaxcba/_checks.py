"""The one validation layer of jaxcba: checks of concrete inputs, done in Python before any
tracing or allocation, and atomic output writes.

Every check raises ``ValueError`` with a message that names the argument, the value given
and what is allowed (the command line turns it into one line on stderr and exit status 2).
Each returns the normalised value, so a caller writes ``voxel_nm = check_voxel_nm(voxel_nm)``.

Stable API (used by the CLI, the model, theory, batch and calibrate):

- numbers: :func:`check_number`, :func:`check_positive`, :func:`check_int`,
  :func:`check_fraction`, :func:`check_voxel_nm`, :func:`check_finite_result`;
- identities: :func:`check_key` (an int seed or a ``jax.random`` key), :func:`parse_axis`
  (``0|1|2`` or ``z|y|x``, the one rule of every command), :func:`check_dtype_floating`;
- cost: :func:`available_bytes` (free device or host memory), :func:`check_memory` /
  :func:`check_work` (an estimate against a limit, ``force`` to override), and calibrate's
  :func:`check_stage3_cost` / :func:`check_joint_cost`;
- outputs: :func:`check_output_path` (before any work), :func:`write_atomic` /
  :func:`write_text_atomic` (temp file + rename, umask-respecting mode).

This module imports neither JAX nor NumPy at import time.
"""

from __future__ import annotations

import math
import os
import tempfile
from numbers import Integral, Real
from pathlib import Path
from typing import Callable, Iterable

#: Allowed voxel sides [nm]: a tenth of an atom to a millimetre. Outside this range the
#: model's densities under- or overflow (NaN / inf) in float64.
VOXEL_NM_RANGE = (1e-2, 1e6)
#: Integer seeds accepted by :func:`check_key` (those ``jax.random.key`` takes: int64).
SEED_RANGE = (-(2**63), 2**63 - 1)
#: Axis names, in array order (z, y, x).
AXES = ("z", "y", "x")
#: How a refused estimate is overridden (said at the end of the message).
OVERRIDE = "--force, or check_memory=False in Python, to try anyway"


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------- numbers
def check_number(value, name: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                 hi_open: bool = False, unit: str = "") -> float:
    """``value`` as a finite Python float in ``[lo, hi]`` (open ends with ``lo_open`` / ``hi_open``).

    Accepts Python and NumPy real scalars and 0-d arrays; refuses ``bool``, strings,
    ``None``, NaN and infinities.
    """
    allowed = _range_text(lo, hi, lo_open, hi_open, unit)
    v = _as_real(value, name, allowed)
    if not math.isfinite(v):
        raise ValueError(f"{name} = {_show(value)} is not finite; allowed: {allowed}")
    if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and (v > hi or (hi_open and v == hi))):
        raise ValueError(f"{name} = {_show(value)} is out of range; allowed: {allowed}")
    return v


def check_positive(value, name: str, *, allow_zero: bool = False, unit: str = "") -> float:
    """A finite float ``> 0`` (``>= 0`` with ``allow_zero``)."""
    return check_number(value, name, lo=0.0, lo_open=not allow_zero, unit=unit)


def check_fraction(value, name: str, *, open_ends: bool = True) -> float:
    """A finite float in ``(0, 1)`` (``[0, 1]`` with ``open_ends=False``)."""
    return check_number(value, name, lo=0.0, hi=1.0, lo_open=open_ends, hi_open=open_ends)


def check_int(value, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as a Python int in ``[lo, hi]``; refuses ``bool``, floats (even ``2.0``) and strings."""
    allowed = _range_text(lo, hi, False, False, "", integer=True)
    if isinstance(value, bool) or not isinstance(value, Integral):
        if not (hasattr(value, "dtype") and getattr(value, "shape", None) == () and value.dtype.kind in ("i", "u")):
            raise ValueError(f"{name} = {_show(value)} is not an integer; allowed: {allowed}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} = {v} is out of range; allowed: {allowed}")
    return v


def check_voxel_nm(value, name: str = "voxel_nm") -> float:
    """A voxel side [nm]: a finite number in :data:`VOXEL_NM_RANGE`."""
    lo, hi = VOXEL_NM_RANGE
    return check_number(value, name, lo=lo, hi=hi, unit="nm")


def check_finite_result(value, name: str):
    """``value`` (a float or array) unchanged if every entry is finite, else ``ValueError`` -
    so that no command reports NaN or inf as a result with success."""
    import numpy as np

    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} is not finite ({_show(value)}): the inputs are outside the range where the "
                         "model's formulas are representable in floating point")
    return value


def _as_real(value, name: str, allowed: str) -> float:
    if isinstance(value, bool) or isinstance(value, (str, bytes)) or value is None:
        raise ValueError(f"{name} = {_show(value)} is not a number; allowed: {allowed}")
    if isinstance(value, Real):
        return float(value)
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        if getattr(value, "shape", None) != ():
            raise ValueError(f"{name} must be a scalar, got an array of shape {tuple(value.shape)}; allowed: {allowed}")
        if value.dtype.kind in ("i", "u", "f"):
            return float(value)
    raise ValueError(f"{name} = {_show(value)} is not a number; allowed: {allowed}")


def _range_text(lo, hi, lo_open, hi_open, unit, integer: bool = False) -> str:
    kind = "an integer" if integer else "a finite number"
    u = f" [{unit}]" if unit else ""
    if lo is not None and hi is not None:
        return f"{kind} in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}{u}"
    if lo is not None:
        return f"{kind} {'>' if lo_open else '>='} {lo:g}{u}"
    if hi is not None:
        return f"{kind} {'<' if hi_open else '<='} {hi:g}{u}"
    return kind + u


# -------------------------------------------------------------------------- identities
def check_key(key, name: str = "key"):
    """A ``jax.random`` key from an int seed in :data:`SEED_RANGE`, or a key passed through.

    Typed keys (``jax.random.key``) and raw ``uint32`` keys of shape ``(2,)`` are returned
    as they are; traced keys are returned unchanged (the caller decides whether it can use one).
    """
    import jax

    if isinstance(key, jax.core.Tracer):
        return key
    if isinstance(key, bool):
        raise ValueError(f"{name} = {key!r} is not a seed; allowed: an integer in [-2^63, 2^63 - 1] or a jax.random key")
    if isinstance(key, Integral) or (hasattr(key, "dtype") and getattr(key, "shape", None) == ()
                                     and getattr(key.dtype, "kind", "") in ("i", "u")):
        seed = int(key)
        if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            raise ValueError(f"{name} = {seed} is out of range; allowed: an integer seed in [-2^63, 2^63 - 1]")
        return jax.random.key(seed)
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if hasattr(key, "dtype") and hasattr(key, "shape") and str(key.dtype) == "uint32" and tuple(key.shape)[-1:] == (2,):
        return key if isinstance(key, jax.Array) else jax.numpy.asarray(key)  # a raw (legacy) key
    raise ValueError(f"{name} = {_show(key)} is not a seed or key; allowed: an integer in [-2^63, 2^63 - 1] "
                     "or a jax.random key")


def parse_axis(value, name: str = "axis") -> int:
    """The transport / measurement axis as ``0, 1, 2``: accepts ``0|1|2`` (ints or digits) and
    ``z|y|x`` (any case) - the one rule of every function and command."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in AXES:
            return AXES.index(text)
        if text in ("0", "1", "2"):
            return int(text)
    elif isinstance(value, Integral) and not isinstance(value, bool) and 0 <= int(value) <= 2:
        return int(value)
    raise ValueError(f"{name} = {_show(value)} is not an axis; allowed: 0|1|2 or z|y|x")


def axis_name(axis) -> str:
    """``'z'``, ``'y'`` or ``'x'`` for any form :func:`parse_axis` accepts."""
    return AXES[parse_axis(axis)]


def check_dtype_floating(dtype, name: str = "dtype"):
    """A NumPy floating dtype (``float16`` ... ``float64``, ``bfloat16``); refuses integers and bools."""
    import jax.numpy as jnp

    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        raise ValueError(f"{name} = {_show(dtype)} is not a dtype; allowed: a floating dtype such as float32") from None
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"{name} = {dt} is not a floating dtype; allowed: float32 or float64 (or bfloat16/float16)")
    return dt


# -------------------------------------------------------------------------------- cost
def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**27 else f"{n / 2**20:.0f} MiB"


def available_bytes() -> int | None:
    """Free memory of the default device (GPU/TPU memory stats, else the host's MemAvailable)."""
    import jax

    try:
        dev = jax.devices()[0]
        if dev.platform != "cpu":
            stats = dev.memory_stats() or {}
            if "bytes_limit" in stats:
                return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    except Exception:  # noqa: BLE001 - fall back to the host figure
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


_TRIM = None  # glibc's malloc_trim once looked up, False where there is none


def release_freed_memory() -> None:
    """Hand the heap's freed pages back to the system (glibc ``malloc_trim``; elsewhere a no-op).

    Compiling an XLA program leaves its heap memory free but resident; a memory-bound solve
    calls this between its stages so that the freed pages do not add to its peak.
    """
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
            _TRIM.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


def check_memory(need_bytes: float, what: str, *, force: bool = False, available: float | None = None,
                 hint: str = "", override: str = OVERRIDE) -> None:
    """``ValueError`` with the estimate and the limit when ``need_bytes`` exceeds the free memory
    (``available``, default :func:`available_bytes`); nothing with ``force``."""
    if force:
        return
    if available is None:
        available = available_bytes()
    if available is not None and need_bytes > available:
        raise ValueError(f"{what} needs about {_gib(need_bytes)} but only {_gib(available)} is available"
                         f"{'; ' + hint if hint else ''} ({override})")


def check_work(amount: float, limit: float, what: str, unit: str, *, force: bool = False, hint: str = "",
               override: str = OVERRIDE) -> None:
    """``ValueError`` when an estimate of the work (``amount`` ``unit``) exceeds ``limit``; nothing with ``force``."""
    if force or not amount > limit:
        return
    if not math.isfinite(amount):
        raise ValueError(f"{what}: the expected number of {unit} is not finite{'; ' + hint if hint else ''}")
    raise ValueError(f"{what} means about {amount:.3g} {unit}, above the limit of {limit:.3g}"
                     f"{'; ' + hint if hint else ''} ({override})")


# ---------------------------------------------------------------- calibration cost
#: Stage 3 (large pores) holds, per realization, its uint8 window of Ξ1 ∪ Ξ2 and a transient
#: copy while balls are carved [bytes per window voxel].
STAGE3_BYTES_PER_VOXEL = 2
#: Trial ``theta`` values of one stage 3 search, typical: a log scan of ~8 points, then up to
#: 12 Brent steps (``ScanBrent``); the work estimate multiplies by this.
STAGE3_EVALS = 20
#: Most realization voxels (realizations x trial thetas x window voxels) one stage 3 search may
#: carve and measure: ~1e11 is ~12 h at the 2.4e6 voxels/s measured on 2 CPU cores (64^3, 8
#: realizations); the paper's 800^3 window with the default 3 realizations is ~3e10.
MAX_STAGE3_VOXELS = 1e11
#: Joint mode: XLA temporaries of one jitted value-and-gradient of the soft loss, per soft voxel
#: and noise draw (measured 490-580 B for 16^3-48^3 windows, float32).
JOINT_BYTES_PER_VOXEL = 600
_FORCE = "--force to try anyway"


def check_stage3_cost(shape, n_realizations: int, *, force: bool = False, available: float | None = None) -> None:
    """Refuse (``ValueError`` with the estimate and the limit) a stage 3 search whose
    ``n_realizations`` realizations of the ``shape`` window [voxels] do not fit in memory
    (:data:`STAGE3_BYTES_PER_VOXEL`) or would carve more than :data:`MAX_STAGE3_VOXELS`
    voxels over :data:`STAGE3_EVALS` trial thetas; nothing with ``force``."""
    n = check_int(n_realizations, "realizations", lo=1)
    voxels = math.prod(int(s) for s in shape)
    what = f"stage 3 with {n} realizations of {'x'.join(map(str, shape))} voxels"
    hint = "use fewer --realizations"
    check_memory(n * voxels * STAGE3_BYTES_PER_VOXEL, what, force=force, available=available, hint=hint,
                 override=_FORCE)
    check_work(n * voxels * STAGE3_EVALS, MAX_STAGE3_VOXELS, what, f"realization voxels ({STAGE3_EVALS} trial thetas)",
               force=force, hint=hint, override=_FORCE)


def check_joint_cost(window, n_noise: int, *, force: bool = False, available: float | None = None) -> None:
    """Refuse (``ValueError``) a joint-mode loss whose ``n_noise`` soft windows of ``window``
    [soft voxels, a 3-tuple] need more memory than is available (:data:`JOINT_BYTES_PER_VOXEL`);
    nothing with ``force``."""
    n = check_int(n_noise, "joint noise draws", lo=1)
    voxels = math.prod(int(s) for s in window)
    check_memory(n * voxels * JOINT_BYTES_PER_VOXEL, f"the joint mode's gradient over {n} soft windows of "
                 f"{'x'.join(map(str, window))} voxels", force=force, available=available,
                 hint="use a smaller --joint-window or fewer --joint-noise", override=_FORCE)


# ----------------------------------------------------------------------------- outputs
def check_output_path(path, name: str = "--out", *, suffixes: Iterable[str] | None = None,
                      folder: bool = False, what: str = "file") -> Path:
    """Check an output path before any work; returns it as a ``Path``.

    A file target (``folder=False``) must not be a directory and must end in one of
    ``suffixes`` (if given); a folder target (``folder=True``) must not be a file. The nearest
    existing ancestor must be a writable directory (missing folders below it are created
    when the output is written); no ancestor may be a file.
    """
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        if not folder:
            raise ValueError(f"{name} {str(path)!r} is not a file name")
    if folder:
        if p.exists() and not p.is_dir():
            raise ValueError(f"{name} {p} exists and is not a folder")
    else:
        if p.is_dir():
            raise ValueError(f"{name} {p} is a folder; give a file name")
        if suffixes is not None:
            allowed = tuple(s.lower() for s in suffixes)
            if p.suffix.lower() not in allowed:
                raise ValueError(f"{name} {p}: unsupported {what} format {p.suffix or '(none)'}; use one of "
                                 f"{', '.join(allowed)}")
    start = p if folder else p.parent
    ancestor = start if str(start) else Path(".")
    while not ancestor.exists():
        if ancestor.is_symlink():
            raise ValueError(f"{name} {p}: {ancestor} is a broken link")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{name} {p}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {p}: folder {ancestor} is not writable")
    if not folder and p.exists() and not os.access(p, os.W_OK) and not os.access(p.parent, os.W_OK):
        raise ValueError(f"{name} {p} is not writable")
    return p


def existing(paths: Iterable) -> list[Path]:
    """Those of ``paths`` that already exist (the command line says it overwrites them)."""
    return [Path(p) for p in paths if p is not None and Path(p).exists()]


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path, write: Callable[[str], None], *, suffix: str = "") -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temp file in the same folder, which is
    then given the usual ``0o666 & ~umask`` mode and renamed over ``path``. On any failure
    (or Ctrl-C) the temp file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path, text: str) -> Path:
    """Write text to ``path`` atomically (see :func:`write_atomic`)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return write_atomic(path, write)


__all__ = ["AXES", "JOINT_BYTES_PER_VOXEL", "MAX_STAGE3_VOXELS", "SEED_RANGE", "STAGE3_BYTES_PER_VOXEL",
           "STAGE3_EVALS", "VOXEL_NM_RANGE", "available_bytes", "axis_name", "check_dtype_floating", "check_finite_result",
           "check_fraction", "check_int", "check_joint_cost", "check_key", "check_memory", "check_number",
           "check_output_path", "check_positive", "check_stage3_cost", "check_voxel_nm", "check_work", "existing",
           "parse_axis", "write_atomic", "write_text_atomic"]
