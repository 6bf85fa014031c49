"""Reading ground-truth SETS from disk for evaluation.

Formats (all matched to predictions by file stem):

* **instance label images**: a folder of PNG/TIFF files, 2D integer (uint8/uint16/uint32),
  0 = background, k = object k. A folder holding ``labels/`` (and optionally ``images/``) is
  read from ``labels/``, with the image of the same stem from ``images/``;
* **YOLO boxes**: a folder with ``images/`` and ``labels/``; one ``labels/<stem>.txt`` per image,
  one box a line ``class cx cy w h`` normalised to the image width and height (CRLF or LF, with or
  without a final newline). An image without a label file has no boxes;
* **COCO JSON** (via pycocotools): instance masks (``annToMask``; where masks overlap, the later
  annotation (higher id) wins); annotations without a segmentation give boxes;
* **LabelMe JSON**: a folder of ``*.json`` files (shapes ``polygon``, ``rectangle``, ``circle``),
  rasterised as :func:`particlesnn.export.labelme.read` does (pixel centre inside; shapes
  sharing a ``group_id`` are one object; where objects overlap the smaller one wins);
* **ImageJ / Fiji ROI sets and Gwyddion masks**: a folder of ``S.roi.zip`` (or ``S.zip``,
  ``S.roi``) and/or ``S.gwy`` files, one per image (``analyze``'s ``rois/`` and ``gwy/``
  folders, corrected). ROI files hold no image size: it is taken from the prediction of the
  same name (``shapes``); a Gwyddion mask's grains (4-connected) are its particles.

:func:`read_groundtruth` detects the format. :func:`real_split` is the fixed train/validation
split of the real development sets in ``../shared/real``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from particlesnn.errors import InputError
from particlesnn.evaluate import Boxes

IMAGE_EXTS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
LABEL_EXTS = (".png", ".tif", ".tiff")


@dataclass
class GroundTruth:
    """The truth of one image.

    name : file stem used for matching.
    labels : (rows, cols) int32 instance labels (consecutive 1..n), or None for box truth.
    boxes : :class:`particlesnn.evaluate.Boxes` (``x0, y0, x1, y1`` px), or None for mask truth.
    image : path of the image, where known.
    source : the file the truth was read from.
    """

    name: str
    labels: np.ndarray | None = None
    boxes: Boxes | None = None
    image: Path | None = None
    source: Path | None = None

    @property
    def truth(self) -> np.ndarray | Boxes:
        """What :func:`particlesnn.evaluate.evaluate_pair` takes as truth."""
        return self.labels if self.labels is not None else self.boxes

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) px."""
        return tuple(self.labels.shape) if self.labels is not None else self.boxes.shape

    @property
    def count(self) -> int:
        """Number of true objects."""
        if self.labels is not None:
            return int(np.count_nonzero(np.bincount(self.labels.ravel())[1:]))
        return len(self.boxes)


# --------------------------------------------------------------------------- helpers

def _consecutive(labels: np.ndarray) -> np.ndarray:
    """Renumber the labels present to 1..n (int32), keeping their order."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    if ids.size and ids[-1] == ids.size:
        return labels.astype(np.int32, copy=False)
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, dtype=np.int32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lut[labels]


def image_shape(path: str | Path) -> tuple[int, int]:
    """(rows, cols) px of an image file, read from its header where possible."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                shp = tf.pages[0].shape
            return int(shp[0]), int(shp[1])
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
        return int(h), int(w)
    except (OSError, ValueError, IndexError) as err:
        raise InputError(path, f"cannot read image: {err}") from None


