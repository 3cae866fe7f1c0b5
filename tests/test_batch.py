"""`jaxcba batch`: 1 vs 4 host devices give the same rows, SIGKILL + rerun loses nothing, bad specs exit 2."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import host_devices_env

from jaxcba.batch import load_rows, parse_spec
from jaxcba.cli import main

SPEC = {"params": "paper", "sweep": {"lambda_x": [2.21e-11, 6.36e-11, 1.09e-10]}, "seeds": [0, 1, 2, 3],
        "shape": 24, "voxel_nm": 80, "measure": ["fractions", "surface_density", "two_point"]}


def _run(spec_path, out, devices, extra=(), wait=True):
    env = host_devices_env(devices)
    cmd = [sys.executable, "-m", "jaxcba", "batch", str(spec_path), "--out", str(out), "--no-progress", *extra]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _by_job(rows):
    return {r["job"]: r for r in rows}


def _assert_same(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k]["fractions"] == b[k]["fractions"]  # integer counts: bit-identical
        np.testing.assert_allclose(a[k]["surface_density"]["S_V"], b[k]["surface_density"]["S_V"], rtol=1e-6)
        np.testing.assert_allclose(a[k]["two_point"]["solid"]["C"], b[k]["two_point"]["solid"]["C"], rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    spec = d / "spec.json"
    spec.write_text(json.dumps(SPEC))
    r = _run(spec, d / "one", 1)
    assert r.returncode == 0, r.stderr
    return spec, _by_job(load_rows(d / "one"))


def test_four_devices_match_one_device(reference, tmp_path):
    spec, rows1 = reference
    assert len(rows1) == 12
    r = _run(spec, tmp_path / "four", 4, ["--per-device", "2", "--json"])
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["devices"] == 4 and summary["done"] == 12
    _assert_same(_by_job(load_rows(tmp_path / "four")), rows1)
    # job ids are stable and content-derived
    assert set(rows1) == {j.id for j in parse_spec(SPEC).jobs()}
    # a rerun finds everything done
    r2 = _run(spec, tmp_path / "four", 4, ["--json"])
    assert json.loads(r2.stdout)["done"] == 0 and len(load_rows(tmp_path / "four")) == 12
    assert (tmp_path / "four" / "results.csv").read_text().count("\n") == 13


def test_sigkill_midway_then_resume(reference, tmp_path):
    spec, rows1 = reference
    out = tmp_path / "crash"
    p = _run(spec, out, 1, ["--per-device", "1"], wait=False)
    results = out / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if results.exists() and results.read_text().count("\n") >= 2:
            break
        if p.poll() is not None:
            break
        time.sleep(0.05)
    killed = p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.wait()
    n_before = results.read_text().count("\n")
    assert killed and 2 <= n_before < 12, "the run finished before it could be killed"
    with open(results, "a") as fh:  # a torn last line, as a crash mid-write would leave
        fh.write('{"job": "partial')
    r = _run(spec, out, 1)
    assert r.returncode == 0, r.stderr
    rows = load_rows(out)
    assert len(rows) == 12 and len({r["job"] for r in rows}) == 12
    _assert_same(_by_job(rows), rows1)


@pytest.mark.parametrize("change,needle", [
    ({"colour": "red"}, "unknown key"),
    ({"sweep": {"gamma": [-1.0]}}, "gamma"),
    ({"measure": ["fractions", "magic"]}, "unknown measure"),
    ({"shape": 0}, "shape"),
    ({"seeds": []}, "seeds"),
    ({"shape": 20000}, "GiB but only"),  # 8e12 voxels: refused from the estimate, before spec.json
])
def test_bad_spec_exit_2_nothing_written(tmp_path, capsys, change, needle):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, **change}))
    assert main(["batch", str(spec), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_folder_of_another_spec_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "spec.json").write_text(json.dumps({"params": "other"}))
    (out / "results.jsonl").write_text('{"job": "x"}\n')
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    assert main(["batch", str(spec), "--out", str(out), "--no-progress"]) == 2
    assert "different spec" in capsys.readouterr().err
    assert (out / "results.jsonl").read_text() == '{"job": "x"}\n'


def test_save_volumes_and_csv(tmp_path, capsys):
    from jaxcba import CBAParams, simulate

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "sweep": {}, "seeds": [5, 6], "shape": 16, "measure": ["fractions"]}))
    out = tmp_path / "out"
    assert main(["batch", str(spec), "--out", str(out), "--no-progress", "--save-volumes"]) == 0
    rows = load_rows(out)
    assert len(rows) == 2
    for r in rows:
        with np.load(out / "volumes" / f"{r['job']}.npz") as z:
            vol = z["labels"]
        assert np.array_equal(vol, np.asarray(simulate(CBAParams.paper(), 16, 80.0, r["seed"])))
        assert r["fractions"]["graphite"] == float(np.mean(vol == 2))
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {"job", "seed", "fractions.graphite", "params.lambda_x"} <= set(header)


def test_downsampled_measures_are_those_of_the_slice_removed_volume(tmp_path):
    from jaxcba import CBAParams, simulate
    from jaxcba.batch import run_batch

    spec = {"params": "paper", "seeds": [3], "shape": 32, "voxel_nm": 40, "measure": ["fractions", "surface_density"],
            "downsample": [2, 4]}
    run_batch(spec, tmp_path / "runs", progress=False)
    (row,) = load_rows(tmp_path / "runs")
    vol = np.asarray(simulate(CBAParams.paper(), (32, 32, 32), 40.0, 3))
    assert row["fractions"]["pore"] == pytest.approx(np.mean(vol == 0))
    for f in (2, 4):
        coarse = vol[::f, ::f, ::f]
        got = row["downsampled"][str(f)]
        assert got["voxel_nm"] == 40.0 * f
        assert got["fractions"]["graphite"] == pytest.approx(np.mean(coarse == 2))
        assert got["fractions"]["cb"] == pytest.approx(np.mean(coarse == 1))
    # the factors key the job id, so a spec without them is another spec, and both reject bad factors
    assert parse_spec(spec).jobs()[0].id != parse_spec({**spec, "downsample": []}).jobs()[0].id
    for bad in ([1], [2, 2], [8], "2"):
        with pytest.raises(ValueError, match="downsample"):
            parse_spec({**spec, "downsample": bad})


def test_rows_are_strict_json_with_null_for_missing_numbers(tmp_path):
    from jaxcba.batch.store import ResultWriter

    out = tmp_path / "runs"
    out.mkdir()
    with ResultWriter(out) as w:
        w.write({"job": "a", "m": {"beta": float("nan"), "tau": float("inf"), "percolates": False, "curve": [1.0, float("-inf")]}})
    text = (out / "results.jsonl").read_text()
    row = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert row["m"] == {"beta": None, "tau": None, "percolates": False, "curve": [1.0, None]}


def _interrupt_at(monkeypatch, stop_name, stop_factor_nm, calls):
    """Wrap the runner's measure_batch: record (measure, voxel_nm) calls, raise KeyboardInterrupt at one."""
    import jaxcba.batch.runner as runner
    from jaxcba.batch.measures import measure_batch as real

    def wrapped(name, labels, voxel_nm, *a, **k):
        calls.append((name, float(voxel_nm)))
        if (name, float(voxel_nm)) == (stop_name, stop_factor_nm):
            raise KeyboardInterrupt
        return real(name, labels, voxel_nm, *a, **k)

    monkeypatch.setattr(runner, "measure_batch", wrapped)


