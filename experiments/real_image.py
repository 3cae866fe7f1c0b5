"""A real, publicly shipped 3D image end to end: preprocess -> calibrate -> validate (issue #17).

The image: ``spam/data/snow/snow.tif`` inside the wheel of **spam** 0.9.1 on PyPI ("Software for
the Practical Analysis of Materials", Andò, Roubin, Pinzón, Stamati et al., GPL-3.0-or-later):
a 100 x 100 x 100 uint16 X-ray micro-tomography volume of snow (ice grains in air), the grey
values of the scan (no segmentation). spam loads it with ``spam.datasets.loadSnow()``. The
package records no voxel size (the TIFF has no resolution tag and its ImageJ header no
spacing), so the physical voxel is an input here: ``--voxel-nm`` (default 10 000 nm = 10 um, a
nominal value of the order of snow micro-CT scans). Every length the model fits (1/eta, 1/theta,
S_V, r_max, r_min) scales linearly with it; fractions, constrictivity and tortuosity do not.

Steps (each a subprocess of the ``jaxcba`` command line, as a user would type them):

1. **fetch**: ``pip download spam==0.9.1 --no-deps -d CACHE`` (once; the wheel is kept in
   ``--cache``) and the TIFF read from inside the wheel; or ``--image`` (the TIFF, or a wheel);
2. **segment** (NumPy/SciPy, :func:`segment`): a 3 x 3 x 3 median filter against the scan's
   noise, then Otsu's threshold (:func:`otsu_threshold`, the cut that maximises the
   between-class variance of the grey-value histogram); ice (bright, above the threshold) =
   solid, air = pore; written as 0 / 255 uint8 (``OUT/segmented.tif``);
3. ``jaxcba preprocess`` with ``--labels 0=0,255=1 --closing-radius 0``: labels 0 pore / 1 solid,
   detached ice components removed (all but the largest), no closing (it would fill real pores);
4. ``jaxcba calibrate``: a two-phase image, so the sub-model without graphite (lambda_X = 0:
   stages 2 and 3); intervals by the delta method (and by ``--bootstrap B`` if given);
5. ``jaxcba validate`` with ``--n`` realizations, down-sampled x2 and x4 (paper Section 3.3);
6. r_max, r_min and constrictivity at full resolution for the image and validate's own
   realizations, through ``describe``'s radius grid (:func:`full_resolution_radii`): a cross-check
   of validate's rows at the image's resolution (validate's grid is the data's own too, rounded up
   to a power of two voxels; the two agree digit for digit).

Writes under ``--out``: ``segmented.tif``, ``labels.tif``, ``params.json``,
``calibrate_report.json``, ``val/`` (validate's files), the logs of the three commands, and
``real_image.json`` (source, segmentation, times, exit codes, parameters with their intervals,
the validation summary and the descriptors outside the model's range). ``--docs-img DIR``
also writes small PNGs ``real_*.png`` there (a slice of the scan and of its segmentation, and
validate's four figures, down-scaled).

Usage:  python experiments/real_image.py --cache ~/.cache/jaxcba-real --out results/real
                                         [--image snow.tif] [--voxel-nm 10000] [--n 5]
                                         [--downsample 2,4] [--seed 0] [--bootstrap B]
                                         [--estimator masked|cutout] [--docs-img docs/img]
Never run by the tests (it downloads); tests/test_real_image.py tests the segmentation and
the wheel reading on synthetic data.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

PACKAGE = "spam"
VERSION = "0.9.1"
MEMBER = "spam/data/snow/snow.tif"
LICENCE = "GPL-3.0-or-later"
DEFAULT_VOXEL_NM = 10_000.0
#: SHA-256 of ``MEMBER`` in spam 0.9.1's wheel, the file docs/real_image.md reports on.
TIF_SHA256 = "5c3ebd9b0435d19621cc7dc07f85382b1acee14f25f571873ba0146d4086a3c9"


# ---------------------------------------------------------------------------------------------
# fetch
# ---------------------------------------------------------------------------------------------
def read_wheel_member(wheel: Path, member: str = MEMBER) -> bytes:
    """The bytes of ``member`` inside the wheel (a zip file); ``ValueError`` if it is not there."""
    with zipfile.ZipFile(wheel) as zf:
        if member not in zf.namelist():
            raise ValueError(f"wheel {wheel} has no {member}")
        return zf.read(member)


def fetch(cache: Path, image: Path | None = None) -> tuple[Path, dict]:
    """The scan as a TIFF file on disk, and where it came from.

    ``image`` a ``.tif``: used as it is; a ``.whl``: ``MEMBER`` read from it. Otherwise the
    wheel of spam ``VERSION`` in ``cache`` is used, downloaded with pip (``--no-deps``) if
    missing. The TIFF is written to ``cache/snow.tif``."""
    cache.mkdir(parents=True, exist_ok=True)
    source = {"package": PACKAGE, "version": VERSION, "member": MEMBER, "licence": LICENCE}
    if image is not None and image.suffix.lower() in (".tif", ".tiff"):
        source.update(file=str(image), origin="--image")
        data = image.read_bytes()
        target = image
    else:
        if image is not None:
            wheel = image
            source["origin"] = "--image (wheel)"
        else:
            wheels = sorted(cache.glob(f"{PACKAGE}-{VERSION}-*.whl"))
            source["origin"] = "cached wheel (pip download --no-deps)"
            if not wheels:
                cmd = [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}", "--no-deps", "-d", str(cache)]
                print("fetch:", " ".join(cmd), flush=True)
                subprocess.run(cmd, check=True)
                wheels = sorted(cache.glob(f"{PACKAGE}-{VERSION}-*.whl"))
                if not wheels:
                    raise OSError(f"pip download left no {PACKAGE}-{VERSION} wheel in {cache}")
                source["origin"] = "pip download --no-deps"
            wheel = wheels[0]
        data = read_wheel_member(wheel)
        target = cache / "snow.tif"
        target.write_bytes(data)
        source.update(wheel=wheel.name, wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest())
    source["tif_sha256"] = hashlib.sha256(data).hexdigest()
    source["same_file_as_docs"] = source["tif_sha256"] == TIF_SHA256
    if not source["same_file_as_docs"]:
        print(f"warning: {target} is not the file docs/real_image.md reports on (SHA-256 differs)", file=sys.stderr)
    return target, source


# ---------------------------------------------------------------------------------------------
# segment
# ---------------------------------------------------------------------------------------------
def otsu_threshold(values, nbins: int = 256) -> float:
    """Otsu's threshold of ``values``: the bin edge that maximises the between-class variance
    w0 w1 (mu0 - mu1)^2 of the ``nbins``-bin histogram (class 0 at or below, class 1 above).
    ``ValueError`` for fewer than two distinct values."""
    x = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        raise ValueError(f"values are constant ({lo:g}): no threshold separates two phases")
    counts, edges = np.histogram(x, bins=nbins, range=(lo, hi))
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(counts)[:-1].astype(np.float64)          # class 0 = bins 0..k, cut at edges[k + 1]
    w1 = x.size - w0
    s0 = np.cumsum(counts * centres)[:-1]
    mu0 = s0 / np.maximum(w0, 1)
    mu1 = (float(np.sum(counts * centres)) - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[1 + int(np.argmax(between))])


def segment(grey, *, median: int = 3, threshold: float | None = None) -> tuple[np.ndarray, float]:
    """Two-phase segmentation of a grey-value volume: a ``median``-voxel cubic median filter
    (1: none), then ``grey > threshold`` (Otsu's on the filtered volume when ``threshold`` is
    None). Returns (labels uint8 in {0, 1}: 1 = bright phase = solid, the threshold used)."""
    from scipy import ndimage

    g = np.asarray(grey, dtype=np.float64)
    if g.ndim != 3:
        raise ValueError(f"grey volume has {g.ndim} dimensions; allowed: 3 (z, y, x)")
    if median > 1:
        g = ndimage.median_filter(g, size=int(median))
    t = otsu_threshold(g) if threshold is None else float(threshold)
    return (g > t).astype(np.uint8), t


# ---------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------
def _jaxcba(args: list[str], log: Path) -> tuple[int, float, str]:
    """Run ``python -m jaxcba ARGS``; stdout + stderr go to ``log``. Returns (rc, seconds, stdout)."""
    cmd = [sys.executable, "-m", "jaxcba", *args]
    print("$ jaxcba " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    log.write_text(proc.stdout + ("\n--- stderr ---\n" + proc.stderr if proc.stderr else ""))
    print(proc.stdout.rstrip() or "(no output)", flush=True)
    if proc.returncode:
        print(proc.stderr.rstrip(), file=sys.stderr, flush=True)
    print(f"  -> exit {proc.returncode} in {dt:.0f} s", flush=True)
    return proc.returncode, dt, proc.stdout


def full_resolution_radii(labels, voxel_nm: float, params_path, n: int, seed: int) -> dict:
    """r_max, r_min and constrictivity of solid and pore at the image's own resolution, from
    ``jaxcba.descriptors.report.describe`` (radius grid up to the phase's largest distance to its
    boundary),
    for the image and for the same ``n`` realizations ``jaxcba validate`` draws
    (``jax.random.split(jax.random.key(seed), n)[i]``, the fit loaded by ``load_fit``).
    A cross-check of validate's rows at the image's resolution.
    Returns ``{"image": {phase: {...}}, "model": [{phase: {...}}, ...]}`` [nm]."""
    import jax

    from jaxcba import simulate
    from jaxcba.descriptors.report import describe
    from jaxcba.validate import load_fit

    def radii(lab):
        rep = describe(lab, voxel_nm, ("solid", "pore"), ("cpsd", "constrictivity"))
        return {ph.phase: {k: (None if getattr(ph, k) is None or not np.isfinite(getattr(ph, k)) else
                               float(getattr(ph, k))) for k in ("r_max", "r_min", "constrictivity")}
                for ph in rep.phases}

    params, _ = load_fit(params_path)
    keys = jax.random.split(jax.random.key(seed), n)
    out = {"image": radii(np.asarray(labels)), "model": []}
    for i in range(n):
        out["model"].append(radii(np.asarray(simulate(params, labels.shape, voxel_nm, keys[i]))))
    return out


def _slice_figure(grey, labels, threshold, path: Path):
    """The middle z-slice of the scan (before the median filter), the grey-value histogram with
    the threshold, and the same slice of the labels, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = grey.shape[0] // 2
    fig, ax = plt.subplots(1, 3, figsize=(9.6, 3.2), dpi=90)
    ax[0].imshow(grey[z], cmap="gray")
    ax[0].set_title(f"scan, slice z = {z}")
    ax[1].hist(grey.ravel(), bins=128, color="0.4")
    ax[1].axvline(threshold, color="r")
    ax[1].set_title(f"grey values, threshold {threshold:.0f}")
    ax[1].set_yticks([])
    ax[2].imshow(labels[z], cmap="Blues", vmin=0, vmax=1.4)
    ax[2].set_title("segmented: ice (blue) / air")
    for a in (ax[0], ax[2]):
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    from PIL import Image

    buf.seek(0)
    with Image.open(buf) as im:                    # a 128-entry palette: a third of the size
        im.convert("RGB").quantize(colors=128).save(path, optimize=True)


