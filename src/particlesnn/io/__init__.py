"""Instrument-file readers and writers: every format becomes a :class:`~particlesnn.HeightMap`.

>>> from particlesnn import io
>>> hm = io.read("scan.sxm")                 # format picked by content, then extension
>>> io.list_channels("scan.sxm")             # ['Z_fwd', 'Z_bwd', 'Current_fwd', 'Current_bwd']
>>> io.write(hm, "scan.gsf")                 # .txt (WSxM ASCII), .gsf, .png, .tif

One small module per format, each with ``read(path, channel=None) -> HeightMap``,
``list_channels(path)`` and ``sniff(head_bytes)``. Heights are returned in nm, other
channels in their own unit (``hm.unit``: ``"nA"``, ``"V"``, ``"deg"``); ``pixel_size`` is
(x, y) in nm/px; row 0 is the top line of the image as displayed.
``metadata["format"]`` names the format and ``metadata["channels"]`` lists all channels.

NaN policy (all readers): an image with no finite value raises InputError; lines at the
edges without data (an unfinished scan) are cut off, so the map is the scanned part
(``metadata["scanned_region"]`` = [r0, r1, c0, c1] in the file's frame, ``file_shape``, a
warning; :func:`in_file_frame` puts a label image back in the file's frame,
:func:`in_read_frame` cuts one drawn on the whole file); plain images leave out an SEM info
band or FEI data bar along the bottom the same way; other NaN/inf pixels are filled with the
nearest valid value and ``metadata["warnings"]`` /
``metadata["nan_filled"]`` say how many.

Readers accept what the file holds; :func:`validate` is the stricter check that analysis
stages call before working on a map (rejects empty, constant, all-NaN, non-2D and < 8 x 8 px).
"""
from __future__ import annotations

import importlib
import struct
from pathlib import Path
from types import ModuleType

import numpy as np

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.io._common import read_bytes

#: Format modules (name -> module path), in the order content sniffing tries them.
_MODULES = {
    "wsxm_ascii": "particlesnn.io.wsxm_ascii",
    "wsxm_binary": "particlesnn.io.wsxm_binary",
    "gsf": "particlesnn.io.gsf",
    "gwy": "particlesnn.io.gwy",
    "nanonis": "particlesnn.io.nanonis",
    "nanoscope": "particlesnn.io.nanoscope",
    "mdt": "particlesnn.io.mdt",
    "nid": "particlesnn.io.nid",
    "ibw": "particlesnn.io.ibw",
    "image": "particlesnn.io.image",
}

#: Extensions -> format key (files are matched by content first; see :func:`detect`).
_EXT = {
    ".txt": "wsxm_ascii", ".asc": "wsxm_ascii",
    ".top": "wsxm_binary", ".stp": "wsxm_binary",
    ".gsf": "gsf", ".gwy": "gwy", ".sxm": "nanonis",
    ".spm": "nanoscope", **{f".{i:03d}": "nanoscope" for i in range(10)},
    ".mdt": "mdt", ".nid": "nid", ".ibw": "ibw",
    ".png": "image", ".tif": "image", ".tiff": "image", ".bmp": "image",
    ".jpg": "image", ".jpeg": "image",
}

#: Supported input extensions -> human format name (used by the web upload check and ``info``).
SUPPORTED: dict[str, str] = {
    ".txt": "WSxM ASCII matrix", ".asc": "WSxM ASCII matrix",
    ".top": "WSxM binary", ".stp": "WSxM binary",
    ".gsf": "Gwyddion Simple Field", ".gwy": "Gwyddion",
    ".sxm": "Nanonis SXM", ".spm": "Bruker NanoScope",
    **{f".{i:03d}": "Bruker NanoScope" for i in range(10)},
    ".mdt": "NT-MDT MDT", ".nid": "Nanosurf NID", ".ibw": "Igor binary wave",
    ".png": "image", ".tif": "image", ".tiff": "image", ".bmp": "image",
    ".jpg": "image", ".jpeg": "image",
}

#: Extensions :func:`write` can produce.
WRITABLE = (".txt", ".gsf", ".png", ".tif", ".tiff")

