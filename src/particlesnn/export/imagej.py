"""ImageJ / Fiji ROI zip (ROI Manager ``More >> Open...``), one polygon ROI per particle.

Written with :mod:`roifile`: a zip of ``<id>.roi`` entries, each a POLYGON ROI named by the
particle id (zero-padded to 4 digits so that the ROI Manager lists them in order), with
sub-pixel coordinates. ImageJ, like :mod:`particlesnn.polygons`, puts integer coordinates on
pixel corners and fills the pixels whose centres are inside, so the outlines measure the same
pixels in ImageJ. Read back: polygon, freehand, traced, rectangle and oval ROIs (lines and
points carry no area and are ignored). ROI files hold no image size, so :func:`read` needs it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from particlesnn.errors import InputError
from particlesnn.export._common import check_labels, ellipse_polygon, objects_to_labels, rect_polygon
from particlesnn.polygons import label_polygons

__all__ = ["write", "read"]


def write(path: str | Path, labels: np.ndarray, *, tolerance: float | None = None) -> Path:
    """Write an ImageJ ROI zip for one label image.

    Parameters
    ----------
    path : the ``.zip`` to write (parent folders created; an existing file is replaced).
    labels : (rows, cols) int label image, 0 = background.
    tolerance : polygon simplification start tolerance, px (see ``label_polygons``).

    Returns the path written. A label image without particles raises :class:`InputError`
    (ImageJ cannot hold an empty ROI set).
    """
    from roifile import ROI_OPTIONS, ROI_TYPE, ImagejRoi, roiwrite

    path = Path(path)
    lab = check_labels(labels, path)
    polys = label_polygons(lab, tolerance=tolerance)
    if not polys:
        raise InputError(path, "no particles to write as ImageJ ROIs")
    width = max(4, len(str(max(polys))))
    rois = []
    for k in sorted(polys):
        roi = ImagejRoi.frompoints(np.asarray(polys[k], dtype=np.float64), name=f"{k:0{width}d}")
        roi.roitype = ROI_TYPE.POLYGON
        roi.options |= ROI_OPTIONS.SUB_PIXEL_RESOLUTION
        rois.append(roi)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    roiwrite(path, rois, mode="w")
    return path


def _roi_polygons(roi) -> list[np.ndarray]:
    """Polygons (x, y px, corner convention) of one ImagejRoi; [] for area-less ROIs."""
    from roifile import ROI_TYPE

    t = roi.roitype
    if t == ROI_TYPE.RECT and not roi.composite:
        return [rect_polygon(roi.left, roi.top, roi.right, roi.bottom)]
    if t == ROI_TYPE.OVAL and not roi.composite:
        rx, ry = (roi.right - roi.left) / 2.0, (roi.bottom - roi.top) / 2.0
        return [ellipse_polygon(roi.left + rx, roi.top + ry, rx, ry)]
    if t in (ROI_TYPE.POLYGON, ROI_TYPE.FREEHAND, ROI_TYPE.TRACED) or roi.composite:
        coords = roi.coordinates(multi=True)
        return [np.asarray(c, dtype=float).reshape(-1, 2) for c in coords if len(c) >= 3]
    return []


def read(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read an ImageJ ROI zip (or a single ``.roi``) back into a label image.

    Parameters
    ----------
    path : ``.zip`` of ROIs or one ``.roi`` file.
    shape : (rows, cols) of the image the ROIs belong to.

    Returns
    -------
    (rows, cols) int32 labels 1..n, consecutive, ordered by ROI name where it is a number
    (others follow in file order); larger ROIs are drawn first so small overlapping particles
    survive. Raises :class:`InputError` for a missing or unreadable file.
    """
    from roifile import roiread

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    rows, cols = int(shape[0]), int(shape[1])
    if rows <= 0 or cols <= 0:
        raise InputError(path, f"bad image size {shape}")
    try:
        rois = roiread(path)
    except Exception as exc:
        raise InputError(path, f"not an ImageJ ROI file ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(rois, list):
        rois = [rois]
    objects = []
    for i, roi in enumerate(rois):
        try:
            polys = _roi_polygons(roi)
        except Exception as exc:
            raise InputError(path, f"ROI {i} ({roi.name!r}) unreadable ({exc})") from exc
        if not polys:
            continue
        try:
            key: tuple = (0, int(str(roi.name).strip()))
        except ValueError:
            key = (1, i)
        objects.append((key, polys))
    return objects_to_labels(objects, (rows, cols))
