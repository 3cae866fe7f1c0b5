"""The validation layer (jaxcba._checks) and the progress meter (jaxcba._progress)."""

import io
import os
import stat

import jax
import numpy as np
import pytest

from jaxcba import _checks as C
from jaxcba._progress import NULL, meter


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "80", None, True, 1e-300, 1e300, np.array([1.0])])
def test_voxel_nm_refused(value):
    with pytest.raises(ValueError, match="voxel_nm"):
        C.check_voxel_nm(value)


@pytest.mark.parametrize("value", [20, 20.0, np.float32(80), np.array(40.0), 0.5])
def test_voxel_nm_accepted(value):
    assert C.check_voxel_nm(value) == float(value)


def test_number_messages_name_argument_value_and_range():
    with pytest.raises(ValueError, match=r"eps = -1 is out of range; allowed: a finite number > 0"):
        C.check_positive(-1, "eps")
    with pytest.raises(ValueError, match=r"q = 1.5 is out of range; allowed: a finite number in \(0, 1\)"):
        C.check_fraction(1.5, "q")
    with pytest.raises(ValueError, match="not finite"):
        C.check_positive(float("nan"), "sigma_ref")
    assert C.check_positive(0, "r", allow_zero=True) == 0.0


@pytest.mark.parametrize("value", [2.5, 2.0, "3", True, None])
def test_int_refused(value):
    with pytest.raises(ValueError, match="max_lag_vox"):
        C.check_int(value, "max_lag_vox", lo=1)


def test_int_range():
    assert C.check_int(np.int64(3), "n", lo=1) == 3
    with pytest.raises(ValueError, match=r"n = 0 is out of range; allowed: an integer >= 1"):
        C.check_int(0, "n", lo=1)


@pytest.mark.parametrize("value", [2**64, 2**63, -(2**63) - 1, "abc", 1.5, True, None])
def test_key_refused(value):
    with pytest.raises(ValueError, match="key"):
        C.check_key(value)


def test_key_accepted_same_as_jax():
    for seed in (0, 7, -1, 2**63 - 1):
        assert np.array_equal(jax.random.key_data(C.check_key(seed)), jax.random.key_data(jax.random.key(seed)))
    k = jax.random.key(3)
    assert C.check_key(k) is k
    raw = jax.random.PRNGKey(3)
    assert C.check_key(raw) is raw
    assert np.array_equal(C.check_key(np.asarray(raw)), raw)
    with pytest.raises(ValueError, match="not a seed or key"):
        C.check_key(np.zeros(3, np.uint32))


@pytest.mark.parametrize("value,axis", [(0, 0), (1, 1), (2, 2), ("z", 0), ("Y", 1), ("x", 2), ("2", 2), (np.int64(1), 1)])
def test_parse_axis(value, axis):
    assert C.parse_axis(value) == axis


@pytest.mark.parametrize("value", [3, -1, "w", "", None, 1.0, True])
def test_parse_axis_refused(value):
    with pytest.raises(ValueError, match=r"allowed: 0\|1\|2 or z\|y\|x"):
        C.parse_axis(value)


def test_dtype_floating():
    import jax.numpy as jnp

    assert C.check_dtype_floating(jnp.float32) == np.float32
    with pytest.raises(ValueError, match="dtype = int32 is not a floating dtype"):
        C.check_dtype_floating(jnp.int32)
    with pytest.raises(ValueError, match="not a dtype"):
        C.check_dtype_floating("bogus")


def test_memory_and_work():
    with pytest.raises(ValueError, match=r"the thing needs about 2.0 GiB but only 1.0 GiB .*--force"):
        C.check_memory(2 * 2**30, "the thing", available=2**30)
    C.check_memory(2 * 2**30, "the thing", available=2**30, force=True)
    with pytest.raises(ValueError, match="1e\\+09 grains, above the limit of 1e\\+08"):
        C.check_work(1e9, 1e8, "this window", "grains")
    C.check_work(1e9, 1e8, "this window", "grains", force=True)


def test_calibration_cost_estimates():
    """Stage 3 holds n uint8 windows and carves them at ~20 trial thetas; the joint mode's gradient
    costs ~600 B per soft voxel and noise draw: the arithmetic against given limits."""
    n, shape = 1000, (64, 64, 64)  # 1000 * 262144 * 2 B = 0.49 GiB; * 20 = 5.2e9 voxels
    C.check_stage3_cost(shape, n, available=2**30)
    with pytest.raises(ValueError, match=r"stage 3 with 1000 realizations of 64x64x64 voxels needs about 0.5 GiB "
                                         r"but only 0.2 GiB .*--force to try anyway"):
        C.check_stage3_cost(shape, n, available=2**28)
    C.check_stage3_cost(shape, n, available=2**28, force=True)
    n_limit = int(C.MAX_STAGE3_VOXELS // (C.STAGE3_EVALS * 64**3))  # the most realizations under the work limit
    C.check_stage3_cost(shape, n_limit, available=float("inf"))
    with pytest.raises(ValueError, match=r"above the limit of 1e\+11"):
        C.check_stage3_cost(shape, n_limit + 1, available=float("inf"))
    with pytest.raises(ValueError, match="realizations = 0 is out of range"):
        C.check_stage3_cost(shape, 0)
    need = 2 * 32**3 * C.JOINT_BYTES_PER_VOXEL  # 37.5 MiB
    C.check_joint_cost((32, 32, 32), 2, available=need)
    with pytest.raises(ValueError, match="the joint mode's gradient over 2 soft windows of 32x32x32 voxels"):
        C.check_joint_cost((32, 32, 32), 2, available=need - 1)


def test_output_path(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        C.check_output_path(f / "v.npy")
    with pytest.raises(ValueError, match="is a folder"):
        C.check_output_path(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        C.check_output_path(f, folder=True)
    with pytest.raises(ValueError, match="unsupported file format .png"):
        C.check_output_path(tmp_path / "v.png", suffixes=(".npy",))
    assert C.check_output_path(tmp_path / "new" / "deeper" / "v.npy") == tmp_path / "new" / "deeper" / "v.npy"
    assert not (tmp_path / "new").exists()
    assert C.existing([f, tmp_path / "nope", None]) == [f]


def test_write_atomic_mode_and_cleanup(tmp_path):
    old = os.umask(0o022)
    try:
        p = C.write_text_atomic(tmp_path / "a.txt", "hello\n")
    finally:
        os.umask(old)
    assert p.read_text() == "hello\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644

    def boom(tmp):
        raise RuntimeError("fail")

    with pytest.raises(RuntimeError):
        C.write_atomic(tmp_path / "b.bin", boom)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]


def test_meter_null_and_real(monkeypatch):
    assert meter(10, enabled=False) is NULL
    with meter(10, enabled=False) as bar:
        bar.update(3)
        bar.set_postfix_str("x")
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    with meter(4, desc="t", unit="job", delay=0) as bar:
        for _ in range(4):
            bar.update(1)
    assert "t" in buf.getvalue()
