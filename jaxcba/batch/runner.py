"""Run a sweep: simulate each job from its seed, measure batches sharded over the local devices,
append one row per finished job to ``results.jsonl``; a rerun skips finished jobs, and a job cut
off midway resumes at its first unfinished measure (``partial/<job>.json``, :mod:`jaxcba.batch.store`).

Sharding: the jobs of one step form a ``(B, z, y, x)`` batch with ``B = devices x per_device``,
placed by ``NamedSharding(Mesh(local devices, ("jobs",)), P("jobs"))``; each measure is
``jit(vmap(kernel))``, so XLA runs every device on its own slice of jobs. Across hosts,
``jax.distributed.initialize()`` (:mod:`jaxcba._distributed`: SLURM, Open MPI, or
``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``; not called for one process) connects the
processes and process ``i`` of ``n`` takes the pending jobs ``i, i + n, ...``, on its own
devices, writing its own results file (see :mod:`jaxcba.batch.store`).

Determinism: a job's key is ``jax.random.key(seed)`` - never its position in a batch - and
its volume is made alone, so a job gives the same volume and numbers on any device count or
batch size (fractions bit-identical: integer counts).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import jax
import numpy as np

from jaxcba._distributed import initialize_distributed
from jaxcba.batch import store
from jaxcba.batch.measures import BYTES_PER_VOXEL, measure_batch, plan
from jaxcba.batch.spec import Job, Spec, parse_spec


@dataclasses.dataclass(frozen=True)
class BatchSummary:
    """``total`` jobs in the spec, ``skipped`` (already done), ``done`` (now), ``seconds``,
    ``devices``, ``per_device``, ``jobs_per_second``, ``out`` folder, ``reused``: measure values
    of jobs cut off midway read back from their partial files instead of measured again."""

    total: int
    skipped: int
    done: int
    seconds: float
    devices: int
    per_device: int
    jobs_per_second: float
    out: str
    reused: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _memory_budget_bytes(device) -> float:
    stats = getattr(device, "memory_stats", lambda: None)()
    if stats and "bytes_limit" in stats:
        return 0.5 * float(stats["bytes_limit"])
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        avail = 4e9
    return 0.5 * avail / max(1, len(jax.local_devices()))


def job_bytes(spec: Spec) -> float:
    """Estimated peak host memory of one job [bytes]: its volume held three times (host list,
    stacked batch, device copy) plus the hungriest of its measures (they run one at a time) and
    the realization itself."""
    from jaxcba.model.window import realization_bytes

    voxels = float(np.prod(spec.shape))
    return 3 * voxels + max(realization_bytes(spec.shape), voxels * max(BYTES_PER_VOXEL[m] for m in spec.measures))


def check_batch_memory(spec: Spec, per_device: int = 1) -> None:
    """``ValueError`` with the estimate and the limit when one step of the batch cannot fit in memory."""
    from jaxcba.model.window import available_bytes

    need = job_bytes(spec) * per_device * len(jax.local_devices())
    free = available_bytes()
    if free is not None and need > free:
        raise ValueError(
            f"spec: one step ({per_device} job(s) per device of shape {'x'.join(map(str, spec.shape))}, measures "
            f"{', '.join(spec.measures)}) needs about {need / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB is "
            "available; use a smaller shape, fewer measures or per_device 1"
        )


def choose_per_device(spec: Spec, device) -> int:
    """Jobs per device and step from the memory budget (half the device / host memory), 1..8."""
    voxels = float(np.prod(spec.shape))
    per_job = voxels * (2 + sum(BYTES_PER_VOXEL[m] for m in spec.measures))
    return int(max(1, min(8, _memory_budget_bytes(device) // per_job)))


def _row(job: Job, done: dict) -> dict:
    """One result row from a job's finished measures (``done`` as :func:`store.load_partial` returns
    it; ``coarse`` maps a down-sampling factor to that volume's measure values)."""
    row = {"job": job.id, "params": job.params, "sweep": job.sweep, "seed": job.seed, "shape": list(job.shape),
           "voxel_nm": job.voxel_nm}
    row.update(done["values"])
    if done["coarse"]:
        row["downsampled"] = {f: {"voxel_nm": job.voxel_nm * int(f), **v} for f, v in done["coarse"].items()}
    return row


