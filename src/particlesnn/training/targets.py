"""Training targets from an instance label image (numpy only)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries


def make_targets(labels: np.ndarray) -> np.ndarray:
    """Three target maps from a label image.

    Parameters
    ----------
    labels : (rows, cols) int, 0 = background, k > 0 = instance k.

    Returns
    -------
    (3, rows, cols) float32: foreground (0/1); distance to the instance's boundary (px)
    divided by the instance's largest distance (0..1, 1 at the centre, 0 on background);
    inner boundary of each instance (0/1).
    """
    labels = np.asarray(labels)
    out = np.zeros((3,) + labels.shape, np.float32)
    fg = labels > 0
    out[0] = fg
    if not fg.any():
        return out
    # Distance to the nearest pixel that is not the same instance (background or a neighbour).
    bnd = find_boundaries(labels, mode="inner") & fg
    out[2] = bnd
    dist = np.zeros(labels.shape, np.float32)
    for k, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        m = labels[sl] == k
        d = ndi.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        dmax = d.max()
        if dmax > 0:
            dist[sl][m] = (d[m] / dmax).astype(np.float32)
    out[1] = dist
    return out


def upsample_labels(labels: np.ndarray, factor: int) -> np.ndarray:
    """A label image enlarged ``factor`` times with smooth outlines.

    Each instance's mask is enlarged bilinearly (pixel centres kept in place) and a new pixel
    goes to the instance whose enlarged mask is highest there, if that value is at least 0.5
    (else background): outlines follow the instance's shape instead of the blocks pixel
    repetition gives, and areas grow by ``factor**2`` up to the outline's sub-pixel detail.

    Parameters
    ----------
    labels : (rows, cols) int, 0 = background.
    factor : integer enlargement (1 returns the labels unchanged).

    Returns (factor * rows, factor * cols) int32.
    """
    import cv2

    f = int(factor)
    lab = np.asarray(labels, np.int32)
    if f == 1:
        return lab.copy()
    rows, cols = lab.shape
    out = np.zeros((f * rows, f * cols), np.int32)
    best = np.full(out.shape, 0.5, np.float32)
    for k, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        y0, y1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, rows)
        x0, x1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, cols)
        m = (lab[y0:y1, x0:x1] == k).astype(np.float32)
        up = cv2.resize(m, ((x1 - x0) * f, (y1 - y0) * f), interpolation=cv2.INTER_LINEAR)
        b = best[f * y0:f * y1, f * x0:f * x1]
        win = up >= b
        out[f * y0:f * y1, f * x0:f * x1][win] = k
        b[win] = up[win]
    return out
