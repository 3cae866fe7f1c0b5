"""Connecting the processes of a multi-host job (``jax.distributed.initialize()``).

One rule for every entry point (``jaxcba batch``, ``simulate``, ``tortuosity``, ``describe`` with
``--distributed``, and :func:`jaxcba.batch.run_batch` with ``distributed=True``): the job's
number of processes is read from the environment - SLURM or Open MPI as JAX detects them, else
``JAX_NUM_PROCESSES`` with ``JAX_PROCESS_ID`` and ``JAX_COORDINATOR_ADDRESS`` (which JAX itself
does not read) - and ``jax.distributed.initialize()`` is called only when there is more than one.
It must run before JAX touches a device.
"""

from __future__ import annotations

import os


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


def initialize_distributed(env=None) -> tuple[bool, int, str | None]:
    """``jax.distributed.initialize()`` when the job of ``env`` (default ``os.environ``) has more
    than one process. Returns ``(called, number of processes, where it was read)``."""
    env = os.environ if env is None else env
    n, source = cluster_processes(env)
    if n < 1:
        raise ValueError(f"the job has {n} processes ({source}); expected at least 1")
    if n == 1:
        return False, n, source
    import jax

    if source == "JAX_NUM_PROCESSES":
        jax.distributed.initialize(coordinator_address=env["JAX_COORDINATOR_ADDRESS"], num_processes=n,
                                   process_id=_env_int(env, "JAX_PROCESS_ID"))
    else:
        jax.distributed.initialize()  # JAX reads SLURM / Open MPI itself
    return True, n, source
