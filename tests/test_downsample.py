"""Down-sampling: every k-th slice (the paper's) and majority vote."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcba.descriptors.downsample import downsample


@pytest.mark.parametrize("k", [2, 4])
def test_slice_keeps_every_kth_voxel(k):
    x = np.random.default_rng(0).integers(0, 3, (9, 8, 13)).astype(np.uint8)
    got = np.asarray(downsample(jnp.asarray(x), k))
    assert got.shape == tuple(-(-n // k) for n in x.shape)
    for i, j, l in np.ndindex(*got.shape):
        assert got[i, j, l] == x[k * i, k * j, k * l]


def test_majority_vote_against_loop_and_ties():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, (8, 6, 10)).astype(np.uint8)
    got = np.asarray(downsample(jnp.asarray(x), 2, method="majority"))
    assert got.shape == (4, 3, 5) and got.dtype == np.uint8
    for i, j, l in np.ndindex(*got.shape):
        counts = np.bincount(x[2 * i : 2 * i + 2, 2 * j : 2 * j + 2, 2 * l : 2 * l + 2].ravel(), minlength=3)
        assert got[i, j, l] == np.flatnonzero(counts == counts.max())[0]  # ties -> smallest label
    tie = np.zeros((2, 2, 2), np.uint8)
    tie[0] = 2
    assert int(downsample(jnp.asarray(tie), 2, "majority")[0, 0, 0]) == 0
    tie[:] = 1
    tie[0, 0] = 2
    tie[1, 1] = 2  # four 1s, four 2s -> 1
    assert int(downsample(jnp.asarray(tie), 2, "majority")[0, 0, 0]) == 1


def test_majority_boolean_and_vmap():
    rng = np.random.default_rng(2)
    b = rng.random((3, 8, 8, 8)) < 0.5
    got = np.asarray(jax.vmap(lambda m: downsample(m, 4, "majority"))(jnp.asarray(b)))
    ref = b.reshape(3, 2, 4, 2, 4, 2, 4).sum(axis=(2, 4, 6)) > 32
    np.testing.assert_array_equal(got, ref)
    loop = np.stack([np.asarray(downsample(jnp.asarray(v), 2)) for v in b])
    np.testing.assert_array_equal(np.asarray(jax.vmap(lambda m: downsample(m, 2))(jnp.asarray(b))), loop)


def test_slice_preserves_volume_fraction_of_coarse_structure():
    # a structure coarse compared with the factor keeps its volume fraction (point count)
    g = np.arange(64)
    x = ((g[:, None, None] // 8 + g[None, :, None] // 8 + g[None, None, :] // 8) % 2).astype(bool)
    assert float(np.asarray(downsample(jnp.asarray(x), 4)).mean()) == pytest.approx(x.mean())


def test_bad_input():
    with pytest.raises(ValueError, match="method"):
        downsample(jnp.zeros((4, 4, 4)), 2, "mean")
    with pytest.raises(ValueError, match="factor"):
        downsample(jnp.zeros((4, 4, 4)), 0)
    with pytest.raises(ValueError, match="factor"):
        downsample(jnp.zeros((4, 4, 4)), 1.5)
    with pytest.raises(ValueError, match="larger"):
        downsample(jnp.zeros((4, 4, 2)), 4, "majority")
    with pytest.raises(ValueError, match="z, y, x"):
        downsample(jnp.zeros((4, 4)), 2)
