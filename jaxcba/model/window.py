"""Checking a simulation window and its memory needs before anything is allocated."""

from __future__ import annotations

import math
import os
from numbers import Integral, Real

import jax

#: Fixed overhead of a realization beyond the per-voxel arrays (slabs, boxes, runtime).
_OVERHEAD = 256 << 20


def check_window(shape, voxel_nm) -> tuple[tuple[int, int, int], float]:
    """Validate ``shape`` (an int or three ints >= 1, as (z, y, x)) and ``voxel_nm`` (finite > 0).

    Returns ``((nz, ny, nx), voxel_nm)``; raises ``ValueError`` saying what is allowed.
    """
    if isinstance(shape, Integral) and not isinstance(shape, bool):
        shape = (int(shape),) * 3
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"shape must be an int or three ints (z, y, x), got {shape!r}") from None
    if len(dims) != 3 or not all(isinstance(d, Integral) and not isinstance(d, bool) for d in dims):
        raise ValueError(f"shape must be an int or three ints (z, y, x), got {shape!r}")
    if any(int(d) < 1 for d in dims):
        raise ValueError(f"every side of shape must be >= 1 voxel, got {tuple(int(d) for d in dims)}")
    from jaxcba._checks import check_voxel_nm

    if isinstance(voxel_nm, bool) or not isinstance(voxel_nm, Real) or not math.isfinite(voxel_nm) or voxel_nm <= 0:
        raise ValueError(f"voxel_nm must be a finite number > 0 [nm], got {voxel_nm!r}")
    return tuple(int(d) for d in dims), check_voxel_nm(voxel_nm)


def realization_bytes(shape, batch: int = 1) -> int:
    """Estimated peak bytes of :func:`jaxcba.simulate` for ``batch`` windows of ``shape``.

    One complex64 half-spectrum (8 * nz * ny * (nx//2+1)), the uint8 labels and the
    copy handed back (2 * n), the spectrum octant and its transforms, plus a fixed
    overhead: ~6.5 bytes per voxel for large windows.
    """
    nz, ny, nx = shape
    n = nz * ny * nx
    half = nz * ny * (nx // 2 + 1)
    octant = (nz // 2 + 1) * (ny // 2 + 1) * (nx // 2 + 1)
    return batch * (8 * half + 2 * n + 16 * octant) + _OVERHEAD


def available_bytes() -> int | None:
    """Free memory of the default device (GPU/TPU memory stats, else the host's MemAvailable)."""
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


def check_memory(shape, batch: int = 1, what: str = "this window") -> None:
    """``ValueError`` if the estimated need exceeds the available memory."""
    need = realization_bytes(shape, batch)
    free = available_bytes()
    if free is not None and need > free:
        raise ValueError(
            f"{what} {'x'.join(map(str, shape))}{f' (batch {batch})' if batch > 1 else ''} needs about "
            f"{need / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB is available; use a smaller window "
            "or a coarser voxel_nm"
        )


__all__ = ["check_window", "realization_bytes", "available_bytes", "check_memory"]
