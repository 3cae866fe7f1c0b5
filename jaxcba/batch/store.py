"""Durable results: ``DIR/spec.json`` + append-only ``DIR/results.jsonl`` (one JSON row per job).

Each row is written with one ``write`` of a full line, flushed and ``fsync``-ed before the
next job's row, so a killed run leaves every finished job on disk and at most a partial last
line, which the next run cuts off before appending. Rows are strict JSON: NaN and infinities
are written as ``null``. Process ``i > 0`` of a
multi-process run appends to ``results.p<i>.jsonl``; :func:`load_rows` reads them all.

Within a job, each measure's values are kept in ``DIR/partial/<job>.json`` (written atomically)
as soon as that measure finishes, so an interrupted long job (an 800^3 realization measured for
hours) resumes at its first unfinished measure; the file holds a fingerprint of the job's volume
(:func:`fingerprint`) and is ignored when the rerun's volume differs (other code, another
realization). It is removed once the job's row is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

from jaxcba.io import strict_json, write_text_atomic


def results_path(out_dir: Path, process_index: int = 0) -> Path:
    return out_dir / ("results.jsonl" if process_index == 0 else f"results.p{process_index}.jsonl")


def prepare(out_dir: str | Path, spec_raw: dict) -> Path:
    """Create ``out_dir`` and its ``spec.json``, or check that an existing one holds the same spec."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    spec_file = out / "spec.json"
    text = json.dumps(spec_raw, indent=2, sort_keys=True) + "\n"
    if spec_file.exists():
        try:
            old = json.loads(spec_file.read_text())
        except json.JSONDecodeError:
            raise ValueError(f"{spec_file} is not valid JSON; refusing to write into {out}") from None
        if old != json.loads(text):
            raise ValueError(f"{out} holds results of a different spec ({spec_file}); use another --out")
    elif any(out.glob("results*.jsonl")):
        raise ValueError(f"{out} holds results without a spec.json; use another --out")
    else:
        write_text_atomic(spec_file, text)
    return out


def fingerprint(volume) -> str:
    """A short digest of a labelled volume's shape, dtype and bytes (BLAKE2b, 128 bits)."""
    import numpy as np

    v = np.ascontiguousarray(volume)
    h = hashlib.blake2b(f"{v.shape}{v.dtype}".encode(), digest_size=16)
    h.update(memoryview(v.reshape(-1)).cast("B"))
    return h.hexdigest()


def partial_path(out_dir: Path, job_id: str) -> Path:
    return Path(out_dir) / "partial" / f"{job_id}.json"


def load_partial(out_dir: Path, job_id: str, volume_fingerprint: str) -> dict:
    """The measures already kept for this job: ``{"values": {measure: ...}, "coarse": {factor: {measure: ...}}}``,
    empty when there is no partial file, it is unreadable, or it belongs to another volume."""
    empty = {"values": {}, "coarse": {}}
    path = partial_path(out_dir, job_id)
    try:
        kept = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return empty
    if not isinstance(kept, dict) or kept.get("fingerprint") != volume_fingerprint:
        return empty
    return {"values": dict(kept.get("values", {})), "coarse": {str(f): dict(v) for f, v in kept.get("coarse", {}).items()}}


def save_partial(out_dir: Path, job_id: str, volume_fingerprint: str, done: dict) -> None:
    """Keep the measures finished so far for this job (``done`` as :func:`load_partial` returns it)."""
    text = json.dumps(strict_json({"job": job_id, "fingerprint": volume_fingerprint, **done}), allow_nan=False)
    write_text_atomic(partial_path(out_dir, job_id), text)


def drop_partial(out_dir: Path, job_id: str) -> None:
    """Remove a job's partial file (its row is written)."""
    partial_path(out_dir, job_id).unlink(missing_ok=True)


def remove_empty_partial_folder(out_dir: Path) -> None:
    """Remove ``DIR/partial`` when it holds nothing (call it when no other process may write there)."""
    try:
        (Path(out_dir) / "partial").rmdir()
    except OSError:
        pass


def has_partials(out_dir: Path) -> bool:
    folder = Path(out_dir) / "partial"
    return folder.is_dir() and any(folder.glob("*.json"))


def _repair_tail(path: Path) -> None:
    """Cut a partial last line (a crash mid-write) so the next append starts on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        data = fh.read()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        fh.truncate(keep)


def load_rows(out_dir: str | Path) -> list[dict]:
    """All complete rows of every results file in ``out_dir`` (partial lines are skipped)."""
    rows = []
    for path in sorted(Path(out_dir).glob("results*.jsonl")):
        with open(path) as fh:
            for line in fh:
                if not line.endswith("\n"):
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows


class ResultWriter:
    """Append-only JSONL writer; ``write(row)`` returns once the row is on disk."""

    def __init__(self, out_dir: Path, process_index: int = 0):
        self.path = results_path(out_dir, process_index)
        _repair_tail(self.path)
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self._fh.write(json.dumps(strict_json(row), separators=(",", ":"), allow_nan=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    elif isinstance(value, list):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = value


def export_csv(out_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write every row as one CSV line (nested keys joined by '.', curves as JSON lists);
    ``pandas.read_csv`` reads it directly. Default path ``DIR/results.csv``."""
    rows = load_rows(out_dir)
    flat = []
    for r in rows:
        f = {}
        _flatten("", r, f)
        flat.append(f)
    columns = list(dict.fromkeys(k for f in flat for k in f))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns)
    w.writeheader()
    w.writerows(flat)
    target = Path(path) if path is not None else Path(out_dir) / "results.csv"
    write_text_atomic(target, buf.getvalue())
    return target
