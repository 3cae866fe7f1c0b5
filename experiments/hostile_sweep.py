"""Hostile re-sweep of issue #18: bad and edge inputs to every command, each as a subprocess.

Replays every bullet of issue #18 ("issue" cases) and more of its own ("own" cases) across the
nine commands (simulate, describe, tortuosity, calibrate, validate, batch, preprocess, theory,
demo) and a few direct API calls, each ``python -m jaxcba ...`` (or ``python -c``) with a
120 s limit, volumes <= 64^3, on the CPU. Each outcome is classified:

- ``exit2-clean``: exit 2 with one line on stderr, nothing left behind (a refusal);
- ``ok``: exit 0 (or the expected 1 / 130) and the result checked correct;
- ``exit2-messy``: exit 2 but more than one line or an unexpected message;
- ``traceback``: a Python traceback, or exit 3 (internal error);
- ``hang``: killed at the time limit;
- ``silently-wrong``: exit 0 where a refusal was due, or a result that fails its check;
- ``leftover``: refused, but a file was left in the output folder (or an input changed).

Usage: ``python experiments/hostile_sweep.py [--out experiments/hostile_sweep.md] [--only SUBSTR]``.
Writes the table with counts to ``--out`` (markdown) and ``--out`` with ``.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

LIMIT_S = 120.0
PY = sys.executable


@dataclasses.dataclass
class Case:
    id: str
    source: str  # "issue" or "own"
    cmd: str  # command (or "api")
    argv: list  # jaxcba arguments; for "api", ["-c", code]
    expect: str = "refuse"  # "refuse" | "ok" | "notconv" | "interrupt"
    needle: str | None = None  # expected words in the refusal
    check: Callable | None = None  # (proc, out_dir) -> None if correct, else a reason
    pre: list | None = None  # argv of a command to run first (same out dir), its outcome ignored
    env: dict | None = None
    sigint_after: float | None = None


# ------------------------------------------------------------------------------------ inputs
def make_inputs(d: Path) -> None:
    import tifffile
    from scipy import ndimage

    from jaxcba import CBAParams, simulate

    rng = np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.standard_normal((32, 32, 32)), 2.0, mode="wrap")
    field /= field.std()
    good = np.zeros((32, 32, 32), np.uint8)
    good[field > -0.2] = 1
    good[field > 0.6] = 2
    np.save(d / "good32.npy", good)
    tifffile.imwrite(d / "good32.tif", good)
    np.save(d / "sim32.npy", np.asarray(simulate(CBAParams.paper(), 32, 80.0, 0)))
    np.save(d / "sim48.npy", np.asarray(simulate(CBAParams.paper(), 48, 40.0, 1)))
    np.save(d / "seg.npy", np.array([0, 128, 255], np.uint8)[good])
    np.save(d / "flat.npy", good[0])
    np.save(d / "thin.npy", good[:1])
    np.save(d / "tiny.npy", good[:2, :2, :2])
    np.save(d / "allpore.npy", np.zeros((16, 16, 16), np.uint8))
    np.save(d / "allcb.npy", np.ones((16, 16, 16), np.uint8))
    np.save(d / "checker.npy", (np.indices((12, 12, 12)).sum(0) % 2).astype(np.uint8))
    np.save(d / "label3.npy", np.where(good == 2, 3, good).astype(np.uint8))
    np.save(d / "neg.npy", good.astype(np.int16) - 1)
    np.save(d / "floatlab.npy", good.astype(np.float32) + 0.5)
    np.save(d / "nanlab.npy", np.where(good == 2, np.nan, good).astype(np.float32))
    np.save(d / "boolvol.npy", good > 0)
    np.save(d / "int64lab.npy", good.astype(np.int64))
    np.save(d / "objarr.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(d / "grey.npy", rng.random((32, 32, 32)).astype(np.float32))
    np.save(d / "grey_nan.npy", np.full((32, 32, 32), np.nan, np.float32))
    np.save(d / "grey_small.npy", rng.random((16, 16, 16)).astype(np.float32))
    np.save(d / "bin.npy", (good > 0).astype(np.uint8))
    (d / "empty.npy").write_bytes(b"")
    (d / "trunc.npy").write_bytes((d / "good32.npy").read_bytes()[:200])
    good.tofile(d / "vol.raw")
    tifffile.imwrite(d / "rgb.tif", np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(d / "flat.tif", good[0])
    (d / "afile").write_text("a file, not a folder\n")
    (d / "adir").mkdir()
    (d / "notjson.json").write_text("{not json")
    (d / "list.json").write_text("[1, 2, 3]")
    paper = CBAParams.paper().to_dict()
    for name, change in {"huge_lx": {"lambda_x": 1e-3}, "huge_ly": {"lambda_y": 1e-3}, "bad_param": {"lambda_x": -1},
                         "nan_mu": {"mu": "NaN"}, "str_mu": {"mu": "abc"}, "eta_neg": {"eta": -5.0},
                         "theta_zero": {"theta": 0.0}, "two_phase": {"lambda_x": 0.0}}.items():
        (d / f"{name}.json").write_text(json.dumps({**paper, **change}))
    (d / "extra_key.json").write_text(json.dumps({**paper, "zeta": 1.0}))
    (d / "missing_key.json").write_text(json.dumps({k: v for k, v in paper.items() if k != "mu"}))
    (d / "paper.json").write_text(json.dumps(paper))
    ok = {"params": "paper", "seeds": [0], "shape": 16, "voxel_nm": 80, "measure": ["fractions"]}
    specs = {
        "spec_ok": ok,
        "spec_ok2": {**ok, "seeds": [1]},
        "spec_nan": {**ok, "measure": ["constrictivity", "geodesic_tortuosity", "m_factor_pore"]},
        "spec_big": {**ok, "shape": 100000},
        "spec_huge_lx": {**ok, "sweep": {"lambda_x": [1e-3]}},
        "spec_unknown": {**ok, "bogus": 1},
        "spec_seed_neg": {**ok, "seeds": [-1]},
        "spec_seed_big": {**ok, "seeds": [2**64]},
        "spec_seed_dup": {**ok, "seeds": [0, 0]},
        "spec_seed_empty": {**ok, "seeds": []},
        "spec_seed_float": {**ok, "seeds": [1.5]},
        "spec_voxel": {**ok, "voxel_nm": 1e-300},
        "spec_voxel_str": {**ok, "voxel_nm": "80"},
        "spec_measure": {**ok, "measure": ["bogus"]},
        "spec_measure_empty": {**ok, "measure": []},
        "spec_shape": {**ok, "shape": [16, 16]},
        "spec_shape0": {**ok, "shape": 0},
        "spec_sweep": {**ok, "sweep": {"lambda_x": [-1.0]}},
        "spec_sweep_empty": {**ok, "sweep": {"lambda_x": []}},
        "spec_sweep_unknown": {**ok, "sweep": {"zeta": [1.0]}},
        "spec_params_bad": {**ok, "params": {"mu": 1.0}},
        "spec_per_device0": {**ok, "per_device": 0},
        "spec_downsample": {**ok, "downsample": [32]},
        "spec_list": [ok],
    }
    for name, spec in specs.items():
        (d / f"{name}.json").write_text(json.dumps(spec))


# ------------------------------------------------------------------------------------ checks
def _strict(text: str):
    def bad(c):
        raise ValueError(f"bare {c}")

    return json.loads(text, parse_constant=bad)


def check_json_stdout(pred: Callable | None = None):
    def check(proc, out):
        try:
            data = _strict(proc.stdout)
        except ValueError as exc:
            return f"stdout not strict JSON: {exc}"
        if pred is not None:
            return pred(data)
        return None

    return check


def check_file(name: str, pred: Callable | None = None):
    def check(proc, out):
        p = out / name
        if not p.exists():
            return f"{name} not written"
        return pred(p) if pred else None

    return check


def check_all(*checks):
    def check(proc, out):
        for c in checks:
            r = c(proc, out)
            if r:
                return r
        return None

    return check


def _phase(data, phase):
    return data.get("phases", data).get(phase, {})


def allfill_describe(phase):
    def pred(data):
        p = _phase(data, phase)
        got = (p.get("r_min"), p.get("r_max"), p.get("constrictivity"), p.get("radii_bounded"))
        return None if got == (None, None, None, False) else f"{phase}: r_min, r_max, beta, bounded = {got}"

    return pred


def checker_describe(data):
    for ph in ("solid", "pore"):
        p = _phase(data, ph)
        if p.get("geodesic_tortuosity") != "not percolating" or p.get("constrictivity") != "not percolating":
            return f"{ph}: tau {p.get('geodesic_tortuosity')}, beta {p.get('constrictivity')} (should not percolate)"
    return None


def checker_tortuosity(data):
    return None if data.get("percolates") is False and data.get("m_factor") in (0, 0.0, None) else f"{data}"


def m_is(value, tol=1e-4):
    def pred(data):
        m = data.get("m_factor")
        return None if m is not None and abs(m - value) <= tol and data.get("converged") else f"M = {m}, {data}"

    return pred


def finite_theory(data):
    bad = []

    def walk(v, k=""):
        if isinstance(v, dict):
            for a, b in v.items():
                walk(b, f"{k}.{a}")
        elif isinstance(v, list):
            for i, b in enumerate(v):
                walk(b, f"{k}[{i}]")
        elif v is None:
            bad.append(k)

    walk(data)
    return f"null values at {bad[:5]}" if bad else None


def batch_rows_strict(proc, out):
    p = out / "runs" / "results.jsonl"
    if not p.exists():
        return "results.jsonl missing"
    try:
        rows = [_strict(line) for line in p.read_text().splitlines()]
    except ValueError as exc:
        return f"results.jsonl: {exc}"
    return None if rows else "no rows"


def batch_rows(n):
    def check(proc, out):
        p = out / "runs" / "results.jsonl"
        rows = p.read_text().splitlines() if p.exists() else []
        return None if len(rows) == n else f"{len(rows)} rows, expected {n}"

    return check


def demo_report(proc, out):
    p = out / "d" / "report.json"
    if not p.exists():
        return "report.json missing"
    try:
        _strict(p.read_text())
    except ValueError as exc:
        return f"report.json: {exc}"
    return None


def npy_shape(name, shape, dtype="uint8", values=None):
    def pred(p):
        a = np.load(p)
        if a.shape != tuple(shape) or str(a.dtype) != dtype:
            return f"{name}: {a.shape} {a.dtype}"
        if values is not None and not set(np.unique(a).tolist()) <= set(values):
            return f"{name}: values {np.unique(a)}"
        return None

    return check_file(name, pred)


def mode_644(p):
    m = p.stat().st_mode & 0o777
    return None if m == 0o644 else f"mode {oct(m)} with umask 022"


def same_as(name, ref):
    def pred(p):
        return None if np.array_equal(np.load(p), np.load(ref)) else f"{name} differs from {ref.name}"

    return pred


def stderr_has(words):
    def check(proc, out):
        return None if words in proc.stderr else f"stderr lacks {words!r}: {proc.stderr[-200:]}"

    return check


def api_ok(proc, out):
    return None if "API-OK" in proc.stdout else f"stdout: {proc.stdout[-300:]}"


# ------------------------------------------------------------------------------------- cases
def api_refuse(cid, source, code, needle=None):
    """A Python snippet that must raise ValueError (the CLI's exit 2) - printed as one line."""
    wrapped = ("import sys\ntry:\n" + "\n".join("    " + line for line in code.splitlines())
               + "\nexcept ValueError as e:\n    print('VALUEERROR', str(e).splitlines()[0]); sys.exit(2)\n"
               "print('RETURNED'); sys.exit(0)\n")
    return Case(cid, source, "api", ["-c", wrapped], "api_refuse", needle)


def api_case(cid, source, code):
    return Case(cid, source, "api", ["-c", code + "\nprint('API-OK')"], "ok", check=api_ok)


def cases(i: str) -> list[Case]:
    S = ["--no-progress"]
    sim = ["simulate", "--shape", "32", "--voxel-nm", "80", "--out", "{out}/v.npy", *S]
    pre = ["preprocess", f"{i}/seg.npy", "--voxel-nm", "80", "--out", "{out}/o.npy"]
    pg = ["preprocess", f"{i}/good32.npy", "--voxel-nm", "80", "--out", "{out}/o.npy"]
    cal = ["calibrate", f"{i}/sim32.npy", "--voxel-nm", "80", "--no-progress"]
    val = ["validate", f"{i}/sim32.npy", "--voxel-nm", "80", "--params", f"{i}/paper.json", "--out", "{out}/v", "--quiet"]
    des = ["describe", f"{i}/good32.npy", "--voxel-nm", "80", "--quiet"]
    tor = ["tortuosity", f"{i}/good32.npy", "--quiet"]
    bat = lambda spec, *a: ["batch", f"{i}/{spec}.json", "--out", "{out}/runs", *S, *a]  # noqa: E731
    demo = ["demo", "--voxel-nm", "80", "--out", "{out}/d"]
    th = ["theory"]
    C = []
    add = C.append
    # ---------------------------------------------------------------- the bullets
    add(Case("dup-label-key", "issue", "preprocess", pre + ["--labels", "0=0,128=1,255=2,0=1"], needle="twice"))
    add(Case("aniso-no-to-voxel", "issue", "preprocess", ["preprocess", f"{i}/seg.npy", "--voxel-nm", "10,10,20",
             "--labels", "0=0,128=1,255=2", "--out", "{out}/o.npy"], needle="cubic"))
    add(Case("aniso-resampled", "issue", "preprocess", ["preprocess", f"{i}/seg.npy", "--voxel-nm", "10,10,20",
             "--to-voxel-nm", "20", "--labels", "0=0,128=1,255=2", "--out", "{out}/o.npy"], "ok",
             check=npy_shape("o.npy", (32, 16, 16), values=(0, 1, 2))))
    add(Case("rgb-tiff-tortuosity", "issue", "tortuosity", ["tortuosity", f"{i}/rgb.tif"], needle="colour"))
    add(Case("rgb-tiff-describe", "issue", "describe", ["describe", f"{i}/rgb.tif", "--voxel-nm", "80"], needle="colour"))
    add(Case("failed-batch-then-fixed", "issue", "batch", bat("spec_ok"), "ok", pre=bat("spec_big"),
             check=batch_rows(1)))
    add(Case("failed-batch-leaves-nothing", "issue", "batch", bat("spec_big"), needle="GiB"))
    add(Case("batch-strict-json", "issue", "batch", bat("spec_nan"), "ok", check=batch_rows_strict))
    add(Case("demo-strict-json", "issue", "demo", ["demo", "--shape", "16", "--voxel-nm", "80", "--out", "{out}/d"], "ok",
             check=demo_report))
    add(api_case("guide-two-point-list", "issue",
                 "from jaxcba import CBAParams, theory\np = CBAParams.paper()\n"
                 "c = theory.two_point_coverage([0.0, 50.0, 200.0], p.mu, p.eta)\nimport numpy as np\n"
                 "assert np.all(np.isfinite(np.asarray(c))), c"))
    add(Case("allpore-describe", "issue", "describe", ["describe", f"{i}/allpore.npy", "--voxel-nm", "80", "--phase",
             "pore", "--json", "--quiet"], "ok", check=check_json_stdout(allfill_describe("pore"))))
    add(Case("allcb-describe", "issue", "describe", ["describe", f"{i}/allcb.npy", "--voxel-nm", "80", "--phase",
             "solid", "--json", "--quiet"], "ok", check=check_json_stdout(allfill_describe("solid"))))
    add(Case("checker-describe", "issue", "describe", ["describe", f"{i}/checker.npy", "--voxel-nm", "80", "--json",
             "--quiet", "--only", "constrictivity", "--only", "geodesic_tortuosity"], "ok",
             check=check_json_stdout(checker_describe)))
    add(Case("checker-tortuosity", "issue", "tortuosity", ["tortuosity", f"{i}/checker.npy", "--phase", "solid",
             "--json", "--quiet"], "ok", check=check_json_stdout(checker_tortuosity)))
    add(Case("file-mode-umask", "issue", "simulate", sim, "ok", env={"UMASK": "022"}, check=check_file("v.npy", mode_644)))
    add(Case("overwrite-announced", "issue", "simulate", sim, "ok", pre=sim,
             check=check_all(stderr_has("will be overwritten"), check_file("v.npy"))))
    add(Case("huge-seed-simulate", "issue", "simulate", sim + ["--seed", "18446744073709551616"], needle="range"))
    add(api_refuse("huge-seed-api", "issue", "from jaxcba import simulate, CBAParams\n"
                   "simulate(CBAParams.paper(), 16, 80.0, 2**64)", "key"))
    add(api_refuse("str-key-api", "issue", "from jaxcba import simulate, CBAParams\n"
                   "simulate(CBAParams.paper(), 16, 80.0, 'abc')", "key"))
    add(api_refuse("float-key-api", "issue", "from jaxcba import simulate, CBAParams\n"
                   "simulate(CBAParams.paper(), 16, 80.0, 1.5)", "key"))
    add(Case("parent-file-simulate", "issue", "simulate", sim[:-3] + ["--out", f"{i}/afile/v.npy", *S], needle="file"))
    add(Case("parent-file-preprocess", "issue", "preprocess", pg[:-2] + ["--out", f"{i}/afile/o.npy"], needle="file"))
    add(Case("parent-file-plot", "issue", "describe", des + ["--plot", f"{i}/afile/out.png"], needle="file"))
    add(Case("calibrate-out-dir", "issue", "calibrate", cal + ["--stages", "1", "--out", f"{i}/adir"], needle="folder"))
    add(Case("label-300", "issue", "preprocess", pre + ["--labels", "0=0,128=1,255=2,300=1"], needle="uint8"))
    add(Case("label-neg", "issue", "preprocess", pre + ["--labels=-1=0,0=0,128=1,255=2"], needle="uint8"))
    add(Case("to-voxel-0.01", "issue", "preprocess", pg + ["--to-voxel-nm", "0.01"], needle="needs about"))
    add(Case("closing-300", "issue", "preprocess", pg + ["--closing-radius", "300"], needle="closing"))
    add(Case("huge-lambda-x", "issue", "simulate", sim + ["--params", f"{i}/huge_lx.json"], needle="grains"))
    add(Case("huge-lambda-y", "issue", "simulate", sim + ["--params", f"{i}/huge_ly.json"], needle="grains"))
    add(Case("realizations-1e6", "issue", "calibrate", cal + ["--stages", "3", "--realizations", "1000000"],
             needle="realizations"))
    add(Case("joint-window-1e5", "issue", "calibrate", cal + ["--stages", "joint", "--joint-window", "100000"],
             needle="joint-window"))
    add(Case("cond-1e38-1e-38", "issue", "tortuosity", tor + ["--phase", "solid", "--conductivity", "2=1e38,1=1e-38"],
             needle="ratio"))
    add(Case("cond-1e20-1e20", "issue", "tortuosity", tor + ["--phase", "solid", "--conductivity", "2=1e20,1=1e20",
             "--json"], "ok", check=check_json_stdout(lambda d: None if d.get("converged") and 0 < d["m_factor"] < 1
                                                        else str(d))))
    add(Case("theory-voxel-1e-300", "issue", "theory", th + ["--voxel-nm", "1e-300", "--json"], needle="range"))
    add(Case("theory-voxel-1e300", "issue", "theory", th + ["--voxel-nm", "1e300"], needle="range"))
    add(Case("describe-voxel-1e-300", "issue", "describe", des + ["--voxel-nm", "1e-300", "--only", "intrinsic"],
             needle="range"))
    for cid, change in (("lambda_x=-1", "lambda_x=-1.0"), ("mu=nan", "mu=float('nan')")):
        add(api_refuse(f"theory-vf-{cid}", "issue", "import dataclasses\nfrom jaxcba import CBAParams, theory\n"
                       f"p = dataclasses.replace(CBAParams.paper(), {change})\ntheory.volume_fractions(p)"))
    for v in ("0.0", "float('nan')"):
        add(api_refuse(f"theory-vf-voxel={v}", "issue", "from jaxcba import CBAParams, theory\n"
                       f"theory.volume_fractions(CBAParams.paper(), voxel_nm={v})", "voxel_nm"))
    add(api_refuse("graphite-gamma0", "issue", "import dataclasses\nfrom jaxcba import CBAParams, theory\n"
                   "p = dataclasses.replace(CBAParams.paper(), gamma=0.0)\ntheory.graphite_densities(p)", "gamma"))
    add(api_refuse("tpc-mu-nan", "issue", "from jaxcba import theory\ntheory.two_point_coverage([0.0, 10.0], "
                   "float('nan'), 100.0)", "mu"))
    add(api_refuse("tpc-h-neg", "issue", "from jaxcba import theory\ntheory.two_point_coverage([-50.0], 0.3, 100.0)",
                   "h"))
    for v in ("-1.0", "float('nan')"):
        add(api_refuse(f"simulate-eps={v}", "issue", "from jaxcba import simulate, CBAParams\n"
                       f"simulate(CBAParams.paper(), 16, 80.0, 0, eps={v})", "eps"))
    for v in ("0", "2.5"):
        add(api_refuse(f"describe-max-lag={v}", "issue", "import numpy as np\nfrom jaxcba.descriptors import describe\n"
                       f"describe(np.load('{i}/good32.npy'), 80.0, which=('two_point',), max_lag_vox={v})",
                       "max_lag_vox"))
    for v in ("0.0", "float('nan')"):
        add(api_refuse(f"sigma-ref={v}", "issue", "import numpy as np\nfrom jaxcba.transport import effective_conductivity\n"
                       f"effective_conductivity(np.ones((6, 6, 6), np.float32), sigma_ref={v})", "sigma_ref"))
    add(api_refuse("m-factor-int-dtype", "issue", "import numpy as np\nfrom jaxcba.transport import m_factor\n"
                   f"m_factor(np.load('{i}/good32.npy'), 'solid', dtype=np.int32)", "dtype"))
    for v in ("'80'", "None"):
        add(api_refuse(f"describe-voxel={v}", "issue", "import numpy as np\nfrom jaxcba.descriptors import describe\n"
                       f"describe(np.load('{i}/good32.npy'), {v})", "voxel_nm"))
    add(api_refuse("m-factor-bogus-kw", "issue", "import numpy as np\nfrom jaxcba.transport import m_factor\n"
                   f"m_factor(np.load('{i}/good32.npy'), 'solid', bogus=1)", "bogus"))
    add(Case("tortuosity-not-converged", "issue", "tortuosity", tor + ["--phase", "solid", "--conductivity",
             "2=1,1=0.01", "--max-iter", "1", "--tol", "1e-12", "--json"], "notconv",
             check=check_json_stdout(lambda d: None if d.get("converged") is False else str(d))))
    add(Case("demo-shape-0", "issue", "demo", demo + ["--shape", "0"], needle="shape"))
    add(Case("closing-neg", "issue", "preprocess", pg + ["--closing-radius", "-1"], needle="range"))
    add(Case("min-component-neg", "issue", "preprocess", pg + ["--min-component", "-5"], needle="range"))
    add(Case("quantile-no-grey", "issue", "preprocess", pg + ["--quantile", "0.5"], needle="grey"))
    add(Case("repeated-shape", "issue", "simulate", sim + ["--shape", "24"], needle="more than once"))
    add(Case("seed-1-vs-4-devices", "issue", "simulate", ["simulate", "--shape", "40", "--voxel-nm", "80", "--seed",
             "11", "--out", "{out}/v4.npy", *S], "ok",
             pre=["simulate", "--shape", "40", "--voxel-nm", "80", "--seed", "11", "--out", "{out}/v1.npy", *S],
             env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
             check=lambda p, o: check_file("v4.npy", same_as("v4.npy", o / "v1.npy"))(p, o)))
    add(Case("ctrl-c-simulate", "issue", "simulate", ["simulate", "--shape", "160", "--voxel-nm", "20", "--out",
             "{out}/big.npy", *S], "interrupt", sigint_after=7.0))
    # ---------------------------------------------------------------------------- own: simulate
    add(Case("sim-ok-32", "own", "simulate", sim, "ok", check=npy_shape("v.npy", (32, 32, 32), values=(0, 1, 2))))
    add(Case("sim-shape-2-values", "own", "simulate", ["simulate", "--shape", "16,16", "--voxel-nm", "80", "--out",
             "{out}/v.npy", *S], needle="shape"))
    add(Case("sim-shape-4-values", "own", "simulate", ["simulate", "--shape", "16,16,16,16", "--voxel-nm", "80", "--out",
             "{out}/v.npy", *S], needle="shape"))
    add(Case("sim-shape-neg", "own", "simulate", ["simulate", "--shape", "-4", "--voxel-nm", "80", "--out",
             "{out}/v.npy", *S]))
    add(Case("sim-voxel-neg", "own", "simulate", ["simulate", "--shape", "16", "--voxel-nm", "-1", "--out",
             "{out}/v.npy", *S], needle="range"))
    add(Case("sim-no-extension", "own", "simulate", sim[:-3] + ["--out", "{out}/v", *S], needle="format"))
    add(Case("sim-tif-ok", "own", "simulate", sim[:-3] + ["--out", "{out}/v.tif", *S], "ok", check=check_file("v.tif")))
    add(Case("sim-params-extra-key", "own", "simulate", sim + ["--params", f"{i}/extra_key.json"], needle="zeta"))
    add(Case("sim-params-missing-key", "own", "simulate", sim + ["--params", f"{i}/missing_key.json"], needle="mu"))
    add(Case("sim-params-list", "own", "simulate", sim + ["--params", f"{i}/list.json"]))
    add(Case("sim-params-str-value", "own", "simulate", sim + ["--params", f"{i}/str_mu.json"], needle="mu"))
    add(Case("sim-params-notjson", "own", "simulate", sim + ["--params", f"{i}/notjson.json"], needle="JSON"))
    add(Case("sim-devices-0", "own", "simulate", sim + ["--devices", "0"], needle="devices"))
    add(Case("sim-devices-3-of-1", "own", "simulate", sim + ["--devices", "3"], needle="devices"))
    # seeds are documented as [-2^63, 2^63 - 1] for simulate/demo/calibrate (batch specs: >= 0)
    add(Case("sim-seed-neg", "own", "simulate", sim + ["--seed", "-1"], "ok", check=npy_shape("v.npy", (32, 32, 32))))
    add(Case("sim-two-phase", "own", "simulate", sim + ["--params", f"{i}/two_phase.json"], "ok",
             check=npy_shape("v.npy", (32, 32, 32), values=(0, 1))))
    # ---------------------------------------------------------------------------- own: describe
    add(Case("des-empty-phase", "own", "describe", ["describe", f"{i}/bin.npy", "--voxel-nm", "80", "--phase",
             "graphite", "--quiet"], needle="empty"))
    add(Case("des-label-3", "own", "describe", ["describe", f"{i}/label3.npy", "--voxel-nm", "80", "--quiet"],
             needle="3"))
    add(Case("des-negative-labels", "own", "describe", ["describe", f"{i}/neg.npy", "--voxel-nm", "80", "--quiet"]))
    add(Case("des-float-labels", "own", "describe", ["describe", f"{i}/floatlab.npy", "--voxel-nm", "80", "--quiet"]))
    add(Case("des-nan-labels", "own", "describe", ["describe", f"{i}/nanlab.npy", "--voxel-nm", "80", "--quiet"]))
    add(Case("des-thin-1x32x32", "own", "describe", ["describe", f"{i}/thin.npy", "--voxel-nm", "80", "--quiet"]))
    add(Case("des-empty-file", "own", "describe", ["describe", f"{i}/empty.npy", "--voxel-nm", "80", "--quiet"]))
    add(Case("des-truncated", "own", "describe", ["describe", f"{i}/trunc.npy", "--voxel-nm", "80", "--quiet"]))
    add(Case("des-pickle", "own", "describe", ["describe", f"{i}/objarr.npy", "--voxel-nm", "80", "--quiet"]))
    add(Case("des-voxel-inf", "own", "describe", des + ["--voxel-nm", "inf"], needle="range"))
    add(Case("des-bool-ok", "own", "describe", ["describe", f"{i}/boolvol.npy", "--voxel-nm", "80", "--quiet", "--json",
             "--only", "volume_fraction"], "ok", check=check_json_stdout()))
    add(Case("des-int64-ok", "own", "describe", ["describe", f"{i}/int64lab.npy", "--voxel-nm", "80", "--quiet",
             "--json", "--only", "volume_fraction"], "ok", check=check_json_stdout()))
    add(Case("des-tiny-2x2x2", "own", "describe", ["describe", f"{i}/tiny.npy", "--voxel-nm", "80", "--quiet", "--json"],
             needle="empty"))  # good32's first 2x2x2 voxels are all solid: the pore phase is empty
    add(Case("des-plot-ok", "own", "describe", des + ["--plot", "{out}/p.png", "--only", "two_point"], "ok",
             check=check_file("p.png")))
    # -------------------------------------------------------------------------- own: tortuosity
    add(Case("tor-allpore-M1", "own", "tortuosity", ["tortuosity", f"{i}/allpore.npy", "--json", "--quiet"], "ok",
             check=check_json_stdout(m_is(1.0))))
    add(Case("tor-allcb-pore-empty", "own", "tortuosity", ["tortuosity", f"{i}/allcb.npy", "--quiet"], needle="pore"))
    add(Case("tor-tol-nan", "own", "tortuosity", tor + ["--tol", "nan"]))
    add(Case("tor-max-iter-float", "own", "tortuosity", tor + ["--max-iter", "1e9"]))
    add(Case("tor-max-iter-neg", "own", "tortuosity", tor + ["--max-iter", "-1"]))
    add(Case("tor-cond-zero", "own", "tortuosity", tor + ["--phase", "solid", "--conductivity", "2=0,1=0"]))
    add(Case("tor-cond-absent-label", "own", "tortuosity", tor + ["--phase", "solid", "--conductivity",
             "2=1,1=1,3=1"]))
    add(Case("tor-label-3", "own", "tortuosity", ["tortuosity", f"{i}/label3.npy", "--quiet"]))
    add(Case("tor-float-labels", "own", "tortuosity", ["tortuosity", f"{i}/floatlab.npy", "--quiet"]))
    # one slice along z: every pore voxel is a straight one-voxel column, so M = eps exactly
    add(Case("tor-thin", "own", "tortuosity", ["tortuosity", f"{i}/thin.npy", "--quiet", "--json"], "ok",
             check=lambda p, o: check_json_stdout(m_is(float(np.mean(np.load(Path(i) / "thin.npy") == 0)), 1e-3))(p, o)))
    add(Case("tor-flux-tol-neg", "own", "tortuosity", tor + ["--flux-tol", "-1"]))
    # --------------------------------------------------------------------------- own: calibrate
    add(Case("cal-2d", "own", "calibrate", ["calibrate", f"{i}/flat.npy", "--voxel-nm", "80"], needle="3D"))
    add(Case("cal-allpore", "own", "calibrate", ["calibrate", f"{i}/allpore.npy", "--voxel-nm", "80", "--no-progress"]))
    add(Case("cal-rgb", "own", "calibrate", ["calibrate", f"{i}/rgb.tif", "--voxel-nm", "80"], needle="colour"))
    add(Case("cal-stages-empty", "own", "calibrate", cal + ["--stages", ""], needle="stages"))
    add(Case("cal-stages-dup", "own", "calibrate", cal + ["--stages", "1,1"], needle="stages"))
    add(Case("cal-stages-0", "own", "calibrate", cal + ["--stages", "0"], needle="stages"))
    add(Case("cal-starts-0", "own", "calibrate", cal + ["--starts", "0"], needle="starts"))
    add(Case("cal-joint-steps-0", "own", "calibrate", cal + ["--stages", "joint", "--joint-steps", "0"],
             needle="joint-steps"))
    add(Case("cal-joint-voxel-0", "own", "calibrate", cal + ["--stages", "joint", "--joint-voxel-nm", "0"],
             needle="joint-voxel-nm"))
    add(Case("cal-cutout-bogus", "own", "calibrate", cal + ["--stages", "2", "--cutout", "bogus"],
             needle="cutout"))
    add(Case("cal-cutout-beyond", "own", "calibrate", cal + ["--stages", "2", "--cutout", "0:100,0:100,0:100"],
             needle="cutout"))
    add(Case("cal-bootstrap-1", "own", "calibrate", cal + ["--bootstrap", "1"], needle="bootstrap"))
    add(Case("cal-report-dir", "own", "calibrate", cal + ["--stages", "1", "--report", f"{i}/adir"], needle="folder"))
    add(Case("cal-initial-notjson", "own", "calibrate", cal + ["--initial", f"{i}/notjson.json"], needle="JSON"))
    add(Case("cal-realizations-neg", "own", "calibrate", cal + ["--realizations", "-1"], needle="realizations"))
    add(Case("cal-label-3", "own", "calibrate", ["calibrate", f"{i}/label3.npy", "--voxel-nm", "80"]))
    add(Case("cal-float-labels", "own", "calibrate", ["calibrate", f"{i}/floatlab.npy", "--voxel-nm", "80"]))
    add(Case("cal-bootstrap-dir-file", "own", "calibrate", cal + ["--bootstrap", "2", "--bootstrap-dir", f"{i}/afile"]))
    # ---------------------------------------------------------------------------- own: validate
    add(Case("val-params-missing", "own", "validate", val[:4] + ["--params", f"{i}/missing.json"] + val[6:],
             needle="cannot read"))
    add(Case("val-params-bad", "own", "validate", val[:4] + ["--params", f"{i}/bad_param.json"] + val[6:],
             needle="lambda_x"))
    add(Case("val-n-1", "own", "validate", val + ["--n", "1"], needle="--n"))
    add(Case("val-downsample-1", "own", "validate", val + ["--downsample", "1"], needle="downsample"))
    add(Case("val-downsample-abc", "own", "validate", val + ["--downsample", "abc"], needle="downsample"))
    add(Case("val-seed-big", "own", "validate", val + ["--seed", "18446744073709551616"], needle="range"))
    add(Case("val-out-file", "own", "validate", val[:-3] + ["--out", f"{i}/afile", "--quiet"], needle="folder"))
    add(Case("val-out-parent-file", "own", "validate", val[:-3] + ["--out", f"{i}/afile/v", "--quiet"], needle="file"))
    add(Case("val-rgb", "own", "validate", ["validate", f"{i}/rgb.tif"] + val[2:], needle="colour"))
    add(Case("val-voxel-0", "own", "validate", val + ["--voxel-nm", "0"]))
    add(Case("val-no-params", "own", "validate", ["validate", f"{i}/sim32.npy", "--voxel-nm", "80", "--out", "{out}/v"]))
    # ------------------------------------------------------------------------------- own: batch
    for spec, needle in (("spec_seed_dup", "seeds"), ("spec_seed_empty", "seeds"), ("spec_seed_float", "seeds"),
                         ("spec_voxel_str", "voxel_nm"), ("spec_measure_empty", "measure"), ("spec_shape0", "shape"),
                         ("spec_sweep_empty", "sweep"), ("spec_sweep_unknown", "zeta"), ("spec_params_bad", "missing parameter"),
                         ("spec_per_device0", "per_device"), ("spec_downsample", "downsample"), ("spec_list", "spec"),
                         ("spec_unknown", "bogus"), ("spec_seed_big", "seeds")):
        add(Case(f"batch-{spec[5:]}", "own", "batch", bat(spec), needle=needle))
    add(Case("batch-per-device-abc", "own", "batch", bat("spec_ok", "--per-device", "abc"), needle="per-device"))
    add(Case("batch-other-spec", "own", "batch", bat("spec_ok2"), pre=bat("spec_ok"), needle="different spec",
             check=batch_rows(1)))
    add(Case("batch-resume-skips", "own", "batch", bat("spec_ok", "--json"), "ok", pre=bat("spec_ok"),
             check=check_all(batch_rows(1), check_json_stdout(lambda d: None if d.get("skipped") == 1 else str(d)))))
    add(Case("batch-out-parent-file", "own", "batch", ["batch", f"{i}/spec_ok.json", "--out", f"{i}/afile/runs", *S],
             needle="file"))
    add(Case("batch-spec-missing", "own", "batch", bat("nope"), needle="cannot read"))
    # -------------------------------------------------------------------------- own: preprocess
    add(Case("pre-missing-input", "own", "preprocess", ["preprocess", f"{i}/nope.npy", "--voxel-nm", "80", "--out",
             "{out}/o.npy"], needle="no such file"))
    add(Case("pre-raw-size-mismatch", "own", "preprocess", ["preprocess", f"{i}/vol.raw", "--raw-shape", "16,16,16",
             "--voxel-nm", "80", "--out", "{out}/o.npy"], needle="raw"))
    add(Case("pre-raw-ok", "own", "preprocess", ["preprocess", f"{i}/vol.raw", "--raw-shape", "32,32,32",
             "--raw-dtype", "uint8", "--voxel-nm", "80", "--out", "{out}/o.npy", "--closing-radius", "0",
             "--keep-components"], "ok",
             check=check_file("o.npy", same_as("o.npy", Path(i) / "good32.npy"))))
    add(Case("pre-raw-dtype-bogus", "own", "preprocess", ["preprocess", f"{i}/vol.raw", "--raw-shape", "32,32,32",
             "--raw-dtype", "bogus", "--voxel-nm", "80", "--out", "{out}/o.npy"], needle="dtype"))
    add(Case("pre-raw-no-shape", "own", "preprocess", ["preprocess", f"{i}/vol.raw", "--voxel-nm", "80", "--out",
             "{out}/o.npy"], needle="raw-shape"))
    add(Case("pre-crop-beyond", "own", "preprocess", pg + ["--crop", "0:100,0:100,0:100"], needle="crop"))
    add(Case("pre-crop-reversed", "own", "preprocess", pg + ["--crop", "10:5,0:32,0:32"], needle="crop"))
    add(Case("pre-crop-ok", "own", "preprocess", pg + ["--crop", "0:16,0:20,4:28", "--keep-components",
             "--closing-radius", "0"], "ok",
             check=check_file("o.npy", lambda p: None if np.array_equal(
                 np.load(p), np.load(Path(i) / "good32.npy")[0:16, 0:20, 4:28]) else "crop differs")))
    add(Case("pre-grey-shape", "own", "preprocess", ["preprocess", f"{i}/bin.npy", "--voxel-nm", "80", "--grey",
             f"{i}/grey_small.npy", "--out", "{out}/o.npy"], needle="grey"))
    add(Case("pre-grey-nan", "own", "preprocess", ["preprocess", f"{i}/bin.npy", "--voxel-nm", "80", "--grey",
             f"{i}/grey_nan.npy", "--out", "{out}/o.npy"], needle="grey"))
    add(Case("pre-quantile-nan", "own", "preprocess", ["preprocess", f"{i}/bin.npy", "--voxel-nm", "80", "--grey",
             f"{i}/grey.npy", "--quantile", "nan", "--out", "{out}/o.npy"], needle="quantile"))
    add(Case("pre-to-voxel-0", "own", "preprocess", pg + ["--to-voxel-nm", "0"], needle="to-voxel-nm"))
    add(Case("pre-to-voxel-neg", "own", "preprocess", pg + ["--to-voxel-nm", "-5"], needle="to-voxel-nm"))
    add(Case("pre-labels-nonint", "own", "preprocess", pre + ["--labels", "a=1"], needle="label mapping"))
    add(Case("pre-labels-empty", "own", "preprocess", pre + ["--labels", ""], needle="label mapping"))
    add(Case("pre-unmapped-values", "own", "preprocess", pre, needle="label"))
    add(Case("pre-float-no-labels", "own", "preprocess", ["preprocess", f"{i}/floatlab.npy", "--voxel-nm", "80",
             "--out", "{out}/o.npy"]))
    add(Case("pre-nan-input", "own", "preprocess", ["preprocess", f"{i}/nanlab.npy", "--voxel-nm", "80",
             "--out", "{out}/o.npy"]))
    add(Case("pre-voxel-2-values", "own", "preprocess", pg[:2] + ["--voxel-nm", "80,80", "--out", "{out}/o.npy"],
             needle="voxel"))
    add(Case("pre-out-same-as-input", "own", "preprocess", ["preprocess", "{out}/in.npy", "--voxel-nm", "80", "--out",
             "{out}/in.npy"], "ok", pre=["_copy", f"{i}/good32.npy", "{out}/in.npy"]))
    add(Case("pre-thin", "own", "preprocess", ["preprocess", f"{i}/thin.npy", "--voxel-nm", "80", "--out",
             "{out}/o.npy"], needle="at least 2"))
    add(Case("pre-crop-thin", "own", "preprocess", pg + ["--crop", "0:1,0:32,0:32"], needle="at least 2"))
    add(Case("pre-flat-tif", "own", "preprocess", ["preprocess", f"{i}/flat.tif", "--voxel-nm", "80", "--out",
             "{out}/o.npy"], needle="3D"))
    add(Case("pre-downsample-2-ok", "own", "preprocess", pg + ["--downsample", "2", "--keep-components", "--closing-radius", "0"], "ok",
             check=check_file("o.npy", lambda p: None if np.array_equal(
                 np.load(p), np.load(Path(i) / "good32.npy")[::2, ::2, ::2]) else "downsample differs")))
    # ------------------------------------------------------------------------------ own: theory
    add(Case("theory-ok-json", "own", "theory", ["theory", "--json"], "ok", check=check_json_stdout(finite_theory)))
    add(Case("theory-two-phase", "own", "theory", ["theory", "--params", f"{i}/two_phase.json", "--json"], "ok",
             check=check_json_stdout()))
    add(Case("theory-eta-neg", "own", "theory", ["theory", "--params", f"{i}/eta_neg.json"], needle="eta"))
    add(Case("theory-theta-0", "own", "theory", ["theory", "--params", f"{i}/theta_zero.json"], needle="theta"))
    add(Case("theory-params-list", "own", "theory", ["theory", "--params", f"{i}/list.json"]))
    add(Case("theory-str-mu", "own", "theory", ["theory", "--params", f"{i}/str_mu.json"], needle="mu"))
    add(Case("theory-missing-key", "own", "theory", ["theory", "--params", f"{i}/missing_key.json"], needle="mu"))
    add(Case("theory-params-dir", "own", "theory", ["theory", "--params", f"{i}/adir"]))
    add(Case("theory-voxel-tiny", "own", "theory", ["theory", "--voxel-nm", "1e-3", "--json"], needle="range"))
    add(Case("theory-voxel-0.01-ok", "own", "theory", ["theory", "--voxel-nm", "0.01", "--json"], "ok",
             check=check_json_stdout(finite_theory)))
    add(Case("theory-voxel-huge-ok", "own", "theory", ["theory", "--voxel-nm", "1e5", "--json"], "ok",
             check=check_json_stdout(finite_theory)))
    # -------------------------------------------------------------------------------- own: demo
    add(Case("demo-seed-neg", "own", "demo", demo + ["--shape", "16", "--seed", "-1"], "ok", check=demo_report))
    add(Case("demo-voxel-nan", "own", "demo", demo + ["--voxel-nm", "nan"], needle="range"))
    add(Case("demo-shape-abc", "own", "demo", demo + ["--shape", "abc"], needle="shape"))
    add(Case("demo-params-notjson", "own", "demo", demo + ["--params", f"{i}/notjson.json"], needle="JSON"))
    add(Case("demo-params-huge-lx", "own", "demo", demo + ["--shape", "32", "--params", f"{i}/huge_lx.json"],
             needle="grains"))
    add(Case("demo-shape-huge", "own", "demo", demo + ["--shape", "100000"], needle="GiB"))
    add(Case("demo-two-phase", "own", "demo", ["demo", "--shape", "16", "--voxel-nm", "80", "--params",
             f"{i}/two_phase.json", "--out", "{out}/d"], "ok", check=demo_report))
    add(Case("demo-out-nonempty", "own", "demo", ["demo", "--shape", "16", "--voxel-nm", "80", "--out", "{out}/d"], "ok",
             pre=["demo", "--shape", "16", "--voxel-nm", "80", "--out", "{out}/d"],
             check=check_all(demo_report, stderr_has("overwritten"))))
    return C


# ----------------------------------------------------------------------------------- running
def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1) for p in sorted(folder.rglob("*"))}


