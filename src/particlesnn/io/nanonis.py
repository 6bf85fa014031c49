"""Nanonis ``.sxm`` scans (own parser; nanonispy fails on numpy >= 1.24).

Layout: a text header of ``:KEY:`` lines each followed by its value lines
(``:SCAN_PIXELS:`` columns and lines, ``:SCAN_RANGE:`` width and height in m,
``:SCAN_DIR:`` up/down, ``:DATA_INFO:`` a TAB table Channel/Name/Unit/Direction/...),
``:SCANIT_END:``, then ``\\x1a\\x04`` and big-endian float32 images: for each channel of the
table, the forward image and, when Direction is ``both``, the backward image.

Orientation (checked on the sample files): the file stores lines in scan order, so for
``scan_dir = up`` row 0 is the bottom line and the reader flips it; backward images are
stored mirrored in x (their correlation with the forward image is about -0.2 as stored
and +0.5 to +0.7 after mirroring), so the reader mirrors them to overlay the forward image.

Channel names: ``"<Name>_fwd"`` and ``"<Name>_bwd"`` (``"Z_fwd"``, ``"Current_bwd"``).
Default: ``Z_fwd``. Z is returned in nm, current in nA.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.io._common import (
    check_shape,
    choose_channel,
    make_heightmap,
    need_bytes,
    read_bytes,
    to_display_unit,
)

FORMAT = "Nanonis SXM"
EXTENSIONS = (".sxm",)
_END = b":SCANIT_END:"


def sniff(head: bytes) -> bool:
    """True for a Nanonis SXM header (starts with ``:NANONIS_VERSION:``)."""
    return head.lstrip().startswith(b":NANONIS_VERSION:")


def _parse(path: Path, buf: bytes) -> tuple[dict[str, str], int, list[tuple[str, str, str]], tuple[int, int], tuple[float, float], str]:
    end = buf.find(_END)
    if end < 0:
        raise InputError(path, "truncated file or not an SXM file (no :SCANIT_END:)")
    marker = buf.find(b"\x1a\x04", end)
    if marker < 0:
        raise InputError(path, "truncated file (no data marker after header)")
    header: dict[str, str] = {}
    key = None
    for line in buf[:end].decode("latin-1").splitlines():
        if line.startswith(":") and line.endswith(":") and len(line) > 2:
            key = line[1:-1]
            header[key] = ""
        elif key is not None:
            header[key] = (header[key] + "\n" + line) if header[key] else line
    try:
        cols, rows = (int(v) for v in header["SCAN_PIXELS"].split()[:2])
        width, height = (float(v) for v in header["SCAN_RANGE"].split()[:2])
    except (KeyError, ValueError):
        raise InputError(path, "header lacks a valid SCAN_PIXELS / SCAN_RANGE") from None
    check_shape(path, rows, cols)
    chans: list[tuple[str, str, str]] = []  # (name, unit, direction)
    table = [ln.split("\t") for ln in header.get("DATA_INFO", "").splitlines() if ln.strip()]
    cols_t = [c.strip() for c in table[0]] if table else []
    if not all(k in cols_t for k in ("Name", "Unit", "Direction")):
        raise InputError(path, "header lacks the DATA_INFO channel table (Name, Unit, Direction)")
    i_name, i_unit, i_dir = cols_t.index("Name"), cols_t.index("Unit"), cols_t.index("Direction")
    for row in table[1:]:
        row = [c.strip() for c in row]
        if len(row) < len(cols_t):
            continue
        chans.append((row[i_name], row[i_unit], row[i_dir].lower()))
    scan_dir = header.get("SCAN_DIR", "down").strip().lower()
    return header, marker + 2, chans, (rows, cols), (width, height), scan_dir


def _names(chans: list[tuple[str, str, str]]) -> list[tuple[str, str, bool]]:
    """Images in file order as (name, unit, is_backward)."""
    out = []
    for name, unit, direction in chans:
        if direction == "backward":
            out.append((f"{name}_bwd", unit, True))
            continue
        out.append((f"{name}_fwd", unit, False))
        if direction == "both":
            out.append((f"{name}_bwd", unit, True))
    return out


def list_channels(path: str | Path) -> list[str]:
    """Channel names in file order, e.g. ``["Z_fwd", "Z_bwd", "Current_fwd", "Current_bwd"]``."""
    buf = read_bytes(path)
    return [n for n, _, _ in _names(_parse(Path(path), buf)[2])]


def read(path: str | Path, channel: str | None = None) -> HeightMap:
    """Read one channel of an SXM file (default ``Z_fwd``), row 0 = top, backward un-mirrored.

    Returns Z in nm (other channels in their unit: current in nA) with pixel size
    ``SCAN_RANGE / SCAN_PIXELS`` in nm/px.
    """
    path = Path(path)
    buf = read_bytes(path)
    header, offset, chans, (rows, cols), (width, height), scan_dir = _parse(path, buf)
    images = _names(chans)
    names = [n for n, _, _ in images]
    k = choose_channel(names, channel, path)
    n_img = rows * cols
    need_bytes(path, buf, offset, len(images) * n_img * 4, f"{len(images)} images of {cols} x {rows} px")
    extra = len(buf) - offset - len(images) * n_img * 4
    if extra:
        raise InputError(
            path,
            f"file holds {extra} bytes more than {len(images)} images of {cols} x {rows} px "
            "(wrong SCAN_PIXELS or DATA_INFO in header)",
        )
    data = np.frombuffer(buf, ">f4", count=n_img, offset=offset + k * n_img * 4).reshape(rows, cols)
    data = data.astype(np.float64)
    name, unit, backward = images[k]
    if backward:
        data = data[:, ::-1]
    if scan_dir == "up":
        data = data[::-1, :]
    data, unit = to_display_unit(np.ascontiguousarray(data), unit)
    pixel_size = (width * 1e9 / cols, height * 1e9 / rows)
    md = {"header": header, "scan_dir": scan_dir}
    return make_heightmap(path, data, pixel_size, name, unit, FORMAT, names, md)
