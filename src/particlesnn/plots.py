"""Histograms and scatter plots of particle measures (matplotlib, no pyplot state).

Every function returns a :class:`matplotlib.figure.Figure` drawn with the Agg canvas (safe in
servers and threads: no global pyplot figures are created); :func:`save` writes it as PNG and
SVG.  Axis labels carry the unit: nm when the particle table has ``_nm`` columns for every
particle, px otherwise (see :func:`particlesnn.stats.length_unit`).  The contour overlay on the
image lives elsewhere.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats as sst

from particlesnn import stats
from particlesnn.errors import InputError

__all__ = ["diameter_histogram", "length_width_scatter", "height_histogram", "set_histograms",
           "group_histograms", "size_histogram", "save"]

_NAMES = {"eq_diameter": "Equivalent-circle diameter", "length": "Length",
          "width": "Width", "feret_max": "Max Feret diameter", "height_max": "Height (max)",
          "height_mean": "Height (mean)", "area": "Area", "perimeter": "Perimeter"}


#: Overlaid histograms with more series than this get one legend entry for all of them.
MAX_LEGEND = 12


def _figure(size=(6.0, 4.2)) -> Figure:
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _col(particles: pd.DataFrame, measure: str) -> tuple[str, str]:
    """(column, axis label with unit) of a measure in a particle table."""
    unit = stats.length_unit(particles)
    c = stats.column(particles, measure, unit)
    if c is None:
        raise InputError(None, f"particle table has no column for {measure!r}")
    if measure.startswith("height"):
        u = c.rsplit("_", 1)[-1]
        u = "a.u." if u == "au" else u
    elif measure == "area":
        u = f"{unit}²"
    else:
        u = unit
    return c, f"{_NAMES.get(measure, measure)} ({u})"


def _values(particles: pd.DataFrame, col: str, include_border: bool) -> np.ndarray:
    p = stats.select(particles, include_border=include_border)
    v = p[col].to_numpy(float)
    return v[np.isfinite(v)]


def _bins(values: Sequence[np.ndarray], bins: Any) -> np.ndarray | Any:
    allv = np.concatenate([np.asarray(v, float) for v in values]) if values else np.zeros(0)
    if isinstance(bins, (int, np.integer)) or not isinstance(bins, str) or allv.size == 0:
        return bins if allv.size else 10
    return np.histogram_bin_edges(allv, bins=bins)


def diameter_histogram(particles: pd.DataFrame, *, measure: str = "eq_diameter",
                       bins: Any = "auto", lognormal: bool = True,
                       include_border: bool = False, title: str | None = None) -> Figure:
    """Histogram (counts) of a diameter-like measure, with the fitted log-normal density
    scaled to counts (:func:`particlesnn.stats.fit_lognormal`) and its parameters in the legend.
    Border-touching particles are left out unless ``include_border``."""
    col, label = _col(particles, measure)
    v = _values(particles, col, include_border)
    fig = _figure()
    ax = fig.add_subplot()
    edges = _bins([v], bins)
    counts, edges, _ = ax.hist(v, bins=edges, color="#4C72B0", alpha=0.75, edgecolor="white",
                               label=f"particles (n = {v.size})")
    if lognormal and v.size >= 2:
        f = stats.fit_lognormal(v)
        if np.isfinite(f["mu"]):
            x = np.linspace(max(edges[0], 1e-9), edges[-1], 300)
            width = float(np.mean(np.diff(edges)))
            pdf = sst.lognorm.pdf(x, f["sigma"], 0, np.exp(f["mu"]))
            unit = label[label.rfind("(") + 1:-1]
            ax.plot(x, pdf * v.size * width, color="#C44E52", lw=2,
                    label=(f"log-normal: median {f['median']:.3g} {unit}, "
                           f"σ(ln d) {f['sigma']:.3f}"))
    ax.set_xlabel(label)
    ax.set_ylabel("Count")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return fig


def length_width_scatter(particles: pd.DataFrame, *, include_border: bool = False,
                         title: str | None = None) -> Figure:
    """Scatter of min-area-rectangle length against width, with the line length = width."""
    lc, llab = _col(particles, "length")
    wc, wlab = _col(particles, "width")
    p = stats.select(particles, include_border=include_border)
    L, W = p[lc].to_numpy(float), p[wc].to_numpy(float)
    fig = _figure((5.0, 5.0))
    ax = fig.add_subplot()
    ax.scatter(W, L, s=10, alpha=0.6, color="#4C72B0", label=f"particles (n = {L.size})")
    if L.size:
        hi = float(np.nanmax(np.concatenate([L, W]))) * 1.05
        ax.plot([0, hi], [0, hi], color="grey", lw=1, ls="--", label="length = width")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
    ax.set_xlabel(wlab)
    ax.set_ylabel(llab)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return fig


def height_histogram(particles: pd.DataFrame, *, measure: str = "height_max",
                     bins: Any = "auto", include_border: bool = False,
                     title: str | None = None) -> Figure:
    """Histogram of particle heights above the local substrate (``height_max`` or
    ``height_mean``), in the height unit of the table."""
    col, label = _col(particles, measure)
    v = _values(particles, col, include_border)
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(v, bins=_bins([v], bins), color="#55A868", alpha=0.8, edgecolor="white",
            label=f"particles (n = {v.size})")
    ax.set_xlabel(label)
    ax.set_ylabel("Count")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return fig


def _overlay(series: Mapping[Any, np.ndarray], label: str, bins: Any, joint: bool,
             density: bool, title: str | None) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    edges = _bins(list(series.values()), bins)
    named = len(series) <= MAX_LEGEND  # a legend of 50 names hides the plot: one entry then
    for name, v in series.items():
        if v.size == 0:  # nothing to draw (and a density of no values is undefined)
            continue
        ax.hist(v, bins=edges, histtype="step", lw=1.5 if named else 0.8, density=density,
                label=f"{name} (n = {v.size})" if named else None,
                color=None if named else "tab:blue", alpha=1.0 if named else 0.4)
    if not named:
        ax.plot([], [], color="tab:blue", alpha=0.4, lw=0.8,
                label=f"{sum(v.size > 0 for v in series.values())} images, one outline each")
    if joint and len(series) > 1:
        allv = np.concatenate(list(series.values()))
        ax.hist(allv, bins=edges, histtype="stepfilled", alpha=0.2, color="black",
                density=density, label=f"all (n = {allv.size})")
    ax.set_xlabel(label)
    ax.set_ylabel("Probability density" if density else "Count")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return fig


def set_histograms(particles: pd.DataFrame, *, measure: str = "eq_diameter",
                   bins: Any = "auto", density: bool = True, include_border: bool = False,
                   title: str | None = None) -> Figure:
    """Overlaid per-image histograms (outlines) and the joint one (filled) for a set of images;
    ``particles`` needs an ``image`` column.  ``density=True`` normalises each histogram so that
    images with different counts compare."""
    if "image" not in particles.columns:
        raise InputError(None, "particle table for a set needs an 'image' column")
    col, label = _col(particles, measure)
    series = {name: _values(sub, col, include_border)
              for name, sub in particles.groupby("image", sort=False)}
    return _overlay(series, label, bins, True, density, title)


def group_histograms(particles: pd.DataFrame, groups: pd.DataFrame | Mapping[Any, Any], *,
                     measure: str = "eq_diameter", bins: Any = "auto", density: bool = True,
                     include_border: bool = False, title: str | None = None) -> Figure:
    """Overlaid histograms per group of images (``groups``: image -> group, see
    :func:`particlesnn.stats.groups_from_table`)."""
    col, label = _col(particles, measure)
    g = stats.groups_from_table(groups)
    if "image" not in particles.columns:
        raise InputError(None, "particle table needs an 'image' column to be grouped")
    gs = {str(k): v for k, v in g.items()}
    missing = sorted({str(i) for i in particles["image"].unique()} - set(gs))
    if missing:
        raise InputError(None, f"no group given for image(s): {', '.join(missing[:5])}")
    lab = particles["image"].map(lambda i: gs[str(i)])
    series = {name: _values(particles[lab == name], col, include_border)
              for name in dict.fromkeys(g.values())}
    return _overlay(series, label, bins, False, density, title)


def size_histogram(particles: pd.DataFrame, *, measure: str = "eq_diameter",
                   bins: Any = "auto", include_border: bool = False,
                   title: str | None = None) -> Figure:
    """The size histogram that fits the table: :func:`set_histograms` (per-image outlines and
    the joint histogram) when an ``image`` column names several images, else
    :func:`diameter_histogram` with its log-normal fit."""
    if "image" in particles.columns and particles["image"].nunique() > 1:
        return set_histograms(particles, measure=measure, bins=bins,
                              include_border=include_border, title=title)
    return diameter_histogram(particles, measure=measure, bins=bins,
                              include_border=include_border, title=title)


def save(fig: Figure, path_without_ext: str | Path, *, dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``<path>.png`` (``dpi``) and ``<path>.svg``; return both paths.
    Parent folders are created."""
    base = Path(path_without_ext)
    base.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "svg"):
        p = base.with_name(base.name + "." + ext)
        fig.savefig(p, dpi=dpi if ext == "png" else None)
        out.append(p)
    return out
