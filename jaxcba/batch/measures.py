"""What a batch job can measure: name -> kernel on one labelled volume, vmapped over a batch.

Each kernel maps ``labels`` (uint8 ``(z, y, x)``) and the static ``voxel_nm`` to a dict of
arrays; :func:`measure_batch` runs ``jit(vmap(kernel))`` on a ``(B, z, y, x)`` batch, which
keeps the batch's sharding (one slice of jobs per device). Phases: ``solid`` = labels > 0,
``pore`` = labels == 0; transport along z, as the descriptors' intrusion and tortuosity.
"""

from __future__ import annotations

from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxcba.descriptors.report import per_phase

#: The paper's two-conductivity solid: graphite 1, carbon black + binder 0.01 (Section 3.4).
SOLID_CONDUCTIVITY = {2: 1.0, 1: 0.01}


#: The phases of the per-phase measures, in output order.
PHASES = ("solid", "pore")


#: Largest radius of the batch CPSD grid [nm]: well above the largest pores of the CBA phase
#: (the paper model's pore space has no distance to the solid above ~0.7 µm in a 16 µm window).
MAX_RADIUS_NM = 1500.0


def _radii_vox(shape, voxel_nm: float, max_radius_vox: float | None = None) -> tuple[float, ...]:
    """Static CPSD radius grid [voxels]: 1, 1.5, ..., up to ``max_radius_vox`` when given (e.g. the
    largest distance to the boundary of the phases measured, as ``describe``'s grid; at least 2),
    else up to a quarter of the smallest side or :data:`MAX_RADIUS_NM`, whichever is smaller (at
    least 2: sized for the CBA phase, so at µm voxels it stops at 2 voxels)."""
    from jaxcba.descriptors.pore_size import radius_grid

    if max_radius_vox is not None:
        return tuple(float(r) for r in radius_grid(max(2.0, float(max_radius_vox))))
    return tuple(float(r) for r in radius_grid(max(2.0, min(min(shape) / 4.0, MAX_RADIUS_NM / voxel_nm))))


def radii_bounded(fraction):
    """Whether the CPSD ``fraction`` (over the static radius grid) drops below 0.5 within the grid,
    so that ``r_max = CPSD^-1(0.5)`` (and ``r_min <= r_max``) is a measured radius (jittable).

    False for a phase that fills the window (no wall bounds its balls: the CPSD is 1 at every
    radius), for one whose pores outgrow the grid (a nearly all-pore volume), and for an empty
    phase (its CPSD is undefined, NaN). The measures then report ``r_max_nm``, ``r_min_nm`` and
    ``beta`` as NaN - ``null`` in ``results.jsonl`` - instead of the grid's cap (or 0), as
    ``describe`` does (its ``radii_bounded``)."""
    return jnp.asarray(fraction)[..., -1] < 0.5


def fractions(labels, voxel_nm):
    n = labels.size
    counts = [jnp.sum(labels == k, dtype=jnp.int32) for k in range(3)]
    return {"pore": counts[0] / n, "cb": counts[1] / n, "graphite": counts[2] / n, "solid": (counts[1] + counts[2]) / n}


def surface_density(labels, voxel_nm):
    from jaxcba.descriptors import intrinsic_densities

    d = intrinsic_densities(labels > 0, voxel_nm)
    return {"S_V": d.S_V, "M_V": d.M_V, "chi_V": d.chi_V}


def two_point(labels, voxel_nm):
    from jaxcba.descriptors import two_point_coverage

    def one(_, m):
        t = two_point_coverage(m, voxel_nm)
        return {"h_nm": t.h_nm, "C": t.C}

    return per_phase(labels, PHASES, one)


def _cpsd_values(r_nm, fraction, r_half_nm) -> dict:
    ok = radii_bounded(fraction)
    return {"r_nm": r_nm, "fraction": fraction, "r_max_nm": jnp.where(ok, r_half_nm, jnp.nan), "radii_bounded": ok}


def _constrictivity_values(c) -> dict:
    ok = radii_bounded(c.cpsd)
    return {"beta": jnp.where(ok, c.beta, jnp.nan), "r_min_nm": jnp.where(ok, c.r_min_nm, jnp.nan),
            "r_max_nm": jnp.where(ok, c.r_max_nm, jnp.nan), "percolates": c.percolates, "radii_bounded": ok}


def cpsd(labels, voxel_nm, max_radius_vox=None):
    from jaxcba.descriptors.pore_size import cpsd as _cpsd

    radii = _radii_vox(labels.shape, voxel_nm, max_radius_vox)

    def one(_, m):
        c = _cpsd(m, voxel_nm, radii)
        return _cpsd_values(c.r_nm, c.fraction, c.r_half_nm)

    return per_phase(labels, PHASES, one)


def constrictivity(labels, voxel_nm, max_radius_vox=None):
    return cpsd_and_constrictivity(labels, voxel_nm, max_radius_vox)["constrictivity"]  # the CPSD part is dropped


