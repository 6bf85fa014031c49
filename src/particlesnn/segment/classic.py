"""Classic baselines: one global height threshold ("flooding") and distance-transform watershed.

These re-create what SPM users do today in WSxM ("flooding") or Gwyddion ("mark grains by
threshold"): every pixel above one height is particle, connected regions are particles. The
watershed variant additionally splits touching particles along the ridges of the distance
transform of the thresholded mask.

Input: a levelled height map (or any 2D image) with the particles bright. Non-finite pixels are
treated as background. Output: :class:`particlesnn.segment.Segmentation` with consecutive labels
and score 1.0 for every particle.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, segmentation as sksegmentation

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.segment import Segmentation, keep_labels

THRESHOLD_METHODS = ("otsu", "li", "triangle", "yen", "mean")

_EIGHT = np.ones((3, 3), dtype=bool)


def _as_array(z: HeightMap | np.ndarray) -> tuple[np.ndarray, Any]:
    """The float64 data of ``z`` and its source (for error messages)."""
    if isinstance(z, HeightMap):
        data, source = z.data, z.source
    else:
        data, source = z, None
    data = np.asarray(data)
    if data.ndim != 2:
        raise InputError(source, f"expected a 2D image, got shape {data.shape}")
    if data.size == 0:
        raise InputError(source, "empty image")
    data = data.astype(np.float64, copy=False)
    if not np.isfinite(data).any():
        raise InputError(source, "image has no finite values")
    return data, source


def threshold_level(z: HeightMap | np.ndarray, method: str = "otsu") -> float:
    """The automatic global threshold of a height map.

    Parameters
    ----------
    z : HeightMap or (rows, cols) array
        Levelled map, particles bright. Non-finite pixels are ignored.
    method : {"otsu", "li", "triangle", "yen", "mean"}
        scikit-image threshold rule applied to the finite values.

    Returns
    -------
    float
        The level in the units of ``z`` (nm for heights).
    """
    data, source = _as_array(z)
    values = data[np.isfinite(data)]
    if method not in THRESHOLD_METHODS:
        raise InputError(source, f"unknown threshold method {method!r}; use one of {THRESHOLD_METHODS}")
    if values.min() == values.max():
        return float(values.max())
    fn = {
        "otsu": filters.threshold_otsu,
        "li": filters.threshold_li,
        "triangle": filters.threshold_triangle,
        "yen": filters.threshold_yen,
        "mean": filters.threshold_mean,
    }[method]
    return float(fn(values))


def _foreground(data: np.ndarray, level: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(data) & (data > level)


def _relabel_min_area(labels: np.ndarray, min_area_px: int) -> np.ndarray:
    """Drop regions smaller than ``min_area_px`` pixels and renumber 1..n (int32)."""
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return np.zeros(labels.shape, dtype=np.int32)
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    return keep_labels(labels, areas >= max(int(min_area_px), 1))



def _regions(z, method: str, level: float | None, min_area_px: int):
    """The image as an array, the height level used (``level``, else ``threshold_level`` by
    ``method``) and its 8-connected regions above it of at least ``min_area_px`` px, labelled
    1..n."""
    data, _ = _as_array(z)
    lvl = threshold_level(data, method) if level is None else float(level)
    labels, _ = ndi.label(_foreground(data, lvl), structure=_EIGHT)
    return data, lvl, _relabel_min_area(labels, min_area_px)

def threshold(
    z: HeightMap | np.ndarray,
    *,
    level: float | None = None,
    method: str = "otsu",
    min_area_px: int = 4,
) -> Segmentation:
    """Global-threshold ("flooding") segmentation.

    Every pixel strictly above ``level`` is particle; 8-connected regions are particles;
    regions smaller than ``min_area_px`` pixels are dropped.

    Parameters
    ----------
    z : HeightMap or (rows, cols) array
        Levelled map with particles bright (heights in nm, or grey levels).
    level : float, optional
        Manual threshold in the units of ``z`` (nm for heights). ``None``: automatic by ``method``.
    method : {"otsu", "li", "triangle", "yen", "mean"}
        Automatic threshold rule (used only when ``level`` is None).
    min_area_px : int
        Smallest particle kept, in pixels.

    Returns
    -------
    Segmentation
        ``labels`` int32 consecutive, ``scores`` all 1.0, ``info`` with ``method``, ``level``,
        ``threshold_method``.
    """
    _, lvl, labels = _regions(z, method, level, min_area_px)
    n = int(labels.max())
    return Segmentation(
        labels=labels,
        scores=np.ones(n, dtype=np.float64),
        info={"method": "threshold", "level": lvl,
              "threshold_method": None if level is not None else method,
              "min_area_px": int(min_area_px)},
    )


def watershed(
    z: HeightMap | np.ndarray,
    *,
    level: float | None = None,
    method: str = "otsu",
    min_distance_px: int | None = None,
    min_area_px: int = 4,
    smooth_px: float = 1.0,
    compactness: float = 0.0,
) -> Segmentation:
    """Threshold, then split touching particles by a distance-transform watershed.

    The thresholded mask (as in :func:`threshold`) is turned into its Euclidean distance
    transform (px); local maxima of the (slightly smoothed) distance (the largest value
    within ``min_distance_px`` px; a plateau of such pixels is one marker) become markers
    (every region gets at least one), and the
    watershed of the negated distance, restricted to the mask, assigns each pixel to a marker.

    Parameters
    ----------
    z : HeightMap or (rows, cols) array
        Levelled map with particles bright.
    level : float, optional
        Manual threshold in the units of ``z``; ``None``: automatic by ``method``.
    method : {"otsu", "li", "triangle", "yen", "mean"}
        Automatic threshold rule.
    min_distance_px : int, optional
        Smallest distance between two particle centres, in px. ``None``: half the median
        particle radius of the thresholded regions (their maximal distance-transform value),
        at least 2 px.
    min_area_px : int
        Smallest particle kept, in pixels (also applied after splitting).
    smooth_px : float
        Gaussian sigma (px) applied to the distance transform before finding maxima (0 = none);
        it suppresses spurious maxima on ragged outlines.
    compactness : float
        skimage watershed compactness (0 = classic watershed).

    Returns
    -------
    Segmentation
        ``labels`` int32 consecutive, ``scores`` 1.0, ``info`` with ``level`` and
        ``min_distance_px`` used.
    """
    data, lvl, regions = _regions(z, method, level, min_area_px)
    n_regions = int(regions.max())
    info = {"method": "watershed", "level": lvl,
            "threshold_method": None if level is not None else method,
            "min_area_px": int(min_area_px)}
    if n_regions == 0:
        info["min_distance_px"] = min_distance_px
        return Segmentation(labels=regions, scores=np.zeros(0), info=info)
    mask = regions > 0
    dist = ndi.distance_transform_edt(mask)
    if min_distance_px is None:
        radii = np.zeros(n_regions + 1)
        np.maximum.at(radii, regions[mask], dist[mask])
        min_distance_px = max(2, int(round(0.5 * float(np.median(radii[1:])))))
    min_distance_px = max(1, int(min_distance_px))
    d = ndi.gaussian_filter(dist, smooth_px) if smooth_px > 0 else dist
    d = np.where(mask, d, 0.0)
    # markers: pixels equal to the maximum of d within a (2 min_distance + 1) window
    # (8-connected plateaus of such pixels form one marker)
    size = 2 * min_distance_px + 1
    peak = (d > 0) & (d >= ndi.maximum_filter(d, size=size, mode="constant", cval=0.0))
    markers, _ = ndi.label(peak, structure=_EIGHT)
    markers = markers.astype(np.int32, copy=False)
    # every region gets at least one marker (its distance maximum)
    has = np.zeros(n_regions + 1, dtype=bool)
    has[regions[markers > 0]] = True
    missing = np.flatnonzero(~has[1:]) + 1
    if missing.size:
        is_missing = np.zeros(n_regions + 1, dtype=bool)
        is_missing[missing] = True
        rr, cc = np.nonzero(is_missing[regions])
        lab = regions[rr, cc]
        order = np.lexsort((-d[rr, cc], lab))           # by region, highest distance first
        first = order[np.r_[True, lab[order][1:] != lab[order][:-1]]]
        nxt = int(markers.max()) + 1
        markers[rr[first], cc[first]] = np.arange(nxt, nxt + first.size, dtype=np.int32)
    labels = sksegmentation.watershed(-d, markers, mask=mask, compactness=compactness)
    labels = _relabel_min_area(labels, min_area_px)
    n = int(labels.max())
    info["min_distance_px"] = min_distance_px
    return Segmentation(labels=labels, scores=np.ones(n, dtype=np.float64), info=info)


__all__ = ["threshold", "watershed", "threshold_level", "THRESHOLD_METHODS"]
