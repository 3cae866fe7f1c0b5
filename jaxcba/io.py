"""Reading and writing volumes (TIFF stacks and slice folders, .npy, .npz, .raw), label mappings, voxel-size metadata and JSON, atomically."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

LABELS = {"pore": 0, "cb": 1, "graphite": 2}
#: Files :func:`read_volume` understands (a folder of ``.tif`` slices is read as a stack).
VOLUME_SUFFIXES = (".tif", ".tiff", ".npy", ".npz", ".raw")
#: Files :func:`save_volume` writes (with voxel-size metadata).
WRITE_SUFFIXES = (".tif", ".tiff", ".npy")


def _check_suffix(path: Path, allowed=VOLUME_SUFFIXES) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"{path}: unsupported volume format {suffix or '(none)'}; use one of {', '.join(allowed)}")
    return suffix


def _read_raw(path: Path, shape, dtype) -> np.ndarray:
    if shape is None or dtype is None:
        raise ValueError(f"{path}: a .raw file needs shape=(z, y, x) and dtype (CLI: --raw-shape Z,Y,X --raw-dtype uint8)")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{path}: raw shape must be three positive ints (z, y, x), got {shape}")
    dtype = np.dtype(dtype)
    expected = int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        raise ValueError(f"{path}: raw file has {size} bytes but shape {shape} of {dtype} needs {expected}")
    return np.fromfile(path, dtype=dtype).reshape(shape)


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        names = [k for k in z.files if k != "voxel_nm"]
        if key is None:
            if len(names) != 1:
                raise ValueError(f"{path}: holds arrays {names}; say which one (key=...)")
            key = names[0]
        if key not in z.files:
            raise ValueError(f"{path}: no array {key!r}; it holds {names}")
        return z[key]


def _read_tiff(path: Path) -> np.ndarray:
    """A multi-page TIFF as an array; refuses colour (RGB) images, whose channels are not slices."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        if series.axes.endswith("S"):  # samples (colour channels) last: YXS, ZYXS, ...
            raise ValueError(f"{path}: a colour image (axes {series.axes}, shape {series.shape}), not a "
                             "single-channel (z, y, x) stack; convert it to one grey or label channel first")
        return series.asarray()


def _read_tiff_folder(path: Path) -> np.ndarray:
    import tifffile

    files = sorted(f for f in path.iterdir() if f.suffix.lower() in (".tif", ".tiff"))
    if not files:
        raise ValueError(f"{path}: folder holds no .tif slices")
    slices = []
    for f in files:
        try:
            img = tifffile.imread(f)
        except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
            raise ValueError(f"{f}: cannot read slice ({type(exc).__name__}: {exc})") from None
        if img.ndim != 2 or (slices and img.shape != slices[0].shape):
            if img.ndim == 3 and img.shape[-1] in (3, 4):
                raise ValueError(f"{f}: a colour slice of shape {img.shape}; expected single-channel 2D slices")
            raise ValueError(f"{f}: slice of shape {img.shape} does not match {slices[0].shape if slices else '2D'}")
        slices.append(img)
    return np.stack(slices)


def read_volume(path: str | Path, *, mapping: dict | None = None, labels: bool = True, shape=None, dtype=None,
                key: str | None = None) -> np.ndarray:
    """Read a 3D ``(z, y, x)`` volume from a multi-page TIFF, a folder of TIFF slices
    (sorted by name, one slice per z), ``.npy``, ``.npz`` or ``.raw``.

    Args:
        path: the file or folder.
        mapping: raw value -> label, e.g. ``{0: 0, 128: 1, 255: 2}``; applied before checking.
        labels: check (after ``mapping``) that only 0 pore, 1 cb, 2 graphite occur and return
            ``uint8``; ``False`` returns the stored values (grey values, probabilities).
        shape, dtype: for ``.raw`` only: ``(z, y, x)`` and the element type.
        key: array name inside an ``.npz`` holding several.

    Raises ``ValueError`` naming the file for unreadable, truncated or invalid input.
    """
    path = Path(path)
    if path.is_dir():
        vol = _read_tiff_folder(path)
    else:
        suffix = _check_suffix(path)
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        try:
            if suffix == ".npy":
                vol = np.load(path, allow_pickle=False)
            elif suffix == ".npz":
                vol = _read_npz(path, key)
            elif suffix == ".raw":
                vol = _read_raw(path, shape, dtype)
            else:
                vol = _read_tiff(path)
        except ValueError as exc:
            msg = str(exc)
            raise ValueError(msg if msg.startswith(str(path)) else f"{path}: cannot read volume ({msg})") from None
        except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
            raise ValueError(f"{path}: cannot read volume ({type(exc).__name__}: {exc})") from None
    vol = np.asarray(vol)
    if vol.ndim != 3:
        raise ValueError(f"{path}: expected a 3D (z, y, x) volume, got shape {vol.shape}")
    if mapping is not None:
        vol = map_labels(vol, mapping, name=str(path))
    if labels:
        vol = check_labels(vol, name=str(path))
    return vol


