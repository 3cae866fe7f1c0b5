"""Hard ternary realizations of Xi = Xi1 ∪ (Xi2 ∩ Xi3^c) (placeholder until issue 4 lands)."""


def simulate(params, shape, voxel_nm, key):
    """Labelled volume uint8 (z, y, x): 0 pore, 1 carbon black + binder, 2 graphite."""
    raise NotImplementedError("simulate lands with the realizations issue")
