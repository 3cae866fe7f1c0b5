"""One volume sharded along z over a 1-D device mesh (domain decomposition; see docs/sharding.md).

Every function takes ``mesh=`` (a 1-D :class:`jax.sharding.Mesh`, a device count, or ``None``
for all devices) or a z-sharded ``jax.Array``, and returns what its single-device
counterpart returns (arrays z-sharded).
"""

from jaxcba.sharded._mesh import make_mesh, shard_volume
from jaxcba.sharded._realization import excursion_labels, gaussian_field, simulate

__all__ = ["make_mesh", "shard_volume", "simulate", "excursion_labels", "gaussian_field"]