def _run(argv, out: Path, env: dict, sigint_after=None):
    argv = [a.replace("{out}", str(out)) for a in argv]
    if argv and argv[0] == "_copy":
        Path(argv[2]).write_bytes(Path(argv[1]).read_bytes())
        return subprocess.CompletedProcess(argv, 0, "", ""), 0.0, False
    cmd = [PY, *argv] if argv[0] == "-c" else [PY, "-m", "jaxcba", *argv]
    umask = env.pop("UMASK", None)
    def preexec():  # SIGINT back to its default: a background parent (``cmd &``) passes it on ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if umask:
            os.umask(int(umask, 8))

    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=out,
                         preexec_fn=preexec, start_new_session=True)
    hung = False
    try:
        if sigint_after:
            try:
                p.wait(sigint_after)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGINT)
        so, se = p.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        so, se = p.communicate()
        hung = True
    return subprocess.CompletedProcess(cmd, p.returncode, so, se), time.perf_counter() - t0, hung


def classify(case: Case, inputs: Path, work: Path) -> dict:
    out = work / case.id
    out.mkdir(parents=True)
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(case.env or {}))
    env.pop("JAXCBA_TRACEBACK", None)
    if case.pre:
        pre_env = {k: v for k, v in env.items() if k != "XLA_FLAGS" and k != "UMASK"}
        _run(case.pre, out, pre_env)
    before_out = _tree(out)
    before_in = _tree(inputs)
    proc, seconds, hung = _run(case.argv, out, dict(env), case.sigint_after)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    first = lines[0] if lines else ""
    after_out = _tree(out)
    left = sorted(set(after_out) - set(before_out)) if case.expect in ("refuse", "api_refuse", "interrupt") else []
    inputs_changed = _tree(inputs) != before_in
    rc = proc.returncode
    msg = first[:160]
    if case.cmd == "api":
        msg = (proc.stdout.strip().splitlines() or [first])[-1][:160]
    if hung:
        kind = "hang"
    elif "Traceback" in proc.stderr or rc == 3:
        kind = "traceback"
        msg = (lines[-1] if lines else "")[:160]
    elif case.expect == "api_refuse":
        kind = "exit2-clean" if rc == 2 and (case.needle is None or case.needle.lower() in msg.lower()) else (
            "exit2-messy" if rc == 2 else "silently-wrong")
    elif case.expect == "refuse":
        if rc == 2:
            one = len(lines) == 1 and "error" in first
            needle_ok = case.needle is None or case.needle.lower() in first.lower()
            kind = "exit2-clean" if one and needle_ok else "exit2-messy"
            if one and not needle_ok:
                msg = f"[expected '{case.needle}'] " + msg
        elif rc == 0:
            kind = "silently-wrong"
            msg = "exit 0: " + (proc.stdout.strip().splitlines() or [""])[-1][:140]
        else:
            kind = "exit2-messy"
            msg = f"exit {rc}: " + msg
        if case.check and kind == "exit2-clean":
            r = case.check(proc, out)
            if r:
                kind, msg = "silently-wrong", r
    elif case.expect == "interrupt":
        kind = "ok" if rc == 130 and not left else ("leftover" if left else "silently-wrong")
        msg = f"exit {rc} after SIGINT; " + msg
    else:
        want = {"ok": 0, "notconv": 1}[case.expect]
        if rc != want:
            kind = "silently-wrong" if rc in (0, 1) else ("exit2-messy" if rc == 2 else "traceback")
            msg = f"exit {rc}, expected {want}: " + (first or proc.stdout[-120:])[:140]
        else:
            r = case.check(proc, out) if case.check else None
            kind, msg = ("silently-wrong", r) if r else ("ok", f"exit {rc}" + (f"; {first[:120]}" if first else ""))
    if left and kind in ("exit2-clean", "exit2-messy"):
        kind, msg = "leftover", f"left {left[:3]}; " + msg
    if inputs_changed:
        kind, msg = "leftover", "an input file changed; " + msg
    return {"id": case.id, "source": case.source, "cmd": case.cmd, "expect": case.expect, "kind": kind, "rc": rc,
            "seconds": round(seconds, 1),
            "message": msg.replace(str(out), "OUT").replace(str(inputs), "IN").replace("|", "\\|")}


