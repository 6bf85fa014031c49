"""COCO instance-segmentation JSON (polygons) for a set of images.

Written::

    {"info": {...}, "licenses": [],
     "images": [{"id": 1, "file_name": "scan1.png", "width": cols, "height": rows}, ...],
     "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                      "segmentation": [[x1, y1, x2, y2, ...]], "area": <px^2>,
                      "bbox": [x, y, w, h], "iscrowd": 0, "particle_id": 7,
                      "score": 0.93}, ...],
     "categories": [{"id": 1, "name": "particle", "supercategory": "particle"}]}

Coordinates are x, y px from the image's top-left corner (pixel (r, c) spans [c, c+1] x
[r, r+1], COCO's own convention); ``area`` is the particle's pixel count (px^2), ``bbox`` the
bounding box of its pixels, ``particle_id`` its label in the label image and ``score`` the
detector confidence (only when known).

Read back with pycocotools (``COCO(path)``, ``annToMask``), one label image per ``file_name``.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from particlesnn.errors import InputError
from particlesnn.export._common import PARTICLE, check_labels, dump_json, load_json, score_of
from particlesnn.polygons import label_polygons, polygon_pixels

__all__ = ["write", "read", "to_dict"]


def _coco_mask(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """pycocotools' rasterisation of one polygon (x, y px) into a bool mask of ``shape``."""
    from pycocotools import mask as mask_utils

    rows, cols = int(shape[0]), int(shape[1])
    rle = mask_utils.frPyObjects([np.asarray(poly, dtype=float).ravel().tolist()], rows, cols)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools vs numpy 2 copy=
        return mask_utils.decode(mask_utils.merge(rle)).astype(bool)


