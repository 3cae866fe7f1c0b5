"""The eight model parameters of the CBA model (paper Eq. 5, Table 2), in physical units.

Gamma half-axis convention (docs/model.md, "Pitfalls", the paper's and its R package's):
the half-axes A, C of a graphite spheroid are drawn *in voxel units* as

    A / voxel_nm ~ Gamma(shape = alpha1 / voxel_nm, rate = gamma),
    C / voxel_nm ~ Gamma(shape = alpha2 / voxel_nm, rate = gamma),

so that the mean half-axis is ``alpha / gamma`` nm at every voxel size, while the
variance ``alpha * voxel_nm / gamma**2`` nm^2 grows with the voxel size. The paper
calibrated at ``voxel_nm = 20``; its Tables 1 and 3 are reproduced with that value.
Parameters convert between resolutions as Section 3.3 says: physical quantities are
re-expressed in the new voxel unit, dimensionless ``gamma`` and ``mu`` stay.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

#: Field name -> physical unit, in the order of the paper (Table 2).
FIELDS: dict[str, str] = {
    "lambda_x": "nm^-3",
    "alpha1": "nm",
    "alpha2": "nm",
    "gamma": "1",
    "mu": "1",
    "eta": "nm^-1",
    "theta": "nm^-1",
    "lambda_y": "nm^-3",
}
#: Keys a parameter file may hold beside the eight values (ignored when loading).
METADATA_KEYS = ("uncertainty",)
_DESCRIPTION = {
    "lambda_x": "intensity of graphite germs",
    "alpha1": "gamma shape of half-axis A (times voxel_nm)",
    "alpha2": "gamma shape of half-axis C (times voxel_nm)",
    "gamma": "gamma rate of the half-axes",
    "mu": "threshold of the Gaussian field",
    "eta": "inverse correlation length of the Gaussian field",
    "theta": "rate of the exponential pore-ball radii",
    "lambda_y": "intensity of pore-ball germs",
}


class CBAParams(eqx.Module):
    """Parameters of Xi = Xi1 ∪ (Xi2 ∩ Xi3^c) in physical units (a JAX pytree).

    Attributes:
        lambda_x: intensity of the Poisson germs of the graphite spheroids [nm^-3].
        alpha1: gamma shape parameter of half-axis A, "in nm" (see module docstring) [nm].
        alpha2: gamma shape parameter of half-axis C, "in nm" [nm].
        gamma: common gamma rate of both half-axes (in voxel units) [1].
        mu: threshold of the standard Gaussian field, Xi2 = {Z >= mu} [1].
        eta: scale of the covariance rho(h) = 1 / (1 + (eta h)^2) [nm^-1].
        theta: rate of the exponential radii of the pore balls (mean radius 1/theta) [nm^-1].
        lambda_y: intensity of the Poisson germs of the pore balls [nm^-3].

    Each field may be a Python float or a JAX/NumPy array (a batch of parameter sets
    when the arrays share a leading axis), so the object passes through ``jit``,
    ``grad`` and ``vmap``.
    """

    lambda_x: Any
    alpha1: Any
    alpha2: Any
    gamma: Any
    mu: Any
    eta: Any
    theta: Any
    lambda_y: Any

    # ------------------------------------------------------------------ presets
    @classmethod
    def paper(cls) -> "CBAParams":
        """Table 2 of the paper (calibrated at 20 nm voxels)."""
        return cls(
            lambda_x=6.355e-11,
            alpha1=205.0,
            alpha2=3944.0,
            gamma=1.971,
            mu=0.499,
            eta=0.0127,
            theta=0.0105,
            lambda_y=9.340e-9,
        )

    # --------------------------------------------------------------- conversion
    def to_dict(self) -> dict[str, float]:
        """Plain ``{field: float}`` dict (scalar parameters only)."""
        out = {}
        for name in FIELDS:
            value = np.asarray(getattr(self, name))
            if value.ndim != 0:
                raise ValueError(f"to_dict needs scalar parameters; {name} has shape {value.shape}")
            out[name] = float(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CBAParams":
        """Build from a dict with exactly the eight keys of :data:`FIELDS`, then validate.

        The keys of :data:`METADATA_KEYS` (``uncertainty``: the block ``jaxcba calibrate`` writes
        beside the values) are allowed and ignored; any other key is refused."""
        if not isinstance(data, dict):
            raise ValueError(f"parameters must be a JSON object with keys {list(FIELDS)}, got {type(data).__name__}")
        missing = [k for k in FIELDS if k not in data]
        extra = [k for k in data if k not in FIELDS and k not in METADATA_KEYS]
        if missing:
            raise ValueError(f"missing parameter(s) {missing}; expected exactly {list(FIELDS)}")
        if extra:
            raise ValueError(f"unknown parameter(s) {extra}; expected exactly {list(FIELDS)}")
        values = {}
        for k in FIELDS:
            v = data[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"parameter {k} must be a number, got {v!r}")
            values[k] = float(v)
        return cls(**values).validate()

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text with exactly the eight keys; written atomically to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            from jaxcba.io import write_text_atomic

            write_text_atomic(path, text)
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> "CBAParams":
        """Read parameters from a JSON file path (or a JSON string starting with ``{``)."""
        from jaxcba.io import read_json

        return cls.from_dict(read_json(source, "parameter file"))

    def replace(self, **changes: Any) -> "CBAParams":
        """Copy with some fields changed, e.g. ``p.replace(lambda_x=2.21e-11)``."""
        unknown = [k for k in changes if k not in FIELDS]
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; expected some of {list(FIELDS)}")
        values = {k: getattr(self, k) for k in FIELDS}
        values.update(changes)
        return CBAParams(**values)

    def in_voxels(self, voxel_nm: float) -> dict[str, Any]:
        """The parameters in voxel units of side ``voxel_nm`` nm (paper Section 3.3).

        Returns a dict: ``lambda_x``, ``lambda_y`` [voxel^-3]; ``shape1``, ``shape2``
        (gamma shapes alpha/voxel_nm) and ``gamma`` (rate) of the half-axes in voxels;
        ``mu`` [1]; ``eta``, ``theta`` [voxel^-1].
        """
        v = voxel_nm
        return {
            "lambda_x": self.lambda_x * v**3,
            "shape1": self.alpha1 / v,
            "shape2": self.alpha2 / v,
            "gamma": self.gamma,
            "mu": self.mu,
            "eta": self.eta * v,
            "theta": self.theta * v,
            "lambda_y": self.lambda_y * v**3,
        }

    # ---------------------------------------------------------------- checking
    def validate(self) -> "CBAParams":
        """Raise ``ValueError`` naming the field and its allowed range if a value is bad.

        Allowed: every field finite; ``lambda_x >= 0`` (0: the two-phase sub-model without
        graphite, whose ``alpha1``, ``alpha2``, ``gamma`` are then unused but must still be valid);
        all others but ``mu`` strictly positive. Arrays are checked element-wise. Skipped (returns ``self``) for traced values inside
        ``jit``/``grad``/``vmap``, where no concrete value exists.
        """
        for name, unit in FIELDS.items():
            value = getattr(self, name)
            if isinstance(value, jax.core.Tracer):
                continue
            try:
                arr = np.asarray(value, dtype=float)
            except (TypeError, ValueError):
                raise ValueError(f"parameter {name} must be numeric, got {value!r}") from None
            allowed = ("a finite real number" if name == "mu" else f"a finite number >= 0 [{unit}] (0: no graphite)"
                       if name == "lambda_x" else f"a finite number > 0 [{unit}]")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"parameter {name} ({_DESCRIPTION[name]}) = {_fmt(arr)} is not finite; allowed: {allowed}")
            if name != "mu" and not np.all(arr >= 0 if name == "lambda_x" else arr > 0):
                raise ValueError(f"parameter {name} ({_DESCRIPTION[name]}) = {_fmt(arr)} is out of range; allowed: {allowed}")
        return self

    def __repr__(self) -> str:  # compact, unit-annotated
        parts = []
        for name, unit in FIELDS.items():
            v = getattr(self, name)
            try:
                parts.append(f"{name}={float(v):.6g} [{unit}]")
            except (TypeError, ValueError):
                parts.append(f"{name}={type(v).__name__}{getattr(v, 'shape', '')}")
        return "CBAParams(" + ", ".join(parts) + ")"


def _fmt(arr: np.ndarray) -> str:
    if arr.ndim == 0:
        return repr(float(arr))
    bad = arr[~np.isfinite(arr)] if not np.all(np.isfinite(arr)) else arr[arr <= 0]
    return f"array of shape {arr.shape} containing {float(bad.flat[0])!r}"


def mean_half_axes_nm(params: CBAParams) -> tuple[Any, Any]:
    """Mean half-axes (E[A], E[C]) = (alpha1/gamma, alpha2/gamma) in nm (voxel-size independent)."""
    return params.alpha1 / params.gamma, params.alpha2 / params.gamma


__all__ = ["CBAParams", "FIELDS", "mean_half_axes_nm"]