def read_label_image(path: str | Path, consecutive: bool = True) -> np.ndarray:
    """One instance label image (PNG or TIFF, 2D integer, 0 = background).

    Returns int32 labels renumbered 1..n in their order (``consecutive``), else the raw ids.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im)
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read label image: {err}") from None
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise InputError(path, f"label image must be 2D (one channel), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InputError(path, f"label image must hold integers, got {arr.dtype}")
    if arr.size == 0:
        raise InputError(path, "empty label image")
    if arr.min() < 0:
        raise InputError(path, "label image has negative labels")
    return _consecutive(arr) if consecutive else arr


def _find_image(folder: Path | None, stem: str) -> Path | None:
    if folder is None or not folder.is_dir():
        return None
    for ext in IMAGE_EXTS:
        for e in (ext, ext.upper()):
            p = folder / f"{stem}{e}"
            if p.is_file():
                return p
    return None


def _files(folder: Path, exts: Iterable[str]) -> list[Path]:
    exts = tuple(exts)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts
                  and not p.name.startswith("."))


# --------------------------------------------------------------------------- label folders

def read_label_folder(folder: str | Path) -> dict[str, GroundTruth]:
    """Instance label images of a folder (or of its ``labels/`` subfolder), keyed by stem.

    Files named ``<stem>.labels.tif`` (as written by ``particlesnn detect``) are keyed
    ``<stem>``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    images = None
    if (folder / "labels").is_dir():
        images = folder / "images"
        folder = folder / "labels"
    out: dict[str, GroundTruth] = {}
    for p in _files(folder, LABEL_EXTS):
        stem = p.stem[:-len(".labels")] if p.stem.endswith(".labels") else p.stem
        out[stem] = GroundTruth(stem, labels=read_label_image(p), image=_find_image(images, stem), source=p)
    if not out:
        raise InputError(folder, "no label images (.png, .tif) found")
    return out


# --------------------------------------------------------------------------- YOLO

def read_yolo_labels(path: str | Path, shape: tuple[int, int]) -> Boxes:
    """One YOLO label file -> :class:`Boxes` in px for an image of ``shape`` (rows, cols).

    Lines ``class cx cy w h`` normalised to width and height; blank lines are skipped; CRLF and
    LF line ends, a missing final newline and extra fields (e.g. a confidence) are accepted.
    """
    path = Path(path)
    rows, cols = shape
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read YOLO labels: {err}") from None
    boxes = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 5:
            raise InputError(path, f"line {n}: expected 'class cx cy w h', got {line.strip()!r}")
        try:
            cx, cy, w, h = (float(v) for v in parts[1:5])
        except ValueError:
            raise InputError(path, f"line {n}: not numbers: {line.strip()!r}") from None
        if not all(np.isfinite([cx, cy, w, h])) or w < 0 or h < 0:
            raise InputError(path, f"line {n}: bad box {line.strip()!r}")
        boxes.append(((cx - w / 2) * cols, (cy - h / 2) * rows, (cx + w / 2) * cols, (cy + h / 2) * rows))
    return Boxes(np.array(boxes, dtype=np.float64).reshape(-1, 4), (rows, cols))


def read_yolo_folder(folder: str | Path) -> dict[str, GroundTruth]:
    """A YOLO set (``images/`` + ``labels/``) keyed by image stem."""
    folder = Path(folder)
    img_dir, lab_dir = folder / "images", folder / "labels"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise InputError(folder, "a YOLO folder needs images/ and labels/")
    out: dict[str, GroundTruth] = {}
    for img in _files(img_dir, IMAGE_EXTS):
        lab = lab_dir / f"{img.stem}.txt"
        shape = image_shape(img)
        boxes = read_yolo_labels(lab, shape) if lab.is_file() else Boxes(np.zeros((0, 4)), shape)
        out[img.stem] = GroundTruth(img.stem, boxes=boxes, image=img, source=lab if lab.is_file() else img)
    if not out:
        raise InputError(img_dir, "no images found")
    return out


# --------------------------------------------------------------------------- COCO

