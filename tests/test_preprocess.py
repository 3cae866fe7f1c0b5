"""Section 2.3 preprocessing on constructed volumes with known answers, and `jaxcba preprocess`."""

import json

import numpy as np
import pytest

from jaxcba.cli import main
from jaxcba.io import read_volume, read_voxel_size, save_volume
from jaxcba.preprocess import (Cleanup, GraphiteFromGrey, close_additive, preprocess, remove_detached, resample,
                               segment_graphite)


def test_closing_fills_an_isolated_pore_voxel_and_keeps_faces():
    vol = np.ones((9, 9, 9), np.uint8)
    vol[4, 4, 4] = 0          # a one-voxel pore inclusion
    vol[:, :, 0] = 0          # a pore face at the border must stay
    out = close_additive(vol, 1)
    assert out[4, 4, 4] == 1
    assert np.all(out[:, :, 0] == 0)
    assert np.count_nonzero(out != vol) == 1


def test_detached_blob_removed_and_size_threshold():
    vol = np.zeros((20, 20, 20), np.uint8)
    vol[:, 5:8, 5:8] = 1      # main network: a rod through the window (540 voxels)
    vol[2:4, 15:17, 15:17] = 2  # detached blob of 8 voxels
    out, info = remove_detached(vol)
    assert info == {"components": 2, "removed": 1}
    assert np.all(out[2:4, 15:17, 15:17] == 0) and np.array_equal(out[:, 5:8, 5:8], vol[:, 5:8, 5:8])
    out2, info2 = remove_detached(vol, min_voxels=5)
    assert info2["removed"] == 0 and np.array_equal(out2, vol)


def test_graphite_by_quantile_keeps_pores():
    rng = np.random.default_rng(1)
    vol = rng.integers(0, 2, size=(10, 10, 10)).astype(np.uint8)
    grey = rng.random(vol.shape)
    out, info = segment_graphite(vol, grey, 0.85)
    q = np.quantile(grey, 0.85)
    assert np.array_equal(out == 2, (vol > 0) & (grey >= q))
    assert np.array_equal(out == 0, vol == 0)
    assert info["threshold"] == pytest.approx(q)


def test_anisotropic_2_to_1_resampled_to_cubes():
    # 20 x 10 x 10 nm (z, y, x) voxels of a layered volume: x-layers 2 voxels (20 nm) thick
    rng = np.random.default_rng(2)
    vol = rng.integers(0, 3, size=(40, 80, 80)).astype(np.uint8)
    out = resample(vol, (20.0, 10.0, 10.0), 20.0)
    assert out.shape == (40, 40, 40)
    # every kept voxel is an input voxel at the right place: z kept, y/x every 2nd (centre 1, 3, ...)
    assert np.array_equal(out, vol[:, 1::2, 1::2])
    for lab in range(3):
        assert np.mean(out == lab) == pytest.approx(np.mean(vol == lab), abs=0.01)


def test_pipeline_report(tmp_path):
    vol = np.zeros((16, 32, 32), np.uint8)
    vol[:, 8:24, 8:24] = 1
    vol[5, 12, 12] = 0        # hole to close
    vol[1, 1:3, 1:3] = 1      # detached blob
    out, rep = preprocess(vol, (20.0, 10.0, 10.0), to_voxel_nm=20.0)
    names = [s.step for s in rep.steps]
    assert names == ["close_additive", "remove_detached", "resample"]
    assert rep.steps[0].voxels_changed == 1 and rep.steps[1].voxels_changed == 4
    assert out.shape == (16, 16, 16) and rep.voxel_nm == (20.0, 20.0, 20.0)
    json.dumps(rep.to_dict())