def test_job_cut_off_midway_resumes_at_its_first_unfinished_measure(tmp_path, monkeypatch):
    from jaxcba.batch import run_batch

    spec = {"params": "paper", "seeds": [4, 5], "shape": 24, "voxel_nm": 40,
            "measure": ["fractions", "surface_density", "two_point"], "downsample": [2], "per_device": 2}
    run_batch(spec, tmp_path / "whole", progress=False)
    whole = _by_job(load_rows(tmp_path / "whole"))
    out = tmp_path / "cut"
    calls = []
    _interrupt_at(monkeypatch, "fractions", 80.0, calls)  # after all three measures at 40 nm
    with pytest.raises(KeyboardInterrupt):
        run_batch(spec, out, progress=False)
    assert calls == [("fractions", 40.0), ("surface_density", 40.0), ("two_point", 40.0), ("fractions", 80.0)]
    assert not load_rows(out) and (out / "spec.json").exists()  # a fresh run with kept measures keeps its spec
    kept = sorted((out / "partial").glob("*.json"))
    assert {p.stem for p in kept} == set(whole)
    assert set(json.loads(kept[0].read_text())["values"]) == {"fractions", "surface_density", "two_point"}
    calls.clear()
    _interrupt_at(monkeypatch, None, None, calls)
    summary = run_batch(spec, out, progress=False)
    assert calls == [("fractions", 80.0), ("surface_density", 80.0), ("two_point", 80.0)]  # only what was missing
    assert summary.reused == 6 and summary.done == 2  # 3 measures x 2 jobs read back
    assert _by_job(load_rows(out)) == whole  # the same rows, key for key, as the uninterrupted run
    assert not (out / "partial").exists()


