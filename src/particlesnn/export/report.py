"""One self-contained HTML report for a set of analysed images.

Everything is inline: CSS, a few lines of JavaScript (click a column header to sort a table),
and the pictures as base64 ``data:`` URIs. The file has no external reference, so it can be
mailed or archived as is and opens offline in any browser.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from particlesnn.errors import InputError

__all__ = ["write_report", "MAX_ROWS"]

MAX_ROWS = 300  # per-particle rows shown per image; the rest is summarised in a note
PNG_LIMIT = 1_500_000  # bytes; larger overlays are embedded as JPEG (quality 90)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
 color:#1d1d1f;background:#fafafa;line-height:1.4}
header{background:#1b1b1b;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:1.4em}header p{margin:4px 0 0;color:#bbb;font-size:.9em}
main{padding:8px 24px 40px;max-width:1400px}
h2{border-bottom:2px solid #e07b00;padding-bottom:3px;margin-top:28px}
h3{margin:18px 0 6px}
nav a{margin-right:12px;color:#b35900}
table{border-collapse:collapse;font-size:.85em;margin:6px 0 10px;background:#fff}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f0e6da;position:sticky;top:0}
th.sortable{cursor:pointer}th.sortable:hover{background:#e8d3bb}
td.t,th.t{text-align:left}
tr:nth-child(even) td{background:#fbf8f4}
.kv td:first-child{text-align:left;font-weight:600}
.scroll{max-height:480px;max-width:100%;overflow:auto;display:inline-block;border:1px solid #ddd}
figure{display:inline-block;margin:6px 14px 6px 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #ccc}
figcaption{font-size:.85em;color:#555}
.overlay img{max-width:min(900px,100%)}
.plot img{max-width:560px}
.note{color:#8a4b00;font-size:.9em}
.image{background:#fff;border:1px solid #e5e5e5;border-radius:6px;padding:6px 16px 12px;margin:14px 0}
"""

_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,i){
  th.classList.add('sortable');th.title='click to sort';
  th.addEventListener('click',function(){
   var b=t.tBodies[0],rows=Array.from(b.rows),asc=th.dataset.dir!=='asc';
   t.querySelectorAll('th').forEach(function(h){h.dataset.dir='';});th.dataset.dir=asc?'asc':'desc';
   rows.sort(function(r1,r2){
    var a=r1.cells[i].dataset.v??r1.cells[i].textContent,c=r2.cells[i].dataset.v??r2.cells[i].textContent;
    var x=parseFloat(a),y=parseFloat(c);
    if(!isNaN(x)&&!isNaN(y)){return asc?x-y:y-x;}
    return asc?a.localeCompare(c):c.localeCompare(a);});
   rows.forEach(function(r){b.appendChild(r);});});});});
"""


def _fmt(v: Any) -> tuple[str, str | None]:
    """(display text, numeric sort value or None) for one table cell."""
    if v is None:
        return "", None
    if isinstance(v, (bool, np.bool_)):
        return ("yes" if v else "no"), None
    if isinstance(v, (int, np.integer)):
        return str(int(v)), str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return "–", None
        if f != 0 and (abs(f) >= 1e6 or abs(f) < 1e-3):
            return f"{f:.3e}", repr(f)
        return f"{f:.4g}", repr(f)
    return str(v), None


def _cell(v: Any, tag: str = "td") -> str:
    text, num = _fmt(v)
    cls = "" if num is not None else ' class="t"'
    dv = f' data-v="{num}"' if num is not None else ""
    return f"<{tag}{cls}{dv}>{html.escape(text)}</{tag}>"


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], sortable: bool = True) -> str:
    numeric = [bool(rows) and _fmt(rows[0][i])[1] is not None for i in range(len(columns))]
    head = "".join(f"<th>{html.escape(str(c))}</th>" if numeric[i] else f'<th class="t">{html.escape(str(c))}</th>'
                   for i, c in enumerate(columns))
    body = "\n".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in rows)
    cls = ' class="sortable"' if sortable else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _kv_table(d: Mapping[str, Any]) -> str:
    rows = "".join(f'<tr><td class="t">{html.escape(str(k))}</td>{_cell(v)}</tr>' for k, v in d.items())
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _records(particles: Any) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) from a pandas DataFrame, a list of dicts or a dict of columns."""
    if particles is None:
        return [], []
    try:
        import pandas as pd

        if isinstance(particles, pd.DataFrame):
            df = particles.reset_index(drop=not particles.index.name)
            return [str(c) for c in df.columns], df.to_numpy(dtype=object).tolist()
    except ImportError:  # pragma: no cover - pandas is a core dependency
        pass
    if isinstance(particles, Mapping):
        cols = [str(c) for c in particles]
        n = max((len(v) for v in particles.values()), default=0)
        return cols, [[particles[c][i] if i < len(particles[c]) else None for c in particles] for i in range(n)]
    rows = list(particles)
    cols: list[str] = []
    for r in rows:
        for c in r:
            if c not in cols:
                cols.append(c)
    return [str(c) for c in cols], [[r.get(c) for c in cols] for r in rows]


