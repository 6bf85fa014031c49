"""Training data: a pool of (image, targets) pairs from synthetic generation and files.

Sources (all give a 2D float image with particles bright, and an int label image):

* on-the-fly synthetic images: :mod:`particlesnn.synth` presets when that package provides
  ``generate``, plus the built-in :mod:`particlesnn.training.synthgen` generator;
* folders written by ``particlesnn synth``: ``S.labels.tif`` next to a height map ``S.*``;
* instance-label folders: ``images/ID.*`` + ``labels/ID.*`` (e.g. ``../shared/real/nuclei-dev``;
  ``index.csv`` with a ``background`` column marks dark-object images, which are inverted);
* COCO JSON files (polygons or RLE), images relative to the JSON file;
* LabelMe folders: ``*.json`` with ``shapes`` (polygons, rectangles, circles; the image from
  ``imagePath`` or the embedded ``imageData``), as ``particlesnn analyze`` writes them and
  LabelMe saves them after correction;
* YOLO box folders: ``images/ID.*`` + ``labels/ID.txt`` (e.g. ``../shared/real/stem-dev``). Boxes
  are weak labels: each becomes the ellipse inscribed in it. The image is resampled so that its
  median box is about :data:`YOLO_TARGET_PX` across (the size the multi-scale inference sees
  best) and cut into tiles of :data:`YOLO_TILE` px.

The network learns particles bright, as the analysis presents them (it orients a map before
detection). User annotations (COCO, LabelMe, label folders without an ``index.csv``) are
oriented by their own contours: an image whose annotated particles are darker than a 3 px ring
around them (median values; bright-field TEM, stained cells) is inverted
(:func:`particles_dark`).

For every file source the validation part is fixed: ids sorted, every 4th (index % 4 == 0);
the real development sets use :func:`particlesnn.io.groundtruth.real_split` (the same rule for
nuclei-dev; for stem-dev the ``Pd*`` images are held out).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from particlesnn.model import normalise
from particlesnn.training.synthgen import generate_sample
from particlesnn.training.targets import make_targets, upsample_labels

IMAGE_EXT = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".npy")


@dataclass
class Sample:
    """One training image: normalised float32 image, uint8 targets x 255: (3, rows, cols), or
    (3, s rows, s cols) for a network whose maps are ``s`` times finer (:attr:`scale`)."""

    image: np.ndarray
    targets: np.ndarray
    source: str

    @property
    def scale(self) -> int:
        """How many times finer the targets are than the image (1 or the network's out_scale)."""
        return self.targets.shape[1] // self.image.shape[0]


def to_sample(image: np.ndarray, labels: np.ndarray, source: str, invert: bool = False,
              scale: int = 1) -> Sample:
    """Normalise an image and compute its targets (stored as uint8 0..255), ``scale`` times
    finer than the image (:func:`~particlesnn.training.targets.upsample_labels`) for a
    network with that ``out_scale``."""
    img = np.asarray(image, np.float32)
    if invert:
        img = -img
    t = make_targets(upsample_labels(labels, scale))
    return Sample(normalise(img), np.round(t * 255).astype(np.uint8), source)


def _read_image(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return np.load(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im)
    return a


def _grey(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[..., :3].astype(np.float32).mean(axis=-1)
    return a.astype(np.float32)


def particles_dark(image: np.ndarray, labels: np.ndarray) -> bool:
    """Whether the annotated particles (``labels`` > 0) of ``image`` are darker than a 3 px
    band around them (:func:`particlesnn.preprocess.contours_polarity`, the rule ``measure``
    applies to contours drawn elsewhere): such an image is inverted for training, since the
    network learns particles bright. No annotation: False."""
    from particlesnn.preprocess import contours_polarity

    return contours_polarity(image, labels) == "dark"


def _split(ids: list[str], part: str) -> list[str]:
    ids = sorted(ids)
    if part == "all":
        return ids
    return [i for k, i in enumerate(ids) if (k % 4 == 0) == (part == "val")]


def load_label_folder(folder: Path, part: str = "train", limit: int | None = None,
                      scale: int = 1) -> list[Sample]:
    """Samples from ``folder/images`` + ``folder/labels`` (same stems); ``part`` in
    ``"train"``, ``"val"`` (every 4th sorted id), ``"all"``."""
    folder = Path(folder)
    imgs = {p.stem: p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_EXT}
    labs = {p.stem: p for p in (folder / "labels").iterdir() if p.suffix.lower() in IMAGE_EXT}
    dark: set[str] | None = None  # None: no index.csv, each image oriented by its annotations
    if (folder / "index.csv").is_file():
        dark = set()
        with open(folder / "index.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("background", "").strip() == "bright":
                    dark.add(row.get("id", "").strip())
    ids = _part_ids(folder, [i for i in imgs if i in labs], part)
    if limit:
        ids = ids[:limit]
    out = []
    for i in ids:
        img, lab = _grey(_read_image(imgs[i])), _read_image(labs[i])
        invert = i in dark if dark is not None else particles_dark(img, lab)
        out.append(to_sample(img, lab, f"{folder.name}/{i}", invert=invert, scale=scale))
    return out


#: Median box side (px) YOLO training images are resampled to.
YOLO_TARGET_PX = 14.0
#: Tile side (px) YOLO training images are cut into after resampling.
YOLO_TILE = 256


def _part_ids(folder: Path, ids: list[str], part: str) -> list[str]:
    """The ids of ``part`` ("train", "val", "all"): the real sets' own split, else every 4th."""
    from particlesnn.io.groundtruth import REAL_SETS, real_split

    if folder.name in REAL_SETS and part != "all":
        try:
            split = real_split(folder.name, ids)
            return sorted(i for i in ids if split[i] == part)
        except ValueError:
            pass
    return _split(ids, part)


def boxes_to_labels(xyxy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Weak instance labels from boxes: the ellipse inscribed in each box (x0, y0, x1, y1 px),
    larger boxes drawn first so that a small box inside a large one stays visible."""
    import cv2

    labels = np.zeros(shape, np.int32)
    b = np.asarray(xyxy, float).reshape(-1, 4)
    order = np.argsort(-(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    for k, i in enumerate(order, start=1):
        x0, y0, x1, y1 = b[i]  # pixel (column, row) edges: pixel j spans [j, j + 1)
        sh = 16  # sub-pixel drawing (shift 4): centre at the box centre, semi-axes half the sides
        centre = (int(round(((x0 + x1) / 2 - 0.5) * sh)), int(round(((y0 + y1) / 2 - 0.5) * sh)))
        axes = (max(sh // 2, int(round(((x1 - x0) / 2 - 0.5) * sh))),
                max(sh // 2, int(round(((y1 - y0) / 2 - 0.5) * sh))))
        cv2.ellipse(labels, centre, axes, 0, 0, 360, int(k), -1, lineType=cv2.LINE_8, shift=4)
    return labels


def load_yolo_folder(folder: Path, part: str = "train", limit: int | None = None,
                     scale: int = 1) -> list[Sample]:
    """Samples from a YOLO box folder (weak labels; see the module docstring)."""
    import cv2

    from particlesnn.io.groundtruth import read_yolo_folder

    folder = Path(folder)
    gts = read_yolo_folder(folder)
    out = []
    for i in _part_ids(folder, list(gts), part)[: limit or None]:
        g = gts[i]
        xyxy = np.asarray(g.truth.xyxy, float)
        if not len(xyxy):
            continue
        img = _grey(_read_image(Path(g.image)))
        med = float(np.median(np.sqrt((xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]))))
        f = float(np.clip(YOLO_TARGET_PX / max(med, 1.0), 1 / 16, 2.0))
        size = (max(8, round(img.shape[1] * f)), max(8, round(img.shape[0] * f)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
        labels = boxes_to_labels(xyxy * f, img.shape)
        t = YOLO_TILE
        for y in range(0, max(1, img.shape[0] - t // 2), t):
            for x in range(0, max(1, img.shape[1] - t // 2), t):
                lab = labels[y:y + t, x:x + t]
                if lab.max() > 0:
                    out.append(to_sample(img[y:y + t, x:x + t], lab, f"{folder.name}/{i}@{y},{x}",
                                         scale=scale))
    return out


def load_synth_folder(folder: Path, part: str = "train", limit: int | None = None,
                      scale: int = 1) -> list[Sample]:
    """Samples from a folder written by ``particlesnn synth``: ``S.labels.tif`` + ``S.<ext>``."""
    folder = Path(folder)
    stems = sorted(p.name[: -len(".labels.tif")] for p in folder.glob("*.labels.tif"))
    out = []
    for s in _split(stems, part)[: limit or None]:
        cands = [p for p in folder.glob(s + ".*") if not p.name.startswith(s + ".labels")
                 and p.name[len(s):].count(".") == 1]
        if not cands:
            continue
        src = sorted(cands)[0]
        import tifffile

        labels = tifffile.imread(folder / f"{s}.labels.tif")
        try:
            from particlesnn.io import in_read_frame, read

            hm = read(src)  # the labels are the whole file's: cut them as the reader cut it
            data, labels = hm.data, in_read_frame(labels, hm)
        except Exception:  # noqa: BLE001  (any reader failure: fall back to plain images)
            data = _grey(_read_image(src))
        out.append(to_sample(data, labels, f"{folder.name}/{s}", scale=scale))
    return out


def load_coco(path: Path, part: str = "train", limit: int | None = None,
              scale: int = 1) -> list[Sample]:
    """Samples from a COCO instance-segmentation JSON file."""
    from pycocotools import mask as mask_utils

    path = Path(path)
    coco = json.loads(path.read_text())
    anns: dict[int, list] = {}
    for a in coco.get("annotations", []):
        anns.setdefault(a["image_id"], []).append(a)
    images = {str(im["id"]): im for im in coco.get("images", [])}
    out = []
    for iid in _split(list(images), part)[: limit or None]:
        im = images[iid]
        f = path.parent / im["file_name"]
        if not f.is_file():
            raise ValueError(f"{path}: image {im['file_name']!r} not found beside it "
                             f"(file names are read relative to the JSON file)")
        img = _grey(_read_image(f))
        h, w = img.shape
        labels = np.zeros((h, w), np.int32)
        for k, a in enumerate(anns.get(im["id"], []), start=1):
            seg = a.get("segmentation")
            if isinstance(seg, list):
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            elif isinstance(seg, dict):
                rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg.get("counts"), list) else seg
            else:
                continue
            labels[mask_utils.decode(rle).astype(bool)] = k
        out.append(to_sample(img, labels, f"{path.name}/{iid}", invert=particles_dark(img, labels),
                             scale=scale))
    return out


def _labelme_files(folder: Path) -> list[Path]:
    """The LabelMe JSON files of a folder (``*.json`` holding ``shapes``), sorted."""
    out = []
    for j in sorted(Path(folder).glob("*.json")):
        try:
            doc = json.loads(j.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and "shapes" in doc:
            out.append(j)
    return out


def load_labelme_folder(folder: Path, part: str = "train", limit: int | None = None,
                        scale: int = 1) -> list[Sample]:
    """Samples from a folder of LabelMe JSON files: each one's image is its ``imagePath``
    (relative to the JSON file) or, when that file is missing, its embedded ``imageData``;
    ``part`` as :func:`load_label_folder` (every 4th sorted stem is validation). In an
    ``analyze`` output folder an image's ``rois/S.roi.zip`` edited in ImageJ (or ``gwy/S.gwy``
    in Gwyddion) counts over the unedited LabelMe file
    (:func:`particlesnn.export.annotations.read_annotations`)."""
    import base64
    import io as _io

    from PIL import Image

    from particlesnn.errors import InputError
    from particlesnn.io.groundtruth import read_labelme

    files = {j.stem: j for j in _labelme_files(folder)}
    out = []
    for stem in _split(list(files), part)[: limit or None]:
        j = files[stem]
        try:
            gt = read_labelme(j)
        except InputError as err:
            raise ValueError(str(err)) from None
        if gt.image is not None:
            img = _grey(_read_image(Path(gt.image)))
        else:
            doc = json.loads(j.read_text(encoding="utf-8"))
            if not doc.get("imageData"):
                raise ValueError(f"{j}: image {doc.get('imagePath')!r} not found beside it and "
                                 "no imageData embedded")
            with Image.open(_io.BytesIO(base64.b64decode(doc["imageData"]))) as im:
                img = _grey(np.asarray(im))
        labels = gt.labels
        if any((Path(folder) / d).is_dir() for d in ("rois", "gwy")):  # analyze's output: the
            # contours may have been edited in ImageJ or Gwyddion instead
            from particlesnn.export.annotations import image_key, read_annotations

            try:
                labels = read_annotations(Path(folder), image_key(j.name), labels.shape)
            except InputError as err:
                raise ValueError(str(err)) from None
        if img.shape != labels.shape:
            raise ValueError(f"{j}: image is {img.shape[1]} x {img.shape[0]} px, the annotation "
                             f"says {labels.shape[1]} x {labels.shape[0]}")
        out.append(to_sample(img, labels, f"{Path(folder).name}/{stem}",
                             invert=particles_dark(img, labels), scale=scale))
    return out


def load_source(path: str | Path, part: str = "train", limit: int | None = None,
                scale: int = 1) -> list[Sample]:
    """Samples from one ``--data`` argument (kind recognised from its layout: a folder with
    LabelMe files is read as LabelMe, even when COCO files lie beside them, as in the output
    of ``particlesnn analyze``; give the COCO file itself to use it); ``scale`` as
    :func:`to_sample`. Raises ValueError for what is not a source or a file it names that is
    missing."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".json":
        return load_coco(p, part, limit, scale)
    if (p / "images").is_dir() and (p / "labels").is_dir():
        if any(p.joinpath("labels").glob("*.txt")):
            return load_yolo_folder(p, part, limit, scale)
        return load_label_folder(p, part, limit, scale)
    if p.is_dir() and _labelme_files(p):  # before label TIFFs: analyze's output has both
        return load_labelme_folder(p, part, limit, scale)
    if p.is_dir() and any(p.glob("*.labels.tif")):
        return load_synth_folder(p, part, limit, scale)
    if p.is_dir() and any(p.glob("*.json")):
        return [s for j in sorted(p.glob("*.json")) for s in load_coco(j, part, limit, scale)]
    raise ValueError(f"{p}: not a training data source (synth folder, images/+labels/, COCO JSON, "
                     "LabelMe folder)")


def _synth_package_generate():
    """``particlesnn.synth.generate`` if the project's generator is installed, else None."""
    try:
        from particlesnn import synth  # noqa: F401

        return getattr(synth, "generate", None)
    except Exception:  # noqa: BLE001
        return None


#: Presets of :mod:`particlesnn.synth` drawn for training, with their weights.
SYNTH_PRESETS = {"stm-sparse": 1.0, "stm-crowded": 1.5, "stm-tiny": 1.0, "stm-noisy-lines": 1.0,
                 "stm-large": 1.0, "stm-mixed": 1.5, "haadf": 1.0, "brightfield-tem": 0.7,
                 "sem": 0.7, "fluorescence": 0.5, "brightfield-cells": 0.3, "negatives": 1.0}


#: Share of synthetic images inverted with their labels kept (dark particles), for robustness
#: when orientation fails. (The analysis orients particles bright first; a network taught
#: that dark discs are particles outlines pits, which ``segment.neural`` drops afterwards.
#: A run with 0 together with small-particle loss weights scored lower: docs/model.md.)
P_INVERT = 0.2


def parse_presets(text: str | None) -> dict[str, float] | None:
    """``"stm-tiny:2,stm-crowded,negatives:0.5"`` -> ``{"stm-tiny": 2.0, "stm-crowded": 1.0,
    "negatives": 0.5}`` (preset weights for :func:`synth_sample`); the word ``stm`` stands for
    every ``stm-*`` preset of :data:`SYNTH_PRESETS` with its usual weight. None or "" -> None
    (:data:`SYNTH_PRESETS`). Raises ValueError for an unknown preset or a bad weight."""
    if not text:
        return None
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, w = part.strip().partition(":")
        if not name:
            continue
        try:
            weight = float(w) if w else None
        except ValueError:
            raise ValueError(f"bad weight {w!r} for preset {name!r}") from None
        if name == "stm":
            for k, v in SYNTH_PRESETS.items():
                if k.startswith("stm-"):
                    out[k] = v if weight is None else weight
            continue
        if name not in SYNTH_PRESETS:
            from particlesnn.synth.presets import HELDOUT_PRESETS

            if name in HELDOUT_PRESETS:
                raise ValueError(f"preset {name!r} is held out from training (benchmarks only)")
            raise ValueError(f"unknown preset {name!r}; choose from stm, {', '.join(SYNTH_PRESETS)}")
        out[name] = SYNTH_PRESETS[name] if weight is None else weight
    if not out or not all(v >= 0 for v in out.values()) or sum(out.values()) <= 0:
        raise ValueError(f"presets {text!r}: give at least one preset with a positive weight")
    return out


def synth_sample(seed: int, size: int = 256, p_package: float = 0.6,
                 presets: dict[str, float] | None = None, scale: int = 1) -> Sample:
    """One synthetic sample: from :mod:`particlesnn.synth` (a random preset of ``presets``,
    name -> weight, default :data:`SYNTH_PRESETS`; probability ``p_package`` when available)
    or the built-in generator. Images are oriented with particles bright (as
    :func:`particlesnn.preprocess.orient` would); a share :data:`P_INVERT` is inverted (dark
    particles). ``scale`` as :func:`to_sample`."""
    rng = np.random.default_rng(seed)
    gen = _synth_package_generate() if p_package > 0 else None
    img = labels = None
    if gen is not None and rng.random() < p_package:
        table = presets or SYNTH_PRESETS
        names = list(table)
        pw = np.array([table[n] for n in names], float)
        preset = names[rng.choice(len(names), p=pw / pw.sum())]
        try:
            s = gen(preset, rng, size=size)
            obs = getattr(s, "image", None)
            img = np.asarray(obs if obs is not None else s.height.data, np.float32)
            if img.ndim == 3:
                img = img.mean(axis=-1)
            labels = np.asarray(s.labels)
            fgm = labels > 0
            if fgm.any() and (~fgm).any() and img[fgm].mean() < img[~fgm].mean():
                img = -img  # orient: particles bright
            if img.shape[0] > size and img.shape[1] > size:  # random crop to the pool size
                y = rng.integers(0, img.shape[0] - size + 1)
                x = rng.integers(0, img.shape[1] - size + 1)
                img, labels = img[y:y + size, x:x + size], labels[y:y + size, x:x + size]
            src = f"synth:{preset}"
        except Exception:  # noqa: BLE001  (a preset that fails must not stop training)
            img = None
    if img is None:
        img, labels = generate_sample(rng, size)
        src = "synthgen"
    return to_sample(img, labels, src, invert=rng.random() < P_INVERT, scale=scale)


def _pool_worker(args):
    seed, size, p_package, presets, scale = args
    return synth_sample(seed, size, p_package, presets, scale)


def synth_pool(n: int, seed: int, size: int = 256, workers: int = 2, p_package: float = 0.6,
               presets: dict[str, float] | None = None, scale: int = 1) -> list[Sample]:
    """``n`` synthetic samples made in ``workers`` processes (seeds ``seed``..``seed+n-1``;
    ``presets`` and ``scale`` as :func:`synth_sample`)."""
    args = [(seed + i, size, p_package, presets, scale) for i in range(n)]
    if workers <= 1 or n < 8:
        return [_pool_worker(a) for a in args]
    import multiprocessing as mp

    with mp.get_context("fork").Pool(workers) as pool:
        return pool.map(_pool_worker, args, chunksize=16)


def synth_stream(n: int, seed: int, size: int = 256, workers: int = 1, p_package: float = 0.6,
                 presets: dict[str, float] | None = None, scale: int = 1):
    """Generate ``n`` synthetic samples in the background (``workers`` processes).

    Returns ``(pool, iterator)``: ``iterator.next(timeout=0)`` gives the next finished sample or
    raises ``multiprocessing.TimeoutError``; ``StopIteration`` when all are done. Close the
    pool with ``pool.terminate()``. Seeds ``seed``..``seed+n-1``.
    """
    import multiprocessing as mp

    pool = mp.get_context("fork").Pool(max(1, workers))
    it = pool.imap_unordered(_pool_worker, [(seed + i, size, p_package, presets, scale) for i in range(n)],
                             chunksize=1)
    return pool, it


#: Background-removal sigmas (px) applied to training crops, with their probabilities: the
#: "standard" (20) and "textured" (3) profiles of :mod:`particlesnn.segment.neural`, or none.
BACKGROUND_SIGMAS = (20.0, 3.0, 0.0)
BACKGROUND_P = (0.5, 0.25, 0.25)


def random_crop_batch(samples: list[Sample], rng: np.random.Generator, batch: int,
                      crop: int, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A batch of augmented crops.

    Returns ``x`` (batch, 1, crop, crop) float32 and ``y`` (batch, 3, s crop, s crop) float32
    in [0, 1], ``s`` the samples' :attr:`Sample.scale` (all alike). Augmentation: random crop (padded when smaller), flips, 90-degree rotations, the
    background removal of inference (:data:`BACKGROUND_SIGMAS`: the crop minus its Gaussian
    blur, renormalised), contrast gamma / scale / offset, extra noise.
    """
    from particlesnn.segment import neural

    idx = rng.choice(len(samples), size=batch, p=weights)
    sc = {samples[i].scale for i in idx}
    if len(sc) != 1:
        raise ValueError(f"training samples mix target scales {sorted(sc)}")
    f = sc.pop()
    xs = np.zeros((batch, 1, crop, crop), np.float32)
    ys = np.zeros((batch, 3, f * crop, f * crop), np.float32)
    for b, i in enumerate(idx):
        s = samples[i]
        img, t = s.image, s.targets
        h, w = img.shape
        if h < crop or w < crop:
            ph, pw = max(0, crop - h), max(0, crop - w)
            img = np.pad(img, ((0, ph), (0, pw)), mode="reflect" if min(h, w) > max(ph, pw) else "edge")
            t = np.pad(t, ((0, 0), (0, f * ph), (0, f * pw)))
            h, w = img.shape
        y0 = rng.integers(0, h - crop + 1)
        x0 = rng.integers(0, w - crop + 1)
        im = img[y0:y0 + crop, x0:x0 + crop].astype(np.float32)
        tt = t[:, f * y0:f * (y0 + crop), f * x0:f * (x0 + crop)].astype(np.float32) / 255.0
        k = rng.integers(4)
        im, tt = np.rot90(im, k), np.rot90(tt, k, axes=(1, 2))
        if rng.random() < 0.5:
            im, tt = im[:, ::-1], tt[:, :, ::-1]
        sig = BACKGROUND_SIGMAS[rng.choice(len(BACKGROUND_SIGMAS), p=BACKGROUND_P)]
        if sig > 0:  # as segment.neural's profiles do before the network
            im = normalise(neural.background_removed(np.ascontiguousarray(im), sig))
        r = rng.random()
        if r < 0.3:  # gamma on the [0, 1] part
            g = np.exp(rng.normal(0, 0.35))
            im = np.sign(im) * np.abs(im) ** g
        im = im * rng.uniform(0.7, 1.3) + rng.normal(0, 0.08)
        if rng.random() < 0.2:
            im = im + rng.uniform(0.01, 0.1) * rng.standard_normal(im.shape).astype(np.float32)
        xs[b, 0] = im
        ys[b] = tt
    return xs, ys
