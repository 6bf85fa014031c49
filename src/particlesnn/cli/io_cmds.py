"""Commands ``info`` (what is in these files?) and ``convert`` (to GSF, WSxM ASCII, PNG, TIFF)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from particlesnn.cli._app import app, make_console
from particlesnn.errors import InputError

_TO = ("gsf", "txt", "png", "tif")



def _channel_list(names: list[str]) -> str:
    """Channel names for the table: all of them, or the first and last of a long TIFF stack."""
    if len(names) <= 8:
        return ", ".join(names)
    return f"{', '.join(names[:3])} ... {names[-1]} ({len(names)})"

def _fmt(v: float) -> str:
    """A number in up to 5 significant digits, without exponent for ordinary magnitudes."""
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e7):
        return f"{v:.3e}"
    if a >= 1e5:
        return f"{v:.0f}"
    return f"{v:.5g}"


def info_rows(paths: list[Path]) -> list[dict]:
    """One dict per file: ``ok`` plus the table fields, or ``error`` (one line) when unreadable."""
    import numpy as np

    from particlesnn import io as pio

    rows = []
    for p in paths:
        try:
            hm = pio.read(p)
            fmt = hm.metadata.get("format") or pio.format_name(p)
        except InputError as err:
            rows.append({"ok": False, "file": str(p), "error": err.problem})
            continue
        r, c = hm.shape
        d = hm.data
        finite = d[np.isfinite(d)]
        lo, hi = float(finite.min()), float(finite.max())
        notes = list(hm.metadata.get("warnings", []))
        if hi == lo:
            notes.append("constant image: nothing to analyse")
        elif min(r, c) < pio.MIN_SIDE:
            notes.append(f"smaller than {pio.MIN_SIDE} x {pio.MIN_SIDE} px")
        if hm.pixel_size is None:
            notes.append("no physical scale")
        elif hm.metadata.get("pixel_size_source") == "tiff":
            notes.append(f"scale from the {hm.metadata['image'].get('tiff_scale_from', 'TIFF')} "
                         "TIFF metadata")
        elif hm.metadata.get("pixel_size_source") == "sidecar":
            side = hm.metadata["image"]["sidecar"]
            notes.append(f"scale from {side['file']} ({side['from']})")
        elif hm.metadata.get("pixel_size_source") == "scale_bar":
            notes.append("scale from the scale bar")
        rows.append({
            "ok": True,
            "file": str(p),
            "format": fmt,
            "channel": hm.channel,
            "size_px": f"{c} x {r}",
            "size_nm": "-" if hm.size_nm is None else f"{_fmt(hm.size_nm[0])} x {_fmt(hm.size_nm[1])}",
            "pixel_nm": "-" if hm.pixel_size is None else (
                _fmt(hm.pixel_size[0]) if np.isclose(hm.pixel_size[0], hm.pixel_size[1])
                else f"{_fmt(hm.pixel_size[0])} x {_fmt(hm.pixel_size[1])}"),
            "channels": _channel_list(hm.metadata.get("channels") or [hm.channel]),
            "range": f"{_fmt(lo)} .. {_fmt(hi)} {hm.unit}",
            "notes": "; ".join(notes),
        })
    return rows


@app.command()
def info(
    files: List[Path] = typer.Argument(..., help="SPM or image files, or folders of them, to describe."),
) -> None:
    """Show format, channel, size (px and nm), pixel size, channels and value range of files.

    A folder stands for the files of supported formats in it (recursively), as for ``analyze``.
    Unreadable files get a red line naming the problem; the exit status is then 1.
    """
    from rich.table import Table

    from particlesnn.cli.analyze_cmd import expand_folders

    console = make_console()
    err_console = make_console(stderr=True)
    paths = expand_folders(files)  # a missing file is kept, to be reported in its row
    if not paths:
        err_console.print(f"[red]error: {', '.join(str(f) for f in files)}: no files of a supported "
                          "format[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    rows = info_rows(paths)
    table = Table(show_lines=False, header_style="bold")
    for col, kw in (
        ("file", {"overflow": "fold"}), ("format", {}), ("channel", {}), ("size px", {"justify": "right"}),
        ("size nm", {"justify": "right"}), ("nm/px", {"justify": "right"}),
        ("channels", {"overflow": "fold"}), ("range", {"justify": "right"}), ("notes", {"overflow": "fold"}),
    ):
        table.add_column(col, **kw)
    bad = 0
    for r in rows:
        if r["ok"]:
            table.add_row(
                Path(r["file"]).name, r["format"], r["channel"], r["size_px"], r["size_nm"],
                r["pixel_nm"], r["channels"], r["range"], r["notes"],
            )
        else:
            bad += 1
            table.add_row(Path(r["file"]).name, "[red]unreadable[/red]", "", "", "", "", "", "",
                          f"[red]{r['error']}[/red]", style="red")
    if bad < len(rows):  # a table of unreadable files only would repeat the lines below
        console.print(table)
    for r in rows:
        if not r["ok"]:
            err_console.print(f"[red]error: {Path(r['file']).name}: {r['error']}[/red]",
                              highlight=False, soft_wrap=True)
    if bad:
        raise typer.Exit(1)


def convert_file(path: Path, to: str, out_dir: Path | None = None, channel: str | None = None,
                 stem: str | None = None) -> tuple[Path, list[str]]:
    """Read ``path`` (channel ``channel``) and write it as ``to`` (gsf, txt, png, tif).

    The output is ``<out_dir or the input's folder>/<stem>[_<channel>].<to>`` (``stem``: the
    input's unless given); converting a file onto itself raises InputError. Returns the path
    written and what the reader had to do (an unfinished scan's empty lines left out, NaN
    pixels filled).
    """
    from particlesnn import io as pio

    to = to.lower().lstrip(".")
    if to not in _TO:
        raise InputError(path, f"cannot convert to {to!r} (choose one of {', '.join(_TO)})")
    hm = pio.read(path, channel=channel)
    folder = Path(out_dir) if out_dir is not None else Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or Path(path).stem
    if channel is not None:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in hm.channel)
        stem = f"{stem}_{safe}"
    target = folder / f"{stem}.{to}"
    if target.resolve() == Path(path).resolve():
        raise InputError(path, f"output {target.name} would overwrite the input; use --out DIR")
    return pio.write(hm, target), [str(w) for w in hm.metadata.get("warnings", [])]


@app.command()
def convert(
    files: List[Path] = typer.Argument(..., help="SPM or image files (or folders of them) to convert."),
    to: str = typer.Option(..., "--to", help="Output format: gsf, txt (WSxM ASCII), png (8-bit), tif (float32)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: next to each input)."),
    channel: Optional[str] = typer.Option(None, "--channel", help="Channel to convert (default: height)."),
) -> None:
    """Convert SPM files to GSF, WSxM ASCII (.txt), PNG or float TIFF, keeping the scale (nm).

    A folder stands for the files of supported formats in it (recursively), as for ``analyze``.
    """
    from particlesnn.cli.analyze_cmd import expand_folders, output_names

    console = make_console()
    err_console = make_console(stderr=True)
    if to.lower().lstrip(".") not in _TO:  # the whole command cannot run: exit 2, before any file
        raise InputError(None, f"cannot convert to {to!r} (choose one of {', '.join(_TO)})")
    paths = expand_folders(files)
    if not paths:
        raise InputError(None, f"{', '.join(str(f) for f in files)}: no files of a supported format")
    # into one --out folder, the same scan name in several folders must not collide
    stems = output_names(paths) if out is not None else [None] * len(paths)
    bad = 0
    for f, stem in zip(paths, stems):
        try:
            written, notes = convert_file(f, to, out, channel, stem=stem)
        except InputError as err:
            bad += 1
            err_console.print(f"[red]error: {err}[/red]", highlight=False, soft_wrap=True)
            continue
        console.print(f"{f.name} -> {written}" + "".join(f" (note: {n})" for n in notes),
                      highlight=False, soft_wrap=True)
    if bad:
        raise typer.Exit(1)