def load_volume(path: str | Path, *, labels: bool = True, **kwargs) -> np.ndarray:
    """Load a labelled (default) or grey-value volume; see :func:`read_volume`."""
    return read_volume(path, labels=labels, **kwargs)


def map_labels(vol: np.ndarray, mapping: dict, name: str = "volume") -> np.ndarray:
    """Map raw values to labels by ``mapping`` (value -> 0/1/2); every value must be mapped."""
    vol = np.asarray(vol)
    bad_targets = {k: v for k, v in mapping.items() if v not in (0, 1, 2)}
    if bad_targets:
        raise ValueError(f"label mapping targets must be 0 (pore), 1 (cb), 2 (graphite); got {bad_targets}")
    if np.issubdtype(vol.dtype, np.integer):
        info = np.iinfo(vol.dtype)
        outside = [k for k in mapping if not (isinstance(k, (int, np.integer)) and info.min <= k <= info.max)]
        if outside:
            raise ValueError(f"{name}: label mapping value(s) {outside[:8]} cannot occur in a {vol.dtype} volume "
                             f"(values {info.min}..{info.max})")
    values = np.unique(vol)
    unmapped = [v.item() for v in values if v.item() not in mapping]
    if unmapped:
        raise ValueError(f"{name}: value(s) {unmapped[:8]} have no entry in the label mapping {dict(mapping)}")
    lut_keys = np.array(list(mapping.keys()), dtype=vol.dtype)
    lut_vals = np.array(list(mapping.values()), dtype=np.uint8)
    order = np.argsort(lut_keys)
    idx = np.searchsorted(lut_keys[order], vol)
    return lut_vals[order][idx]


def parse_mapping(text: str) -> dict:
    """``"0=0,128=1,255=2"`` -> ``{0: 0, 128: 1, 255: 2}`` (CLI ``--labels``); a raw value given
    twice is refused (even with the same label), so no mapping silently wins."""
    out = {}
    for item in text.split(","):
        try:
            raw, lab = item.split("=")
            raw, lab = int(raw), int(lab)
        except ValueError:
            raise ValueError(f"label mapping {text!r}: expected RAW=LABEL pairs like 0=0,128=1,255=2") from None
        if raw in out:
            raise ValueError(f"label mapping {text!r}: raw value {raw} is mapped twice ({raw}={out[raw]} and {raw}={lab})")
        out[raw] = lab
    return out


