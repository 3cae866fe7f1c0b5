"""Checking a simulation window and its memory needs before anything is allocated.

:func:`available_bytes` is the validation layer's (:mod:`jaxcba._checks`), named here too."""

from __future__ import annotations

from numbers import Integral

from jaxcba._checks import available_bytes, check_voxel_nm
from jaxcba._checks import check_memory as _check_bytes

#: Fixed overhead of a realization beyond the per-voxel arrays (slabs, boxes, runtime).
_OVERHEAD = 256 << 20


def check_window(shape, voxel_nm) -> tuple[tuple[int, int, int], float]:
    """Validate ``shape`` (an int or three ints >= 1, as (z, y, x)) and ``voxel_nm``
    (:func:`jaxcba._checks.check_voxel_nm`: a finite number in its range [nm]).

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


def check_memory(shape, batch: int = 1, what: str = "this window") -> None:
    """``ValueError`` if the estimated need (:func:`realization_bytes`) exceeds the available
    memory (:func:`jaxcba._checks.check_memory`)."""
    _check_bytes(realization_bytes(shape, batch), f"{what} {'x'.join(map(str, shape))}"
                 f"{f' (batch {batch})' if batch > 1 else ''}", available=available_bytes(),
                 hint="use a smaller window or a coarser voxel_nm")


__all__ = ["check_window", "realization_bytes", "available_bytes", "check_memory"]
