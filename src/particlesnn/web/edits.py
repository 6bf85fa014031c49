"""In-browser edits as pure functions over a label image.

Every function takes ``labels`` ((rows, cols) int32, 0 = background, 1..n consecutive) and
``scores`` ((n,) float) and returns new ``(labels, scores)`` with labels consecutive again.
Coordinates are image pixels in the convention of :mod:`particlesnn.polygons` (and of the SVG
overlay): ``x`` along columns, ``y`` along rows, origin at the image's top-left corner, pixel
``(r, c)`` spans ``[c, c+1] x [r, r+1]``; a pixel is inside a polygon when its centre is.

A manual particle gets score 1.0 (a person drew it).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line as draw_line

from particlesnn.errors import InputError
from particlesnn.polygons import polygon_mask as _poly_mask

ACTIONS = ("delete", "add", "redraw", "merge", "split")


def relabel(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make labels consecutive 1..n in order of their old value; scores follow their particle."""
    present = np.unique(labels)
    present = present[present > 0]
    lut = np.zeros(int(labels.max(initial=0)) + 1, dtype=np.int32)
    lut[present] = np.arange(1, present.size + 1, dtype=np.int32)
    new_scores = np.asarray(scores, dtype=float)[present - 1] if present.size else np.zeros(0)
    return lut[labels].astype(np.int32), new_scores


def _check_labels(labels: np.ndarray, ids, what: str = "particle") -> list[int]:
    n = int(labels.max(initial=0))
    out = []
    for k in ids:
        try:
            k = int(k)
        except (TypeError, ValueError):
            raise InputError(None, f"{what} id {k!r} is not an integer") from None
        if not 1 <= k <= n:
            raise InputError(None, f"no {what} {k} (image has {n})")
        out.append(k)
    return out


def polygon_mask(polygon, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie inside ``polygon`` ((k, 2) x, y px, corner convention)."""
    try:
        pts = np.asarray(polygon, dtype=float)
    except (TypeError, ValueError):
        raise InputError(None, "a polygon is a list of [x, y] points") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 3:
        raise InputError(None, "a polygon needs at least 3 points [x, y]")
    if not np.all(np.isfinite(pts)):
        raise InputError(None, "polygon has non-finite coordinates")
    return _poly_mask(pts, shape)


def delete(labels: np.ndarray, scores: np.ndarray, ids) -> tuple[np.ndarray, np.ndarray]:
    """Remove particles ``ids`` (their pixels become background)."""
    ids = _check_labels(labels, ids)
    if not ids:
        raise InputError(None, "delete needs at least one particle id")
    out = labels.copy()
    out[np.isin(out, ids)] = 0
    return relabel(out, scores)


def add(labels: np.ndarray, scores: np.ndarray, polygon) -> tuple[np.ndarray, np.ndarray]:
    """Add a particle drawn as ``polygon``; it takes only background pixels (never a neighbour's)."""
    mask = polygon_mask(polygon, labels.shape) & (labels == 0)
    if not mask.any():
        raise InputError(None, "the drawn polygon covers no free (background) pixel")
    out = labels.copy()
    n = int(out.max(initial=0))
    out[mask] = n + 1
    return relabel(out, np.append(np.asarray(scores, dtype=float), 1.0))


def redraw(labels: np.ndarray, scores: np.ndarray, label: int, polygon) -> tuple[np.ndarray, np.ndarray]:
    """Replace the outline of particle ``label`` by ``polygon`` (background and own pixels only)."""
    (k,) = _check_labels(labels, [label])
    mask = polygon_mask(polygon, labels.shape) & ((labels == 0) | (labels == k))
    if not mask.any():
        raise InputError(None, "the new border encloses no free pixel")
    out = labels.copy()
    out[out == k] = 0
    out[mask] = k
    sc = np.asarray(scores, dtype=float).copy()
    sc[k - 1] = 1.0
    return relabel(out, sc)


def merge(labels: np.ndarray, scores: np.ndarray, ids) -> tuple[np.ndarray, np.ndarray]:
    """Merge particles ``ids`` (two or more) into the first one; the gap between them is not filled."""
    ids = _check_labels(labels, ids)
    ids = list(dict.fromkeys(ids))
    if len(ids) < 2:
        raise InputError(None, "merge needs two different particles")
    out = labels.copy()
    keep = ids[0]
    out[np.isin(out, ids[1:])] = keep
    sc = np.asarray(scores, dtype=float).copy()
    sc[keep - 1] = float(np.max(sc[np.asarray(ids) - 1]))
    return relabel(out, sc)


def split(labels: np.ndarray, scores: np.ndarray, label: int, line) -> tuple[np.ndarray, np.ndarray]:
    """Cut particle ``label`` along a drawn polyline ``line`` ((k, 2) x, y px, k >= 2).

    The cut pixels (8-connected line, so the pieces are not 4-connected across it) are removed,
    the remaining pixels of the particle split into connected pieces (4-connectivity), and the
    cut pixels are given back to the nearest piece. The largest piece keeps ``label``.
    Raises :class:`InputError` when the line does not cut the particle in two.
    """
    (k,) = _check_labels(labels, [label])
    try:
        pts = np.asarray(line, dtype=float)
    except (TypeError, ValueError):
        raise InputError(None, "a split line is a list of [x, y] points") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 2 or not np.all(np.isfinite(pts)):
        raise InputError(None, "a split line needs at least 2 points [x, y]")
    rows, cols = labels.shape
    cut = np.zeros(labels.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        rr, cc = draw_line(int(np.floor(y0)), int(np.floor(x0)), int(np.floor(y1)), int(np.floor(x1)))
        ok = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
        cut[rr[ok], cc[ok]] = True
    own = labels == k
    pieces, n = ndi.label(own & ~cut)
    if n < 2:
        raise InputError(None, f"the line does not cut particle {k} in two")
    sizes = np.bincount(pieces.ravel())[1:]
    # give the cut pixels back to the nearest piece
    _, (ir, ic) = ndi.distance_transform_edt(pieces == 0, return_indices=True)
    filled = np.where(own, pieces[ir, ic], 0)
    order = np.argsort(-sizes) + 1  # piece ids, largest first
    out = labels.copy()
    sc = list(np.asarray(scores, dtype=float))
    nmax = int(labels.max(initial=0))
    for j, piece in enumerate(order):
        if j == 0:
            continue  # largest keeps label k
        nmax += 1
        out[filled == piece] = nmax
        sc.append(1.0)
    return relabel(out, np.asarray(sc))


def apply(labels: np.ndarray, scores: np.ndarray, edit: dict) -> tuple[np.ndarray, np.ndarray]:
    """Apply one edit given as JSON-like dict ``{"action": ..., ...}``.

    ``{"action": "delete", "labels": [k, ...]}``, ``{"action": "add", "polygon": [[x, y], ...]}``,
    ``{"action": "redraw", "label": k, "polygon": [...]}``, ``{"action": "merge", "labels": [a, b]}``,
    ``{"action": "split", "label": k, "line": [[x, y], ...]}``.
    """
    action = edit.get("action")
    if action == "delete":
        return delete(labels, scores, edit.get("labels") or [])
    if action == "add":
        return add(labels, scores, edit.get("polygon"))
    if action == "redraw":
        return redraw(labels, scores, edit.get("label"), edit.get("polygon"))
    if action == "merge":
        return merge(labels, scores, edit.get("labels") or [])
    if action == "split":
        return split(labels, scores, edit.get("label"), edit.get("line"))
    raise InputError(None, f"unknown edit action {action!r}; choose one of {', '.join(ACTIONS)}")
