"""A half-open voxel box ``[z0, z1) x [y0, y1) x [x0, x1)`` of a ``(z, y, x)`` volume (stage 2's
cutout, the preprocessing crop)."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxcba.calibrate._result import Result


@dataclasses.dataclass(frozen=True)
class Box(Result):
    """Half-open voxel box ``[z0, z1) x [y0, y1) x [x0, x1)`` [voxel indices]; JSON: the six bounds and ``shape``."""

    _json_order = ("z0", "z1", "y0", "y1", "x0", "x1", "shape")

    z0: int
    z1: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.z1 - self.z0, self.y1 - self.y0, self.x1 - self.x0)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return (slice(self.z0, self.z1), slice(self.y0, self.y1), slice(self.x0, self.x1))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @classmethod
    def parse(cls, spec, volume_shape, what: str = "cutout") -> "Box":
        """From a :class:`Box`, 6 integers ``(z0, z1, y0, y1, x0, x1)`` (flat or as three
        ``(start, stop)`` pairs) or ``"z0:z1,y0:y1,x0:x1"``; ``what`` names it in errors.

        Raises ``ValueError`` for boxes outside the volume or with an empty side.
        """
        if isinstance(spec, Box):
            box = spec
        else:
            if isinstance(spec, str):
                try:
                    parts = [p.split(":") for p in spec.split(",")]
                    vals = [int(v) for p in parts for v in p]
                    if len(parts) != 3 or any(len(p) != 2 for p in parts):
                        raise ValueError
                except ValueError:
                    raise ValueError(f"{what} {spec!r} must look like 'z0:z1,y0:y1,x0:x1' (voxel indices)") from None
            else:
                vals = [int(v) for v in np.ravel(np.asarray(spec, dtype=object))]
                if len(vals) != 6:
                    raise ValueError(f"{what} needs 6 integers (z0, z1, y0, y1, x0, x1), got {len(vals)}")
            box = cls(*vals)
        lo = (box.z0, box.y0, box.x0)
        hi = (box.z1, box.y1, box.x1)
        for ax, (a, b, n) in enumerate(zip(lo, hi, volume_shape)):
            if not 0 <= a < b <= n:
                raise ValueError(f"{what} {box.to_dict()} is empty or outside the volume of shape "
                                 f"{tuple(volume_shape)} along axis {ax}: need 0 <= start < stop <= {n}")
        return box
