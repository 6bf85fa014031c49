"""Double-tip ghosts: find and drop the copies a second tip apex adds to an SPM image.

A tip with two apexes images every particle twice: the particle, and a slightly lower copy
(the "ghost") shifted by the same vector everywhere in the image. A detector outlines the ghosts
as particles of their own, which inflates counts and shrinks mean sizes.

The test here needs no model of the tip: among pairs of nearby particles, take the vector from
the higher one to the lower one (highest point of each). Random neighbours give vectors spread in all directions; a
double tip gives many pairs sharing one vector, always pointing from the higher to the lower
particle (a regular array of equal particles gives a shared vector too, but in both directions
equally often, and is left alone; on a height gradient it gives one direction, but in chains:
a ghost has no ghost of its own). The lower member of each such pair is a ghost.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from particlesnn.matching import label_areas, label_centroids
from particlesnn.segment import Segmentation, keep_labels

#: Defaults of :func:`find_ghosts`.
MIN_PAIRS = 10
MIN_FRACTION = 0.15
MIN_ASYMMETRY = 4.0
MAX_CHAINS = 0.25


def find_ghosts(labels: np.ndarray, data: np.ndarray, *, min_pairs: int = MIN_PAIRS,
                min_fraction: float = MIN_FRACTION, min_asymmetry: float = MIN_ASYMMETRY,
                max_chains: float = MAX_CHAINS, max_offset_d: float = 3.0) -> dict | None:
    """Look for double-tip ghosts among the particles of a label image.

    Parameters
    ----------
    labels : (rows, cols) int array, 0 = background, k = particle k.
    data : (rows, cols) float array, the levelled height map (particles up), any unit.
    min_pairs, min_fraction : a shared offset must be found for at least ``min_pairs`` pairs
        and ``min_fraction`` of the particles.
    min_asymmetry : the shared offset must point from the higher to the lower particle at
        least this many times more often than the other way round.
    max_chains : a ghost has no ghost of its own: at most this fraction of the pairs may share a
        particle that is the lower member of one pair and the higher of another. A row of
        particles on a slight height gradient (a grating on a residual tilt) makes such chains.
    max_offset_d : pairs are sought up to this many median particle diameters apart.

    Returns
    -------
    None when no double tip is seen, else a dict: ``offset_px`` (row, col) from a particle
    to its ghost (px), ``pairs`` (how many pairs share it), ``reverse`` (pairs with the
    opposite sense), ``ghosts`` (label ids of the ghosts, sorted).
    """
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    if n < 2 * min_pairs:
        return None
    area = label_areas(labels).astype(float)
    ids = np.flatnonzero(area > 0) + 1
    if ids.size < 2 * min_pairs:
        return None
    a = area[ids - 1]
    cen = label_centroids(labels)[ids - 1]
    d = 2.0 * np.sqrt(a / np.pi)
    radius = max(6.0, max_offset_d * float(np.median(d)))
    pairs = cKDTree(cen).query_pairs(radius, output_type="ndarray")
    need = max(min_pairs, min_fraction * ids.size)
    if len(pairs) < need:
        return None
    # the ghost's visible part is shifted by partial overlap: tolerance grows with size
    tol = max(1.5, 0.25 * float(np.median(d)))
    # quick test first, sense ignored: is any offset shared by enough pairs?
    vec = cen[pairs[:, 1]] - cen[pairs[:, 0]]
    flip = (vec[:, 0] < 0) | ((vec[:, 0] == 0) & (vec[:, 1] < 0))
    vec[flip] *= -1
    if _best_support(vec, tol)[0] < need:
        return None
    peak = np.asarray(ndi.maximum(np.asarray(data), labels, ids), float)
    hi = np.where(peak[pairs[:, 0]] >= peak[pairs[:, 1]], pairs[:, 0], pairs[:, 1])
    lo = np.where(hi == pairs[:, 0], pairs[:, 1], pairs[:, 0])
    vec = cen[lo] - cen[hi]
    _, mode, vt = _best_support(vec, tol)
    members = np.asarray(vt.query_ball_point(mode, tol), int)
    reverse = len(vt.query_ball_point(-mode, tol))
    n_pairs = len(members)
    if (n_pairs < need or n_pairs < min_asymmetry * max(reverse, 1)
            or np.hypot(*mode) < 1.0):
        return None
    chained = np.intersect1d(hi[members], lo[members])
    if chained.size > max_chains * n_pairs:
        return None
    ghosts = np.unique(ids[lo[members]])
    # a particle that is the higher member of a shared pair is a particle, not a ghost
    ghosts = np.setdiff1d(ghosts, ids[hi[members]])
    return {"offset_px": [float(mode[0]), float(mode[1])], "pairs": int(n_pairs),
            "reverse": int(reverse), "ghosts": ghosts.astype(int)}


def _best_support(vec: np.ndarray, tol: float, top: int = 8):
    """The offset shared by most vectors (within ``tol``): (support, mean offset, KD-tree).

    Only the vectors of the ``top`` densest 3 x 3 windows of a histogram with bins of ``tol``
    are tried as centres (a disc of radius ``tol`` fits in such a window, so a shared offset's
    window is among the densest); this keeps crowded images (thousands of pairs) fast.
    """
    vt = cKDTree(vec)
    idx = np.floor((vec - vec.min(axis=0)) / tol).astype(np.int64)
    shape = tuple(int(v) for v in idx.max(axis=0) + 1)
    hist = np.zeros(shape)
    np.add.at(hist, (idx[:, 0], idx[:, 1]), 1.0)
    win = ndi.uniform_filter(hist, size=3, mode="constant")
    cand = np.zeros(len(vec), bool)
    for f in np.argsort(win.ravel())[::-1][:top]:
        r, c = divmod(int(f), shape[1])
        cand |= (np.abs(idx[:, 0] - r) <= 1) & (np.abs(idx[:, 1] - c) <= 1)
    centres = np.flatnonzero(cand)
    support = vt.query_ball_point(vec[centres], tol, return_length=True)
    best = int(centres[int(np.argmax(support))])
    members = vt.query_ball_point(vec[best], tol)
    return int(np.max(support)), vec[members].mean(axis=0), vt


def drop_ghosts(seg: Segmentation, data: np.ndarray, **kwargs) -> Segmentation:
    """``seg`` without its double-tip ghosts (:func:`find_ghosts`), renumbered 1..n.

    ``info["double_tip"]`` holds the offset, the pair counts and how many ghosts were dropped,
    and a line is added to ``info["warnings"]``; ``seg`` is returned as it is when no double
    tip is seen.
    """
    found = find_ghosts(seg.labels, data, **kwargs)
    if found is None or not len(found["ghosts"]):
        return seg
    keep = np.ones(seg.count + 1, bool)
    keep[found["ghosts"]] = False
    dy, dx = found["offset_px"]
    info = dict(seg.info)
    info["double_tip"] = {"offset_px": [round(dy, 2), round(dx, 2)], "pairs": found["pairs"],
                          "reverse_pairs": found["reverse"], "ghosts_dropped": len(found["ghosts"])}
    info["warnings"] = list(info.get("warnings", [])) + [
        f"double tip: {len(found['ghosts'])} ghost copies shifted by ({dy:.1f}, {dx:.1f}) px "
        "(rows, cols) were dropped; rescan with a clean tip if you can"]
    return Segmentation(keep_labels(seg.labels, keep), np.asarray(seg.scores)[keep[1:]], info)