def _slot(done: dict, factor: int) -> dict:
    """Where a job's values of the volume down-sampled by ``factor`` (1: the volume itself) go."""
    return done["values"] if factor == 1 else done["coarse"].setdefault(str(factor), {})


def _unstack(values: dict, n: int) -> list[dict]:
    """A measure's batched values as one nested dict of Python numbers and lists per job."""
    return [jax.tree_util.tree_map(lambda a, i=i: np.asarray(a)[i].tolist(), values) for i in range(n)]


def _measure_chunk(spec: Spec, stacked: np.ndarray, sharding, done: list[dict], keep, bar) -> None:
    """Run every measure that a job of the chunk still lacks on the stacked ``(B, z, y, x)`` batch,
    then on the batch down-sampled by each of ``spec.downsample`` (every f-th slice along each
    axis, paper Section 3.3); measures with a joint kernel (:func:`jaxcba.batch.measures.plan`: the
    CPSD and the constrictivity) run as one when both are missing. After each kernel its values go
    into each job's ``done[i]`` and ``keep(i)`` is called (the partial file), so an interruption
    loses only the kernel running."""
    for factor in (1, *spec.downsample):
        todo = [name for name in spec.measures if not all(name in _slot(d, factor) for d in done)]
        if not todo:
            continue
        batch = jax.device_put(stacked if factor == 1 else np.ascontiguousarray(stacked[:, ::factor, ::factor, ::factor]),
                               sharding)
        for kernel, names in plan(todo):
            label = " + ".join(names)
            bar.set_postfix_str(label if factor == 1 else f"{label} (down-sampled x{factor})")
            out = measure_batch(kernel, batch, spec.voxel_nm * factor)
            for name in names:
                values = _unstack(out[name] if len(names) > 1 else out, len(done))
                for i, d in enumerate(done):
                    _slot(d, factor)[name] = values[i]
            for i in range(len(done)):
                keep(i)
        del batch


def _save_volume(out: Path, job: Job, vol: np.ndarray) -> None:
    from jaxcba._checks import write_atomic

    write_atomic(out / "volumes" / f"{job.id}.npz",
                 lambda tmp: np.savez_compressed(tmp, labels=vol, voxel_nm=np.array([job.voxel_nm] * 3)), suffix=".npz")


def check_batch_grains(spec: Spec, jobs) -> None:
    """``ValueError`` before anything is written when a job's parameters mean more grains than
    :data:`jaxcba.model.realization.MAX_GRAINS` (e.g. a huge swept ``lambda_x``)."""
    from jaxcba.model.realization import EPS, VoxelParams, _layers, check_grains

    seen = set()
    for job in jobs:
        key = (tuple(sorted(job.params.items())), job.shape, job.voxel_nm)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_grains(_layers(VoxelParams.of(job.cba_params(), job.voxel_nm), job.shape, EPS), job.shape)
        except ValueError as exc:
            raise ValueError(f"spec: job {job.id}: {exc}") from None