def _ann_pixels(coco, ann: dict, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) indices of one annotation's pixels, rasterised by pycocotools.

    Polygon segmentations are rasterised by pycocotools in a crop around them (shifted by a
    whole number of pixels, which leaves its rasterisation unchanged) instead of the full
    image; RLE segmentations go through ``COCO.annToMask``.
    """
    from pycocotools import mask as mask_utils

    seg = ann.get("segmentation")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools vs numpy 2 copy=
        if isinstance(seg, list) and seg and all(isinstance(s, list) and len(s) >= 6 for s in seg):
            pts = np.concatenate([np.asarray(s, dtype=float).reshape(-1, 2) for s in seg])
            if not np.all(np.isfinite(pts)):
                raise ValueError("non-finite coordinates")
            x0 = int(np.clip(np.floor(pts[:, 0].min()) - 1, 0, cols))
            y0 = int(np.clip(np.floor(pts[:, 1].min()) - 1, 0, rows))
            x1 = int(np.clip(np.ceil(pts[:, 0].max()) + 2, 0, cols))
            y1 = int(np.clip(np.ceil(pts[:, 1].max()) + 2, 0, rows))
            if x1 <= x0 or y1 <= y0:
                return np.zeros(0, np.intp), np.zeros(0, np.intp)
            shifted = [(np.asarray(s, dtype=float).reshape(-1, 2) - [x0, y0]).ravel().tolist() for s in seg]
            m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(shifted, y1 - y0, x1 - x0)))
            r, c = np.nonzero(m)
            return r + y0, c + x0
        m = coco.annToMask(ann)
    if m.shape != (rows, cols):
        raise ValueError(f"mask shape {m.shape} != image ({rows}, {cols})")
    return np.nonzero(m)


def to_dict(images: Mapping[str, np.ndarray], *, scores: Mapping[str, object] | None = None,
            tolerance: float | None = None, description: str = "particlesnn export") -> dict:
    """The COCO document (a dict) for ``{file_name: labels}``; see the module docstring."""
    imgs, anns = [], []
    ann_id = 0
    for img_id, (fname, labels) in enumerate(images.items(), start=1):
        lab = check_labels(labels, fname)
        rows, cols = lab.shape
        imgs.append({"id": img_id, "file_name": str(fname), "width": int(cols), "height": int(rows)})
        polys = label_polygons(lab, tolerance=tolerance, rasterize=_coco_mask)
        lab64 = lab.astype(np.int64, copy=False)
        areas = np.bincount(lab64.ravel())
        slices = ndi.find_objects(lab64)
        sc = (scores or {}).get(fname)
        for k in sorted(polys):
            sl = slices[k - 1]
            ann_id += 1
            ann = {
                "id": ann_id,
                "image_id": img_id,
                "category_id": 1,
                "segmentation": [[round(float(v), 3) for v in polys[k].ravel()]],
                "area": int(areas[k]),
                "bbox": [int(sl[1].start), int(sl[0].start),
                         int(sl[1].stop - sl[1].start), int(sl[0].stop - sl[0].start)],
                "iscrowd": 0,
                "particle_id": int(k),
            }
            s = score_of(sc, k)
            if s is not None:
                ann["score"] = round(s, 5)
            anns.append(ann)
    return {
        "info": {"description": description, "version": "1.0"},
        "licenses": [],
        "images": imgs,
        "annotations": anns,
        "categories": [{"id": 1, "name": PARTICLE, "supercategory": PARTICLE}],
    }


def write(path: str | Path, images: Mapping[str, np.ndarray], *,
          scores: Mapping[str, object] | None = None, tolerance: float | None = None) -> Path:
    """Write one COCO JSON for a set of images.

    Parameters
    ----------
    path : the ``.json`` to write (parent folders created).
    images : {image file name (as COCO's ``file_name``): labels (rows, cols) int}.
    scores : {file name: per-particle scores (array, index k-1, or dict {k: score})}.
    tolerance : polygon simplification start tolerance, px (see ``label_polygons``).

    Returns the path written.
    """
    path = Path(path)
    if not images:
        raise InputError(path, "no images to export")
    return dump_json(path, to_dict(images, scores=scores, tolerance=tolerance))


def read(path: str | Path, category: str | None = None) -> dict[str, np.ndarray]:
    """Read a COCO JSON back into label images with pycocotools.

    Parameters
    ----------
    path : COCO instances JSON (polygon or RLE segmentations).
    category : keep only annotations of this category name (default: all).

    Returns
    -------
    {file_name: (height, width) int32 labels 1..n}, consecutive, ordered by ``particle_id``
    when present, else by annotation id; larger annotations are drawn first so that small
    overlapping particles survive. Images without annotations give all-zero label images.
    Raises :class:`InputError` when the file is not COCO instances JSON.
    """
    path = Path(path)
    doc = load_json(path)  # clear error for missing / malformed JSON before pycocotools
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) \
            or not isinstance(doc.get("annotations"), list):
        raise InputError(path, "not a COCO file (needs 'images' and 'annotations' lists)")
    from pycocotools.coco import COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
    except Exception as exc:
        raise InputError(path, f"pycocotools cannot load it ({exc.__class__.__name__}: {exc})") from exc
    cat_ids = None
    if category is not None:
        cat_ids = set(coco.getCatIds(catNms=[category]))
    out: dict[str, np.ndarray] = {}
    from skimage.segmentation import relabel_sequential

    for img_id, info in coco.imgs.items():
        try:
            rows, cols = int(info["height"]), int(info["width"])
            fname = str(info["file_name"])
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"image {img_id} lacks file_name/height/width") from None
        anns = [a for a in coco.imgToAnns.get(img_id, [])
                if cat_ids is None or a.get("category_id") in cat_ids]
        anns.sort(key=lambda a: (a.get("particle_id", a.get("id", 0)), a.get("id", 0)))
        pix = []
        for a in anns:
            try:
                idx = _ann_pixels(coco, a, rows, cols)
            except Exception as exc:
                raise InputError(path, f"annotation {a.get('id')}: bad segmentation ({exc})") from exc
            if idx[0].size == 0 and isinstance(a.get("segmentation"), list):
                # sub-pixel polygon that pycocotools rasterises to nothing: keep the pixel
                # under its centroid (see particlesnn.polygons), so tiny particles survive
                rr, cc = [], []
                for seg in a["segmentation"]:
                    r, c = polygon_pixels(np.asarray(seg, dtype=float).reshape(-1, 2), (rows, cols))
                    rr.append(r), cc.append(c)
                idx = (np.concatenate(rr), np.concatenate(cc)) if rr else idx
            pix.append(idx)
        lab = np.zeros((rows, cols), dtype=np.int32)
        for i in sorted(range(len(pix)), key=lambda i: -int(pix[i][0].size)):
            lab[pix[i]] = i + 1
        out[fname] = relabel_sequential(lab)[0].astype(np.int32)
    return out
