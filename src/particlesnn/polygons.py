"""Label image <-> polygons, faithful both ways.

Coordinate convention (used by every exporter in :mod:`particlesnn.export`)
-----------------------------------------------------------------------------
Polygons are ``(k, 2)`` float arrays of ``(x, y)`` vertices in **pixels**, with the origin at
the top-left *corner* of the image: the pixel at row ``r``, column ``c`` covers
``x in [c, c+1]``, ``y in [r, r+1]`` and its centre is ``(c + 0.5, r + 0.5)``. This is the
convention of LabelMe, VIA, COCO and ImageJ (whose pixels also span unit squares from the
corner). A pixel belongs to a polygon when its *centre* lies inside it; both directions use
that rule, so ``polygons_to_labels(label_polygons(labels))`` reproduces the label image
(exactly with ``tolerance=0``, else with IoU >= 0.98 per particle).

Outlines are traced along pixel edges (vertices on pixel corners, so the unsimplified polygon
has exactly the particle's pixels and area; a 1-px particle is a unit square), then simplified
by Douglas-Peucker with a tolerance chosen per particle: the largest of ``tolerance * 0.75**i``
(i = 0..8) whose polygon, rasterised back, still has IoU >= ``min_iou`` with the
particle's mask and takes no pixel of another particle.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
from scipy import ndimage as ndi
from skimage import draw, measure

__all__ = ["label_polygons", "polygons_to_labels", "polygon_pixels", "polygon_mask", "polygon_area"]

DEFAULT_TOLERANCE = 1.0  # px, first Douglas-Peucker tolerance tried
MIN_IOU = 0.98
_STEPS = 0.75 ** np.arange(9)  # tolerances tried, as fractions of the first (1 ... 0.1)


def polygon_area(poly: np.ndarray) -> float:
    """Area of a simple polygon ``(k, 2)`` in px^2 (shoelace formula, always >= 0)."""
    p = np.asarray(poly, dtype=float)
    if p.shape[0] < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def polygon_pixels(poly: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) index arrays of the pixels whose centres lie inside ``poly``.

    ``poly`` is ``(k, 2)`` (x, y) in px, corner convention (see module docstring); ``shape``
    = (rows, cols) of the image, parts outside are clipped. A polygon that covers no pixel
    centre at all (degenerate or sub-pixel) still yields the pixel holding its centroid, so
    that tiny particles are never lost.
    """
    rows, cols = int(shape[0]), int(shape[1])
    empty = (np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp))
    p = np.asarray(poly, dtype=float).reshape(-1, 2)
    if p.shape[0] == 0 or not np.all(np.isfinite(p)):
        return empty
    if p.shape[0] >= 3:
        # skimage.draw.polygon tests integer points = pixel centres -> shift by half a pixel
        rr, cc = draw.polygon(p[:, 1] - 0.5, p[:, 0] - 0.5, shape=(rows, cols))
        if rr.size:
            return rr.astype(np.intp), cc.astype(np.intp)
    cx, cy = _centroid(p)
    c, r = int(np.floor(cx)), int(np.floor(cy))
    if 0 <= r < rows and 0 <= c < cols:
        return np.array([r], dtype=np.intp), np.array([c], dtype=np.intp)
    return empty


