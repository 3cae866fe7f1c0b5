"""Hostile but realistic input to every command (issue #18), table-driven, volumes <= 64^3.

Each bad-input case asserts: exit status 2, one line on stderr naming the command (no
traceback), within 10 s, and no file left behind (neither in the output folder nor among
the inputs). The commands run in-process through ``jaxcba.cli.main`` (a subprocess costs
~4 s of JAX import); a few cases also run as subprocesses for the no-traceback check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import host_devices_env

from jaxcba import CBAParams, simulate
from jaxcba.cli import main

PAPER = CBAParams.paper().to_dict()


def _labels(shape=(32, 32, 32), seed=0):
    """Labels with every phase: a smooth random field thresholded (pore percolates along z)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0, mode="wrap")
    field /= field.std()
    lab = np.zeros(shape, np.uint8)
    lab[field > -0.2] = 1
    lab[field > 0.6] = 2
    return lab


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    import tifffile

    d = tmp_path_factory.mktemp("inputs")
    good = _labels()
    np.save(d / "good32.npy", good)
    np.save(d / "sim32.npy", np.asarray(simulate(CBAParams.paper(), 32, 80.0, 0)))  # a model volume, for calibrate
    np.save(d / "seg.npy", np.array([0, 128, 255], np.uint8)[good])
    np.save(d / "flat.npy", good[0])
    tifffile.imwrite(d / "rgb.tif", np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    (d / "afile").write_text("a file, not a folder\n")
    (d / "adir").mkdir()
    (d / "notjson.json").write_text("{not json")
    for name, change in {"huge_lx": {"lambda_x": 1e-3}, "huge_ly": {"lambda_y": 1e-3}, "bad_param": {"lambda_x": -1},
                         "nan_mu": {"mu": "NaN"}}.items():
        (d / f"{name}.json").write_text(json.dumps({**PAPER, **change}))
    (d / "extra_key.json").write_text(json.dumps({**PAPER, "zeta": 1.0}))
    ok = {"params": "paper", "seeds": [0], "shape": 16, "voxel_nm": 80, "measure": ["fractions"]}
    specs = {
        "spec_ok": ok,
        "spec_big": {**ok, "shape": 100000},
        "spec_huge_lx": {**ok, "sweep": {"lambda_x": [1e-3]}},
        "spec_unknown": {**ok, "bogus": 1},
        "spec_seed_neg": {**ok, "seeds": [-1]},
        "spec_seed_big": {**ok, "seeds": [2**64]},
        "spec_voxel": {**ok, "voxel_nm": 1e-300},
        "spec_measure": {**ok, "measure": ["bogus"]},
        "spec_shape": {**ok, "shape": [16, 16]},
        "spec_sweep": {**ok, "sweep": {"lambda_x": [-1.0]}},
    }
    for name, spec in specs.items():
        (d / f"{name}.json").write_text(json.dumps(spec))
    return d


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1) for p in sorted(folder.rglob("*"))}


def _argv(head: list, defaults: dict, extra: list) -> list:
    """``head + defaults + extra``, leaving out each default option that ``extra`` gives itself."""
    out = list(head)
    for opt, value in defaults.items():
        if opt not in extra:
            out += [opt] if value is None else [opt, value]
    return out + list(extra)