FINDINGS = """\
## What the sweep found

First full run (192 cases, 2 in parallel): 14 not clean. Two were real and are fixed, each with a
regression test (`tests/test_hardening_cli.py`):

- `calibrate --starts 0` (or negative) was accepted by the options and met only the volume's
  graphite check (on a volume with graphite enough, an optimizer with no start): now refused up
  front (`jaxcba/cli/calibrate.py`).
- `preprocess` wrote a 1-voxel-thick result (a single slice in, or `--crop 0:1,...`) with exit 0,
  though `describe` and `calibrate` refuse such a volume: now exit 2 naming the shape
  (`jaxcba/cli/preprocess.py`).

Also fixed in this pass (issue #18's remaining item, `tests/test_hardening_batch.py`): the batch
measures `cpsd` / `constrictivity` reported `r_max_nm` as the radius grid's cap (or 0 for an empty
phase) where the CPSD never drops below 0.5; now `null` with `radii_bounded: false`, as `describe`.

The twelve others were the sweep's own mistakes, corrected in the case list and rerun (the table
shows the reruns): the Ctrl-C case got SIGINT ignored because the sweep ran in the background (the
harness now restores SIGINT's default in the child; `simulate` then exits 130, nothing left);
seven cases expected the wrong thing (the default `closing-radius 1` applied to the crop /
down-sample / raw checks, a missing `--raw-dtype`, a 2x2x2 corner with no pore, a stage-1 graphite
refusal before the `--cutout` check, a needle); `--voxel-nm 1e-3` is below the documented range
[0.01, 1e6] nm; a negative seed is in the documented range [-2^63, 2^63 - 1]; `tortuosity` on one
slice gives the exact M = eps of straight one-voxel columns; `demo --seed -1` without `--shape` ran
the 160^3 preset past 120 s on this shared 2-core machine (rerun at 16^3).

Noticed, left alone (files edited by others now):

- Seeds: `simulate`, `demo`, `calibrate`, `validate` accept [-2^63, 2^63 - 1] (`cli/_common.py`),
  a batch spec only seeds >= 0 (`batch/spec.py`'s documented rule): one range would be simpler.
- `tortuosity` accepts a 1-voxel-thick volume (correct closed form), `describe` refuses it (its
  lags need 2 voxels): consistent with their needs, but worth one sentence in the guide.
- `validate`'s `scalar_values` reads the batch measures: an unbounded `r_max` is now NaN there
  (was the grid cap), i.e. treated as missing rather than compared.
- `demo`'s default preset (160^3 at 40 nm) takes more than 2 minutes on 2 shared cores; its
  three outputs are written one after the other (each atomically), so a Ctrl-C between them can
  leave `volume.tif` without `report.json`.
"""

