"""Gwyddion ``.gwy`` file: the levelled height map with the particles as its mask.

Opened in Gwyddion, the channel shows the particles as the mask (red), so Gwyddion's grain
tools (Grains > Statistics, Distributions, the Mask Editor tool) work on our detection at once.
Written with :mod:`gwyfile` (MIT): channel 0 holds the levelled map in SI units (metres for
heights in nm, the map's own unit otherwise; sizes in metres, or in pixels for plain images),
``/0/mask`` the particles. A Gwyddion mask is one bit per pixel, and Gwyddion counts grains as
4-connected parts of it, so two touching particles are written with a one-pixel gap between
them (pixels of the higher id that share an edge with a lower id are left out); each particle
stays one grain. (Checked with Gwyddion 2.62: its thumbnailer draws the map with the mask.)

Read back: the mask of the first channel that has one, labelled by 4-connectivity (as
Gwyddion numbers grains), ordered by position (row-major first pixel). The gap pixels between
touching particles, not being in the mask, belong to no particle.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from particlesnn.errors import InputError
from particlesnn.export._common import check_labels
from particlesnn.heightmap import HeightMap

__all__ = ["write", "read", "grain_mask", "as_read"]


def grain_mask(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the particles with touching ones kept apart for 4-connected grains.

    A particle pixel is left out when a 4-neighbour belongs to another particle with a lower
    id, so no two particles share an edge and each particle's pixels but those stay in.
    """
    lab = np.asarray(labels)
    mask = lab > 0
    gap = np.zeros_like(mask)
    for axis in (0, 1):
        a = lab
        lo = np.take(a, np.arange(a.shape[axis] - 1), axis=axis)
        hi = np.take(a, np.arange(1, a.shape[axis]), axis=axis)
        touch = (lo > 0) & (hi > 0) & (lo != hi)
        # the higher id of each touching pair gives up its pixel
        hi_loses = touch & (hi > lo)
        lo_loses = touch & (lo > hi)
        if axis == 0:
            gap[1:, :] |= hi_loses
            gap[:-1, :] |= lo_loses
        else:
            gap[:, 1:] |= hi_loses
            gap[:, :-1] |= lo_loses
    return mask & ~gap


def _si(levelled: HeightMap) -> tuple[np.ndarray, str, float, float, str]:
    """(z data in SI, z unit, xreal, yreal, xy unit) of a map, as Gwyddion stores it."""
    data = np.asarray(levelled.data, dtype=np.float64)
    unit = str(getattr(levelled, "unit", "") or "")
    if unit == "nm":
        data, unit = data * 1e-9, "m"
    rows, cols = data.shape
    if levelled.pixel_size:
        px, py = levelled.pixel_size
        return data, unit, cols * px * 1e-9, rows * py * 1e-9, "m"
    return data, unit, float(cols), float(rows), ""


def write(path: str | Path, levelled: HeightMap, labels: np.ndarray, *,
          title: str = "Height (levelled)") -> Path:
    """Write ``levelled`` (nm, nm/px) with ``labels`` as its Gwyddion mask; returns the path.

    ``labels`` must have the map's shape (InputError otherwise); an image without particles
    gets an empty mask. Non-finite heights are written as 0 (Gwyddion has no NaN).
    """
    from gwyfile.objects import GwyContainer, GwyDataField, GwySIUnit

    path = Path(path)
    lab = check_labels(labels, path)
    if lab.shape != levelled.shape:
        raise InputError(path, f"labels are {lab.shape[1]} x {lab.shape[0]} px, the map "
                               f"{levelled.shape[1]} x {levelled.shape[0]} px")
    data, zunit, xreal, yreal, xyunit = _si(levelled)
    data = np.where(np.isfinite(data), data, 0.0)
    c = GwyContainer()
    c["/0/data"] = GwyDataField(np.ascontiguousarray(data), xreal=xreal, yreal=yreal,
                                si_unit_xy=GwySIUnit(unitstr=xyunit), si_unit_z=GwySIUnit(unitstr=zunit))
    c["/0/data/title"] = title
    c["/0/mask"] = GwyDataField(grain_mask(lab).astype(np.float64), xreal=xreal, yreal=yreal,
                                si_unit_xy=GwySIUnit(unitstr=xyunit), si_unit_z=GwySIUnit(unitstr=""))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    c.tofile(str(tmp))
    tmp.replace(path)
    return path


def read(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Label image (int32, 1..n) of the Gwyddion mask in ``path``, for an image of ``shape``
    (None: the mask's own size).

    The mask of the first channel that has one (``/<n>/mask``); grains are its 4-connected
    parts. InputError for a file that is not a readable Gwyddion file, holds no mask, or whose
    mask has another size than ``shape``.
    """
    import re

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    with open(path, "rb") as fh:
        if fh.read(4) != b"GWYP":
            raise InputError(path, "not a Gwyddion 2 file (no GWYP magic)")
    import gwyfile

    try:
        obj = gwyfile.load(str(path))
        keys = sorted((int(m.group(1)), k) for k in obj.keys() if (m := re.fullmatch(r"/(\d+)/mask", k)))
        mask = np.asarray(obj[keys[0][1]].data) if keys else None
    except Exception as err:  # gwyfile raises assorted errors on damaged files
        raise InputError(path, f"damaged or truncated Gwyddion file ({type(err).__name__}: {err})") from None
    if mask is None:
        raise InputError(path, "holds no mask (mark the particles with a mask in Gwyddion, then save)")
    if shape is not None and mask.shape != tuple(shape):
        raise InputError(path, f"mask is {mask.shape[1]} x {mask.shape[0]} px, the image "
                               f"{shape[1]} x {shape[0]} px")
    return _grains(mask > 0.5)


def _grains(mask: np.ndarray) -> np.ndarray:
    labels, _ = ndi.label(mask)  # the cross: 4-connectivity, as Gwyddion's grains
    return labels.astype(np.int32)


def as_read(labels: np.ndarray) -> np.ndarray:
    """The label image :func:`read` gives back from a file :func:`write` made of ``labels``
    (its grains, touching particles parted by their gap), without writing one."""
    return _grains(grain_mask(np.asarray(labels)))
