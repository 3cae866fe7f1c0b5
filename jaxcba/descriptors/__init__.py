"""Morphological descriptors of labelled volumes (paper Sections 3.2-3.3)."""

from jaxcba.descriptors.downsample import downsample
from jaxcba.descriptors.minkowski import IntrinsicDensities, configuration_histogram, intrinsic_densities, volume_fraction
from jaxcba.descriptors.phases import PHASES, phase_mask
from jaxcba.descriptors.report import DESCRIPTORS, NOT_PERCOLATING, PhaseReport, Report, describe
from jaxcba.descriptors.two_point import TwoPointCoverage, two_point_coverage
from jaxcba.descriptors.distance import edt, edt_squared, squared_distance_to
from jaxcba.descriptors.geodesic import GeodesicTortuosity, geodesic_distance, geodesic_tortuosity
from jaxcba.descriptors.pore_size import (
    Constrictivity,
    PoreSizeDistribution,
    constrictivity,
    cpsd,
    intrusion,
    local_thickness,
)
