"""`jaxcba demo` end to end on a small window: files written, table rows consistent with the volume."""

import json

import numpy as np
import pytest

from jaxcba.cli import main
from jaxcba.io import read_volume, read_voxel_size


def test_demo_small_window(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--shape", "24", "--voxel-nm", "80", "--seed", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "M solid (graphite 1, cb 0.01)" in text and "wrote" in text
    vol = read_volume(out / "volume.tif")
    assert vol.shape == (24, 24, 24) and read_voxel_size(out / "volume.tif") == pytest.approx((80.0,) * 3)
    rep = json.loads((out / "report.json").read_text())
    rows = {r["quantity"]: r for r in rep["rows"]}
    assert rows["solid fraction"]["realization"] == pytest.approx(float(np.mean(vol > 0)))
    assert rows["graphite fraction"]["realization"] == pytest.approx(float(np.mean(vol == 2)))
    assert rows["M pore (sigma = 1)"]["paper"] == 0.2429
    # the paper's convention: eps * sigma_eff / mean(sigma) with sigma_eff / sigma_graphite in the next row
    mean_sigma = np.mean(vol == 2) + 0.01 * np.mean(vol == 1)
    expect = np.mean(vol > 0) * rows["sigma_eff / sigma_graphite solid"]["realization"] / mean_sigma
    assert rows["M solid (graphite 1, cb 0.01)"]["realization"] == pytest.approx(expect, rel=1e-5)
    assert (out / "demo.png").stat().st_size > 10_000


def test_demo_rejects_tiny_window(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:  # a usage error of the shared type (cli._common.int_at_least)
        main(["demo", "--shape", "8", "--out", str(tmp_path / "d")])
    assert exc.value.code == 2
    assert "allowed: an integer >= 16" in capsys.readouterr().err and not (tmp_path / "d").exists()
