"""`describe()` and `jaxcba describe`: report fields, JSON keys, plot, non-percolating phases, bad input."""

import json

import numpy as np
import pytest
from scipy import ndimage

from jaxcba.cli import main
from jaxcba.cli.describe import _JSON_KEYS
from jaxcba.descriptors import NOT_PERCOLATING, describe
from jaxcba.descriptors.geodesic import geodesic_tortuosity
from jaxcba.descriptors.minkowski import intrinsic_densities
from jaxcba.descriptors.pore_size import constrictivity, default_radii_vox


@pytest.fixture(scope="module")
def labels():
    rng = np.random.default_rng(0)
    f = ndimage.gaussian_filter(rng.standard_normal((24, 24, 24)), 1.5, mode="wrap")
    lab = np.zeros(f.shape, np.uint8)
    lab[f > np.quantile(f, 0.55)] = 1
    lab[f > np.quantile(f, 0.85)] = 2
    return lab


def test_describe_matches_the_kernels(labels):
    rep = describe(labels, 20.0, phases=("solid", "pore"), axis=0)
    assert rep.shape == (24, 24, 24) and rep.voxel_nm == 20.0
    for name, mask in (("solid", labels > 0), ("pore", labels == 0)):
        p = rep[name]
        assert p.volume_fraction == pytest.approx(mask.mean())
        d = intrinsic_densities(mask, 20.0)
        assert p.surface_density == pytest.approx(float(d.S_V), rel=1e-6)
        con = constrictivity(mask, 20.0, radii_vox=default_radii_vox(mask), axis=0)
        assert p.r_max == pytest.approx(float(con.r_max_nm), rel=1e-6)
        assert p.r_min == pytest.approx(float(con.r_min_nm), rel=1e-6)
        assert p.constrictivity == pytest.approx(float(con.beta), rel=1e-6)
        assert p.geodesic_tortuosity == pytest.approx(float(geodesic_tortuosity(mask).mean), rel=1e-6)
        assert p.cpsd["fraction"][0] == 1.0 and len(p.cpsd["r_nm"]) == len(p.cpsd["fraction"])
        assert p.two_point["C"][0] == pytest.approx(mask.mean(), rel=1e-5)
    json.loads(rep.to_json())


def test_describe_selected_and_non_percolating():
    lab = np.zeros((16, 16, 16), np.uint8)
    lab[:, 4:12, 4:12] = 1  # a cb column along z: percolates along z, not along x
    rep = describe(lab, 10.0, phases="cb", which=("volume_fraction", "geodesic_tortuosity", "constrictivity"), axis=2)
    p = rep["cb"]
    assert p.geodesic_tortuosity == NOT_PERCOLATING and p.r_min == NOT_PERCOLATING
    assert p.constrictivity == NOT_PERCOLATING and p.r_max > 0
    assert p.two_point is None and p.surface_density is None
    rep = describe(lab, 10.0, phases="cb", which=("geodesic_tortuosity",), axis=0)
    assert rep["cb"].geodesic_tortuosity == pytest.approx(1.0)


def test_cli_json_table_and_plot(labels, tmp_path, capsys):
    vol = tmp_path / "vol.npy"
    np.save(vol, labels)
    png = tmp_path / "plots" / "curves.png"
    assert main(["describe", str(vol), "--voxel-nm", "20", "--json", "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"solid", "pore"}
    for ph in out.values():
        assert set(ph) == set(_JSON_KEYS)
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert main(["describe", str(vol), "--voxel-nm", "20", "--phase", "graphite", "--only", "intrinsic"]) == 0
    table = capsys.readouterr().out
    assert "graphite" in table and "surface_density" in table


def test_cli_tif_input(labels, tmp_path, capsys):
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, labels)
    assert main(["describe", str(path), "--voxel-nm", "20", "--json", "--only", "volume_fraction"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["solid"]["volume_fraction"] == pytest.approx((labels > 0).mean())


def test_bad_input(tmp_path, capsys):
    cases = {}
    np.save(tmp_path / "flat.npy", np.zeros((4, 4), np.uint8))
    cases["flat.npy"] = "3D"
    np.save(tmp_path / "bad.npy", np.full((4, 4, 4), 3, np.uint8))
    cases["bad.npy"] = "labels must be"
    np.save(tmp_path / "nopore.npy", np.ones((4, 4, 4), np.uint8))
    cases["nopore.npy"] = "empty"
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    cases["junk.tif"] = "cannot read"
    cases["missing.npy"] = "no such file"
    for name, msg in cases.items():
        assert main(["describe", str(tmp_path / name), "--voxel-nm", "20", "--only", "volume_fraction"]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, (name, err)
    with pytest.raises(ValueError, match="voxel_nm"):
        describe(np.zeros((4, 4, 4), np.uint8), -1.0)
    with pytest.raises(ValueError, match="unknown descriptor"):
        describe(np.zeros((4, 4, 4), np.uint8), 1.0, phases="pore", which=("nope",))
    with pytest.raises(ValueError, match="unknown phase"):
        describe(np.zeros((4, 4, 4), np.uint8), 1.0, phases="air")


def test_refuses_a_volume_that_does_not_fit_before_any_work(labels, monkeypatch):
    from jaxcba.descriptors import report

    need = report.describe_bytes(labels.shape, ("two_point",))
    assert need > 2 * labels.size  # labels + mask + the FFT's working set
    monkeypatch.setattr(report, "available_bytes", lambda: need - 1)
    with pytest.raises(ValueError, match=r"needs about .* GiB but only .* GiB is available"):
        describe(labels, 20.0, phases=("pore",), which=("two_point",))
    rep = describe(labels, 20.0, phases=("pore",), which=("two_point",), check_memory=False)
    assert rep["pore"].two_point["C"][0] == pytest.approx(np.mean(labels == 0), rel=1e-5)


def test_progress_bar_names_the_running_stage(labels, capsys):
    describe(labels, 20.0, phases=("pore",), which=("volume_fraction", "two_point"), progress=True)
    err = capsys.readouterr().err
    assert "describe pore: two_point" in err
