"""Command ``particlesnn evaluate``: score predictions against ground truth.

Predictions: a folder as written by ``particlesnn detect`` (``S.labels.tif`` and optionally
``S.scores.txt``). Ground truth: a folder of instance label images, a YOLO folder
(``images/`` + ``labels/``), a COCO JSON or a LabelMe folder; matched by file stem.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import typer

from particlesnn.cli._app import app, make_console
from particlesnn.errors import InputError

# (column, header, format) for the terminal table
_COLUMNS = [
    ("n_true", "true", "d"), ("n_pred", "pred", "d"),
    ("centre_precision", "ctr P", ".3f"), ("centre_recall", "ctr R", ".3f"), ("centre_f1", "ctr F1", ".3f"),
    ("iou_f1", "IoU F1", ".3f"), ("mean_matched_iou", "mIoU", ".3f"), ("pq", "PQ", ".3f"),
    ("map_bbox", "mAP box", ".3f"), ("map_segm", "mAP mask", ".3f"), ("size_accuracy", "size acc", ".3f"),
]


def _fmt(v: Any, f: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(int(v), f) if f == "d" else format(float(v), f)


def _clean(v: Any) -> Any:
    """JSON-safe value (NaN -> None, numpy scalars -> Python)."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _by_truth_names(preds: dict, gts: dict, where: Path) -> dict:
    """``preds`` with a prediction renamed to the truth's image name where ``detect`` named it
    apart because several inputs shared the stem (``NAME_EXT``, ``FOLDER_NAME``,
    ``FOLDER_NAME_EXT``: :func:`~particlesnn.cli.analyze_cmd.output_names`) and it is the only
    one so named. Several (the same image in several formats, say) raise InputError."""
    out = dict(preds)
    for g in gts:
        if g in preds:
            continue
        cands = [p for p in preds if p not in gts and (p.startswith(f"{g}_") or p.endswith(f"_{g}")
                                                        or f"_{g}_" in p)]
        if len(cands) == 1:
            out[g] = out.pop(cands[0])
        elif len(cands) > 1:
            raise InputError(where, f"several predictions for the image {g!r} ({', '.join(sorted(cands)[:4])}): "
                                    "predict one file per image (e.g. only its .gsf files)")
    return out


def _refined(labels_path: Path) -> bool:
    """Whether ``analyze`` refined this prediction's outlines (its ``S.summary.json`` says so)."""
    name = labels_path.name
    stem = name[:-len(".labels.tif")] if name.endswith(".labels.tif") else labels_path.stem
    try:
        doc = json.loads(labels_path.with_name(f"{stem}.summary.json").read_text())
        return bool((doc.get("row") or {}).get("refined"))
    except (OSError, ValueError, AttributeError):
        return False


def run_evaluation(pred: Path, gt: Path, out: Path | None = None, coco: bool = True):
    """Evaluate a prediction folder against a ground-truth set.

    Returns ``(per_image DataFrame, overall dict, missing)`` where ``missing`` lists
    ``("no ground truth" | "no prediction", stem)``. Writes ``evaluation.csv`` (per image) and
    ``evaluation.json`` (overall + per image) into ``out`` when given.
    """
    from particlesnn.evaluate import evaluate_set
    from particlesnn.io.groundtruth import read_groundtruth, read_prediction_folder

    preds = read_prediction_folder(pred)
    gts = read_groundtruth(gt, shapes={s: tuple(v[0].shape) for s, v in preds.items()})
    preds = _by_truth_names(preds, gts, pred)
    common = sorted(set(preds) & set(gts))
    missing = [("no ground truth", s) for s in sorted(set(preds) - set(gts))]
    missing += [("no prediction", s) for s in sorted(set(gts) - set(preds))]
    if not common:
        raise InputError(pred, f"no prediction matches a ground-truth image by name "
                               f"(predictions: {sorted(preds)[:3]}..., truth: {sorted(gts)[:3]}...)")
    items = []
    for s in common:
        labels, scores, path = preds[s]
        g = gts[s]
        if tuple(labels.shape) != tuple(g.shape):
            raise InputError(path, f"prediction is {labels.shape[1]}x{labels.shape[0]} px but the truth "
                                   f"of {s} is {g.shape[1]}x{g.shape[0]} px")
        items.append({"pred": labels, "truth": g.truth, "scores": scores, "name": s})
    df, overall = evaluate_set(items, coco=coco, per_image_coco=coco)
    # analyze's half-height outlines sit inside a truth drawn at the particles' foot
    overall["refined_predictions"] = sum(_refined(preds[s][2]) for s in common)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        df.to_csv(out / "evaluation.csv", index=False)
        doc = {"pred": str(pred), "gt": str(gt),
               "overall": {k: _clean(v) for k, v in overall.items()},
               "per_image": [{k: _clean(v) for k, v in r.items()} for r in df.to_dict("records")],
               "missing": [{"why": w, "name": n} for w, n in missing]}
        (out / "evaluation.json").write_text(json.dumps(doc, indent=2))
    return df, overall, missing