#: Smallest image the analysis accepts (px a side).
MIN_SIDE = 8

_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+", b"BM", b"\xff\xd8\xff")


def _module(key: str) -> ModuleType:
    return importlib.import_module(_MODULES[key])


def detect(path: str | Path) -> str:
    """Format key of a file (``"nanonis"``, ``"gsf"``, ...), by content first, then extension.

    Raises InputError for a missing or empty file, or when neither the content nor the
    extension is recognised.
    """
    p = Path(path)
    head = read_bytes(p, limit=4096)
    ext = p.suffix.lower()
    for key in ("wsxm_ascii", "wsxm_binary", "gsf", "gwy", "nanonis", "nanoscope", "mdt", "nid"):
        if _module(key).sniff(head):
            return key
    if head.startswith(_IMAGE_MAGIC):
        return "image"
    if ext == ".ibw" and _module("ibw").sniff(head):
        return "ibw"
    if ext in (".txt", ".asc") and _looks_numeric(head):
        return "wsxm_ascii"  # headerless numeric matrix
    known = " ".join(e for e in SUPPORTED if not e[1:].isdigit() or e == ".001")
    if ext in _EXT:
        raise InputError(
            p, f"unknown or unsupported format (content is not {SUPPORTED[ext]})"
        )
    raise InputError(p, f"unknown or unsupported format (reads {known} ...)")


def readable(path: str | Path) -> bool:
    """Whether the content of ``path`` is of a format particlesnn reads (:func:`detect`): a
    ``.txt`` that is a note or an SEM sidecar file is not, a WSxM matrix is."""
    try:
        detect(path)
    except InputError:
        return False
    return True


def _looks_numeric(head: bytes) -> bool:
    text = head.decode("latin-1").lstrip("\ufeff")
    first = text.splitlines()[0] if text.splitlines() else ""
    toks = first.replace(",", ".").replace(";", " ").split()
    if not toks:
        return False
    try:
        [float(t) for t in toks]
    except ValueError:
        return False
    return True


def format_name(path: str | Path) -> str:
    """Human name of a file's format (``"Nanonis SXM"``); InputError when unknown."""
    key = detect(path)
    if key == "image":
        return "image"
    return _module(key).FORMAT


def read(path: str | Path, channel: str | None = None, *, pixel_size: float | None = None,
         scale_bar: float | None = None) -> HeightMap:
    """Read an SPM or image file into a HeightMap.

    Parameters
    ----------
    path : str or Path
        Instrument file (.sxm, .gwy, .gsf, .txt WSxM, .top/.stp, .ibw, .mdt, .nid,
        NanoScope .0xx/.spm) or plain image (.png .tif .tiff .bmp .jpg .jpeg).
    channel : str, optional
        Channel name (see :func:`list_channels`); ``"Z"`` also selects ``"Z_fwd"``. Default:
        the forward topography/height channel, else the first one.
    pixel_size : float, optional
        Plain images only: pixel size in nm/px (instrument files carry their own).
    scale_bar : float, optional
        Plain images only: length in nm of the burnt-in scale bar, which then sets the pixel
        size (see :func:`particlesnn.io.image.read`).

    Returns
    -------
    HeightMap
        Heights in nm (other channels in their unit), pixel size in nm/px (None for plain
        images without scale), row 0 = top line.

    Raises
    ------
    InputError
        Missing, empty, truncated, unknown-format or inconsistent file; unknown channel.
    """
    mod = _module(detect(path))
    if mod.__name__.endswith(".image"):
        return _guarded(mod, path, lambda: mod.read(path, channel=channel, pixel_size=pixel_size,
                                                    scale_bar=scale_bar))
    return _guarded(mod, path, lambda: mod.read(path, channel=channel))


def _guarded(mod: ModuleType, path: str | Path, fn):
    """Run a reader call; turn an unexpected low-level error from a corrupt file into InputError."""
    try:
        return fn()
    except InputError:
        raise
    except (ValueError, IndexError, KeyError, OverflowError, UnicodeError, struct.error) as err:
        # safety net: a header corrupted in a way no reader check anticipated
        name = getattr(mod, "FORMAT", "image")
        raise InputError(path, f"corrupt {name} file ({type(err).__name__}: {err})") from None


