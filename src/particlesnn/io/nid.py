"""Nanosurf ``.nid`` (easyScan 2 "v2" files and newer Nanosurf software).

Layout: an INI-like header (CRLF; ``[DataSet]`` lists groups ``Gr<g>-Name`` such as
``Scan forward``/``Scan backward`` and their channels ``Gr<g>-Ch<c>=DataSet-<g>:<c>``; each
``[DataSet-g:c]`` section gives ``Points``, ``Lines``, ``Dim0Range`` (x, m), ``Dim1Range`` (y),
``Dim2Name``/``Dim2Unit``/``Dim2Min``/``Dim2Range`` (z) and ``SaveBits`` 16 or 32), then
``#!`` and the data of every channel in header order, little-endian signed integers.

Scaling: ``z = Dim2Min + (raw + 2**(bits-1)) / 2**bits * Dim2Range`` (the signed range maps
onto [Dim2Min, Dim2Min + Dim2Range]). Lines are stored in order of increasing y
(``Dim1Min`` upward), so the reader flips them to put the top line in row 0.

Channel names: ``"<Dim2Name>_fwd"`` / ``"<Dim2Name>_bwd"`` (``"Topography_fwd"``,
``"Z-Axis_bwd"``, ``"Amplitude_fwd"``); other groups keep their group name as suffix.
Default: the forward topography channel.
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

FORMAT = "Nanosurf NID"
EXTENSIONS = (".nid",)


def sniff(head: bytes) -> bool:
    """True for a Nanosurf NID header (starts with ``[DataSet]``)."""
    return head.lstrip(b"\xef\xbb\xbf").startswith(b"[DataSet]")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse(path: Path, buf: bytes):
    start = buf.find(b"#!")
    if start < 0:
        raise InputError(path, "truncated file or not a NID file (no '#!' data marker)")
    sections: dict[str, dict[str, str]] = {}
    cur = None
    for line in _decode(buf[:start]).splitlines():
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            cur = sections.setdefault(s[1:-1], {})
        elif cur is not None and "=" in s:
            k, v = s.split("=", 1)
            cur[k.strip()] = v.strip()
    ds = sections.get("DataSet")
    if ds is None:
        raise InputError(path, "NID header lacks the [DataSet] section")
    images = []  # (name, section dict)
    try:
        ngroups = int(ds.get("GroupCount", "0"))
    except ValueError:
        raise InputError(path, "NID header has a non-integer GroupCount") from None
    for g in range(ngroups):
        gname = ds.get(f"Gr{g}-Name", f"group {g}")
        keys = sorted(
            (int(m.group(1)), v)
            for k, v in ds.items()
            if (m := re.fullmatch(rf"Gr{g}-Ch(\d+)", k))
        )
        for _, secname in keys:
            sec = sections.get(secname)
            if sec is None:
                raise InputError(path, f"NID header lists {secname} but has no such section")
            low = gname.lower()
            suffix = {"scan forward": "fwd", "scan backward": "bwd"}.get(
                low, re.sub(r"\s+", "_", low)
            )
            name = f"{sec.get('Dim2Name', secname)}_{suffix}"
            images.append((name, sec))
    if not images:
        raise InputError(path, "NID file lists no data channels")
    return sections, images, start + 2


def list_channels(path: str | Path) -> list[str]:
    """Channel names in file order, e.g. ``["Topography_fwd", "Amplitude_fwd", "Topography_bwd", ...]``."""
    return [n for n, _ in _parse(Path(path), read_bytes(path))[1]]


def read(path: str | Path, channel: str | None = None) -> HeightMap:
    """Read one channel of a NID file (default forward topography), heights in nm."""
    path = Path(path)
    buf = read_bytes(path)
    sections, images, offset = _parse(path, buf)
    names = [n for n, _ in images]
    k = choose_channel(names, channel, path)
    sizes = []
    for name, sec in images:
        try:
            pts, lns, bits = int(sec["Points"]), int(sec["Lines"]), int(sec.get("SaveBits", "16"))
        except (KeyError, ValueError):
            raise InputError(path, f"NID section for {name} lacks a valid Points/Lines/SaveBits") from None
        if bits not in (8, 16, 32):
            raise InputError(path, f"unsupported SaveBits = {bits} for {name}")
        sizes.append((pts, lns, bits))
    total = sum(p * l * b // 8 for p, l, b in sizes)
    need_bytes(path, buf, offset, total, f"{len(images)} channels")
    pos = offset + sum(p * l * b // 8 for p, l, b in sizes[:k])
    pts, lns, bits = sizes[k]
    check_shape(path, lns, pts)
    name, sec = images[k]
    raw = np.frombuffer(buf, f"<i{bits // 8}", count=pts * lns, offset=pos).reshape(lns, pts)
    try:
        zmin, zrange = float(sec["Dim2Min"]), float(sec["Dim2Range"])
        xrange_, yrange = float(sec["Dim0Range"]), float(sec["Dim1Range"])
    except (KeyError, ValueError):
        raise InputError(path, f"NID section for {name} lacks Dim0Range/Dim1Range/Dim2Min/Dim2Range") from None
    q = float(2 ** bits)
    data = zmin + (raw.astype(np.float64) + q / 2) / q * zrange
    data = data[::-1, :]  # stored with increasing y: bottom line first
    data, unit = to_display_unit(np.ascontiguousarray(data), sec.get("Dim2Unit", "m"))
    fx = length_factor(sec.get("Dim0Unit", "m"))
    fy = length_factor(sec.get("Dim1Unit", "m"))
    if fx is None or fy is None:
        raise InputError(path, "NID x/y unit is not a length")
    pixel_size = (xrange_ * fx / pts, yrange * fy / lns)
    md = {"section": dict(sec)}
    return make_heightmap(path, data, pixel_size, name, unit, FORMAT, names, md)
