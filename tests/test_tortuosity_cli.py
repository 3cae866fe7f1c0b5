"""`jaxcba tortuosity`: output, JSON, conductivity parsing, exit status 2 on misuse."""

import json

import numpy as np
import pytest

from jaxcba.cli import main
from jaxcba.cli.tortuosity import parse_conductivity


@pytest.fixture
def vol(tmp_path):
    lab = np.zeros((12, 12, 12), np.uint8)
    lab[:, :, :3] = 2
    lab[:, :, 3:5] = 1
    path = tmp_path / "vol.npy"
    np.save(path, lab)
    return path


def test_json_pore_and_solid(vol, capsys):
    assert main(["tortuosity", str(vol), "--phase", "pore", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["percolates"] and out["converged"]
    np.testing.assert_allclose(out["m_factor"], 7 / 12, rtol=1e-4)
    np.testing.assert_allclose(out["tau_eff"], 1.0, rtol=1e-4)
    assert out["shape"] == [12, 12, 12] and out["seconds"] > 0
    assert main(["tortuosity", str(vol), "--phase", "solid", "--conductivity", "2=1,1=0.01", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(out["m_factor"], (3 + 0.02) / 12, rtol=1e-4)
    np.testing.assert_allclose(out["eps"], 5 / 12, rtol=1e-6)


def test_table_and_blocked_axis(vol, capsys):
    assert main(["tortuosity", str(vol), "--phase", "graphite", "--axis", "x"]) == 0
    text = capsys.readouterr().out
    assert "tau_eff    inf (no percolating path)" in text and "percolates False" in text
    assert "M          0" in text


def test_parse_conductivity():
    assert parse_conductivity("2=1,1=0.01") == {2: 1.0, 1: 0.01}
    for bad in ("2:1", "a=1", "2=1,2=3"):
        with pytest.raises(ValueError):
            parse_conductivity(bad)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--phase", "solid", "--conductivity", "2=1"], "no value for label"),
        (["--phase", "solid", "--conductivity", "2=1,1=-0.5"], ">= 0"),
        (["--phase", "pore", "--conductivity", "2=1"], "not in phase"),
        (["--max-iter", "0"], "--max-iter"),
    ],
)
def test_misuse_exits_2(vol, capsys, extra, message):
    assert main(["tortuosity", str(vol), *extra]) == 2
    assert message in capsys.readouterr().err


def test_missing_file_and_absent_phase_exit_2(tmp_path, capsys):
    assert main(["tortuosity", str(tmp_path / "nope.npy")]) == 2
    path = tmp_path / "solid.npy"
    np.save(path, np.ones((8, 8, 8), np.uint8))
    assert main(["tortuosity", str(path), "--phase", "pore"]) == 2
    assert "absent" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--axis", "w"], ["--conductivity", "oops"], ["--tol", "-1"]])
def test_bad_arguments_are_argparse_errors(vol, capsys, extra):
    with pytest.raises(SystemExit) as exc:
        main(["tortuosity", str(vol), *extra])
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err