KINDS = ("exit2-clean", "ok", "exit2-messy", "traceback", "hang", "silently-wrong", "leftover")


def write_md(rows, path: Path):
    from collections import Counter

    n = Counter(r["kind"] for r in rows)
    lines = ["# Hostile re-sweep (issue #18)", "",
             f"{len(rows)} cases ({sum(r['source'] == 'issue' for r in rows)} from the issue's bullets, "
             f"{sum(r['source'] == 'own' for r in rows)} new), each a subprocess with a {LIMIT_S:.0f} s limit, "
             "volumes <= 64^3, CPU. Produced by `experiments/hostile_sweep.py`.", "",
             "| outcome | count |", "|---|---|"]
    lines += [f"| {k} | {n.get(k, 0)} |" for k in KINDS]
    lines += ["", FINDINGS, "## All cases", ""]
    lines += ["| case | source | command | outcome | exit | s | message / reason |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['id']} | {r['source']} | {r['cmd']} | {r['kind']} | {r['rc']} | {r['seconds']} | "
                     f"{r['message']} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".md")))
    ap.add_argument("--only", default=None,
                    help="comma-separated ids (substrings): rerun only those, replacing their rows in the table")
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hostile_") as tmp:
        inputs, work = Path(tmp) / "inputs", Path(tmp) / "work"
        inputs.mkdir()
        work.mkdir()
        make_inputs(inputs)
        only = None if args.only is None else args.only.split(",")
        todo = [c for c in cases(str(inputs)) if only is None or any(o in c.id for o in only)]
        ids = [c.id for c in todo]
        known = {c.id for c in cases(str(inputs))}
        assert len(set(ids)) == len(ids), [x for x in ids if ids.count(x) > 1]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(args.jobs) as ex:
            rows = []
            for r in ex.map(lambda c: classify(c, inputs, work), todo):
                print(f"{r['kind']:15s} {r['rc']!s:>4} {r['seconds']:6.1f}s {r['id']}: {r['message'][:100]}", flush=True)
                rows.append(r)
    out = Path(args.out)
    if only is not None and out.with_suffix(".json").exists():  # merge the reruns into the full table
        new = {r["id"]: r for r in rows}
        old = json.loads(out.with_suffix(".json").read_text())
        rows = [new.pop(r["id"], r) for r in old if r["id"] in known] + list(new.values())
    write_md(rows, out)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    bad = sum(r["kind"] not in ("exit2-clean", "ok") for r in rows)
    print(f"{len(rows)} cases, {bad} not clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
