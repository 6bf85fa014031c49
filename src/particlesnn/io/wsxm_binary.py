"""WSxM binary image (``.top``, ``.stp``, ``.ch1``, ... "SxM Image file").

Layout: an ASCII (latin-1) header that starts ``WSxM file copyright ...``, gives
``Image header size: N`` (bytes, the data start), ``[Control]`` ``X Amplitude``/``Y Amplitude``
(with units), ``[General Info]`` ``Number of rows``/``Number of columns``, ``Z Amplitude`` and
``Image Data Type`` (``short``/``integer``/``float``/``double``...), then the data, little-endian,
row 0 first.

Scaling (as WSxM does it): floating-point data are values in the Z amplitude's unit;
integer data are rescaled so that their range spans ``Z Amplitude``
(``z = raw * Z_amplitude / (raw_max - raw_min)``). Rows are kept in file order (row 0 = top
line, as WSxM displays it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.io._common import (
    check_shape,
    length_factor,
    make_heightmap,
    need_bytes,
    parse_quantity,
    read_bytes,
    to_display_unit,
)

FORMAT = "WSxM binary"
EXTENSIONS = (".top", ".stp", ".ch1", ".ch2", ".ch3", ".ch12", ".ch15", ".ch16", ".adh", ".sti", ".f", ".b")

DTYPES = {
    "short": "<i2", "short-data": "<i2", "integer": "<i4", "integer-data": "<i4",
    "signedinteger": "<i4", "unsignedshort": "<u2", "unsigned short": "<u2",
    "float": "<f4", "float-data": "<f4", "double": "<f8", "double-data": "<f8",
}


def sniff(head: bytes) -> bool:
    """True for a WSxM binary image header (copyright line + ``Image header size``)."""
    return head.startswith(b"WSxM file copyright") and b"Image header size" in head[:400]


def _header(path: Path, buf: bytes) -> tuple[dict[str, str], int]:
    if not sniff(buf[:512]):
        raise InputError(path, "not a WSxM binary image (no 'Image header size')")
    first = buf[:512].decode("latin-1")
    try:
        line = next(ln for ln in first.splitlines() if ln.startswith("Image header size"))
        size = int(line.split(":", 1)[1])
    except (StopIteration, ValueError):
        raise InputError(path, "cannot read 'Image header size'") from None
    need_bytes(path, buf, 0, size, "header")
    header: dict[str, str] = {}
    section = ""
    for ln in buf[:size].decode("latin-1").splitlines():
        s = ln.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1]
            continue
        if ":" in s:
            k, v = s.split(":", 1)
            header.setdefault(k.strip(), v.strip())
            header[f"{section}/{k.strip()}"] = v.strip()
    return header, size


def list_channels(path: str | Path) -> list[str]:
    """The file's one channel (``Acquisition channel``, e.g. ``"Topography"``)."""
    header, _ = _header(Path(path), read_bytes(path))
    return [header.get("Acquisition channel") or "Topography"]


def read(path: str | Path, channel: str | None = None) -> HeightMap:
    """Read a WSxM binary image; heights in nm, pixel size in nm/px from X/Y amplitude."""
    path = Path(path)
    buf = read_bytes(path)
    header, offset = _header(path, buf)
    try:
        rows = int(header["Number of rows"])
        cols = int(header["Number of columns"])
    except KeyError as err:
        raise InputError(path, f"header lacks {err.args[0]!r}") from None
    except ValueError:
        raise InputError(path, "header has a non-integer image size") from None
    check_shape(path, rows, cols)
    dtype_name = header.get("Image Data Type", "short").strip().lower()
    if dtype_name not in DTYPES:
        raise InputError(path, f"unsupported Image Data Type {dtype_name!r}")
    dt = np.dtype(DTYPES[dtype_name])
    need_bytes(path, buf, offset, rows * cols * dt.itemsize)
    raw = np.frombuffer(buf, dt, count=rows * cols, offset=offset).reshape(rows, cols)

    xa, xu = parse_quantity(header.get("X Amplitude", ""), path, "X Amplitude")
    ya, yu = parse_quantity(header.get("Y Amplitude", ""), path, "Y Amplitude")
    fx, fy = length_factor(xu or "nm"), length_factor(yu or "nm")
    if fx is None or fy is None:
        raise InputError(path, f"unknown X/Y amplitude unit {xu!r}/{yu!r}")
    pixel_size = (xa * fx / cols, ya * fy / rows)

    zamp, zu = parse_quantity(header.get("Z Amplitude", "1 nm"), path, "Z Amplitude")
    zu = zu or "nm"
    if dt.kind == "f":
        data = raw.astype(np.float64)
    else:
        r = raw.astype(np.float64)
        span = float(r.max() - r.min())
        data = r * (zamp / span) if span > 0 else r * 0.0
    data, unit = to_display_unit(data, zu)
    name = header.get("Acquisition channel") or "Topography"
    if channel is not None and channel.strip().lower() != name.lower():
        raise InputError(path, f"no channel {channel!r} (channels: {name})")
    return make_heightmap(path, data, pixel_size, name, unit, FORMAT, [name], {"header": header})
