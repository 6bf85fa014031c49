"""Plots: figures are made, labelled with units, and saved as PNG and SVG."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from particlesnn import InputError, plots


def table(d, image=None, nm=True, ps=0.5):
    d = np.asarray(d, float)
    df = pd.DataFrame({"eq_diameter_px": d / ps, "length_px": 1.2 * d / ps,
                       "width_px": d / ps, "area_px2": math.pi * (d / ps) ** 2 / 4,
                       "height_max_nm": d / 3, "touches_border": np.zeros(d.size, bool)})
    if nm:
        df["eq_diameter_nm"], df["length_nm"], df["width_nm"] = d, 1.2 * d, d
        df["area_nm2"] = math.pi * d ** 2 / 4
    if image is not None:
        df["image"] = image
    return df


def labels(fig):
    ax = fig.axes[0]
    return ax.get_xlabel(), ax.get_ylabel()


def test_diameter_histogram_with_lognormal_and_units():
    rng = np.random.default_rng(0)
    d = rng.lognormal(math.log(5), 0.3, 500)
    fig = plots.diameter_histogram(table(d))
    assert labels(fig)[0].endswith("(nm)")
    ax = fig.axes[0]
    assert len(ax.lines) == 1  # the log-normal curve
    # curve scaled to counts: its area ~ n x bin width
    x, y = ax.lines[0].get_data()
    counts = sum(p.get_height() for p in ax.patches)
    width = ax.patches[0].get_width()
    assert np.trapezoid(y, x) == pytest.approx(counts * width, rel=0.05)
    assert counts == 500
    fpx = plots.diameter_histogram(table(d, nm=False))
    assert labels(fpx)[0].endswith("(px)")


def test_scatter_height_set_group_and_save(tmp_path):
    rng = np.random.default_rng(1)
    a = table(rng.lognormal(1.5, 0.2, 100), image="a")
    b = table(rng.lognormal(1.8, 0.2, 80), image="b")
    both = pd.concat([a, b], ignore_index=True)
    f1 = plots.length_width_scatter(both)
    assert labels(f1) == ("Width (nm)", "Length (nm)")
    f2 = plots.height_histogram(both)
    assert labels(f2)[0] == "Height (max) (nm)"
    f3 = plots.set_histograms(both)
    leg = [t.get_text() for t in f3.axes[0].get_legend().get_texts()]
    assert leg == ["a (n = 100)", "b (n = 80)", "all (n = 180)"]
    f4 = plots.group_histograms(both, {"a": "ctrl", "b": "heated"})
    leg = [t.get_text() for t in f4.axes[0].get_legend().get_texts()]
    assert leg == ["ctrl (n = 100)", "heated (n = 80)"]
    assert len(plots.size_histogram(both).axes[0].get_legend().get_texts()) == 3
    assert len(plots.size_histogram(a).axes[0].lines) == 1  # one image: log-normal curve
    paths = plots.save(f3, tmp_path / "sub" / "set")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in paths[1].read_bytes()[:500]


def test_many_images_get_one_legend_entry(tmp_path):
    import warnings

    rng = np.random.default_rng(2)
    many = pd.concat([table(rng.lognormal(1.5, 0.2, 30), image=f"img{k:02d}") for k in range(50)],
                     ignore_index=True)
    fig = plots.set_histograms(many)
    leg = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert leg == ["50 images, one outline each", "all (n = 1500)"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied" with a 50-name legend
        plots.save(fig, tmp_path / "many")


def test_empty_and_bad_inputs():
    fig = plots.diameter_histogram(table([]))
    assert labels(fig)[1] == "Count"
    with pytest.raises(InputError):
        plots.set_histograms(table([1.0, 2.0]))
    with pytest.raises(InputError):
        plots.diameter_histogram(pd.DataFrame({"x": [1.0]}))
