"""`jaxcba validate`: the paper's Section 3.3 model validation on a user's labelled image.

``validate(labels, voxel_nm, params, n=5, downsample=(2, 4), key=0) -> ValidationResult``;
``result.save(dir)`` writes ``validation.csv``, ``validation.json`` and the pictures. The
descriptors, the verdict (``in_range``, ``z``, ``consistent``) and what a twin is expected to
give are described in :mod:`jaxcba.validate._core` and docs/validate.md.
"""

from jaxcba.validate._core import (CURVES, MEASURES, MIN_SIDE, SCALARS, DescriptorRow, ValidationResult,
                                   check_downsample, curve_values, load_fit, measure_volume, scalar_values, validate)
from jaxcba.validate._figures import plot_cubes, save_figures

__all__ = ["CURVES", "MEASURES", "MIN_SIDE", "SCALARS", "DescriptorRow", "ValidationResult", "check_downsample",
           "curve_values", "load_fit", "measure_volume", "plot_cubes", "save_figures", "scalar_values", "validate"]
