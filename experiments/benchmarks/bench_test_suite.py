"""CPU time of test files with the test session's XLA flags (tests/conftest.py) against XLA's defaults.

Usage:  python experiments/benchmarks/bench_test_suite.py [TEST_FILE_OR_ID ...] [--repeat 1]

Each case runs ``python -m pytest -q -p no:cacheprovider FILES`` in a fresh process, once with
tests/conftest.py's ``TEST_XLA_FLAGS`` (LLVM optimisation off, ``JAXCBA_TEST_FAST_COMPILE=1``)
and once with XLA's defaults (the suite's default), and reports the CPU time (user + system
of the process and its children, so that CLI subprocesses count) and the wall time. The CPU time
is the figure to compare on a shared machine; the wall time only where nothing else runs.
The peer here is XLA's default compilation pipeline: the ratio is defaults / test flags.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FILES = ["tests/test_transport.py", "tests/test_pore_size.py", "tests/test_calibrate_contract.py"]


def run(files: list[str], defaults: bool) -> dict:
    """CPU and wall seconds of one pytest process over ``files``."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    if defaults:
        env.pop("JAXCBA_TEST_FAST_COMPILE", None)
    else:
        env["JAXCBA_TEST_FAST_COMPILE"] = "1"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
    return {"cpu_s": cpu, "wall_s": wall, "rc": r.returncode, "summary": last}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", default=DEFAULT_FILES, help="test files or node ids (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each setting (the smallest CPU time is kept)")
    args = ap.parse_args()
    res = {}
    for label, defaults in (("test flags", False), ("XLA defaults", True)):
        runs = [run(args.files, defaults) for _ in range(args.repeat)]
        res[label] = min(runs, key=lambda r: r["cpu_s"])
        r = res[label]
        print(f"{label:>13}: CPU {r['cpu_s']:7.1f} s  wall {r['wall_s']:7.1f} s  rc {r['rc']}  {r['summary']}", flush=True)
    ratio = res["XLA defaults"]["cpu_s"] / res["test flags"]["cpu_s"]
    print(f"files: {' '.join(args.files)}")
    print(f"CPU time, XLA defaults / test flags: {ratio:.2f}x")


if __name__ == "__main__":
    main()
