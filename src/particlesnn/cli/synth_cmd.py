"""Command ``synth``: write a synthetic image set with exact ground truth."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from particlesnn.cli._app import app


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (created)."),
    n: int = typer.Option(200, "--n", help="Number of images."),
    seed: int = typer.Option(0, "--seed", help="Set seed; image i uses the stream (seed, i)."),
    preset: str = typer.Option("stm-mixed", "--preset",
                               help="stm-sparse, stm-crowded, stm-tiny, stm-noisy-lines, "
                                    "stm-large, stm-mixed, haadf, brightfield-tem, sem, "
                                    "fluorescence, brightfield-cells, negatives, any."),
    size: Optional[int] = typer.Option(None, "--size", help="Image size in px (square); "
                                                              "default: the preset's."),
    palette: str = typer.Option("gray", "--palette",
                                help="PNG render palette: gray, afmhot, viridis, ... or random."),
    scale_bar: bool = typer.Option(False, "--scale-bar/--no-scale-bar",
                                   help="Burn a scale bar into the PNG renders."),
    heightmaps: bool = typer.Option(True, "--heightmaps/--no-heightmaps",
                                    help="Write WSxM .txt and .gsf height maps (SPM presets)."),
    image_format: str = typer.Option("png", "--image-format", help="png or bmp renders."),
) -> None:
    """Generate N synthetic images with exact ground truth (height maps, renders, labels, COCO, CSV).

    Writes WSxM .txt and .gsf height maps, PNG renders, uint16 label TIFFs, one COCO JSON and a
    per-particle truth CSV."""
    from rich.progress import Progress

    from particlesnn.synth.dataset import write_dataset

    with Progress(transient=True) as bar:
        task = bar.add_task("synth", total=n)
        summary = write_dataset(out, n, preset=preset, seed=seed, size=size, palette=palette,
                                scale_bar=scale_bar, heightmaps=heightmaps,
                                image_format=image_format,
                                progress=lambda i, total: bar.update(task, completed=i))
    typer.echo(f"wrote {summary['images']} images, {summary['particles']} particles to "
               f"{summary['out']} (coco.json, truth.csv, images/, labels/)")
