"""The 1-D device mesh a volume is sharded over, and the checks made before any work.

A volume ``(nz, ny, nx)`` is split along z into ``n`` slabs of ``nz / n`` planes, one per
device of a 1-D :class:`jax.sharding.Mesh` (its one axis name, ``"z"`` by default). On several
hosts the mesh spans the devices of every process (``jax.devices()`` after
``jax.distributed.initialize()``); nothing here depends on the processes being one.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "z"


def make_mesh(devices=None, axis: str = AXIS) -> Mesh:
    """A 1-D mesh named ``axis`` over ``devices``.

    Args:
        devices: ``None`` (all of ``jax.devices()``), an int ``n`` (the first ``n``), or a
            sequence of devices.
    """
    if devices is None:
        devs = jax.devices()
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        avail = jax.devices()
        if not 1 <= int(devices) <= len(avail):
            raise ValueError(f"devices must be in [1, {len(avail)}] (the devices JAX sees), got {int(devices)}")
        devs = avail[: int(devices)]
    else:
        devs = list(devices)
        if not devs:
            raise ValueError("devices must name at least one device, got an empty sequence")
    return Mesh(np.asarray(devs, dtype=object), (axis,))


def as_mesh(mesh) -> Mesh:
    """``mesh`` as a 1-D :class:`Mesh` (``None`` or an int are passed to :func:`make_mesh`)."""
    if mesh is None or isinstance(mesh, (int, np.integer)):
        return make_mesh(mesh)
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh, an int device count or None, got {type(mesh).__name__}")
    if len(mesh.axis_names) != 1:
        raise ValueError(f"mesh must be 1-D (the volume is sharded along z only), got axes {mesh.axis_names}")
    return mesh


def axis_of(mesh: Mesh) -> str:
    return mesh.axis_names[0]


def size_of(mesh: Mesh) -> int:
    return int(mesh.devices.size)


def check_split(nz: int, n: int, halo: int = 0, what: str = "the volume") -> int:
    """Planes per shard, ``nz / n``; ``ValueError`` when ``n`` does not divide ``nz`` or a shard
    is thinner than ``halo`` planes."""
    if nz % n:
        raise ValueError(f"the number of shards ({n}) must divide the z axis of {what} ({nz} voxels); "
                         f"use a z size that is a multiple of {n} or another device count")
    lz = nz // n
    if lz < max(halo, 1):
        raise ValueError(f"shards of {what} would be {lz} z-planes thick, thinner than the halo of {halo} planes; "
                         f"use fewer than {n} devices or a larger z size")
    return lz


def z_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of a ``(nz, ...)`` array split along its first axis over ``mesh``."""
    return NamedSharding(mesh, P(axis_of(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def put_z(array: np.ndarray, mesh: Mesh) -> jax.Array:
    """A host array sharded along its first axis (every process passes the same array)."""
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, z_sharding(mesh), lambda idx: array[idx])


def put_replicated(array: np.ndarray, mesh: Mesh) -> jax.Array:
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, replicated(mesh), lambda idx: array[idx])


def shard_volume(volume, mesh=None) -> jax.Array:
    """A ``(nz, ny, nx)`` volume (host or device array) sharded along z over ``mesh``."""
    mesh = as_mesh(mesh)
    if getattr(volume, "ndim", None) != 3:
        raise ValueError(f"expected a 3D (z, y, x) volume, got shape {getattr(volume, 'shape', None)}")
    check_split(int(volume.shape[0]), size_of(mesh))
    if isinstance(volume, jax.Array):
        return jax.device_put(volume, z_sharding(mesh))
    return put_z(np.asarray(volume), mesh)


def mesh_of(array) -> Mesh | None:
    """The 1-D mesh of a z-sharded ``jax.Array`` (``None`` if it is not one)."""
    sh = getattr(array, "sharding", None)
    if isinstance(sh, NamedSharding) and len(sh.mesh.axis_names) == 1:
        if tuple(sh.spec)[:1] == (sh.mesh.axis_names[0],) or sh.mesh.devices.size == 1:
            return sh.mesh  # a 1-device mesh normalises its spec to P()
    return None
