"""`jaxcba simulate`: files, JSON report, errors (exit 2, nothing written)."""

import json

import numpy as np
import pytest

from jaxcba.cli import main


def test_simulate_npy_json(tmp_path, capsys):
    out = tmp_path / "vol.npy"
    assert main(["simulate", "--shape", "40", "--voxel-nm", "80", "--seed", "3", "--out", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    vol = np.load(out)
    assert vol.shape == (40, 40, 40) and vol.dtype == np.uint8
    assert rep["shape"] == [40, 40, 40] and rep["voxel_nm"] == 80.0 and rep["seed"] == 3
    assert rep["fractions"]["graphite"] == pytest.approx((vol == 2).mean())
    assert rep["fractions"]["cb"] == pytest.approx((vol == 1).mean())
    assert sum(rep["fractions"][k] for k in ("graphite", "cb", "pore")) == pytest.approx(1.0)
    assert rep["theory"]["graphite"] == pytest.approx(0.107, abs=2e-3)
    assert rep["theory"]["solid"] == pytest.approx(0.332, abs=3e-3)
    assert rep["seconds"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_simulate_tif_text_same_seed_same_volume(tmp_path, capsys):
    import tifffile

    out = tmp_path / "sub" / "vol.tif"
    assert main(["simulate", "--shape", "40", "--voxel-nm", "80", "--seed", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "graphite" in text and "theory" in text
    npy = tmp_path / "vol.npy"
    main(["simulate", "--shape", "40", "--voxel-nm", "80", "--seed", "3", "--out", str(npy), "--json"])
    assert np.array_equal(tifffile.imread(out), np.load(npy))


def test_params_file(tmp_path, capsys):
    from jaxcba import CBAParams

    pfile = tmp_path / "p.json"
    CBAParams.paper().replace(mu=5.0).to_json(pfile)
    out = tmp_path / "v.npy"
    assert main(["simulate", "--params", str(pfile), "--shape", "16,20,24", "--voxel-nm", "80", "--out", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert np.load(out).shape == (16, 20, 24)
    assert rep["theory"]["excursion"] < 1e-6


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["--shape", "0", "--out", "{d}/a.npy"], "every side of shape"),
        (["--shape", "10,-2,10", "--out", "{d}/a.npy"], "every side of shape"),
        (["--shape", "100000", "--out", "{d}/a.npy"], "GiB"),
        (["--shape", "10", "--out", "{d}/a.png"], "unsupported volume format"),
        (["--shape", "10", "--params", "{d}/missing.json", "--out", "{d}/a.npy"], "cannot read parameter file"),
        (["--shape", "10", "--params", "{d}/bad.json", "--out", "{d}/a.npy"], "lambda_x"),
    ],
)
def test_bad_input_exit_2_nothing_written(tmp_path, capsys, argv, msg):
    (tmp_path / "bad.json").write_text(json.dumps({**__import__("jaxcba").CBAParams.paper().to_dict(), "lambda_x": -1}))
    argv = [a.replace("{d}", str(tmp_path)) for a in argv]
    assert main(["simulate"] + argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_voxel_nm_must_be_positive(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--shape", "10", "--voxel-nm", "0", "--out", str(tmp_path / "a.npy")])
    assert exc.value.code == 2
    assert not list(tmp_path.iterdir())
