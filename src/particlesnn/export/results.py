"""Write the outputs of an analysis to a folder: per image and for the set.

Per image ``S``: ``S.overlay.png`` (contours and ids on the height map, scale bar in nm),
``S.labels.tif`` (uint16 label image), ``S.scores.txt`` (``label score`` per line),
``S.particles.csv`` and ``S.labelme.json`` (polygons for editing in LabelMe).
For the set: ``particles.csv`` / ``particles.parquet`` (all particles with an ``image``
column), ``summary.csv`` / ``summary.json`` (one row per image and one for the set),
``annotations.coco.json`` and ``annotations.via.json`` (all images, for editing),
``rois/S.roi.zip`` (ImageJ), plots (PNG + SVG) and ``report.html``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from particlesnn.export import coco, imagej, labelme, via
from particlesnn.export.labels import write_labels, write_scores
from particlesnn.export.overlay import render_overlay, write_heightmap_png


def image_row(result, *, source: str | None = None) -> dict[str, Any]:
    """One row of ``summary.csv`` for an analysed image (``pipeline.ImageResult``)."""
    hm = result.heightmap
    row: dict[str, Any] = {
        "image": result.name,
        "source": source if source is not None else (str(hm.source) if hm.source else ""),
        "rows": hm.shape[0], "cols": hm.shape[1],
        "pixel_x_nm": hm.pixel_size[0] if hm.pixel_size else np.nan,
        "pixel_y_nm": hm.pixel_size[1] if hm.pixel_size else np.nan,
        "channel": hm.channel, "polarity": result.polarity,
        "method": result.info.get("method", ""),
    }
    row.update({k: v for k, v in result.summary.items() if np.isscalar(v) or v is None})
    row["seconds"] = round(float(result.seconds), 4)
    row["warnings"] = "; ".join(result.warnings)
    return row


def write_image_outputs(result, outdir: str | Path, *, image_path: str | None = None) -> dict[str, Path]:
    """Write one image's files into ``outdir``; returns {kind: path}."""
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
    paths["labelme"] = labelme.write(outdir / f"{s}.labelme.json", result.labels,
                                     image_path=image_path or f"{s}.image.png",
                                     scores=result.scores)
    if result.labels.max() > 0:  # an ImageJ ROI set cannot be empty
        (outdir / "rois").mkdir(exist_ok=True)
        paths["roi"] = imagej.write(outdir / "rois" / f"{s}.roi.zip", result.labels)
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
    return v


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
    (``stats.summarize_set`` output).
    """
    from particlesnn import plots, stats

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    failed = list(failed)
    tables = []
    for r in results:
        t = r.particles.copy()
        t.insert(0, "image", r.name)
        tables.append(t)
    particles = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame({"image": []})
    if tables:
        particles.attrs = dict(results[0].particles.attrs)
        units = {r.particles.attrs.get("length_unit") for r in results}
        if len(units) > 1:
            # mixed scale: the joint statistics are in px for all images
            particles.attrs["length_unit"] = "px"
    particles.to_csv(outdir / "particles.csv", index=False)
    particles.to_parquet(outdir / "particles.parquet", index=False)

    rows = [image_row(r) for r in results]
    images = pd.DataFrame([{"image": r.name, "rows": r.heightmap.shape[0],
                            "cols": r.heightmap.shape[1],
                            **({"pixel_x": r.levelled.pixel_size[0],
                                "pixel_y": r.levelled.pixel_size[1]}
                               if r.levelled.pixel_size else {})} for r in results])
    if results:
        set_stats = stats.summarize_set(particles, images, include_border=include_border)
    else:  # every input failed: nothing to summarise, but the failures are still reported
        set_stats = {"per_image": pd.DataFrame(), "joint": {"count": 0, "n_images": 0},
                     "length_unit": "px"}
    joint = {k: v for k, v in set_stats["joint"].items() if np.isscalar(v) or v is None}
    summary = pd.DataFrame(rows + [{"image": "ALL", **joint,
                                    "seconds": round(sum(r.seconds for r in results), 4)}])
    for f, why in failed:
        summary.loc[len(summary)] = {"image": Path(f).stem, "source": str(f),
                                     "warnings": f"FAILED: {why}"}
    summary.to_csv(outdir / "summary.csv", index=False)
    (outdir / "summary.json").write_text(json.dumps(_jsonable({
        "images": rows, "set": joint, "failed": [{"file": str(f), "reason": w} for f, w in failed],
        "options": options or {},
    }), indent=2))

    # annotations of the whole set, for editing in external software
    if results:
        imgs = {f"{r.name}.image.png": r.labels for r in results}
        scs = {f"{r.name}.image.png": r.scores for r in results}
        coco.write(outdir / "annotations.coco.json", imgs, scores=scs)
        via.write(outdir / "annotations.via.json", imgs, scores=scs)

    figs = {}
    if len(particles):
        figs["diameter_histogram"] = plots.diameter_histogram(particles, include_border=include_border)
        figs["length_width"] = plots.length_width_scatter(particles, include_border=include_border)
        if any(c.startswith("height_max_") for c in particles.columns):
            figs["height_histogram"] = plots.height_histogram(particles, include_border=include_border)
        if len(results) > 1:
            figs["diameter_per_image"] = plots.set_histograms(particles, include_border=include_border)
    if groups and results:
        groups = {r.name: groups[r.name] for r in results}
        stats.group_table(particles, groups, include_border=include_border).to_csv(outdir / "groups.csv")
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

        entries = []
        for r, row in zip(results, rows):
            notes = list(r.warnings)
            entries.append({"name": r.name, "overlay": outdir / f"{r.name}.overlay.png",
                            "summary": _report_summary(row), "particles": r.particles,
                            "notes": notes})
        for f, why in failed:
            entries.append({"name": Path(f).name, "notes": [f"not analysed: {why}"]})
        write_report(outdir / "report.html", entries,
                     {**_report_summary(joint), "images": len(results), "failed": len(failed),
                      **({f"option {k}": v for k, v in (options or {}).items()})},
                     {k.replace("_", " "): p for k, p in plot_paths.items()})
    return set_stats


def _report_summary(row: dict) -> dict:
    """The headline numbers of a summary row, with readable names."""
    u = row.get("length_unit", "px")
    keys = [("count", "particles"), ("n_sized", "particles in size statistics"),
            (f"d_mean_{u}", f"mean diameter ({u})"), (f"d_sem_{u}", f"SEM diameter ({u})"),
            (f"d_std_{u}", f"std diameter ({u})"),
            (f"d_mid_surface_{u}", f"mid-surface diameter ({u})"),
            ("density_per_um2", "density (per µm²)"), ("density_per_100nm2", "density (per 100 nm²)"),
            ("coverage", "coverage"), ("polarity", "polarity"), ("method", "method"),
            ("seconds", "seconds")]
    return {label: row[k] for k, label in keys if k in row}
