"""Every ```python block of README.md and docs/*.md runs (issue #18).

The blocks of one file run in order in one namespace (later blocks continue earlier ones),
which starts with ``labels`` (a 32^3 realization at 80 nm) and ``labels_batch`` (two of
them), the names the docs use for "your volume". A block preceded by the line
``<!-- no-test -->`` is skipped (kept for the rare block too heavy for the test suite).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?:python|py)[ \t]*\n(.*?)^```", re.S | re.M)
SKIP = "<!-- no-test -->"


def blocks(path: Path) -> list[tuple[int, str]]:
    """``(line, code)`` of each python block of ``path`` that is not marked ``<!-- no-test -->``."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        if before == SKIP:
            continue
        out.append((text[: m.start()].count("\n") + 1, m.group(1)))
    return out


def test_fence_parser():
    md = "a\n```python\nx = 1\n```\n<!-- no-test -->\n```python\nraise SystemExit\n```\n```bash\nls\n```\n"
    p = Path(__file__).with_name("_tmp_doc_parser.md")
    try:
        p.write_text(md)
        assert blocks(p) == [(2, "x = 1\n")]
    finally:
        p.unlink()


@pytest.fixture(scope="module")
def volume():
    import jax
    import numpy as np

    from jaxcba import CBAParams, simulate

    # Table 2 with small graphite (tests/helpers.py): the paper's grains (mean half-axis 2 um) are
    # larger than this 2.56 um window, and calibrate's stage 1 refuses fewer than 5 particles.
    p = CBAParams.paper().replace(lambda_x=1.5e-8, alpha1=80.0, alpha2=400.0, gamma=2.0)
    vols = [np.asarray(simulate(p, (32, 32, 32), 80.0, jax.random.key(s))) for s in (0, 1)]
    return vols[0], np.stack(vols)


def _cases():
    for f in FILES:
        if blocks(f):
            yield pytest.param(f, id=f.relative_to(ROOT).as_posix())


@pytest.mark.slow
@pytest.mark.parametrize("path", list(_cases()))
def test_code_blocks_run(path, volume, monkeypatch, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    labels, labels_batch = volume
    namespace = {"__name__": "__doc_example__", "labels": labels, "labels_batch": labels_batch}
    for line, code in blocks(path):
        try:
            exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
        except Exception as exc:  # noqa: BLE001 - report the block
            pytest.fail(f"{path.relative_to(ROOT)} block at line {line} fails: {type(exc).__name__}: {exc}")


def test_api_reference_is_current():
    """docs/api.md is what docs/make_api.py renders from today's signatures and docstrings
    (regenerate with ``python docs/make_api.py``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_api", ROOT / "docs" / "make_api.py")
    make_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_api)
    assert (ROOT / "docs" / "api.md").read_text(encoding="utf-8") == make_api.render(), \
        "docs/api.md is stale: run python docs/make_api.py"
