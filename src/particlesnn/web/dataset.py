"""The curated data set of corrected images: export from the web store, ready for training.

Every correction made in the web editor (delete, add, redraw, merge, split) or re-imported
from a LabelMe / VIA / COCO / ImageJ / Gwyddion file is a new label-image version of the image, logged in the
``edits`` table with who, when and what (:mod:`particlesnn.web.db`). An image whose current
version is not the analysis as computed (version 0) is a *corrected image*; its current label
image is the annotation.

Layout written by :func:`write_dataset` (read by ``particlesnn train --from DIR`` and by
:func:`particlesnn.training.data.load_source`)::

    DIR/annotations.json     COCO instances (polygons, x y px, corner convention); every image
                             entry also holds pixel_size_nm, unit, height_file,
                             split ("train" / "heldout") and the provenance (image id,
                             version, edited_by, edited_at, edits); "info" holds the counts,
                             the creation time and the held-out rule
    DIR/images/NAME.png      levelled map, particles bright, 16-bit grey (0.5-99.5 % stretch)
    DIR/heights/NAME.tif     the same map as float32 heights (nm for SPM data)

(The only JSON file in DIR, so that the folder itself is a training source.)

Held-out rule (the one :mod:`particlesnn.training.data` applies to every file source): COCO
image ids sorted as text, every 4th (index 0, 4, 8, ...) is held out. Ids are
``100000 + the id of the image's first edit``: all have six digits, so text order is the order
in which images were first corrected and an image keeps its split when more are corrected.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap

#: First COCO image id (ids are ID_BASE + first edit id).
ID_BASE = 100000


def heldout_ids(ids: Iterable[Any]) -> set[str]:
    """Ids (as text) held out for evaluation (:func:`particlesnn.model.registry.heldout_ids`)."""
    from particlesnn.model.registry import heldout_ids as rule

    return rule(ids)


def _png16(data: np.ndarray) -> np.ndarray:
    """uint16 rendering of a map: 0.5-99.5 percentile stretch (NaN -> 0)."""
    a = np.asarray(data, np.float64)
    fin = np.isfinite(a)
    lo, hi = (np.percentile(a[fin], [0.5, 99.5]) if fin.any() else (0.0, 1.0))
    if not hi > lo:
        hi = lo + 1.0
    return np.round(np.clip((np.where(fin, a, lo) - lo) / (hi - lo), 0, 1) * 65535).astype(np.uint16)


def _safe(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "image"
    return stem[:80]


def write_dataset(out: str | Path, items: list[dict], *, description: str = "particlesnn corrections"
                  ) -> dict[str, Any]:
    """Write a training data set (layout in the module docstring).

    Parameters
    ----------
    out : folder to write (created; an existing ``annotations.json`` is replaced).
    items : one dict per image: ``id`` (int, unique; COCO image id), ``name`` (file stem
        wanted), ``levelled`` (:class:`HeightMap`, particles bright; heights in its unit,
        ``pixel_size`` nm/px or None), ``labels`` ((rows, cols) int, 0 = background), and
        optional ``meta`` (dict of provenance written into the COCO image entry).

    Returns the manifest (counts; also written as the COCO file's ``info``).
    """
    import tifffile
    from PIL import Image

    from particlesnn.export import coco as coco_io
    from particlesnn.web.db import utcnow

    out = Path(out)
    if not items:
        raise InputError(out, "no corrected image to export (edit or re-import outlines first)")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "heights").mkdir(parents=True, exist_ok=True)
    held = heldout_ids(it["id"] for it in items)
    used: set[str] = set()
    by_file: dict[str, np.ndarray] = {}
    entries: dict[str, dict] = {}
    for it in items:
        hm: HeightMap = it["levelled"]
        lab = np.asarray(it["labels"], np.int32)
        if lab.shape != hm.shape:
            raise InputError(out, f"image {it['name']}: labels {lab.shape} != map {hm.shape}")
        stem, k = _safe(Path(str(it["name"])).stem), 2
        base = stem
        while stem in used:
            stem, k = f"{base}_{k}", k + 1
        used.add(stem)
        fname = f"images/{stem}.png"
        Image.fromarray(_png16(hm.data)).save(out / fname)
        tifffile.imwrite(out / "heights" / f"{stem}.tif", np.asarray(hm.data, np.float32))
        by_file[fname] = lab
        ps = hm.pixel_size[0] if hm.pixel_size else None
        entries[fname] = {"id": int(it["id"]), "pixel_size_nm": ps, "unit": hm.unit,
                          "height_file": f"heights/{stem}.tif",
                          "split": "heldout" if str(it["id"]) in held else "train",
                          **(it.get("meta") or {})}
    doc = coco_io.to_dict(by_file, description=description)
    remap = {}
    for im in doc["images"]:
        extra = entries[im["file_name"]]
        remap[im["id"]] = extra["id"]
        im.update(extra)
    for a in doc["annotations"]:
        a["image_id"] = remap[a["image_id"]]
    manifest = {
        "description": description,
        "version": "1.0",
        "created": utcnow(),
        "images": len(doc["images"]),
        "particles": len(doc["annotations"]),
        "train_images": sum(1 for e in entries.values() if e["split"] == "train"),
        "heldout_images": sum(1 for e in entries.values() if e["split"] == "heldout"),
        "heldout_rule": "image ids sorted as text, every 4th (index 0, 4, ...)",
    }
    doc["info"] = manifest
    (out / "annotations.json").write_text(json.dumps(_jsonable(doc), indent=1))
    return manifest


def _jsonable(v: Any) -> Any:
    from particlesnn.web.store import to_jsonable

    return to_jsonable(v)


def corrected_items(sessions, data_dir: Path) -> list[dict]:
    """The corrected images of a web store as :func:`write_dataset` items.

    An image counts when it is analysed (``done``) and its current version is not version 0
    (the analysis as computed); undoing every edit takes it out again. Provenance: the image
    and upload ids, the file's name, the version, who made the last edit and when, and the
    number of edits (undo entries not counted).
    """
    from sqlalchemy import select

    from particlesnn.web import store
    from particlesnn.web.db import DONE, EditRow, ImageRow

    items = []
    with sessions() as s:
        rows = s.scalars(select(ImageRow).where(ImageRow.status == DONE, ImageRow.version != 0))
        for row in rows:
            edits = list(s.scalars(select(EditRow).where(EditRow.image_id == row.id)
                                   .order_by(EditRow.id)))
            if not edits:
                continue
            made = [e for e in edits if e.action != "undo"]
            last = edits[-1]
            folder = store.image_dir(data_dir, row.id)
            labels, _, _, _ = store.load_version(folder, row.version)
            items.append({
                "id": ID_BASE + edits[0].id,
                "name": row.original_name,
                "levelled": store.load_levelled(folder),
                "labels": labels,
                "meta": {"source_image_id": row.id, "set_id": row.set_id,
                         "original_name": row.original_name, "version": row.version,
                         "edited_by": last.user, "edited_at": last.created,
                         "edits": len(made),
                         "actions": sorted({e.action for e in made})},
            })
    items.sort(key=lambda it: it["id"])
    return items


def export_dataset(data_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Export every corrected image of the web store in ``data_dir`` to ``out``.

    ``data_dir`` is the server's data folder (holding ``db.sqlite3``). Returns the manifest.
    Raises ``InputError`` when there is no store or no corrected image.
    """
    from particlesnn.web.db import make_sessionmaker

    data_dir = Path(data_dir)
    db = data_dir / "db.sqlite3"
    if not db.is_file():
        raise InputError(data_dir, "no particlesnn web store here (db.sqlite3 missing)")
    sessions = make_sessionmaker(db)
    return write_dataset(out, corrected_items(sessions, data_dir),
                         description=f"particlesnn corrections from {data_dir}")


def corrected_summary(sessions) -> dict[str, Any]:
    """The corrected images of a web store for the pages: ``counts`` (``images``,
    ``particles``, ``heldout``) and ``images`` (id, name, page, version, particles, edits,
    edited_by, edited_at, split), newest correction first."""
    from sqlalchemy import select

    from particlesnn.web.db import DONE, EditRow, ImageRow

    rows = []
    with sessions() as s:
        for row in s.scalars(select(ImageRow).where(ImageRow.status == DONE, ImageRow.version != 0)):
            edits = list(s.scalars(select(EditRow).where(EditRow.image_id == row.id)
                                   .order_by(EditRow.id)))
            if not edits:
                continue
            made = [e for e in edits if e.action != "undo"]
            cur = next((e for e in reversed(edits) if e.version == row.version), edits[-1])
            rows.append({"id": row.id, "name": row.original_name, "page": f"/images/{row.id}",
                         "coco_id": ID_BASE + edits[0].id, "version": row.version,
                         "particles": int(cur.count_after), "edits": len(made),
                         "actions": sorted({e.action for e in made}),
                         "edited_by": edits[-1].user, "edited_at": edits[-1].created})
    held = heldout_ids(r["coco_id"] for r in rows)
    for r in rows:
        r["split"] = "heldout" if str(r["coco_id"]) in held else "train"
    rows.sort(key=lambda r: r["edited_at"], reverse=True)
    return {"counts": {"images": len(rows), "particles": sum(r["particles"] for r in rows),
                       "heldout": len(held)}, "images": rows}
