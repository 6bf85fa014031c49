"""Commands ``dataset export`` (corrected images of the web service, ready for training) and
``models ...`` (the model registry: list, promote, roll back, export, import).

Neither needs torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from particlesnn.cli._app import app

dataset_app = typer.Typer(help="Data sets of corrected images (from the web service).",
                          no_args_is_help=True)
models_app = typer.Typer(help="The model registry: trained detectors with their data and scores.",
                         no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
app.add_typer(models_app, name="models")

REGISTRY_HELP = "Registry folder (default ~/.particlesnn/models or $PARTICLESNN_MODELS)."


@dataset_app.command("export")
def dataset_export(
    out: Path = typer.Option(..., "--out", help="Folder to write (annotations.json, images/, heights/)."),
    data_dir: Path = typer.Option(Path("particlesnn-data"), "--data-dir", "--data",
                                  help="The web service's data folder (as 'particlesnn serve --data')."),
    db: Optional[Path] = typer.Option(None, "--db", help="Its db.sqlite3 (instead of --data-dir)."),
) -> None:
    """Write every corrected image of the web service as COCO + images + height maps (nm).

    An image counts when its outlines were edited in the browser or re-imported from a
    LabelMe / VIA / COCO / ImageJ / Gwyddion file (and not undone). Every 4th image is held out
    (evaluation only). Train on it with: particlesnn train --finetune --from OUT --out MODEL
    """
    from particlesnn.web.dataset import export_dataset

    if db is not None:
        data_dir = db.parent
    man = export_dataset(data_dir, out)
    n = man["images"]
    typer.echo(f"{n} corrected image{'' if n == 1 else 's'} ({man['train_images']} for training, "
               f"{man['heldout_images']} held out), {man['particles']} particles -> {out}")
    if man["train_images"] == 0:  # every 4th image is held out: the first one is
        typer.echo("note: nothing to train on yet: correct at least 2 images "
                   "(every 4th is kept for checking the new model)")


def _registry(registry: Optional[Path]):
    from particlesnn.model.registry import Registry

    return Registry(registry)


def _f1(scores: dict | None, part: str) -> str:
    v = ((scores or {}).get(part) or {}).get("iou_f1")
    return "-" if v is None else f"{v:.3f}"


@models_app.command("list")
def models_list(registry: Optional[Path] = typer.Option(None, help=REGISTRY_HELP)) -> None:
    """List the models: id, status, scores (IoU-0.5 F1 on held-out corrected images and on
    the synthetic benchmark), created, folder."""
    r = _registry(registry)
    typer.echo(f"{'id':28s} {'status':11s} {'user F1':>7s} {'bench F1':>8s}  created               folder")
    for m in r.list():
        typer.echo(f"{m['id']:28s} {m['status']:11s} {_f1(m['scores'], 'user'):>7s} "
                   f"{_f1(m['scores'], 'benchmark'):>8s}  {m['created'] or '-':21s} {r.model_dir(m['id'])}")


@models_app.command("promote")
def models_promote(
    model_id: str = typer.Argument(..., help="Model id (see 'models list')."),
    force: bool = typer.Option(False, help="Make it the default even if it is not better."),
    registry: Optional[Path] = typer.Option(None, help=REGISTRY_HELP),
) -> None:
    """Make a model the default: only when it is better than the current one (or --force)."""
    ok, reason = _registry(registry).promote(model_id, force=force)
    typer.echo(f"{model_id}: {'now the default' if ok else 'not promoted'} ({reason})")
    if not ok:
        raise typer.Exit(code=1)


@models_app.command("rollback")
def models_rollback(registry: Optional[Path] = typer.Option(None, help=REGISTRY_HELP)) -> None:
    """Retire the current default; the previous default (or the shipped model) comes back."""
    new = _registry(registry).rollback()
    typer.echo(f"default model is now {new}")


@models_app.command("export")
def models_export(
    model_id: str = typer.Argument(..., help="Model id (see 'models list')."),
    out: Path = typer.Option(..., "--out", help="The .zip to write."),
    registry: Optional[Path] = typer.Option(None, help=REGISTRY_HELP),
) -> None:
    """Write a model as a .zip (model files, scores, provenance) to share with another lab."""
    p = _registry(registry).export(model_id, out)
    typer.echo(f"wrote {p}")


@models_app.command("import")
def models_import(
    file: Path = typer.Argument(..., help="A .zip written by 'models export' (or the web page)."),
    registry: Optional[Path] = typer.Option(None, help=REGISTRY_HELP),
) -> None:
    """Add a shared model to the registry (status 'imported'; promote it to use it by default)."""
    e = _registry(registry).import_zip(file)
    typer.echo(f"imported as {e['id']}; its folder: {_registry(registry).model_dir(e['id'])}")
