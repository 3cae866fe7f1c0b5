"""Reading and writing volumes (TIFF via tifffile, NumPy .npy) and JSON, atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

LABELS = {"pore": 0, "cb": 1, "graphite": 2}
VOLUME_SUFFIXES = (".tif", ".tiff", ".npy")


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in VOLUME_SUFFIXES:
        raise ValueError(f"{path}: unsupported volume format {suffix or '(none)'}; use one of {', '.join(VOLUME_SUFFIXES)}")
    return suffix


def load_volume(path: str | Path, *, labels: bool = True) -> np.ndarray:
    """Load a 3D volume ``(z, y, x)`` from ``.tif``/``.tiff``/``.npy``.

    With ``labels=True`` (default) the volume must hold only the labels
    0 (pore), 1 (carbon black + binder), 2 (graphite); it is returned as ``uint8``.
    Raises ``ValueError`` with a one-line reason for unreadable or invalid files.
    """
    path = Path(path)
    suffix = _check_suffix(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        if suffix == ".npy":
            vol = np.load(path, allow_pickle=False)
        else:
            import tifffile

            vol = tifffile.imread(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise ValueError(f"{path}: cannot read volume ({type(exc).__name__}: {exc})") from None
    vol = np.asarray(vol)
    if vol.ndim != 3:
        raise ValueError(f"{path}: expected a 3D (z, y, x) volume, got shape {vol.shape}")
    if labels:
        vol = check_labels(vol, name=str(path))
    return vol


def check_labels(vol, name: str = "volume") -> np.ndarray:
    """Return ``vol`` as ``uint8`` after checking it is 3D with labels in {0, 1, 2}."""
    vol = np.asarray(vol)
    if vol.ndim != 3:
        raise ValueError(f"{name}: expected a 3D (z, y, x) volume, got shape {vol.shape}")
    if vol.dtype == bool:
        return vol.astype(np.uint8)
    if not (np.issubdtype(vol.dtype, np.integer) or np.issubdtype(vol.dtype, np.floating)):
        raise ValueError(f"{name}: expected integer labels, got dtype {vol.dtype}")
    values = np.unique(vol)
    bad = values[~np.isin(values, (0, 1, 2))]
    if bad.size:
        raise ValueError(f"{name}: labels must be 0 (pore), 1 (carbon black + binder), 2 (graphite); found {bad[:5].tolist()}")
    return vol.astype(np.uint8)


def save_volume(path: str | Path, vol: np.ndarray) -> Path:
    """Write a volume to ``.tif``/``.npy`` atomically (temp file + rename): never half-written."""
    path = Path(path)
    suffix = _check_suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        if suffix == ".npy":
            np.save(tmp, np.asarray(vol), allow_pickle=False)
        else:
            import tifffile

            tifffile.imwrite(tmp, np.asarray(vol))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write text to ``path`` atomically (temp file in the same folder + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
