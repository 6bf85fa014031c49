"""WSxM ASCII matrix (``.txt``): the input format of the original ParticlesNN.

Layout::

    WSxM file copyright UAM            (or "... Nanotec Electronica" in older builds)
    WSxM ASCII Matrix file
    X Amplitude: 100 nm
    Y Amplitude: 100 nm
    Z Amplitude: 12.5 nm
    <row 0: values separated by TAB or spaces>
    ...

The image size comes from the row and column count; the pixel size is X (Y) amplitude
divided by the number of columns (rows). X/Y/Z units may be m, mm, µm, nm, Å or pm; values
are taken in the Z amplitude's unit (nm when no Z line). Decimal commas are accepted.
Row 0 of the file is the top line of the image (as WSxM and the ParticlesNN reader show it).

A headerless numeric matrix (rows of numbers only) is read too, with unknown scale
(``pixel_size=None``, unit ``"a.u."``).

The writer uses ``%.17g``, so write -> read gives back exactly the same float64 values.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.io._common import (
    length_factor,
    make_heightmap,
    parse_quantity,
    read_bytes,
    to_display_unit,
)

FORMAT = "WSxM ASCII matrix"
EXTENSIONS = (".txt", ".asc")

_NUM = re.compile(r"^[\s]*[-+]?(\d|[.,]\d|nan|inf)", re.IGNORECASE)


def sniff(head: bytes) -> bool:
    """True when the first bytes look like a WSxM ASCII matrix file."""
    h = head[:200].lstrip(b"\xef\xbb\xbf")
    return h.startswith(b"WSxM file copyright") and b"ASCII Matrix" in head[:400]


def _decode(raw: bytes) -> str:
    raw = raw.lstrip(b"\xef\xbb\xbf")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _is_data_line(line: str) -> bool:
    s = line.strip()
    if not s or not _NUM.match(s):
        return False
    # a header line "key: value" never starts with a number, but guard against "1: x"
    return ":" not in s


def list_channels(path: str | Path) -> list[str]:
    """The one channel of a WSxM ASCII file (``["Topography"]``, or ``["Z"]`` for non-heights)."""
    return read(path).metadata["channels"]


def read(path: str | Path, channel: str | None = None) -> HeightMap:
    """Read a WSxM ASCII matrix file.

    Parameters
    ----------
    path : str or Path
    channel : str, optional
        Ignored except that a name other than the file's one channel raises InputError.

    Returns
    -------
    HeightMap
        ``data`` in nm when Z is a length (else the Z unit), ``pixel_size`` in nm/px from the
        X/Y amplitudes (None for a headerless matrix or amplitudes given in px).
    """
    path = Path(path)
    text = _decode(read_bytes(path))
    lines = text.splitlines()
    header: dict[str, str] = {}
    first_data = None
    for i, line in enumerate(lines):
        if _is_data_line(line):
            first_data = i
            break
        if ":" in line:
            k, v = line.split(":", 1)
            header[k.strip()] = v.strip()
    titled = bool(lines) and lines[0].lstrip("\ufeff").startswith("WSxM file copyright")
    if first_data is None:
        raise InputError(path, "no numeric data found (not a WSxM ASCII matrix, or header only)")
    if not titled and first_data > 0:
        raise InputError(path, "unknown or unsupported format (text file without WSxM header)")
    rows_txt = [ln for ln in lines[first_data:] if ln.strip()]
    # separator: TAB / spaces, or ';' ; decimal comma when a comma sits inside a token
    sample = rows_txt[0]
    if ";" in sample:
        split_rows = [r.replace(",", ".").split(";") for r in rows_txt]
    elif "\t" not in sample and " " not in sample.strip() and "," in sample:
        split_rows = [r.split(",") for r in rows_txt]  # comma-separated values
    else:
        split_rows = [r.replace(",", ".").split() for r in rows_txt]
    ncols = len(split_rows[0])
    for k, r in enumerate(split_rows):
        if len(r) != ncols:
            raise InputError(
                path,
                f"ragged matrix: data row {k} has {len(r)} values, row 0 has {ncols} "
                "(truncated or corrupt file)",
            )
    try:
        data = np.array([v for r in split_rows for v in r], dtype=np.float64)
    except ValueError as err:
        bad = str(err).split(":")[-1].strip()
        raise InputError(path, f"non-numeric value {bad} in data") from None
    nrows = len(split_rows)
    data = data.reshape(nrows, ncols)

    for key, n in (("Number of rows", nrows), ("Number of columns", ncols)):
        if key in header:
            try:
                claimed = int(float(header[key]))
            except ValueError:
                continue
            if claimed != n:
                raise InputError(
                    path, f"header says {key.lower()} = {claimed} but the file holds {n}"
                )

    pixel_size = None
    if "X Amplitude" in header and "Y Amplitude" in header:
        xa, xu = parse_quantity(header["X Amplitude"], path, "X Amplitude")
        ya, yu = parse_quantity(header["Y Amplitude"], path, "Y Amplitude")
        fx, fy = length_factor(xu or "nm"), length_factor(yu or "nm")
        if xu.lower() == "px" or yu.lower() == "px":
            pixel_size = None
        elif fx is None or fy is None:
            raise InputError(path, f"unknown X/Y unit {xu!r}/{yu!r} in header")
        else:
            pixel_size = (xa * fx / ncols, ya * fy / nrows)
    elif titled:
        raise InputError(path, "header has no X/Y Amplitude (physical size unknown)")

    zunit = "nm" if titled else "a.u."
    if "Z Amplitude" in header:
        _, zu = parse_quantity(header["Z Amplitude"], path, "Z Amplitude")
        if zu:
            zunit = zu
    data, unit = to_display_unit(data, zunit)
    names = ["Topography"] if unit == "nm" else ["Z"]
    if channel is not None and channel.strip().lower() not in ("topography", "z", names[0].lower()):
        raise InputError(path, f"no channel {channel!r} (channels: {names[0]})")
    md = {"header": header}
    if not titled:
        md.setdefault("warnings", []).append("no WSxM header: scale unknown")
    return make_heightmap(path, data, pixel_size, names[0], unit, FORMAT, names, md)


def write(path: str | Path, hm: HeightMap) -> Path:
    """Write ``hm`` as a WSxM ASCII matrix (5 header lines, TAB-separated, CRLF).

    Values are written with ``%.17g`` so reading the file back gives the same float64
    numbers; X/Y amplitudes are ``pixel_size * cols`` (``rows``) in nm, or the size in
    ``px`` when the scale is unknown. Z amplitude is ``max - min`` in ``hm.unit``.
    Returns the path written.
    """
    path = Path(path)
    data = np.asarray(hm.data, dtype=np.float64)
    rows, cols = data.shape
    if hm.pixel_size is not None:
        xs = f"{hm.pixel_size[0] * cols:.17g} nm"
        ys = f"{hm.pixel_size[1] * rows:.17g} nm"
    else:
        xs, ys = f"{cols} px", f"{rows} px"
    finite = data[np.isfinite(data)]
    zamp = float(finite.max() - finite.min()) if finite.size else 0.0
    unit = hm.unit or "nm"
    lines = [
        "WSxM file copyright UAM",
        "WSxM ASCII Matrix file",
        f"X Amplitude: {xs}",
        f"Y Amplitude: {ys}",
        f"Z Amplitude: {zamp:.17g} {unit}",
    ]
    row_fmt = "\t".join(["%.17g"] * cols)  # one % per row: 1.9x faster than per value (1024 px, 2026-12-07)
    body = [row_fmt % tuple(row) for row in data.tolist()]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("\r\n".join(lines + body) + "\r\n")
    return path
