"""Gwyddion Simple Field (``.gsf``): read and write.

Layout: the line ``Gwyddion Simple Field 1.0``, then ``Key = value`` lines (``XRes``,
``YRes`` required; ``XReal``, ``YReal`` in ``XYUnits``; ``ZUnits``; ``Title`` ...), then 1 to
4 NUL bytes so the header length is a multiple of 4, then ``XRes * YRes`` little-endian
float32 values, row 0 = top line. Write -> read is exact for float32 data (float64 data is
rounded to float32 on write, as the format stores float32).
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
    read_bytes,
    to_display_unit,
)

FORMAT = "Gwyddion Simple Field"
EXTENSIONS = (".gsf",)
MAGIC = b"Gwyddion Simple Field 1.0"


def sniff(head: bytes) -> bool:
    """True when the file starts with the GSF magic line."""
    return head.startswith(MAGIC)


def _parse(path: Path, buf: bytes) -> tuple[dict[str, str], int]:
    if not buf.startswith(MAGIC):
        raise InputError(path, "not a Gwyddion Simple Field file (missing magic line)")
    nul = buf.find(b"\0")
    if nul < 0:
        raise InputError(path, "truncated file (GSF header not terminated by NUL padding)")
    header: dict[str, str] = {}
    for line in buf[:nul].decode("utf-8", errors="replace").splitlines()[1:]:
        if "=" in line:
            k, v = line.split("=", 1)
            header[k.strip()] = v.strip()
    offset = (nul // 4 + 1) * 4  # padding 1..4 NULs to a multiple of 4
    return header, offset


def list_channels(path: str | Path) -> list[str]:
    """The single channel of a GSF file (its ``Title``, default ``"Topography"``)."""
    header, _ = _parse(Path(path), read_bytes(path)[:65536])
    return [header.get("Title") or "Topography"]


def read(path: str | Path, channel: str | None = None) -> HeightMap:
    """Read a GSF file.

    Returns a HeightMap in nm (when ``ZUnits`` is a length, else that unit) with
    ``pixel_size = (XReal/XRes, YReal/YRes)`` converted to nm/px (``XYUnits``, default m).
    """
    path = Path(path)
    buf = read_bytes(path)
    header, offset = _parse(path, buf)
    try:
        xres, yres = int(header["XRes"]), int(header["YRes"])
    except KeyError as err:
        raise InputError(path, f"GSF header lacks {err.args[0]}") from None
    except ValueError:
        raise InputError(path, "GSF header has a non-integer XRes/YRes") from None
    check_shape(path, yres, xres)
    need_bytes(path, buf, offset, xres * yres * 4)
    data = np.frombuffer(buf, "<f4", count=xres * yres, offset=offset).reshape(yres, xres)
    extra = len(buf) - offset - xres * yres * 4
    if extra:
        raise InputError(
            path, f"file holds {extra} bytes more than XRes x YRes = {xres} x {yres} (wrong size in header)"
        )
    xyu = header.get("XYUnits", "m")
    f = length_factor(xyu)
    pixel_size = None
    if f is not None:
        try:
            xreal = float(header.get("XReal", "1")) * f
            yreal = float(header.get("YReal", "1")) * f
        except ValueError:
            raise InputError(path, "GSF header has a non-numeric XReal/YReal") from None
        pixel_size = (xreal / xres, yreal / yres)
    data, unit = to_display_unit(data.astype(np.float64), header.get("ZUnits", "m"))
    title = header.get("Title") or "Topography"
    if channel is not None and channel.strip().lower() != title.lower():
        raise InputError(path, f"no channel {channel!r} (channels: {title})")
    return make_heightmap(path, data, pixel_size, title, unit, FORMAT, [title], {"header": header})


def write(path: str | Path, hm: HeightMap) -> Path:
    """Write ``hm`` as GSF: data as float32 in ``hm.unit`` (``ZUnits``), sizes in nm.

    ``XReal``/``YReal`` are written with ``%.17g`` in nm (``XYUnits = nm``), or in px with
    ``XYUnits = px`` when the scale is unknown. Returns the path written.
    """
    path = Path(path)
    data = np.ascontiguousarray(hm.data, dtype="<f4")
    rows, cols = data.shape
    if hm.pixel_size is not None:
        xreal, yreal, xyu = hm.pixel_size[0] * cols, hm.pixel_size[1] * rows, "nm"
    else:
        xreal, yreal, xyu = float(cols), float(rows), "px"
    lines = [
        MAGIC.decode(),
        f"XRes = {cols}",
        f"YRes = {rows}",
        f"XReal = {xreal:.17g}",
        f"YReal = {yreal:.17g}",
        f"XYUnits = {xyu}",
        f"ZUnits = {hm.unit or 'nm'}",
        f"Title = {hm.channel}",
    ]
    head = ("\n".join(lines) + "\n").encode("utf-8")
    head += b"\0" * (4 - len(head) % 4)
    with open(path, "wb") as fh:
        fh.write(head)
        fh.write(data.tobytes())
    return path
