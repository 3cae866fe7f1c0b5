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
import os
import sys

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


def _env_int(env, name: str) -> int:
    text = env.get(name, "")
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer") from None


def cluster_processes(env=None) -> tuple[int, str | None]:
    """``(number of processes, where it was read)`` of the job described by ``env`` (default
    ``os.environ``): JAX's SLURM and Open MPI detection, else ``JAX_NUM_PROCESSES``; ``(1, None)``
    when none is found. ``ValueError`` for a malformed variable."""
    env = os.environ if env is None else env
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    if all(v in env for v in slurm):  # what jax._src.clusters.SlurmCluster requires
        return _env_int(env, "SLURM_NTASKS"), "SLURM"
    if "OMPI_MCA_orte_hnp_uri" in env and "OMPI_COMM_WORLD_SIZE" in env:  # Open MPI's mpirun
        return _env_int(env, "OMPI_COMM_WORLD_SIZE"), "Open MPI"
    if "JAX_NUM_PROCESSES" in env:
        n = _env_int(env, "JAX_NUM_PROCESSES")
        if n > 1:
            if not env.get("JAX_COORDINATOR_ADDRESS"):
                raise ValueError(f"JAX_NUM_PROCESSES={n} needs JAX_COORDINATOR_ADDRESS (host:port of process 0)")
            pid = _env_int(env, "JAX_PROCESS_ID")
            if not 0 <= pid < n:
                raise ValueError(f"JAX_PROCESS_ID={pid} is out of range; allowed: 0 to {n - 1} (JAX_NUM_PROCESSES={n})")
        return n, "JAX_NUM_PROCESSES"
    return 1, None


def initialize(command: str, args) -> bool:
    """``jax.distributed.initialize()`` when ``--distributed`` is given and the job has more
    than one process; ``True`` when it was called. Must run before JAX touches a device."""
    if not getattr(args, "distributed", False):
        return False
    n, source = cluster_processes()
    if n < 1:
        raise ValueError(f"the job has {n} processes ({source}); expected at least 1")
    if n == 1:
        print(f"jaxcba {command}: note: --distributed: one process ({source or 'no SLURM, Open MPI or JAX_NUM_PROCESSES found'}); "
              "jax.distributed.initialize() is not needed and not called", file=sys.stderr)
        return False
    import jax

    if source == "JAX_NUM_PROCESSES":
        jax.distributed.initialize(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"], num_processes=n,
                                   process_id=_env_int(os.environ, "JAX_PROCESS_ID"))
    else:
        jax.distributed.initialize()  # JAX reads SLURM / Open MPI itself
    return True


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