def read_coco(path: str | Path, images_dir: str | Path | None = None) -> dict[str, GroundTruth]:
    """A COCO instances JSON -> ground truth per image, keyed by the stem of ``file_name``.

    Images whose annotations all carry a segmentation give instance labels (``annToMask``,
    annotations drawn by increasing id, so the later one wins where masks overlap); otherwise
    the annotations' ``bbox`` (``x, y, w, h`` px) give :class:`Boxes`. ``images_dir`` (default:
    the JSON's folder, then its ``images/``) is searched for the image files.
    """
    import contextlib
    import io

    from pycocotools.coco import COCO

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"cannot read COCO JSON: {err}") from None
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise InputError(path, "not a COCO instances file (needs 'images' and 'annotations')")
    data.setdefault("categories", [{"id": 1, "name": "particle"}])
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = data
            coco.createIndex()
    except (KeyError, TypeError) as err:
        raise InputError(path, f"malformed COCO JSON: missing {err}") from None
    dirs = [Path(images_dir)] if images_dir is not None else [path.parent, path.parent / "images"]
    out: dict[str, GroundTruth] = {}
    for img in data["images"]:
        try:
            h, w, fname, iid = int(img["height"]), int(img["width"]), str(img["file_name"]), img["id"]
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"image entry without id/file_name/width/height: {img!r}"[:200]) from None
        stem = Path(fname).stem
        anns = sorted(coco.imgToAnns.get(iid, []), key=lambda a: a["id"])
        image = None
        for d in dirs:
            if (d / fname).is_file():
                image = d / fname
                break
            image = image or _find_image(d, stem)
        if anns and all(a.get("segmentation") for a in anns):
            labels = np.zeros((h, w), dtype=np.int32)
            for k, a in enumerate(anns, 1):
                try:
                    m = coco.annToMask(a)
                except Exception as err:  # pycocotools raises assorted errors on bad polygons
                    raise InputError(path, f"annotation {a.get('id')}: bad segmentation ({err})") from None
                if m.shape != (h, w):
                    raise InputError(path, f"annotation {a.get('id')}: mask shape {m.shape} != image {(h, w)}")
                labels[m > 0] = k
            out[stem] = GroundTruth(stem, labels=_consecutive(labels), image=image, source=path)
        else:
            xyxy = []
            for a in anns:
                try:
                    x, y, bw, bh = (float(v) for v in a["bbox"])
                except (KeyError, TypeError, ValueError):
                    raise InputError(path, f"annotation {a.get('id')}: no segmentation and no bbox") from None
                xyxy.append((x, y, x + bw, y + bh))
            out[stem] = GroundTruth(stem, boxes=Boxes(np.array(xyxy).reshape(-1, 4), (h, w)),
                                    image=image, source=path)
    if not out:
        raise InputError(path, "no images in COCO file")
    return out


# --------------------------------------------------------------------------- LabelMe