def polygon_mask(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask (``shape`` = rows, cols) of :func:`polygon_pixels`."""
    mask = np.zeros((int(shape[0]), int(shape[1])), dtype=bool)
    mask[polygon_pixels(poly, shape)] = True
    return mask


def _centroid(p: np.ndarray) -> tuple[float, float]:
    """Area centroid of a polygon (vertex mean when degenerate), (x, y) px."""
    if p.shape[0] >= 3:
        x, y = p[:, 0], p[:, 1]
        x1, y1 = np.roll(x, -1), np.roll(y, -1)
        cross = x * y1 - x1 * y
        a = cross.sum() / 2.0
        if abs(a) > 1e-12:
            return float(((x + x1) * cross).sum() / (6 * a)), float(((y + y1) * cross).sum() / (6 * a))
    return float(p[:, 0].mean()), float(p[:, 1].mean())


def _douglas_peucker_closed(pts: np.ndarray, eps: float) -> np.ndarray:
    """Douglas-Peucker on a closed ring (no repeated end point), eps in px."""
    if eps <= 0 or pts.shape[0] <= 4:
        return pts
    import cv2

    out = cv2.approxPolyDP(pts.astype(np.float32).reshape(-1, 1, 2), float(eps), True)
    out = out.reshape(-1, 2).astype(float)
    if out.shape[0] < 3:
        return pts
    return out


def _outer_ring(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Outer pixel-edge outline of the largest 8-connected component of ``mask``.

    Returns ((k, 2) x, y in corner convention relative to the crop: the vertices are pixel
    corners (integers), without repeated end point or collinear vertices; the filled
    component it outlines, bool mask), or None when the mask is empty. Two pixels touching
    only at a corner stay in one outline, which then touches itself at that corner.
    """
    lab, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return None
    if n > 1:
        sizes = np.bincount(lab.ravel())[1:]
        mask = lab == (int(np.argmax(sizes)) + 1)
    filled = ndi.binary_fill_holes(mask)
    # marching squares on the mask enlarged x2 runs along the pixel edges, cutting each
    # corner by a quarter pixel; snapping its vertices to the nearest integer point puts
    # them back on the pixel corners (8-connected pieces joined through the shared corner)
    up = np.pad(np.repeat(np.repeat(filled, 2, axis=0), 2, axis=1).astype(np.uint8), 1)
    contours = measure.find_contours(up, 0.5, fully_connected="high")
    if not contours:
        return None
    best = contours[0] if len(contours) == 1 else max(contours, key=lambda c: polygon_area(c[:, ::-1]))
    xy = np.column_stack([np.rint((best[:, 1] - 0.5) / 2.0), np.rint((best[:, 0] - 0.5) / 2.0)])
    xy = xy[np.any(xy != np.roll(xy, 1, axis=0), axis=1)]  # repeated vertices (closing one too)
    prev, nxt = np.roll(xy, 1, axis=0), np.roll(xy, -1, axis=0)
    cross = (xy[:, 0] - prev[:, 0]) * (nxt[:, 1] - xy[:, 1]) - (xy[:, 1] - prev[:, 1]) * (nxt[:, 0] - xy[:, 0])
    xy = xy[cross != 0]
    if xy.shape[0] < 3:
        return None
    return xy, filled


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return float(inter / union) if union else 1.0


def label_polygons(
    labels: np.ndarray,
    tolerance: float | None = None,
    *,
    min_iou: float = MIN_IOU,
    rasterize: Callable[[np.ndarray, tuple[int, int]], np.ndarray] | None = None,
) -> dict[int, np.ndarray]:
    """Outer outline of each particle as a simplified polygon.

    Parameters
    ----------
    labels : (rows, cols) int array
        0 = background, k > 0 = particle k.
    tolerance : float or None
        Largest Douglas-Peucker tolerance tried, px (default 1.0 px). It is lowered in steps
        of x0.75 (down to a tenth, then no simplification) until the
        polygon, rasterised back by pixel centres, has IoU >= ``min_iou`` with the particle's
        mask (filled, largest component) and covers no pixel of another particle;
        0 disables simplification.
    min_iou : float
        Fidelity guaranteed per particle (default 0.98).
    rasterize : callable (poly, (rows, cols)) -> bool mask, optional
        The rasteriser the fidelity is checked with (default :func:`polygon_mask`, the
        pixel-centre rule). Exporters whose readers rasterise differently (pycocotools) pass
        theirs so that the guarantee holds in that reader too; a polygon that fails even
        unsimplified is kept unsimplified.

    Returns
    -------
    dict {label: (k, 2) float array of (x, y) vertices in px}, corner convention (pixel
    (r, c) spans x in [c, c+1], y in [r, r+1]); rings are open (first vertex not repeated).
    Holes are filled; a label made of several pieces is outlined by its largest piece only.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be 2D, got shape {lab.shape}")
    if lab.size == 0:
        return {}
    tol0 = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
    raster = polygon_mask if rasterize is None else rasterize
    out: dict[int, np.ndarray] = {}
    if lab.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer array, got {lab.dtype}")
    if lab.min() < 0:
        raise ValueError("labels must be >= 0")
    objects = ndi.find_objects(lab.astype(np.int64, copy=False))
    for idx, sl in enumerate(objects):
        if sl is None:
            continue
        k = idx + 1
        r0, c0 = sl[0].start, sl[1].start
        mask = lab[sl] == k
        found = _outer_ring(mask)
        if found is None:
            continue
        # reference: the filled largest component, which the unsimplified ring rasterises to
        ring, ref = found
        others = (lab[sl] != k) & (lab[sl] != 0)
        best = ring
        for eps in tol0 * _STEPS:
            cand = _douglas_peucker_closed(ring, eps)
            if cand.shape[0] < ring.shape[0]:
                got = raster(cand, mask.shape)
                # faithful, and never claiming a neighbour's pixel (touching particles stay
                # disjoint whatever the drawing order)
                if _iou(got, ref) >= min_iou and not np.any(got & others):
                    best = cand
                    break
        out[k] = best + np.array([c0, r0], dtype=float)
    return out


def polygons_to_labels(
    polys: Mapping[int, np.ndarray] | Iterable[np.ndarray],
    shape: tuple[int, int],
    *,
    order: str = "area",
) -> np.ndarray:
    """Rasterise polygons into a label image.

    Parameters
    ----------
    polys : dict {label: (k, 2) x, y px} or a sequence of (k, 2) arrays (labelled 1, 2, ...)
        Corner convention (see module docstring); a pixel is set when its centre is inside.
    shape : (rows, cols)
    order : "area" (default) or "given"
        Drawing order where polygons overlap: "area" draws the largest first so that a small
        particle lying on a big one survives; "given" draws in the given order (later wins).

    Returns
    -------
    (rows, cols) int32 label image with the given labels (not renumbered). Every polygon
    marks at least the pixel holding its centroid unless a later polygon covers it.
    """
    if isinstance(polys, Mapping):
        items = [(int(k), np.asarray(v, dtype=float).reshape(-1, 2)) for k, v in polys.items()]
    else:
        items = [(i + 1, np.asarray(v, dtype=float).reshape(-1, 2)) for i, v in enumerate(polys)]
    rows, cols = int(shape[0]), int(shape[1])
    out = np.zeros((rows, cols), dtype=np.int32)
    if order == "area":
        items.sort(key=lambda kv: -polygon_area(kv[1]))
    elif order != "given":
        raise ValueError(f"order must be 'area' or 'given', got {order!r}")
    for k, p in items:
        if k <= 0 or p.shape[0] == 0:
            continue
        x0 = int(np.clip(np.floor(p[:, 0].min()), 0, cols))
        x1 = int(np.clip(np.ceil(p[:, 0].max()) + 1, 0, cols))
        y0 = int(np.clip(np.floor(p[:, 1].min()), 0, rows))
        y1 = int(np.clip(np.ceil(p[:, 1].max()) + 1, 0, rows))
        if x1 <= x0 or y1 <= y0:
            continue
        m = polygon_mask(p - np.array([x0, y0], dtype=float), (y1 - y0, x1 - x0))
        out[y0:y1, x0:x1][m] = k
    return out
