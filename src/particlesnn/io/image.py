"""Plain images (PNG, TIFF, BMP, JPEG): greyscale, 16-bit, float, and false-colour pictures.

Users often bring exported pictures instead of raw instrument files. This reader turns them
back into a scalar map:

* greyscale (8/16-bit integer, float TIFF, or RGB with R = G = B) is kept as is
  (``unit="a.u."``, ``channel="grey"``; 16-bit keeps its full depth, float stays float);
* a false-colour picture is inverted through its palette (nearest point on the palette curve
  in RGB space, see :mod:`particlesnn.io.palette`), never averaged to grey: the known palettes
  are tried and the one with the smallest colour distance wins; when none fits, the palette is
  recovered from the image's own colours as a 1D curve starting at the darkest colour; when that
  fails too, luminance is used and ``metadata["warnings"]`` says so. The scalar is the palette
  position scaled to 0-255 (``channel="palette"``);
* burnt-in annotation (scale bar, its label, frames, colour bars, colour marks) is found -
  colours far from the palette, components at the extreme value with a sharp jump to their
  immediate surroundings, strips that sweep the palette (colour bars) - recorded in
  ``metadata["mask"]`` (bool, True = not data) and filled smoothly from the surrounding data,
  so later stages see a clean map;
* the pixel size (nm/px) comes from ``pixel_size``, else from ``scale_bar`` (the length in nm
  of the burnt-in bar, measured as the longest straight horizontal run of annotation), else from
  the TIFF's own scale: an ImageJ TIFF whose unit is a length (a scale set in Fiji), an FEI /
  Thermo Fisher SEM/FIB TIFF (``[Scan] PixelWidth``), a Zeiss SmartSEM TIFF (``Image Pixel
  Size``) or a TIFF saved by Gatan DigitalMicrograph (its calibration tags), else from the
  text file a JEOL or Hitachi SEM saves beside the picture (:func:`sidecar_scale`); otherwise
  it is ``None`` (print resolutions in dots per inch are not a scale);
* the data bar that FEI microscopes append below the image (the TIFF is taller than the
  scan's ``[Image] ResolutionY``) is left out, and so is an info band burnt along the bottom
  (:func:`info_band_rows`: full-width rows of one flat colour with text, as SEM/TEM software
  saves them), so that densities and coverage are per imaged area; ``detect`` still writes
  labels in the file's frame (``metadata["scanned_region"]``, ``["file_shape"]``).
"""
from __future__ import annotations

import contextlib
import io as _io
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.io import palette as _pal
from particlesnn.io._common import length_factor, make_heightmap, read_bytes

EXTENSIONS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
FORMAT = "image"

#: A known palette is accepted when its median colour distance (RGB units) is at most this
#: (JPEG q=90 of a viridis picture: about 5).
GOOD_FIT = 8.0
#: A palette recovered from the image is accepted up to this median distance (a JPEG of a
#: saturated palette such as jet is 12 units from its own true palette).
RECOVERED_FIT = 20.0
#: Palettes are scored on a sub-grid of at most about this many pixels.
FIT_SAMPLES = 131072
#: Colours farther than max(OFF_PALETTE, 5 x median, 4 x 75th percentile of the distances) from
#: the palette are annotation (when they form components of 3 px or more). The percentiles
#: follow JPEG noise; annotation covering up to a quarter of the picture does not raise them.
OFF_PALETTE = 30.0
#: An extreme-valued component is annotation when the median of its immediate (1 px)
#: surroundings lies more than this fraction of the value range away from the extreme.
#: Measured: clipped particle tops 0.13-0.34 (PTO sample, native and 2x), burnt-in bar and
#: label 0.89-0.91.
RING_CONTRAST = 0.6

_LUMA = np.array([0.299, 0.587, 0.114])


