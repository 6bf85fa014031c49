"""Tip convolution: the image an SPM tip records is the grey-scale dilation of the true surface.

For a tip whose apex profile is ``t(u) >= 0`` (``t(0) = 0``, u = lateral offset from the apex),
the recorded height is ``I(x) = max_u [ s(x + u) - t(u) ]`` (Villarrubia 1997). Two profiles:

* parabolic, ``t(u) = |u|^2 / (2 R)``: separable into two 1D dilations (fast);
* sphere, ``t(u) = R - sqrt(R^2 - |u|^2)`` for ``|u| <= R`` (a ball on a thin stick).

Exact results used by the tests (derivations in ``docs/synthetic.md``):

* a paraboloid bump ``h - r^2 / (2 Rp)`` dilated by a parabolic tip of radius R is the
  paraboloid ``h - r^2 / (2 (Rp + R))``;
* a hemisphere of radius a dilated by a sphere tip of radius R is
  ``sqrt((a + R)^2 - r^2) - R``.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

K_MAX = 256  # px, largest kernel half-width considered


def kernel_halfwidth(shape: str, radius_nm: float, depth_nm: float, pixel_size_nm: float) -> int:
    """Half-width (px) beyond which the tip can no longer touch: where ``t(u) > depth_nm``."""
    if shape == "none" or depth_nm <= 0 or radius_nm <= 0:
        return 0
    if shape == "parabolic":
        u = np.sqrt(2.0 * radius_nm * depth_nm)
    elif shape == "sphere":
        u = radius_nm if depth_nm >= radius_nm else np.sqrt(radius_nm ** 2 - (radius_nm - depth_nm) ** 2)
    else:
        raise ValueError(f"unknown tip shape {shape!r}")
    return int(min(K_MAX, np.ceil(u / pixel_size_nm)))


def dilate(surface: np.ndarray, shape: str, radius_nm: float, pixel_size_nm: float,
           depth_nm: float | None = None) -> np.ndarray:
    """Image of ``surface`` (nm) scanned with a tip of apex radius ``radius_nm`` (nm).

    shape : ``"none"``, ``"parabolic"`` or ``"sphere"``. pixel_size_nm : nm/px (square).
    depth_nm : relief that matters (default: max - min of ``surface``); the kernel is cut where
    the tip is higher than that above its apex, which does not change the result.
    Returns a new float64 array, same shape.
    """
    if shape == "none" or radius_nm <= 0:
        return np.array(surface, dtype=np.float64, copy=True)
    s = np.asarray(surface, dtype=np.float64)
    if depth_nm is None:
        depth_nm = float(s.max() - s.min())
    k = kernel_halfwidth(shape, radius_nm, depth_nm, pixel_size_nm)
    if k == 0:
        return s.copy()
    u = np.arange(-k, k + 1) * pixel_size_nm
    if shape == "parabolic":
        st = -(u * u) / (2.0 * radius_nm)
        out = ndi.grey_dilation(s, structure=st[None, :], mode="nearest")
        return ndi.grey_dilation(out, structure=st[:, None], mode="nearest")
    uu = np.hypot(u[:, None], u[None, :])
    fp = uu <= min(radius_nm, k * pixel_size_nm)
    st = np.where(fp, -(radius_nm - np.sqrt(np.maximum(radius_nm ** 2 - uu * uu, 0.0))), 0.0)
    return ndi.grey_dilation(s, footprint=fp, structure=st, mode="nearest")


def double_tip(image: np.ndarray, offset_nm: tuple[float, float], dz_nm: float,
               pixel_size_nm: float) -> np.ndarray:
    """Add the ghost of a second apex offset by (dx, dy) nm and retracted by ``dz_nm`` nm.

    ``I2(x) = max(I(x), I(x + offset) - dz)``; the shift is rounded to whole px, edges are
    replicated. Returns a new array.
    """
    ox = int(round(offset_nm[0] / pixel_size_nm))
    oy = int(round(offset_nm[1] / pixel_size_nm))
    rows, cols = image.shape
    ii = np.clip(np.arange(rows) + oy, 0, rows - 1)
    jj = np.clip(np.arange(cols) + ox, 0, cols - 1)
    ghost = image[ii][:, jj] - dz_nm
    return np.maximum(image, ghost)
