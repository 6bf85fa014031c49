"""Helpers shared by the format readers: units, channel choice, NaN policy, byte checks.

Private to :mod:`particlesnn.io`; the readers call these so that every format answers bad
input the same way (one :class:`~particlesnn.InputError` line naming the file and problem).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap

#: Length units -> factor to nm. Keys are compared after :func:`_norm_unit`.
LENGTH_TO_NM = {
    "m": 1e9,
    "mm": 1e6,
    "um": 1e3,
    "nm": 1.0,
    "ang": 0.1,  # angstrom
    "pm": 1e-3,
    "fm": 1e-6,
}

#: Current units -> factor to nA.
CURRENT_TO_NA = {"a": 1e9, "ma": 1e6, "ua": 1e3, "na": 1.0, "pa": 1e-3, "fa": 1e-6}

#: Channel names (lower case, without direction suffix) taken as topography, best first.
HEIGHT_NAMES = (
    "heightretrace", "height", "topography", "z", "z-axis", "zsensor", "zsensorretrace",
    "heighttrace", "height sensor", "topo",
)

_FWD_BWD = re.compile(r"[_ ]?(fwd|bwd|forward|backward)$", re.IGNORECASE)


def _norm_unit(unit: str) -> str:
    """Lower-case a unit string, spelling micro and angstrom in ASCII.

    ``"µm"``/``"~m"`` (Bruker)/``"Âµm"`` (UTF-8 read as latin-1) -> ``"um"``; ``"Å"`` -> ``"ang"``.
    A plain ``"A"`` stays ampere (``"a"``).
    """
    u = unit.strip().replace("\u00c2\u00b5", "u").replace("\u00c2\u00b0", "\u00b0")
    for micro in ("\u00b5", "\u03bc", "~"):  # micro sign, greek mu, Bruker's ~m
        u = u.replace(micro, "u")
    u = u.replace("\u00c5", "ang").replace("\u212b", "ang")
    if u.lower() in ("angstrom", "angstroms", "ang"):
        u = "ang"
    return u.lower()


def length_factor(unit: str) -> float | None:
    """Factor that converts a length in ``unit`` to nm (``"µm"`` -> 1000), or None if not a length."""
    return LENGTH_TO_NM.get(_norm_unit(unit))


def to_display_unit(data: np.ndarray, unit: str) -> tuple[np.ndarray, str]:
    """Convert channel values to the unit particlesnn shows them in.

    Lengths go to nm, currents to nA; everything else (V, deg, Hz, ...) keeps its unit.

    Parameters
    ----------
    data : ndarray
        Values in ``unit``.
    unit : str
        Unit as written in the file (``"m"``, ``"A"``, ``"V"``, ``"°"``...).

    Returns
    -------
    (data, unit) : converted values and their unit string.
    """
    f = length_factor(unit)
    if f is not None:
        return data * f if f != 1.0 else data, "nm"
    u = _norm_unit(unit)
    if u in CURRENT_TO_NA:
        f = CURRENT_TO_NA[u]
        return data * f if f != 1.0 else data, "nA"
    if u in ("\u00b0", "deg", "degree", "degrees", "\u00ba"):
        return data, "deg"
    return data, unit.strip() or "a.u."


def parse_quantity(text: str, path: Path | None = None, what: str = "value") -> tuple[float, str]:
    """Split ``"15 µm"`` / ``"1,5nm"`` / ``"4.000000E-8"`` into (15.0, "µm").

    A decimal comma is accepted. Raises InputError when no number is found.
    """
    m = re.match(r"\s*([-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$", text)
    if not m:
        raise InputError(path, f"cannot read {what} from {text.strip()!r}")
    return float(m.group(1).replace(",", ".")), m.group(2)


def base_name(channel: str) -> str:
    """Channel name without direction suffix or frame prefix: ``"Z_fwd"`` -> ``"z"``, ``"1F:Iprobe"`` -> ``"iprobe"``."""
    name = _FWD_BWD.sub("", channel.strip())
    if ":" in name:
        name = name.split(":", 1)[1]
    return name.strip().lower()


def is_height(channel: str) -> bool:
    """True when the channel name reads as topography (height, Z, Topography...)."""
    return base_name(channel) in HEIGHT_NAMES


def choose_channel(names: Sequence[str], wanted: str | None, path: Path | None) -> int:
    """Index of the channel to read.

    ``wanted=None`` picks the first height-like channel (forward before backward), else the
    first channel. A wanted name matches exactly (case-insensitive), else by base name
    (``"Z"`` matches ``"Z_fwd"``; ``"Iprobe"`` matches ``"1F:Iprobe"``).
    Raises InputError naming the available channels when nothing matches.
    """
    if not names:
        raise InputError(path, "no image channel in file")
    if wanted is None:
        for pref in HEIGHT_NAMES:
            for i, n in enumerate(names):
                if base_name(n) == pref:
                    return i
        return 0
    w = wanted.strip().lower()
    for i, n in enumerate(names):
        if n.lower() == w:
            return i
    wdir = _direction(wanted)
    for i, n in enumerate(names):
        if base_name(n) == base_name(wanted) and (wdir is None or _direction(n) == wdir):
            return i
    raise InputError(path, f"no channel {wanted!r} (channels: {', '.join(names)})")


def _direction(name: str) -> str | None:
    """``"fwd"``, ``"bwd"`` or None from a channel name's suffix."""
    m = _FWD_BWD.search(name.strip())
    if not m:
        return None
    return "fwd" if m.group(1).lower() in ("fwd", "forward") else "bwd"