def _shrink_png(src: Path, dst: Path, max_px: int = 1200, colours: int = 96):
    """Copy a PNG at most ``max_px`` wide (Lanczos resampling) with a ``colours``-entry palette,
    so that a docs figure stays legible at a few tens of KB (Pillow, matplotlib's own dependency);
    the original where that is smaller and narrow enough."""
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        if im.width > max_px:
            im = im.resize((max_px, round(im.height * max_px / im.width)), Image.LANCZOS)
        im.quantize(colors=colours, dither=Image.Dither.NONE).save(dst, optimize=True)
    if dst.stat().st_size > src.stat().st_size and Image.open(src).width <= max_px:
        dst.write_bytes(src.read_bytes())          # the original is the smaller file


def main(argv=None) -> int:
    """Exit status: the largest of the commands' (calibrate's 1 = not converged is carried on to
    validate); 2 with one line on stderr for bad input (a missing or foreign file, a failed download)."""
    try:
        return _main(argv)
    except (ValueError, OSError, subprocess.CalledProcessError) as exc:
        print(f"real_image: error: {exc}", file=sys.stderr)
        return 2


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, required=True, help="folder for the downloaded wheel and the TIFF")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--image", type=Path, default=None, help="the scan (.tif) or spam's wheel (.whl) instead of pip")
    ap.add_argument("--voxel-nm", type=float, default=DEFAULT_VOXEL_NM, help="physical voxel side [nm] (default 10000)")
    ap.add_argument("--median", type=int, default=3, help="median filter size [voxels] before the threshold (1: none)")
    ap.add_argument("--threshold", type=float, default=None, help="grey threshold (default: Otsu's)")
    ap.add_argument("--n", type=int, default=5, help="realizations in validate (default 5)")
    ap.add_argument("--downsample", default="2,4", help="validate's down-sampling factors (default 2,4)")
    ap.add_argument("--seed", type=int, default=0, help="seed of calibrate's stage 3 and of validate")
    ap.add_argument("--bootstrap", type=int, default=0, help="calibrate --bootstrap B (0: delta method only)")
    ap.add_argument("--estimator", choices=("masked", "cutout"), default="masked",
                    help="calibrate's stage 2 estimator (default masked, calibrate's own default)")
    ap.add_argument("--docs-img", type=Path, default=None, help="also write small real_*.png there")
    a = ap.parse_args(argv)

    import tifffile

    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    tif, source = fetch(a.cache, a.image)
    grey = tifffile.imread(tif)
    source.update(shape=list(grey.shape), dtype=str(grey.dtype), grey_min=int(grey.min()), grey_max=int(grey.max()))
    labels, thr = segment(grey, median=a.median, threshold=a.threshold)
    print(f"segment: {grey.shape} {grey.dtype}, median {a.median}, threshold {thr:.1f}"
          f" ({'given' if a.threshold is not None else 'Otsu'}): solid (ice) fraction {labels.mean():.4f}", flush=True)
    seg = out / "segmented.tif"
    tifffile.imwrite(seg, (labels * 255).astype(np.uint8))

    v = f"{a.voxel_nm:g}"
    lab, params, report, val = out / "labels.tif", out / "params.json", out / "calibrate_report.json", out / "val"
    steps = {}
    rc, dt, txt = _jaxcba(["preprocess", str(seg), "--voxel-nm", v, "--labels", "0=0,255=1", "--closing-radius", "0",
                           "--out", str(lab), "--report", "--json"], out / "preprocess.log")
    steps["preprocess"] = {"rc": rc, "seconds": round(dt, 1)}
    try:
        steps["preprocess"]["report"] = json.loads(txt)
    except ValueError:
        pass
    if rc:
        return rc
    cal = ["calibrate", str(lab), "--voxel-nm", v, "--out", str(params), "--report", str(report),
           "--seed", str(a.seed), "--estimator", a.estimator, "--no-progress"]
    if a.bootstrap:
        cal += ["--bootstrap", str(a.bootstrap), "--bootstrap-dir", str(out / "bootstrap")]
    rc, dt, _ = _jaxcba(cal, out / "calibrate.log")
    steps["calibrate"] = {"rc": rc, "seconds": round(dt, 1)}
    if rc not in (0, 1):          # 1: not converged - params.json is still written and worth validating
        return rc
    rc, dt, _ = _jaxcba(["validate", str(lab), "--voxel-nm", v, "--params", str(params), "--n", str(a.n),
                         "--downsample", a.downsample, "--seed", str(a.seed), "--out", str(val)], out / "validate.log")
    steps["validate"] = {"rc": rc, "seconds": round(dt, 1)}

    fit = json.loads(params.read_text())
    summary = {"source": source, "voxel_nm": a.voxel_nm,
               "segmentation": {"median": a.median, "threshold": thr, "threshold_kind": "given" if a.threshold is not None
                                else "otsu", "solid_fraction": float(labels.mean())},
               "estimator": a.estimator, "steps": steps, "params": fit}
    vj = val / "validation.json"
    if vj.exists():
        vres = json.loads(vj.read_text())
        summary["validation"] = {"summary": vres.get("summary"), "counts": vres.get("counts"),
                                 "outside": [{k: r.get(k) for k in ("descriptor", "phase", "factor", "image", "mean",
                                                                     "min", "max", "z")}
                                             for r in vres.get("rows", []) if not r.get("consistent")]}
    if steps["validate"]["rc"] == 0:
        t0 = time.perf_counter()
        radii = full_resolution_radii(tifffile.imread(lab), a.voxel_nm, params, a.n, a.seed)
        summary["full_resolution_radii"] = radii
        steps["full_resolution_radii"] = {"rc": 0, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"full resolution ({a.voxel_nm:g} nm), describe's radius grid: image | model mean (min - max), n = {a.n}")
        for ph in ("solid", "pore"):
            for k in ("r_max", "r_min", "constrictivity"):
                m = [r[ph][k] for r in radii["model"] if r[ph][k] is not None]
                img = radii["image"][ph][k]
                print(f"  {ph:<5} {k:<15} {img if img is None else f'{img:.4g}':>10} | "
                      + (f"{np.mean(m):.4g} ({min(m):.4g} - {max(m):.4g})" if m else "-"), flush=True)
    (out / "real_image.json").write_text(json.dumps(summary, indent=1, allow_nan=False, default=str))

    if a.docs_img is not None:
        a.docs_img.mkdir(parents=True, exist_ok=True)
        _slice_figure(np.asarray(grey, np.float64), labels, thr, a.docs_img / "real_segmentation.png")
        for name in ("fig1_cubes", "fig5_scalars", "fig6_cpsd", "fig7_two_point"):
            if (val / f"{name}.png").exists():
                _shrink_png(val / f"{name}.png", a.docs_img / f"real_{name}.png")
    print(f"wrote {out / 'real_image.json'}")
    return max(s["rc"] for s in steps.values())


if __name__ == "__main__":
    sys.exit(main())
