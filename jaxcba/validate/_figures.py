"""The pictures of a validation (matplotlib, Agg backend, atomic PNG writes).

- ``fig1_cubes.png``: the image and one realization side by side as cubes (paper Fig. 1):
  the three visible faces of each volume drawn as images in an oblique projection, graphite
  yellow, carbon black + binder blue, pore transparent (fast at 200^3 and beyond: three 2D
  images per cube, no 3D voxel rendering);
- ``fig5_scalars.png``: every scalar descriptor per resolution, the model's mean as a bar with
  its [min, max] as error bars and the image as a disk (filled: consistent, open red: not);
- ``fig6_cpsd.png``: CPSD of solid and pore per resolution, the image's curve over the model's
  [min, max] band;
- ``fig7_two_point.png``: ``C(h) - V^2`` per resolution, likewise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxcba.plotting import figure as _figure
from jaxcba.plotting import save_png
from jaxcba.validate._tables import SCALARS

__all__ = ["plot_cubes", "save_figures"]

#: RGBA per label: pore transparent, carbon black + binder blue, graphite yellow (Fig. 1).
CUBE_RGBA = np.array([[1.0, 1.0, 1.0, 0.0], [0.23, 0.48, 0.84, 1.0], [0.95, 0.76, 0.31, 1.0]])
#: Largest face side drawn [pixels]; bigger volumes are shown every k-th voxel (slice removal).
MAX_FACE = 256
_DEPTH = (0.55, 0.35)  # screen offset of one voxel of depth (y): oblique projection


def _save(fig, path) -> Path:
    return Path(save_png(fig, path))


def _draw_cube(ax, labels: np.ndarray, title: str, voxel_nm: float) -> None:
    from matplotlib.transforms import Affine2D

    k = max(1, int(np.ceil(max(labels.shape) / MAX_FACE)))
    lab = np.asarray(labels)[::k, ::k, ::k]
    nz, ny, nx = lab.shape
    a, b = _DEPTH
    faces = [  # (image[v, u] with origin lower, affine (u, v) -> screen)
        (lab[::-1, 0, :], [[1, 0, 0], [0, 1, -nz], [0, 0, 1]]),  # front (y = 0)
        (lab[0, :, :], [[1, a, 0], [0, b, 0], [0, 0, 1]]),  # top (z = 0)
        (lab[::-1, :, -1], [[a, 0, nx], [b, 1, -nz], [0, 0, 1]]),  # right (x = last)
    ]
    for img, m in faces:
        rgba = CUBE_RGBA[np.clip(img, 0, 2)]
        ax.imshow(rgba, origin="lower", interpolation="nearest", extent=(0, img.shape[1], 0, img.shape[0]),
                  transform=Affine2D(np.array(m, dtype=float)) + ax.transData)
    corners = {"f0": (0, -nz), "f1": (nx, -nz), "f2": (nx, 0), "f3": (0, 0)}
    back = {name: (x + a * ny, y + b * ny) for name, (x, y) in corners.items()}
    edges = [("f0", "f1"), ("f1", "f2"), ("f2", "f3"), ("f3", "f0")]
    for p, q in edges:
        ax.plot(*zip(corners[p], corners[q]), color="0.4", lw=0.6)
    for p, q in [("f1", "f2"), ("f2", "f3")]:
        ax.plot(*zip(back[p], back[q]), color="0.4", lw=0.6)
    for p in ("f1", "f2", "f3"):
        ax.plot(*zip(corners[p], back[p]), color="0.4", lw=0.6)
    ax.set_xlim(-2, nx + a * ny + 2)
    ax.set_ylim(-nz - 2, b * ny + 2)
    ax.set_aspect("equal")
    ax.axis("off")
    side = " x ".join(f"{s * voxel_nm / 1000:.3g}" for s in labels.shape)
    ax.set_title(f"{title}\n{side} µm (z x y x x)", fontsize=9)


def legend_labels(*volumes) -> dict[int, str]:
    """Label -> legend entry of the cube picture: graphite, carbon black + binder and pore; without
    graphite (label 2) in any of ``volumes`` (a two-phase image and fit) just solid and pore."""
    if any(np.any(np.asarray(v) == 2) for v in volumes):
        return {2: "graphite", 1: "carbon black + binder", 0: "pore (transparent)"}
    return {1: "solid", 0: "pore (transparent)"}


def plot_cubes(image, realization, voxel_nm: float, path) -> Path:
    """Fig. 1-style picture: ``image`` and ``realization`` (labelled ``(z, y, x)`` volumes of
    voxel side ``voxel_nm`` nm) side by side as cubes; written atomically to ``path`` (PNG). The
    legend names the solid "solid" and has no graphite entry when neither volume has graphite."""
    from matplotlib.patches import Patch

    fig, axes = _figure(1, 2, figsize=(10, 5.6))
    _draw_cube(axes[0], image, "image", voxel_nm)
    _draw_cube(axes[1], realization, "model realization", voxel_nm)
    labels = legend_labels(image, realization)
    handles = [Patch(color=CUBE_RGBA[k][:3], label=labels[k]) for k in (2, 1) if k in labels]
    handles.append(Patch(facecolor="white", edgecolor="0.5", label=labels[0]))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return _save(fig, path)


def _scalars(result, path) -> Path:
    fig, axes = _figure(2, 5, figsize=(17, 6.5))
    for ax, (name, phase, unit) in zip(axes.ravel(), SCALARS):
        rows = [r for r in result.rows if r.descriptor == name and r.phase == phase]
        x = np.arange(len(rows))
        mean = np.array([r.mean for r in rows])
        err = np.array([[r.mean - r.min for r in rows], [r.max - r.mean for r in rows]])
        colour = "tab:red" if phase == "pore" else "tab:blue"
        ax.bar(x, np.nan_to_num(mean), yerr=np.nan_to_num(err), color=colour, alpha=0.45, capsize=4,
               label=f"model (n = {result.n}): mean, [min, max]")
        for xi, r in zip(x, rows):
            ok = r.consistent
            ax.plot(xi, r.image, "o", ms=7, mfc="k" if ok else "none", mec="k" if ok else "red", mew=1.5)
        ax.set_xticks(x, [f"{r.voxel_nm:g} nm" for r in rows])
        ax.set_title(f"{name} ({phase}) [{unit}]", fontsize=9)
        finite = [v for r in rows for v in (r.min, r.max, r.image) if np.isfinite(v)]
        if finite:
            lo, hi = min(finite), max(finite)
            pad = 0.15 * (hi - lo) if hi > lo else 0.1 * abs(hi) + 1e-12
            ax.set_ylim(lo - pad if name not in ("volume_fraction",) else 0, hi + pad)
    axes[0, 0].plot([], [], "o", mfc="k", mec="k", label="image (consistent)")
    axes[0, 0].plot([], [], "o", mfc="none", mec="red", label="image (not consistent)")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle("image vs model per resolution (cf. paper Fig. 5)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def _curves(result, path, kind: str) -> Path:
    factors = list(result.curves)
    fig, axes = _figure(1, len(factors), figsize=(5 * len(factors), 4), squeeze=False)
    for ax, f in zip(axes[0], factors):
        c = result.curves[f]
        if kind == "cpsd":
            x = c["cpsd"]["r_nm"]
            series = [(c["cpsd"][ph], ph, "tab:blue" if ph == "solid" else "tab:red") for ph in ("solid", "pore")]
            ax.set(xlabel="r [nm]", ylabel="CPSD(r)")
        else:
            x = c["two_point"]["h_nm"]
            series = [(c["two_point"], "solid", "tab:blue")]
            ax.set(xlabel="h [nm]", ylabel="C(h) − V²")
            ax.axhline(0, color="0.7", lw=0.8)
        for s, ph, colour in series:
            ax.fill_between(x, s["min"], s["max"], color=colour, alpha=0.25, lw=0, label=f"model {ph}: [min, max]")
            ax.plot(x, s["mean"], "--", color=colour, lw=1, label=f"model {ph}: mean")
            ax.plot(x, s["image"], "-", color="k" if ph == "solid" else "0.35", lw=1.4, label=f"image {ph}")
        if kind == "cpsd":  # the radius grid runs far beyond the largest pore: stop where every curve has vanished
            top = np.max([np.maximum(s["max"], s["image"]) for s, _, _ in series], axis=0)
            above = np.nonzero(np.asarray(top) > 0.005)[0]
            if above.size and above[-1] + 2 < len(x):
                ax.set_xlim(0, x[above[-1] + 2])
        ax.set_title(f"{c['voxel_nm']:g} nm voxels", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("continuous pore size distribution (cf. paper Fig. 6)" if kind == "cpsd"
                 else "centred two-point coverage of the solid (cf. paper Fig. 7)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def save_figures(result, out_dir) -> list[Path]:
    """Write the four PNGs (module docstring) of a :class:`ValidationResult` into ``out_dir``;
    ``fig1_cubes.png`` only when the result holds the volumes (a result read back from JSON does not)."""
    out = Path(out_dir)
    paths = [_scalars(result, out / "fig5_scalars.png"), _curves(result, out / "fig6_cpsd.png", "cpsd"),
             _curves(result, out / "fig7_two_point.png", "two_point")]
    if result.image_labels is not None and result.realization_labels is not None:
        paths.append(plot_cubes(result.image_labels, result.realization_labels, result.voxel_nm,
                                out / "fig1_cubes.png"))
    return paths