def read_bytes(path: str | Path, limit: int | None = None) -> bytes:
    """Whole file (or its first ``limit`` bytes) as bytes; InputError for a missing,
    unreadable or empty file."""
    p = Path(path)
    try:
        if limit is None:
            data = p.read_bytes()
        else:
            with open(p, "rb") as fh:
                data = fh.read(limit)
    except FileNotFoundError:
        raise InputError(p, "file not found") from None
    except IsADirectoryError:
        raise InputError(p, "is a directory, not a file") from None
    except OSError as err:
        raise InputError(p, f"cannot read file ({err.strerror or err})") from None
    if not data:
        raise InputError(p, "empty file")
    return data


def need_bytes(path: Path, buf: bytes, offset: int, nbytes: int, what: str = "image data") -> None:
    """Raise InputError when ``buf`` holds fewer than ``offset + nbytes`` bytes (truncated file)."""
    if offset < 0 or nbytes < 0:
        raise InputError(path, f"corrupt header (negative offset or size for {what})")
    if offset + nbytes > len(buf):
        have = max(0, len(buf) - offset)
        raise InputError(
            path,
            f"truncated file or wrong size in header ({what}: expected {nbytes} bytes at "
            f"offset {offset}, found {have})",
        )


def check_shape(path: Path, rows: int, cols: int) -> None:
    """InputError unless the header's image size is positive and sane (< 65536 px a side)."""
    if rows <= 0 or cols <= 0:
        raise InputError(path, f"header gives an empty image size ({cols} x {rows} px)")
    if rows > 65536 or cols > 65536:
        raise InputError(path, f"header gives an implausible image size ({cols} x {rows} px)")


def fill_nans(data: np.ndarray, path: Path | None) -> tuple[np.ndarray, int]:
    """Fill non-finite pixels with the value of the nearest finite pixel.

    Policy: an image with no finite value raises InputError; otherwise NaN/inf pixels (holes
    inside the scanned part: :func:`make_heightmap` cuts an unfinished scan's empty edge lines
    first) are filled by nearest-neighbour and their number returned so the reader can record
    a warning. Returns (data, n_filled).
    """
    bad = ~np.isfinite(data)
    n = int(bad.sum())
    if n == 0:
        return data, 0
    if n == data.size:
        raise InputError(path, "no valid pixel (all values are NaN or infinite)")
    from scipy import ndimage

    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    filled = data[tuple(idx)]
    return filled, n


