"""``--devices N``, ``--shard z`` and ``--distributed``: one volume split over several devices.

Shared by ``jaxcba simulate``, ``jaxcba tortuosity`` and ``jaxcba describe`` (see
docs/sharding.md, "Command line"). ``--devices 1`` (the default) is the single-device path,
unchanged; ``--devices N`` (``N > 1``) splits the volume into ``N`` z-slabs over the first
``N`` of ``jax.devices()`` (:mod:`jaxcba.sharded`). ``--shard z`` is the only split offered
(z-slabs, a 1-D mesh). Every check here raises ``ValueError`` (exit 2) before any work:

* ``N`` larger than the number of devices JAX sees (on CPU, host devices are made with
  ``XLA_FLAGS=--xla_force_host_platform_device_count=N``, set before the process starts);
* ``N`` not dividing the z side of the volume [voxels];
* slabs thinner than the halo of a computation [z-planes] (2 for the 2x2x2 configurations,
  1 otherwise).

``--distributed`` connects the processes of a multi-host job with
``jax.distributed.initialize()`` before JAX touches a device, reading the cluster from the
environment: SLURM (``SLURM_NTASKS`` ...), Open MPI (``OMPI_COMM_WORLD_SIZE`` ...) as JAX
detects them, or ``JAX_COORDINATOR_ADDRESS`` + ``JAX_NUM_PROCESSES`` + ``JAX_PROCESS_ID``. In a
job of one process (no cluster found, or one task) it is a no-op, said once on stderr.
Every process then runs the same command; process 0 alone prints and writes files.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys

from jaxcba._distributed import cluster_processes, initialize_distributed  # noqa: F401 (cluster_processes: re-exported)
from jaxcba.cli._common import int_at_least

#: The axes a volume can be split along (z-slabs; a 1-D mesh).
SHARD_AXES = ("z",)
#: The XLA flag that makes N host (CPU) devices.
HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def _shard_axis(text: str) -> str:
    if text not in SHARD_AXES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not offered; allowed: z (the volume is split into z-slabs; no other axis yet)")
    return text


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--devices``, ``--shard`` and ``--distributed`` to a sub-command's parser."""
    parser.add_argument(
        "--devices", type=int_at_least(1), default=1, metavar="N",
        help="split the volume into N z-slabs over the first N of jax.devices() (default 1: one device, "
        f"no split); on CPU make host devices with XLA_FLAGS={HOST_DEVICES_FLAG}=N before starting",
    )
    parser.add_argument(
        "--shard", type=_shard_axis, default="z", metavar="z",
        help="axis the volume is split along with --devices N: only z is offered now (the default)",
    )
    parser.add_argument(
        "--distributed", action="store_true",
        help="multi-host: call jax.distributed.initialize() first (SLURM, Open MPI, or JAX_COORDINATOR_ADDRESS, "
        "JAX_NUM_PROCESSES, JAX_PROCESS_ID); a no-op in a job of one process",
    )


def initialize(command: str, args) -> bool:
    """``jax.distributed.initialize()`` when ``--distributed`` is given and the job has more
    than one process (:func:`jaxcba._distributed.initialize_distributed`); ``True`` when it was
    called. Must run before JAX touches a device."""
    if not getattr(args, "distributed", False):
        return False
    called, _, source = initialize_distributed()
    if not called:
        print(f"jaxcba {command}: note: --distributed: one process ({source or 'no SLURM, Open MPI or JAX_NUM_PROCESSES found'}); "
              "jax.distributed.initialize() is not needed and not called", file=sys.stderr)
    return called


def device_mesh(n: int, nz: int, halo: int = 0, what: str = "the volume"):
    """The 1-D mesh of the first ``n`` devices for a volume of ``nz`` z-planes, or ``None``
    for ``n == 1`` (the single-device path). ``ValueError`` before any work when ``n`` exceeds
    the devices JAX sees, does not divide ``nz``, or leaves slabs thinner than ``halo`` planes."""
    import jax

    from jaxcba.sharded._mesh import check_split, make_mesh

    devices = jax.devices()
    if n > len(devices):
        kind = devices[0].platform if devices else "none"
        raise ValueError(
            f"--devices {n} is out of range; allowed: 1 to {len(devices)} (JAX sees {len(devices)} {kind} "
            f"device{'s' if len(devices) != 1 else ''}); on CPU, set XLA_FLAGS={HOST_DEVICES_FLAG}={n} "
            "in the environment before the process starts to get that many host devices")
    if n == 1:
        return None
    try:
        check_split(int(nz), n, halo, what)
    except ValueError as exc:
        raise ValueError(f"--devices {n} --shard z: {exc}") from None
    return make_mesh(n)


def is_main_process() -> bool:
    """``True`` in process 0 (the one that prints and writes) or in a single-process run."""
    import jax

    return jax.process_index() == 0


@contextlib.contextmanager
def main_process_output():
    """Standard output of every process but process 0 is dropped (each runs the same command)."""
    if is_main_process():
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def gather(array):
    """A sharded ``jax.Array`` as one host NumPy array (all processes' slabs gathered)."""
    import jax
    import numpy as np

    if jax.process_count() > 1 and not array.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(array, tiled=True))
    return np.asarray(array)