def _call(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse usage errors
        return exc.code


def check_refused(argv, inputs: Path, out: Path, capsys, needle: str | None = None):
    """Run ``jaxcba argv`` in-process; exit 2, one line, no traceback, < 10 s, nothing written."""
    argv = [a.replace("{in}", str(inputs)).replace("{out}", str(out)) for a in argv]
    before = _tree(inputs)
    capsys.readouterr()
    t0 = time.perf_counter()
    rc = _call(argv)
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (argv, rc, err)
    assert len(lines) == 1 and lines[0].startswith(f"jaxcba {argv[0]}") and "error" in lines[0], err
    assert "Traceback" not in err
    if needle is not None:
        assert needle.lower() in lines[0].lower(), lines[0]
    assert seconds < 10, (argv, seconds)
    assert _tree(out) == {}, (argv, _tree(out))
    assert _tree(inputs) == before, argv
    return lines[0]


# ------------------------------------------------------------------------------ simulate
SIMULATE = [
    (["--seed", "18446744073709551616"], "out of range"),
    (["--seed", "abc"], "not an integer"),
    (["--seed", "1.5"], "not an integer"),
    (["--out", "{in}/afile/v.npy"], "is a file, not a folder"),
    (["--out", "{out}"], "is a folder"),
    (["--out", "{out}/v.png"], "unsupported volume format"),
    (["--out", "{out}/v.raw"], "unsupported volume format"),
    (["--params", "{in}/huge_lx.json"], "grains"),
    (["--params", "{in}/huge_ly.json"], "grains"),
    (["--params", "{in}/bad_param.json"], "lambda_x"),
    (["--params", "{in}/nan_mu.json"], "mu"),
    (["--params", "{in}/missing.json"], "cannot read"),
    (["--voxel-nm", "1e-300"], "out of range"),
    (["--voxel-nm", "1e300"], "out of range"),
    (["--voxel-nm", "nan"], "out of range"),
    (["--shape", "0"], "every side of shape"),
    (["--shape", "100000"], "GiB"),
    (["--shape", "16", "--shape", "24"], "more than once"),
]


@pytest.mark.parametrize("extra, needle", SIMULATE)
def test_simulate_refuses(extra, needle, inputs, tmp_path, capsys):
    argv = _argv(["simulate"], {"--shape": "32", "--voxel-nm": "80", "--out": "{out}/v.npy", "--no-progress": None}, extra)
    check_refused(argv, inputs, tmp_path, capsys, needle)


# -------------------------------------------------------------------------------- theory
THEORY = [
    (["--voxel-nm", "1e-300", "--json"], "out of range"),
    (["--voxel-nm", "1e300"], "out of range"),
    (["--voxel-nm", "0"], "out of range"),
    (["--voxel-nm", "-5"], "out of range"),
    (["--voxel-nm", "nan"], "out of range"),
    (["--voxel-nm", "inf"], "out of range"),
    (["--voxel-nm", "abc"], "not a number"),
    (["--params", "{in}/bad_param.json"], "lambda_x"),
    (["--params", "{in}/missing.json"], "cannot read"),
    (["--params", "{in}/notjson.json"], "not valid JSON"),
    (["--params", "{in}/extra_key.json"], "zeta"),
    (["--voxel-nm", "20", "--voxel-nm", "40"], "more than once"),
    (["--bogus"], "unrecognized"),
]


@pytest.mark.parametrize("extra, needle", THEORY)
def test_theory_refuses(extra, needle, inputs, tmp_path, capsys):
    check_refused(["theory", *extra], inputs, tmp_path, capsys, needle)


# ------------------------------------------------------------------------------ describe
DESCRIBE = [
    (["--voxel-nm", "1e-300", "--only", "intrinsic"], "out of range"),
    (["--voxel-nm", "abc"], "not a number"),
    (["--axis", "3"], "not an axis"),
    (["--axis", "w"], "not an axis"),
    (["--max-lag-vox", "0"], "out of range"),
    (["--max-lag-vox", "2.5"], "not an integer"),
    (["--max-lag-vox", "1000"], "out of range"),
    (["--plot", "{in}/afile/out.png"], "is a file, not a folder"),
    (["--plot", "{out}/out.jpg"], "unsupported plot format"),
    (["--plot", "{in}/adir"], "is a folder"),
    (["--phase", "bogus"], "invalid choice"),
    (["--only", "bogus"], "invalid choice"),
    (["--axis", "0", "--axis", "1"], "more than once"),
]


@pytest.mark.parametrize("extra, needle", DESCRIBE)
def test_describe_refuses(extra, needle, inputs, tmp_path, capsys):
    check_refused(_argv(["describe", "{in}/good32.npy"], {"--voxel-nm": "80"}, extra), inputs, tmp_path, capsys, needle)


@pytest.mark.parametrize("volume, needle", [("rgb.tif", "colour image"), ("missing.npy", "no such file"),
                                             ("flat.npy", "3D"), ("afile", "unsupported volume format")])
def test_describe_and_tortuosity_refuse_bad_volumes(volume, needle, inputs, tmp_path, capsys):
    check_refused(["describe", f"{{in}}/{volume}", "--voxel-nm", "80"], inputs, tmp_path, capsys, needle)
    check_refused(["tortuosity", f"{{in}}/{volume}"], inputs, tmp_path, capsys, needle)


# ---------------------------------------------------------------------------- tortuosity
TORTUOSITY = [
    (["--axis", "3"], "not an axis"),
    (["--axis", "w"], "not an axis"),
    (["--phase", "solid", "--conductivity", "2=nan,1=1"], "not finite"),
    (["--phase", "solid", "--conductivity", "2=inf,1=1"], "not finite"),
    (["--conductivity", "2:1"], "LABEL=VALUE"),
    (["--phase", "solid", "--conductivity", "2=1,2=3"], "twice"),
    (["--phase", "solid", "--conductivity", "2=1,1=-0.5"], ">= 0"),
    (["--phase", "solid", "--conductivity", "2=1"], "no value for label"),
    (["--max-iter", "0"], "--max-iter"),
    (["--tol", "0"], "must be a finite number > 0"),
    (["--tol", "2"], "--tol must be < 1"),
    (["--phase", "bogus"], "invalid choice"),
    (["--axis", "z", "--axis", "x"], "more than once"),
]


@pytest.mark.parametrize("extra, needle", TORTUOSITY)
def test_tortuosity_refuses(extra, needle, inputs, tmp_path, capsys):
    check_refused(["tortuosity", "{in}/good32.npy", *extra], inputs, tmp_path, capsys, needle)


# ---------------------------------------------------------------------------- preprocess
PREPROCESS = [
    (["--labels", "0=0,128=1,255=2,0=1"], "mapped twice"),
    (["--labels", "0=0,128=1,255=2,300=1"], "cannot occur in a uint8 volume"),
    (["--labels=-1=0,0=0,128=1,255=2"], "cannot occur in a uint8 volume"),
    (["--labels", "0=0,128=1"], "no entry in the label mapping"),
    (["--labels", "0=0,128=1,255=5"], "targets must be"),
    (["--labels", "0=0,128=1,255=2", "--voxel-nm", "10,10,20"], "not cubic"),
    (["--labels", "0=0,128=1,255=2", "--voxel-nm", "0"], "positive numbers"),
    (["--labels", "0=0,128=1,255=2", "--voxel-nm", "80", "--voxel-nm", "40"], "more than once"),
]
PREPROCESS_GOOD = [
    (["--to-voxel-nm", "0.01"], "needs about"),
    (["--closing-radius", "300"], "closing_radius"),
    (["--closing-radius", "-1"], "out of range"),
    (["--min-component", "-5"], "out of range"),
    (["--quantile", "0.5"], "--quantile needs --grey"),
    (["--quantile", "1.5"], "out of range"),
    (["--min-component", "5", "--keep-components"], "contradict"),
    (["--out", "{in}/afile/o.npy"], "is a file, not a folder"),
    (["--out", "{out}/o.png"], "unsupported volume format"),
    (["--out", "{in}/adir"], "is a folder"),
    (["--raw-shape", "2,2"], "three positive integers"),
    (["--crop", "bogus"], "crop"),
    (["--downsample", "3"], "invalid choice"),
]


@pytest.mark.parametrize("extra, needle", PREPROCESS)
def test_preprocess_refuses_mappings(extra, needle, inputs, tmp_path, capsys):
    argv = _argv(["preprocess", "{in}/seg.npy"], {"--out": "{out}/o.npy", "--voxel-nm": "80"}, extra)
    check_refused(argv, inputs, tmp_path, capsys, needle)


@pytest.mark.parametrize("extra, needle", PREPROCESS_GOOD)
def test_preprocess_refuses(extra, needle, inputs, tmp_path, capsys):
    argv = _argv(["preprocess", "{in}/good32.npy"], {"--voxel-nm": "80", "--out": "{out}/o.npy"}, extra)
    check_refused(argv, inputs, tmp_path, capsys, needle)


# --------------------------------------------------------------------------------- batch
BATCH = [
    ("spec_big", [], "GiB"),
    ("spec_huge_lx", [], "grains"),
    ("missing", [], "cannot read spec"),
    ("notjson", [], "not valid JSON"),
    ("spec_unknown", [], "unknown key"),
    ("spec_seed_neg", [], "seeds"),
    ("spec_seed_big", [], "seeds"),
    ("spec_voxel", [], "voxel_nm"),
    ("spec_measure", [], "unknown measure"),
    ("spec_shape", [], "shape"),
    ("spec_sweep", [], "lambda_x"),
    ("spec_ok", ["--per-device", "0"], "out of range"),
    ("spec_ok", ["--out", "{in}/afile"], "not a folder"),
    ("spec_ok", ["--out", "{in}/afile/runs"], "is a file, not a folder"),
]


@pytest.mark.parametrize("spec, extra, needle", BATCH)
def test_batch_refuses(spec, extra, needle, inputs, tmp_path, capsys):
    argv = _argv(["batch", f"{{in}}/{spec}.json"], {"--no-progress": None, "--out": "{out}/runs"}, extra)
    check_refused(argv, inputs, tmp_path, capsys, needle)


def test_failed_batch_leaves_nothing_that_blocks_the_corrected_run(inputs, tmp_path, capsys, monkeypatch):
    """A run that fails after preparing its folder (here: the first simulation) removes what it
    wrote, so the corrected spec then runs into the same folder."""
    import jaxcba.model

    def broken(*args, **kwargs):
        raise ValueError("simulated failure")

    monkeypatch.setattr(jaxcba.model, "simulate", broken)
    out = tmp_path / "runs"
    assert _call(["batch", str(inputs / "spec_ok.json"), "--out", str(out), "--no-progress"]) == 2
    assert not out.exists()
    monkeypatch.undo()
    ok = json.loads((inputs / "spec_ok.json").read_text())
    spec = tmp_path / "fixed.json"
    spec.write_text(json.dumps({**ok, "seeds": [1]}))
    assert _call(["batch", str(spec), "--out", str(out), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["seed"] == 1


# ---------------------------------------------------------------------------------- demo
DEMO = [
    (["--shape", "0"], "--shape: '0' is out of range; allowed: an integer >= 16"),
    (["--shape", "8"], "--shape: '8' is out of range; allowed: an integer >= 16"),
    (["--shape", "-5"], "--shape: '-5' is out of range; allowed: an integer >= 16"),
    (["--voxel-nm", "0"], "out of range"),
    (["--voxel-nm", "1e-300"], "out of range"),
    (["--seed", "18446744073709551616"], "out of range"),
    (["--out", "{in}/afile"], "not a folder"),
    (["--out", "{in}/afile/sub"], "is a file, not a folder"),
    (["--params", "{in}/missing.json"], "cannot read"),
    (["--params", "{in}/bad_param.json"], "lambda_x"),
    (["--shape", "16", "--shape", "24"], "more than once"),
    (["--quick", "--paper-size"], "not allowed with"),
]


@pytest.mark.parametrize("extra, needle", DEMO)
def test_demo_refuses(extra, needle, inputs, tmp_path, capsys):
    check_refused(_argv(["demo"], {"--voxel-nm": "80", "--out": "{out}/d"}, extra), inputs, tmp_path, capsys, needle)


# ----------------------------------------------------------------------------- calibrate
CALIBRATE = [
    (["--voxel-nm", "0"], "--voxel-nm: '0' is out of range; allowed: a voxel side in"),
    (["--voxel-nm", "abc"], "not a number"),
    (["--starts", "0"], "--starts: '0' is out of range"),
    (["--bootstrap", "1"], "allowed: 0 (off) or a number of twins >= 2"),
    (["--stages", "4"], "stages"),
    (["--realizations", "0"], "--realizations"),
    (["--joint-window", "0"], "--joint-window"),
    (["--method", "bogus"], "invalid choice"),
    (["--initial", "{in}/missing.json"], "cannot read"),
    (["--initial", "{in}/bad_param.json"], "lambda_x"),
    (["--stage1-descriptor", "bogus"], "invalid choice"),
    (["--estimator", "bogus"], "invalid choice"),
    (["--voxel-nm", "1e-300"], "voxel"),
    # refused up front from an estimate or a check, before reading more than the volume's shape
    (["--stages", "3", "--realizations", "1000000"], "1000000 realizations"),
    (["--stages", "joint", "--joint-window", "100000"], "--joint-window 100000 is larger than the image"),
    (["--stages", "joint", "--joint-noise", "100000"], "needs about"),
    (["--seed", "18446744073709551616"], "out of range"),
    (["--seed", "1.5"], "not an integer"),
    (["--stages", "1", "--out", "{in}/adir"], "is a folder"),
    (["--stages", "1", "--out", "{in}/afile/p.json"], "is a file, not a folder"),
    (["--stages", "1", "--report", "{in}/afile/r.json"], "is a file, not a folder"),
    (["--stages", "1", "--out", "{out}/p.txt"], "unsupported file format"),
]


@pytest.mark.parametrize("extra, needle", CALIBRATE)
def test_calibrate_refuses(extra, needle, inputs, tmp_path, capsys):
    check_refused(_argv(["calibrate", "{in}/sim32.npy"], {"--voxel-nm": "80"}, extra), inputs, tmp_path, capsys, needle)


# ---------------------------------------------------------------- as subprocesses: no traceback
def _subprocess(argv, timeout=60, **env):
    """``python -m jaxcba argv`` on the CPU, with ``env`` added."""
    e = dict(os.environ, JAX_PLATFORMS="cpu", **env)
    e.pop("JAXCBA_TRACEBACK", None)
    try:
        return subprocess.run([sys.executable, "-m", "jaxcba", *argv], capture_output=True, text=True, timeout=timeout,
                              env=e)
    except subprocess.TimeoutExpired:
        pytest.fail(f"jaxcba {' '.join(argv)} ran past {timeout} s")


@pytest.mark.parametrize("argv", [
    ["simulate", "--shape", "16", "--voxel-nm", "80", "--seed", "18446744073709551616", "--out", "{out}/v.npy"],
    ["preprocess", "{in}/seg.npy", "--voxel-nm", "80", "--labels", "0=0,128=1,255=2,300=1", "--out", "{out}/o.npy"],
    ["describe", "{in}/good32.npy", "--voxel-nm", "80", "--plot", "{in}/afile/out.png"],
])
def test_subprocess_one_line_no_traceback(argv, inputs, tmp_path):
    r = _subprocess([a.replace("{in}", str(inputs)).replace("{out}", str(tmp_path)) for a in argv])
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert _tree(tmp_path) == {}


# ------------------------------------------------------- legitimate edge inputs: finite results
def test_extreme_conductivities_stop_quickly_and_report(inputs, capsys):
    """Only ratios matter: conductivities are solved divided by the largest (in float64), so equal
    1e20 or 1e-38 values (overflow / flushed to 0 in float32 before) give the M of equal 1s, in
    seconds; a ratio float32 cannot hold (1e-38 / 1e38) is refused with exit 2, not solved as 0."""
    def run(cond):
        rc = main(["tortuosity", str(inputs / "good32.npy"), "--phase", "solid", "--conductivity", cond, "--json"])
        out = capsys.readouterr().out
        assert "NaN" not in out and "Infinity" not in out
        return rc, json.loads(out)  # strict JSON

    rc1, one = run("2=1,1=1")
    assert rc1 == 0 and one["converged"] and 0 < one["m_factor"] < 1
    for cond, scale in (("2=1e20,1=1e20", 1e20), ("2=1e-38,1=1e-38", 1e-38)):
        rc, res = run(cond)
        assert rc == 0 and res["converged"], res
        assert res["iterations"] == one["iterations"]  # the same solve as the equal 1s, not a slow crawl
        assert res["m_factor"] == pytest.approx(one["m_factor"], rel=1e-5)
        assert res["sigma_eff"] == pytest.approx(one["m_factor"] * scale, rel=1e-4)
        assert res["sigma_ref"] == pytest.approx(scale, rel=1e-6)
    check_refused(["tortuosity", "{in}/good32.npy", "--phase", "solid", "--conductivity", "2=1e38,1=1e-38"], inputs,
                  inputs / "adir", capsys, "smallest normal ratio")


def test_not_converged_exits_1(inputs, capsys):
    rc = main(["tortuosity", str(inputs / "good32.npy"), "--phase", "solid", "--conductivity", "2=1,1=0.01",
               "--max-iter", "1", "--tol", "1e-12", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 1 and res["converged"] is False


def test_preprocess_anisotropic_resamples_and_says_so(inputs, tmp_path, capsys):
    out = tmp_path / "o.npy"
    assert main(["preprocess", str(inputs / "seg.npy"), "--voxel-nm", "10,10,20", "--to-voxel-nm", "20",
                 "--labels", "0=0,128=1,255=2", "--out", str(out)]) == 0
    assert np.load(out).shape == (32, 16, 16)
    assert "voxel 20 nm" in capsys.readouterr().out


def test_overwrite_is_announced_and_mode_respects_umask(tmp_path, capsys):
    out = tmp_path / "v.npy"
    argv = ["simulate", "--shape", "16", "--voxel-nm", "80", "--out", str(out), "--json"]
    old = os.umask(0o022)
    try:
        assert main(argv) == 0
        first = out.read_bytes()
        assert "overwritten" not in capsys.readouterr().err
        assert main(argv) == 0
        assert f"{out} exists and will be overwritten" in capsys.readouterr().err
    finally:
        os.umask(old)
    assert out.read_bytes() == first
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)


@pytest.mark.slow  # two fresh processes
def test_same_seed_same_bytes_on_1_and_4_host_devices(tmp_path):
    files = []
    for n in (1, 4):
        f = tmp_path / f"v{n}.npy"
        r = _subprocess(["simulate", "--shape", "40", "--voxel-nm", "80", "--seed", "11", "--out", str(f), "--json"],
                        timeout=120, XLA_FLAGS=host_devices_env(n)["XLA_FLAGS"])
        assert r.returncode == 0, r.stderr
        files.append(f.read_bytes())
    assert files[0] == files[1]


# --------------------------------------------------------------- API checks of the descriptors
@pytest.mark.parametrize("kwargs, needle", [
    ({"voxel_nm": "80"}, "voxel_nm = '80' is not a number"),
    ({"voxel_nm": None}, "voxel_nm = None is not a number"),
    ({"voxel_nm": float("nan")}, "voxel_nm = nan is not finite"),
    ({"max_lag_vox": 0}, "max_lag_vox = 0 is out of range; allowed: an integer in [1, 15]"),
    ({"max_lag_vox": 2.5}, "max_lag_vox = 2.5 is not an integer"),
    ({"max_lag_vox": 16}, "max_lag_vox = 16 is out of range"),
    ({"axis": "w"}, "not an axis"),
    ({"axis": 3}, "not an axis"),
])
def test_describe_api_refuses(kwargs, needle):
    from jaxcba.descriptors import describe

    args = {"voxel_nm": 80.0, **kwargs}
    with pytest.raises(ValueError) as exc:
        describe(_labels((16, 16, 16)), args.pop("voxel_nm"), which=("volume_fraction", "two_point"), **args)
    assert needle in str(exc.value)


def test_radii_of_a_phase_filling_the_window_are_reported_unbounded():
    """All-pore / all-cb windows: no wall bounds the balls, so r_min, r_max and beta are null with
    radii_bounded false (not the radius grid's cap: 2480 nm for 32^3 at 80 nm); one solid voxel
    bounds them again: r_max then lies within half a voxel of the largest distance to it."""
    from scipy import ndimage

    from jaxcba.descriptors import describe

    which = ("cpsd", "constrictivity", "geodesic_tortuosity")
    for value, phases in ((0, ("pore",)), (1, ("solid", "cb"))):
        rep = describe(np.full((8, 8, 8), value, np.uint8), 80.0, phases=phases, which=which)
        for p in phases:
            r = rep[p]
            assert (r.r_min, r.r_max, r.constrictivity, r.radii_bounded) == (None, None, None, False), r
            assert r.geodesic_tortuosity == pytest.approx(1.0)
            assert r.cpsd["fraction"] == [1.0] * len(r.cpsd["fraction"])
        assert any("fills the window" in n for n in rep.notes)
    lab = np.zeros((8, 8, 8), np.uint8)
    lab[4, 4, 4] = 1
    r = describe(lab, 80.0, phases="pore", which=which)["pore"]
    dt_max = ndimage.distance_transform_edt(lab == 0).max()  # the border is not a wall
    assert r.radii_bounded is True and 0 < r.r_max <= 80.0 * (dt_max + 0.5)
    assert isinstance(r.r_min, float) and 0 < r.constrictivity <= 1


def _checkerboard(n=12):
    return (np.indices((n, n, n)).sum(0) % 2).astype(np.uint8)


def _diagonal_zigzag(n=12):
    """One-voxel cb path that advances along z by edge neighbours only (x = z), in pore."""
    lab = np.zeros((n, 3, n), np.uint8)
    lab[np.arange(n), 1, np.arange(n)] = 1
    return lab


def _staircase(n=12):
    """The same path two voxels wide: face-connected."""
    lab = _diagonal_zigzag(n)
    lab[np.arange(n - 1), 1, np.arange(1, n)] = 1
    return lab


@pytest.mark.parametrize("make, phase, percolates", [
    (_checkerboard, "solid", False), (_checkerboard, "pore", False),
    (_diagonal_zigzag, "cb", False), (_staircase, "cb", True),
])
def test_one_connectivity_rule_for_percolation(make, phase, percolates):
    """Geodesic tortuosity, constrictivity and the transport solver agree on "percolates": a
    face-connected (6-neighbour) path between the faces normal to the axis. A checkerboard
    (only edge neighbours alike; the 26-neighbourhood gave tau = 1.414) and a one-voxel diagonal
    do not percolate; the two-voxel staircase does."""
    from jaxcba.descriptors import constrictivity, geodesic_tortuosity
    from jaxcba.descriptors.phases import phase_mask
    from jaxcba.transport import m_factor

    lab = make()
    mask = np.asarray(phase_mask(lab, phase))
    assert bool(geodesic_tortuosity(mask).percolates) is percolates
    assert bool(constrictivity(mask, 80.0).percolates) is percolates
    r = m_factor(lab, phase, lean=False)
    assert bool(r.percolates) is percolates and (float(r.m_factor) > 0) is percolates


# ------------------------------------------------------------------ API checks of the solver
def _channels():
    """Straight channels along z in a (12, 3, 12) volume: graphite at x < 3, cb at 3 <= x < 9,
    pore beyond. For the solid with {2: s, 1: r s}: M = (9 + 18 r) / 36 exactly (parallel
    conductors; no current crosses between columns)."""
    lab = np.zeros((12, 3, 12), np.uint8)
    lab[:, :, :3] = 2
    lab[:, :, 3:9] = 1
    return lab


@pytest.mark.parametrize("lean", [False, True])
def test_conductivities_of_any_finite_scale_give_the_ratio_answer(lean):
    """Only ratios matter: 1e-38 (a float32 subnormal, flushed to 0 by XLA) and 1e38 (whose
    harmonic means overflow) give the closed-form M, and sigma_eff in the input's units."""
    from jaxcba.transport import m_factor

    lab = _channels()
    for scale, ratio in ((1.0, 0.01), (1e-38, 1.0), (1e-38, 0.01), (1e38, 0.01), (1e20, 1.0)):
        r = m_factor(lab, "solid", {2: scale, 1: ratio * scale}, lean=lean)
        expected = (9 + 18 * ratio) / 36
        assert bool(r.converged) and bool(r.percolates), (scale, ratio)
        assert float(r.m_factor) == pytest.approx(expected, rel=1e-4), (scale, ratio)
        assert float(r.sigma_eff) == pytest.approx(expected * scale, rel=1e-4)
        assert float(r.sigma_ref) == pytest.approx(scale, rel=1e-6)
    with pytest.raises(ValueError, match="below float32's smallest normal ratio"):
        m_factor(lab, "solid", {2: 1.0, 1: 1e-40}, lean=lean)  # would solve as an insulator


@pytest.mark.parametrize("call, needle", [
    (lambda e, m, lab: e(np.ones((6, 6, 6), np.float32), sigma_ref=0), "sigma_ref = 0 is out of range"),
    (lambda e, m, lab: e(np.ones((6, 6, 6), np.float32), sigma_ref=float("nan")), "sigma_ref = nan is not finite"),
    (lambda e, m, lab: e(np.ones((6, 6, 6), np.float32), sigma_ref=-1.0), "sigma_ref = -1.0 is out of range"),
    (lambda e, m, lab: e(np.ones((6, 6, 6), np.float32), dtype=np.int32), "dtype = int32 is not a floating dtype"),
    (lambda e, m, lab: m(lab, "solid", dtype=np.int32), "dtype = int32 is not a floating dtype"),
    (lambda e, m, lab: m(lab, "solid", bogus=1), "unknown solver option(s) 'bogus'; allowed: rtol, flux_tol"),
    (lambda e, m, lab: e(np.ones((6, 6, 6), np.float32), bogus=1, tol=2), "'bogus', 'tol'"),
    (lambda e, m, lab: m(lab, "solid", {2: 1.0, 1: 1e-40}), "smallest normal ratio"),
    (lambda e, m, lab: e(np.array([[[1.0, 1e-45]]] * 2)), "smallest normal ratio"),
])
def test_solver_api_refuses(call, needle):
    """ValueError naming the argument, before any solve (the CLI's exit 2)."""
    from jaxcba.transport import effective_conductivity, m_factor

    with pytest.raises(ValueError) as exc:
        call(effective_conductivity, m_factor, _channels())
    assert needle in str(exc.value)


def test_batch_force_overrides_the_memory_estimate(inputs, tmp_path, capsys, monkeypatch):
    """batch refuses a step its estimate says cannot fit (exit 2, nothing written); --force runs it."""
    import jaxcba.model.window

    monkeypatch.setattr(jaxcba.model.window, "available_bytes", lambda: 1024)  # 1 KiB "free"
    check_refused(["batch", "{in}/spec_ok.json", "--out", "{out}/runs", "--no-progress"], inputs, tmp_path, capsys,
                  "needs about")
    out = tmp_path / "runs"
    assert _call(["batch", str(inputs / "spec_ok.json"), "--out", str(out), "--no-progress", "--force"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["seed"] == 0


def test_png_outputs_get_the_umask_mode(tmp_path):
    """plotting.save_png (the CLI's and the experiments' one writer) gives 0o666 & ~umask, not
    mkstemp's 0600, and leaves no temp file."""
    from jaxcba.plotting import figure, save_png

    old = os.umask(0o022)
    try:
        fig, ax = figure()
        ax.plot([0, 1], [0, 1])
        p = save_png(fig, tmp_path / "sub" / "f.png")
    finally:
        os.umask(old)
    assert oct(p.stat().st_mode & 0o777) == oct(0o644)
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(x.name for x in p.parent.iterdir()) == ["f.png"]
