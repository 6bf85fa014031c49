"""Glue between the web service and :mod:`particlesnn.export` / :mod:`particlesnn.stats`.

The exporters write files; here each download is written into a temporary folder and returned
as bytes. Annotation files come back the other way (LabelMe, VIA, COCO -> label image).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from particlesnn.errors import InputError
from particlesnn.web import store


def image_png_name(original: str) -> str:
    """Name of the map PNG that annotation files refer to: ``<stem>.png``."""
    from particlesnn.web.app import _stem

    return f"{_stem(original)}.png"


def export_bytes(kind: str, folder: Path, original: str, labels: np.ndarray, scores: np.ndarray,
                 particles: pd.DataFrame, summary: dict) -> bytes:
    """Bytes of one download of an image's current version.

    kind : ``labelme``, ``via``, ``coco`` (JSON referring to ``<stem>.png``, the map image),
    ``labels`` (uint16 TIFF), ``imagej`` (ROI zip), ``gwy`` (Gwyddion: the levelled map with
    the particles as its mask), ``overlay`` (PNG), ``report`` (HTML), ``map`` (the height-map
    PNG the annotation files refer to).
    """
    png = image_png_name(original)
    if kind == "map":
        return (folder / "map.png").read_bytes()
    if kind == "labelme":
        from particlesnn.export import labelme

        return _json(labelme.to_dict(labels, png, scores=scores))
    if kind == "via":
        from particlesnn.export import via

        size = (folder / "map.png").stat().st_size
        return _json(via.to_dict({png: labels}, scores={png: scores}, sizes={png: size},
                                 project_name=Path(png).stem))
    if kind == "coco":
        from particlesnn.export import coco

        return _json(coco.to_dict({png: labels}, scores={png: scores}))
    with tempfile.TemporaryDirectory(prefix="pnn-export-") as tmp:
        out = Path(tmp) / "out"
        if kind == "labels":
            from particlesnn.export.labels import write_labels

            written = write_labels(out.with_suffix(".tif"), labels)
        elif kind == "imagej":
            from particlesnn.export import imagej

            written = imagej.write(out.with_suffix(".zip"), labels)
        elif kind == "gwy":
            from particlesnn.export import gwyddion

            written = gwyddion.write(out.with_suffix(".gwy"), store.load_levelled(folder), labels)
        elif kind == "overlay":
            from particlesnn.export.overlay import render_overlay

            written = out.with_suffix(".png")
            render_overlay(store.load_levelled(folder), labels, written, title=original)
        elif kind == "report":
            written = _report(Path(tmp), folder, original, labels, scores, particles, summary)
        else:
            raise ValueError(f"unknown export {kind!r}")
        return Path(written).read_bytes()


def _json(doc: Any) -> bytes:
    return json.dumps(store.to_jsonable(doc), indent=1).encode()


def _report(tmp: Path, folder: Path, original: str, labels, scores, particles, summary) -> Path:
    """The HTML report of :mod:`particlesnn.export.report` for one image's current version."""
    out = tmp / "report.html"
    entry = report_entry(folder, original, labels, particles, summary)
    return write_set_report(out, [entry], summary, title=f"particlesnn: {original}")


def _scalars(d: dict) -> dict[str, Any]:
    return {str(k): v for k, v in (d or {}).items()
            if isinstance(v, (int, float, str, bool, np.integer, np.floating)) and v is not None}


def report_entry(folder: Path, original: str, labels: np.ndarray, particles: pd.DataFrame,
                 summary: dict, notes: list[str] | None = None) -> dict[str, Any]:
    """One image's entry for :func:`particlesnn.export.report.write_report`."""
    from particlesnn.export.overlay import render_overlay

    overlay = render_overlay(store.load_levelled(folder), labels, None, title=original)
    return {"name": original, "overlay": overlay, "summary": _scalars(summary),
            "particles": particles, "notes": list(notes or [])}


def write_set_report(path: Path, entries: list[dict], set_summary: dict, *, title: str) -> Path:
    """Write the HTML report for ``entries`` (from :func:`report_entry`), with histograms."""
    from particlesnn.export.report import write_report

    plots: dict[str, Any] = {}
    frames = [e["particles"].assign(image=e["name"]) for e in entries if len(e["particles"])]
    if frames:
        plots = _histograms(pd.concat(frames, ignore_index=True))
    try:
        return Path(write_report(path, entries, _scalars(set_summary), plots, title=title))
    finally:
        import matplotlib.pyplot as plt

        for fig in plots.values():
            if hasattr(fig, "savefig"):
                plt.close(fig)


