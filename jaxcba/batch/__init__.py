"""Sweeps of realizations and measurements, sharded over every device, durable and resumable.

``jaxcba batch SPEC.json --out DIR`` or :func:`run_batch`; spec format in
:mod:`jaxcba.batch.spec`, result files in :mod:`jaxcba.batch.store`, measures in
:mod:`jaxcba.batch.measures`.
"""

from jaxcba.batch.measures import MEASURES, measure_batch
from jaxcba.batch.runner import BatchSummary, run_batch
from jaxcba.batch.spec import Job, Spec, parse_spec
from jaxcba.batch.store import export_csv, load_rows

__all__ = ["MEASURES", "BatchSummary", "Job", "Spec", "export_csv", "load_rows", "measure_batch", "parse_spec", "run_batch"]
