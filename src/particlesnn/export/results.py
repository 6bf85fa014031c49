"""Write the outputs of an analysis to a folder: per image and for the set.

Per image ``S``: ``S.overlay.png`` (contours and ids on the height map, scale bar in nm),
``S.labels.tif`` (uint16 label image), ``S.scores.txt`` (``label score`` per line),
``S.particles.csv``, ``S.particles.parquet`` (the same table, exact types: the set tables are
built from it) and ``S.labelme.json`` (polygons for editing in LabelMe); then, written last and
atomically, ``S.summary.json``: the image's record (summary row, warnings, seconds, the files
written, ``"complete": true``), from which a resumed or distributed run rebuilds the set files
without holding any image in memory (:func:`write_image_record`, :func:`read_image_record`,
:func:`write_set_outputs_from_records`).
For the set: ``particles.csv`` / ``particles.parquet`` (all particles with an ``image``
column), ``summary.csv`` / ``summary.json`` (one row per image and one for the set),
``annotations.coco.json`` and ``annotations.via.json`` (all images, for editing),
``rois/S.roi.zip`` (ImageJ), plots (PNG + SVG) and ``report.html``.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from particlesnn.export import coco, imagej, labelme, via
from particlesnn.export import gwyddion as gwyddion_export
from particlesnn.export.labels import write_labels, write_scores
from particlesnn.export.overlay import render_overlay, write_heightmap_png


def counts_as_integers(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its counts (image rows / cols, particle counts, ``*_n``) as nullable
    integers: the set's ``ALL`` row and failed images leave blanks, which made pandas write
    every count of the column as a float (``256.0`` rows)."""
    out = table.copy()
    for c in out.columns:
        if c in ("rows", "cols", "count", "n_border", "n_sized", "n_images") or c.endswith("_n"):
            v = pd.to_numeric(out[c], errors="coerce")
            if v.notna().any() and (v.dropna() % 1 == 0).all():
                out[c] = v.astype("Int64")
    return out


def image_row(result, *, source: str | None = None) -> dict[str, Any]:
    """One row of ``summary.csv`` for an analysed image (``pipeline.ImageResult``)."""
    hm = result.heightmap
    ps = result.levelled.pixel_size  # the scale measured with (a --pixel-size override included)
    row: dict[str, Any] = {
        "image": result.name,
        "source": source if source is not None else (str(hm.source) if hm.source else ""),
        "rows": hm.shape[0], "cols": hm.shape[1],
        "pixel_x_nm": ps[0] if ps else np.nan,
        "pixel_y_nm": ps[1] if ps else np.nan,
        "channel": hm.channel, "polarity": result.polarity,
        "method": result.info.get("method", ""),
    }
    row.update({k: v for k, v in result.summary.items() if np.isscalar(v) or v is None})
    row["seconds"] = round(float(result.seconds), 4)
    row["warnings"] = "; ".join(result.warnings)
    return row