# --------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------
def _decode_pillow(path: Path, buf: bytes) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(array, alpha or None, info) with Pillow; array is 2D (grey) or (H, W, 3) uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(_io.BytesIO(buf))
        im.load()
    except UnidentifiedImageError:
        raise InputError(path, "not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as err:
        raise InputError(path, f"image too large ({err})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise InputError(path, f"corrupt or truncated image ({err})") from None
    info = {"mode": im.mode, "pil_format": im.format}
    alpha = None
    mode = im.mode
    if mode in ("P", "PA"):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        alpha = np.asarray(im.getchannel("A"))
    if mode == "1":
        arr = np.asarray(im.convert("L"))
    elif mode in ("L", "LA", "La"):
        arr = np.asarray(im.getchannel(0) if mode != "L" else im)
    elif mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.uint16)
    elif mode in ("I", "F"):
        arr = np.asarray(im)
    else:
        arr = np.asarray(im.convert("RGB"))
    return np.array(arr), alpha, info


def _imagej_pixel_size(tf: Any) -> tuple[tuple[float, float] | None, str | None]:
    """(x, y) nm/px from an ImageJ TIFF whose unit is a length, else (None, reason)."""
    md = tf.imagej_metadata if tf.is_imagej else None
    if not md or not md.get("unit"):
        return None, None
    unit = str(md["unit"]).replace("\\u00B5", "u").replace("\\u00b5", "u").strip()
    if unit.lower() in ("micron", "microns", "micrometer", "micrometre"):
        unit = "um"
    f = length_factor(unit)
    if f is None:
        return None, f"ImageJ unit {md['unit']!r} is not a length; pixel size ignored"
    page = tf.pages[0]
    try:
        xr = page.tags["XResolution"].value
        yr = page.tags["YResolution"].value
        px = f * xr[1] / xr[0]
        py = f * yr[1] / yr[0]
    except (KeyError, ZeroDivisionError, TypeError, IndexError):
        return None, "ImageJ TIFF without a usable resolution; pixel size ignored"
    return (px, py), None


def _fei_pixel_size(tf: Any) -> tuple[tuple[float, float] | None, str | None]:
    """(x, y) nm/px from an FEI / Thermo Fisher SEM or FIB TIFF (``[Scan] PixelWidth``, m)."""
    md = tf.fei_metadata if tf.is_fei else None
    if not md:
        return None, None
    scan = md.get("Scan") or md.get("EScan") or {}
    try:
        px = float(scan["PixelWidth"]) * 1e9
        py = float(scan.get("PixelHeight", scan["PixelWidth"])) * 1e9
    except (KeyError, TypeError, ValueError):
        return None, "FEI TIFF without a usable [Scan] PixelWidth; pixel size ignored"
    return (px, py), None


def _zeiss_pixel_size(tf: Any) -> tuple[tuple[float, float] | None, str | None]:
    """nm/px from a Zeiss SmartSEM TIFF (CZ_SEM tag: ``Image Pixel Size = 2.233 nm``)."""
    md = tf.sem_metadata if tf.is_sem else None
    if not md:
        return None, None
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        item = md.get(key)
        if isinstance(item, tuple) and len(item) == 3:
            f = length_factor(str(item[2]))
            try:
                if f is not None:
                    return (float(item[1]) * f,) * 2, None
            except (TypeError, ValueError):
                pass
    return None, "Zeiss SEM TIFF without a usable Image Pixel Size; pixel size ignored"


def _dm_pixel_size(tf: Any) -> tuple[tuple[float, float] | None, str | None]:
    """nm/px from a TIFF saved by Gatan DigitalMicrograph: its private tags 65009 / 65010
    (scale of the two image axes) in the units of tags 65003 / 65004."""
    tags = tf.pages[0].tags
    if 65009 not in tags and 65010 not in tags:
        return None, None
    out = []
    for scale, unit in ((65010, 65004), (65009, 65003)):  # x, then y
        try:
            v = tags[scale].value
            v = float(v[0] if isinstance(v, (tuple, list)) else v)
            u = tags[unit].value
            u = (u.decode("latin-1") if isinstance(u, bytes) else str(u)).strip("\x00 ")
        except (KeyError, TypeError, ValueError, IndexError):
            return None, "DigitalMicrograph TIFF without a usable scale; pixel size ignored"
        f = length_factor(u)
        if f is None:
            return None, f"DigitalMicrograph TIFF unit {u!r} is not a length; pixel size ignored"
        out.append(v * f)
    return (out[0], out[1]), None


#: The TIFF dialects whose pixel size is read, first found wins: ImageJ (a scale the user set
#: in Fiji), FEI / Thermo Fisher and Zeiss SEM, Gatan DigitalMicrograph (written by the
#: microscope's software).
_TIFF_SCALES = (("ImageJ", _imagej_pixel_size), ("FEI", _fei_pixel_size),
                ("Zeiss", _zeiss_pixel_size), ("DigitalMicrograph", _dm_pixel_size))


def _tiff_pixel_size(tf: Any) -> tuple[tuple[float, float] | None, str | None, list[str]]:
    """(x, y) nm/px from the TIFF's own scale, the dialect it came from, and notes.

    Print resolutions (dots per inch or cm without a microscope's tags) are not a scale and
    are ignored. Returns ``(None, None, notes)`` when no usable scale is found.
    """
    notes = []
    for name, get in _TIFF_SCALES:
        try:
            ps, why = get(tf)
        except Exception as err:  # a private tag that tifffile could not parse
            ps, why = None, f"{name} TIFF metadata unreadable ({err}); pixel size ignored"
        if why:
            notes.append(why)
        if ps is None:
            continue
        if not all(np.isfinite(v) and v > 0 for v in ps):
            notes.append(f"{name} TIFF pixel size is not positive; pixel size ignored")
            continue
        return (float(ps[0]), float(ps[1])), name, notes
    return None, None, notes


def sidecar_scale(path: Path, width: int) -> dict | None:
    """The scale in the text file that JEOL and Hitachi SEMs save beside each picture
    (``S.txt`` next to ``S.tif``), or None.

    JEOL: ``$$SM_MICRON_BAR`` (px) and ``$$SM_MICRON_MARKER`` (``100nm``, ``1um``): the pixel
    size is the marker's length over the bar's pixels, for an image ``$CM_FULL_SIZE`` wide
    (scaled when the picture was saved at another width); the rows below ``$CM_FULL_SIZE``'s
    height are the data bar. Hitachi: ``PixelSize=`` in nm. Returns ``{"pixel_size": nm/px,
    "from": "JEOL" | "Hitachi", "file": name, "image_rows": rows or None}``.
    """
    side = path.with_suffix(".txt")
    if side == path or not side.is_file() or side.stat().st_size > 1_000_000:
        return None
    try:
        text = side.read_bytes().replace(b"\0", b"").decode("latin-1")
    except OSError:
        return None
    keys: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"\s*(\$*[A-Za-z_][\w]*)\s*[= ]\s*(.*?)\s*$", line)
        if m:
            keys.setdefault(m.group(1).upper(), m.group(2))
    try:
        if "$$SM_MICRON_BAR" in keys and "$$SM_MICRON_MARKER" in keys:
            bar = float(keys["$$SM_MICRON_BAR"].split()[0])
            m = re.fullmatch(r"([0-9.]+)\s*([A-Za-zµ]+)", keys["$$SM_MICRON_MARKER"].split()[0])
            f = length_factor(m.group(2)) if m else None
            if f is None or bar <= 0:
                return None
            ps = float(m.group(1)) * f / bar
            full = [int(v) for v in keys.get("$CM_FULL_SIZE", "").split()[:2] if v.isdigit()]
            rows = None
            if len(full) == 2 and full[0] > 0:
                ps *= full[0] / width  # the bar was measured at $CM_FULL_SIZE's width
                rows = round(full[1] * width / full[0])
            return {"pixel_size": ps, "from": "JEOL", "file": side.name, "image_rows": rows}
        if "PIXELSIZE" in keys:
            ps = float(keys["PIXELSIZE"].split()[0])
            return ({"pixel_size": ps, "from": "Hitachi", "file": side.name, "image_rows": None}
                    if ps > 0 and np.isfinite(ps) else None)
    except (ValueError, AttributeError):
        return None
    return None


