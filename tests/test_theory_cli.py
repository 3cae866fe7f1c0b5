"""`jaxcba theory`: table, JSON keys, and clean exit 2 on broken parameter files."""

import json

import pytest

from jaxcba import CBAParams
from jaxcba import theory as T
from jaxcba.cli import main


def test_json_output_matches_library(capsys):
    assert main(["theory", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"graphite", "volume_fractions", "two_point"}
    assert set(out["graphite"]) == {"V", "S", "K", "N"}
    assert set(out["volume_fractions"]) >= {"graphite", "cb", "pores_removed", "solid"}
    d = T.graphite_densities(CBAParams.paper())
    assert out["graphite"]["S"] == pytest.approx(float(d.S), rel=1e-12)
    c = out["two_point"]["C"]
    assert len(c) == len(out["two_point"]["h_nm"]) and c[0] == pytest.approx(out["volume_fractions"]["excursion"])


def test_table_and_params_file(tmp_path, capsys):
    f = tmp_path / "p.json"
    CBAParams.paper().replace(lambda_x=2.21e-11).to_json(f)
    assert main(["theory", "--params", str(f), "--voxel-nm", "40"]) == 0
    text = capsys.readouterr().out
    assert "V_1 volume fraction" in text and "solid (Eq. 22)" in text


@pytest.mark.parametrize("content,needle", [
    ('{"lambda_x": 6e-11}', "missing parameter"),
    (json.dumps({**CBAParams.paper().to_dict(), "gamma": -1.0}), "gamma"),
    (json.dumps({**CBAParams.paper().to_dict(), "mu": "nan"}), "mu"),
    ('{"lambda_x": NaN, "alpha1": 205, "alpha2": 3944, "gamma": 1.971, "mu": 0.5, "eta": 0.0127, "theta": 0.0105, "lambda_y": 9.34e-9}', "lambda_x"),
    ("not json", "not valid JSON"),
])
def test_broken_params_exit_2_with_one_line(tmp_path, capsys, content, needle):
    f = tmp_path / "broken.json"
    f.write_text(content)
    assert main(["theory", "--params", str(f)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_params_file_exit_2(capsys):
    assert main(["theory", "--params", "/nonexistent/p.json"]) == 2
    assert "cannot read parameter file" in capsys.readouterr().err
