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
    volume with graphite enough, an optimizer with no start); now it is refused first."""
    rc = _call(["calibrate", str(volume), "--voxel-nm", "80", "--stages", "1", "--starts", starts, "--no-progress",
                "--out", str(tmp_path / "p.json")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1, err
    assert "--starts must be >= 1" in err[0] and f"got {starts}" in err[0]
    assert list(tmp_path.iterdir()) == []
