"""experiments/real_image.py's own steps on synthetic data (no network): Otsu's threshold against
closed forms, the segmentation of a noisy grey copy of a known two-phase structure, and the
reading of the scan from inside a wheel."""

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1] / "experiments"


def _load():
    spec = importlib.util.spec_from_file_location("real_image", ROOT / "real_image.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_otsu_of_two_equal_gaussians_is_their_midpoint(seed):
    # Two overlapping equal-weight, equal-variance normal modes at 1000 and 1600 (sd 200): by
    # symmetry the between-class variance is maximal at the midpoint 1300 (bin width ~10).
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(1000, 200, 200_000), rng.normal(1600, 200, 200_000)])
    assert _load().otsu_threshold(x) == pytest.approx(1300, abs=20)


def test_otsu_of_two_values_separates_them():
    # Two distinct values only: any cut between them is optimal, and the one returned separates them.
    t = _load().otsu_threshold(np.r_[np.full(30, 7.0), np.full(70, 11.0)])
    assert 7.0 <= t < 11.0


def test_otsu_refuses_a_constant_volume():
    with pytest.raises(ValueError, match="constant"):
        _load().otsu_threshold(np.full(10, 3.0))


def test_segment_recovers_a_known_structure_from_noisy_grey_values():
    # A known two-phase structure (balls of radius 6 on a 16-voxel lattice, fraction 0.226),
    # written as grey values 10000 (air) / 30000 (ice) plus Gaussian noise of sd 6000 (the two
    # modes 3.3 sd apart): a plain threshold misclassifies ~6 % of the voxels; the median filter
    # and Otsu's cut give back the labels but for ~1 % near the interface (measured 0.991 on two
    # noise seeds), the fraction within 0.01.
    mod = _load()
    z, y, x = np.mgrid[:48, :48, :48]
    truth = (((z % 16 - 8) ** 2 + (y % 16 - 8) ** 2 + (x % 16 - 8) ** 2) <= 36).astype(np.uint8)
    rng = np.random.default_rng(3)
    grey = np.clip(np.where(truth == 1, 30000.0, 10000.0) + rng.normal(0, 6000, truth.shape), 0, 65535)
    labels, thr = mod.segment(grey.astype(np.uint16))
    assert 17000 < thr < 23000
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1}
    assert np.mean(labels == truth) > 0.98
    assert abs(labels.mean() - truth.mean()) < 0.01
    raw, _ = mod.segment(grey, median=1)
    assert np.mean(raw != truth) > 3 * np.mean(labels != truth)
    # A given threshold is used as it is.
    _, t = mod.segment(grey, threshold=12345.0)
    assert t == 12345.0


def test_fetch_reads_the_scan_from_a_local_wheel(tmp_path):
    import tifffile

    mod = _load()
    vol = (np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6) * 100)
    tif = tmp_path / "snow.tif"
    tifffile.imwrite(tif, vol)
    wheel = tmp_path / f"spam-{mod.VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(tif, mod.MEMBER)
    path, source = mod.fetch(tmp_path / "cache", wheel)
    assert np.array_equal(tifffile.imread(path), vol)
    assert source["wheel"] == wheel.name and len(source["tif_sha256"]) == 64
    # The cache is used when no image is given: the wheel found there, no download.
    (tmp_path / "cache" / wheel.name).write_bytes(wheel.read_bytes())
    path2, source2 = mod.fetch(tmp_path / "cache")
    assert source2["origin"].startswith("cached wheel") and np.array_equal(tifffile.imread(path2), vol)
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("spam/__init__.py", "")
    with pytest.raises(ValueError, match="has no"):
        mod.fetch(tmp_path / "c2", empty)


def test_main_refuses_a_missing_or_foreign_wheel_with_exit_2(tmp_path, capsys):
    mod = _load()
    assert mod.main(["--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o"),
                     "--image", str(tmp_path / "none.whl")]) == 2
    foreign = tmp_path / "other.whl"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("other/__init__.py", "")
    assert mod.main(["--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o"), "--image", str(foreign)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "none.whl" in err[0] and "has no spam/data/snow/snow.tif" in err[1]