def test_partial_file_of_another_volume_is_ignored(tmp_path):
    from jaxcba.batch import run_batch
    from jaxcba.batch.store import fingerprint, save_partial

    spec = {"params": "paper", "seeds": [7], "shape": 20, "voxel_nm": 80, "measure": ["fractions"]}
    run_batch(spec, tmp_path / "ref", progress=False)
    (ref,) = load_rows(tmp_path / "ref")
    (job,) = parse_spec(spec).jobs()
    out = tmp_path / "runs"
    out.mkdir()
    fake = {"values": {"fractions": {"pore": 1.0, "cb": 0.0, "graphite": 0.0, "solid": 0.0}}, "coarse": {}}
    save_partial(out, job.id, fingerprint(np.zeros((20, 20, 20), np.uint8)), fake)
    run_batch(spec, out, progress=False)
    (row,) = load_rows(out)
    assert row["fractions"] == ref["fractions"] != fake["values"]["fractions"]
    # the fingerprint sees every byte, the shape and the dtype
    v = np.zeros((4, 4, 4), np.uint8)
    w = v.copy()
    w[3, 3, 3] = 1
    assert len({fingerprint(v), fingerprint(w), fingerprint(v.reshape(8, 8)), fingerprint(v.astype(np.int8))}) == 4


def test_cpsd_and_constrictivity_run_as_one_kernel_with_the_values_of_each_alone(tmp_path, monkeypatch):
    from jaxcba.batch import run_batch
    from jaxcba.batch.measures import plan

    assert plan(["fractions", "constrictivity", "two_point", "cpsd"]) == [
        ("fractions", ("fractions",)), ("cpsd+constrictivity", ("cpsd", "constrictivity")), ("two_point", ("two_point",))]
    assert plan(["cpsd", "fractions"]) == [("cpsd", ("cpsd",)), ("fractions", ("fractions",))]
    base = {"params": "paper", "seeds": [2], "shape": 32, "voxel_nm": 40}
    alone = {}
    for name in ("cpsd", "constrictivity"):
        run_batch({**base, "measure": [name]}, tmp_path / name, progress=False)
        (alone[name],) = load_rows(tmp_path / name)
    calls = []
    _interrupt_at(monkeypatch, None, None, calls)
    run_batch({**base, "measure": ["cpsd", "constrictivity"]}, tmp_path / "both", progress=False)
    assert calls == [("cpsd+constrictivity", 40.0)]  # one pass for both
    (row,) = load_rows(tmp_path / "both")
    assert row["cpsd"] == alone["cpsd"]["cpsd"]  # integer counts: the same curves, key for key
    assert row["constrictivity"] == alone["constrictivity"]["constrictivity"]
    assert 0 < row["cpsd"]["pore"]["r_max_nm"] == row["constrictivity"]["pore"]["r_max_nm"]
