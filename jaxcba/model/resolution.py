"""Parameters at other voxel sizes (paper Section 3.3).

The paper realizes the model at 20, 40 and 80 nm voxels by converting every parameter
with a physical unit into voxel units of the new side length, keeping the
dimensionless ``gamma`` and ``mu`` (Section 3.3): the :class:`CBAParams` themselves
(physical units) do not change, only ``params.in_voxels(voxel_nm)`` does. Because of
the gamma convention (``A / voxel_nm ~ Gamma(alpha / voxel_nm, rate gamma)``, see
:mod:`jaxcba.model.params`) the half-axis *variance* ``alpha voxel_nm / gamma^2`` [nm^2]
then grows with the voxel size while the mean ``alpha / gamma`` stays: the model at
80 nm is slightly different from the one at 20 nm (V1 0.107 vs 0.105 for Table 2).

:func:`convert` offers both readings:

* ``mode="paper"`` (default): the Section 3.3 recipe; the parameters are returned
  unchanged (they are physical) - use them with the new ``voxel_nm``.
* ``mode="same_law"``: parameters that give, at ``to_nm``, the *same* half-axis law in
  nm as ``params`` at ``from_nm``: ``alpha' = alpha to/from``, ``gamma' = gamma to/from``
  (mean and variance, indeed the whole gamma law, are preserved).
"""

from __future__ import annotations

from jaxcba.model.params import CBAParams

MODES = ("paper", "same_law")


def voxel_units(params: CBAParams, voxel_nm: float) -> dict:
    """The parameters in units of voxels of side ``voxel_nm`` [nm] (Section 3.3).

    Same as :meth:`CBAParams.in_voxels`: ``lambda_x``, ``lambda_y`` [voxel^-3], gamma
    shapes ``shape1 = alpha1 / voxel_nm``, ``shape2``, rate ``gamma``, ``mu``, ``eta``,
    ``theta`` [voxel^-1].
    """
    _check_nm("voxel_nm", voxel_nm)
    return params.in_voxels(voxel_nm)


def from_voxel_units(values: dict, voxel_nm: float) -> CBAParams:
    """Inverse of :func:`voxel_units`: physical :class:`CBAParams` from voxel-unit values."""
    _check_nm("voxel_nm", voxel_nm)
    need = ("lambda_x", "shape1", "shape2", "gamma", "mu", "eta", "theta", "lambda_y")
    missing = [k for k in need if k not in values]
    if missing:
        raise ValueError(f"missing voxel-unit value(s) {missing}; expected {list(need)}")
    v = voxel_nm
    return CBAParams(
        lambda_x=values["lambda_x"] / v**3,
        alpha1=values["shape1"] * v,
        alpha2=values["shape2"] * v,
        gamma=values["gamma"],
        mu=values["mu"],
        eta=values["eta"] / v,
        theta=values["theta"] / v,
        lambda_y=values["lambda_y"] / v**3,
    )


def convert(params: CBAParams, from_nm: float, to_nm: float, mode: str = "paper") -> CBAParams:
    """Parameters for realizations at ``to_nm`` voxels from those used at ``from_nm``.

    See the module docstring for ``mode`` (``"paper"`` or ``"same_law"``).
    """
    _check_nm("from_nm", from_nm)
    _check_nm("to_nm", to_nm)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "paper":
        return params
    r = to_nm / from_nm
    return params.replace(alpha1=params.alpha1 * r, alpha2=params.alpha2 * r, gamma=params.gamma * r)


def _check_nm(name: str, value) -> None:
    try:
        ok = float(value) > 0 and float(value) != float("inf")
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a finite number > 0 [nm], got {value!r}")


__all__ = ["voxel_units", "from_voxel_units", "convert", "MODES"]
