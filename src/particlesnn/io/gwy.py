"""Gwyddion native ``.gwy`` files (``GWYP``), read with ``gwyfile`` (MIT).

Every ``/<n>/data`` GwyDataField is a channel, named by ``/<n>/data/title``. Sizes
``xreal``/``yreal`` and units ``si_unit_xy``/``si_unit_z`` come from the field; Gwyddion
stores row 0 as the top line, as particlesnn does. Default channel: the first height-like
title (``HeightRetrace``, ``Height``, ``Topography``, ``Z``...), else the first channel.
Old Gwyddion 1.x files (``GWYO``) are not readable by gwyfile and raise InputError.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.io._common import choose_channel, length_factor, make_heightmap, read_bytes, to_display_unit

FORMAT = "Gwyddion"
EXTENSIONS = (".gwy",)


def sniff(head: bytes) -> bool:
    """True for a Gwyddion 2 native file (magic ``GWYP``) or an old 1.x one (``GWYO``)."""
    return head[:4] in (b"GWYP", b"GWYO")


def _fields(path: Path) -> list[tuple[str, dict]]:
    buf = read_bytes(path)
    if buf[:4] == b"GWYO":
        raise InputError(path, "old Gwyddion 1.x file (GWYO) is not supported; re-save it in Gwyddion 2")
    if buf[:4] != b"GWYP":
        raise InputError(path, "not a Gwyddion file (bad magic)")
    import gwyfile  # lazy: only needed for .gwy

    try:
        obj = gwyfile.load(str(path))
        keys = sorted(
            (int(m.group(1)), k) for k in obj.keys() if (m := re.fullmatch(r"/(\d+)/data", k))
        )
        out = []
        for n, key in keys:
            field = obj[key]
            title = obj.get(f"/{n}/data/title") or f"channel {n}"
            out.append((str(title), {
                "data": np.asarray(field.data, dtype=np.float64),  # gwyfile reshapes here
                "xreal": float(field["xreal"]), "yreal": float(field["yreal"]),
                "unit_xy": _unit(field, "si_unit_xy"), "unit_z": _unit(field, "si_unit_z"),
            }))
    except InputError:
        raise
    except Exception as err:  # gwyfile raises assorted errors on damaged files
        raise InputError(path, f"damaged, truncated or inconsistent Gwyddion file ({type(err).__name__}: {err})") from None
    if not out:
        raise InputError(path, "Gwyddion file holds no image channel")
    return out


def list_channels(path: str | Path) -> list[str]:
    """Channel titles in container order, e.g. ``["HeightRetrace", "AmplitudeRetrace", ...]``."""
    return [t for t, _ in _fields(Path(path))]


def _unit(field, key: str) -> str:
    u = field.get(key)
    if u is None:
        return ""
    try:
        return str(u.get("unitstr", "") or "")
    except AttributeError:
        return ""


def read(path: str | Path, channel: str | None = None) -> HeightMap:
    """Read one channel of a .gwy file; heights in nm, pixel size in nm/px."""
    path = Path(path)
    fields = _fields(path)
    names = [t for t, _ in fields]
    k = choose_channel(names, channel, path)
    f = fields[k][1]
    data = f["data"]
    if data.ndim != 2:
        raise InputError(path, f"channel {names[k]!r} is not a 2D image")
    rows, cols = data.shape
    fxy = length_factor(f["unit_xy"] or "m")
    pixel_size = None
    if fxy is not None:
        pixel_size = (f["xreal"] * fxy / cols, f["yreal"] * fxy / rows)
    data, unit = to_display_unit(data, f["unit_z"] or "m")
    return make_heightmap(path, data, pixel_size, names[k], unit, FORMAT, names)