def scanned_region(data: np.ndarray) -> tuple[int, int, int, int]:
    """``(r0, r1, c0, c1)``: the part of an image that was scanned, without the lines at its
    edges that hold no data (an unfinished scan: NaN rows after the last line scanned, or
    before it when the scan ran upwards; columns likewise). The partial line next to them (the
    scan stopped in its middle) goes too. Interior holes are not cut. The whole image when no
    edge line is empty."""
    good = np.isfinite(data)
    rows_any, cols_any = good.any(axis=1), good.any(axis=0)
    if not rows_any.any():
        return 0, data.shape[0], 0, data.shape[1]
    r0 = int(np.argmax(rows_any))
    r1 = int(len(rows_any) - np.argmax(rows_any[::-1]))
    c0 = int(np.argmax(cols_any))
    c1 = int(len(cols_any) - np.argmax(cols_any[::-1]))
    rows_all = good[:, c0:c1].all(axis=1)
    cols_all = good[r0:r1, :].all(axis=0)
    # the line where the scan stopped, next to the empty ones, is partial: cut it too
    if r1 < data.shape[0] and r1 - r0 > 1 and not rows_all[r1 - 1]:
        r1 -= 1
    if r0 > 0 and r1 - r0 > 1 and not rows_all[r0]:
        r0 += 1
    if c1 < data.shape[1] and c1 - c0 > 1 and not cols_all[c1 - 1]:
        c1 -= 1
    if c0 > 0 and c1 - c0 > 1 and not cols_all[c0]:
        c0 += 1
    return r0, r1, c0, c1


def make_heightmap(
    path: Path,
    data: np.ndarray,
    pixel_size: tuple[float, float] | None,
    channel: str,
    unit: str,
    fmt: str,
    channels: Sequence[str],
    metadata: dict[str, Any] | None = None,
) -> HeightMap:
    """Build the HeightMap every reader returns, applying the NaN policy: edge lines without
    data (an unfinished scan) are cut off (:func:`scanned_region`; ``metadata``
    ``scanned_region`` = [r0, r1, c0, c1] of the file's frame, ``file_shape``, and a warning),
    other NaN pixels filled (:func:`fill_nans`).

    ``data`` must already be in ``unit`` (nm for heights), row 0 the top line;
    ``pixel_size`` is (x, y) in nm/px. ``metadata`` gets ``format``, ``channels`` and, when
    pixels were filled, ``warnings`` and ``nan_filled`` (count).
    """
    data = np.asarray(data)
    if data.ndim != 2 or data.size == 0:
        raise InputError(path, f"image data is not a 2D image (shape {data.shape})")
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float64)
    md: dict[str, Any] = dict(metadata or {})
    r0, r1, c0, c1 = scanned_region(data)
    if (r0, r1, c0, c1) != (0, data.shape[0], 0, data.shape[1]):
        rows, cols = data.shape
        md["scanned_region"] = [r0, r1, c0, c1]
        md["file_shape"] = [rows, cols]
        empty = [f"{what} {a}-{b - 1}" if b - a > 1 else f"{what} {a}"
                 for what, a, b in (("rows", 0, r0), ("rows", r1, rows),
                                    ("columns", 0, c0), ("columns", c1, cols)) if b > a]
        md.setdefault("warnings", []).append(
            f"unfinished scan: {', '.join(empty)} of {cols} x {rows} px hold no (or partial) "
            f"data and are left out; the scanned {c1 - c0} x {r1 - r0} px are analysed "
            "(densities and coverage over their area)")
        data = data[r0:r1, c0:c1]
    data, n_filled = fill_nans(data, path)
    md["format"] = fmt
    md["channels"] = list(channels)
    if n_filled:
        md.setdefault("warnings", []).append(
            f"{n_filled} NaN/inf pixel(s) filled with the nearest valid value"
        )
        md["nan_filled"] = n_filled
    if pixel_size is not None:
        px, py = (float(v) for v in pixel_size)
        if not (np.isfinite(px) and np.isfinite(py)) or px <= 0 or py <= 0:
            raise InputError(path, f"header gives an invalid pixel size ({px:g} x {py:g} nm)")
        pixel_size = (px, py)
    return HeightMap(
        data=data, pixel_size=pixel_size, channel=channel, unit=unit, source=Path(path), metadata=md
    )
