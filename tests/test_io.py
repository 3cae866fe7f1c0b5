"""Volume I/O: formats, label mappings, voxel-size metadata, clear errors naming the file."""

import numpy as np
import pytest
import tifffile

from jaxcba.io import map_labels, parse_mapping, read_volume, read_voxel_size, save_volume


@pytest.fixture
def vol():
    rng = np.random.default_rng(0)
    return rng.integers(0, 3, size=(6, 7, 8)).astype(np.uint8)


@pytest.mark.parametrize("name", ["v.tif", "v.npy"])
def test_round_trip_keeps_values_shape_and_voxel_size(tmp_path, vol, name):
    path = save_volume(tmp_path / name, vol, voxel_nm=(20.0, 10.0, 10.0))
    back = read_volume(path)
    assert back.dtype == np.uint8 and back.shape == vol.shape and np.array_equal(back, vol)
    assert read_voxel_size(path) == pytest.approx((20.0, 10.0, 10.0))


def test_tiff_to_labels_to_tiff(tmp_path, vol):
    raw = np.array([0, 128, 255], np.uint8)[vol]
    tifffile.imwrite(tmp_path / "raw.tif", raw)
    labels = read_volume(tmp_path / "raw.tif", mapping=parse_mapping("0=0,128=1,255=2"))
    assert np.array_equal(labels, vol)
    save_volume(tmp_path / "out.tif", labels, voxel_nm=20.0)
    assert np.array_equal(read_volume(tmp_path / "out.tif"), vol)
    assert read_voxel_size(tmp_path / "out.tif") == pytest.approx((20.0, 20.0, 20.0))


def test_folder_of_slices_npz_and_raw(tmp_path, vol):
    folder = tmp_path / "slices"
    folder.mkdir()
    for i, sl in enumerate(vol):
        tifffile.imwrite(folder / f"s{i:03d}.tif", sl)
    assert np.array_equal(read_volume(folder), vol)
    np.savez(tmp_path / "v.npz", labels=vol, voxel_nm=np.array([20.0, 20.0, 20.0]))
    assert np.array_equal(read_volume(tmp_path / "v.npz"), vol)
    assert read_voxel_size(tmp_path / "v.npz") == (20.0, 20.0, 20.0)
    vol.tofile(tmp_path / "v.raw")
    assert np.array_equal(read_volume(tmp_path / "v.raw", shape=vol.shape, dtype="uint8"), vol)


def test_errors_name_the_file(tmp_path, vol):
    vol.tofile(tmp_path / "v.raw")
    with pytest.raises(ValueError, match=r"v\.raw.*bytes"):
        read_volume(tmp_path / "v.raw", shape=(6, 7, 9), dtype="uint8")
    tifffile.imwrite(tmp_path / "t.tif", vol)
    data = (tmp_path / "t.tif").read_bytes()
    (tmp_path / "trunc.tif").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="trunc.tif"):
        read_volume(tmp_path / "trunc.tif")
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match="junk.npy"):
        read_volume(tmp_path / "junk.npy")
    np.save(tmp_path / "grey.npy", (vol * 100).astype(np.uint8))
    with pytest.raises(ValueError, match=r"grey\.npy.*found \[100, 200\]"):
        read_volume(tmp_path / "grey.npy")
    with pytest.raises(ValueError, match="no entry in the label mapping"):
        map_labels(vol * 100, {0: 0, 100: 1})
    with pytest.raises(ValueError, match="no such file"):
        read_volume(tmp_path / "missing.tif")
