"""Igor binary wave ``.ibw`` version 5 (Asylum Research AFM images): own parser.

``igor2`` is LGPL-3, so it is not used (no GPL/LGPL in the core). Layout, from WaveMetrics
Technical Note TN003: a 64-byte ``BinHeader5`` (int16 version = 5, which also tells the byte
order; int32 wfmSize, formulaSize, noteSize, dataEUnitsSize, dimEUnitsSize[4],
dimLabelsSize[4], sIndicesSize, optionsSize1, optionsSize2), a 320-byte ``WaveHeader5``
(npnts at 12, int16 type at 16, wave name at 28, nDim[4] at 68, sfA[4] and sfB[4] doubles
at 84 and 116 (x = sfA * index + sfB), dataUnits at 148, dimUnits[4][4] at 152), then the
data (column-major: x fastest, then y, then layers), the formula, the note (Asylum:
``Key: value`` lines separated by CR), extended units and dimension labels (32 bytes per
label; per dimension the first label names the dimension itself).

A 3D wave's layers are channels, named by the layer labels (``HeightRetrace``...). Labels
may carry junk after the name (``"DeflectionRetracee"`` seen in the wild): the reader
cuts a label after ``Trace``/``Retrace`` when something follows.

Units: Asylum stores heights, amplitudes and deflections in m (returned in nm), phase in
degrees and user inputs in V; the wave's ``dataUnits`` is used when the name says nothing.
Rows: Igor's y axis points up (the note's ``BottomLine: 0``), so row 0 of the wave is the
bottom line and the reader flips it.
"""
from __future__ import annotations

import re
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

FORMAT = "Igor binary wave"
EXTENSIONS = (".ibw",)
_TYPES = {2: "f4", 4: "f8", 8: "i1", 0x10: "i2", 0x20: "i4", 0x48: "u1", 0x50: "u2", 0x60: "u4"}
_LABEL_JUNK = re.compile(r"^(.*?(?:Retrace|Trace))[a-z]+$")


def sniff(head: bytes) -> bool:
    """True when the first two bytes hold IBW version 5 (either byte order)."""
    return len(head) >= 64 and head[:2] in (b"\x05\x00", b"\x00\x05")


def _clean_label(label: str) -> str:
    label = label.split("\0", 1)[0].strip()
    m = _LABEL_JUNK.match(label)
    return m.group(1) if m else label


def _unit_for(name: str, wave_unit: str) -> str:
    n = name.lower()
    if "phase" in n:
        return "deg"
    if any(k in n for k in ("height", "amplitude", "deflection", "zsensor", "z sensor")):
        return "m"
    if n.startswith("userin") or "bias" in n or "potential" in n:
        return "V"
    if "current" in n:
        return "A"
    return wave_unit


