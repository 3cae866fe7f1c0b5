"""One volume sharded along z: XLA's per-device memory and the seconds of each stage vs device count.

Usage:  python experiments/benchmarks/bench_sharded.py [--size 128] [--devices 1,2,4] [--json out.json]
                                                       [--preconditioners jacobi,multigrid]

Runs in one process with ``max(devices)`` devices: on the CPU it sets
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` itself (before importing JAX) unless
``--real-devices`` is given (GPU / TPU machines: the real devices are used). For every device
count ``n`` a mesh of the first ``n`` devices is built and each stage's program is lowered and
compiled; ``compiled.memory_analysis()`` gives the bytes of one device's partitioned program
(arguments, outputs, temporaries; honest for host devices, which share one RAM), and a second,
warm call gives the seconds (compilation excluded). On host devices the devices share the
machine's cores, so the seconds show the cost of the decomposition, not a speed-up.

Stages (a Table-2 realization at 20 nm, the pore phase where a mask is needed):
    field       the Gaussian field's excursion set (distributed slab FFT)
    simulate    the whole realization (field + pore balls + graphite; seconds only)
    minkowski   the 2x2x2 configuration histogram (one-plane halo)
    two_point   two-point coverage, max lag 16 voxels (distributed FFT)
    edt         exact squared EDT of the pore phase, window = side - 1 (distributed separable EDT,
                two all_to_all)
    cpsd        the CPSD's opening program on the default radius grid (capped integer EDT,
                ppermute halo of the largest ball, per-radius dilations)
    transport   PCG M-factor of the pore phase (rtol 1e-5), one row per preconditioner
                (Jacobi; the distributed multigrid V-cycle), with its CG iterations and M;
                the single-device multigrid solve (``jaxcba.transport``) is the reference row
                ``transport/single`` (devices 1)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="cube side [voxels] (default 128)")
    ap.add_argument("--devices", default="1,2,4", help="device counts (default 1,2,4)")
    ap.add_argument("--stages", default="field,simulate,minkowski,two_point,edt,cpsd,transport")
    ap.add_argument("--preconditioners", default="jacobi,multigrid", help="of the transport stage")
    ap.add_argument("--real-devices", action="store_true", help="use the machine's devices (no host-device flag)")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    counts = [int(x) for x in a.devices.split(",")]
    stages = a.stages.split(",")
    if not a.real_devices:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={max(counts)}"
        os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxcba import CBAParams
    from jaxcba import sharded as S
    from jaxcba.model.realization import VoxelParams
    from jaxcba.sharded import _descriptors as SD
    from jaxcba.sharded import _distance as SDd
    from jaxcba.sharded import _mesh as M
    from jaxcba.sharded import _realization as SR
    from jaxcba.sharded import _transport as ST

    shape = (a.size,) * 3
    voxel_nm = 20.0
    params = CBAParams.paper()
    vp = VoxelParams.of(params, voxel_nm)
    n_vox = float(np.prod(shape))
    labels = np.asarray(S.simulate(params, shape, voxel_nm, 1, mesh=1))
    pore = labels == 0
    sigma = pore.astype(np.float32)
    rows = []

    def measure(stage, n, compiled, call):
        mem = compiled.memory_analysis() if compiled is not None else None
        jax.block_until_ready(call())  # warm (compiles the non-lowered paths)
        t = time.perf_counter()
        jax.block_until_ready(call())
        sec = time.perf_counter() - t
        row = {"stage": stage, "devices": n, "seconds": round(sec, 3)}
        if mem is not None:
            arg, out, tmp = mem.argument_size_in_bytes, mem.output_size_in_bytes, mem.temp_size_in_bytes
            row.update(argument_bytes=arg, output_bytes=out, temp_bytes=tmp,
                       peak_bytes_per_device=arg + out + tmp, bytes_per_voxel_of_volume=round((arg + out + tmp) / n_vox, 3))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)

    for n in counts:
        mesh = M.make_mesh(n)
        key = jax.random.key(0)
        if "field" in stages:
            args = (key, shape, jnp.float32(vp.eta), jnp.float32(vp.mu), mesh, False)
            comp = SR._field_program.lower(*args).compile()
            measure("field", n, comp, lambda: SR._field_program(*args))
        if "simulate" in stages:
            measure("simulate", n, None, lambda: S.simulate(params, shape, voxel_nm, 1, mesh=mesh))
        mask = S.shard_volume(pore, mesh)
        if "minkowski" in stages:
            comp = SD._histogram_program.lower(mask, mesh).compile()
            measure("minkowski", n, comp, lambda: SD._histogram_program(mask, mesh))
        if "two_point" in stages:
            comp = SD._coverage_program.lower(mask, 16, mesh).compile()
            measure("two_point", n, comp, lambda: SD._coverage_program(mask, 16, mesh))
        if "edt" in stages:
            sites = ~mask
            comp = SDd._distance_program.lower(sites, a.size - 1, None, mesh).compile()
            measure("edt", n, comp, lambda: SDd._distance_program(sites, a.size - 1, None, mesh))
        if "cpsd" in stages:
            radii = tuple(float(r) for r in SD.default_radii_vox(mask))
            comp = SD._opening_program.lower(mask, radii, mesh).compile()
            measure("cpsd", n, comp, lambda: SD._opening_program(mask, radii, mesh))
            rows[-1].update(radii=len(radii), r_max_vox=float(SD.cpsd(mask, 1.0, radii).r_max_nm))
        if "transport" in stages:
            sig = S.shard_volume(sigma, mesh)
            targs = (sig, jnp.float32(1.0), jnp.float32(1e-5), jnp.float32(1e-2), jnp.int32(5000))
            for pc in a.preconditioners.split(","):
                kw = dict(mesh=mesh, boundary="half_voxel", shape=shape, preconditioner=pc)
                comp = ST._solve_program.lower(*targs, **kw).compile()
                res = {}

                def solve():
                    out = ST._solve_program(*targs, **kw)
                    res["M"], res["it"] = float(out[1]), int(out[7])
                    return out

                measure(f"transport/{pc}", n, comp, solve)
                rows[-1].update(M=res["M"], iterations=res["it"])

    if "transport" in stages:  # the single-device solver (multigrid), the reference
        from jaxcba import transport as T

        res = {}
        dev = jnp.asarray(sigma)

        def single():
            r = T.effective_conductivity(dev, 0, rtol=1e-5)
            res["M"], res["it"] = float(r.m_factor), int(r.iterations)
            return r.m_factor

        measure("transport/single", 1, None, single)
        rows[-1].update(M=res["M"], iterations=res["it"])

    print("| stage | devices | seconds | arguments [MB] | outputs [MB] | temporaries [MB] | per device [B/voxel of the volume] "
          "| CG iterations | M |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        mb = lambda k: f"{r[k] / 2**20:.1f}" if k in r else "–"  # noqa: E731
        bpv = f"{r['bytes_per_voxel_of_volume']:.2f}" if "bytes_per_voxel_of_volume" in r else "–"
        m = f"{r['M']:.6f}" if "M" in r else "–"
        print(f"| {r['stage']} | {r['devices']} | {r['seconds']:.2f} | {mb('argument_bytes')} | {mb('output_bytes')} | "
              f"{mb('temp_bytes')} | {bpv} | {r.get('iterations', '–')} | {m} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"size": a.size, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
