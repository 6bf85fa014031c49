"""LabelMe JSON: one file per image, one polygon shape per particle.

Written (LabelMe 5.x layout)::

    {"version": "5.5.0", "flags": {}, "shapes": [
        {"label": "particle", "points": [[x, y], ...], "group_id": <particle id>,
         "description": "score=0.93", "shape_type": "polygon", "flags": {}, "mask": null}, ...],
     "imagePath": "<image, relative to the JSON's folder>", "imageData": null,
     "imageHeight": rows, "imageWidth": cols}

Points are (x, y) px from the image's top-left corner (pixel (r, c) spans [c, c+1] x [r, r+1]),
see :mod:`particlesnn.polygons`. LabelMe opens the file when ``imagePath`` points to an image of
the same size (e.g. the PNG written by :func:`particlesnn.export.overlay.write_heightmap_png`).

Read back: ``polygon``, ``rectangle`` and ``circle`` shapes (other shape types such as points
and lines carry no area and are ignored); shapes sharing a ``group_id`` form one particle.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from particlesnn.errors import InputError
from particlesnn.export._common import (
    PARTICLE, check_labels, dump_json, ellipse_polygon, load_json, objects_to_labels,
    rect_polygon, round_pts, score_of,
)
from particlesnn.polygons import label_polygons

__all__ = ["write", "read", "to_dict", "LABELME_VERSION"]

LABELME_VERSION = "5.5.0"
AREA_SHAPES = ("polygon", "rectangle", "circle")


def to_dict(labels: np.ndarray, image_path: str = "", *, scores=None,
            tolerance: float | None = None) -> dict:
    """The LabelMe document (a dict) for a label image; see the module docstring.

    ``image_path`` is stored as given; ``scores`` (array, index k-1, or dict {k: score}) go
    into each shape's ``description`` as ``score=...``; ``tolerance`` is passed to
    :func:`particlesnn.polygons.label_polygons` (px).
    """
    lab = check_labels(labels, None)
    polys = label_polygons(lab, tolerance=tolerance)
    shapes = []
    for k in sorted(polys):
        s = score_of(scores, k)
        shapes.append({
            "label": PARTICLE,
            "points": round_pts(polys[k]),
            "group_id": int(k),
            "description": "" if s is None else f"score={s:.4g}",
            "shape_type": "polygon",
            "flags": {},
            "mask": None,
        })
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": str(image_path),
        "imageData": None,
        "imageHeight": int(lab.shape[0]),
        "imageWidth": int(lab.shape[1]),
    }


def write(path: str | Path, labels: np.ndarray, image_path: str | Path | None = None, *,
          scores=None, tolerance: float | None = None) -> Path:
    """Write a LabelMe JSON for one label image.

    Parameters
    ----------
    path : the ``.json`` to write (parent folders created).
    labels : (rows, cols) int label image, 0 = background.
    image_path : the image the annotations belong to; stored relative to the JSON's folder
        (forward slashes). Default: the JSON's name with ``.png``.
    scores : per-particle confidence (array, index k-1, or dict), stored in ``description``.
    tolerance : polygon simplification start tolerance, px (see ``label_polygons``).

    Returns the path written.
    """
    path = Path(path)
    check_labels(labels, path)
    if image_path is None:
        rel = path.with_suffix(".png").name
    else:
        ip = Path(image_path)
        if ip.is_absolute() or ip.exists():
            rel = os.path.relpath(ip.resolve(), path.parent.resolve())
        else:
            rel = str(ip)
        rel = rel.replace(os.sep, "/")
    return dump_json(path, to_dict(labels, rel, scores=scores, tolerance=tolerance))


def read(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a LabelMe JSON back into a label image.

    Parameters
    ----------
    path : LabelMe ``.json``.
    shape : (rows, cols); default from ``imageHeight``/``imageWidth`` in the file.

    Returns
    -------
    (rows, cols) int32 labels 1..n, consecutive, ordered by ``group_id`` (shapes without one
    come after, in file order); shapes sharing a group_id are merged. Raises
    :class:`InputError` for a file that is not a LabelMe document or has malformed shapes.
    """
    path = Path(path)
    doc = load_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        raise InputError(path, "not a LabelMe file (no 'shapes' list)")
    if shape is None:
        try:
            shape = (int(doc["imageHeight"]), int(doc["imageWidth"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(path, "LabelMe file lacks imageHeight/imageWidth; pass shape=") from None
    if shape[0] <= 0 or shape[1] <= 0:
        raise InputError(path, f"bad image size {shape}")
    groups: dict[object, list[np.ndarray]] = {}
    for i, sh in enumerate(doc["shapes"]):
        if not isinstance(sh, dict):
            raise InputError(path, f"shape {i} is not an object")
        kind = sh.get("shape_type") or "polygon"
        if kind not in AREA_SHAPES:
            continue
        try:
            pts = np.asarray(sh["points"], dtype=float).reshape(-1, 2)
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"shape {i}: 'points' must be a list of [x, y]") from None
        if not np.all(np.isfinite(pts)):
            raise InputError(path, f"shape {i}: non-finite coordinates")
        if kind == "polygon":
            if pts.shape[0] < 3:
                raise InputError(path, f"shape {i}: polygon with {pts.shape[0]} points")
            poly = pts
        elif kind == "rectangle":
            if pts.shape[0] != 2:
                raise InputError(path, f"shape {i}: rectangle needs 2 points")
            poly = rect_polygon(pts[0, 0], pts[0, 1], pts[1, 0], pts[1, 1])
        else:  # circle: centre and a point on the circumference
            if pts.shape[0] != 2:
                raise InputError(path, f"shape {i}: circle needs 2 points")
            r = float(np.hypot(*(pts[1] - pts[0])))
            poly = ellipse_polygon(pts[0, 0], pts[0, 1], r, r)
        gid = sh.get("group_id")
        key = (0, int(gid)) if isinstance(gid, (int, float)) and not isinstance(gid, bool) else (1, i)
        groups.setdefault(key, []).append(poly)
    return objects_to_labels(list(groups.items()), shape)