def _parse(path: Path, buf: bytes) -> dict:
    need_bytes(path, buf, 0, 64 + 320, "IBW headers")
    if buf[:2] == b"\x05\x00":
        bo = "<"
    elif buf[:2] == b"\x00\x05":
        bo = ">"
    else:
        v = struct.unpack_from("<h", buf, 0)[0]
        raise InputError(path, f"unsupported Igor binary wave version {v} (only version 5)")
    bh = struct.unpack_from(bo + "hhiiii4i4iiii", buf, 0)
    _, _, wfm_size, formula_size, note_size, deu_size = bh[:6]
    dimeu, dimlab = bh[6:10], bh[10:14]
    w = 64
    npnts = struct.unpack_from(bo + "i", buf, w + 12)[0]
    wtype = struct.unpack_from(bo + "h", buf, w + 16)[0]
    name = buf[w + 28:w + 60].split(b"\0", 1)[0].decode("latin-1")
    ndim = struct.unpack_from(bo + "4i", buf, w + 68)
    sfa = struct.unpack_from(bo + "4d", buf, w + 84)
    data_units = buf[w + 148:w + 152].split(b"\0", 1)[0].decode("latin-1")
    dim_units = [buf[w + 152 + 4 * i:w + 156 + 4 * i].split(b"\0", 1)[0].decode("latin-1") for i in range(4)]
    if wtype & 1:
        raise InputError(path, "complex waves are not images")
    if wtype not in _TYPES:
        raise InputError(path, f"unsupported Igor wave type {wtype}")
    dt = np.dtype(bo + _TYPES[wtype])
    shape = [n for n in ndim if n > 0]
    if len(shape) < 2:
        raise InputError(path, f"wave {name!r} is not an image (dimensions {shape or [npnts]})")
    if int(np.prod(shape)) != npnts:
        raise InputError(path, f"header dimensions {shape} do not match {npnts} points")
    if wfm_size < 320 + npnts * dt.itemsize:
        raise InputError(path, f"wave header says {wfm_size} bytes but {npnts} points of {dt} need {320 + npnts * dt.itemsize}")
    data_off = 64 + 320
    need_bytes(path, buf, data_off, npnts * dt.itemsize)
    p = data_off + npnts * dt.itemsize + formula_size
    note = buf[p:p + note_size].decode("latin-1", errors="replace") if note_size > 0 else ""
    p += note_size + deu_size
    ext_units = []
    for i in range(4):
        ext_units.append(buf[p:p + dimeu[i]].decode("latin-1").strip("\0") if dimeu[i] > 0 else "")
        p += dimeu[i]
    labels: list[list[str]] = []
    for i in range(4):
        raw = buf[p:p + dimlab[i]] if dimlab[i] > 0 else b""
        p += dimlab[i]
        labels.append([raw[k:k + 32].decode("latin-1") for k in range(0, len(raw), 32)])
    nlayers = shape[2] if len(shape) >= 3 else 1
    if len(shape) > 3:
        raise InputError(path, f"4D wave {name!r} is not supported")
    layer_labels = labels[2][1:] if len(labels[2]) > 1 else []
    chans = []
    for i in range(nlayers):
        lab = _clean_label(layer_labels[i]) if i < len(layer_labels) else ""
        chans.append(lab or (name if nlayers == 1 else f"{name}_{i}"))
    meta = {}
    for line in re.split(r"[\r\n]+", note):
        if ":" in line:
            k, v = line.split(":", 1)
            meta.setdefault(k.strip(), v.strip())
    return {
        "bo": bo, "dtype": dt, "shape": shape, "sfa": sfa, "data_units": data_units,
        "dim_units": [ext_units[i] or dim_units[i] for i in range(4)], "channels": chans,
        "note": meta, "name": name, "offset": data_off,
    }


def list_channels(path: str | Path) -> list[str]:
    """Layer names of the wave, e.g. ``["HeightRetrace", "AmplitudeRetrace", ...]``."""
    p = Path(path)
    return _parse(p, read_bytes(p))["channels"]


def read(path: str | Path, channel: str | None = None) -> HeightMap:
    """Read one layer of an IBW v5 image wave (default the height layer), heights in nm."""
    path = Path(path)
    buf = read_bytes(path)
    w = _parse(path, buf)
    nx, ny = w["shape"][0], w["shape"][1]
    check_shape(path, ny, nx)
    names = w["channels"]
    k = choose_channel(names, channel, path)
    n = nx * ny
    layer = np.frombuffer(buf, w["dtype"], count=n, offset=w["offset"] + k * n * w["dtype"].itemsize)
    data = layer.reshape(ny, nx)[::-1, :].astype(np.float64)  # Igor y axis up -> flip
    data, unit = to_display_unit(data, _unit_for(names[k], w["data_units"]))
    fx = length_factor(w["dim_units"][0] or "m")
    fy = length_factor(w["dim_units"][1] or "m")
    if fx is None or fy is None:
        raise InputError(path, f"x/y units {w['dim_units'][:2]} are not lengths")
    pixel_size = (abs(w["sfa"][0]) * fx, abs(w["sfa"][1]) * fy)
    md = {"note": w["note"], "wave": w["name"]}
    return make_heightmap(path, data, pixel_size, names[k], unit, FORMAT, names, md)
