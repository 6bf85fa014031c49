"""Bruker/Veeco NanoScope files (``.001``, ``.000``, ``.spm``...), version 4.x-9.x binary.

Layout: a text header of ``\\Key: value`` lines grouped in ``\\*Section`` blocks, from
``\\*File list`` to ``\\*File list end``; each ``\\*Ciao image list`` block describes one
image: ``Data offset``, ``Data length``, ``Bytes/pixel``, ``Samps/line``, ``Scan size``
(``"2 2 ~m"``; ``~m`` = µm), ``@2:Image Data`` (channel name in quotes) and ``@2:Z scale``
(``V [Sens. Zscan] (0.006693481 V/LSB) 438.6572 V``). Data are little-endian signed integers.

Scaling: ``z = raw * Zscale / 2**(8 * bytes_per_pixel) * sens``, where ``Zscale`` is the
value (in V) that ends the ``@2:Z scale`` line (it spans the full integer range; the
``(V/LSB)`` figure in brackets is the hardware LSB and is not used) and ``sens`` the
referenced ``\\@Sens. Zscan: V 12.95302 nm/V`` (giving nm); without a sensitivity the value
stays in V. For the sample file this gives 0.0867 nm/LSB for Height (as pySPM and a hand
calculation) and -0.089 ... 0.108 V for Amplitude (as pySPM). Lines are stored bottom line
first, so the reader flips them (row 0 = top).

Channel names: the quoted ``Image Data`` name (``"Height"``, ``"Amplitude"``...), with
``_retrace`` appended when a file holds both trace and retrace of one channel.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.io._common import (
    check_shape,
    choose_channel,
    length_factor,
    make_heightmap,
    need_bytes,
    read_bytes,
    to_display_unit,
)

FORMAT = "Bruker NanoScope"
EXTENSIONS = (".spm", ".000", ".001", ".002", ".003", ".004", ".005", ".006", ".007", ".008", ".009")

_SCALE = re.compile(r"V\s*(?:\[([^\]]+)\])?\s*\(\s*([-+0-9.eE]+)\s*([^)]*)\)\s*([-+0-9.eE]+)\s*(\S*)")


def sniff(head: bytes) -> bool:
    """True for a NanoScope header (``\\*File list`` or ``\\*EC File list`` first)."""
    h = head.lstrip()
    return h.startswith(b"\\*File list") or h.startswith(b"\\*EC File list")


def _parse(path: Path, buf: bytes):
    end = buf.find(b"\\*File list end")
    if end < 0:
        raise InputError(path, "truncated file or not a NanoScope file (no '*File list end')")
    sections: list[tuple[str, dict[str, str]]] = []
    globals_: dict[str, str] = {}
    for line in buf[:end].decode("latin-1").splitlines():
        line = line.strip()
        if line.startswith("\\*"):
            sections.append((line[2:].strip(), {}))
            continue
        m = re.match(r"\\(.+?):(?:\s+(.*))?$", line)
        if not m:
            continue
        k, v = m.group(1).strip(), (m.group(2) or "").strip()
        if sections:
            sections[-1][1].setdefault(k, v)
        globals_.setdefault(k, v)
    images = [d for name, d in sections if name.lower() == "ciao image list"]
    if not images:
        raise InputError(path, "NanoScope header lists no image")
    names = []
    for d in images:
        raw = d.get("@2:Image Data") or d.get("Image data") or "image"
        m = re.search(r'"([^"]*)"', raw)
        names.append(m.group(1) if m else raw.split()[-1])
    for i, d in enumerate(images):
        if names.count(names[i]) > 1 and d.get("Line Direction", "").lower() == "retrace":
            names[i] = f"{names[i]}_retrace"
    return globals_, images, names


def list_channels(path: str | Path) -> list[str]:
    """Image names in file order, e.g. ``["Height", "Amplitude"]``."""
    p = Path(path)
    return _parse(p, read_bytes(p))[2]


def _num(path: Path, d: dict[str, str], key: str) -> int:
    try:
        return int(float(d[key].split()[0]))
    except (KeyError, ValueError, IndexError):
        raise InputError(path, f"NanoScope image header lacks a valid '{key}'") from None


def read(path: str | Path, channel: str | None = None) -> HeightMap:
    """Read one image of a NanoScope file (default ``Height``), heights in nm."""
    path = Path(path)
    buf = read_bytes(path)
    glob, images, names = _parse(path, buf)
    k = choose_channel(names, channel, path)
    d = images[k]
    offset, length = _num(path, d, "Data offset"), _num(path, d, "Data length")
    bpp = _num(path, d, "Bytes/pixel") if "Bytes/pixel" in d else 2
    if bpp not in (2, 4):
        raise InputError(path, f"unsupported Bytes/pixel = {bpp}")
    cols = _num(path, d, "Samps/line")
    if cols <= 0:
        raise InputError(path, "header gives Samps/line <= 0")
    if length % (bpp * cols):
        raise InputError(path, f"Data length {length} is not a whole number of {cols}-px lines (wrong size in header)")
    rows = length // (bpp * cols)
    for key, n in (("Number of lines", rows), ("Valid data len Y", rows), ("Valid data len X", cols)):
        if key in d and _num(path, d, key) != n:
            raise InputError(path, f"header says {key} = {_num(path, d, key)} but Data length and Samps/line give {n}")
    check_shape(path, rows, cols)
    # every image listed must lie inside the file (a cut file is truncated even if this one fits)
    for j, dj in enumerate(images):
        need_bytes(path, buf, _num(path, dj, "Data offset"), _num(path, dj, "Data length"),
                   f"image {names[j]!r}")
    raw = np.frombuffer(buf, f"<i{bpp}", count=rows * cols, offset=offset).reshape(rows, cols)

    # z scale
    zs = d.get("@2:Z scale") or d.get("Z scale")
    m = _SCALE.search(zs or "")
    if not m:
        raise InputError(path, f"cannot read the Z scale of image {names[k]!r}")
    sens_ref, full_scale = m.group(1), float(m.group(4))
    q = full_scale / 2.0 ** (8 * bpp)  # the soft value spans the whole integer range
    unit = "V"
    if sens_ref:
        sens_line = glob.get(f"@{sens_ref}") or glob.get(sens_ref)
        sm = re.match(r"\s*V\s+([-+0-9.eE]+)\s*(\S*)", sens_line or "")
        if not sm:
            raise InputError(path, f"header lacks the sensitivity {sens_ref!r}")
        q *= float(sm.group(1))
        su = sm.group(2)
        unit = su[:-2] if su.endswith("/V") else (su or "V")
    data = raw.astype(np.float64) * q
    data = np.ascontiguousarray(data[::-1, :])  # stored bottom line first
    data, unit = to_display_unit(data, unit)

    parts = (d.get("Scan size") or d.get("Scan Size") or glob.get("Scan size", "")).split()
    try:
        if len(parts) >= 3:
            sx, sy, su = float(parts[0]), float(parts[1]), parts[2]
        else:
            sx = sy = float(parts[0])
            su = parts[1] if len(parts) > 1 else "nm"
    except (ValueError, IndexError):
        raise InputError(path, "NanoScope header lacks a valid 'Scan size'") from None
    f = length_factor(su)
    if f is None:
        raise InputError(path, f"unknown scan size unit {su!r}")
    pixel_size = (sx * f / cols, sy * f / rows)
    md = {"image_header": dict(d), "version": glob.get("Version")}
    return make_heightmap(path, data, pixel_size, names[k], unit, FORMAT, names, md)
