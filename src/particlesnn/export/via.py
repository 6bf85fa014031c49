"""VGG Image Annotator (VIA 2.x) project JSON for a set of images.

Written: a VIA 2 project (``Project -> Load`` in VIA 2.0.x)::

    {"_via_settings": {...}, "_via_img_metadata": {
        "<filename><size>": {"filename": "scan1.png", "size": 12345, "file_attributes": {},
                             "regions": [{"shape_attributes": {"name": "polygon",
                                             "all_points_x": [...], "all_points_y": [...]},
                                          "region_attributes": {"particle": "particle",
                                             "particle_id": "7", "score": "0.93"}}, ...]}},
     "_via_attributes": {"region": {"particle": ..., "particle_id": ..., "score": ...},
                         "file": {}},
     "_via_data_format_version": "2.0.10", "_via_image_id_list": [...]}

``size`` is the image file's size in bytes when the file exists next to the JSON, else -1 (VIA's
value for images added by URL). Coordinates are x, y px from the image's top-left corner
(see :mod:`particlesnn.polygons`); VIA stores them as numbers, rounded here to 0.001 px.

Read back: a VIA 2 project or a plain VIA 1/2 annotation export ``{key: {filename, regions}}``
(regions as a list or, VIA 1, as a dict); ``polygon``, ``rect``, ``circle`` and ``ellipse``
regions (``polyline`` and ``point`` carry no area and are ignored). VIA does not record image
sizes, so :func:`read` takes them (or finds the images next to the JSON).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from particlesnn.errors import InputError
from particlesnn.export._common import (
    PARTICLE, check_labels, dump_json, ellipse_polygon, load_json, objects_to_labels,
    rect_polygon, score_of,
)
from particlesnn.polygons import label_polygons

__all__ = ["write", "read", "to_dict", "VIA_FORMAT_VERSION"]

VIA_FORMAT_VERSION = "2.0.10"


def _settings(name: str) -> dict:
    return {
        "ui": {
            "annotation_editor_height": 25,
            "annotation_editor_fontsize": 0.8,
            "leftsidebar_width": 18,
            "image_grid": {
                "img_height": 80, "rshape_fill": "none", "rshape_fill_opacity": 0.3,
                "rshape_stroke": "yellow", "rshape_stroke_width": 2,
                "show_region_shape": True, "show_image_policy": "all",
            },
            "image": {
                "region_label": "particle_id", "region_color": "__via_default_region_color__",
                "region_label_font": "10px Sans", "on_image_annotation_editor_placement": "NEAR_REGION",
            },
        },
        "core": {"buffer_size": 18, "filepath": {}, "default_filepath": ""},
        "project": {"name": name},
    }


def _attributes() -> dict:
    return {
        "region": {
            "particle": {"type": "text", "description": "object class", "default_value": PARTICLE},
            "particle_id": {"type": "text", "description": "particle id (label in the label image)",
                            "default_value": ""},
            "score": {"type": "text", "description": "detector confidence 0-1", "default_value": ""},
        },
        "file": {},
    }


def to_dict(images: Mapping[str, np.ndarray], *, scores: Mapping[str, object] | None = None,
            sizes: Mapping[str, int] | None = None, tolerance: float | None = None,
            project_name: str = "particlesnn") -> dict:
    """The VIA 2 project (a dict) for ``{filename: labels}``; see the module docstring.

    ``scores``: {filename: array (index k-1) or dict {k: score}}; ``sizes``: {filename: file
    size in bytes} (-1 when absent); ``tolerance``: polygon simplification, px.
    """
    meta: dict[str, dict] = {}
    for fname, labels in images.items():
        lab = check_labels(labels, fname)
        polys = label_polygons(lab, tolerance=tolerance)
        sc = (scores or {}).get(fname)
        regions = []
        for k in sorted(polys):
            p = polys[k]
            s = score_of(sc, k)
            regions.append({
                "shape_attributes": {
                    "name": "polygon",
                    "all_points_x": [round(float(v), 3) for v in p[:, 0]],
                    "all_points_y": [round(float(v), 3) for v in p[:, 1]],
                },
                "region_attributes": {
                    "particle": PARTICLE,
                    "particle_id": str(int(k)),
                    "score": "" if s is None else f"{s:.4g}",
                },
            })
        size = int((sizes or {}).get(fname, -1))
        meta[f"{fname}{size}"] = {"filename": str(fname), "size": size, "regions": regions,
                                  "file_attributes": {}}
    return {
        "_via_settings": _settings(project_name),
        "_via_img_metadata": meta,
        "_via_attributes": _attributes(),
        "_via_data_format_version": VIA_FORMAT_VERSION,
        "_via_image_id_list": list(meta),
    }


def write(path: str | Path, images: Mapping[str, np.ndarray], *,
          scores: Mapping[str, object] | None = None, tolerance: float | None = None,
          project_name: str | None = None) -> Path:
    """Write one VIA 2 project JSON for a set of images.

    Parameters
    ----------
    path : the ``.json`` to write (parent folders created).
    images : {image file name (relative to the JSON's folder, as VIA resolves it): labels}.
    scores : {file name: per-particle scores (array, index k-1, or dict {k: score})}.
    tolerance : polygon simplification start tolerance, px (see ``label_polygons``).
    project_name : VIA project name (default: the JSON's stem).

    Returns the path written.
    """
    path = Path(path)
    if not images:
        raise InputError(path, "no images to export")
    sizes = {}
    for fname in images:
        f = path.parent / fname
        sizes[fname] = f.stat().st_size if f.is_file() else -1
    doc = to_dict(images, scores=scores, sizes=sizes, tolerance=tolerance,
                  project_name=project_name or path.stem)
    return dump_json(path, doc)


def _region_polygon(sa: dict) -> np.ndarray | None:
    """Polygon (k, 2) for one VIA shape_attributes dict; None for area-less shapes."""
    name = sa.get("name")
    if name == "polygon":
        xs = np.asarray(sa["all_points_x"], dtype=float)
        ys = np.asarray(sa["all_points_y"], dtype=float)
        if xs.shape != ys.shape or xs.size < 3:
            raise ValueError("polygon needs >= 3 points with as many x as y")
        return np.column_stack([xs, ys])
    if name == "rect":
        x, y, w, h = (float(sa[k]) for k in ("x", "y", "width", "height"))
        return rect_polygon(x, y, x + w, y + h)
    if name == "circle":
        r = float(sa["r"])
        return ellipse_polygon(float(sa["cx"]), float(sa["cy"]), r, r)
    if name == "ellipse":
        return ellipse_polygon(float(sa["cx"]), float(sa["cy"]), float(sa["rx"]), float(sa["ry"]),
                               float(sa.get("theta", 0.0)))
    return None


def _image_shape(path: Path, fname: str, shape) -> tuple[int, int]:
    if isinstance(shape, Mapping):
        if fname in shape:
            return tuple(int(v) for v in shape[fname])  # type: ignore[return-value]
    elif shape is not None:
        return int(shape[0]), int(shape[1])
    img = path.parent / fname
    if img.is_file():
        from PIL import Image

        try:
            with Image.open(img) as im:
                return im.height, im.width
        except Exception as exc:
            raise InputError(img, f"cannot read the image to learn its size ({exc})") from exc
    raise InputError(path, f"image size of {fname!r} unknown: pass shape= or put the image next to the JSON")


def read(path: str | Path, shape: tuple[int, int] | Mapping[str, tuple[int, int]] | None = None
         ) -> dict[str, np.ndarray]:
    """Read a VIA project or annotation export back into label images.

    Parameters
    ----------
    path : VIA JSON (VIA 2 project, or VIA 1/2 "export annotations as JSON").
    shape : (rows, cols) for all images, or {filename: (rows, cols)}; images not given are
        opened next to the JSON to learn their size.

    Returns
    -------
    {filename: (rows, cols) int32 labels 1..n}, consecutive, ordered by the region attribute
    ``particle_id`` where numeric (regions without one follow in file order); regions sharing
    a particle_id are merged. Raises :class:`InputError` for a file that is not VIA JSON or
    holds malformed regions.
    """
    path = Path(path)
    doc = load_json(path)
    if not isinstance(doc, dict):
        raise InputError(path, "not a VIA file (top level is not an object)")
    meta = doc.get("_via_img_metadata", doc)
    if not isinstance(meta, dict):
        raise InputError(path, "not a VIA file ('_via_img_metadata' is not an object)")
    out: dict[str, np.ndarray] = {}
    for key, entry in meta.items():
        if str(key).startswith("_via"):
            continue
        if not isinstance(entry, dict) or "filename" not in entry or "regions" not in entry:
            raise InputError(path, f"entry {key!r} lacks filename/regions: not VIA JSON")
        fname = str(entry["filename"])
        regions = entry["regions"]
        if isinstance(regions, dict):  # VIA 1: {"0": {...}, "1": {...}}
            regions = [regions[k] for k in sorted(regions, key=lambda s: (len(str(s)), str(s)))]
        groups: dict[object, list[np.ndarray]] = {}
        for i, reg in enumerate(regions):
            try:
                poly = _region_polygon(reg.get("shape_attributes", {}))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise InputError(path, f"{fname}: region {i} malformed ({exc})") from None
            if poly is None:
                continue
            if not np.all(np.isfinite(poly)):
                raise InputError(path, f"{fname}: region {i} has non-finite coordinates")
            pid = (reg.get("region_attributes") or {}).get("particle_id", "")
            try:
                gkey: tuple = (0, int(str(pid).strip()))
            except ValueError:
                gkey = (1, i)
            groups.setdefault(gkey, []).append(poly)
        rows, cols = _image_shape(path, fname, shape)
        out[fname] = objects_to_labels(list(groups.items()), (rows, cols))
    return out
