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
