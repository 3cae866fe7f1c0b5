"""The descriptors of a validation, as tables shared by the measurement (:mod:`jaxcba.validate._core`)
and the pictures (:mod:`jaxcba.validate._figures`); a leaf of the package, so that neither of the
two imports the other for them."""

#: Batch measures used (:data:`jaxcba.batch.measures.MEASURES`).
MEASURES = ("fractions", "surface_density", "two_point", "cpsd", "constrictivity", "geodesic_tortuosity")
#: Scalar descriptors: (name, phase, unit).
SCALARS = (
    ("volume_fraction", "solid", "1"),
    ("surface_density", "interface", "nm^-1"),
    ("r_max", "solid", "nm"), ("r_min", "solid", "nm"), ("constrictivity", "solid", "1"),
    ("geodesic_tortuosity", "solid", "1"),
    ("r_max", "pore", "nm"), ("r_min", "pore", "nm"), ("constrictivity", "pore", "1"),
    ("geodesic_tortuosity", "pore", "1"),
)
#: Curve descriptors: (name, phase, unit of the distance).
CURVES = (("cpsd_l1", "solid", "nm"), ("cpsd_l1", "pore", "nm"), ("two_point_l1", "solid", "1"))
