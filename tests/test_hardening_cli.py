"""Regressions found by the hostile re-sweep (experiments/hostile_sweep.py, issue #18).

Each case: exit 2, one line on stderr naming the option, before the volume is examined (no
file written). In-process through ``jaxcba.cli.main``; volumes 32^3.
"""

from __future__ import annotations

import numpy as np
import pytest

from jaxcba.cli import main


def _call(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse usage errors
        return exc.code


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    from jaxcba import CBAParams, simulate

    p = tmp_path_factory.mktemp("vol") / "sim32.npy"
    np.save(p, np.asarray(simulate(CBAParams.paper(), 32, 80.0, 0)))  # 2 graphite particles: stage 1 refuses it
    return p


@pytest.mark.parametrize("starts", ["0", "-3"])
def test_calibrate_refuses_starts_below_one_up_front(starts, volume, tmp_path, capsys):
    """--starts 0 was accepted by the options and met only the volume's graphite check (or, on a
    volume with graphite enough, an optimizer with no start); now it is refused first, as a usage
    error of the shared argument type (jaxcba.cli._common.int_at_least)."""
    rc = _call(["calibrate", str(volume), "--voxel-nm", "80", "--stages", "1", "--starts", starts, "--no-progress",
                "--out", str(tmp_path / "p.json")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1, err
    assert "argument --starts" in err[0] and f"{starts!r} is out of range; allowed: an integer >= 1" in err[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra", [[], ["--crop", "0:1,0:8,0:8"]])
def test_preprocess_refuses_an_output_thinner_than_two_voxels(extra, tmp_path, capsys):
    """A 1-voxel-thick result (a single slice in, or cropped to one) was written with exit 0,
    though describe and calibrate refuse it (every axis needs 2 voxels); now exit 2, nothing written."""
    lab = np.zeros((1, 8, 8) if not extra else (4, 8, 8), np.uint8)
    lab[..., 4:] = 1
    src = tmp_path / "in.npy"
    np.save(src, lab)
    out = tmp_path / "out"
    out.mkdir()
    rc = _call(["preprocess", str(src), "--voxel-nm", "80", "--out", str(out / "o.npy"), "--keep-components", *extra])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1, err
    assert "every axis needs at least 2 voxels" in err[0] and "(1, 8, 8)" in err[0]
    assert list(out.iterdir()) == []


def test_preprocess_keeps_a_two_voxel_thick_output(tmp_path, capsys):
    lab = np.zeros((2, 8, 8), np.uint8)
    lab[..., 4:] = 1
    np.save(tmp_path / "in.npy", lab)
    assert _call(["preprocess", str(tmp_path / "in.npy"), "--voxel-nm", "80", "--out", str(tmp_path / "o.npy"),
                  "--keep-components", "--closing-radius", "0"]) == 0
    assert np.array_equal(np.load(tmp_path / "o.npy"), lab)