def _fei_databar_rows(tf: Any, height: int, width: int) -> int | None:
    """Rows of image above an FEI TIFF's data bar (``[Image] ResolutionY``), or None.

    FEI / Thermo Fisher microscopes append the data bar (magnification, HV, scale bar...)
    below the image: the TIFF is taller than the scan.
    """
    md = tf.fei_metadata if tf.is_fei else None
    try:
        rx = int((md or {})["Image"]["ResolutionX"])
        ry = int((md or {})["Image"]["ResolutionY"])
    except (KeyError, TypeError, ValueError):
        return None
    return ry if rx == width and 0 < ry < height else None


#: An info band (the strip of text, scale bar and settings that SEM/TEM software burns along
#: the bottom): each of its rows at least this fraction one flat colour ...
BAND_ROW_FLAT = 0.5
#: ... or, in a row through its text, this fraction, with such rows above ...
BAND_TEXT_FLAT = 0.25
#: ... the rows just above it much less so (median flat fraction at most this, and this much
#: under the band's): an image whose substrate is clipped to one value everywhere has no band
#: edge and is left whole ...
BAND_ABOVE_FLAT, BAND_STEP = 0.6, 0.4
#: ... and the band at least this many rows and at most this fraction of the image.
BAND_MIN_ROWS, BAND_MAX_FRAC = 6, 0.3


def _row_modes(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Most common value of each row (colours packed into one int) and its fraction."""
    n = rows.shape[1]
    srt = np.sort(rows, axis=1)
    modes, fracs = np.empty(len(rows), srt.dtype), np.empty(len(rows))
    for i, r in enumerate(srt):
        cuts = np.flatnonzero(np.diff(r)) + 1
        starts = np.r_[0, cuts]
        runs = np.diff(np.r_[starts, n])
        k = int(np.argmax(runs))
        modes[i], fracs[i] = r[starts[k]], runs[k] / n
    return modes, fracs


def info_band_rows(arr: np.ndarray) -> int:
    """Rows of an info band along the bottom of a picture, or 0.

    The band is the run of bottom rows that are mostly (:data:`BAND_ROW_FLAT`) one flat colour,
    the same in all of them except for uniform separator lines; rows through its text need
    only :data:`BAND_TEXT_FLAT` when flat rows of the band lie above them. It counts only when
    the image above it is clearly less flat (:data:`BAND_ABOVE_FLAT`, :data:`BAND_STEP`), it is
    :data:`BAND_MIN_ROWS` to :data:`BAND_MAX_FRAC` of the rows and it is not the bottom of a
    frame drawn round the image.
    """
    a = np.asarray(arr)
    if a.ndim == 3:
        c = a[..., :3].astype(np.int64)
        if a.dtype != np.uint8:
            return 0
        a = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
    rows = a.shape[0]
    limit = int(BAND_MAX_FRAC * rows)
    if a.ndim != 2 or limit < BAND_MIN_ROWS or a.shape[1] < 16:
        return 0
    look = min(rows, limit + 24)
    bottom_up = a[rows - look:][::-1]
    (ref,), (flat,) = _row_modes(bottom_up[:1])
    if flat < BAND_ROW_FLAT:  # most pictures: no flat bottom row, no band
        return 0
    share = (bottom_up == ref).mean(axis=1)  # the band's colour in each row
    # rows through its text are less flat: they count when flat rows of the band lie above them
    band, i, text_rows = 0, 0, max(16, rows // 25)
    while i < look and share[i] >= BAND_TEXT_FLAT and i - band < text_rows:
        if share[i] >= BAND_ROW_FLAT:
            band = i + 1
        i += 1
    if not BAND_MIN_ROWS <= band <= limit:
        return 0
    _, fracs = _row_modes(bottom_up[band: band + 23])  # the rows just above the band
    sep = 0  # uniform separator lines between the band and the image
    while sep < 3 and sep < len(fracs) and fracs[sep] >= 0.9:
        sep += 1
    above = fracs[sep: sep + 20]
    if above.size < 8 or float(np.median(above)) > min(BAND_ABOVE_FLAT,
                                                        float(np.median(share[:band])) - BAND_STEP):
        return 0
    sides = a[rows - band - sep - 20: rows - band - sep][:, np.r_[0:2, -2:0]]
    if np.mean(sides == ref) > 0.5:  # the bottom of a frame drawn round the image, not a band
        return 0
    return band + sep


def plane_index(channel: Any) -> int | None:
    """The plane of a TIFF stack that ``channel`` asks for (``2``, ``"2"``, ``"plane 2"``;
    0-based), or None when it names no plane."""
    if isinstance(channel, (int, np.integer)) and not isinstance(channel, bool):
        return int(channel)
    if isinstance(channel, str):
        m = re.fullmatch(r"\s*(?:plane\s*)?(\d+)\s*", channel, flags=re.IGNORECASE)
        if m:
            return int(m.group(1))
    return None


@contextlib.contextmanager
def _tifffile_log():
    """Collect tifffile's log messages instead of letting them reach the terminal (a bad file
    gets one line, our error; a readable one the messages among its warnings)."""
    logger = logging.getLogger("tifffile")
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage().split("\n")[0][:200])

    handler, propagate = _Collect(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _one_image(shape) -> bool:
    return len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4))


def _decode_tiff(path: Path, channel: Any) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """One image of a TIFF (plane ``plane_index(channel)`` of a stack, read alone, so that a
    long stack costs one plane's memory), its alpha (or None) and what was learnt of it."""
    import tifffile

    asked = plane_index(channel)
    try:
        with _tifffile_log() as log, tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            series = tf.series
            s0 = series[0]
            info: dict[str, Any] = {"tiff_pages": len(tf.pages), "tiff_shape": list(s0.shape)}
            n, pick = 0, None
            if len(series) > 1 and _one_image(s0.shape) and \
                    all(tuple(x.shape) == tuple(s0.shape) for x in series):
                n, pick = len(series), (lambda k: series[k].asarray())  # a page per image
            elif not _one_image(s0.shape) and len(s0.pages) > 1 and \
                    _one_image(tuple(s0.pages[0].shape)):
                # one series of pages (frames; an ImageJ hyperstack's times x channels, in order)
                n, pick = len(s0.pages), (lambda k: s0.asarray(key=k))
            if n:
                k = 0 if asked is None else asked
                if not 0 <= k < n:
                    raise InputError(path, f"no plane {k} (the TIFF holds planes 0-{n - 1})")
                arr = pick(k)
            else:
                arr = s0.asarray()
            ps, dialect, notes = _tiff_pixel_size(tf)
            if ps is not None:
                info["tiff_pixel_size"] = ps
                info["tiff_scale_from"] = dialect
            if notes:
                info.setdefault("warnings", []).extend(notes)
            databar = _fei_databar_rows(tf, page.shape[0], page.shape[1])
            page_rows = page.shape[0]
            photometric = int(page.photometric) if page.photometric is not None else None
            colormap = page.colormap
        if log:  # what tifffile had to say of a file it could read: the image's warnings
            info.setdefault("warnings", []).extend(f"TIFF: {m}" for m in log)
    except InputError:
        raise
    except Exception as err:  # tifffile raises many kinds on corrupt input
        raise InputError(path, f"corrupt or truncated TIFF ({err})") from None
    if databar is not None and arr.ndim in (2, 3) and arr.shape[0] == page_rows:
        arr = arr[:databar]
        info["databar_rows_cropped"] = page_rows - databar
        info.setdefault("warnings", []).append(
            f"FEI data bar ({page_rows - databar} rows below the image) left out")
    alpha = None
    if photometric == 3 and colormap is not None and arr.ndim == 2:  # palette TIFF
        cm = np.asarray(colormap, dtype=np.float64)
        cm = cm / (257.0 if cm.max() > 255 else 1.0)
        arr = np.round(cm[:, arr].transpose(1, 2, 0)).astype(np.uint8)
    elif photometric == 0 and np.issubdtype(arr.dtype, np.integer):  # min-is-white
        arr = (np.iinfo(arr.dtype).max - arr).astype(arr.dtype)
    if photometric == 2 and arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] > 4:
        arr = np.moveaxis(arr, 0, -1)  # RGB stored plane by plane (planar configuration 2)
    # pick one plane of a stack read whole: (S..., H, W) or (S..., H, W, C)
    if not n and (arr.ndim >= 4 or (arr.ndim == 3 and arr.shape[-1] not in (3, 4))):
        image_dims = 3 if arr.shape[-1] in (3, 4) and arr.ndim >= 4 else 2
        arr = arr.reshape((-1, *arr.shape[arr.ndim - image_dims:]))
        n, k = int(arr.shape[0]), 0 if asked is None else asked
        if not 0 <= k < n:
            raise InputError(path, f"no plane {k} (the TIFF holds planes 0-{n - 1})")
        arr = arr[k]
    if n:
        info["tiff_planes"], info["tiff_plane"] = int(n), k
        if asked is None:
            info.setdefault("warnings", []).append(
                f"TIFF stack of {info['tiff_planes']} planes: plane 0 read (the channel "
                f"option, 1-{info['tiff_planes'] - 1}, picks another)")
    elif asked not in (None, 0):
        raise InputError(path, f"no plane {asked} (the TIFF holds one image)")
    if arr.ndim == 3 and arr.shape[-1] == 4:
        alpha = arr[..., 3]
        arr = arr[..., :3]
    if arr.ndim == 3 and arr.dtype != np.uint8:
        if arr.dtype == np.uint16:
            info["rgb_depth"] = 16
        a = arr.astype(np.float64)
        lo, hi = (0.0, 65535.0) if arr.dtype == np.uint16 else (np.nanmin(a), np.nanmax(a))
        arr = np.round(255.0 * (a - lo) / max(hi - lo, 1e-300)).clip(0, 255).astype(np.uint8)
    return arr, alpha, info


