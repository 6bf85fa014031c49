"""Commands: ``detect`` (find particles), ``train`` and ``export-onnx`` (the neural detector).

``train`` and ``export-onnx`` need torch (``pip install particlesnn[train]``); it is imported
only inside those commands, through :mod:`particlesnn.training`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from particlesnn.cli._app import app

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
    files: List[Path] = typer.Argument(..., help="Image / SPM files to process."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    diameter: Optional[float] = typer.Option(
        None, help="Typical particle diameter: nm when the file has a pixel size, else px."),
    method: str = typer.Option("model", help="model | threshold | watershed"),
    model: Optional[str] = typer.Option(None, help="Model folder or shipped model name."),
) -> None:
    """Find particles: write OUT/STEM.labels.tif (uint16) and OUT/STEM.scores.txt per file."""
    import numpy as np
    import tifffile

    from particlesnn.errors import InputError

    if method not in ("model", "threshold", "watershed"):
        raise InputError(None, f"unknown method {method!r} (use model, threshold or watershed)")
    from particlesnn.io import read
    from particlesnn.preprocess import level, orient
    from particlesnn.segment import segment

    out.mkdir(parents=True, exist_ok=True)
    det = None
    for f in files:
        hm, _polarity = orient(level(read(f)), "auto")
        if method == "model":
            from particlesnn.model import load_model

            det = det or load_model(model)
            seg = segment(hm, method="model", diameter=diameter, model=det)
        else:
            seg = segment(hm, method=method)
        if seg.labels.max() > 65535:
            raise InputError(f, f"{int(seg.labels.max())} particles do not fit a uint16 label image")
        stem = Path(f).stem
        tifffile.imwrite(out / f"{stem}.labels.tif", seg.labels.astype(np.uint16))
        with open(out / f"{stem}.scores.txt", "w") as fh:
            for k, s in enumerate(np.asarray(seg.scores), start=1):
                fh.write(f"{k} {float(s):.4f}\n")
        typer.echo(f"{f}: {seg.count} particles -> {out / (stem + '.labels.tif')}")


@app.command()
def train(
    data: List[str] = typer.Option([], "--data", help="Training data: particlesnn synth folders, "
                                   "images/+labels/ folders, COCO JSON (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    minutes: Optional[float] = typer.Option(None, help="Wall-clock budget of the optimisation, min."),
    epochs: Optional[float] = typer.Option(None, help="Budget in passes over the synthetic pool."),
    resume: bool = typer.Option(False, help="Continue from OUT/checkpoint.pt."),
    finetune: Optional[Path] = typer.Option(None, help="Start from this checkpoint's weights."),
    n_synth: int = typer.Option(3000, help="Pre-generated synthetic images (256 px)."),
    batch: int = typer.Option(8, help="Crops per step."),
    crop: int = typer.Option(160, help="Crop side, px (multiple of 8)."),
    threads: int = typer.Option(2, help="torch threads."),
    width: int = typer.Option(12, help="U-Net channels at full resolution (doubling per level)."),
    lr: float = typer.Option(2e-3, help="Peak learning rate."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Train the detector (synthetic images mixed with --data) and export it to OUT."""
    training = _training()
    training.train(data, out, minutes=minutes, epochs=epochs, resume=resume, finetune=finetune,
                   n_synth=n_synth, batch=batch, crop=crop, threads=threads, seed=seed, lr=lr,
                   widths=(width, 2 * width, 4 * width, 8 * width))


@app.command("export-onnx")
def export_onnx(
    checkpoint: Path = typer.Argument(..., help="checkpoint.pt (or a folder holding one)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
) -> None:
    """Export a training checkpoint as a model folder (model.onnx, config.json, thresholds.json)."""
    from particlesnn.errors import InputError

    training = _training()
    if not checkpoint.exists():
        raise InputError(checkpoint, "no such checkpoint")
    training.export_onnx(checkpoint, out)
    typer.echo(f"wrote {out / 'model.onnx'}")
