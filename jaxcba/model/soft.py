"""Soft-voxel (differentiable) realizations (placeholder until issue 4 lands)."""


def draw_noise(key, shape, voxel_nm, **kwargs):
    raise NotImplementedError("draw_noise lands with the realizations issue")


def simulate_soft(params, noise, shape, voxel_nm, softness):
    raise NotImplementedError("simulate_soft lands with the realizations issue")
