"""Writing synthetic sets to disk: height maps, label images, PNG renders, COCO JSON, truth CSV.

Layout of a set written by :func:`write_dataset` (``NAME`` = ``synth_00000`` ...)::

    OUT/images/NAME.txt   WSxM ASCII height map (SPM only)       particlesnn.io.wsxm_ascii
    OUT/images/NAME.gsf   Gwyddion Simple Field height map (SPM)  particlesnn.io.gsf
    OUT/images/NAME.png   8-bit render (grey or palette, optional scale bar; or .bmp)
    OUT/labels/NAME.tif   uint16 instance labels (tifffile), 0 = background
    OUT/coco.json         one COCO file for the set (category "particle")
    OUT/truth.csv         per-particle truth table, all images
    OUT/params.jsonl      the concrete parameters of every image (one JSON line each)

COCO segmentations are polygons traced along pixel edges, which pycocotools rasterises back
to exactly the label image's pixels; where a footprint has a hole (a polygon cannot say so)
the annotation is stored as RLE instead, so ``annToMask`` always equals ``labels == k``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from particlesnn.errors import InputError
from particlesnn.synth import display
from particlesnn.synth.generate import TRUTH_COLUMNS, SynthImage, generate


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image ``index`` of a set with ``seed`` (independent streams)."""
    return np.random.default_rng([int(seed), int(index)])


def polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer outlines of a bool mask as COCO polygons [x0, y0, x1, y1, ...] in px.

    Outlines follow pixel edges (COCO coordinates: pixel (i, j) covers [j, j+1] x [i, i+1]),
    so pycocotools rasterises them back to the same pixels. Holes are not represented.
    """
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return []
    i0, j0 = int(ys.min()), int(xs.min())
    sub = mask[i0:ys.max() + 1, j0:xs.max() + 1].astype(np.uint8)
    up = np.kron(sub, np.ones((2, 2), np.uint8))
    up = np.pad(up, 1)
    cs, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in cs:
        pts = c.reshape(-1, 2).astype(np.float64)
        if len(pts) < 3:
            continue
        pts = (pts - 1 + 0.5) / 2.0
        pts[:, 0] += j0
        pts[:, 1] += i0
        out.append([round(float(v), 2) for v in pts.ravel()])
    return out


def coco_annotations(labels: np.ndarray, image_id: int, first_id: int,
                     scores: np.ndarray | None = None) -> list[dict]:
    """COCO annotation dicts for consecutive ``labels`` (category 1), ids from ``first_id``.

    Each has ``segmentation`` (polygons, or RLE when polygons would not reproduce the mask
    exactly), ``bbox`` [x, y, w, h] px, ``area`` (px count), ``iscrowd`` 0, and ``label`` (k).
    """
    from pycocotools import mask as mu
    from scipy import ndimage as ndi

    rows, cols = labels.shape
    anns = []
    slices = ndi.find_objects(labels)
    for k, sl in enumerate(slices, start=1):
        if sl is None:
            continue
        # work on the bounding box padded by 1 px; polygons are translated by whole pixels,
        # which pycocotools' rasteriser reproduces exactly
        i0, i1 = max(0, sl[0].start - 1), min(rows, sl[0].stop + 1)
        j0, j1 = max(0, sl[1].start - 1), min(cols, sl[1].stop + 1)
        sub = labels[i0:i1, j0:j1] == k
        area = int(sub.sum())
        polys_local = [p for p in polygons(sub) if len(p) >= 6]
        ok = bool(polys_local)
        if ok:
            h, w = sub.shape
            rle = mu.merge(mu.frPyObjects(polys_local, h, w))
            ok = bool(np.array_equal(mu.decode(rle).astype(bool), sub))
        if ok:
            seg: object = [[v + (j0 if t % 2 == 0 else i0) for t, v in enumerate(p)]
                           for p in polys_local]
        else:
            m = np.zeros((rows, cols), np.uint8)
            m[i0:i1, j0:j1] = sub
            rle = mu.encode(np.asfortranarray(m))
            seg = {"size": [rows, cols], "counts": rle["counts"].decode("ascii")}
        y0, y1 = sl[0].start, sl[0].stop
        x0, x1 = sl[1].start, sl[1].stop
        ann = {"id": first_id + len(anns), "image_id": image_id, "category_id": 1,
               "segmentation": seg, "area": area,
               "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
               "iscrowd": 0, "label": k}
        if scores is not None:
            ann["score"] = float(scores[k - 1])
        anns.append(ann)
    return anns


def render_png(si: SynthImage, palette: str = "gray", scale_bar: bool = False,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """8-bit render of the observation: grey (H, W) or palette RGB (H, W, 3), optionally with a
    burnt-in scale bar (the labels are not changed: the bar is a display artefact)."""
    grey = display.to_uint8(si.image)
    img = grey if palette == "gray" else display.apply_palette(grey, palette)
    if scale_bar:
        rng = rng if rng is not None else np.random.default_rng(0)
        img = img.copy()
        display.burn_scale_bar(img, si.height.pixel_size[0] if si.height.pixel_size else None, rng)
    return img


def _params_json(si: SynthImage) -> dict:
    return {"preset": si.preset, "modality": si.modality, **dataclasses.asdict(si.params)}


def write_dataset(out: str | Path, n: int, preset: str = "stm-mixed", seed: int = 0,
                  size: int | None = None, palette: str = "gray", scale_bar: bool = False,
                  heightmaps: bool = True, image_format: str = "png", progress=None) -> dict:
    """Generate ``n`` images of ``preset`` and write the set under ``out`` (layout above).

    seed : set seed; image i uses ``image_rng(seed, i)``, so a set is reproducible and any image
        can be regenerated alone. size : force image size (px). palette : PNG palette
        (``display.PALETTES``; ``"random"`` draws one per image). scale_bar : burn a scale bar
        into the PNG renders. heightmaps : write .txt (WSxM) and .gsf for SPM images.
    image_format : ``"png"`` or ``"bmp"`` for the 8-bit renders.
    progress : optional callable(i, n). Returns a summary dict (counts, paths).
    Raises InputError for a bad ``n``/``size``/preset/palette.
    """
    from particlesnn.synth.presets import PRESETS

    out = Path(out)
    if n < 1:
        raise InputError(out, f"--n must be at least 1 (got {n})")
    if preset not in PRESETS:
        raise InputError(None, f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if size is not None and not (16 <= int(size) <= 4096):
        raise InputError(None, f"--size must be 16..4096 px (got {size})")
    if palette != "random" and palette not in display.PALETTES:
        raise InputError(None, f"unknown palette {palette!r}; use random or one of {display.PALETTES}")
    if image_format not in ("png", "bmp"):
        raise InputError(None, f"image format must be png or bmp (got {image_format!r})")
    import tifffile

    from particlesnn.io import gsf, wsxm_ascii

    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    coco = {"info": {"description": f"particlesnn synthetic set, preset {preset}, seed {seed}",
                     "version": "1"},
            "licenses": [], "categories": [{"id": 1, "name": "particle", "supercategory": ""}],
            "images": [], "annotations": []}
    tables = []
    n_ann = 0
    with open(out / "params.jsonl", "w") as fp:
        for i in range(n):
            rng = image_rng(seed, i)
            si = generate(preset, rng, size=size)
            name = f"synth_{i:05d}"
            pal = palette if palette != "random" else str(rng.choice(np.array(display.PALETTES)))
            png = render_png(si, pal, scale_bar, rng)
            cv2.imwrite(str(out / "images" / f"{name}.{image_format}"),
                        png if png.ndim == 2 else png[..., ::-1])
            hm_file = None
            if heightmaps and si.modality == "stm":
                hm = si.height
                wsxm_ascii.write(out / "images" / f"{name}.txt", hm)
                gsf.write(out / "images" / f"{name}.gsf", hm)
                hm_file = f"images/{name}.gsf"
            tifffile.imwrite(out / "labels" / f"{name}.tif", si.labels.astype(np.uint16),
                             compression="zlib")
            rows, cols = si.labels.shape
            entry = {"id": i + 1, "file_name": f"images/{name}.{image_format}", "width": cols,
                     "height": rows, "label_file": f"labels/{name}.tif",
                     "pixel_size_nm": si.height.pixel_size[0] if si.height.pixel_size else None,
                     "modality": si.modality}
            if hm_file:
                entry["height_map"] = hm_file
                entry["height_map_wsxm"] = f"images/{name}.txt"
            coco["images"].append(entry)
            anns = coco_annotations(si.labels, i + 1, n_ann + 1)
            n_ann += len(anns)
            coco["annotations"].extend(anns)
            t = si.particles.copy()
            t["image"] = name
            tables.append(t)
            fp.write(json.dumps(_params_json(si), default=_jsonable) + "\n")
            if progress is not None:
                progress(i + 1, n)
    with open(out / "coco.json", "w") as f:
        json.dump(coco, f)
    truth = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=TRUTH_COLUMNS)
    truth = truth[TRUTH_COLUMNS]
    truth.to_csv(out / "truth.csv", index=False, float_format="%.4f")
    return {"images": n, "particles": int(len(truth)), "out": str(out),
            "coco": str(out / "coco.json"), "truth": str(out / "truth.csv")}


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
