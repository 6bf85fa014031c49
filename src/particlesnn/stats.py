"""Statistics over the particles of one image, of a set of images, and of groups of images.

Input: particle tables from :func:`particlesnn.measure.measure` (for a set, concatenated with an
``image`` column naming each particle's image).  No file I/O here.

Conventions
-----------
* Length unit: nm when every particle has ``_nm`` columns (scale known), else px; every result
  says which (``length_unit``) and every key carries the unit (``eq_diameter_nm_mean``).
* Counting (``count``, densities, ``coverage``) uses every particle that passes the size
  filters, border-touching ones included (they are on the surface); **size statistics** exclude
  particles touching the image border by default (``include_border=False``): their size is cut.
* Size statistics of a measure ``m``: ``m_mean``, ``m_median``, ``m_std`` (sample standard
  deviation, ddof = 1), ``m_sem`` (= std / sqrt(n)), ``m_n``.
* ``d_mid_surface`` ("mid-surface diameter") is our reading of the paper's term: the diameter of
  the circle whose area is the mean projected area of the particles,
  ``sqrt(4 mean(area) / pi) = sqrt(mean(d_eq^2))``; ``PAPER.md`` does not define it, so we use the
  standard area-weighted mean diameter D[2,0].  ``d_mean`` +/- ``d_std`` is the "mean projected-area
  diameter +/- std": the mean and standard deviation of the particles' equivalent-circle
  (projected-area) diameters ``d_eq = sqrt(4 area / pi)``.
* Log-normal fit of the diameters: ``scipy.stats.lognorm.fit(d, floc=0)``; ``mu``/``sigma`` are
  the mean and standard deviation of ln(d) (d in the length unit), median ``exp(mu)``, mode
  ``exp(mu - sigma^2)``, mean ``exp(mu + sigma^2/2)``.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sst

from particlesnn.errors import InputError

__all__ = [
    "SIZE_MEASURES", "length_unit", "column", "select", "describe", "fit_lognormal",
    "summarize_image", "summarize_set", "group_table", "compare_groups", "groups_from_paths",
    "groups_from_table",
]

#: Size measures summarised (base names; the unit suffix is added per table).
SIZE_MEASURES = ("eq_diameter", "area", "length", "width", "feret_max", "feret_min",
                 "perimeter", "height_max", "height_mean", "volume", "aspect_ratio",
                 "circularity")


def length_unit(particles: pd.DataFrame) -> str:
    """``"nm"`` if every particle has a finite ``eq_diameter_nm``, else ``"px"``."""
    if "eq_diameter_nm" in particles.columns and len(particles) \
            and bool(np.isfinite(particles["eq_diameter_nm"].to_numpy(float)).all()):
        return "nm"
    if "eq_diameter_nm" in particles.columns and not len(particles):
        return "nm"
    return "px"


def column(particles: pd.DataFrame, measure: str, unit: str | None = None) -> str | None:
    """Name of the column holding ``measure`` (base name, e.g. ``"eq_diameter"``) in ``unit``.

    Lengths: ``<m>_nm``/``<m>_px``; areas ``area_nm2``/``area_px2``; heights ``height_*_<z>``
    (whatever height unit the table has); volume ``volume_nm3`` or ``volume_px2<z>``; unitless
    ``aspect_ratio``, ``circularity``.  Returns ``None`` when the table lacks it.
    """
    unit = unit or length_unit(particles)
    cols = particles.columns
    if measure in cols:
        return measure
    if measure == "area":
        c = f"area_{unit}2"
        return c if c in cols else None
    if measure == "volume":
        if unit == "nm" and "volume_nm3" in cols:
            return "volume_nm3"
        cand = [c for c in cols if c.startswith("volume_px2")]
        return cand[0] if cand else None
    if measure.startswith("height_"):
        cand = [c for c in cols if c.startswith(measure + "_")]
        return cand[0] if cand else None
    c = f"{measure}_{unit}"
    return c if c in cols else None


def select(particles: pd.DataFrame, *, include_border: bool = False,
           min_diameter: float | None = None, max_diameter: float | None = None,
           unit: str | None = None) -> pd.DataFrame:
    """Rows kept for size statistics.

    Size filters act on the equivalent-circle diameter in ``unit`` (nm or px, default the
    table's :func:`length_unit`); border-touching particles are dropped unless
    ``include_border``.
    """
    unit = unit or length_unit(particles)
    keep = np.ones(len(particles), dtype=bool)
    dcol = column(particles, "eq_diameter", unit)
    if (min_diameter is not None or max_diameter is not None) and dcol is None:
        raise InputError(None, "particle table has no eq_diameter column for the size filter")
    if min_diameter is not None:
        keep &= particles[dcol].to_numpy(float) >= min_diameter
    if max_diameter is not None:
        keep &= particles[dcol].to_numpy(float) <= max_diameter
    if not include_border and "touches_border" in particles.columns:
        keep &= ~particles["touches_border"].to_numpy(bool)
    return particles[keep]


def describe(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """``n``, ``mean``, ``median``, ``std`` (ddof 1), ``sem`` (std / sqrt(n)), ``min``, ``max``.

    Non-finite values are ignored.  std/sem are NaN for fewer than 2 values.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    nan = float("nan")
    if n == 0:
        return dict(n=0, mean=nan, median=nan, std=nan, sem=nan, min=nan, max=nan)
    std = float(v.std(ddof=1)) if n > 1 else nan
    return dict(n=n, mean=float(v.mean()), median=float(np.median(v)), std=std,
                sem=std / math.sqrt(n) if n > 1 else nan, min=float(v.min()), max=float(v.max()))


def fit_lognormal(d: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Maximum-likelihood log-normal fit of positive sizes ``d`` (any length unit).

    Returns ``mu``, ``sigma`` (mean and std of ln d; ``scipy.stats.lognorm`` with ``floc=0``:
    shape = sigma, scale = exp(mu)), ``median`` = exp(mu), ``mode`` = exp(mu - sigma^2),
    ``mean`` = exp(mu + sigma^2/2) (in the unit of ``d``), ``n``, and the Kolmogorov-Smirnov
    statistic and p-value against the fitted law (``ks_stat``, ``ks_p``; the p-value is
    optimistic because the parameters come from the same data).  Non-positive and non-finite
    values are ignored; fewer than 2 values give NaNs.
    """
    v = np.asarray(d, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    nan = float("nan")
    if v.size < 2 or np.all(v == v[0]):
        return dict(mu=nan, sigma=nan, median=nan, mode=nan, mean=nan, n=int(v.size),
                    ks_stat=nan, ks_p=nan)
    s, _, scale = sst.lognorm.fit(v, floc=0)
    mu, sigma = math.log(scale), float(s)
    ks = sst.kstest(v, "lognorm", args=(sigma, 0, scale))
    return dict(mu=mu, sigma=sigma, median=math.exp(mu), mode=math.exp(mu - sigma ** 2),
                mean=math.exp(mu + sigma ** 2 / 2), n=int(v.size), ks_stat=float(ks.statistic),
                ks_p=float(ks.pvalue))


def _image_area(image_area_nm2: float | None, image_shape_px: Sequence[int] | None,
                pixel_size: Sequence[float] | None) -> tuple[float | None, float | None]:
    """(area in nm^2 or None, area in px^2 or None)."""
    a_px = None
    if image_shape_px is not None:
        r, c = (int(v) for v in image_shape_px)
        if r <= 0 or c <= 0:
            raise InputError(None, f"image shape must be positive, got {image_shape_px}")
        a_px = float(r * c)
    a_nm = None
    if image_area_nm2 is not None:
        a_nm = float(image_area_nm2)
        if not a_nm > 0:
            raise InputError(None, f"image area must be > 0 nm^2, got {image_area_nm2}")
    elif a_px is not None and pixel_size is not None:
        a_nm = a_px * float(pixel_size[0]) * float(pixel_size[1])
    return a_nm, a_px


def _size_block(sized: pd.DataFrame, unit: str, *, lognormal: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in SIZE_MEASURES:
        c = column(sized, m, unit)
        if c is None:
            continue
        for k, v in describe(sized[c].to_numpy(float)).items():
            out[f"{c}_{k}"] = v
    dcol = column(sized, "eq_diameter", unit)
    acol = column(sized, "area", unit)
    if dcol is not None:
        d = sized[dcol].to_numpy(float)
        dd = describe(d)
        out[f"d_mean_{unit}"] = dd["mean"]
        out[f"d_std_{unit}"] = dd["std"]
        out[f"d_sem_{unit}"] = dd["sem"]
        if acol is not None and len(sized):
            out[f"d_mid_surface_{unit}"] = math.sqrt(4.0 * float(sized[acol].mean()) / math.pi)
        else:
            out[f"d_mid_surface_{unit}"] = (float(np.sqrt(np.mean(d ** 2))) if d.size
                                            else float("nan"))
        if lognormal:
            for k, v in fit_lognormal(d).items():
                with_unit = k in ("median", "mode", "mean")
                out[f"lognorm_{k}_{unit}" if with_unit else f"lognorm_{k}"] = v
    return out


def summarize_image(particles: pd.DataFrame, image_area_nm2: float | None = None,
                    image_shape_px: Sequence[int] | None = None, *,
                    pixel_size: Sequence[float] | None = None, include_border: bool = False,
                    min_diameter: float | None = None, max_diameter: float | None = None,
                    lognormal: bool = True, unit: str | None = None,
                    spatial_test: bool = True) -> dict[str, Any]:
    """Statistics of one image's particles.

    Parameters
    ----------
    particles : DataFrame from :func:`particlesnn.measure.measure`.
    image_area_nm2 : scanned area in nm^2 (for densities per nm^2), or
    image_shape_px : (rows, cols) of the image; with ``pixel_size`` (x, y nm/px, default
        ``particles.attrs["pixel_size"]``) it gives the area in nm^2 too.
    include_border : include border-touching particles in size statistics (default no).
    min_diameter, max_diameter : keep only particles whose equivalent-circle diameter (in the
        table's length unit, nm or px) lies in this range -- for counting and sizes alike.
    lognormal : add the log-normal fit of the equivalent-circle diameters.
    spatial_test : add the Clark-Evans ratio (:func:`clark_evans`) of the particle centres
        (needs ``image_shape_px``; a set's joint statistics pool images of different
        densities, so :func:`summarize_set` gives it per image only).
    unit : force the length unit (``"px"`` or ``"nm"``) instead of :func:`length_unit`; a set
        with some images of unknown scale is summarised in px throughout.

    Returns
    -------
    dict with ``length_unit``; ``count`` (all particles after the size filters), ``n_border``,
    ``n_sized`` (particles in the size statistics); ``density_per_100nm2``, ``density_per_um2``
    and ``coverage`` (fraction of the image area covered by particles, all particles) when the
    area in nm^2 is known, ``density_per_mpx`` (per 10^6 px) and ``coverage`` when the shape in
    px is known, each density with its counting error ``<density>_poisson`` (sqrt(count) over
    the area, 1 sigma; :func:`summarize_set` adds ``<density>_sem`` to a set's joint
    statistics: the standard error of its images' densities, which includes how patchy the
    sample is); per size measure ``<column>_{n,mean,median,std,sem,min,max}``;
    ``d_mean_<u>``, ``d_std_<u>``, ``d_sem_<u>``, ``d_mid_surface_<u>``; ``lognorm_mu``,
    ``lognorm_sigma``, ``lognorm_median_<u>``, ``lognorm_mode_<u>``, ``lognorm_mean_<u>``,
    ``lognorm_n``, ``lognorm_ks_stat``, ``lognorm_ks_p``; ``nn_distance_<u>_{n,mean,median,std,
    sem,min,max}`` (nearest-neighbour distances of the particles after the size filters,
    border ones included) and, when the image's shape (and for nm its pixel size) is known,
    ``clark_evans_r``, ``clark_evans_p`` (:func:`clark_evans`). Missing areas give no
    density keys.
    """
    if not isinstance(particles, pd.DataFrame):
        raise InputError(None, "particles must be a pandas DataFrame")
    unit = unit or length_unit(particles)
    if unit not in ("nm", "px"):
        raise InputError(None, f"length unit must be 'nm' or 'px', got {unit!r}")
    if pixel_size is None:
        pixel_size = particles.attrs.get("pixel_size")
    a_nm, a_px = _image_area(image_area_nm2, image_shape_px, pixel_size)
    counted = select(particles, include_border=True, min_diameter=min_diameter,
                     max_diameter=max_diameter, unit=unit)
    sized = select(counted, include_border=include_border, unit=unit)
    out: dict[str, Any] = {"length_unit": unit, "count": int(len(counted)),
                           "n_border": int(counted["touches_border"].sum())
                           if "touches_border" in counted.columns else 0,
                           "n_sized": int(len(sized))}
    poisson = float(np.sqrt(len(counted)))  # counting error of the particle number, 1 sigma
    if a_nm is not None:
        out["image_area_nm2"] = a_nm
        out["density_per_100nm2"] = len(counted) / a_nm * 100.0
        out["density_per_um2"] = len(counted) / a_nm * 1e6
        out["density_per_100nm2_poisson"] = poisson / a_nm * 100.0
        out["density_per_um2_poisson"] = poisson / a_nm * 1e6
        if "area_nm2" in counted.columns and (unit == "nm" or not len(counted)):
            out["coverage"] = float(counted["area_nm2"].sum()) / a_nm
    if a_px is not None:
        out["image_area_px2"] = a_px
        out["density_per_mpx"] = len(counted) / a_px * 1e6
        out["density_per_mpx_poisson"] = poisson / a_px * 1e6
        if "coverage" not in out and "area_px2" in counted.columns:
            out["coverage"] = float(counted["area_px2"].sum()) / a_px
    out.update(_size_block(sized, unit, lognormal=lognormal))
    rect = None  # the image's sides in the length unit, for the Clark-Evans ratio
    if image_shape_px is not None and (unit == "px" or pixel_size is not None):
        r, c = (float(v) for v in image_shape_px)
        rect = (c, r) if unit == "px" else (c * float(pixel_size[0]), r * float(pixel_size[1]))
    out.update(_spatial_block(counted, unit, rect, test=spatial_test))
    return out


def clark_evans(nn_distances: np.ndarray, area: float, perimeter: float) -> dict[str, float]:
    """Clark-Evans aggregation ratio of the particle centres of one rectangular image, with
    Donnelly's edge correction, and its two-sided z-test p-value.

    ``nn_distances``: every particle's nearest-neighbour distance within the image (NaN ones
    are dropped; n = the rest); ``area``, ``perimeter``: the image's, in that length unit.
    ``R`` = mean distance / its expectation for a random (Poisson) pattern of the same density
    in the same rectangle, 0.5 sqrt(A/n) + (0.0514 + 0.041/sqrt(n)) P/n (Donnelly 1978; the
    second term accounts for neighbours hidden beyond the border): about 1 for random, below
    1 for clustered, above 1 for regular patterns (2 for a square lattice, 2.15 for a
    hexagonal one). ``p`` uses the standard error sqrt(0.0703 A/n^2 + 0.037 P sqrt(A/n^5)).
    NaN with fewer than 5 distances.
    """
    d = np.asarray(nn_distances, dtype=float)
    d = d[np.isfinite(d)]
    n = d.size
    if n < 5 or not area > 0:
        return {"r": float("nan"), "p": float("nan")}
    expected = 0.5 * math.sqrt(area / n) + (0.0514 + 0.041 / math.sqrt(n)) * perimeter / n
    se = math.sqrt(0.0703 * area / n ** 2 + 0.037 * perimeter * math.sqrt(area / n ** 5))
    z = (float(d.mean()) - expected) / se
    return {"r": float(d.mean()) / expected, "p": float(2.0 * sst.norm.sf(abs(z)))}


def _spatial_block(counted: pd.DataFrame, unit: str, rect: tuple[float, float] | None, *,
                   test: bool = True) -> dict[str, Any]:
    """Nearest-neighbour distances (``nn_distance_<u>_{n,mean,...}``) and, for one image of
    sides ``rect`` (width, height in ``unit``) when ``test``, the Clark-Evans ratio
    ``clark_evans_r`` and ``clark_evans_p`` (:func:`clark_evans`)."""
    col = f"nn_distance_{unit}"
    if col not in counted.columns:
        return {}
    d = counted[col].to_numpy(float)
    out: dict[str, Any] = {f"{col}_{k}": v for k, v in describe(d[np.isfinite(d)]).items()}
    if test and rect is not None:
        w, h = rect
        ce = clark_evans(d, w * h, 2.0 * (w + h))
        out["clark_evans_r"], out["clark_evans_p"] = ce["r"], ce["p"]
    return out


def _images_frame(images: pd.DataFrame | Mapping | None, names: Sequence[Any]) -> pd.DataFrame:
    """Normalise the per-image table: index = image, columns area_nm2 / rows / cols / pixel_x/y."""
    if images is None:
        return pd.DataFrame(index=pd.Index(list(names), name="image"))
    if isinstance(images, Mapping):
        images = pd.DataFrame.from_dict(images, orient="index")
        images.index.name = "image"
    else:
        images = images.copy()
        if "image" in images.columns:
            images = images.set_index("image")
    return images


def summarize_set(particles: pd.DataFrame, images: pd.DataFrame | Mapping | None = None, *,
                  include_border: bool = False, min_diameter: float | None = None,
                  max_diameter: float | None = None, lognormal: bool = True) -> dict[str, Any]:
    """Statistics per image and jointly over a set of images.

    Parameters
    ----------
    particles : concatenated particle tables with an ``image`` column.
    images : per-image table (DataFrame with an ``image`` column or index, or a dict
        image -> {field: value}) with, per image, ``area_nm2`` and/or ``rows`` and ``cols``
        (px) and optionally ``pixel_x``, ``pixel_y`` (nm/px).  Images without particles appear
        only here and count as zero.  Without it, densities and coverage are omitted.

    Returns
    -------
    dict: ``per_image`` (DataFrame, one row of :func:`summarize_image` per image, index image),
    ``joint`` (the same statistics over all particles together, with densities = total count /
    total area; the pooled size statistics equal those of the concatenated particles), and
    ``length_unit``.
    """
    if "image" not in particles.columns:
        raise InputError(None, "particle table for a set needs an 'image' column")
    # each image's scale comes from ``images`` alone: a set-level pixel size in the table's
    # attrs (the first image's, say) must not lend an uncalibrated image an area in nm^2
    particles = particles.copy(deep=False)
    particles.attrs = {k: v for k, v in particles.attrs.items() if k != "pixel_size"}
    names = list(dict.fromkeys(particles["image"].tolist()))
    imgs = _images_frame(images, names)
    all_names = list(dict.fromkeys(list(imgs.index) + names))
    unit = length_unit(particles)
    rows = []
    tot_nm, tot_px, have_nm, have_px = 0.0, 0.0, True, True
    groups = dict(iter(particles.groupby("image", sort=False)))  # one pass, not one per image
    empty = particles.iloc[0:0]
    for name in all_names:
        sub = groups.get(name, empty)
        info = imgs.loc[name] if name in imgs.index else pd.Series(dtype=object)
        a_nm = info.get("area_nm2") if "area_nm2" in info else None
        shape = (info["rows"], info["cols"]) if ("rows" in info and "cols" in info) else None
        pxs = (info["pixel_x"], info["pixel_y"]) if ("pixel_x" in info and "pixel_y" in info) \
            else None
        if a_nm is not None and not pd.notna(a_nm):
            a_nm = None
        if pxs is not None and not all(pd.notna(v) for v in pxs):
            pxs = None
        s = summarize_image(sub, a_nm, shape, pixel_size=pxs, include_border=include_border,
                            min_diameter=min_diameter, max_diameter=max_diameter,
                            lognormal=lognormal, unit=unit)
        if "image_area_nm2" in s:
            tot_nm += s["image_area_nm2"]
        else:
            have_nm = False
        if "image_area_px2" in s:
            tot_px += s["image_area_px2"]
        else:
            have_px = False
        s["image"] = name
        rows.append(s)
    per_image = pd.DataFrame(rows).set_index("image")
    joint = summarize_image(particles, tot_nm if have_nm and all_names else None,
                            None, include_border=include_border, min_diameter=min_diameter,
                            max_diameter=max_diameter, lognormal=lognormal, unit=unit,
                            spatial_test=False)
    if have_px and all_names:
        joint["image_area_px2"] = tot_px
        joint["density_per_mpx"] = joint["count"] / tot_px * 1e6
        if "coverage" not in joint:
            counted = select(particles, include_border=True, min_diameter=min_diameter,
                             max_diameter=max_diameter, unit=unit)
            joint["coverage"] = float(counted["area_px2"].sum()) / tot_px
    if have_px and all_names:
        joint["density_per_mpx_poisson"] = float(np.sqrt(joint["count"])) / tot_px * 1e6
    # how much the density varies from image to image: the standard error of the images'
    # densities (their spread, unlike the counting error, includes the sample's own patchiness)
    for key in ("density_per_um2", "density_per_100nm2", "density_per_mpx"):
        if key in joint and key in per_image.columns:
            d = per_image[key].to_numpy(dtype=float)
            d = d[np.isfinite(d)]
            if d.size >= 2:
                joint[f"{key}_sem"] = float(np.std(d, ddof=1) / np.sqrt(d.size))
    joint["n_images"] = len(all_names)
    return {"per_image": per_image, "joint": joint, "length_unit": unit}


def groups_from_table(mapping: pd.DataFrame | Mapping[Any, Any]) -> dict[Any, Any]:
    """image -> group from a dict, or from a DataFrame with columns ``image`` and ``group``
    (or else its first two columns: image, condition)."""
    if isinstance(mapping, Mapping):
        return dict(mapping)
    if isinstance(mapping, pd.DataFrame):
        if {"image", "group"} <= set(mapping.columns):
            return dict(zip(mapping["image"], mapping["group"]))
        if mapping.shape[1] >= 2:
            return dict(zip(mapping.iloc[:, 0], mapping.iloc[:, 1]))
    raise InputError(None, "groups must be a dict image -> group or a two-column table")


def groups_from_paths(paths: Sequence[str | Path]) -> dict[str, str]:
    """image -> group by folder: maps each path's stem to its parent folder's name."""
    return {Path(p).stem: Path(p).parent.name for p in paths}


def _grouped(particles: pd.DataFrame, groups: pd.DataFrame | Mapping[Any, Any]) -> pd.Series:
    if "image" not in particles.columns:
        raise InputError(None, "particle table needs an 'image' column to be grouped")
    g = groups_from_table(groups)
    missing = sorted({str(i) for i in particles["image"].unique()} - {str(k) for k in g})
    if missing:
        raise InputError(None, f"no group given for image(s): {', '.join(missing[:5])}")
    gs = {str(k): v for k, v in g.items()}
    return particles["image"].map(lambda i: gs[str(i)])


def group_table(particles: pd.DataFrame, groups: pd.DataFrame | Mapping[Any, Any], *,
                measures: Sequence[str] = ("eq_diameter", "length", "width", "height_max",
                                           "area"),
                include_border: bool = False, min_diameter: float | None = None,
                max_diameter: float | None = None,
                per_image: pd.DataFrame | None = None) -> pd.DataFrame:
    """Side-by-side table of groups: one row per group.

    Columns: ``length_unit`` (of the group: nm when all its particles have a scale, so a
    calibrated group is described in nm even when another group has no pixel size),
    ``n_images``, ``n_particles`` (sized particles), and for each measure column
    ``<col>_mean``, ``<col>_sem`` (over particles), ``<col>_std``, ``<col>_median``, plus
    ``<col>_image_mean_sem`` (SEM of the per-image means: the spread between images, the honest
    error when images are the replicates). The spacing: ``nn_distance_<u>_mean`` /
    ``_image_mean_sem`` (every particle after the size filters, border ones included, as in
    :func:`summarize_image`). With ``per_image`` (:func:`summarize_set`'s table, index image):
    ``count`` (every particle), ``density_per_um2`` (or ``density_per_mpx`` without a scale:
    the group's particles over its images' area), ``<density>_image_sem`` (SEM of its images'
    densities) and ``coverage`` (pooled over the images' area).
    """
    unit = length_unit(particles)
    grp = _grouped(particles, groups) if len(particles) else pd.Series(dtype=object)
    all_groups = list(dict.fromkeys(groups_from_table(groups).values()))
    rows = []
    for gname in all_groups:
        mine = particles[grp == gname] if len(particles) else particles
        u = length_unit(mine) if len(mine) else unit
        sub = select(mine, include_border=include_border, min_diameter=min_diameter,
                     max_diameter=max_diameter, unit=u)
        imgs_in_group = [k for k, v in groups_from_table(groups).items() if v == gname]
        row: dict[str, Any] = {"group": gname, "length_unit": u, "n_images": len(imgs_in_group),
                               "n_particles": int(len(sub))}
        for m in measures:
            c = column(particles, m, u)
            if c is None:
                continue
            d = describe(sub[c].to_numpy(float))
            for k in ("mean", "sem", "std", "median"):
                row[f"{c}_{k}"] = d[k]
            per_img = sub.groupby("image")[c].mean().to_numpy(float) if len(sub) else []
            row[f"{c}_image_mean_sem"] = describe(per_img)["sem"]
        c = column(particles, "nn_distance", u)
        if c is not None:
            counted = select(mine, include_border=True, min_diameter=min_diameter,
                             max_diameter=max_diameter, unit=u)
            row[f"{c}_mean"] = describe(counted[c].to_numpy(float))["mean"]
            per_img = counted.groupby("image")[c].mean().to_numpy(float) if len(counted) else []
            row[f"{c}_image_mean_sem"] = describe(per_img)["sem"]
        if per_image is not None and len(per_image):
            row.update(_group_density(per_image.loc[[i for i in imgs_in_group
                                                     if i in per_image.index]]))
        rows.append(row)
    out = pd.DataFrame(rows).set_index("group")
    out.attrs["length_unit"] = unit
    return out


def _group_density(pi: pd.DataFrame) -> dict[str, float]:
    """Count, density, its images' SEM and coverage of the images ``pi`` (rows of
    :func:`summarize_set`'s per-image table), pooled over their area."""
    out: dict[str, float] = {"count": int(pi["count"].sum())} if "count" in pi else {}
    for key, area in (("density_per_um2", "image_area_nm2"), ("density_per_mpx", "image_area_px2")):
        if key in pi and area in pi and len(pi) and pi[area].notna().all():
            a = pi[area].to_numpy(float)
            out[key] = float(pi["count"].sum() / a.sum() * 1e6)
            out[f"{key}_image_sem"] = describe(pi[key].to_numpy(float))["sem"]
            if "coverage" in pi and pi["coverage"].notna().all():
                out["coverage"] = float((pi["coverage"].to_numpy(float) * a).sum() / a.sum())
            break
    return out


def compare_groups(particles: pd.DataFrame, groups: pd.DataFrame | Mapping[Any, Any], *,
                   measure: str = "eq_diameter", include_border: bool = False,
                   min_diameter: float | None = None,
                   max_diameter: float | None = None) -> pd.DataFrame:
    """Two-sample tests of a size distribution between every pair of groups.

    ``groups``: image -> group (dict, or table, see :func:`groups_from_table`).  For each pair
    (a, b): ``measure`` (the column compared: in nm when every particle of both groups has a
    scale, else in px), ``n_a``, ``n_b``, ``mean_a``, ``mean_b`` (in the measure's unit), ``ks_stat``,
    ``ks_p`` (two-sided Kolmogorov-Smirnov, ``scipy.stats.ks_2samp``), ``mw_u``, ``mw_p``
    (two-sided Mann-Whitney U, ``scipy.stats.mannwhitneyu``).  Particles are treated as
    independent draws (p-values ignore image-to-image variation; see :func:`group_table`), and
    with more than two groups the p-values are not corrected for multiple comparisons.
    """
    unit = length_unit(particles)
    if column(particles, measure, unit) is None:
        raise InputError(None, f"particle table has no column for measure {measure!r}")
    grp = _grouped(particles, groups) if len(particles) else pd.Series(dtype=object)
    names = list(dict.fromkeys(groups_from_table(groups).values()))
    rows = []
    nan = float("nan")
    for a, b in itertools.combinations(names, 2):
        pair = particles[grp.isin([a, b])] if len(particles) else particles
        u = length_unit(pair) if len(pair) else unit
        c = column(particles, measure, u)
        p = select(pair, include_border=include_border, min_diameter=min_diameter,
                   max_diameter=max_diameter, unit=u)
        g = grp.loc[p.index] if len(p) else pd.Series(dtype=object)
        va, vb = (p.loc[g == n, c].to_numpy(float) for n in (a, b))
        va, vb = va[np.isfinite(va)], vb[np.isfinite(vb)]
        row = {"group_a": a, "group_b": b, "measure": c, "n_a": va.size, "n_b": vb.size,
               "mean_a": float(va.mean()) if va.size else nan,
               "mean_b": float(vb.mean()) if vb.size else nan}
        if va.size and vb.size:
            ks = sst.ks_2samp(va, vb)
            mw = sst.mannwhitneyu(va, vb, alternative="two-sided")
            row.update(ks_stat=float(ks.statistic), ks_p=float(ks.pvalue),
                       mw_u=float(mw.statistic), mw_p=float(mw.pvalue))
        else:
            row.update(ks_stat=nan, ks_p=nan, mw_u=nan, mw_p=nan)
        rows.append(row)
    cols = ["group_a", "group_b", "measure", "n_a", "n_b", "mean_a", "mean_b", "ks_stat",
            "ks_p", "mw_u", "mw_p"]
    out = pd.DataFrame(rows, columns=cols)
    out.attrs["length_unit"] = unit
    return out
