"""Commands ``analyze`` (the main job) and ``measure`` (re-import edited contours)."""
from __future__ import annotations

import glob
import math
import shutil
from pathlib import Path
from typing import Optional

import typer

from particlesnn.cli._app import app, make_console, say_failed
from particlesnn.errors import InputError

# Files in an input folder that are our own outputs or side files, never images to analyse.
_SKIP_SUFFIXES = (".labels.tif", ".overlay.png", ".image.png", ".scores.txt", ".csv", ".json",
                  ".parquet", ".md", ".yaml", ".yml", ".html", ".svg", ".zip", ".py", ".txt.bak")


def _is_output_folder(folder: Path) -> bool:
    """Whether ``folder`` holds the outputs of an ``analyze`` or ``measure`` run (its
    ``config.yaml`` and ``summary.json``): its plots and maps are not inputs."""
    return (folder / "config.yaml").is_file() and (folder / "summary.json").is_file()


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (recursively: files of supported formats, not the outputs of an earlier
    run found inside: :func:`_is_output_folder`, ``*.scores.txt``, nor text files that hold no
    height map, which are named on one line) and globs -> sorted file list."""
    from particlesnn import io

    exts = {e.lower() for e in io.SUPPORTED}
    out: list[Path] = []
    notes: list[Path] = []  # text files in folders that hold no height map (notes, sidecars)
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            skip: dict[Path, bool] = {}
            for f in sorted(p.rglob("*")):
                name = f.name.lower()
                if f.is_file() and f.suffix.lower() in exts and not name.endswith(_SKIP_SUFFIXES) \
                        and not name.startswith(".") and "license" not in name:
                    inside = [f.parent, *f.parent.parents][: len(f.relative_to(p).parts) - 1]
                    if any(skip.setdefault(d, _is_output_folder(d)) for d in inside):
                        continue
                    if f.suffix.lower() in (".txt", ".asc") and not io.readable(f):
                        notes.append(f)
                        continue
                    out.append(f)
        elif p.exists():
            out.append(p)
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise InputError(p, "no such file, folder or matching glob")
            out.extend(Path(m) for m in matches if Path(m).is_file())
    if notes:
        shown = ", ".join(f.name for f in notes[:5]) + (f" ... (+{len(notes) - 5})" if len(notes) > 5 else "")
        make_console(stderr=True).print(
            f"ignored {len(notes)} text file(s) in the folders that hold no height map: {shown}",
            highlight=False, soft_wrap=True)
    seen, unique = set(), []
    for f in out:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def expand_folders(items) -> list[Path]:
    """Folders replaced by their files of supported formats (:func:`expand_inputs`); anything
    else kept as given, so that a missing or unreadable file is reported by name."""
    out: list[Path] = []
    for f in items:
        out.extend(expand_inputs([str(f)]) if Path(f).is_dir() else [Path(f)])
    return out


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise InputError(out, "output folder exists and is not empty "
                                  "(choose another --out or pass --overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _load_config(config: Optional[Path]) -> dict:
    if config is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(config.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise InputError(config, f"cannot read config: {err}") from None
    if not isinstance(data, dict):
        raise InputError(config, "config must be a mapping of option: value")
    return data


#: Config-file keys that choose how a run is executed, not what it computes (they are not
#: saved in the output's config.yaml and may change between a run and its --resume).
RUN_KEYS = ("scheduler",)


def _options(config: Optional[Path], given: dict):
    """Options from the config file, overridden by the options given on the command line."""
    from particlesnn.pipeline import AnalyzeOptions

    merged = _load_config(config)
    merged.update({k: v for k, v in given.items() if v is not None})
    merged = {k: v for k, v in merged.items() if k not in RUN_KEYS}
    try:
        return AnalyzeOptions.from_dict(merged)
    except (TypeError, ValueError) as err:
        raise InputError(config, str(err)) from None


def output_names(files: list[Path]) -> list[str]:
    """A unique name per input file, for its outputs (``NAME.particles.csv`` ...) and its rows:
    the file's stem; where stems repeat, the stem and extension (``scan1_gsf``), then the
    folder and stem (``fresh_scan1``: the same scan names in every sample's folder), then
    both, then a number."""
    def first_free(cands: list[str], taken: set[str]) -> str:
        for c in cands:
            if c not in taken:
                return c
        k = 2
        while f"{cands[-1]}_{k}" in taken:
            k += 1
        return f"{cands[-1]}_{k}"

    from collections import Counter

    stems = Counter(f.stem for f in files)
    stem_exts = Counter((f.stem, f.suffix) for f in files)
    names: list[str] = []
    taken: set[str] = set()
    for f in files:
        ext, folder = f.suffix.lstrip("."), f.resolve().parent.name
        if stems[f.stem] == 1:
            cands = [f.stem]
        else:
            cands = ([f"{f.stem}_{ext}"] if stem_exts[(f.stem, f.suffix)] == 1 else []) + [
                f"{folder}_{f.stem}", f"{folder}_{f.stem}_{ext}"]
        names.append(first_free(cands, taken))
        taken.add(names[-1])
    return names


def _groups(groups: Optional[Path], by_folder: bool, files: list[Path],
            names: list[str]) -> dict | None:
    """output name (:func:`output_names`) -> group, from a CSV (image, group) or from the
    files' folder names. A CSV names an image by its path, folder/file, file name or stem; a
    stem or file name shared by images of several folders is ambiguous (an error)."""
    if groups is not None and by_folder:
        raise InputError(groups, "give either --groups or --group-by-folder, not both")
    if by_folder:
        return {n: f.resolve().parent.name for n, f in zip(names, files)}
    if groups is None:
        return None
    import pandas as pd

    try:
        table = pd.read_csv(groups)
    except (OSError, ValueError) as err:
        raise InputError(groups, f"cannot read groups CSV ({err})") from None
    if table.shape[1] < 2:
        raise InputError(groups, "groups CSV needs two columns: image, group")
    cols = ("image", "group") if {"image", "group"} <= set(table.columns) else table.columns[:2]
    given = {str(i).strip().replace("\\", "/"): str(g) for i, g in zip(table[cols[0]], table[cols[1]])}
    from collections import Counter

    shared = Counter(k for f in files for k in {f.name, f.stem})  # images a bare name could mean
    mapping, missing = {}, []
    for n, f in zip(names, files):
        keys = [str(f).replace("\\", "/"), f"{f.resolve().parent.name}/{f.name}", f.name, f.stem, n]
        hit = next((k for k in keys if k in given), None)
        if hit is None:
            missing.append(f.name)
            continue
        if hit in (f.name, f.stem) and shared[hit] > 1:
            raise InputError(groups, f"{hit!r} names several images ({shared[hit]}; one is {f}): "
                                     "write them as folder/file")
        mapping[n] = given[hit]
    if missing:
        raise InputError(groups, f"no group for {len(missing)} image(s), e.g. {missing[0]}")
    return mapping


#: Images listed one by one in the terminal table; the rest are in summary.csv.
CLI_MAX_ROWS = 100


def _resume_check(out: Path, opts) -> bool:
    """--resume: True when ``out`` holds an earlier run with the same options (its images
    that are complete will be skipped), False when there is nothing to resume (empty or no
    folder). Raises InputError when the saved options differ or ``out`` is not a run."""
    import yaml

    if not out.exists() or not any(out.iterdir()):
        return False
    saved_file = out / "config.yaml"
    if not saved_file.is_file():
        raise InputError(out, "--resume: no config.yaml here, not the output of an analyze run")
    try:
        saved = yaml.safe_load(saved_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise InputError(saved_file, f"--resume: cannot read the saved config ({err})") from None
    now = opts.to_dict()
    diff = [f"{k}: {saved.get(k)!r} saved, {now.get(k)!r} now"
            for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if diff:
        raise InputError(saved_file, "--resume with other options than the saved run ("
                                     + "; ".join(diff) + "): use the same options or a new --out")
    return True


def _rows_of(items) -> list[tuple[str, dict, float, list]]:
    """(name, summary, seconds, warnings) from ImageResults or per-image records."""
    rows = []
    for r in items:
        if isinstance(r, dict):
            rows.append((r["image"], r["row"], float(r.get("seconds", 0.0)),
                         list(r.get("warnings") or [])))
        else:
            rows.append((r.name, r.summary, float(r.seconds), list(r.warnings)))
    return rows


def value_pm(value: float, err: float) -> str:
    """``value ± err`` with the error to two significant figures and the value to the same
    decimal place (``4450 ± 22``, ``190.3 ± 9.6``, ``1440 ± 210``); ``value`` as
    :func:`_plain` writes it when there is no error (None, NaN, 0: a single particle)."""
    if err is None or not (err == err and err > 0 and math.isfinite(err)):
        return _plain(value)
    decimals = 1 - math.floor(math.log10(err))
    if decimals > 0:
        return f"{value:.{decimals}f} ± {err:.{decimals}f}"
    step = 10.0 ** -decimals
    return f"{round(value / step) * step:.0f} ± {round(err / step) * step:.0f}"


def _plain(v: float) -> str:
    """Four significant figures, without an exponent from 1000 to 10^7 (11630, not 1.163e+04)."""
    return f"{v:.0f}" if v == v and 1e3 <= abs(v) < 1e7 else f"{v:.4g}"


def _summary_table(results, failed, set_stats, command: str = "analyze"):
    from rich.table import Table

    t = Table(title=f"particlesnn {command}", show_lines=False)
    for c in ("image", "particles", "density ± error", "mean d ± SEM", "seconds", "notes"):
        t.add_column(c, justify="right" if c not in ("image", "notes") else "left")

    def fmt(s):
        u = s.get("length_unit", "px")
        d = s.get(f"d_mean_{u}")
        e = s.get(f"d_sem_{u}")
        key = "density_per_um2" if "density_per_um2" in s else "density_per_mpx"
        # the larger of the counting error and the images' spread (a few images can agree
        # better than counting allows: the counting error is a floor)
        errs = [x for x in (s.get(f"{key}_sem"), s.get(f"{key}_poisson"))
                if x is not None and x == x]
        err = max(errs) if errs else None
        dens = (f"{value_pm(s.get(key, float('nan')), err)} "
                f"{'/µm²' if key == 'density_per_um2' else '/Mpx'}")
        return dens, "–" if d is None or d != d else f"{value_pm(d, e)} {u}"

    rows = _rows_of(results)
    for name, summ, secs, warns in rows[:CLI_MAX_ROWS]:
        dens, dtxt = fmt(summ)
        prof = summ.get("detector_profile")
        notes = ([f"profile {prof}"] if isinstance(prof, str) and prof else []) + warns
        n, n_sized = summ.get("count", 0) or 0, summ.get("n_sized")
        if n and n_sized == 0:
            notes.append(f"{'the particle touches' if n == 1 else f'all {n} particles touch'} "
                         "the border: not sized (--include-border sizes them)")
        t.add_row(name, str(summ.get("count", 0)), dens, dtxt, f"{secs:.2f}", "; ".join(notes))
    if len(rows) > CLI_MAX_ROWS:
        t.add_row(f"… {len(rows) - CLI_MAX_ROWS} more", "", "", "", "", "see summary.csv")
    for f, why in failed:
        t.add_row(Path(f).name, "–", "–", "–", "–", f"[red]FAILED: {why}[/red]")
    if rows:
        dens, dtxt = fmt(set_stats["joint"])
        t.add_row("[b]ALL[/b]", str(set_stats["joint"].get("count", 0)), dens, dtxt,
                  f"{sum(r[2] for r in rows):.2f}", _mixed_scale_note(rows, set_stats))
    return t


def _mixed_scale_note(rows, set_stats) -> str:
    """The ALL row's note when images with and without a pixel size were pooled in px."""
    if set_stats.get("length_unit") != "px":
        return ""
    n_px = sum(1 for _, summ, _, _ in rows if summ.get("length_unit", "px") == "px")
    if n_px in (0, len(rows)):
        return ""
    return (f"mixed scales: {n_px} of {len(rows)} images have no pixel size, so the set "
            "statistics are in px; analyse those apart (with --pixel-size if known)")


@app.command()
def analyze(
    inputs: list[str] = typer.Argument(..., help="Files, folders or globs to analyse."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    method: Optional[str] = typer.Option(None, help="model | threshold | watershed (default model)."),
    profile: Optional[str] = typer.Option(None, help="Detector profile: auto (chosen by content) | "
                                          "standard (STM/AFM, clean images) | textured (small "
                                          "particles on a lumpy support, e.g. HAADF-STEM)."),
    model: Optional[str] = typer.Option(None, help="Detector: a model folder (from particlesnn train "
                                        "or 'models export') or a shipped name; default the shipped model."),
    diameter: Optional[float] = typer.Option(None, help="Typical particle diameter hint (nm; px if no scale)."),
    pixel_size: Optional[float] = typer.Option(None, "--pixel-size", help="Override pixel size, nm/px."),
    polarity: Optional[str] = typer.Option(None, help="auto | bright | dark (default auto)."),
    min_size: Optional[float] = typer.Option(None, "--min-size", help="Minimum equivalent diameter (nm; px if no scale)."),
    max_size: Optional[float] = typer.Option(None, "--max-size", help="Maximum equivalent diameter (nm; px if no scale)."),
    include_border: Optional[bool] = typer.Option(None, "--include-border/--exclude-border",
                                                  help="Border-touching particles in size statistics (default: excluded)."),
    refine: Optional[bool] = typer.Option(None, "--refine/--no-refine", help="Gaussian half-height contour refinement (default: height maps in nm only)."),
    channel: Optional[str] = typer.Option(None, help="Channel of multi-channel files."),
    scale_bar: Optional[float] = typer.Option(None, "--scale-bar",
                                              help="Plain images: length (nm) of the burnt-in scale bar."),
    gwyddion: Optional[bool] = typer.Option(None, "--gwyddion/--no-gwyddion",
                                            help="Also write gwy/S.gwy: the levelled map with the "
                                                 "particles as its Gwyddion mask (default off)."),
    config: Optional[Path] = typer.Option(None, help="YAML file with any of these options."),
    groups: Optional[Path] = typer.Option(None, help="CSV mapping image -> group (columns: image, group) "
                                                     "to compare samples/treatments."),
    group_by_folder: bool = typer.Option(False, "--group-by-folder",
                                         help="Group images by the name of their folder."),
    overwrite: bool = typer.Option(False, help="Replace an existing, non-empty output folder."),
    workers: int = typer.Option(1, min=1, help="Images analysed in parallel (processes; each "
                                                "runs the model on one thread; with --scheduler "
                                                "local: Dask workers)."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue an interrupted run in --out: images whose outputs "
                                     "are complete are skipped (the options must be the same)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler",
                                            help="Run on Dask: 'local' (a local cluster of "
                                                 "--workers processes) or a scheduler address "
                                                 "tcp://host:8786 (needs particlesnn[dist])."),
) -> None:
    """Read -> level -> detect -> refine -> measure -> statistics, plots, exports and a report."""
    import datetime as dt
    import json

    import yaml
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from particlesnn.export.results import (read_image_record, slim_record,
                                            write_set_outputs_from_records)
    from particlesnn.parallel import check_scheduler, mode_for, run_images, tasks_for

    opts = _options(config, dict(method=method, profile=profile, model=model, diameter=diameter, pixel_size=pixel_size,
                                 polarity=polarity, min_size=min_size, max_size=max_size,
                                 include_border=include_border, refine=refine, channel=channel,
                                 scale_bar=scale_bar, gwyddion=gwyddion))
    if scheduler is None:
        scheduler = _load_config(config).get("scheduler")
    if resume and overwrite:
        raise InputError(out, "give --resume or --overwrite, not both")
    if scheduler:
        check_scheduler(scheduler)
    if opts.method == "model" and opts.model is not None:
        from particlesnn.model import load_model

        load_model(opts.model)  # a bad model folder: one line now, not one failure per image
        if Path(opts.model).is_dir():  # workers may start elsewhere (Dask): an absolute path
            opts.model = str(Path(opts.model).resolve())
    files = expand_inputs(inputs)
    if not files:
        raise InputError(Path(inputs[0]), "no files of a supported format found")
    names = output_names(files)
    group_map = _groups(groups, group_by_folder, files, names)
    resuming = resume and _resume_check(out, opts)
    if not resuming:
        _prepare_out(out, overwrite)
        (out / "config.yaml").write_text(yaml.safe_dump(opts.to_dict(), sort_keys=False))

    console = make_console(stderr=True)
    tasks = tasks_for(files, names, out, opts.to_dict())
    done: dict[int, dict] = {}
    failed_at: dict[int, tuple[str, str]] = {}
    if resuming:
        for t in tasks:
            rec = read_image_record(out, t.name, source=t.path)
            if rec is not None:
                done[t.index] = slim_record(rec)
    todo = [t for t in tasks if t.index not in done]
    mode = mode_for(workers, scheduler)
    if mode == "processes" and len(todo) <= 1:
        mode = "serial"

    def log(event: dict) -> None:  # the progress log; only this (parent) process appends to it
        event = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **event}
        with open(out / "progress.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")

    if done:
        log({"event": "resume", "complete": len(done), "todo": len(todo)})
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        bar = progress.add_task("analysing", total=len(files), completed=len(done))
        try:
            for rec in run_images(todo, mode=mode, workers=workers, scheduler=scheduler):
                i = rec["index"]
                if rec["status"] == "failed":
                    failed_at[i] = (str(files[i]), rec["problem"])
                    say_failed(console, files[i], rec["problem"], alone=len(files) == 1)
                    log({"image": rec["image"], "status": "failed", "problem": rec["problem"]})
                else:
                    done[i] = slim_record(rec)
                    log({"image": rec["image"], "status": "done", "seconds": rec["seconds"],
                         "particles": rec["n_particles"], "pid": rec.get("pid")})
                progress.advance(bar)
        except KeyboardInterrupt:
            console.print(f"interrupted after {len(done)} of {len(files)} images; the finished "
                          "ones are kept: run the same command with --resume to finish")
            raise typer.Exit(code=130)
    records = [done[i] for i in sorted(done)]
    failed = [failed_at[i] for i in sorted(failed_at)]
    set_stats = write_set_outputs_from_records(records, out, options=opts.to_dict(),
                                               failed=failed, include_border=opts.include_border,
                                               groups=group_map)
    if not records:  # nothing analysed: the one-line errors above say it all
        raise typer.Exit(code=1)
    make_console().print(_summary_table(records, failed, set_stats))
    if group_map:
        make_console().print(f"Group comparison in {out / 'groups.csv'} and {out / 'group_tests.csv'}")
    make_console().print(f"Outputs in {out}/ (report: {out / 'report.html'})")
    if failed:
        raise typer.Exit(code=1)


@app.command()
def measure(
    images: list[str] = typer.Argument(..., help="Image files the annotations belong to."),
    annotations: Path = typer.Option(..., "--annotations", "-a",
                                     help="Edited contours: a LabelMe JSON, a folder (LabelMe JSONs, "
                                          "ImageJ rois/S.roi.zip), a VIA or COCO JSON, an ImageJ ROI zip."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    pixel_size: Optional[float] = typer.Option(None, "--pixel-size", help="Override pixel size, nm/px."),
    polarity: Optional[str] = typer.Option(None, help="auto | bright | dark (default auto)."),
    include_border: Optional[bool] = typer.Option(None, "--include-border/--exclude-border"),
    min_size: Optional[float] = typer.Option(None, "--min-size"),
    max_size: Optional[float] = typer.Option(None, "--max-size"),
    channel: Optional[str] = typer.Option(None),
    config: Optional[Path] = typer.Option(None, help="YAML options (e.g. the config.yaml of the analyze run)."),
    overwrite: bool = typer.Option(False),
) -> None:
    """Re-import edited contours (LabelMe / VIA / COCO / ImageJ / Gwyddion) and recompute measures and statistics."""
    import yaml

    from particlesnn import io
    from particlesnn.export.annotations import image_key, read_annotations
    from particlesnn.export.results import write_image_outputs, write_set_outputs
    from particlesnn.pipeline import prepare_for_labels, remeasure

    cfg = _load_config(config)
    for k in ("method", "diameter", "refine", "profile", "model"):
        cfg.pop(k, None)
    opts = _options(None, {**cfg, **{k: v for k, v in dict(
        pixel_size=pixel_size, polarity=polarity, include_border=include_border,
        min_size=min_size, max_size=max_size, channel=channel).items() if v is not None}})
    files = expand_inputs(images)
    _prepare_out(out, overwrite)
    (out / "config.yaml").write_text(yaml.safe_dump(opts.to_dict(), sort_keys=False))
    results, failed = [], []
    err_console = make_console(stderr=True)
    one_roi_file = annotations.suffix.lower() in (".zip", ".roi") and annotations.is_file()
    for f, name in zip(files, output_names(files)):
        try:
            hm = io.read(f, channel=opts.channel)
            io.validate(hm, hm.source)
            # one ROI zip names no image: it is the only image's, or the one named like it
            if one_roi_file and len(files) > 1 and image_key(annotations.name) != image_key(name):
                raise InputError(annotations, f"ImageJ ROIs name no image and this zip is not "
                                              f"named {name}.roi.zip: measure {name} on its own")
            # images are looked up as analyze named them
            try:
                labels, source = read_annotations(annotations, name, hm.data.shape, with_source=True)
            except InputError:
                if not hm.metadata.get("file_shape"):
                    raise
                # drawn on the whole file (the reader left out an info band or unscanned lines)
                labels, source = read_annotations(annotations, name, tuple(hm.metadata["file_shape"]),
                                                  with_source=True)
                labels = io.in_read_frame(labels, hm)
            err_console.print(f"{name}: contours from {source}", highlight=False, soft_wrap=True)
            levelled, pol = prepare_for_labels(hm, opts, labels)
            r = remeasure(levelled, labels, None, opts, heightmap=hm)
            r.polarity = pol
            if name != r.name:  # the same scan name in several folders
                r.output_name = name
            write_image_outputs(r, out, gwyddion=opts.gwyddion)
            results.append(r)
        except InputError as err:
            # the annotation file at fault is named, not only the image
            problem = (err.problem if err.path is None or err.path.resolve() == Path(f).resolve()
                       else f"{err.path.name}: {err.problem}")
            failed.append((str(f), problem))
            say_failed(err_console, f, problem, alone=len(files) == 1)
    set_stats = write_set_outputs(results, out, options=opts.to_dict(), failed=failed,
                                  include_border=opts.include_border)
    if not results:
        raise typer.Exit(code=1)
    make_console().print(_summary_table(results, failed, set_stats, "measure"))
    if failed:
        raise typer.Exit(code=1)
