"""Sweep specifications: JSON -> validated :class:`Spec` -> list of :class:`Job` with stable ids.

A spec file is one JSON object::

    {"params": "paper" | {eight CBAParams keys},
     "sweep": {"lambda_x": [2.21e-11, 6.36e-11]},     # grid = product of the lists
     "seeds": [0, 1, 2],
     "shape": 200 | [z, y, x],
     "voxel_nm": 80,
     "measure": ["fractions", "m_factor_solid", ...],
     "per_device": 2,                                  # optional: jobs per device and step
     "downsample": [2, 4]}                             # optional: also measure each volume down-sampled
                                                       # by slice removal (paper Section 3.3)

A job's id is the first 16 hex digits of the SHA-256 of its canonical content (parameters,
seed, shape, voxel size, measures, and the down-sampling factors when there are any), so it
does not depend on its position in the sweep.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from pathlib import Path

from jaxcba.model.params import FIELDS, CBAParams

REQUIRED = ("params", "seeds", "shape", "voxel_nm", "measure")
OPTIONAL = ("sweep", "per_device", "name", "downsample")


@dataclasses.dataclass(frozen=True)
class Job:
    """One realization and its measurements: ``params`` (8 floats), ``seed``, ``shape`` (z, y, x) [voxels],
    ``voxel_nm`` [nm], ``measures`` (names), ``sweep`` (the swept values of this job),
    ``downsample`` (factors > 1 at which the measures are repeated on the down-sampled volume)."""

    id: str
    params: dict
    seed: int
    shape: tuple[int, int, int]
    voxel_nm: float
    measures: tuple[str, ...]
    sweep: dict
    downsample: tuple[int, ...] = ()

    def cba_params(self) -> CBAParams:
        return CBAParams(**self.params)


@dataclasses.dataclass(frozen=True)
class Spec:
    """A validated sweep; ``raw`` is the canonical JSON object (written to ``DIR/spec.json``)."""

    raw: dict
    base: dict
    sweep: dict
    seeds: tuple[int, ...]
    shape: tuple[int, int, int]
    voxel_nm: float
    measures: tuple[str, ...]
    per_device: int | None
    downsample: tuple[int, ...] = ()

    def jobs(self) -> list[Job]:
        names = list(self.sweep)
        grid = itertools.product(*(self.sweep[n] for n in names)) if names else [()]
        out = []
        for values in grid:
            params = dict(self.base)
            params.update(dict(zip(names, values)))
            CBAParams.from_dict(params)  # validates the swept values
            for seed in self.seeds:
                content = {"params": params, "seed": seed, "shape": list(self.shape), "voxel_nm": self.voxel_nm,
                           "measures": sorted(self.measures)}
                if self.downsample:
                    content["downsample"] = list(self.downsample)
                digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
                out.append(Job(digest, params, seed, self.shape, self.voxel_nm, self.measures,
                               dict(zip(names, values)), self.downsample))
        return out


def _number(name, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"spec: {name} must be a number, got {v!r}")
    return float(v)


def parse_spec(data: dict | str | Path, known_measures=None) -> Spec:
    """Validate a spec (dict, JSON text or file path); ``ValueError`` names the problem."""
    from jaxcba.batch.measures import MEASURES

    known_measures = MEASURES if known_measures is None else known_measures
    if isinstance(data, (str, Path)):
        from jaxcba.io import read_json

        data = read_json(data, "spec")
    if not isinstance(data, dict):
        raise ValueError("spec must be a JSON object")
    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ValueError(f"spec: unknown key(s) {unknown}; allowed: {list(REQUIRED + OPTIONAL)}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ValueError(f"spec: missing key(s) {missing}")
    p = data["params"]
    base = CBAParams.paper().to_dict() if p == "paper" else CBAParams.from_dict(p).to_dict()
    sweep = data.get("sweep") or {}
    if not isinstance(sweep, dict):
        raise ValueError("spec: sweep must map parameter names to lists of values")
    clean_sweep = {}
    for name, values in sweep.items():
        if name not in FIELDS:
            raise ValueError(f"spec: sweep over unknown parameter {name!r}; allowed: {list(FIELDS)}")
        if not isinstance(values, list) or not values:
            raise ValueError(f"spec: sweep[{name!r}] must be a non-empty list")
        clean_sweep[name] = [_number(f"sweep[{name!r}]", v) for v in values]
    seeds = data["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           and 0 <= s <= 2**63 - 1 for s in seeds):
        raise ValueError(f"spec: seeds must be a non-empty list of ints in [0, 2^63 - 1], got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError("spec: seeds must be distinct")
    shape = data["shape"]
    shape = [shape] * 3 if isinstance(shape, int) and not isinstance(shape, bool) else shape
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) and s >= 8 for s in shape)):
        raise ValueError(f"spec: shape must be an int or three ints >= 8 (z, y, x), got {data['shape']!r}")
    from jaxcba._checks import check_voxel_nm

    voxel_nm = _number("voxel_nm", data["voxel_nm"])
    if not voxel_nm > 0:
        raise ValueError(f"spec: voxel_nm must be > 0, got {voxel_nm}")
    voxel_nm = check_voxel_nm(voxel_nm, "spec: voxel_nm")
    measures = data["measure"]
    if not isinstance(measures, list) or not measures:
        raise ValueError("spec: measure must be a non-empty list")
    bad = [m for m in measures if m not in known_measures]
    if bad:
        raise ValueError(f"spec: unknown measure(s) {bad}; allowed: {list(known_measures)}")
    per_device = data.get("per_device")
    if per_device is not None and not (isinstance(per_device, int) and per_device >= 1):
        raise ValueError(f"spec: per_device must be an int >= 1, got {per_device!r}")
    factors = data.get("downsample") or []
    if not (isinstance(factors, list) and all(isinstance(f, int) and not isinstance(f, bool) and f >= 2 for f in factors)
            and len(set(factors)) == len(factors)):
        raise ValueError(f"spec: downsample must be a list of distinct ints >= 2, got {data.get('downsample')!r}")
    for f in factors:
        if min(-(-s // f) for s in shape) < 8:
            raise ValueError(f"spec: downsample factor {f} leaves fewer than 8 voxels along an axis of {shape}")
    raw = {"params": base, "sweep": clean_sweep, "seeds": list(seeds), "shape": list(shape), "voxel_nm": voxel_nm,
           "measure": list(dict.fromkeys(measures))}
    if "name" in data:
        raw["name"] = str(data["name"])
    if factors:
        raw["downsample"] = sorted(factors)
    return Spec(raw, base, clean_sweep, tuple(seeds), tuple(shape), voxel_nm, tuple(raw["measure"]), per_device,
                tuple(sorted(factors)))
