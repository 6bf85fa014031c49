"""Commands: ``detect`` (find particles), ``train`` and ``export-onnx`` (the neural detector).

``train`` and ``export-onnx`` need torch (``pip install particlesnn[train]``); it is imported
only inside those commands, through :mod:`particlesnn.training`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperCommand

from particlesnn.cli._app import app, make_console, say_failed

TRAIN_HINT = "error: training needs torch: pip install particlesnn[train]"


def _training():
    try:
        import particlesnn.training as training
    except ImportError:
        print(TRAIN_HINT, file=sys.stderr)
        raise typer.Exit(code=1)
    return training


@app.command()
def detect(
    files: List[str] = typer.Argument(..., help="Image / SPM files, folders or globs to process."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    diameter: Optional[float] = typer.Option(
        None, help="Typical particle diameter: nm when the file has a pixel size, else px."),
    method: str = typer.Option("model", help="model | threshold | watershed"),
    model: Optional[str] = typer.Option(None, help="Model folder or shipped model name."),
    profile: str = typer.Option("auto", help="Detector profile: auto (chosen by content) | "
                                "standard | textured (small particles on a lumpy support)."),
    polarity: str = typer.Option("auto", help="auto | bright (particles brighter than the "
                                 "background) | dark."),
    channel: Optional[str] = typer.Option(None, help="Channel to detect on (default: height/"
                                          "topography; a TIFF stack's plane number)."),
) -> None:
    """Find particles: write OUT/STEM.labels.tif (uint16) and OUT/STEM.scores.txt per file.

    A file that cannot be read or segmented is named on one line (``skipped NAME: problem``)
    and the others go on; the exit status is then 1 (2 for a bad option)."""

    from particlesnn.cli.analyze_cmd import expand_inputs, output_names
    from particlesnn.errors import InputError

    if method not in ("model", "threshold", "watershed"):
        raise InputError(None, f"unknown method {method!r} (use model, threshold or watershed)")
    from particlesnn.pipeline import PROFILES

    if profile not in PROFILES:
        raise InputError(None, f"unknown profile {profile!r} (use {', '.join(PROFILES)})")
    if polarity not in ("auto", "bright", "dark"):
        raise InputError(None, f"unknown polarity {polarity!r} (use auto, bright or dark)")
    paths = expand_inputs(files)
    if not paths:
        raise InputError(None, f"{', '.join(files)}: no files of a supported format")
    det = None
    if method == "model":
        from particlesnn.model import load_model

        det = load_model(model)  # a missing model folder stops the command before any file
    out.mkdir(parents=True, exist_ok=True)
    err = make_console(stderr=True)
    failed = 0
    for f, name in zip(paths, output_names(paths)):
        try:
            _detect_one(f, out, method, det, diameter, profile, polarity, name, channel)
        except InputError as e:
            failed += 1
            say_failed(err, f, e.problem, alone=len(paths) == 1)
    if failed:
        raise typer.Exit(code=1)


def _detect_one(f: Path, out: Path, method: str, det, diameter, profile: str, polarity: str,
                stem: str, channel: str | None = None) -> None:
    """``detect`` on one file: write ``stem``'s label image and scores, print one line (``stem``:
    the file's, or :func:`~particlesnn.cli.analyze_cmd.output_names`' where stems repeat)."""
    import numpy as np
    import tifffile

    from particlesnn.errors import InputError
    from particlesnn.io import in_file_frame, read
    from particlesnn.preprocess import level
    from particlesnn.segment import segment_oriented

    hm = read(f, channel=channel)
    if method == "model":
        _, used, seg = segment_oriented(level(hm), polarity, "model",
                                        diameter=diameter, model=det, profile=profile)
    else:
        _, used, seg = segment_oriented(level(hm), polarity, method)
    if seg.labels.max() > 65535:
        raise InputError(f, f"{int(seg.labels.max())} particles do not fit a uint16 label image")
    # the file's height and width, an unfinished scan's empty lines as background
    tifffile.imwrite(out / f"{stem}.labels.tif", in_file_frame(seg.labels, hm).astype(np.uint16))
    with open(out / f"{stem}.scores.txt", "w") as fh:
        for k, s in enumerate(np.asarray(seg.scores), start=1):
            fh.write(f"{k} {float(s):.4f}\n")
    prof = (f" (model {seg.info['model']}, profile {seg.info['profile']}, polarity {used})"
            if seg.info.get("profile") else f" (polarity {used})")
    notes = "".join(f" (note: {w})" for w in hm.metadata.get("warnings", []))
    typer.echo(f"{f}: {seg.count} particles{prof} -> {out / (stem + '.labels.tif')}{notes}")


def _check_sources(data: list[str]) -> None:
    """Each ``--data`` source exists, is of a kind training reads and holds an annotated image:
    else InputError (exit 2) before any work, rather than half an hour of training without it."""
    from particlesnn.errors import InputError
    from particlesnn.training.data import load_source

    for src in data:
        if not Path(src).exists():
            raise InputError(src, "no such file or folder (--data)")
        try:
            found = load_source(src, "all", limit=1)
        except ValueError as err:
            raise InputError(src, str(err).removeprefix(f"{Path(src)}: ")) from None
        if not found:
            raise InputError(src, "no annotated image found (--data)")


class _TrainCommand(TyperCommand):
    """``--finetune`` may come without a value: it then means the shipped model for the data's
    kind (``"shipped"``: :func:`particlesnn.training.finetune.shipped_start`)."""

    def parse_args(self, ctx, args):  # noqa: D102
        args = list(args)
        for i, a in enumerate(args):
            if a == "--finetune" and (i + 1 == len(args) or args[i + 1].startswith("-")):
                args.insert(i + 1, "shipped")
                break
        return super().parse_args(ctx, args)


@app.command(cls=_TrainCommand)
def train(
    data: List[str] = typer.Option([], "--data", help="Training data: particlesnn synth folders, "
                                   "images/+labels/ folders, COCO JSON, LabelMe folders (e.g. "
                                   "analyze's output, corrected; repeatable)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    minutes: Optional[float] = typer.Option(
        None, help="Wall-clock budget of the optimisation, min (default 30; 10 with --from)."),
    epochs: Optional[float] = typer.Option(None, help="Budget in passes over the synthetic pool."),
    resume: bool = typer.Option(False, help="Continue from OUT/checkpoint.pt (its network; give the budget again)."),
    finetune: Optional[str] = typer.Option(
        None, "--finetune", metavar="[MODEL]",
        help="Start from these weights: a checkpoint.pt, a weights.npz, a model folder, a "
             "registry id or a shipped model's name; without a value: the shipped model that "
             "analyses images of the data's kind (the height-map model for height maps)."),
    from_: List[Path] = typer.Option(
        [], "--from", help="Corrected-image data set ('particlesnn dataset export'; "
                           "repeatable): fine-tune on it (implies --finetune)."),
    n_synth: Optional[int] = typer.Option(
        None, help="Synthetic images (256 px) mixed in (default 3000; 600 with --from)."),
    batch: int = typer.Option(8, help="Crops per step."),
    crop: int = typer.Option(160, help="Crop side, px (multiple of 8)."),
    threads: int = typer.Option(2, help="torch threads."),
    width: int = typer.Option(12, help="U-Net channels at full resolution (doubling per level; "
                                       "ignored when fine-tuning)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default 2e-3; 2e-4 with --from)."),
    real_fraction: Optional[float] = typer.Option(
        None, help="Share of the crops from --data/--from images (default 0.25; 0.5 with --from)."),
    seed: int = typer.Option(0, help="Random seed."),
    presets: Optional[str] = typer.Option(
        None, help="Synthetic presets drawn, with weights: 'stm' (every stm-* preset), or "
                   "e.g. 'stm,negatives:0.5'; default all (particlesnn.training.data.SYNTH_PRESETS)."),
    pool_first: bool = typer.Option(
        False, help="Make the whole synthetic pool before training (all threads for the steps)."),
    compile_: bool = typer.Option(
        False, "--compile", help="torch.compile the training steps (~20 % faster; needs a C++ "
                                 "compiler, else eager)."),
    contact_weight: float = typer.Option(
        0.0, help="Extra loss weight on pixels where touching particles meet (0: unweighted; "
                  "5 raised recall but shrank outlines on height maps: docs/model.md)."),
    out_scale: Optional[int] = typer.Option(
        None, help="Maps this many times finer than the image (1 or 2; default: the starting "
                   "model's, else 1): 2 finds small particles without the enlarged copy, about "
                   "3x faster on small-particle images; fine-tuned from the shipped height "
                   "model it scored about 0.01 lower F1 (docs/model.md)."),
    fine_first: bool = typer.Option(
        False, help="A network whose full-resolution level runs on the image enlarged by 2 "
                    "(maps 2x finer, implies --out-scale 2; about half the enlarged copy's "
                    "network time; a fine-tune from the height model scored a little below it: "
                    "docs/model.md). With "
                    "--finetune, a 1x model is converted."),
    ema: float = typer.Option(
        0.0, help="Export an exponential moving average of the weights with this decay per "
                  "step (e.g. 0.999) instead of the last step's (0: off, as the shipped models "
                  "were trained)."),
    registry: Optional[Path] = typer.Option(
        None, help="Model registry folder (default ~/.particlesnn/models or $PARTICLESNN_MODELS)."),
    register: bool = typer.Option(
        True, help="With --from: score the new model next to the current default (held-out "
                   "corrected images + synthetic benchmark), add it to the registry, and make "
                   "it the default if it is better."),
) -> None:
    """Train the detector (synthetic images mixed with --data) and export it to OUT.

    With --from DATASET: fine-tune on corrected images (from the shipped model, or --finetune
    MODEL), then score the new model next to the current default and register it.
    """
    training = _training()
    from particlesnn.errors import InputError
    from particlesnn.training.data import parse_presets

    try:
        preset_weights = parse_presets(presets)
    except ValueError as err:
        raise InputError(None, f"--presets: {err}") from None
    if preset_weights and from_:
        raise InputError(None, "--presets applies to training on synthetic images, not with --from")
    if contact_weight and from_:
        raise InputError(None, "--contact-weight applies to training with --data, not with --from")
    if ema and from_:
        raise InputError(None, "--ema applies to training with --data, not with --from")
    if not 0.0 <= ema < 1.0:
        raise InputError(None, f"--ema must be in [0, 1), got {ema}")
    if out_scale is not None and from_:
        raise InputError(None, "--out-scale applies to training with --data, not with --from "
                               "(a fine-tune keeps its starting model's)")
    if out_scale is not None and out_scale not in (1, 2):
        raise InputError(None, f"--out-scale must be 1 or 2, got {out_scale}")
    if fine_first and (from_ or out_scale not in (None, 2)):
        raise InputError(None, "--fine-first gives maps 2x finer: not with --from or "
                               "--out-scale 1")
    _check_sources(data)
    if not from_:
        training.train(data, out, minutes=minutes, epochs=epochs, resume=resume, finetune=finetune,
                       n_synth=3000 if n_synth is None else n_synth, batch=batch, crop=crop,
                       threads=threads, seed=seed, lr=2e-3 if lr is None else lr,
                       real_fraction=0.25 if real_fraction is None else real_fraction,
                       widths=(width, 2 * width, 4 * width, 8 * width),
                       pool_first=pool_first, compile=compile_, presets=preset_weights,
                       contact_weight=contact_weight, out_scale=out_scale,
                       fine_first=fine_first, ema=ema)
        return
    from particlesnn.model import registry as reg
    from particlesnn.training import finetune as ft

    r = reg.Registry(registry)
    parent = finetune
    if finetune and finetune.startswith("m-") and not Path(finetune).exists():
        finetune = str(r.model_dir(finetune))  # a registry id
    for d in from_:
        reg.dataset_json(d)  # InputError (exit 2) before any work when a data set is missing
    kw = {k: v for k, v in {"minutes": minutes, "epochs": epochs, "n_synth": n_synth, "lr": lr,
                             "real_fraction": real_fraction}.items() if v is not None}
    ft.finetune(list(from_), out, base=finetune, data=list(data), batch=batch, crop=crop,
                threads=threads, seed=seed, **kw)
    if not register:
        typer.echo(f"fine-tuned model written to {out}")
        return
    entry, promoted, reason = reg.register_trained(r, out, list(from_), base=parent, parameters={
        "minutes": None if epochs else (minutes or ft.DEFAULTS["minutes"]), "epochs": epochs,
        "lr": lr or ft.DEFAULTS["lr"], "real_fraction": real_fraction or ft.DEFAULTS["real_fraction"],
        "batch": batch,
        "crop": crop, "threads": threads, "seed": seed, **kw})
    s = entry["scores"]
    for who, sc in (("current default", s.get("parent", {})), ("new model", s)):
        u, b = sc.get("user") or {}, sc.get("benchmark") or {}
        typer.echo(f"{who:16s} held-out corrected images: IoU-0.5 F1 {u.get('iou_f1')} "
                   f"(centre F1 {u.get('centre_f1')}, {u.get('n_images')} images); "
                   f"synthetic benchmark: IoU-0.5 F1 {b.get('iou_f1')}")
    typer.echo(f"registered as {entry['id']} in {r.root}; "
               f"{'now the default' if promoted else 'not made the default'}: {reason}")


@app.command("export-onnx")
def export_onnx(
    checkpoint: Path = typer.Argument(..., help="checkpoint.pt (or a folder holding one)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
) -> None:
    """Export a training checkpoint as a model folder for detect/analyze --model.

    The folder holds model.onnx, config.json, thresholds.json and weights.npz."""
    from particlesnn.errors import InputError

    training = _training()
    if not checkpoint.exists():
        raise InputError(checkpoint, "no such checkpoint")
    training.export_onnx(checkpoint, out)
    typer.echo(f"wrote {out / 'model.onnx'}")
