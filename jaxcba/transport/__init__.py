"""Effective conductivity, tortuosity and M-factor by an iterative solver (paper Eq. 27).

``m_factor(labels, phase="pore"|"solid", conductivity=None, axis="z")`` is the one-call entry
point; ``effective_conductivity(sigma, axis)`` takes any per-voxel conductivity field (jit,
vmap and grad friendly); ``label_conductivity(labels, {label: sigma}, axis)`` is the
memory-lean solve of a labelled volume that ``m_factor`` runs.
"""

from jaxcba.transport.phases import PAPER_SOLID_CONDUCTIVITY, PHASE_LABELS, conductivity_field, m_factor
from jaxcba.transport.paper import paper_m_factor
from jaxcba.transport.result import TransportResult
from jaxcba.transport.solver import SolverOptions, axis_index, effective_conductivity, label_conductivity

__all__ = [
    "TransportResult",
    "SolverOptions",
    "effective_conductivity",
    "label_conductivity",
    "axis_index",
    "m_factor",
    "paper_m_factor",
    "conductivity_field",
    "PHASE_LABELS",
    "PAPER_SOLID_CONDUCTIVITY",
]
