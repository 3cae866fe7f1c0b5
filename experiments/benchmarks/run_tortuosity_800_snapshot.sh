#!/bin/bash
# 800^3 at 20 nm, paper realization (seed 1): jaxcba tortuosity, solid then pore, with peak RSS.
# Runs the code of a frozen snapshot (SNAP, a git worktree), not the live tree: the editable
# install's finder is removed from sys.meta_path and SNAP put first on sys.path.
SNAP=${1:?usage: run_tortuosity_800_snapshot.sh SNAPSHOT_DIR (e.g. git worktree add ../snap HEAD); needs results/bench_scale/paper_800_20nm_seed1.npy from bench_scale.py}
SNAP=$(realpath "$SNAP")
cd "$(dirname "$0")/../.." && mkdir -p results/scale800
for case in "solid:--conductivity 2=1,1=0.01:" "pore::"; do
  phase=${case%%:*}; rest=${case#*:}; cond=${rest%:}
  python - "$SNAP" "$phase" $cond <<'PY' > results/scale800/tortuosity_${phase}.log 2>&1
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__ and "editable" not in str(f)]
sys.path.insert(0, sys.argv[1])
import resource, time, json
import jaxcba
print("code", jaxcba.__file__, flush=True)
from jaxcba.cli import main
t = time.time()
rc = None
try:
    rc = main(["tortuosity", "results/bench_scale/paper_800_20nm_seed1.npy", "--phase", sys.argv[2], *sys.argv[3:], "--json"])
except SystemExit as e:
    rc = e.code
print("exit", rc)
ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"wall_s": time.time() - t, "peak_rss_gb": ru / 1e9, "bytes_per_voxel": ru / 800**3}))
PY
done