def write_image_outputs(result, outdir: str | Path, *, image_path: str | None = None,
                        gwyddion: bool = False) -> dict[str, Path]:
    """Write one image's files into ``outdir``; returns {kind: path}. ``gwyddion``: also
    ``gwy/S.gwy`` (the levelled map with the particles as its mask)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    s = result.name
    paths: dict[str, Path] = {}
    flagged = None
    if "fit_status" in result.particles.columns:
        flagged = result.particles.loc[result.particles["fit_status"] != "ok", "label"].tolist()
    render_overlay(result.levelled, result.labels, outdir / f"{s}.overlay.png", flagged=flagged,
                   title=s)
    paths["overlay"] = outdir / f"{s}.overlay.png"
    # the bare height map, as the picture the annotation files refer to (for editing elsewhere)
    paths["image"] = write_heightmap_png(outdir / f"{s}.image.png", result.levelled)
    paths["labels"] = write_labels(outdir / f"{s}.labels.tif", result.labels)
    paths["scores"] = write_scores(outdir / f"{s}.scores.txt", result.scores)
    table = result.particles.copy()
    table.insert(0, "image", s)
    table.to_csv(outdir / f"{s}.particles.csv", index=False)
    paths["particles"] = outdir / f"{s}.particles.csv"
    table.attrs = {}  # the units live in the record (S.summary.json)
    table.to_parquet(outdir / f"{s}.particles.parquet", index=False)
    paths["particles_parquet"] = outdir / f"{s}.particles.parquet"
    paths["labelme"] = labelme.write(outdir / f"{s}.labelme.json", result.labels,
                                     image_path=image_path or f"{s}.image.png",
                                     scores=result.scores)
    roi = outdir / "rois" / f"{s}.roi.zip"
    if result.labels.max() > 0:  # an ImageJ ROI set cannot be empty
        (outdir / "rois").mkdir(exist_ok=True)
        paths["roi"] = imagej.write(roi, result.labels)
    elif roi.exists():  # left from an earlier, interrupted analysis of this image
        roi.unlink()
    gwy = outdir / "gwy" / f"{s}.gwy"
    if gwyddion:
        paths["gwy"] = gwyddion_export.write(gwy, result.levelled, result.labels)
    elif gwy.exists():  # from an earlier run of this folder with --gwyddion
        gwy.unlink()
    return paths


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if not math.isfinite(f) else f
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if v is None or isinstance(v, (str, int, bool)):
        return v
    return str(v)


#: Version of the per-image record layout (``S.summary.json``).
RECORD_VERSION = 1
#: Suffix of the per-image record file.
RECORD_SUFFIX = ".summary.json"
#: Images shown with overlay and particle table in ``report.html``; the others are in the
#: summary tables only (a report of thousands of embedded overlays would not open).
REPORT_MAX_IMAGES = 200
# columns the set statistics, plots and group tables read (prefixes); the full table is
# streamed to particles.csv / .parquet and never held in memory as a whole
_STATS_PREFIXES = ("image", "touches_border", "eq_diameter_", "area_", "length_", "width_",
                   "feret_", "perimeter_", "height_max_", "height_mean_", "volume_",
                   "aspect_ratio", "circularity", "nn_distance_")


_TEXT_FIELDS = ("image", "source", "channel", "polarity", "method", "warnings", "length_unit",
                "detector_profile", "detector_model")


def record_path(outdir: str | Path, name: str) -> Path:
    """The per-image record file ``<outdir>/<name>.summary.json``."""
    return Path(outdir) / f"{name}{RECORD_SUFFIX}"


def image_record(result, paths: Mapping[str, Path], outdir: str | Path, *,
                 source: str | None = None) -> dict[str, Any]:
    """The small per-image record of an analysed image (``pipeline.ImageResult``).

    Holds what the set files need without the image: ``row`` (the image's ``summary.csv``
    row), ``shape`` (rows, cols px), ``pixel_size`` (x, y nm/px of the levelled map or None),
    ``attrs`` (the particle table's units), ``n_particles``, ``warnings``, ``seconds`` (s),
    ``info`` (what the detector decided), ``files`` ({kind: file name relative to
    ``outdir``}, from :func:`write_image_outputs`) and ``complete`` (True). JSON-ready.
    """
    outdir = Path(outdir)
    lev = result.levelled
    row = image_row(result, source=source)
    return _jsonable({
        "version": RECORD_VERSION, "image": result.name, "source": row["source"],
        "row": row, "shape": list(result.heightmap.shape),
        "pixel_size": list(lev.pixel_size) if lev.pixel_size else None,
        "attrs": dict(result.particles.attrs), "n_particles": int(len(result.particles)),
        "polarity": result.polarity, "warnings": list(result.warnings),
        "seconds": float(result.seconds), "info": dict(result.info),
        "files": {k: os.path.relpath(Path(p), outdir).replace(os.sep, "/")
                  for k, p in paths.items()},
        "complete": True,
    })


def slim_record(record: dict[str, Any]) -> dict[str, Any]:
    """The part of a record the set files need, to keep in memory for every image of a run.

    Drops ``info`` and the per-column units (``attrs["units"]``; the set writer re-reads the
    first image's full record), and shares the key strings between records: about 8 kB per
    image instead of 25 kB (``tracemalloc``, 150-column summary row).
    """
    import sys

    out = {sys.intern(k): v for k, v in record.items() if k != "info"}
    out["row"] = {sys.intern(k): v for k, v in record["row"].items()}
    out["attrs"] = {k: v for k, v in (record.get("attrs") or {}).items() if k != "units"}
    return out


def write_image_record(outdir: str | Path, record: dict[str, Any]) -> Path:
    """Write a record (:func:`image_record`) as ``<name>.summary.json``, atomically.

    Written to a temporary file in the same folder, then moved over the final name with
    ``os.replace``: a run killed at any moment leaves either no record or a complete one.
    Call it after every other file of the image is written: the record marks them complete.
    """
    path = record_path(outdir, record["image"])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_jsonable(record), indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_image_record(outdir: str | Path, name: str, *,
                      source: str | None = None) -> dict[str, Any] | None:
    """The record of image ``name`` in ``outdir`` if it is complete and valid, else None.

    Valid: the file parses, has this layout version, ``complete`` is true, names this image
    (and ``source`` when given: the input file it was made from), every file it lists exists,
    and the per-image particle table holds ``n_particles`` rows.
    """
    outdir = Path(outdir)
    path = record_path(outdir, name)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("version") != RECORD_VERSION \
            or rec.get("complete") is not True or rec.get("image") != name:
        return None
    if source is not None and rec.get("source") != str(source):
        return None
    files = rec.get("files")
    if not isinstance(files, dict) or "particles_parquet" not in files:
        return None
    if not all((outdir / f).is_file() for f in files.values()):
        return None
    try:
        import pyarrow.parquet as pq

        n = pq.read_metadata(outdir / files["particles_parquet"]).num_rows
    except Exception:  # unreadable table: not complete
        return None
    return rec if n == rec.get("n_particles") else None


@dataclass
class _Entry:
    """One analysed image as the set writer sees it: small fields plus loaders of the big
    ones (from memory, or from the image's files)."""

    name: str
    row: dict[str, Any]
    shape: tuple[int, int]
    pixel_size: tuple[float, float] | None
    seconds: float
    warnings: list[str]
    attrs: dict[str, Any]
    particles: Callable[[], pd.DataFrame]
    labels: Callable[[], np.ndarray]
    schema: Callable[[], Any]


def _arrow_schema(df: pd.DataFrame):
    import pyarrow as pa

    return pa.Schema.from_pandas(df, preserve_index=False).remove_metadata()


def _result_entry(r) -> _Entry:
    def table():
        t = r.particles.copy()
        t.insert(0, "image", r.name)
        return t

    return _Entry(name=r.name, row=image_row(r), shape=tuple(r.heightmap.shape),
                  pixel_size=r.levelled.pixel_size, seconds=float(r.seconds),
                  warnings=list(r.warnings), attrs=dict(r.particles.attrs), particles=table,
                  labels=lambda: r.labels, schema=lambda: _arrow_schema(table()))


def _record_entry(rec: dict[str, Any], outdir: Path) -> _Entry:
    files = rec["files"]

    def table():
        return pd.read_parquet(outdir / files["particles_parquet"])

    def labels():
        from particlesnn.export.labels import read_labels

        return read_labels(outdir / files["labels"])

    def schema():
        import pyarrow.parquet as pq

        return pq.read_schema(outdir / files["particles_parquet"]).remove_metadata()

    attrs = dict(rec.get("attrs") or {})
    if attrs.get("pixel_size") is not None:
        attrs["pixel_size"] = tuple(attrs["pixel_size"])
    # JSON has no NaN: the record holds null for NaN numbers; text fields keep None
    row = {k: (np.nan if v is None and k not in _TEXT_FIELDS else v)
           for k, v in rec["row"].items()}
    ps = rec.get("pixel_size")
    return _Entry(name=rec["image"], row=row, shape=tuple(rec["shape"]),
                  pixel_size=tuple(ps) if ps else None, seconds=float(rec.get("seconds", 0.0)),
                  warnings=list(rec.get("warnings") or []), attrs=attrs, particles=table,
                  labels=labels, schema=schema)


def _scores_from_table(t: pd.DataFrame) -> np.ndarray:
    """Scores array (index k-1 = particle k) from a particle table's ``label``/``score``."""
    if not len(t) or "score" not in t.columns:
        return np.zeros(0)
    lab = t["label"].to_numpy(np.int64)
    out = np.full(int(lab.max()), np.nan)
    out[lab - 1] = t["score"].to_numpy(float)
    return out


class _LazyLabels(Mapping):
    """{``S.image.png``: labels} read one image at a time, for the COCO and VIA writers, which
    walk the mapping once: only one label image is in memory at a time."""

    def __init__(self, entries: Sequence[_Entry]):
        self._by = {f"{e.name}.image.png": e for e in entries}

    def __getitem__(self, key):
        return self._by[key].labels()

    def __iter__(self) -> Iterator[str]:
        return iter(self._by)

    def __len__(self) -> int:
        return len(self._by)


def write_set_outputs(results: Sequence, outdir: str | Path, *, options: dict | None = None,
                      failed: Iterable[tuple[str, str]] = (), include_border: bool = False,
                      groups: dict[str, str] | None = None,
                      report: bool = True) -> dict[str, Any]:
    """Write the set files from analysed images (``pipeline.ImageResult`` list).

    ``failed`` lists (file, reason) of inputs that could not be analysed; they appear in the
    summary and the report. ``groups`` maps image name -> group (sample, treatment): then
    ``groups.csv`` (means ± SEM per group), ``group_tests.csv`` (Kolmogorov-Smirnov and
    Mann-Whitney tests of the diameter distributions between every pair of groups) and the
    overlaid per-group histogram are written too. Returns the set statistics
    (``stats.summarize_set`` output). For results already written to disk (a large or a
    resumed run) use :func:`write_set_outputs_from_records`, which holds no image in memory.
    """
    return _write_set([_result_entry(r) for r in results], Path(outdir), options=options,
                      failed=failed, include_border=include_border, groups=groups,
                      report=report)


def write_set_outputs_from_records(records: Sequence[dict[str, Any]], outdir: str | Path, *,
                                   options: dict | None = None,
                                   failed: Iterable[tuple[str, str]] = (),
                                   include_border: bool = False,
                                   groups: dict[str, str] | None = None,
                                   report: bool = True) -> dict[str, Any]:
    """The set files of :func:`write_set_outputs`, built from the per-image files on disk.

    ``records`` are per-image records (:func:`image_record` / :func:`read_image_record`) of
    images whose files lie in ``outdir``, in the order the set files list them. The per-image
    particle tables are streamed one at a time into ``particles.csv`` / ``particles.parquet``;
    only the columns the statistics need (sizes, heights, ``image``, ``touches_border``, about
    100 bytes per particle) are gathered for the set statistics and plots; label images are
    read one at a time for the COCO and VIA files. The report embeds the first
    :data:`REPORT_MAX_IMAGES` images. Returns the set statistics.
    """
    outdir = Path(outdir)
    records = list(records)
    if records and "units" not in (records[0].get("attrs") or {}):  # a slim record
        full = read_image_record(outdir, records[0]["image"])
        if full is not None:
            records[0] = {**records[0], "attrs": full["attrs"]}
    return _write_set([_record_entry(r, outdir) for r in records], outdir, options=options,
                      failed=failed, include_border=include_border, groups=groups,
                      report=report)


def _stream_particles(entries: Sequence[_Entry], outdir: Path
                      ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Write particles.csv and particles.parquet one image at a time; return the columns
    the statistics need, for all particles, and the scores per image ({``S.image.png``:
    array, index k-1 = particle k})."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: list[str] = ["image"]
    schema = pa.schema([("image", pa.null())])
    for i, e in enumerate(entries):  # one schema at a time: the union of the columns
        sc = e.schema()
        columns += [c for c in sc.names if c not in columns]
        schema = sc if i == 0 else pa.unify_schemas([schema, sc], promote_options="permissive")
    attrs: dict[str, Any] = {}
    if entries:
        attrs = dict(entries[0].attrs)
        if len({e.attrs.get("length_unit") for e in entries}) > 1:
            # mixed scale: the joint statistics are in px for all images
            attrs["length_unit"] = "px"
        if len({_pixel_key(e.attrs.get("pixel_size")) for e in entries}) > 1:
            # no one pixel size for the set: each image's own is in summary.csv
            attrs.pop("pixel_size", None)
    # the units travel in the Parquet file as pandas stores DataFrame.attrs
    schema = pa.schema([schema.field(c) for c in columns],
                       metadata={"PANDAS_ATTRS": json.dumps(_jsonable(attrs))})
    keep = [c for c in columns if c.startswith(_STATS_PREFIXES)]
    parts, chunks, scores = [], [], {}
    csv_path = outdir / "particles.csv"
    with pq.ParquetWriter(outdir / "particles.parquet", schema) as writer:
        if not entries:
            writer.write_table(schema.empty_table())
            pd.DataFrame({"image": []}).to_csv(csv_path, index=False)
        for i, e in enumerate(entries):
            t = e.particles()
            t.reindex(columns=columns).to_csv(csv_path, index=False, header=(i == 0),
                                              mode="w" if i == 0 else "a")
            at = pa.Table.from_pandas(t, preserve_index=False)
            cols = [at.column(c).cast(schema.field(c).type) if c in at.column_names
                    else pa.nulls(len(t), schema.field(c).type) for c in columns]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))
            parts.append(t[[c for c in keep if c in t.columns]])
            scores[f"{e.name}.image.png"] = _scores_from_table(t)
            del t, at, cols
            if len(parts) == 512:  # few large frames rather than many small ones
                chunks.append(pd.concat(parts, ignore_index=True))
                parts = []
    chunks += parts
    particles = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame({"image": []})
    particles.attrs = attrs
    return particles, scores


def _pixel_key(pixel_size) -> tuple | None:
    """A hashable form of a pixel size (nm/px, x and y) or None."""
    return None if pixel_size is None else tuple(float(v) for v in pixel_size)


def _write_set(entries: Sequence[_Entry], outdir: Path, *, options: dict | None,
               failed: Iterable[tuple[str, str]], include_border: bool,
               groups: dict[str, str] | None, report: bool) -> dict[str, Any]:
    from particlesnn import plots, stats

    from collections import Counter

    names = Counter(e.name for e in entries)
    if len(names) < len(entries):  # their files would have overwritten one another
        dup = sorted(n for n, k in names.items() if k > 1)
        raise ValueError(f"image names must be unique in a set; repeated: {', '.join(dup[:5])}")
    outdir.mkdir(parents=True, exist_ok=True)
    failed = list(failed)
    particles, scores = _stream_particles(entries, outdir)

    rows = [e.row for e in entries]
    images = pd.DataFrame([{"image": e.name, "rows": e.shape[0], "cols": e.shape[1],
                            **({"pixel_x": e.pixel_size[0], "pixel_y": e.pixel_size[1]}
                               if e.pixel_size else {})} for e in entries])
    if entries:
        set_stats = stats.summarize_set(particles, images, include_border=include_border)
    else:  # every input failed: nothing to summarise, but the failures are still reported
        set_stats = {"per_image": pd.DataFrame(), "joint": {"count": 0, "n_images": 0},
                     "length_unit": "px"}
    joint = {k: v for k, v in set_stats["joint"].items() if np.isscalar(v) or v is None}
    summary = pd.DataFrame(rows + [{"image": "ALL", **joint,
                                    "seconds": round(sum(e.seconds for e in entries), 4)}])
    for f, why in failed:
        summary.loc[len(summary)] = {"image": Path(f).stem, "source": str(f),
                                     "warnings": f"FAILED: {why}"}
    counts_as_integers(summary).to_csv(outdir / "summary.csv", index=False)
    (outdir / "summary.json").write_text(json.dumps(_jsonable({
        "images": rows, "set": joint, "failed": [{"file": str(f), "reason": w} for f, w in failed],
        "options": options or {},
    }), indent=2))

    # annotations of the whole set, for editing in external software (one image at a time)
    if entries:
        imgs = _LazyLabels(entries)
        coco.write(outdir / "annotations.coco.json", imgs, scores=scores)
        via.write(outdir / "annotations.via.json", imgs, scores=scores)

    figs = {}
    if len(particles):
        figs["diameter_histogram"] = plots.diameter_histogram(particles, include_border=include_border)
        figs["length_width"] = plots.length_width_scatter(particles, include_border=include_border)
        if any(c.startswith("height_max_") for c in particles.columns):
            figs["height_histogram"] = plots.height_histogram(particles, include_border=include_border)
        if len(entries) > 1:
            figs["diameter_per_image"] = plots.set_histograms(particles, include_border=include_border)
    if groups and entries:
        groups = {e.name: groups[e.name] for e in entries}
        stats.group_table(particles, groups, include_border=include_border,
                          per_image=set_stats.get("per_image")).to_csv(outdir / "groups.csv")
        if len(set(groups.values())) > 1:
            stats.compare_groups(particles, groups, include_border=include_border).to_csv(
                outdir / "group_tests.csv", index=False)
        if len(particles):
            figs["diameter_by_group"] = plots.group_histograms(particles, groups,
                                                                include_border=include_border)
    plot_paths = {}
    for name, fig in figs.items():
        plots.save(fig, outdir / name)
        plot_paths[name] = outdir / f"{name}.png"

    if report:
        from particlesnn.export.report import write_report

        shown = entries[:REPORT_MAX_IMAGES]
        report_entries = []
        for e in shown:
            t = e.particles().drop(columns=["image"])
            report_entries.append({"name": e.name, "overlay": outdir / f"{e.name}.overlay.png",
                                   "summary": _report_summary(e.row), "particles": t,
                                   "notes": list(e.warnings)})
        if len(entries) > len(shown):
            report_entries.append({"name": f"{len(entries) - len(shown)} more image(s)",
                                   "notes": [f"only the first {len(shown)} images are shown; "
                                             "all are in summary.csv and particles.csv"]})
        for f, why in failed:
            report_entries.append({"name": Path(f).name, "notes": [f"not analysed: {why}"]})
        write_report(outdir / "report.html", report_entries,
                     {**_report_summary(joint), "images": len(entries), "failed": len(failed),
                      **({f"option {k}": _option_text(k, v) for k, v in (options or {}).items()})},
                     {k.replace("_", " "): p for k, p in plot_paths.items()})
    return set_stats


#: What an option left unset (None) means, for the report (a blank cell said nothing).
_UNSET = {"diameter": "none (multi-scale)", "pixel_size": "from the file",
          "min_size": "none", "max_size": "none", "refine": "auto (height maps in nm)",
          "channel": "default (height or topography; a picture's grey or colours; a stack's plane 0)",
          "scale_bar": "none", "model": "shipped default"}


def _option_text(key: str, value):
    """An analysis option as the report shows it: what an unset one means (:data:`_UNSET`)."""
    return _UNSET.get(key, "unset") if value is None else value


def _report_summary(row: dict) -> dict:
    """The headline numbers of a summary row, with readable names."""
    u = row.get("length_unit", "px")
    keys = [("count", "particles"), ("n_sized", "particles in size statistics"),
            (f"d_mean_{u}", f"mean diameter ({u})"), (f"d_sem_{u}", f"SEM diameter ({u})"),
            (f"d_std_{u}", f"std diameter ({u})"),
            (f"d_mid_surface_{u}", f"mid-surface diameter ({u})"),
            ("density_per_um2", "density (per µm²)"),
            ("density_per_um2_poisson", "counting error of the density (per µm², Poisson)"),
            ("density_per_um2_sem", "standard error of the images' densities (per µm²)"),
            ("density_per_100nm2", "density (per 100 nm²)"),
            ("coverage", "coverage"),
            (f"nn_distance_{u}_mean", f"mean nearest-neighbour distance ({u})"),
            ("clark_evans_r", "Clark-Evans ratio (1 random, <1 clustered, >1 regular)"),
            ("polarity", "polarity"), ("method", "method"),
            ("detector_model", "detector model"), ("detector_profile", "detector profile"),
            ("seconds", "seconds")]
    return {label: row[k] for k, label in keys if k in row}