def _remove_empty_run(out: Path, created_dir: bool) -> None:
    """Undo :func:`store.prepare` of a run that wrote no result (nothing may block the next run)."""
    for name in ("results.csv", "spec.json"):
        (out / name).unlink(missing_ok=True)
    for path in out.glob("results*.jsonl"):
        if path.stat().st_size == 0:
            path.unlink()
    vols = out / "volumes"
    if vols.is_dir() and not any(vols.iterdir()):
        vols.rmdir()
    if created_dir and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def run_batch(spec, out_dir, *, per_device: int | None = None, save_volumes: bool = False, progress: bool = True,
              distributed: bool = False, force: bool = False) -> BatchSummary:
    """Run (or resume) the sweep ``spec`` (dict, JSON text, path or :class:`Spec`) into ``out_dir``.

    Raises ``ValueError`` for an invalid spec, an ``out_dir`` holding another spec's results,
    or a step whose estimated memory (:func:`check_batch_memory`) or grain count
    (:func:`check_batch_grains`) exceeds the limit (nothing is written then); ``force`` skips
    those two estimates (and the realizations' own, ``simulate(check_memory=False)``).
    """
    spec = spec if isinstance(spec, Spec) else parse_spec(spec)
    jobs = spec.jobs()  # validates every swept parameter set before any work
    if not force:
        check_batch_memory(spec, per_device or spec.per_device or 1)  # before anything is written
        check_batch_grains(spec, jobs)
    if distributed:
        initialize_distributed()  # a no-op in a job of one process
    created_dir = not Path(out_dir).exists()
    fresh = not (Path(out_dir) / "spec.json").exists()
    out = store.prepare(out_dir, spec.raw)
    try:
        return _run(spec, jobs, out, per_device, save_volumes, progress, force)
    except BaseException:
        if fresh and jax.process_index() == 0 and not store.load_rows(out) and not store.has_partials(out):
            _remove_empty_run(out, created_dir)
        raise


def _run(spec: Spec, jobs, out: Path, per_device, save_volumes: bool, progress: bool, force: bool = False) -> BatchSummary:
    from jaxcba.model import simulate

    done_ids = {r.get("job") for r in store.load_rows(out)}
    pending = [j for j in jobs if j.id not in done_ids]
    pid, nproc = jax.process_index(), jax.process_count()
    mine = pending[pid::nproc]
    devices = jax.local_devices()
    per_device = per_device or spec.per_device or choose_per_device(spec, devices[0])
    step = len(devices) * per_device
    mesh = jax.sharding.Mesh(np.array(devices), ("jobs",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("jobs"))

    from jaxcba._progress import meter

    bar = meter(len(jobs), "jaxcba batch", "job", enabled=progress, initial=len(jobs) - len(pending), delay=0)
    t0 = time.perf_counter()
    n_done = reused = 0
    with store.ResultWriter(out, pid) as writer:
        for start in range(0, len(mine), step):
            chunk = mine[start : start + step]
            vols = [np.asarray(simulate(j.cba_params(), j.shape, j.voxel_nm, j.seed, check_memory=not force))
                    for j in chunk]
            prints = [store.fingerprint(v) for v in vols]
            done = [store.load_partial(out, j.id, fp) for j, fp in zip(chunk, prints)]
            reused += sum(len(d["values"]) + sum(map(len, d["coarse"].values())) for d in done)
            padded = vols + [vols[-1]] * (step - len(vols))  # static batch shape; padding rows are dropped
            stacked = np.stack(padded)
            _measure_chunk(spec, stacked, sharding, done,
                           lambda i: store.save_partial(out, chunk[i].id, prints[i], done[i]), bar)
            del stacked
            for i, job in enumerate(chunk):
                if save_volumes:
                    _save_volume(out, job, vols[i])
                writer.write(_row(job, done[i]))
                store.drop_partial(out, job.id)
                n_done += 1
                bar.update(1)
            if progress:
                rate = n_done / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix_str(f"{rate / len(devices):.3g} jobs/s/device")
    bar.close()
    if nproc == 1:
        store.remove_empty_partial_folder(out)
    if pid == 0:
        store.export_csv(out)
    seconds = time.perf_counter() - t0
    return BatchSummary(len(jobs), len(jobs) - len(pending), n_done, seconds, len(devices), per_device,
                        n_done / seconds if seconds > 0 else 0.0, str(out), reused)
