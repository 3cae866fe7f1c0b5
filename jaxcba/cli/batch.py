"""`jaxcba batch`: run a JSON sweep over every local device (and host), durable and resumable."""

from __future__ import annotations

from jaxcba.cli._common import add_force_argument, add_progress_argument, int_at_least, output, print_json


def add_parser(sub):
    p = sub.add_parser(
        "batch",
        help="run a sweep of realizations + measurements sharded over all devices (resumable)",
        description="Expand SPEC.json (params, sweep, seeds, shape, voxel_nm, measure) into jobs, run them "
        "sharded over jax.devices(), append one row per finished job to OUT/results.jsonl. Rerunning the "
        "same command resumes. Multi-host: start one process per host with --distributed (e.g. under srun).",
    )
    p.add_argument("spec", help="sweep specification (JSON file)")
    p.add_argument("--out", required=True, help="output folder (spec.json, results.jsonl, results.csv)")
    p.add_argument("--per-device", type=int_at_least(1), default=None, help="jobs per device and step (default: from memory)")
    p.add_argument("--save-volumes", action="store_true", help="also store each labelled volume (OUT/volumes/*.npz)")
    p.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize() (multi-host)")
    add_progress_argument(p, "progress bar")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    add_force_argument(p, "memory of a step or the grain count of a job")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from jaxcba.batch import run_batch

    output("batch", args.out, folder=True)  # a resumable folder: existing results of the same spec are kept
    s = run_batch(args.spec, args.out, per_device=args.per_device, save_volumes=args.save_volumes,
                  progress=not args.quiet, distributed=args.distributed, force=args.force)
    if args.json:
        print_json(s.to_dict())
    else:
        print(f"jaxcba batch: {s.done} job(s) run, {s.skipped} already done, {s.total} in the spec; "
              f"{s.devices} device(s) x {s.per_device} per step, {s.jobs_per_second:.3g} jobs/s -> {s.out}"
              + (f" ({s.reused} measure(s) of interrupted jobs reused)" if s.reused else ""))
    return 0