def _img_uri(obj: Any, where: Path) -> str:
    """data: URI for a matplotlib Figure, an RGB(A)/grey array, PNG/JPEG bytes or an image path."""
    mime, data = "image/png", None
    if hasattr(obj, "savefig"):
        buf = io.BytesIO()
        obj.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        data = buf.getvalue()
    elif isinstance(obj, np.ndarray):
        from PIL import Image

        arr = obj
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        im = Image.fromarray(arr)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
        if len(data) > PNG_LIMIT:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="JPEG", quality=90)
            data, mime = buf.getvalue(), "image/jpeg"
    elif isinstance(obj, (bytes, bytearray)):
        data = bytes(obj)
        mime = "image/jpeg" if data[:2] == b"\xff\xd8" else "image/png"
    elif isinstance(obj, (str, Path)):
        p = Path(obj)
        if not p.is_file():
            raise InputError(p, "image for the report not found")
        data = p.read_bytes()
        ext = p.suffix.lower()
        if ext == ".svg":
            raise InputError(p, "SVG is not embedded (it names external namespaces); pass a PNG or a Figure")
        mime = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                ".webp": "image/webp"}.get(ext, "image/png")
    else:
        raise InputError(where, f"cannot embed an image of type {type(obj).__name__}")
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _anchor(i: int) -> str:
    return f"img{i + 1}"


def write_report(
    path: str | Path,
    images: list[dict],
    set_summary: dict,
    plots: dict[str, Any],
    *,
    title: str = "particlesnn report",
    max_rows: int = MAX_ROWS,
) -> Path:
    """Write one self-contained HTML report.

    Parameters
    ----------
    path : the ``.html`` file to write (parent folders created).
    images : one dict per analysed image, in display order, with keys

        * ``"name"`` (str, required): the image's name (e.g. file name);
        * ``"overlay"``: the overlay picture, as returned by
          :func:`particlesnn.export.overlay.render_overlay` (RGB uint8 array), a PNG/JPEG path,
          PNG bytes or a matplotlib Figure; optional;
        * ``"summary"``: dict {quantity (with unit in the name, e.g. ``"mean diameter (nm)"``):
          value} for this image; its rows also form the set's summary table (one row per
          image, columns = union of the keys); optional;
        * ``"particles"``: the per-particle table: pandas DataFrame, list of dicts (one per
          particle) or dict of columns; shown sortable, at most ``max_rows`` rows with a note
          saying how many were left out; optional;
        * ``"notes"``: list of str (warnings, settings used ...), shown under the image;
          optional.
    set_summary : dict {quantity: value} for the whole set (count, mean diameter, method,
        model, pixel size ...), shown at the top as a two-column table; may be empty.
    plots : {caption: matplotlib Figure, PNG path or PNG bytes}: histograms and other set
        plots, shown in a "Distributions" section in the given order; may be empty.
    title : page title.
    max_rows : per-particle rows shown per image (default 300).

    Returns the path written. Values are formatted with 4 significant digits; NaN shows as
    "–". Raises :class:`InputError` when an image entry lacks ``"name"`` or an image cannot
    be embedded.
    """
    from particlesnn import __version__

    path = Path(path)
    for i, im in enumerate(images):
        if not isinstance(im, Mapping) or "name" not in im:
            raise InputError(path, f"report image entry {i} lacks a 'name'")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts: list[str] = []
    parts.append(f"<header><h1>{html.escape(title)}</h1><p>{len(images)} image(s) · "
                 f"particlesnn {html.escape(__version__)} · {stamp}</p></header><main>")
    if images:
        parts.append("<nav>" + "".join(f'<a href="#{_anchor(i)}">{html.escape(str(im["name"]))}</a>'
                                       for i, im in enumerate(images)) + "</nav>")

    # summary
    parts.append("<h2>Summary</h2>")
    if set_summary:
        parts.append(_kv_table(set_summary))
    per = [(im["name"], im.get("summary") or {}) for im in images]
    cols: list[str] = []
    for _, s in per:
        for k in s:
            if k not in cols:
                cols.append(k)
    if cols:
        parts.append("<h3>Per image</h3>")
        parts.append('<div class="scroll">' + _table(["image"] + cols, [[n] + [s.get(c) for c in cols] for n, s in per])
                     + "</div>")

    # plots
    if plots:
        parts.append("<h2>Distributions</h2>")
        for cap, fig in plots.items():
            uri = _img_uri(fig, path)
            parts.append(f'<figure class="plot"><img alt="{html.escape(str(cap))}" src="{uri}">'
                         f"<figcaption>{html.escape(str(cap))}</figcaption></figure>")

    # per image
    if images:
        parts.append("<h2>Images</h2>")
    for i, im in enumerate(images):
        name = html.escape(str(im["name"]))
        parts.append(f'<section class="image" id="{_anchor(i)}"><h3>{name}</h3>')
        if im.get("overlay") is not None:
            uri = _img_uri(im["overlay"], path)
            parts.append(f'<figure class="overlay"><img alt="overlay of {name}" src="{uri}">'
                         f"<figcaption>{name}: height map with particle contours and ids</figcaption></figure>")
        if im.get("summary"):
            parts.append(_kv_table(im["summary"]))
        for note in im.get("notes") or []:
            parts.append(f'<p class="note">{html.escape(str(note))}</p>')
        pcols, prows = _records(im.get("particles"))
        if pcols:
            n = len(prows)
            shown = prows[: max(0, int(max_rows))]
            parts.append(f"<h4>Particles ({n})</h4>")
            if n > len(shown):
                parts.append(f'<p class="note">Showing the first {len(shown)} of {n} particles; '
                             "the full table is in the CSV/Parquet export.</p>")
            parts.append('<div class="scroll">' + _table(pcols, shown) + "</div>")
        parts.append("</section>")
    parts.append("</main>")

    doc = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
           + "\n".join(parts) + f"\n<script>{_JS}</script>\n</body></html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    return path
