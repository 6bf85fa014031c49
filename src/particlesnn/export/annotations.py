"""Read edited annotations back (LabelMe, VIA, COCO, ImageJ ROIs) as the label image of one image.

Annotation files name their image (``imagePath`` / ``filename`` / ``file_name``); an image is
matched by stem, with the suffixes our exports add (``S.image.png``, ``S.overlay.png``,
``S.labelme.json``, ``S.roi.zip``) taken off, so ``scan.sxm`` matches annotations of
``scan.image.png``. ImageJ ROI files name no image: ``S.roi.zip`` belongs to ``S``.

An ``analyze`` output folder holds each image's contours two or three times
(``S.labelme.json``, ``rois/S.roi.zip``, with ``--gwyddion`` the mask of ``gwy/S.gwy``), and a
user edits one of them. All are read; where they disagree, the one that no longer reads as
``S.labels.tif`` written through the same format is the edited one. Gwyddion masks keep
touching particles apart by a one-pixel gap (:mod:`particlesnn.export.gwyddion`), so an
unedited mask reads slightly smaller than the other two: it is told apart the same way.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from particlesnn.errors import InputError
from particlesnn.export import coco, gwyddion, imagej, labelme, via

_OWN_SUFFIXES = (".image", ".overlay", ".labelme", ".roi")
_ROI_SUFFIXES = (".zip", ".roi")


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


def read_annotations(path: str | Path, image: str, shape: tuple[int, int], *,
                     with_source: bool = False):
    """Label image (int32, 0 = background) of ``image`` (a stem or file name) from ``path``.

    ``path`` is a LabelMe JSON, a folder (an ``analyze`` output folder: ``S.labelme.json``,
    ``rois/S.roi.zip``, ``gwy/S.gwy``), a VIA project/export JSON, a COCO JSON, one ImageJ ROI
    zip / ``.roi`` (Fiji's ``RoiSet.zip``) or a Gwyddion ``.gwy`` with a mask. ``shape``
    (rows, cols) is the image's shape. Raises :class:`InputError` when the annotations do not
    cover that image or cannot be read, and when a folder's copies of the image's contours
    disagree and more than one was edited. ``with_source=True`` returns ``(labels, file read)``.
    """
    labels, where = _locate(Path(path), image, shape)
    labels = _checked(labels, shape, where)
    return (labels, where) if with_source else labels


def _locate(path: Path, image: str, shape) -> tuple[np.ndarray, Path]:
    key = image_key(image)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_dir():
        return _from_folder(path, key, shape)
    if path.suffix.lower() in _ROI_SUFFIXES:
        return imagej.read(path, shape), path
    if path.suffix.lower() == ".gwy":
        return gwyddion.read(path, shape), path
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read annotation JSON ({err})") from None
    kind = _kind(doc)
    if kind == "labelme":
        return labelme.read(path, shape), path
    if kind in ("via", "coco"):
        sets = via.read(path, shape) if kind == "via" else coco.read(path)
        for name, lab in sets.items():
            if image_key(name) == key:
                return lab, path
        raise InputError(path, f"no annotations for image {key!r} (it has {len(sets)} image(s))")
    raise InputError(path, "not a LabelMe, VIA, COCO, ImageJ ROI or Gwyddion annotation file")


def _from_folder(folder: Path, key: str, shape) -> tuple[np.ndarray, Path]:
    found: dict[str, tuple[np.ndarray, Path]] = {}
    for f in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if _kind(doc) == "labelme" and (image_key(doc.get("imagePath", "")) == key
                                        or image_key(f.name) == key):
            found["labelme"] = (_checked(labelme.read(f, shape), shape, f), f)
            break
    for f in (folder / "rois" / f"{key}.roi.zip", folder / f"{key}.roi.zip", folder / f"{key}.roi"):
        if f.is_file():
            found["imagej"] = (_checked(imagej.read(f, shape), shape, f), f)
            break
    for f in (folder / "gwy" / f"{key}.gwy", folder / f"{key}.gwy"):
        if f.is_file():
            try:
                found["gwyddion"] = (gwyddion.read(f, shape), f)
            except InputError:
                if f.parent.name != "gwy":  # the scan itself, no mask: not annotations
                    continue
                raise
            break
    if not found:
        raise InputError(folder, f"no LabelMe JSON, ImageJ ROI zip or Gwyddion mask for image "
                                 f"{key!r} in this folder")
    first = next(iter(found.values()))
    if all(np.array_equal(lab, first[0]) for lab, _ in found.values()):
        return first
    edited = _edited(folder / f"{key}.labels.tif", found, shape)
    if edited in found:
        return found[edited]
    names = " and ".join(str(p.relative_to(folder)) for _, p in found.values())
    raise InputError(folder, f"{names} disagree and {edited}: pass the edited one with --annotations")


def _edited(labels_tif: Path, found: dict[str, tuple[np.ndarray, Path]], shape) -> str:
    """Which of several disagreeing readings (``found``: format -> (labels, path)) differs from
    the analysis's own labels written through its format, or why that cannot be told."""
    import tempfile

    from particlesnn.export import labels as labels_io

    if not labels_tif.is_file():
        return f"there is no {labels_tif.name} to tell which was edited"
    try:
        orig = labels_io.read_labels(labels_tif)
    except InputError:
        return f"{labels_tif.name} is unreadable"
    if orig.shape != tuple(shape) or not orig.any():
        return f"{labels_tif.name} does not belong to this image"
    edited = []
    with tempfile.TemporaryDirectory() as tmp:  # the analysis's contours, read as each format
        t = Path(tmp)
        for fmt, (lab, _) in found.items():
            if fmt == "labelme":
                pristine = labelme.read(labelme.write(t / "a.json", orig), shape)
            elif fmt == "imagej":
                pristine = imagej.read(imagej.write(t / "a.roi.zip", orig), shape)
            else:
                pristine = gwyddion.as_read(orig)
            if not np.array_equal(lab, pristine):
                edited.append(fmt)
    if len(edited) == 1:
        return edited[0]
    if not edited:  # all as the analysis wrote them (a Gwyddion mask's gaps): any will do
        return next(iter(found))
    return f"{' and '.join(edited)} were edited"


def _checked(labels: np.ndarray, shape, where: Path) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != tuple(shape):
        raise InputError(where, f"annotations are for a {labels.shape[1]}x{labels.shape[0]} px "
                                f"image, not {shape[1]}x{shape[0]} px")
    return labels.astype(np.int32)