# --------------------------------------------------------------------------------------------
# colour -> scalar
# --------------------------------------------------------------------------------------------
def scalar_from_rgb(rgb: np.ndarray,
                    palette: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Turn an (H, W, 3) uint8 picture into a scalar map.

    Parameters
    ----------
    rgb : (H, W, 3) uint8
    palette : str or None
        Force a palette name (see :data:`particlesnn.io.palette.KNOWN`), ``"luminance"``; or
        None to detect.

    Returns
    -------
    values : (H, W) float64, 0-255 (palette position x 255, or grey level)
    off_palette : (H, W) bool, colours too far from the palette to be data
    info : dict with ``palette`` (name, ``"grey"``, ``"recovered"`` or ``"luminance"``),
        ``palette_fit`` (median / capped mean distance in RGB units, fraction within 12 units),
        ``palette_candidates`` (the best three known fits) and ``warnings``.
    """
    colours, counts, inverse = _pal.unique_colours(rgb)
    w = counts.astype(np.float64)
    info: dict[str, Any] = {"warnings": []}
    spread = colours.max(axis=1) - colours.min(axis=1)
    grey_frac = float(w[spread <= 3].sum() / w.sum())
    if palette in ("grey", "gray", "luminance") or (palette is None and grey_frac >= 0.95):
        if palette == "luminance":
            vals = colours @ _LUMA
        else:
            vals = colours.mean(axis=1)
        off = spread > OFF_PALETTE
        name = "luminance" if palette == "luminance" else "grey"
        info.update(palette=name, grey_fraction=grey_frac)
        return vals[inverse], off[inverse], info

    # palettes are scored on a regular sub-grid of at most ~FIT_SAMPLES pixels (speed: a
    # 2048^2 JPEG has ~10^5 distinct colours); the final inversion uses every colour
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / FIT_SAMPLES))))
    sc, sn = (colours, counts) if step == 1 else _pal.unique_colours(rgb[::step, ::step])[:2]
    if palette is not None:
        try:
            table = _pal.palette_table(palette)
        except KeyError:
            raise ValueError(f"unknown palette {palette!r}") from None
        fit = _pal.score(sc, sn, table, palette)
        fits = [fit]
    else:
        fits = _pal.fit_palette(sc, sn)
        fit, table = fits[0], _pal.palette_table(fits[0].name)
        if fit.median_distance > GOOD_FIT:
            try:
                rec = _pal.recover_palette(sc, sn)
                rfit = _pal.score(sc, sn, rec, "recovered")
            except ValueError:
                rfit = None
            if rfit is not None and rfit.median_distance <= RECOVERED_FIT:
                info["warnings"].append(
                    f"no known palette fits (best {fit.name}: median distance "
                    f"{fit.median_distance:.1f}); palette recovered from the image's colours, "
                    "dark end = low"
                )
                fit, table = rfit, rec
            else:
                info["warnings"].append(
                    f"no palette fits (best {fit.name}: median distance {fit.median_distance:.1f});"
                    " using luminance, heights are only approximate"
                )
                info.update(palette="luminance", palette_fit=_fit_dict(fit),
                            palette_candidates=[_fit_dict(f) for f in fits[:3]])
                vals = colours @ _LUMA
                return vals[inverse], np.zeros(rgb.shape[:2], bool), info
    pos, dist = _pal.invert_colours(colours, table)
    w_pix = counts.astype(np.float64)
    order = np.argsort(dist)
    p75 = float(dist[order][np.searchsorted(np.cumsum(w_pix[order]), 0.75 * w_pix.sum())])
    thr = max(OFF_PALETTE, 5.0 * fit.median_distance, 4.0 * p75)
    info.update(palette=fit.name, palette_fit=_fit_dict(fit),
                palette_candidates=[_fit_dict(f) for f in fits[:3]],
                off_palette_threshold=thr)
    return (255.0 * pos)[inverse], (dist > thr)[inverse], info


def _fit_dict(f: _pal.PaletteFit) -> dict:
    return {"name": f.name, "median_distance": round(f.median_distance, 3),
            "mean_distance": round(f.mean_distance, 3),
            "fraction_close": round(f.fraction_close, 4)}


# --------------------------------------------------------------------------------------------
# annotation
# --------------------------------------------------------------------------------------------
def annotation_parts(values: np.ndarray, off_palette: np.ndarray | None = None,
                     contrast: float = RING_CONTRAST) -> dict[str, np.ndarray]:
    """Burnt-in annotation by kind: ``{"off": ..., "high": ..., "low": ...}`` bool masks.

    ``off``: off-palette pixels in 8-connected groups of 3 or more (single stray colours are
    JPEG noise). ``high`` / ``low``: 8-connected components of pixels at the image's maximum /
    minimum (within 3 % of the value range) whose immediate surroundings - the 1 px ring,
    off-palette pixels left out - have a median farther than ``contrast`` x range from that
    extreme. A white scale bar or label drawn over darker data jumps to white at once; a
    particle whose top is clipped to white is surrounded by bright slopes and stays data.

    Parameters
    ----------
    values : (H, W) float, the scalar map (any unit).
    off_palette : (H, W) bool or None.
    contrast : fraction of the value range (0-1).
    """
    v = np.asarray(values, dtype=np.float64)
    off = np.zeros(v.shape, bool) if off_palette is None else np.asarray(off_palette, bool)
    parts = {"off": off.copy(), "high": np.zeros(v.shape, bool), "low": np.zeros(v.shape, bool)}
    if off.any():  # isolated off-palette pixels are noise (JPEG), not annotation
        lab, n = ndimage.label(off, structure=np.ones((3, 3), bool))
        parts["off"] &= np.bincount(lab.ravel())[lab] >= 3
    good = v[~off]
    if good.size == 0:
        return parts
    vmin, vmax = float(good.min()), float(good.max())
    rng = vmax - vmin
    if rng <= 0:
        return parts
    tol = max(0.03 * rng, 0.5 if rng >= 50 else 0.0)
    for key, extreme, cand in (("high", vmax, (v >= vmax - tol) & ~off),
                               ("low", vmin, (v <= vmin + tol) & ~off)):
        if not cand.any() or cand.mean() > 0.5:
            continue
        lab, n = ndimage.label(cand, structure=np.ones((3, 3), bool))
        if n == 0:
            continue
        med = _ring_medians(v, lab, n, off)
        jump = np.abs(extreme - med) / rng  # NaN (no ring) compares False
        hit = np.zeros(n + 1, bool)
        hit[1:] = jump > contrast
        parts[key] = hit[lab]
    return parts


def annotation_mask(values: np.ndarray, off_palette: np.ndarray | None = None,
                    contrast: float = RING_CONTRAST) -> np.ndarray:
    """Pixels of burnt-in annotation (True = not data), before any dilation: the union of
    :func:`annotation_parts`."""
    parts = annotation_parts(values, off_palette, contrast)
    return parts["off"] | parts["high"] | parts["low"]


def _ring_medians(v: np.ndarray, lab: np.ndarray, n: int, off: np.ndarray) -> np.ndarray:
    """Median of ``v`` over the 1 px ring (8-neighbours, ``off`` left out) of components 1..n.

    A ring pixel next to two components counts for the one with the larger label. NaN for a
    component without ring pixels.
    """
    import cv2

    near = cv2.dilate(lab.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int64)
    ring = (lab == 0) & (near > 0) & ~off
    rl = near[ring]
    rv = v[ring]
    out = np.full(n, np.nan)
    if rl.size == 0:
        return out
    order = np.lexsort((rv, rl))
    rl, rv = rl[order], rv[order]
    start = np.searchsorted(rl, np.arange(1, n + 1), side="left")
    stop = np.searchsorted(rl, np.arange(1, n + 1), side="right")
    cnt = stop - start
    okc = cnt > 0
    lo = start[okc] + (cnt[okc] - 1) // 2
    hi = start[okc] + cnt[okc] // 2
    out[okc] = 0.5 * (rv[lo] + rv[hi])
    return out


def colour_bar_mask(values: np.ndarray, tol: float = 1.0, min_width: int = 5,
                    min_length: int = 32) -> np.ndarray:
    """Burnt-in colour bars (True = colour bar), vertical or horizontal.

    A colour bar is a strip at least ``min_width`` px wide and at least ``min_length`` px (and
    0.2 x the image side) long, in which every line across the strip holds one value (spread
    within 2 ``tol``, unit of ``values``), that value changes monotonically along the strip
    through 16 or more distinct levels, and both long edges of the strip are sharp (the values
    just outside differ by more than ``tol`` on at least half of the lines, or the strip touches
    the image border). Real data is almost never constant across 5 px on 32 successive lines
    while also sweeping its range between two sharp edges.
    """
    import cv2

    v = np.asarray(values, dtype=np.float64)
    out = np.zeros(v.shape, bool)
    for axis in (0, 1):  # axis 0: vertical bar (lines across = rows)
        a = v if axis == 0 else v.T
        h, w = a.shape
        if w < min_width + 1 or h < min_length:
            continue
        eq = np.zeros(a.shape, np.uint8)
        eq[:, :-1] = np.abs(np.diff(a, axis=1)) <= tol
        k = np.ones((1, min_width - 1), np.uint8)
        run = cv2.erode(eq, k, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT, borderValue=0)
        flat = cv2.dilate(run, np.ones((1, min_width), np.uint8), anchor=(min_width - 1, 0))
        need = int(max(min_length, 0.2 * h))
        # quick reject: a bar's strip is flat on at least need/2 successive lines
        seeds = cv2.erode(flat, np.ones((need // 2, 1), np.uint8), borderType=cv2.BORDER_CONSTANT,
                          borderValue=0)
        if not seeds.any():
            continue
        lab, n = ndimage.label(flat > 0)
        found = np.zeros(a.shape, bool)
        for i in np.unique(lab[seeds > 0]):
            ys, xs = np.nonzero(lab == i)
            sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
            if sl[0].stop - sl[0].start < need:
                continue
            comp = lab[sl] == i
            # the core strip: columns covered on 90 % of the component's rows
            cols = np.flatnonzero(comp.mean(axis=0) >= 0.9)
            if cols.size < min_width:
                continue
            c0, c1 = sl[1].start + cols[0], sl[1].start + cols[-1] + 1
            if c1 - c0 > 0.25 * w or cols.size != c1 - c0:
                continue
            r0, r1 = sl[0].start, sl[0].stop
            strip = a[r0:r1, c0:c1]
            if (np.ptp(strip, axis=1) <= 2 * tol).mean() < 0.95:
                continue
            level = np.median(strip, axis=1)
            if np.unique(np.round(level / max(tol, 1e-12))).size < 16:
                continue
            d = np.diff(level)
            if max((d >= -tol).mean(), (d <= tol).mean()) < 0.97:
                continue
            sharp = []
            for c_in, c_out in ((c0, c0 - 1), (c1 - 1, c1)):
                if c_out < 0 or c_out >= w:
                    sharp.append(True)
                else:
                    sharp.append(np.mean(np.abs(a[r0:r1, c_out] - a[r0:r1, c_in]) > tol) >= 0.5)
            if not all(sharp):
                continue
            found[r0:r1, c0:c1] = True
        out |= found if axis == 0 else found.T
    return out


def _longest_run(core: np.ndarray, max_frac: float = 0.9) -> tuple[int, int, int] | None:
    """Longest horizontal run of True (run px, row, first col), skipping runs of max_frac x width
    or more and runs under 8 px."""
    m = np.pad(np.asarray(core, bool), ((0, 0), (1, 1))).astype(np.int8)
    d = np.diff(m, axis=1)
    r0, c0 = np.nonzero(d == 1)
    _, c1 = np.nonzero(d == -1)
    if r0.size == 0:
        return None
    lengths = c1 - c0
    ok = (lengths < max_frac * core.shape[1]) & (lengths >= 8)
    if not ok.any():
        return None
    i = np.flatnonzero(ok)[np.argmax(lengths[ok])]
    return int(lengths[i]), int(r0[i]), int(c0[i])


def find_scale_bar(parts: dict[str, np.ndarray] | np.ndarray) -> tuple[int, int, int] | None:
    """The burnt-in scale bar: (run in px, row, first col), or None.

    ``parts``: :func:`annotation_parts` (or one bool mask). The bar is the widest component of
    one kind of annotation (off-palette, high or low extreme; kinds apart, so a white bar on a
    black box is not measured as the box) that is a solid horizontal rectangle: fills 85 % of
    its bounding box, at least 8 px and 3 x as wide as tall, under 90 % of the image width.
    When no component qualifies, the longest straight horizontal run of annotation is taken.
    ``run`` counts pixels; :func:`read` takes the bar's length as ``run - 1``.
    """
    masks = list(parts.values()) if isinstance(parts, dict) else [np.asarray(parts, bool)]
    best: tuple[int, int, int] | None = None
    for m in masks:
        if not m.any():
            continue
        lab, n = ndimage.label(m, structure=np.ones((3, 3), bool))
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            if sl is None:
                continue
            hh, ww = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            if ww < 8 or ww < 3 * hh or ww >= 0.9 * m.shape[1]:
                continue
            comp = lab[sl] == i
            if comp.mean() < 0.85:
                continue
            run = _longest_run(comp, max_frac=1.01)
            if run is not None and (best is None or run[0] > best[0]):
                best = (run[0], run[1] + sl[0].start, run[2] + sl[1].start)
    if best is not None:
        return best
    union = np.zeros(masks[0].shape, bool)
    for m in masks:
        union |= m
    return _longest_run(union)


def _nearest_fill(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked pixels take the value of the nearest unmasked pixel (OpenCV distance labels)."""
    import cv2

    # distance from each masked (non-zero) pixel to the nearest unmasked (zero) pixel; with
    # DIST_LABEL_PIXEL every zero pixel has its own label and each masked pixel takes the label
    # of its nearest one
    _, lab = cv2.distanceTransformWithLabels(mask.astype(np.uint8), cv2.DIST_L2, 5,
                                             labelType=cv2.DIST_LABEL_PIXEL)
    lut = np.zeros(int(lab.max()) + 1)
    lut[lab[~mask]] = values[~mask]
    return lut[lab]


def _fill(values: np.ndarray, mask: np.ndarray, n_iter: int | None = None) -> np.ndarray:
    """Masked pixels replaced by a smooth (harmonic) fill from the unmasked ones.

    Start from the nearest unmasked value, then relax the masked pixels towards the mean of
    their 4 neighbours (Jacobi iterations; unmasked pixels stay fixed). ``n_iter`` defaults to
    200 (fewer for very large masks). (OpenCV's Telea inpainting is not used: on float32 input
    it returns values far outside the data in OpenCV 5.0.)
    """
    out = np.array(values, dtype=np.float64)
    if not mask.any():
        return out
    h, w = out.shape
    flat = _nearest_fill(out, mask).ravel()
    r, c = np.nonzero(mask)
    k = r * w + c
    nb = np.stack([np.maximum(r - 1, 0) * w + c, np.minimum(r + 1, h - 1) * w + c,
                   r * w + np.maximum(c - 1, 0), r * w + np.minimum(c + 1, w - 1)])
    if n_iter is None:
        n_iter = 200 if k.size <= 200_000 else 40
    for _ in range(n_iter):
        flat[k] = 0.25 * (flat[nb[0]] + flat[nb[1]] + flat[nb[2]] + flat[nb[3]])
    return flat.reshape(h, w)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def read(path: str | Path, channel: Any = None, pixel_size: Any = None,
         scale_bar: float | None = None) -> HeightMap:
    """Read a plain image as a :class:`~particlesnn.HeightMap`.

    Parameters
    ----------
    path : PNG, TIFF, BMP or JPEG file.
    channel : None (automatic), ``"grey"``/``"luminance"`` (plain grey or luminance of a colour
        picture), ``"red"``/``"green"``/``"blue"`` (one colour channel as is), a palette name
        from :data:`particlesnn.io.palette.KNOWN` (force that palette), or a plane of a
        multi-page TIFF stack (``2``, ``"2"`` or ``"plane 2"``, 0-based; a stack's channels are
        ``"plane 0"``, ``"plane 1"``...; plane 0 by default, with a warning).
    pixel_size : float or (x, y) in nm/px, overriding everything else.
    scale_bar : length in nm of the burnt-in scale bar; the bar (longest straight horizontal
        run of annotation, not spanning the whole width) is measured in px - as the distance
        between its end pixels, run - 1, the convention of raster drawing (Pillow, OpenCV) - and
        the pixel size set to ``scale_bar / px``. InputError when no bar is found (unless
        ``pixel_size`` is given).

    Returns
    -------
    HeightMap with ``unit="a.u."``; ``channel`` ``"grey"`` (greyscale), ``"palette"``
    (palette inversion, values 0-255), ``"luminance"`` or the colour channel asked for.
    ``metadata``: ``format="image"``, ``palette``, ``palette_fit``, ``mask`` (bool array, True
    = annotation / invalid, filled from its surroundings), ``masked_fraction``, ``scale_bar``
    (``length_px``, ``row``, ``col``, ``length_nm``; when a bar-like run was found),
    ``colour_bar_px``, ``pixel_size_source`` (``"argument"``, ``"scale_bar"``, ``"tiff"`` or
    ``"sidecar"`` or None; ``metadata["image"]["tiff_scale_from"]`` names the TIFF dialect:
    ``"ImageJ"``, ``"FEI"``, ``"Zeiss"``; ``["sidecar"]`` the JEOL / Hitachi text file:
    :func:`sidecar_scale`), ``warnings``.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".tif", ".tiff"):
        read_bytes(p, limit=16)  # missing, unreadable or empty: a clear error
        arr, alpha, info = _decode_tiff(p, channel)
    else:
        arr, alpha, info = _decode_pillow(p, read_bytes(p))
    if arr.ndim not in (2, 3) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(p, f"empty image (shape {arr.shape})")
    warnings: list[str] = list(info.pop("warnings", []))
    side = sidecar_scale(p, arr.shape[1])
    if side is not None:
        info["sidecar"] = side
        rows = side.get("image_rows")
        if rows and "databar_rows_cropped" not in info and 0 < rows < arr.shape[0]:
            info["databar_rows_cropped"] = arr.shape[0] - rows
            warnings.append(f"{side['from']} data bar ({arr.shape[0] - rows} rows below the "
                            "image) left out")
            arr, alpha = arr[:rows], None if alpha is None else alpha[:rows]
    if "databar_rows_cropped" not in info:
        band = info_band_rows(arr)
        if band:
            arr, alpha = arr[:-band], None if alpha is None else alpha[:-band]
            info["info_band_rows_cropped"] = band
            warnings.append(f"info band ({band} rows of text and settings along the bottom) "
                            "left out")
    md: dict[str, Any] = {"image": info}
    cut = info.get("databar_rows_cropped", 0) + info.get("info_band_rows_cropped", 0)
    if cut:  # detect writes its labels in the file's frame
        md["scanned_region"] = [0, arr.shape[0], 0, arr.shape[1]]
        md["file_shape"] = [arr.shape[0] + cut, arr.shape[1]]
    invalid = np.zeros(arr.shape[:2], bool)
    if alpha is not None:
        invalid |= np.asarray(alpha) == 0

    want = channel.lower() if isinstance(channel, str) and plane_index(channel) is None else None
    if plane_index(channel) is not None and suffix not in (".tif", ".tiff"):
        raise InputError(p, f"no plane {plane_index(channel)}: only a TIFF stack has planes")
    if arr.ndim == 3:
        rgb = arr[..., :3]
        if want in ("red", "green", "blue", "r", "g", "b"):
            k = "rgb".index(want[0])
            values = rgb[..., k].astype(np.float64)
            off = np.zeros(values.shape, bool)
            ch = ("red", "green", "blue")[k]
            md["palette"] = None
        else:
            try:
                values, off, pinfo = scalar_from_rgb(rgb, palette=want)
            except ValueError as err:
                raise InputError(p, str(err)) from None
            warnings += pinfo.pop("warnings")
            md.update(pinfo)
            ch = {"grey": "grey", "luminance": "luminance"}.get(pinfo["palette"], "palette")
        annotatable = True
    else:
        if want not in (None, "grey", "gray", "luminance"):
            raise InputError(p, f"channel {channel!r} does not exist in a greyscale image")
        values = arr
        off = np.zeros(arr.shape, bool)
        ch = "grey"
        md["palette"] = "grey"
        annotatable = np.issubdtype(arr.dtype, np.integer)
        if np.issubdtype(arr.dtype, np.floating):
            nan = ~np.isfinite(arr)
            if nan.all():
                raise InputError(p, "no valid pixel (all values are NaN or infinite)")
            if nan.any():
                invalid |= nan
                warnings.append(f"{int(nan.sum())} NaN/inf pixel(s) filled")
            values = np.where(nan, 0, arr)

    if annotatable:
        parts = annotation_parts(values, off | invalid)
        parts = {k: m & ~invalid for k, m in parts.items()}
    else:
        parts = {"off": off & ~invalid}
    core = np.zeros(values.shape, bool)
    for m in parts.values():
        core |= m
    if annotatable:
        cbar = colour_bar_mask(values, tol=1.0 if arr.ndim == 3 or arr.dtype == np.uint8 else
                               float(np.ptp(values)) / 255.0)
        if cbar.any():
            md["colour_bar_px"] = int(cbar.sum())
        core |= cbar
    core &= ~invalid
    mask = ndimage.binary_dilation(core, structure=np.ones((3, 3), bool)) | invalid
    if mask.all():
        raise InputError(p, "no data pixel left after masking annotation")
    if mask.any():
        keep_dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64
        values = _fill(values, mask).astype(keep_dtype)
    md["mask"] = mask
    md["masked_fraction"] = float(mask.mean())
    if md["masked_fraction"] > 0.3:
        warnings.append(f"{100 * md['masked_fraction']:.0f}% of the image masked as annotation")

    ps: tuple[float, float] | None = None
    source = None
    if pixel_size is not None:
        if np.ndim(pixel_size) == 0:
            ps = (float(pixel_size), float(pixel_size))
        else:
            ps = (float(pixel_size[0]), float(pixel_size[1]))
        source = "argument"
    bar_parts = dict(parts)
    if arr.ndim == 3 and parts["off"].any():  # a white bar on a black box: both off-palette
        bright = (arr[..., :3] @ _LUMA) >= 128
        bar_parts["off"] = parts["off"] & bright
        bar_parts["off_dark"] = parts["off"] & ~bright
    bar = find_scale_bar(bar_parts) if scale_bar is not None or annotatable else None
    if bar is not None:
        # raster APIs (Pillow, OpenCV) draw a bar of L px from x0 to x0 + L inclusive, i.e.
        # L + 1 pixels: the length is the distance between the end pixels' centres
        md["scale_bar"] = {"length_px": bar[0] - 1, "run_px": bar[0], "row": bar[1],
                           "col": bar[2]}
    if scale_bar is not None:
        if not (np.isfinite(scale_bar) and scale_bar > 0):
            raise InputError(p, f"scale bar length must be a positive number of nm, "
                                f"not {scale_bar!r}")
        if bar is None:
            if ps is None:
                raise InputError(p, "scale bar length given but no scale bar found in the image")
            warnings.append("no scale bar found; pixel size from the argument")
        else:
            md["scale_bar"]["length_nm"] = float(scale_bar)
        if ps is None and bar is not None:
            ps = (float(scale_bar) / (bar[0] - 1),) * 2
            source = "scale_bar"
    if ps is None and "tiff_pixel_size" in info:
        ps, source = tuple(info["tiff_pixel_size"]), "tiff"
    if ps is None and side is not None:
        ps, source = (side["pixel_size"],) * 2, "sidecar"
    md["pixel_size_source"] = source
    if warnings:
        md["warnings"] = warnings
    channels = [ch]
    if "tiff_planes" in info:  # a stack: its planes are the channels to choose from
        channels = [f"plane {k}" for k in range(info["tiff_planes"])]
        ch = channels[info["tiff_plane"]]
    return make_heightmap(p, values, ps, ch, "a.u.", "image", channels, md)


def write(path: str | Path, hm: HeightMap) -> Path:
    """Write a height map as a picture.

    ``.png``: 8-bit grey, normalised min-max (I = 255 (H - Hmin) / (Hmax - Hmin)).
    ``.tif``/``.tiff``: float32 with the pixel size (nm/px) in the ImageJ resolution and
    ``unit="nm"`` when known. Returns the path. InputError for another suffix.
    """
    from particlesnn.preprocess import normalize_8bit

    p = Path(path)
    suffix = p.suffix.lower()
    data = np.asarray(hm.data)
    if suffix == ".png":
        from PIL import Image

        Image.fromarray(normalize_8bit(data), mode="L").save(p)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        kw: dict[str, Any] = {}
        if hm.pixel_size is not None:
            kw["resolution"] = (1.0 / hm.pixel_size[0], 1.0 / hm.pixel_size[1])
            kw["metadata"] = {"unit": "nm"}
        tifffile.imwrite(p, data.astype(np.float32), imagej=True, **kw)
    else:
        raise InputError(p, f"cannot write {suffix or 'files without suffix'}; use .png or .tif")
    return p
