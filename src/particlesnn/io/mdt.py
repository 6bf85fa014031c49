"""NT-MDT ``.mdt`` container (Nova / Nova Px): 2D image frames.

Layout: a 33-byte file header (magic ``01 b0 93 ff``, little-endian uint16 "last frame
index" at byte 12), then frames one after another. Every frame starts with a 22-byte
header: uint32 size (including this header), uint16 type, version, date and time.

Supported: "MDA" frames (type 106) holding a 2D image. After the frame header come
uint32 header size, uint32 total length, two 16-byte GUIDs, 4 reserved bytes, then
eight uint32 sizes (name, XML, info, spec, source info, var, data offset, data size),
the frame name (e.g. ``"1F:Iprobe"``), the UTF-16 XML, info, spec and source info, and the
"var" block: uint32 skipped, uint32 struct length, the array struct (uint64 cell count,
uint32 cell size, uint32 number of dimensions, uint32 number of measurands), then one
calibration record per dimension and per measurand (each: uint32 total length, uint32
struct length, uint32 name/comment/unit lengths, uint64 SI unit code, float64 accuracy,
float64 function id, float64 bias, float64 scale, uint64 min index, uint64 max index,
int32 data type, uint32 author length, then the strings). The data (x fastest) follow the
var block. A value is ``bias + scale * raw``; the pixel size is the dimension's scale.

Skipped: text frames (type 3), curve/point-cloud MDA frames (not two dimensions with one
measurand) and other frame types. Classic "scanned" frames (type 0) are NOT supported yet
(no sample file to check them): they raise InputError when they are the only images.
Row order is kept as stored (orientation not checked against a reference viewer).

Channel names: the frame names (``"1F:Iprobe"``); ``"Iprobe"`` also matches.
"""
from __future__ import annotations

import struct
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

FORMAT = "NT-MDT MDT"
EXTENSIONS = (".mdt",)
MAGIC = b"\x01\xb0\x93\xff"

# MDA cell data types (NT-MDT codes): signed/unsigned ints by size; floats encode mantissa bits
_MDA_TYPES = {
    -1: "<i1", 1: "<u1", -2: "<i2", 2: "<u2", -4: "<i4", 4: "<u4", -8: "<i8", 8: "<u8",
    -5892: "<f4", -13320: "<f8",
}


def sniff(head: bytes) -> bool:
    """True for an MDT file (magic ``01 b0 93 ff``)."""
    return head.startswith(MAGIC)


def _u32(buf: bytes, pos: int) -> int:
    return struct.unpack_from("<I", buf, pos)[0]


def _calib(path: Path, buf: bytes, pos: int) -> tuple[dict, int]:
    need_bytes(path, buf, pos, 8 + 12 + 72, "MDA calibration")
    total, slen = struct.unpack_from("<II", buf, pos)
    ln, lc, lu = struct.unpack_from("<III", buf, pos + 8)
    _si, _acc, _fid, bias, scale, imin, imax, dtype, la = _unpack_cal(buf, pos + 20)
    p = pos + 8 + slen
    need_bytes(path, buf, p, ln + lc + lu + la, "MDA calibration strings")
    name = buf[p:p + ln].decode("latin-1"); p += ln
    p += lc
    unit = buf[p:p + lu].decode("latin-1")
    cal = {"name": name, "unit": unit, "bias": bias, "scale": scale,
           "n": int(imax) - int(imin) + 1, "dtype": dtype}
    return cal, pos + total


def _unpack_cal(buf: bytes, pos: int):
    si, acc, fid, bias, scale = struct.unpack_from("<Qdddd", buf, pos)
    imin, imax, dtype, la = struct.unpack_from("<QQiI", buf, pos + 40)
    return si, acc, fid, bias, scale, imin, imax, dtype, la


