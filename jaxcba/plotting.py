"""Figures shared by the CLI and the experiments (matplotlib, Agg backend, atomic PNG writes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Phase colours as in the paper's Fig. 1: pore dark, carbon black + binder blue, graphite yellow.
PHASE_COLOURS = ("#1b1b1b", "#3a7bd5", "#f2c14e")
PHASE_NAMES = ("pore", "carbon black + binder", "graphite")


def figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_png(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` to ``path`` as PNG atomically (temp file + rename, the usual
    ``0o666 & ~umask`` mode, as every output of jaxcba: :func:`jaxcba._checks.write_atomic`)
    and close it."""
    import matplotlib.pyplot as plt

    from jaxcba._checks import write_atomic

    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"), suffix=".png")
    finally:
        plt.close(fig)


def show_phases(ax, labels_slice: np.ndarray, voxel_nm: float, title: str = "") -> None:
    """Draw a 2D label slice with the three phases coloured, axes in micrometres."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    ny, nx = labels_slice.shape
    extent = (0, nx * voxel_nm / 1000, ny * voxel_nm / 1000, 0)
    ax.imshow(labels_slice, cmap=ListedColormap(PHASE_COLOURS), vmin=0, vmax=2, interpolation="nearest", extent=extent)
    ax.set_xlabel("x [µm]")
    ax.set_ylabel("y [µm]")
    ax.set_title(title)
    ax.legend(handles=[Patch(color=c, label=n) for c, n in zip(PHASE_COLOURS, PHASE_NAMES)],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
