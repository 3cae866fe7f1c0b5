"""The Fig. 1-style cube picture of `jaxcba validate`: a two-phase image (no graphite) is drawn with
the legend "solid" / "pore", without a graphite entry; with graphite the three CBA phases."""

import numpy as np

from jaxcba.validate import _figures, plot_cubes


def _legend(monkeypatch, tmp_path, image, realization):
    seen = {}
    save = _figures._save

    def spy(fig, path):
        seen["labels"] = [t.get_text() for t in fig.legends[0].get_texts()]
        return save(fig, path)

    monkeypatch.setattr(_figures, "_save", spy)
    path = plot_cubes(image, realization, 10000.0, tmp_path / "cubes.png")
    assert path.stat().st_size > 1000
    return seen["labels"]


def test_two_phase_legend_says_solid_and_has_no_graphite(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 2, (16, 16, 16)).astype(np.uint8) for _ in range(2))
    labels = _legend(monkeypatch, tmp_path, a, b)
    assert labels == ["solid", "pore (transparent)"]


def test_three_phase_legend_names_graphite_and_carbon_black(monkeypatch, tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, (16, 16, 16)).astype(np.uint8)
    b = rng.integers(0, 3, (16, 16, 16)).astype(np.uint8)  # graphite in the realization only still counts
    labels = _legend(monkeypatch, tmp_path, a, b)
    assert labels == ["graphite", "carbon black + binder", "pore (transparent)"]