def test_option_objects_are_the_steps_they_name():
    """Cleanup (steps 2-3) and GraphiteFromGrey (step 4) give the steps' own functions applied in order."""
    rng = np.random.default_rng(0)
    vol = (rng.random((12, 12, 12)) < 0.6).astype(np.uint8)
    grey = rng.random((12, 12, 12))
    out, rep = preprocess(vol, 20.0, cleanup=Cleanup(1, True, 5), graphite=GraphiteFromGrey(grey, quantile=0.7))
    ref, _ = remove_detached(close_additive(vol, 1), 5)
    ref, _ = segment_graphite(ref, grey, 0.7)
    assert np.array_equal(out, ref) and np.any(out == 2)
    assert [s.step for s in rep.steps] == ["close_additive", "remove_detached", "segment_graphite"]
    same, rep0 = preprocess(vol, 20.0, cleanup=Cleanup(0, False))
    assert np.array_equal(same, vol) and rep0.steps == ()


@pytest.mark.parametrize("make, match", [
    (lambda: Cleanup(closing_radius=-1), "closing_radius"),
    (lambda: Cleanup(closing_radius=65), "closing_radius"),
    (lambda: Cleanup(min_component_voxels=0), "min_component_voxels"),
    (lambda: Cleanup(remove_components=False, min_component_voxels=3), "needs remove_components=True"),
    (lambda: Cleanup(remove_components=1), "remove_components must be True or False"),
    (lambda: GraphiteFromGrey(np.zeros((2, 2, 2)), quantile=1.0), "quantile"),
    (lambda: GraphiteFromGrey(np.zeros((2, 2, 2)), min_voxels=-1), "min_graphite_voxels"),
    (lambda: GraphiteFromGrey(np.zeros((2, 2, 2)), closing_radius=2.0), "graphite_closing_radius"),
])
def test_option_objects_refuse_bad_settings(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_preprocess_refuses_what_is_not_an_option_object():
    vol = np.ones((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="cleanup must be a Cleanup"):
        preprocess(vol, 20.0, cleanup={"closing_radius": 0})
    with pytest.raises(ValueError, match="grey-value volume has shape"):
        preprocess(vol, 20.0, graphite=GraphiteFromGrey(np.zeros((2, 4, 4))))


def test_cli_preprocess_writes_with_voxel_size(tmp_path, capsys):
    vol = np.zeros((8, 16, 16), np.uint8)
    vol[:, 4:12, 4:12] = 128
    vol[:, 6:8, 6:8] = 255
    np.save(tmp_path / "in.npy", vol)
    out = tmp_path / "out.tif"
    rc = main(["preprocess", str(tmp_path / "in.npy"), "--voxel-nm", "10,10,20", "--to-voxel-nm", "20",
               "--labels", "0=0,128=1,255=2", "--out", str(out), "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["shape"] == [8, 8, 8]
    lab = read_volume(out)
    assert set(np.unique(lab)) == {0, 1, 2}
    assert read_voxel_size(out) == pytest.approx((20.0, 20.0, 20.0))


def test_cli_bad_input_exit_2_nothing_written(tmp_path, capsys):
    vol = np.array([0, 7, 128], np.uint8)[np.random.default_rng(0).integers(0, 3, (4, 4, 4))]
    np.save(tmp_path / "in.npy", vol)
    out = tmp_path / "out.tif"
    assert main(["preprocess", str(tmp_path / "in.npy"), "--voxel-nm", "20", "--out", str(out)]) == 2
    assert "found [7, 128]" in capsys.readouterr().err and not out.exists()
    (tmp_path / "v.raw").write_bytes(b"\0" * 10)
    assert main(["preprocess", str(tmp_path / "v.raw"), "--voxel-nm", "20", "--raw-shape", "2,2,2",
                 "--raw-dtype", "uint8", "--out", str(out)]) == 2
    assert "v.raw" in capsys.readouterr().err and not out.exists()
    save_volume(tmp_path / "ok.npy", np.zeros((4, 4, 4), np.uint8))
    assert main(["preprocess", str(tmp_path / "ok.npy"), "--voxel-nm", "20", "--out", str(tmp_path / "x.png")]) == 2