def _frames(path: Path, buf: bytes) -> list[dict]:
    """All 2D image frames: dicts with name, shape, calibrations, data offset."""
    if not buf.startswith(MAGIC):
        raise InputError(path, "not an MDT file (bad magic)")
    need_bytes(path, buf, 0, 33, "file header")
    nframes = struct.unpack_from("<H", buf, 12)[0] + 1
    pos = 33
    out, skipped = [], []
    for i in range(nframes):
        need_bytes(path, buf, pos, 22, f"frame {i} header")
        size, ftype = struct.unpack_from("<IH", buf, pos)
        if size < 22:
            raise InputError(path, f"corrupt frame {i} (size {size})")
        need_bytes(path, buf, pos, size, f"frame {i}")
        if ftype == 106:
            fr = _mda(path, buf, pos, size)
            if fr is not None:
                out.append(fr)
            else:
                skipped.append(f"MDA frame {i} (not a 2D image)")
        elif ftype == 0:
            skipped.append(f"scanned frame {i} (type 0, not supported)")
        pos += size
    if not out:
        why = "; ".join(skipped) or "no frames"
        raise InputError(path, f"no readable 2D image frame in MDT file ({why})")
    return out


def _mda(path: Path, buf: bytes, start: int, size: int) -> dict | None:
    p = start + 22 + 8 + 32 + 4
    name_s, xml_s, info_s, spec_s, src_s, var_s, _doff, _dsize = struct.unpack_from("<8I", buf, p)
    p += 32
    name = buf[p:p + name_s].decode("utf-8", errors="replace"); p += name_s
    p += xml_s + info_s + spec_s + src_s
    var_start = p
    need_bytes(path, buf, p, 8 + 20, "MDA array header")
    slen = _u32(buf, p + 4)
    arr = p + 8
    cells, cell_size, ndim, nmeas = struct.unpack_from("<QIII", buf, arr)
    p = arr + slen
    cals = []
    for _ in range(ndim + nmeas):
        cal, p = _calib(path, buf, p)
        cals.append(cal)
    if ndim != 2 or nmeas != 1:
        return None
    dx, dy, meas = cals
    data_pos = var_start + var_s
    return {
        "name": name or "image", "cols": dx["n"], "rows": dy["n"], "x": dx, "y": dy,
        "z": meas, "cells": cells, "cell_size": cell_size, "data": data_pos,
        "end": start + size,
    }


def list_channels(path: str | Path) -> list[str]:
    """Names of the 2D image frames, e.g. ``["1F:Iprobe"]``."""
    p = Path(path)
    return [f["name"] for f in _frames(p, read_bytes(p))]


def read(path: str | Path, channel: str | None = None) -> HeightMap:
    """Read one 2D image frame (default: the first height-like one, else the first).

    Heights come in nm, currents in nA, other measurands in their unit; the pixel size
    is the x/y dimension scale converted to nm/px.
    """
    path = Path(path)
    buf = read_bytes(path)
    frames = _frames(path, buf)
    names = [f["name"] for f in frames]
    fr = frames[choose_channel(names, channel, path)]
    rows, cols = fr["rows"], fr["cols"]
    check_shape(path, rows, cols)
    dt = _MDA_TYPES.get(fr["z"]["dtype"])
    if dt is None:
        dt = {1: "<i1", 2: "<i2", 4: "<i4", 8: "<f8"}.get(fr["cell_size"])
    if dt is None:
        raise InputError(path, f"unsupported MDA data type {fr['z']['dtype']}")
    nbytes = rows * cols * np.dtype(dt).itemsize
    if fr["cells"] != rows * cols:
        raise InputError(path, f"frame {fr['name']}: {fr['cells']} cells but dimensions say {cols} x {rows}")
    if fr["data"] + nbytes > fr["end"]:
        raise InputError(path, f"frame {fr['name']}: image data runs past the frame end (corrupt header)")
    need_bytes(path, buf, fr["data"], nbytes)
    raw = np.frombuffer(buf, dt, count=rows * cols, offset=fr["data"]).reshape(rows, cols)
    z = fr["z"]
    data = z["bias"] + z["scale"] * raw.astype(np.float64)
    data, unit = to_display_unit(data, z["unit"])
    fx, fy = length_factor(fr["x"]["unit"]), length_factor(fr["y"]["unit"])
    if fx is None or fy is None:
        raise InputError(path, f"frame {fr['name']}: x/y unit {fr['x']['unit']!r} is not a length")
    pixel_size = (abs(fr["x"]["scale"]) * fx, abs(fr["y"]["scale"]) * fy)
    md = {"frame": fr["name"], "x_offset": fr["x"]["bias"], "y_offset": fr["y"]["bias"]}
    return make_heightmap(path, data, pixel_size, fr["name"], unit, FORMAT, names, md)