@app.command()
def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Folder of predictions: S.labels.tif (+ S.scores.txt)."),
    gt: Path = typer.Option(..., "--gt", help="Ground truth: label-image folder, YOLO folder "
                                              "(images/ + labels/), COCO .json, LabelMe folder, or a "
                                              "folder of ImageJ ROI zips / Gwyddion masks."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for evaluation.csv and evaluation.json."),
    coco: bool = typer.Option(True, "--coco/--no-coco", help="Compute COCO mAP (pycocotools)."),
) -> None:
    """Score predictions against ground truth: centre rule, IoU>=0.5 matching, COCO mAP, size accuracy."""
    from rich import box
    from rich.table import Table

    df, overall, missing = run_evaluation(pred, gt, out, coco=coco)
    console = make_console()
    truth_kind = "boxes" if (df["truth"] == "boxes").all() else "masks"
    table = Table(title=f"particlesnn evaluate ({len(df)} images, truth: {truth_kind})",
                  box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("image", overflow="ellipsis", no_wrap=True, min_width=7, max_width=28)
    for _, head, _ in _COLUMNS:
        table.add_column(head, justify="right", no_wrap=True, min_width=max(len(head), 5))
    for r in df.to_dict("records"):
        table.add_row(str(r["name"]), *(_fmt(r.get(k), f) for k, _, f in _COLUMNS))
    table.add_section()
    table.add_row("[bold]overall[/bold]", *(_fmt(overall.get(k), f) for k, _, f in _COLUMNS))
    console.print(table)
    console.print(
        f"centre rule: TP {overall['centre_tp']}  FP {overall['centre_fp']}  FN {overall['centre_fn']};  "
        f"IoU>=0.5: TP {overall['iou_tp']}  FP {overall['iou_fp']}  FN {overall['iou_fn']}  "
        "(overall ratios from summed counts; mAP@[.5:.95] at 500 detections; size acc = mean per image)")
    if overall.get("refined_predictions"):
        console.print(
            f"[yellow]note: {overall['refined_predictions']} of {len(df)} predictions are analyze's "
            "refined outlines (the half-height cross-section of a Gaussian fit). A truth drawn "
            "at the particles' foot, as synth's labels and most annotators draw it, holds them "
            "inside: IoU, mAP and size accuracy come out low, the centre rule not. To score "
            "the detector's outlines, run `particlesnn detect` or `analyze --no-refine`.[/yellow]")
    for reason in ("no ground truth", "no prediction"):
        names = [n for w, n in missing if w == reason]
        if names:
            shown = ", ".join(names[:8]) + (f" ... (+{len(names) - 8})" if len(names) > 8 else "")
            console.print(f"[yellow]skipped {len(names)} image(s) with {reason}: {shown}[/yellow]")
    if out is not None:
        console.print(f"wrote {Path(out) / 'evaluation.csv'} and {Path(out) / 'evaluation.json'}")