def cpsd_and_constrictivity(labels, voxel_nm, max_radius_vox=None):
    """``{"cpsd": cpsd(...), "constrictivity": constrictivity(...)}`` from one constrictivity per
    phase: its opening curve is the CPSD (the same integer counts), so the CPSD is not run twice."""
    from jaxcba.descriptors.pore_size import constrictivity as _beta

    radii = _radii_vox(labels.shape, voxel_nm, max_radius_vox)

    def one(_, m):
        c = _beta(m, voxel_nm, radii, axis=0)
        return {"cpsd": _cpsd_values(c.r_nm, c.cpsd, c.r_max_nm), "constrictivity": _constrictivity_values(c)}

    both = per_phase(labels, PHASES, one)
    return {name: {p: both[p][name] for p in PHASES} for name in ("cpsd", "constrictivity")}


def geodesic_tortuosity(labels, voxel_nm):
    from jaxcba.descriptors.geodesic import geodesic_tortuosity as _tau

    def one(_, m):
        t = _tau(m, axis=0)
        return {"mean": t.mean, "percolates": t.percolates}

    return per_phase(labels, PHASES, one)


def _m_factor(labels, voxel_nm, phase, conductivity):
    from jaxcba.transport import m_factor
    from jaxcba.transport.paper import paper_m_factor

    r = m_factor(labels, phase, conductivity, axis="z")
    return {"M": r.m_factor, "M_paper": paper_m_factor(r, labels, phase, conductivity), "tau_eff": r.tau_eff,
            "eps": r.eps, "converged": r.converged, "percolates": r.percolates}


MEASURES = {
    "fractions": fractions,
    "surface_density": surface_density,
    "two_point": two_point,
    "cpsd": cpsd,
    "constrictivity": constrictivity,
    "geodesic_tortuosity": geodesic_tortuosity,
    "m_factor_pore": partial(_m_factor, phase="pore", conductivity=None),
    "m_factor_solid": partial(_m_factor, phase="solid", conductivity=SOLID_CONDUCTIVITY),
}

#: Measures computed together when a job asks for all of them (kernel name -> the measures it
#: returns, as ``{measure: values}``): one pass instead of one per measure. Not asked for by name.
JOINT = {"cpsd+constrictivity": ("cpsd", "constrictivity")}

#: Every kernel :func:`measure_batch` runs: the measures and the :data:`JOINT` ones.
KERNELS = {**MEASURES, "cpsd+constrictivity": cpsd_and_constrictivity}


def plan(names) -> list[tuple[str, tuple[str, ...]]]:
    """The kernels that measure ``names`` (in their order): ``[(kernel, measures it gives)]``, a
    :data:`JOINT` kernel wherever all of its measures are asked for (at the place of the first)."""
    names = list(names)
    steps, taken = [], set()
    for name in names:
        if name in taken:
            continue
        joint = next((k for k, group in JOINT.items() if name in group and all(g in names for g in group)), None)
        group = JOINT[joint] if joint else (name,)
        steps.append((joint or name, group))
        taken.update(group)
    return steps


#: Working memory of each measure [bytes per voxel per job] (bench_scale.py at 400^3), for the batch size
#: and the up-front memory check; the M-factors run on the labels under vmap (the lean path as
#: one program: 29 bytes per voxel in XLA's memory analysis).
BYTES_PER_VOXEL = {"fractions": 4, "surface_density": 12, "two_point": 12, "cpsd": 12, "constrictivity": 18,
                   "geodesic_tortuosity": 9, "m_factor_pore": 30, "m_factor_solid": 30}


#: The measures on the CPSD radius grid (they take ``max_radius_vox``).
RADIUS_MEASURES = ("cpsd", "constrictivity", "cpsd+constrictivity")


@lru_cache(maxsize=None)
def _compiled(name: str, voxel_nm: float, max_radius_vox: float | None = None):
    kw = {"max_radius_vox": max_radius_vox} if max_radius_vox is not None else {}
    return jax.jit(jax.vmap(partial(KERNELS[name], voxel_nm=voxel_nm, **kw)))


def measure_batch(name: str, labels, voxel_nm: float, max_radius_vox: float | None = None) -> dict:
    """``name``'s values for a ``(B, z, y, x)`` batch (possibly sharded): nested dict of NumPy ``(B, ...)``.
    ``max_radius_vox`` [voxels]: the end of the CPSD radius grid of :data:`RADIUS_MEASURES`
    (default: :func:`_radii_vox`'s, capped at :data:`MAX_RADIUS_NM`); ignored by the others."""
    if max_radius_vox is not None and name in RADIUS_MEASURES:
        out = _compiled(name, float(voxel_nm), float(max_radius_vox))(labels)
    else:
        out = _compiled(name, float(voxel_nm))(labels)
    return jax.tree_util.tree_map(np.asarray, out)
