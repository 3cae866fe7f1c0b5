"""validate's CPSD radius grid reaches the largest distance to the boundary of either phase (the
snow image at 10 µm voxels: the batch engine's grid, capped at 1.5 µm, stopped at 2 voxels and
left r_max, r_min and beta null on both sides, yet counted consistent); a value that was not
measured is "not comparable", never consistent, while a phase that does not percolate stays a
legitimate, comparable outcome."""

import math

import numpy as np
import pytest
from helpers import digital_ball

import jaxcba
from jaxcba.validate import _core, measure_volume, scalar_values, validate
from jaxcba.validate._core import radius_grid_end, tight_grid_end, unmeasured, verdict

VOXEL_NM = 10000.0  # 10 µm voxels, as the snow micro-CT
R = 4.0  # ball radius [voxels]


def _ball_image(n=24):
    """Eight solid balls of radius R (centres 6 and 18 on each axis) in pore: every voxel of
    either phase is within 7 voxels of the other."""
    img = np.zeros((n, n, n), bool)
    for c in np.ndindex(2, 2, 2):
        img |= digital_ball(n, R, tuple(6 + 12 * k for k in c))
    return img.astype(np.uint8)


def test_grid_reaches_the_ball_and_measures_its_r_max():
    img = _ball_image()
    default = measure_volume(img, VOXEL_NM)  # the batch grid: max(2, 1500 nm / 10 µm) = 2 voxels
    assert not bool(default["constrictivity"]["solid"]["radii_bounded"])
    assert ("r_max", "solid") in unmeasured(default)
    tight = tight_grid_end([img])
    # one step past the pore's largest distance to the balls (sqrt(3) 6 - 4 = 6.4 voxels, on the 0.5 grid)
    assert 6.0 + 1.0 <= tight <= 6.5 + 1.0
    end = radius_grid_end([img])
    assert end == 8.0  # rounded up to a power of two (below the cap of 12 voxels)
    assert radius_grid_end([img[:12, :12, :12]]) == 6.0  # the cap: half the smallest side
    row = measure_volume(img, VOXEL_NM, end)
    assert unmeasured(row) == set()
    r_max = scalar_values(row)[("r_max", "solid")]
    # the CPSD of a ball of radius R is ~1 up to R (on a 0.5-voxel grid): r_max within a step of R
    assert abs(r_max / VOXEL_NM - R) <= 1.0, r_max


def test_not_measured_is_never_consistent_and_not_percolating_is_compared():
    nan = math.nan
    # both null because not measured: not comparable, not consistent (was: consistent)
    r = verdict(("r_max", "solid", "nm"), 1, VOXEL_NM, nan, [nan, 3.0, 4.0], measured=[False, False, True, True])
    assert not r.comparable and not r.consistent and not r.in_range
    # the image measured but one realization not: not comparable either
    r = verdict(("r_max", "solid", "nm"), 1, VOXEL_NM, 3.5, [nan, 3.0, 4.0], measured=[True, False, True, True])
    assert not r.comparable and not r.consistent
    # null because the phase does not percolate (measured): consistent when a realization does not either
    r = verdict(("r_min", "pore", "nm"), 1, VOXEL_NM, nan, [nan, 3.0, 4.0], measured=[True] * 4)
    assert r.comparable and r.consistent
    assert not verdict(("r_min", "pore", "nm"), 1, VOXEL_NM, nan, [2.0, 3.0, 4.0]).consistent


def test_validate_on_coarse_voxels_measures_r_max_and_counts_apart(monkeypatch):
    """Solid balls in a 24^3 window at 10 µm against a fine excursion set: r_max, r_min, beta of
    both phases are measured (not null) on both sides; forcing the old 2-voxel grid makes them
    not comparable, counted apart in the summary and never consistent."""
    fit = jaxcba.CBAParams(lambda_x=0.0, alpha1=1.0, alpha2=1.0, gamma=1.0, mu=0.0, eta=1.0 / 20000.0,
                           theta=1.0 / 20000.0, lambda_y=1e-30)
    img = _ball_image()
    res = validate(img, VOXEL_NM, fit, n=3, downsample=())
    rows = {(r.descriptor, r.phase): r for r in res.rows}
    assert res.counts["not_comparable"] == 0 and all(r.comparable for r in res.rows)
    solid = rows[("r_max", "solid")]
    assert math.isfinite(solid.image) and solid.n_finite == 3
    assert abs(solid.image / VOXEL_NM - R) <= 1.0
    assert not solid.consistent  # 4-voxel balls against an excursion set of 2-voxel correlation length
    assert any("radius grid" in n for n in res.notes)

    monkeypatch.setattr(_core, "radius_grid_end", lambda vols: 2.0)  # the old grid: 2 voxels
    old = validate(img, VOXEL_NM, fit, n=3, downsample=())
    bad = {(r.descriptor, r.phase) for r in old.not_compared}
    assert ("r_max", "solid") in bad and ("constrictivity", "solid") in bad
    assert all(not r.consistent for r in old.not_compared)
    assert old.counts["consistent"] + old.counts["not_comparable"] + len(old.outside) == old.counts["total"]
    assert "not compared" in old.summary and "r_max (solid)" in old.summary


def test_resolution_closeness_and_a_resolution_as_wide_as_the_range():
    """Within the resolution of the mean is consistent (r_max: half a voxel); beta's propagated
    resolution 2 beta sqrt((d / r_min)^2 + (d / r_max)^2) at radii of one or two voxels exceeds
    its whole range [0, 1], resolves nothing and is not used: the row is judged by the range and
    the prediction interval alone (the snow image's ice at 40 µm: resolution 1.04)."""
    from jaxcba.validate._core import resolution_of

    model = [3.0, 3.0, 3.0, 3.0, 3.0]  # coarse realizations agreeing to the step: std 0
    near = verdict(("r_max", "solid", "nm"), 1, 10.0, 3.0 + 4.9, model, resolution=resolution_of("r_max", 10.0))
    assert near.resolution == 5.0 and near.consistent and not near.in_range
    assert not verdict(("r_max", "solid", "nm"), 1, 10.0, 3.0 + 5.1, model, resolution=5.0).consistent
    means = {"r_min": 0.7 * VOXEL_NM, "r_max": 0.9 * VOXEL_NM}  # radii below one voxel: beta 0.60
    res = resolution_of("constrictivity", VOXEL_NM, means)
    beta = (0.7 / 0.9) ** 2
    assert res == pytest.approx(2 * beta * math.sqrt((0.5 / 0.7) ** 2 + (0.5 / 0.9) ** 2), rel=1e-9) and res > 1
    model = [0.55, 0.6, 0.65, 0.58, 0.62]
    far = verdict(("constrictivity", "solid", "1"), 1, VOXEL_NM, 0.05, model, resolution=res)
    assert abs(0.05 - far.mean) < res and not far.consistent  # once consistent by the resolution alone
    assert far.resolution == res  # reported as it is
    assert verdict(("constrictivity", "solid", "1"), 1, VOXEL_NM, 0.6, model, resolution=res).consistent