def _histograms(particles: pd.DataFrame) -> dict[str, Any]:
    """Diameter histogram(s) through :mod:`particlesnn.plots` when it is installed, else none."""
    try:
        from particlesnn import plots
    except ImportError:
        return {}
    fn = getattr(plots, "size_histogram", None) or getattr(plots, "histogram", None)
    if fn is None:
        return {}
    try:
        fig = fn(particles)
    except Exception:  # noqa: BLE001 - a plot problem must not cost the report
        return {}
    return {"Size distribution": fig}


def detect_format(doc: Any) -> str:
    """``"labelme"``, ``"via"`` or ``"coco"`` from the structure of a parsed JSON document."""
    if isinstance(doc, dict):
        if isinstance(doc.get("shapes"), list):
            return "labelme"
        if isinstance(doc.get("images"), list) and isinstance(doc.get("annotations"), list):
            return "coco"
        if "_via_img_metadata" in doc:
            return "via"
        vals = [v for k, v in doc.items() if not str(k).startswith("_via")]
        if vals and all(isinstance(v, dict) and "filename" in v and "regions" in v for v in vals):
            return "via"
    raise InputError(None, "not a LabelMe, VIA or COCO annotation file")


def import_labels(raw: bytes, fmt: str, display: str, shape: tuple[int, int],
                  original: str, frame=None) -> tuple[np.ndarray, str]:
    """Label image (rows, cols int32, 1..n) from an uploaded annotation file.

    ``fmt``: ``auto`` (from the content), ``labelme``, ``via``, ``coco``, ``imagej`` (a ROI
    zip or one ``.roi``, as the page's "ImageJ ROIs" download; ROIs name no image: they are
    this image's) or ``gwy`` (the mask of a Gwyddion file, as the page's "Gwyddion"
    download). VIA and COCO files may hold several images: the one named ``<stem>.png`` (or
    with the uploaded file's stem) is used, or the only one. ``frame`` = (file shape,
    analysed region [r0, r1, c0, c1]) when the reader left part of the file out (an SEM info
    band): outlines drawn on the whole file are then cut to the analysed part. Raises
    :class:`InputError` naming ``display``.
    """
    if frame is not None:  # drawn on the analysed part (our own downloads) or on the file
        try:
            return import_labels(raw, fmt, display, shape, original)
        except InputError as err:
            try:
                labels, kind = import_labels(raw, fmt, display, tuple(frame[0]), original)
            except InputError:
                raise err from None
            r0, r1, c0, c1 = frame[1]
            return np.ascontiguousarray(labels[r0:r1, c0:c1]), kind
    rows, cols = int(shape[0]), int(shape[1])
    binary = {"gwy": raw[:4] == b"GWYP", "imagej": raw[:4] in (b"PK\x03\x04", b"Iout")}
    for kind, magic in binary.items():  # files that carry no image name: this image's
        if magic or fmt == kind:
            if fmt not in ("auto", "", None, kind):
                raise InputError(display, f"looks like {'a Gwyddion' if kind == 'gwy' else 'an ImageJ ROI'} "
                                          f"file, not {fmt}")
            return _read_binary(kind, raw, display, (rows, cols)), kind
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(display, f"not JSON ({err})") from None
    try:
        found = detect_format(doc)
    except InputError:
        raise InputError(display, "not a LabelMe, VIA or COCO file (nor ImageJ ROIs or Gwyddion)") from None
    if fmt not in ("auto", "", None):
        if fmt not in ("labelme", "via", "coco"):
            raise InputError(display, f"unknown format {fmt!r}; choose labelme, via, coco, imagej or gwy")
        if fmt != found:
            raise InputError(display, f"looks like {found}, not {fmt}")
    with tempfile.TemporaryDirectory(prefix="pnn-import-") as tmp:
        path = Path(tmp) / display
        path.write_bytes(raw)
        if found == "labelme":
            from particlesnn.export import labelme

            h, w = doc.get("imageHeight"), doc.get("imageWidth")
            if h is not None and w is not None and (int(h), int(w)) != (rows, cols):
                raise InputError(display, f"made for a {h} x {w} px image, this one is {rows} x {cols} px")
            labels = labelme.read(path, shape=(rows, cols))
        elif found == "via":
            from particlesnn.export import via

            labels = _pick(via.read(path, shape=(rows, cols)), original, display)
        else:
            from particlesnn.export import coco

            labels = _pick(coco.read(path), original, display)
    labels = np.asarray(labels)
    if labels.shape != (rows, cols):
        raise InputError(display, f"made for a {labels.shape[0]} x {labels.shape[1]} px image, "
                                  f"this one is {rows} x {cols} px")
    return labels.astype(np.int32), found


