"""One volume sharded along z over a 1-D device mesh (domain decomposition; see docs/sharding.md).

Every function takes ``mesh=`` (a 1-D :class:`jax.sharding.Mesh`, a device count, or ``None``
for all devices) or a z-sharded ``jax.Array``, and returns what its single-device
counterpart returns (arrays z-sharded).
"""

from jaxcba.sharded._descriptors import (
    configuration_histogram,
    cpsd,
    default_radii_vox,
    intrinsic_densities,
    phase_counts,
    two_point_coverage,
    volume_fraction,
)
from jaxcba.sharded._distance import edt, edt_squared, largest_distance, squared_distance_to
from jaxcba.sharded._mesh import make_mesh, shard_volume
from jaxcba.sharded._transport import effective_conductivity, label_conductivity
from jaxcba.sharded._realization import excursion_labels, gaussian_field, simulate

__all__ = [
    "make_mesh",
    "shard_volume",
    "simulate",
    "excursion_labels",
    "gaussian_field",
    "phase_counts",
    "volume_fraction",
    "configuration_histogram",
    "intrinsic_densities",
    "two_point_coverage",
    "squared_distance_to",
    "edt_squared",
    "edt",
    "largest_distance",
    "default_radii_vox",
    "cpsd",
    "effective_conductivity",
    "label_conductivity",
]
