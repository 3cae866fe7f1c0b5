"""`--devices N` / `--shard z` / `--distributed` on `jaxcba simulate`, `tortuosity`, `describe` (issue #19).

JAX fixes its device count at import, so the commands run in one subprocess started with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (this file, run as a script), which
calls ``jaxcba.cli.main`` once per command line - the whole command, argument parsing and
exit status included - and prints what it saw as JSON; one refusal also runs as its own
``python -m jaxcba`` process, and one (slow) test joins two processes of 2 host devices
each with ``jax.distributed``. The references are the ``--devices 1`` runs (today's
single-device path): files identical byte for byte, M within 1e-5 relative, the sharded
descriptors equal (counts exact, curves to 1e-6).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import host_devices_env

ENV = host_devices_env(4)
for _var in ("SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri", "JAX_NUM_PROCESSES"):  # a one-process job
    ENV.pop(_var, None)


def _worker(tmp: Path) -> dict:  # runs in the subprocess
    import time

    import jax

    from jaxcba.cli import main

    def cli(*argv):
        out, err = io.StringIO(), io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as exc:  # argparse's usage errors exit
                rc = exc.code
        res["seconds"].append([" ".join(map(str, argv[:1] + argv[-2:])), round(time.perf_counter() - t0, 1)])
        return {"rc": rc, "out": out.getvalue(), "err": err.getvalue()}

    res: dict = {"devices": len(jax.devices()), "seconds": []}
    # --- simulate: the same file on 1, 2 and 4 devices (and with --distributed in one process)
    vol = {}
    for n in (1, 2, 4):
        vol[n] = tmp / f"vol{n}.npy"
        res[f"simulate{n}"] = cli("simulate", "--shape", "64,48,40", "--voxel-nm", 80, "--seed", 1, "--out", vol[n],
                                  "--devices", n, "--json")
    res["simulate_distributed"] = cli("simulate", "--shape", "64,48,40", "--voxel-nm", 80, "--seed", 1,
                                      "--out", tmp / "d2.npy", "--devices", 2, "--shard", "z", "--distributed")
    # --- tortuosity: M of the pore and of the solid (graphite 1, cb 0.01), 2 devices vs 1
    for n in (1, 2):
        res[f"pore{n}"] = cli("tortuosity", vol[1], "--json", "--tol", "1e-6", "--devices", n)
        res[f"solid{n}"] = cli("tortuosity", vol[1], "--json", "--tol", "1e-6", "--phase", "solid",
                               "--conductivity", "2=1,1=0.01", "--devices", n)
    # --- describe: the sharded descriptors (JSON and table), and one gathered (CPSD) with its note
    only = ("--only", "volume_fraction", "--only", "intrinsic", "--only", "two_point")
    for n in (1, 2):
        res[f"describe_json{n}"] = cli("describe", vol[1], "--voxel-nm", 80, "--json", *only, "--devices", n)
        res[f"describe_table{n}"] = cli("describe", vol[1], "--voxel-nm", 80, "--phase", "cb", *only, "--devices", n)
        # the sharded CPSD / r_max next to the gathered r_min, constrictivity (its stderr note)
        res[f"describe_con{n}"] = cli("describe", vol[1], "--voxel-nm", 80, "--json", "--phase", "pore",
                                      "--only", "cpsd", "--only", "constrictivity", "--devices", n)
    for n in (1, 2, 4):  # the sharded CPSD and r_max (slabs of 16 planes on 4 devices)
        res[f"describe_cpsd{n}"] = cli("describe", vol[1], "--voxel-nm", 80, "--json", "--phase", "pore",
                                       "--only", "volume_fraction", "--only", "cpsd", "--devices", n)
    # --- bad input: exit 2 with the reason, nothing written
    np.save(tmp / "thin.npy", np.asarray(np.load(vol[1])[:4, :16, :16]))
    box = np.ones((16, 32, 32), np.uint8)
    box[2:14, 4:28, 4:28] = 0  # a pore box: largest distance 6 voxels, ball window 5 > 4-plane slabs
    np.save(tmp / "box.npy", box)
    bad = {
        "divide": ("simulate", "--shape", 64, "--voxel-nm", 80, "--out", tmp / "bad_divide.npy", "--devices", 3),
        "too_many": ("simulate", "--shape", 64, "--voxel-nm", 80, "--out", tmp / "bad_many.npy", "--devices", 8),
        "shard_x": ("simulate", "--shape", 64, "--voxel-nm", 80, "--out", tmp / "bad_x.npy", "--devices", 2,
                    "--shard", "x"),
        "zero": ("simulate", "--shape", 64, "--voxel-nm", 80, "--out", tmp / "bad_zero.npy", "--devices", 0),
        "halo": ("describe", tmp / "thin.npy", "--voxel-nm", 80, "--only", "intrinsic", "--devices", 4,
                 "--plot", tmp / "bad_halo.png"),
        "cpsd_halo": ("describe", tmp / "box.npy", "--voxel-nm", 80, "--phase", "pore", "--only", "cpsd",
                      "--devices", 4, "--plot", tmp / "bad_cpsd_halo.png", "--json"),
        "tortuosity_divide": ("tortuosity", vol[1], "--devices", 3),
        "tortuosity_axis": ("tortuosity", vol[1], "--devices", 2, "--axis", "x"),
        "tortuosity_none": ("tortuosity", vol[1], "--devices", 2, "--preconditioner", "none"),
    }
    res["bad"] = {k: cli(*argv) for k, argv in bad.items()}
    res["left"] = sorted(p.name for p in tmp.iterdir() if p.name.startswith("bad"))
    return res


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sharded_cli")
    r = subprocess.run([sys.executable, __file__, str(tmp)], env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), tmp


def test_four_host_devices(run):
    assert run[0]["devices"] == 4


def test_simulate_same_file_on_1_2_4_devices(run):
    res, tmp = run
    for n in (1, 2, 4):
        assert res[f"simulate{n}"]["rc"] == 0, res[f"simulate{n}"]
        assert json.loads(res[f"simulate{n}"]["out"])["devices"] == n
    ref = (tmp / "vol1.npy").read_bytes()
    assert (tmp / "vol2.npy").read_bytes() == ref and (tmp / "vol4.npy").read_bytes() == ref
    vol = np.load(tmp / "vol1.npy")
    assert vol.shape == (64, 48, 40)
    assert np.bincount(vol.ravel(), minlength=3).min() > 0.01 * vol.size  # all three phases: grains are tested
    f1, f4 = (json.loads(res[f"simulate{n}"]["out"])["fractions"] for n in (1, 4))
    assert f1 == f4


def test_distributed_is_a_no_op_in_one_process(run):
    res, tmp = run
    r = res["simulate_distributed"]
    assert r["rc"] == 0, r
    assert "--distributed: one process" in r["err"] and "not called" in r["err"]
    assert np.array_equal(np.load(tmp / "d2.npy"), np.load(tmp / "vol1.npy"))


@pytest.mark.parametrize("phase", ["pore", "solid"])
def test_tortuosity_two_devices_equal_one(run, phase):
    res, _ = run
    one, two = (json.loads(res[f"{phase}{n}"]["out"]) for n in (1, 2))
    assert res[f"{phase}1"]["rc"] == res[f"{phase}2"]["rc"] == 0
    assert one["converged"] and two["converged"] and one["percolates"] and two["percolates"]
    assert 0 < one["m_factor"] < 1
    assert abs(two["m_factor"] / one["m_factor"] - 1) <= 1e-5, (one, two)
    assert abs(two["tau_eff"] / one["tau_eff"] - 1) <= 1e-5
    assert two["eps"] == one["eps"]  # a voxel count
    assert two["sigma_ref"] == one["sigma_ref"] and two["devices"] == 2
    # the distributed multigrid V-cycle: the single-device CG iteration count (within 2)
    assert abs(two["iterations"] - one["iterations"]) <= 2, (one["iterations"], two["iterations"])


def test_describe_sharded_descriptors_equal_one_device(run):
    res, tmp = run
    vol = np.load(tmp / "vol1.npy")
    count = {"solid": int((vol > 0).sum()), "pore": int((vol == 0).sum())}
    one, two = (json.loads(res[f"describe_json{n}"]["out"]) for n in (1, 2))
    assert set(one) == set(two) == {"solid", "pore"}
    for phase in one:
        a, b = one[phase], two[phase]
        # the exact count / the voxels (one device: a float32 mean, within an ulp)
        assert b["volume_fraction"] * vol.size == count[phase]
        assert b["volume_fraction"] == pytest.approx(a["volume_fraction"], rel=2**-23, abs=0)
        assert b["surface_density"] == pytest.approx(a["surface_density"], rel=1e-6)
        assert b["two_point"]["h_nm"] == a["two_point"]["h_nm"]
        for k in ("C", "centered", "C_axes"):
            assert np.allclose(b["two_point"][k], a["two_point"][k], rtol=0, atol=1e-6), (phase, k)
        assert abs(a["two_point"]["C"][0] - a["volume_fraction"]) < 1e-6  # C(0) = V_V: the curve is one
    # the table (V_V, S_V, M_V, chi_V to 6 digits) is the same text
    assert res["describe_table2"]["rc"] == 0
    assert res["describe_table2"]["out"] == res["describe_table1"]["out"]
    assert "M_V" in res["describe_table1"]["out"]
    assert "no sharded implementation" not in res["describe_json2"]["err"]


def test_describe_sharded_cpsd_equals_one_device(run):
    res, _ = run
    runs = {n: res[f"describe_cpsd{n}"] for n in (1, 2, 4)}
    assert all(r["rc"] == 0 for r in runs.values()), {n: r["err"][-500:] for n, r in runs.items()}
    a = json.loads(runs[1]["out"])["pore"]
    for n in (2, 4):
        b = json.loads(runs[n]["out"])["pore"]
        assert b.pop("volume_fraction") == pytest.approx(a["volume_fraction"], rel=2**-23, abs=0)
        # the same integer counts over the same float32 count: the curve and r_max exactly
        assert b["cpsd"] == a["cpsd"] and b["r_max"] == a["r_max"] and b["radii_bounded"] is True, n
        assert "no sharded implementation" not in runs[n]["err"], runs[n]["err"]
    r_nm = np.asarray(a["cpsd"]["r_nm"])
    assert np.allclose(np.diff(r_nm), 40.0) and r_nm[0] == 80.0  # the 0.5-voxel grid from 1 voxel [nm]
    frac = np.asarray(a["cpsd"]["fraction"])
    assert frac[0] > 0.5 and np.all(np.diff(frac) <= 0) and frac[-1] < 0.5 and a["r_max"] > 80.0


def test_describe_gathers_only_r_min_and_constrictivity(run):
    res, _ = run
    one, two = (res[f"describe_con{n}"] for n in (1, 2))
    assert one["rc"] == two["rc"] == 0, two["err"][-500:]
    a, b = json.loads(one["out"])["pore"], json.loads(two["out"])["pore"]
    assert b == a  # sharded CPSD, r_max; gathered r_min, beta = (r_min / r_max)^2: the single-device numbers
    assert 0 < a["r_min"] <= a["r_max"] and a["constrictivity"] == pytest.approx((a["r_min"] / a["r_max"]) ** 2,
                                                                               rel=1e-6)
    note = [ln for ln in two["err"].splitlines() if "no sharded implementation" in ln]
    assert len(note) == 1 and "for r_min, constrictivity:" in note[0], two["err"]
    assert "cpsd" not in note[0] and "r_max" not in note[0]
    assert "no sharded implementation" not in one["err"]


def test_bad_input_exits_2_before_any_work(run):
    res, _ = run
    bad = res["bad"]
    assert all(r["rc"] == 2 for r in bad.values()), {k: (r["rc"], r["err"]) for k, r in bad.items()}
    assert all(r["out"] == "" for r in bad.values())
    assert "must divide the z axis" in bad["divide"]["err"] and "(3)" in bad["divide"]["err"]
    assert "(64 voxels)" in bad["divide"]["err"] and "--devices 3" in bad["divide"]["err"]
    many = bad["too_many"]["err"]
    assert "--devices 8" in many and "JAX sees 4" in many
    assert "XLA_FLAGS=--xla_force_host_platform_device_count=8" in many
    assert "allowed: z" in bad["shard_x"]["err"]
    assert "--devices" in bad["zero"]["err"]
    assert "thinner than the halo of 2 planes" in bad["halo"]["err"]
    assert "for the CPSD of pore" in bad["cpsd_halo"]["err"] and "thinner than the halo of 5 planes" in \
        bad["cpsd_halo"]["err"], bad["cpsd_halo"]["err"]
    assert "must divide the z axis" in bad["tortuosity_divide"]["err"]
    assert "split axis z only" in bad["tortuosity_axis"]["err"]
    assert "allowed: multigrid, jacobi" in bad["tortuosity_none"]["err"]
    assert all(len(r["err"].strip().splitlines()) == 1 for r in bad.values())
    assert res["left"] == []  # nothing written


def test_too_many_devices_as_a_process(tmp_path):
    out = tmp_path / "v.npy"
    r = subprocess.run([sys.executable, "-m", "jaxcba", "simulate", "--shape", "16", "--voxel-nm", "80",
                        "--out", str(out), "--devices", "5"], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "JAX sees 4 cpu devices" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_processes(argv, tmp: Path):
    """``jaxcba ARGV --devices 4 --distributed`` as two processes of 2 host devices each, joined
    by jax.distributed on this machine (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
    JAX_PROCESS_ID); their stdout without the Gloo library's own lines, stderr, exit status."""
    env = dict(ENV, XLA_FLAGS=host_devices_env(2)["XLA_FLAGS"], JAX_NUM_PROCESSES="2",
               JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}")
    cmd = [sys.executable, "-m", "jaxcba", *map(str, argv), "--devices", "4", "--distributed"]
    procs = [subprocess.Popen(cmd, env=dict(env, JAX_PROCESS_ID=str(i)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=tmp) for i in (0, 1)]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        # the Gloo library writes its own lines to the same stdout, from C++: drop them wherever they fall
        out.append((re.sub(r"\[Gloo\][^\n]*\n?", "", stdout), stderr, proc.returncode))
    return out


def _json(stdout: str, stderr: str):
    """The command's JSON, or a failure that shows what was printed instead."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError as exc:
        pytest.fail(f"not JSON ({exc}): stdout {stdout[-1500:]!r}, stderr {stderr[-1500:]!r}")


@pytest.mark.slow
def test_two_processes_distributed(run, tmp_path):
    """A real multi-process job on one machine: 2 processes x 2 host devices = a mesh of 4.
    Process 0 alone prints and writes; the numbers equal the one-device ones."""
    res, tmp = run
    vol = tmp_path / "mp.npy"
    (o0, e0, r0), (o1, e1, r1) = _two_processes(
        ["simulate", "--shape", "64,48,40", "--voxel-nm", 80, "--seed", 1, "--out", vol, "--json"], tmp_path)
    assert r0 == r1 == 0, (e0[-2000:], e1[-2000:])
    assert vol.read_bytes() == (tmp / "vol1.npy").read_bytes()
    assert _json(o0, e0)["devices"] == 4 and o1 == ""
    (o0, e0, r0), (o1, e1, r1) = _two_processes(["tortuosity", vol, "--json", "--tol", "1e-6"], tmp_path)
    assert r0 == r1 == 0, (e0[-2000:], e1[-2000:])
    one = json.loads(res["pore1"]["out"])
    assert abs(_json(o0, e0)["m_factor"] / one["m_factor"] - 1) <= 1e-5 and o1 == ""
    (o0, e0, r0), (o1, e1, r1) = _two_processes(
        ["describe", vol, "--voxel-nm", 80, "--json", "--only", "volume_fraction", "--only", "intrinsic",
         "--only", "two_point"], tmp_path)
    assert r0 == r1 == 0, (e0[-2000:], e1[-2000:])
    got, ref = _json(o0, e0), json.loads(res["describe_json2"]["out"])  # the one-process, 2-device run
    for phase in ref:
        assert got[phase]["volume_fraction"] == ref[phase]["volume_fraction"]
        assert got[phase]["surface_density"] == pytest.approx(ref[phase]["surface_density"], rel=1e-6)
        assert np.allclose(got[phase]["two_point"]["C"], ref[phase]["two_point"]["C"], rtol=0, atol=1e-6)
        assert np.allclose(got[phase]["two_point"]["C_axes"], ref[phase]["two_point"]["C_axes"], rtol=0, atol=1e-6)
    assert o1 == ""


def test_cluster_processes_from_the_environment():
    from jaxcba.cli._devices import cluster_processes

    assert cluster_processes({}) == (1, None)
    slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-4]", "SLURM_NTASKS": "4", "SLURM_PROCID": "2",
             "SLURM_LOCALID": "0"}
    assert cluster_processes(slurm) == (4, "SLURM")
    assert cluster_processes(dict(slurm, SLURM_NTASKS="1")) == (1, "SLURM")
    assert cluster_processes({"SLURM_JOB_ID": "7"}) == (1, None)  # an allocation, not a job step
    assert cluster_processes({"OMPI_MCA_orte_hnp_uri": "x", "OMPI_COMM_WORLD_SIZE": "3"}) == (3, "Open MPI")
    env = {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1", "JAX_COORDINATOR_ADDRESS": "h:1234"}
    assert cluster_processes(env) == (2, "JAX_NUM_PROCESSES")
    with pytest.raises(ValueError, match="JAX_COORDINATOR_ADDRESS"):
        cluster_processes({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"})
    with pytest.raises(ValueError, match=r"JAX_PROCESS_ID=2 is out of range; allowed: 0 to 1"):
        cluster_processes(dict(env, JAX_PROCESS_ID="2"))
    with pytest.raises(ValueError, match="SLURM_NTASKS='four' is not an integer"):
        cluster_processes(dict(slurm, SLURM_NTASKS="four"))


if __name__ == "__main__":
    print(json.dumps(_worker(Path(sys.argv[1]))))