def list_channels(path: str | Path) -> list[str]:
    """All channel names of a file, in file order (plain images: their one channel)."""
    mod = _module(detect(path))
    if hasattr(mod, "list_channels"):
        return list(_guarded(mod, path, lambda: mod.list_channels(path)))
    hm = read(path)
    return list(hm.metadata.get("channels") or [hm.channel])


def write(hm: HeightMap, path: str | Path) -> Path:
    """Write a HeightMap, the format chosen by extension.

    ``.txt`` WSxM ASCII matrix (exact float64 round trip), ``.gsf`` Gwyddion Simple Field
    (exact at float32), ``.png`` (8-bit, scaled) and ``.tif``/``.tiff`` (float32) via
    :mod:`particlesnn.io.image`. Returns the path written; InputError for other extensions.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".txt":
        return _module("wsxm_ascii").write(p, hm)
    if ext == ".gsf":
        return _module("gsf").write(p, hm)
    if ext in (".png", ".tif", ".tiff"):
        out = _module("image").write(p, hm)
        return Path(out) if out is not None else p
    raise InputError(p, f"cannot write {ext or 'files without extension'} (writable: {', '.join(WRITABLE)})")


def in_file_frame(labels: np.ndarray, hm: HeightMap) -> np.ndarray:
    """A label image of ``hm`` in the frame of the file it was read from: the unscanned edge
    lines that the reader cut off (``metadata["scanned_region"]``) come back as background."""
    region, shape = hm.metadata.get("scanned_region"), hm.metadata.get("file_shape")
    if not region or not shape:
        return labels
    r0, r1, c0, c1 = region
    out = np.zeros(tuple(shape), dtype=np.asarray(labels).dtype)
    out[r0:r1, c0:c1] = labels
    return out


def in_read_frame(labels: np.ndarray, hm: HeightMap) -> np.ndarray:
    """The inverse of :func:`in_file_frame`: a label image drawn on the whole file, cut to the
    part of it that the reader kept (``metadata["scanned_region"]``); unchanged when it
    already has ``hm``'s shape or the reader kept everything."""
    region, shape = hm.metadata.get("scanned_region"), hm.metadata.get("file_shape")
    labels = np.asarray(labels)
    if not region or not shape or tuple(labels.shape[:2]) != tuple(shape):
        return labels
    r0, r1, c0, c1 = region
    return labels[r0:r1, c0:c1]


def validate(hm: HeightMap, path: str | Path | None = None) -> HeightMap:
    """Check that a HeightMap can be analysed; return it unchanged or raise InputError.

    Rejects: data that is not 2D, empty, smaller than 8 x 8 px, without any finite value,
    still holding NaN/inf, or constant (max == min, nothing to find). ``path`` (default
    ``hm.source``) names the file in the message.
    """
    where = path if path is not None else hm.source
    data = np.asarray(hm.data)
    if data.ndim != 2:
        raise InputError(where, f"image is not 2D (shape {data.shape})")
    if data.size == 0:
        raise InputError(where, "empty image (0 pixels)")
    rows, cols = data.shape
    if rows < MIN_SIDE or cols < MIN_SIDE:
        raise InputError(where, f"image too small ({cols} x {rows} px; at least {MIN_SIDE} x {MIN_SIDE})")
    finite = np.isfinite(data)
    if not finite.any():
        raise InputError(where, "no valid pixel (all values are NaN or infinite)")
    if not finite.all():
        raise InputError(where, f"{int((~finite).sum())} NaN/inf pixel(s) in image")
    lo, hi = float(data.min()), float(data.max())
    if hi == lo:
        raise InputError(where, f"constant image (every pixel = {lo:g} {hm.unit}): nothing to detect")
    return hm


__all__ = [
    "read", "list_channels", "write", "validate", "detect", "format_name", "in_file_frame",
    "in_read_frame", "readable",
    "SUPPORTED", "WRITABLE", "MIN_SIDE",
]
