"""Result containers shared by the theory modules."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import numpy as np


def _to_python(value):
    arr = np.asarray(value)
    if arr.ndim == 0:
        return float(arr)
    return arr.astype(float).tolist()


class Result(eqx.Module):
    """An ``eqx.Module`` of named array fields (a pytree: passes through jit/vmap).

    ``to_dict()`` gives ``{field: float}`` (or nested lists for batched results), ready
    for ``json.dumps``.
    """

    def to_dict(self) -> dict:
        return {f.name: _to_python(getattr(self, f.name)) for f in dataclasses.fields(self)}