def read_labelme(path: str | Path) -> GroundTruth:
    """One LabelMe JSON (polygon / rectangle / circle shapes) -> instance labels.

    Rasterised as every reader of the project does (:mod:`particlesnn.polygons`: pixel corners
    at integer coordinates, a pixel belongs where its centre is inside), so a file written by
    ``analyze`` reads back as its label image, for ``evaluate`` and training as for ``measure``.
    """
    from particlesnn.export import labelme

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        h, w = int(data["imageHeight"]), int(data["imageWidth"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise InputError(path, f"not a LabelMe JSON: {err}") from None
    labels = labelme.read(path, (h, w))
    image = None
    if data.get("imagePath"):
        cand = path.parent / str(data["imagePath"])
        image = cand if cand.is_file() else None
    return GroundTruth(path.stem, labels=_consecutive(labels), image=image, source=path)


def read_labelme_folder(folder: str | Path) -> dict[str, GroundTruth]:
    """Every LabelMe ``*.json`` of a folder, keyed by stem (``S`` for ``analyze``'s
    ``S.labelme.json``, so corrected files match the predictions named ``S``)."""
    from particlesnn.export.annotations import image_key

    out = _by_image(_files(Path(folder), (".json",)), read_labelme)
    if not out:
        raise InputError(folder, "no LabelMe .json files found")
    return out


# --------------------------------------------------------------------------- dispatch

def _is_yolo_labels(path: Path) -> bool:
    """Whether ``path`` is the ``labels/`` folder of a YOLO set (``.txt`` files, an ``images/``
    folder beside it): given for the set itself, as a user may well do."""
    return (path.name == "labels" and (path.parent / "images").is_dir()
            and any(path.glob("*.txt")))


def detect_format(path: str | Path) -> str:
    """``"coco"``, ``"yolo"``, ``"labelme"``, ``"labels"`` or ``"rois"`` (ImageJ ROI sets and
    Gwyddion masks) for a ground-truth path (a YOLO set's ``labels/`` folder counts as the
    set)."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "coco"
        raise InputError(path, "a ground-truth file must be a COCO .json; give a folder for other formats")
    if not path.is_dir():
        raise InputError(path, "no such file or folder")
    if (path / "labels").is_dir() and any((path / "labels").glob("*.txt")):
        return "yolo"
    if _is_yolo_labels(path):
        return "yolo"
    if (path / "labels").is_dir():
        return "labels"
    if any(p.suffix.lower() in LABEL_EXTS for p in path.iterdir()):
        return "labels"
    jsons = _files(path, (".json",))
    if jsons:
        try:
            first = json.loads(jsons[0].read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(jsons[0], f"cannot read JSON: {err}") from None
        if isinstance(first, dict) and "shapes" in first:
            return "labelme"
        if len(jsons) == 1 and isinstance(first, dict) and "annotations" in first:
            return "coco"
    if _files(path, (".zip", ".roi", ".gwy")):
        return "rois"
    if any(path.glob("*.txt")):
        raise InputError(path, "YOLO .txt labels need their images: give the folder that holds "
                               "images/ and labels/")
    raise InputError(path, "no ground truth found (label images, YOLO images/+labels/, COCO or "
                           "LabelMe JSON, ImageJ ROI zips, Gwyddion masks)")


def read_roi_folder(folder: str | Path, shapes: dict[str, tuple[int, int]] | None = None
                    ) -> dict[str, GroundTruth]:
    """ImageJ ROI sets (``S.roi.zip``, ``S.zip``, ``S.roi``) and Gwyddion masks (``S.gwy``) of a
    folder, keyed by ``S``. ``shapes``: image size (rows, cols) by name, for the ROI files
    (they hold none); a ROI file whose image size is not known raises InputError."""
    from particlesnn.export import gwyddion, imagej
    from particlesnn.export.annotations import image_key

    def read(p: Path) -> GroundTruth:
        key = image_key(p.name)
        if p.suffix.lower() == ".gwy":
            labels = gwyddion.read(p)  # the mask's own size
        else:
            if not shapes or key not in shapes:
                raise InputError(p, f"an ImageJ ROI file holds no image size and there is no "
                                    f"prediction named {key!r} to take it from")
            labels = imagej.read(p, shapes[key])
        return GroundTruth(key, labels=_consecutive(np.asarray(labels, np.int32)), source=p)

    return _by_image(_files(Path(folder), (".zip", ".roi", ".gwy")), read)


def _by_image(files: Iterable[Path], read) -> dict[str, GroundTruth]:
    """``read(file)`` of each file keyed by its image (``S`` for ``S.labelme.json``,
    ``S.roi.zip``, ``S.gwy``: :func:`particlesnn.export.annotations.image_key`); two files
    for one image: InputError."""
    from particlesnn.export.annotations import image_key

    out: dict[str, GroundTruth] = {}
    for p in files:
        key = image_key(p.name)
        if key in out:
            raise InputError(p, f"a second annotation file for image {key!r} (the other is "
                                f"{out[key].source.name}): keep one")
        out[key] = read(p)
        out[key].name = key
    return out


def read_groundtruth(path: str | Path, shapes: dict[str, tuple[int, int]] | None = None
                     ) -> dict[str, GroundTruth]:
    """Read a ground-truth set in any supported format (detected), keyed by image stem.
    ``shapes`` (rows, cols by name) gives ImageJ ROI files their image size."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "rois":
        return read_roi_folder(path, shapes)
    if fmt == "coco":
        return read_coco(path if path.is_file() else _files(path, (".json",))[0])
    if fmt == "yolo":
        return read_yolo_folder(path.parent if _is_yolo_labels(path) else path)
    if fmt == "labelme":
        return read_labelme_folder(path)
    return read_label_folder(path)


# --------------------------------------------------------------------------- real sets

REAL_SETS = ("stem-dev", "nuclei-dev")


def real_split(set_name: str, ids: Iterable[str]) -> dict[str, str]:
    """The fixed train / validation split of a real development set.

    * ``stem-dev``: images whose name starts with ``Pd`` are ``"val"``, ``Cu*`` and ``Ru*`` are
      ``"train"`` (anything else raises ValueError: it is not part of the set);
    * ``nuclei-dev``: the ids sorted; every 4th (positions 0, 4, 8, ... 0-based) is ``"val"``
      (104 of 413), the rest ``"train"`` -- the same rule as ``particlesnn.training.data``. Pass **all** ids of the set: the split depends on the
      sorted position.

    Returns
    -------
    dict
        id -> ``"train"`` or ``"val"``.
    """
    ids = [str(i) for i in ids]
    if set_name == "stem-dev":
        out = {}
        for i in ids:
            if i.startswith("Pd"):
                out[i] = "val"
            elif i.startswith(("Cu", "Ru")):
                out[i] = "train"
            else:
                raise ValueError(f"{i!r} is not a stem-dev image (Cu*, Pd*, Ru*)")
        return out
    if set_name == "nuclei-dev":
        order = sorted(set(ids))
        pos = {i: n for n, i in enumerate(order)}
        return {i: ("val" if pos[i] % 4 == 0 else "train") for i in ids}
    raise ValueError(f"unknown real set {set_name!r}; known: {REAL_SETS}")


def read_real_set(root: str | Path, set_name: str, split: str | None = None) -> list[GroundTruth]:
    """The ground truth of a real development set under ``root`` (``../shared/real``).

    ``split``: ``"train"``, ``"val"`` or None (all). Each item carries its ``image`` path.
    Sorted by name.
    """
    folder = Path(root) / set_name
    if set_name == "stem-dev":
        gts = read_yolo_folder(folder)
    elif set_name == "nuclei-dev":
        gts = read_label_folder(folder)
    else:
        raise ValueError(f"unknown real set {set_name!r}; known: {REAL_SETS}")
    sp = real_split(set_name, gts.keys())
    return [gts[k] for k in sorted(gts) if split is None or sp[k] == split]


__all__ = [
    "GroundTruth", "read_label_image", "read_label_folder", "read_yolo_labels", "read_yolo_folder",
    "read_coco", "read_labelme", "read_labelme_folder", "read_roi_folder", "read_groundtruth",
    "detect_format",
    "image_shape", "real_split", "read_real_set", "REAL_SETS", "read_scores", "read_prediction_folder",
]


# --------------------------------------------------------------------------- predictions

def read_scores(path: str | Path) -> dict[int, float]:
    """A ``S.scores.txt`` file (lines ``label score``; ``#`` lines, blank lines and a header line
    are skipped) -> {label: score}."""
    path = Path(path)
    out: dict[int, float] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read scores: {err}") from None
    for ln, line in enumerate(text.splitlines(), 1):
        parts = line.replace(",", " ").split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            k, sc = int(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            if ln == 1:   # a header line such as "label score"
                continue
            raise InputError(path, f"line {ln}: expected 'label score', got {line.strip()!r}") from None
        if not np.isfinite(sc):
            raise InputError(path, f"line {ln}: score is not a number")
        out[k] = sc
    return out


def read_prediction_folder(folder: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray | None, Path]]:
    """Predictions as written by ``particlesnn detect``: ``S.labels.tif`` (+ ``S.scores.txt``).

    Returns stem -> ``(labels int32, scores or None, path)``. When the folder holds no
    ``*.labels.tif``, every label image (PNG/TIFF) in it is read instead.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "prediction folder not found")
    files = sorted(folder.glob("*.labels.tif")) + sorted(folder.glob("*.labels.tiff"))
    if not files:
        files = _files(folder, LABEL_EXTS)
    if not files:
        raise InputError(folder, "no predicted label images (S.labels.tif) found")
    out = {}
    for p in files:
        stem = p.stem[:-len(".labels")] if p.stem.endswith(".labels") else p.stem
        raw = read_label_image(p, consecutive=False)
        ids = np.unique(raw)
        ids = ids[ids != 0]
        labels = _consecutive(raw)
        scores = None
        sp = folder / f"{stem}.scores.txt"
        if sp.is_file():
            table = read_scores(sp)
            missing = [int(k) for k in ids if int(k) not in table]
            if missing:
                raise InputError(sp, f"no score for label {missing[0]} ({len(missing)} labels without score)")
            scores = np.array([table[int(k)] for k in ids], dtype=np.float64)
        out[stem] = (labels, scores, p)
    return out