def read_voxel_size(path: str | Path) -> tuple[float, float, float] | None:
    """Voxel size ``(z, y, x)`` [nm] stored by :func:`save_volume`, or ``None`` if absent."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                ij = tif.imagej_metadata or {}
                page = tif.pages[0]
                if "spacing" not in ij or "XResolution" not in page.tags:
                    return None
                xr = page.tags["XResolution"].value
                yr = page.tags["YResolution"].value
                return (float(ij["spacing"]), float(yr[1] / yr[0]), float(xr[1] / xr[0]))
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return tuple(float(v) for v in z["voxel_nm"]) if "voxel_nm" in z.files else None
        side = Path(str(path) + ".json")
        if side.is_file():
            import json

            return tuple(float(v) for v in json.loads(side.read_text())["voxel_nm_zyx"])
    except (OSError, KeyError, ValueError, TypeError, ZeroDivisionError):
        return None
    return None


def check_labels(vol, name: str = "volume") -> np.ndarray:
    """Return ``vol`` as ``uint8`` after checking it is 3D with labels in {0, 1, 2}."""
    vol = np.asarray(vol)
    if vol.ndim != 3:
        raise ValueError(f"{name}: expected a 3D (z, y, x) volume, got shape {vol.shape}")
    if vol.dtype == bool:
        return vol.astype(np.uint8)
    if not (np.issubdtype(vol.dtype, np.integer) or np.issubdtype(vol.dtype, np.floating)):
        raise ValueError(f"{name}: expected integer labels, got dtype {vol.dtype}")
    if np.issubdtype(vol.dtype, np.integer) and vol.size and 0 <= vol.min() and vol.max() <= 2:
        return vol.astype(np.uint8, copy=False)  # integers in [0, 2]: no sort of the whole volume needed
    values = np.unique(vol)
    bad = values[~np.isin(values, (0, 1, 2))]
    if bad.size:
        raise ValueError(f"{name}: labels must be 0 (pore), 1 (carbon black + binder), 2 (graphite); found {bad[:5].tolist()}")
    return vol.astype(np.uint8, copy=False)


def save_volume(path: str | Path, vol: np.ndarray, voxel_nm=None) -> Path:
    """Write a volume to ``.tif``/``.npy`` atomically (temp file + rename): never half-written.

    ``voxel_nm``: a number or ``(z, y, x)`` [nm]; stored as ImageJ metadata in a TIFF
    (resolution and ``spacing``, unit nm) or, for ``.npy``, in a ``<file>.npy.json``
    sidecar; read back by :func:`read_voxel_size`.
    """
    from jaxcba._checks import write_atomic

    path = Path(path)
    suffix = _check_suffix(path, WRITE_SUFFIXES)
    vol = np.asarray(vol)
    vox = None if voxel_nm is None else tuple(float(v) for v in np.broadcast_to(np.asarray(voxel_nm, float), (3,)))

    def write(tmp: str) -> None:
        if suffix == ".npy":
            np.save(tmp, vol, allow_pickle=False)
        else:
            import tifffile

            if vox is None:
                tifffile.imwrite(tmp, vol)
            else:
                tifffile.imwrite(tmp, vol, imagej=vol.dtype in (np.uint8, np.uint16, np.float32),
                                 resolution=(1.0 / vox[2], 1.0 / vox[1]),
                                 metadata={"spacing": vox[0], "unit": "nm", "axes": "ZYX"})

    write_atomic(path, write, suffix=suffix)
    if suffix == ".npy" and vox is not None:
        import json

        write_text_atomic(str(path) + ".json", json.dumps({"voxel_nm_zyx": list(vox)}) + "\n")
    return path


def strict_json(value):
    """``value`` with every non-finite float replaced by ``None`` (JSON ``null``), recursively
    through dicts, lists and tuples (tuples become lists), so that strict JSON readers accept it;
    the flags beside such values (``percolates``, ``converged``) say why a number is missing. Used
    by every JSON output of jaxcba: the result types, the batch rows, the CLI's ``--json``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def read_json(source: str | Path, what: str = "JSON file"):
    """Parse JSON from a file path, or from text starting with ``{``; ``ValueError`` says
    ``cannot read <what> <source>`` or ``<what> <source> is not valid JSON (line n)``."""
    import json

    text = str(source)
    if not text.lstrip().startswith("{"):
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise ValueError(f"cannot read {what} {source}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = "" if str(source).lstrip().startswith("{") else f" {source}"
        raise ValueError(f"{what}{where} is not valid JSON: {exc.msg} (line {exc.lineno})") from None


def write_csv_atomic(path: str | Path, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts; columns = the union of their keys, in first-seen order) as CSV, atomically."""
    import csv
    import io as _io

    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns)
    w.writeheader()
    w.writerows(rows)
    return write_text_atomic(path, buf.getvalue())


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write text to ``path`` atomically (temp file in the same folder + rename; the file gets the
    usual ``0o666 & ~umask`` mode): :func:`jaxcba._checks.write_text_atomic`."""
    from jaxcba._checks import write_text_atomic as _write

    return _write(path, text)
