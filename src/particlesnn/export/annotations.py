"""Read edited annotations back (LabelMe, VIA, COCO) as the label image of one image.

Annotation files name their image (``imagePath`` / ``filename`` / ``file_name``); an image is
matched by stem, with the suffixes our exports add (``S.image.png``, ``S.overlay.png``,
``S.labelme.json``) taken off, so ``scan.sxm`` matches annotations of ``scan.image.png``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from particlesnn.errors import InputError
from particlesnn.export import coco, labelme, via

_OWN_SUFFIXES = (".image", ".overlay", ".labelme")


def image_key(name: str) -> str:
    """Stem of an image or annotation name without our export suffixes: 'a/S.image.png' -> 'S'."""
    stem = Path(str(name).replace("\\", "/")).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    for suf in _OWN_SUFFIXES:
        if stem.endswith(suf):
            stem = stem[: -len(suf)]
    return stem


def _kind(doc) -> str:
    if isinstance(doc, dict) and "shapes" in doc:
        return "labelme"
    if isinstance(doc, dict) and "annotations" in doc and "images" in doc:
        return "coco"
    if isinstance(doc, dict) and ("_via_img_metadata" in doc or
                                  any(isinstance(v, dict) and "regions" in v for v in doc.values())):
        return "via"
    return "unknown"


def read_annotations(path: str | Path, image: str, shape: tuple[int, int]) -> np.ndarray:
    """Label image (int32, 0 = background) of ``image`` (a stem or file name) from ``path``.

    ``path`` is a LabelMe JSON, a folder of LabelMe JSONs, a VIA project/export JSON or a COCO
    JSON. ``shape`` (rows, cols) is the image's shape. Raises :class:`InputError` when the
    annotations do not cover that image or cannot be read.
    """
    path = Path(path)
    key = image_key(image)
    if path.is_dir():
        for f in sorted(path.glob("*.json")):
            try:
                doc = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if _kind(doc) == "labelme" and (image_key(doc.get("imagePath", "")) == key
                                            or image_key(f.name) == key):
                return _checked(labelme.read(f, shape), shape, f)
        raise InputError(path, f"no LabelMe JSON for image {key!r} in this folder")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read annotation JSON ({err})") from None
    kind = _kind(doc)
    if kind == "labelme":
        return _checked(labelme.read(path, shape), shape, path)
    if kind in ("via", "coco"):
        sets = via.read(path, shape) if kind == "via" else coco.read(path)
        for name, lab in sets.items():
            if image_key(name) == key:
                return _checked(lab, shape, path)
        raise InputError(path, f"no annotations for image {key!r} (it has {len(sets)} image(s))")
    raise InputError(path, "not a LabelMe, VIA or COCO annotation file")


def _checked(labels: np.ndarray, shape, where: Path) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != tuple(shape):
        raise InputError(where, f"annotations are for a {labels.shape[1]}x{labels.shape[0]} px "
                                f"image, not {shape[1]}x{shape[0]} px")
    return labels.astype(np.int32)