def _read_binary(kind: str, raw: bytes, display: str, shape: tuple[int, int]) -> np.ndarray:
    """Labels from the bytes of an ImageJ ROI zip / ``.roi`` or a Gwyddion file."""
    from particlesnn.export import gwyddion, imagej

    name = {"gwy": "mask.gwy", "imagej": "rois.zip" if raw[:2] == b"PK" else "one.roi"}[kind]
    reader = gwyddion.read if kind == "gwy" else imagej.read
    with tempfile.TemporaryDirectory(prefix="pnn-import-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(raw)
        try:
            return np.asarray(reader(path, shape), dtype=np.int32)
        except InputError as err:
            raise InputError(display, err.problem) from None


def _pick(images: dict[str, np.ndarray], original: str, display: str) -> np.ndarray:
    if not images:
        raise InputError(display, "holds no image")
    if len(images) == 1:
        return next(iter(images.values()))
    png = image_png_name(original)
    stems = {Path(png).stem, Path(original).stem}
    for name, lab in images.items():
        if name == png or Path(name).stem in stems:
            return lab
    raise InputError(display, f"holds {len(images)} images, none named {png}: "
                              f"{', '.join(sorted(images)[:5])}")


def joint_stats(tables: dict[str, tuple[str, pd.DataFrame, dict]], options: dict) -> dict[str, Any]:
    """Joint statistics and per-image diameters of a set's finished images.

    tables : {image id: (display name, particle table, meta)} with meta ``shape`` (rows, cols
        px) and ``pixel_size`` (x, y nm/px or None).
    options : the set's analysis options (``include_border``, ``min_size``, ``max_size``).

    Returns ``{"column", "unit", "joint": {...}, "per_image": [{id, name, ...}],
    "series": [{id, name, values}], "note"}``: ``values`` are the equivalent-circle diameters (in
    ``unit``, nm or px) of the particles in the size statistics, for the histograms; ``note``
    says when some images lack a pixel size, so that the set is pooled in px ("" otherwise).
    """
    from particlesnn import stats

    include_border = bool(options.get("include_border", False))
    frames, images, names = [], {}, {}
    for image_id, (name, df, meta) in tables.items():
        frames.append(df.assign(image=image_id))
        rows, cols = meta.get("shape", [None, None])
        info: dict[str, Any] = {"rows": rows, "cols": cols}
        ps = meta.get("pixel_size")
        if ps:
            info["pixel_x"], info["pixel_y"] = ps
            info["area_nm2"] = rows * cols * ps[0] * ps[1]
        images[image_id] = info
        names[image_id] = name
    if not frames:
        return {"column": None, "unit": None, "joint": {}, "per_image": [], "series": []}
    particles = pd.concat(frames, ignore_index=True)
    # mixed scales (some images without pixel size) fall back to px for every image
    unit = stats.length_unit(particles)
    if unit == "px":
        particles = particles.drop(columns=[c for c in particles.columns if c.endswith(("_nm", "_nm2"))])
        for info in images.values():
            for k in ("pixel_x", "pixel_y", "area_nm2"):
                info.pop(k, None)
    res = stats.summarize_set(particles, images, include_border=include_border,
                              min_diameter=options.get("min_size"),
                              max_diameter=options.get("max_size"))
    col = stats.column(particles, "eq_diameter", unit)
    series = []
    for image_id in tables:
        sub = particles[particles["image"] == image_id]
        kept = stats.select(sub, include_border=include_border, unit=unit,
                            min_diameter=options.get("min_size"), max_diameter=options.get("max_size"))
        series.append({"id": image_id, "name": names[image_id],
                       "values": kept[col].to_numpy(float).tolist() if col else []})
    per_image = []
    for image_id, row in res["per_image"].iterrows():
        d = {"id": image_id, "name": names.get(image_id, str(image_id))}
        d.update({k: v for k, v in row.items() if not isinstance(v, (dict, list))})
        per_image.append(d)
    n_px = sum(1 for _, _, meta in tables.values() if not meta.get("pixel_size"))
    note = (f"mixed scales: {n_px} of {len(tables)} images have no pixel size, so the joint "
            "statistics and histograms are in px (each image's own row and page keep nm)"
            if 0 < n_px < len(tables) else "")
    return {"column": col, "unit": unit, "joint": res["joint"], "per_image": per_image,
            "series": series, "note": note}
