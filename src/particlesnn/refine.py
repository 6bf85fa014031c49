"""Contour refinement by a 2D Gaussian fit per particle (the paper's post-processing, bounded).

For each particle k of a label image:

1. **Window.** The particle's mask doubled in linear size about its centroid
   (``window_scale = 2``), joined with a margin of ``min_margin_px`` pixels around the mask so
   that small particles still have background in their window, and cut to the particle's
   territory (step 5), so other particles' pixels are masked out of the fit.
2. **Data.** With ``smooth=True`` the heights are first smoothed with a Gaussian kernel of
   standard deviation ``s = d_eff / 8`` px (``d_eff`` = equivalent-circle diameter of the mask,
   i.e. a kernel about ``d_eff / 4`` wide at half maximum, as in the paper).  Because a Gaussian
   smoothed by a Gaussian is a Gaussian, the fit on smoothed data is corrected exactly:
   ``Sigma = Sigma_fit - s^2 I`` and ``Hm = Hm_fit * sqrt(det Sigma_fit / det Sigma)``; the
   smoothing steadies the fit against noise without widening the result.
3. **Model** (7 parameters, general rotated elliptical Gaussian)::

       z(x, y) = H0 + Hm * exp(-0.5 * [dx dy] Sigma^-1 [dx dy]^T),  dx = x - x0, dy = y - y0

   with Sigma = [[sx^2, sxy], [sxy, sy^2]] (px^2).  Sigma^-1 is parametrised by its Cholesky
   factor so that every step stays positive definite.  The start comes from moments (H0: median
   of the window outside the mask, Hm: peak above it, centre: height-weighted centroid, Sigma:
   mask second moments scaled to a half-height disc).  All particles are fitted together by a
   bounded, batched Levenberg-Marquardt with the analytic Jacobian (numpy, no per-particle
   Python loop in the solver; batches run on ``workers`` threads).  The centre is bounded to
   the mask's bounding box + 1 px, sigma to [min_sigma_px / 2, window size], Hm to
   [0, 3 x window height span].
3b. **Neighbours.** The paper masks neighbours out, but their flanks still lean into the window
   and pull the fit towards them (measured: two touching sigma = 4 px bumps 13 px apart, centre
   off by 0.5-0.8 px, sigma +9 to +20 %).  So further passes (``neighbour_passes``) fit each
   particle again on its window minus the neighbours' fitted bumps (subtracted analytically,
   smoothed like the data), with under-relaxation (0.6) so the alternation converges (then: centre
   within 0.02 px, sigma within 0.5 %).  Passes stop when no bump moves.
4. **Border.** The refined border is the fitted surface's half-height cross-section at
   ``H0 + level * Hm`` with ``level = 0.5`` by default: the half maximum above the fitted local
   background, i.e. the ellipse ``[dx dy] Sigma^-1 [dx dy]^T <= -2 ln(level)`` (the FWHM
   ellipse, semi-axes ``sigma * sqrt(2 ln 2) = 1.1774 sigma``).  The paper built its level from
   the smoothed min/max heights and H0 and the fit at (x0, y0); the exact formula is not legible
   in our copy, and ``H0 + Hm/2`` is the choice that does not depend on noise extremes.
5. **Territory.** The refined region is cut to the particle's own territory: the pixels whose
   nearest labelled pixel (Euclidean) belongs to k.  Territories are disjoint, so refinement
   never takes a neighbour's pixels and labels keep their ids.  The fit window is cut to the
   same territory.  Only the connected piece that holds the fitted centre (or else the
   largest) is kept.
5b. **Cap model** (``model="cap"``, optional): ``z = H0 + Hm (1 - Q)_+^p`` with Q = d^T B^-1 d
   (B = base ellipse matrix, px^2, Q = 1 on the rim) and the exponent p fitted in [0.3, 5]
   (p = 0.5 hemisphere-like, 1 paraboloid, large p Gaussian-like); 8 parameters, no smoothing
   (the exact smoothing correction holds for Gaussians only).  Its half-height border is
   ``Q <= 1 - level^(1/p)``.  Measured: flat-topped caps (p = 0.5) refined with the Gaussian
   model lose about 43 % of their true half-height area (the Gaussian overshoots the top, so
   its half maximum lies too high), the cap model recovers it to within 3 % (p = 0.5 to 3);
   on true Gaussians the cap model (p at its bound 5) gives 0.5-8 % too much area (median
   +5 % on the benchmark image).
6. **Checks.** ``fit_status`` is ``"ok"``, ``"failed"`` (too few window pixels, flat window,
   non-finite result, no peak above the background) or ``"implausible"`` (centre outside the
   image -- a particle cut by the border --, centre outside the window or
   pulled to the edge of the box it is bounded to -- the mask's bounding box + 1 px --, sigma
   below ``min_sigma_px`` or above the window size, refined/original area ratio outside
   ``area_ratio``, R^2 below ``min_r2``, smoothing larger than the fitted width); the reason is
   in ``fit_reason``.  Failed and implausible particles keep their original mask.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.measure import check_labels, unit_suffix

__all__ = ["refine", "gaussian2d", "fit_gaussians"]

_NPAR = 7
_LN2 = math.log(2.0)
_RELAX = 0.6
_NEAR_FLOOR = 1e-3  # a neighbour matters where its bump exceeds this fraction of own Hm
_P_RANGE = (0.3, 5.0)  # bounds of the cap exponent p
MODELS = ("gaussian", "cap")
_MAX_SLOTS = 2_000_000  # padded window pixels per solver batch (about 130 MB of Jacobian)


def gaussian2d(x: np.ndarray, y: np.ndarray, h0: float, hm: float, x0: float, y0: float,
               sx: float, sxy: float, sy: float) -> np.ndarray:
    """The 7-parameter Gaussian at (x, y) px: ``H0 + Hm exp(-0.5 d^T Sigma^-1 d)``.

    ``sx``, ``sy`` standard deviations (px), ``sxy`` covariance (px^2); heights in the data unit.
    """
    det = sx * sx * sy * sy - sxy * sxy
    a, b, c = sy * sy / det, -sxy / det, sx * sx / det
    dx, dy = np.asarray(x, float) - x0, np.asarray(y, float) - y0
    return h0 + hm * np.exp(-0.5 * (a * dx * dx + 2 * b * dx * dy + c * dy * dy))


# --------------------------------------------------------------------------- batched solver
def _model(theta: np.ndarray, X: np.ndarray, Y: np.ndarray, jac: bool):
    """Batched model and Jacobian.

    theta (B, 7) = H0, Hm, x0, y0, l1, l2, l3: Gaussian ``H0 + Hm exp(-Q/2)``;
    theta (B, 8) = the same + p: cap ``H0 + Hm (1 - Q)_+^p``;
    Q = d^T M d with M = L L^T, L = [[l1, 0], [l2, l3]].
    """
    h0, hm, x0, y0, l1, l2, l3 = (theta[:, i:i + 1] for i in range(7))
    cap = theta.shape[1] == 8
    dx, dy = X - x0, Y - y0
    A = l1 * dx + l2 * dy
    B = l3 * dy
    if cap:
        pw = theta[:, 7:8]
        u = 1.0 - (A * A + B * B)
        inside = u > 0
        up = np.where(inside, np.maximum(u, 1e-300), 1.0)
        e = np.where(inside, up ** pw, 0.0)
    else:
        e = np.exp(-0.5 * (A * A + B * B))
    f = h0 + hm * e
    if not jac:
        return f, None
    if cap:
        # 2 df/dQ = -2 Hm p u^(p-1), clipped near the rim where it diverges for p < 1
        g = np.where(inside, -2.0 * hm * pw * np.maximum(up, 0.02) ** (pw - 1.0), 0.0)
    else:
        g = -hm * e  # d f / d Q * 2
    J = np.empty(X.shape + (theta.shape[1],))
    J[..., 0] = 1.0
    J[..., 1] = e
    if cap:
        J[..., 7] = np.where(inside, hm * e * np.log(up), 0.0)
    # df/dQ = -hm e / 2 ; dQ/dx0 = -2 A l1 ; dQ/dy0 = -2 (A l2 + B l3)
    J[..., 2] = g * (-A * l1)
    J[..., 3] = g * (-(A * l2 + B * l3))
    J[..., 4] = g * (A * dx)
    J[..., 5] = g * (A * dy)
    J[..., 6] = g * (B * dy)
    return f, J


def fit_gaussians(X: np.ndarray, Y: np.ndarray, Z: np.ndarray, W: np.ndarray,
                  theta0: np.ndarray, lower: np.ndarray, upper: np.ndarray, *,
                  max_iter: int = 60, tol: float = 1e-6
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched bounded Levenberg-Marquardt fit of the Cholesky-parametrised Gaussian (or cap).

    X, Y, Z, W : (B, P) pixel coordinates (px), heights and weights (0 = padding/masked).
    theta0, lower, upper : (B, 7) start and bounds (H0, Hm, x0, y0, l1, l2, l3) for the
        Gaussian ``H0 + Hm exp(-Q/2)``, or (B, 8) with the exponent p appended for the cap
        ``H0 + Hm (1 - Q)_+^p``; Q = d^T L L^T d, L = [[l1, 0], [l2, l3]] (1/px).
    Returns (theta (B, 7 or 8), cost (B,) = weighted sum of squared residuals, iterations (B,)).
    Steps are projected onto the bounds.
    """
    theta = np.clip(theta0, lower, upper)
    n = len(theta)
    npar = theta.shape[1]
    H = np.zeros((n, npar, npar))
    g = np.zeros((n, npar))
    cost = np.zeros(n)

    def rows(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return a if idx.size == n else a[idx]  # no copy while every fit is still running

    def normal_eq(idx: np.ndarray) -> None:
        # Jacobian only where the parameters changed: a rejected step keeps H and g
        Xi, Yi, Zi, Wi = rows(X, idx), rows(Y, idx), rows(Z, idx), rows(W, idx)
        f, J = _model(theta[idx], Xi, Yi, True)
        d = f - Zi
        r = d * Wi
        JwT = (J * Wi[..., None]).transpose(0, 2, 1)
        H[idx] = JwT @ J
        g[idx] = (JwT @ r[..., None])[..., 0]
        cost[idx] = np.sum(r * d, axis=1)

    normal_eq(np.arange(n))
    lam = np.full(n, 1e-2)
    active = np.isfinite(cost)
    iters = np.zeros(n, dtype=int)
    eye = np.eye(npar)
    for _ in range(max_iter):
        idx = np.nonzero(active)[0]
        if idx.size == 0:
            break
        Hi = H[idx]
        d = np.maximum(np.einsum("bii->bi", Hi), 1e-12)
        A = Hi + lam[idx, None, None] * d[:, :, None] * eye
        try:
            step = -np.linalg.solve(A, g[idx][..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -np.stack([np.linalg.lstsq(a, b, rcond=None)[0] for a, b in zip(A, g[idx])])
        new = np.clip(theta[idx] + step, lower[idx], upper[idx])
        fn, _ = _model(new, rows(X, idx), rows(Y, idx), False)
        cn = np.sum(rows(W, idx) * (fn - rows(Z, idx)) ** 2, axis=1)
        ok = np.isfinite(cn) & (cn < cost[idx])
        rel = np.where(ok, (cost[idx] - cn) / np.maximum(cost[idx], 1e-300), 0.0)
        acc = idx[ok]
        theta[acc] = new[ok]
        lam[idx] = np.where(ok, np.maximum(lam[idx] / 3.0, 1e-9), lam[idx] * 4.0)
        iters[idx] += 1
        done = (ok & (rel < tol)) | (lam[idx] > 1e10)
        active[idx[done]] = False
        upd = acc[active[acc]]
        if upd.size:
            normal_eq(upd)
        cost[acc[~active[acc]]] = cn[ok][~active[acc]]
    return theta, cost, iters


# --------------------------------------------------------------------------- per-particle prep
def _window(labels: np.ndarray, nearest: np.ndarray, lab: int, sl: tuple[slice, slice],
            cy: float, cx: float, scale: float, margin: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Window mask (bool crop) and its origin (row, col): the mask scaled ``scale`` x about
    (cy, cx), joined with a ``margin``-px dilation, restricted to the particle's territory
    (so other particles' pixels, and the far side of their flanks, are left out)."""
    rows, cols = labels.shape
    half_r = max(abs(sl[0].start - cy), abs(sl[0].stop - 1 - cy)) * scale + margin + 1
    half_c = max(abs(sl[1].start - cx), abs(sl[1].stop - 1 - cx)) * scale + margin + 1
    r0, r1 = max(int(math.floor(cy - half_r)), 0), min(int(math.ceil(cy + half_r)) + 1, rows)
    c0, c1 = max(int(math.floor(cx - half_c)), 0), min(int(math.ceil(cx + half_c)) + 1, cols)
    lab_c = labels[r0:r1, c0:c1]
    own = lab_c == lab
    sr = np.rint(cy + (np.arange(r0, r1) - cy) / scale).astype(int)
    sc = np.rint(cx + (np.arange(c0, c1) - cx) / scale).astype(int)
    okr = (sr >= 0) & (sr < rows)
    okc = (sc >= 0) & (sc < cols)
    scaled = np.zeros_like(own)
    scaled[np.ix_(okr, okc)] = labels[np.ix_(sr[okr], sc[okc])] == lab
    win = scaled | own
    if margin > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        win |= cv2.dilate(own.astype(np.uint8), k, borderType=cv2.BORDER_CONSTANT,
                          borderValue=0).astype(bool)
    win &= nearest[r0:r1, c0:c1] == lab
    return win, (r0, c0)


def _keep_piece(region: np.ndarray, seed: tuple[int, int] | None) -> np.ndarray:
    lab, n = ndi.label(region)
    if n <= 1:
        return region
    if seed is not None and 0 <= seed[0] < region.shape[0] and 0 <= seed[1] < region.shape[1] \
            and lab[seed] > 0:
        return lab == lab[seed]
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (int(np.argmax(sizes)) + 1)


def refine(hm: HeightMap, labels: np.ndarray, *, smooth: bool = True, level: float = 0.5,
           window_scale: float = 2.0, min_margin_px: int = 3,
           area_ratio: tuple[float, float] = (0.25, 4.0), min_r2: float = 0.5,
           min_sigma_px: float = 0.5, neighbour_passes: int = 6, max_iter: int = 60,
           batch_size: int = 128, workers: int = 2,
           model: str = "gaussian") -> tuple[np.ndarray, pd.DataFrame]:
    """Refine particle borders by a 2D Gaussian (or cap) fit per particle (module docstring).

    Parameters
    ----------
    hm : HeightMap, levelled, particles bright (heights in ``hm.unit``).
    labels : (rows, cols) int label image, 0 = background.
    smooth : fit on heights smoothed with sigma = d_eff / 8 px and correct the result exactly.
    level : fraction of the fitted amplitude above H0 where the border is taken (0 < level < 1).
    window_scale : linear enlargement of the mask about its centroid for the fit window.
    min_margin_px : the window always holds the mask dilated by this many px.
    area_ratio : (low, high) accepted refined/original area ratio.
    min_r2 : minimum coefficient of determination of the fit in its window.
    min_sigma_px : smallest accepted fitted standard deviation (px).
    model : ``"gaussian"`` (7 parameters, the paper's) or ``"cap"`` (8 parameters, see 5b).
    workers : threads for the batched solver (numpy releases the GIL); 1 = serial.
    neighbour_passes : at most this many further passes in which each particle is fitted again
        on the data minus its neighbours' fitted bumps (0 = every particle alone, as in the
        paper); passes stop early once no fit moves (centre < 0.01 px, amplitude < 0.3 %).

    Returns
    -------
    refined_labels : (rows, cols) int32, same ids as ``labels``; particles whose fit failed or
        was implausible keep their original mask.
    fits : DataFrame, one row per particle: ``label``, ``fit_status``, ``fit_reason``,
        ``fit_model``, ``fit_h0_<z>``, ``fit_hm_<z>`` (background and amplitude, height unit
        ``<z>``),
        ``fit_level_<z>`` (height of the refined border), ``fit_x0_px``, ``fit_y0_px`` (centre,
        image px: column, row), ``fit_sigma_x_px``, ``fit_sigma_y_px``, ``fit_sigma_xy_px2``,
        ``fit_sigma_major_px``, ``fit_sigma_minor_px`` (Gaussian; NaN for caps),
        ``fit_base_major_px``, ``fit_base_minor_px``, ``fit_p`` (cap base semi-axes and
        exponent; NaN for Gaussians), ``fit_fwhm_major_px``, ``fit_fwhm_minor_px`` (full widths
        at half maximum, both models), ``fit_angle_deg`` (major axis,
        counter-clockwise as displayed, [0, 180)), ``fit_volume_px2<z>`` (volume of the whole
        fitted bump above H0, flanks included, px^2 x height unit), ``fit_r2``, ``fit_rmse_<z>``,
        ``fit_n_px`` (window pixels), ``fit_area_ratio`` (refined / original area, NaN when
        not computed), ``fit_iterations``, ``fit_smooth_px`` (smoothing sigma used).
    """
    labels = check_labels(hm, labels)
    if labels.size and labels.max() > 0 and not _consecutive(labels):
        seq, _, inv = relabel_sequential(labels)
        if not np.array_equal(inv.in_values, inv.out_values):  # ids not 1..n: work on 1..n
            out_seq, fits = refine(hm, seq, smooth=smooth, level=level,
                                   window_scale=window_scale, min_margin_px=min_margin_px,
                                   area_ratio=area_ratio, min_r2=min_r2,
                                   min_sigma_px=min_sigma_px, neighbour_passes=neighbour_passes,
                                   max_iter=max_iter, batch_size=batch_size, workers=workers,
                                   model=model)
            lut = np.zeros(int(seq.max()) + 1, dtype=np.int64)
            lut[inv.in_values] = inv.out_values
            fits["label"] = lut[fits["label"].to_numpy(int)]
            back = lut[out_seq]
            return (back.astype(np.int32) if lut.max() < 2 ** 31 else back), fits
    if model not in MODELS:
        raise InputError(hm.source, f"unknown refine model {model!r} (use one of {MODELS})")
    cap = model == "cap"
    if not 0.0 < level < 1.0:
        raise InputError(hm.source, f"refine level must lie in (0, 1), got {level}")
    if window_scale < 1.0:
        raise InputError(hm.source, f"window_scale must be >= 1, got {window_scale}")
    data = np.asarray(hm.data, dtype=np.float64)
    rows, cols = data.shape
    zu = unit_suffix(hm.unit)
    out = np.zeros(labels.shape, dtype=np.int32)
    out[:] = labels
    slices = ndi.find_objects(labels)
    ids = [i + 1 for i, s in enumerate(slices) if s is not None]
    if not ids:
        return out, _empty_fits(zu)

    if len(ids) > 1:
        nearest = _territories(labels)
    else:
        nearest = np.full(labels.shape, ids[0], dtype=labels.dtype)

    # ---- moments of every mask at once: pixel count, centroid, covariance (px, px^2)
    rr_, cc_ = np.nonzero(labels)
    ll_ = labels[rr_, cc_]
    nl = int(labels.max()) + 1
    mom_n = np.bincount(ll_, minlength=nl).astype(np.float64)
    safe = np.maximum(mom_n, 1)
    mom_y = np.bincount(ll_, rr_, minlength=nl) / safe
    mom_x = np.bincount(ll_, cc_, minlength=nl) / safe
    dy_, dx_ = rr_ - mom_y[ll_], cc_ - mom_x[ll_]
    mom_xx = np.bincount(ll_, dx_ * dx_, minlength=nl) / safe
    mom_yy = np.bincount(ll_, dy_ * dy_, minlength=nl) / safe
    mom_xy = np.bincount(ll_, dx_ * dy_, minlength=nl) / safe
    del rr_, cc_, ll_, dy_, dx_

    # ---- per-particle window geometry (fixed for both passes)
    prep: list[dict[str, Any]] = []
    for lab in ids:
        sl = slices[lab - 1]
        area = float(mom_n[lab])
        cy, cx = mom_y[lab], mom_x[lab]
        d_eff = 2.0 * math.sqrt(area / math.pi)
        win, (r0, c0) = _window(labels, nearest, lab, sl, cy, cx, window_scale,
                                min_margin_px)
        s_px = d_eff / 8.0 if (smooth and not cap) else 0.0
        if s_px <= 0.3:
            s_px = 0.0
        wr, wc = np.nonzero(win)
        wr, wc = wr + r0, wc + c0
        R0, R1, C0, C1 = wr.min(), wr.max() + 1, wc.min(), wc.max() + 1
        m = int(math.ceil(4 * s_px))
        box = (max(R0 - m, 0), min(R1 + m, rows), max(C0 - m, 0), min(C1 + m, cols))
        x = wc - cx  # coordinates relative to the mask centroid (px)
        y = wr - cy
        prep.append(dict(label=lab, cy=cy, cx=cx, area=area, s=s_px, wr=wr, wc=wc, x=x, y=y,
                         box=box, own=labels[wr, wc] == lab,
                         win_extent=float(max(R1 - R0, C1 - C0)),
                         mxr=(sl[1].start - cx - 1.0, sl[1].stop - 1 - cx + 1.0),
                         myr=(sl[0].start - cy - 1.0, sl[0].stop - 1 - cy + 1.0),
                         xr=(x.min() - 0.5, x.max() + 0.5), yr=(y.min() - 0.5, y.max() + 0.5)))
        prep[-1]["z"] = _values(data, prep[-1])

    theta0 = np.zeros((len(prep), 8 if cap else _NPAR))
    lower = np.zeros_like(theta0)
    upper = np.zeros_like(theta0)
    for i, p in enumerate(prep):
        z, own = p["z"], p["own"]
        zmin, zmax = float(z.min()), float(z.max())
        span = max(zmax - zmin, 1e-9 * max(1.0, abs(zmax)), 1e-12)
        bg = z[~own]
        h0 = float(np.median(bg)) if bg.size >= 3 else zmin
        hm_ = max(float(z[own].max()) - h0, 0.05 * span)
        wts = np.clip(z[own] - h0, 0, None)
        if wts.sum() <= 0:
            wts = np.ones_like(wts)
        xo, yo = p["x"][own], p["y"][own]
        x0 = float((wts * xo).sum() / wts.sum())
        y0 = float((wts * yo).sum() / wts.sum())
        # mask covariance of a half-height disc -> Gaussian covariance (x 2 / ln 2), plus the
        # pixel's own variance and the smoothing; for the cap (p = 1 at the start) the
        # half-height disc has radius^2 = base radius^2 / 2, i.e. base matrix = 8 x covariance
        lab = p["label"]
        add = 1.0 / 12.0 + p["s"] ** 2
        k = 8.0 if cap else 2.0 / _LN2
        cxx = mom_xx[lab] * k + add
        cyy = mom_yy[lab] * k + add
        cxy = mom_xy[lab] * k
        smin = max(min_sigma_px * 0.5, 0.2)
        smax = max(p["win_extent"], 2.0) * (2.0 if cap else 1.0)
        det = cxx * cyy - cxy * cxy
        if det > 0:
            p00, p01, p11 = cyy / det, -cxy / det, cxx / det
            l1 = math.sqrt(p00)
            l2 = p01 / l1
            l3 = math.sqrt(max(p11 - l2 * l2, 1e-12))
        else:
            l1, l2, l3 = 1.0 / smax, 0.0, 1.0 / smax
        l1 = min(max(l1, 1.0 / smax), 1.0 / smin)
        l3 = min(max(l3, 1.0 / smax), 1.0 / smin)
        l2 = min(max(l2, -1.0 / smin), 1.0 / smin)
        lo = (zmin - span, 0.0, p["mxr"][0], p["myr"][0], 1.0 / smax, -1.0 / smin, 1.0 / smax)
        hi = (zmax + span, 3.0 * span, p["mxr"][1], p["myr"][1], 1.0 / smin, 1.0 / smin,
              1.0 / smin)
        if cap:
            theta0[i] = (h0, hm_, x0, y0, l1, l2, l3, 1.0)
            lower[i] = lo + (_P_RANGE[0],)
            upper[i] = hi + (_P_RANGE[1],)
        else:
            theta0[i] = (h0, hm_, x0, y0, l1, l2, l3)
            lower[i], upper[i] = lo, hi

    # ---- pass 1: every particle alone
    theta, cost, iters = _fit_all(prep, theta0, lower, upper, batch_size, max_iter, workers)

    # ---- passes 2..: neighbours' fitted bumps subtracted from the data, fit again (Jacobi
    # iteration: each pass uses the neighbours' previous fits; stops when the bumps settle).
    # Smoothing is linear, so the smoothed neighbour bumps are subtracted analytically from
    # the smoothed window heights (a Gaussian smoothed by s has Sigma + s^2 I).
    if neighbour_passes > 0 and len(prep) > 1:
        for p in prep:
            p["z0"] = p["z"]
        theta_r = theta.copy()  # the bumps as subtracted (relaxed towards the fits)
        s_all = np.array([p["s"] for p in prep])
        cxy_all = np.array([(p["cx"], p["cy"]) for p in prep])
        ext_all = np.array([p["win_extent"] for p in prep])
        G = _deconvolved(theta_r, s_all, cxy_all, ext_all * (2.0 if cap else 1.0))
        near = _neighbour_lists(prep, G)
        todo = np.array([len(nb) > 0 for nb in near])
        for _ in range(neighbour_passes):
            idx = np.nonzero(todo)[0]
            if idx.size == 0:
                break
            for i in idx:
                p = prep[i]
                xa, ya = p["x"] + p["cx"], p["y"] + p["cy"]
                js = np.asarray(near[i], dtype=int)
                usable = np.isfinite(G[js, 0])
                b = _bumps_at(xa, ya, G[js[usable]], p["s"])  # (k, P)
                big = b.max(axis=1) > _NEAR_FLOOR * abs(float(theta[i, 1])) if b.size else \
                    np.zeros(0, bool)
                # neighbours too far to matter are dropped for good
                near[i] = sorted(js[~usable].tolist() + js[usable][big].tolist())
                p["z"] = p["z0"] - b[big].sum(axis=0) if big.any() else p["z0"]
            sub = [prep[i] for i in idx]
            start = np.clip(np.where(np.isfinite(theta[idx]), theta[idx], theta0[idx]),
                            lower[idx], upper[idx])
            # later passes start next to the answer: fewer iterations each
            th2, c2, it2 = _fit_all(sub, start, lower[idx], upper[idx], batch_size,
                                    max(5, max_iter // 3), workers)
            moved = np.nan_to_num(np.abs(th2[:, 2:4] - theta_r[idx, 2:4]).max(axis=1), nan=1.0)
            amp = np.nan_to_num(np.abs(th2[:, 1] - theta_r[idx, 1])
                                / np.maximum(np.abs(theta_r[idx, 1]), 1e-300), nan=1.0)
            theta[idx], cost[idx], iters[idx] = th2, c2, iters[idx] + it2
            # under-relaxation: plain Jacobi overshoots (each pass flips the error, ~ -0.6x)
            theta_r[idx] = np.where(np.isfinite(th2),
                                    theta_r[idx] + _RELAX * (th2 - theta_r[idx]), theta_r[idx])
            G[idx] = _deconvolved(theta_r[idx], s_all[idx], cxy_all[idx],
                                  ext_all[idx] * (2.0 if cap else 1.0))
            settled = idx[(moved <= 0.01) & (amp <= 0.003)]
            # a particle is fitted again while it or one of its neighbours still moves
            unsettled = set(idx.tolist()) - set(settled.tolist())
            todo[:] = False
            for i in unsettled:
                todo[i] = bool(near[i])
                for j in near[i]:
                    todo[j] = True
            todo &= np.array([len(nb) > 0 for nb in near])

    # ---- checks, deconvolution and refined regions
    recs = []
    for i, p in enumerate(prep):
        lab = p["label"]
        h0, hmf, x0, y0, l1, l2, l3 = theta[i, :7]
        pw = float(theta[i, 7]) if cap else float("nan")
        z = p["z"]
        sst = float(((z - z.mean()) ** 2).sum())
        r2 = 1.0 - cost[i] / sst if sst > 0 else float("nan")
        rec: dict[str, Any] = {"label": lab, "fit_status": "ok", "fit_reason": "",
                               "fit_model": model,
                               f"fit_h0_{zu}": h0, f"fit_hm_{zu}": hmf,
                               f"fit_level_{zu}": float("nan"),
                               "fit_x0_px": x0 + p["cx"], "fit_y0_px": y0 + p["cy"],
                               "fit_sigma_x_px": np.nan, "fit_sigma_y_px": np.nan,
                               "fit_sigma_xy_px2": np.nan, "fit_sigma_major_px": np.nan,
                               "fit_sigma_minor_px": np.nan, "fit_base_major_px": np.nan,
                               "fit_base_minor_px": np.nan, "fit_p": pw,
                               "fit_fwhm_major_px": np.nan, "fit_fwhm_minor_px": np.nan,
                               "fit_angle_deg": np.nan, f"fit_volume_px2{zu}": np.nan,
                               "fit_r2": r2, f"fit_rmse_{zu}": math.sqrt(cost[i] / z.size),
                               "fit_n_px": int(z.size), "fit_area_ratio": np.nan,
                               "fit_iterations": int(iters[i]), "fit_smooth_px": p["s"]}
        reason, status = "", "ok"
        sig = None
        qmax = (1.0 - level ** (1.0 / pw)) if cap else -2.0 * math.log(level)
        zspan = float(z.max() - z.min()) if z.size else 0.0
        if z.size < 3 * theta.shape[1]:
            status, reason = "failed", f"window too small ({z.size} px)"
        elif not zspan > 0:
            status, reason = "failed", "flat window (no height variation)"
        elif not np.all(np.isfinite(theta[i])) or not math.isfinite(cost[i]):
            status, reason = "failed", "fit did not converge (non-finite result)"
        elif hmf <= 1e-6 * zspan:
            status, reason = "failed", "no peak above the background"
        else:
            det_m = (l1 * l3) ** 2  # det of M = L L^T
            sig_fit = np.array([[l2 * l2 + l3 * l3, -l1 * l2], [-l1 * l2, l1 * l1]]) / det_m
            sig = sig_fit - np.eye(2) * p["s"] ** 2
            ev = np.linalg.eigvalsh(sig)
            if ev.min() <= 0:
                status, reason = "implausible", "fitted width below the smoothing width"
                sig = None
            else:
                hm_true = hmf * math.sqrt(np.linalg.det(sig_fit) / np.linalg.det(sig))
                rec[f"fit_hm_{zu}"] = hm_true
                rec[f"fit_level_{zu}"] = h0 + level * hm_true
                amaj, amin = math.sqrt(ev.max()), math.sqrt(ev.min())
                ang = 0.5 * math.degrees(math.atan2(2 * sig[0, 1], sig[0, 0] - sig[1, 1]))
                rec["fit_angle_deg"] = (-ang) % 180.0
                if cap:
                    half = math.sqrt(1.0 - 0.5 ** (1.0 / pw))  # half-max radius / base radius
                    rec.update(fit_base_major_px=amaj, fit_base_minor_px=amin)
                else:
                    half = math.sqrt(2.0 * _LN2)
                    rec.update(fit_sigma_x_px=math.sqrt(sig[0, 0]),
                               fit_sigma_y_px=math.sqrt(sig[1, 1]),
                               fit_sigma_xy_px2=float(sig[0, 1]), fit_sigma_major_px=amaj,
                               fit_sigma_minor_px=amin)
                hw_maj, hw_min = half * amaj, half * amin  # half widths at half maximum
                rec.update(fit_fwhm_major_px=2 * hw_maj, fit_fwhm_minor_px=2 * hw_min)
                # whole bump volume above H0 (flanks included): Gaussian 2 pi Hm sx sy,
                # cap pi Hm a b / (p + 1)
                rec[f"fit_volume_px2{zu}"] = (math.pi * hm_true * amaj * amin / (pw + 1.0) if cap
                                              else 2.0 * math.pi * hm_true * amaj * amin)
                g_hw = math.sqrt(2.0 * _LN2)  # Gaussian half width at half max per sigma
                xi, yi = x0 + p["cx"], y0 + p["cy"]
                if not (-0.5 <= xi <= cols - 0.5 and -0.5 <= yi <= rows - 0.5):
                    status, reason = "implausible", ("centre outside the image: particle cut by "
                                                     "the image border")
                elif not (p["xr"][0] <= x0 <= p["xr"][1] and p["yr"][0] <= y0 <= p["yr"][1]) \
                        or not _near_window(p, x0, y0):
                    status, reason = "implausible", "centre outside the fit window"
                elif _on_bound(x0, p["mxr"]) or _on_bound(y0, p["myr"]):
                    status, reason = "implausible", "centre pulled out of the particle's box"
                elif hw_min < min_sigma_px * g_hw:
                    status, reason = "implausible", (f"width {2 * hw_min:.2f} px (FWHM) below "
                                                     f"{2 * min_sigma_px * g_hw:.2f}")
                elif hw_maj > p["win_extent"] * g_hw:
                    status, reason = "implausible", (f"width {2 * hw_maj:.1f} px (FWHM) too large"
                                                     f" for the window "
                                                     f"({p['win_extent']:.0f} px)")
                elif not (r2 >= min_r2):
                    status, reason = "implausible", f"poor fit (R^2 {r2:.2f} < {min_r2})"
        if status == "ok":
            region, origin = _ellipse_region(sig, x0 + p["cx"], y0 + p["cy"], qmax,
                                             nearest, lab)
            n_ref = int(region.sum())
            ratio = n_ref / p["area"]
            rec["fit_area_ratio"] = ratio
            if n_ref == 0:
                status, reason = "implausible", "empty refined region"
            elif not (area_ratio[0] <= ratio <= area_ratio[1]):
                status, reason = "implausible", (f"refined/original area ratio {ratio:.2f} "
                                                 f"outside [{area_ratio[0]:.2f}, "
                                                 f"{area_ratio[1]:.2f}]")
            else:
                sl = slices[lab - 1]
                own = out[sl] == lab
                out[sl][own] = 0
                rr, cc = np.nonzero(region)
                out[rr + origin[0], cc + origin[1]] = lab
        rec["fit_status"], rec["fit_reason"] = status, reason
        recs.append(rec)
    fits = pd.DataFrame.from_records(recs)
    fits.attrs["level"] = level
    return out, fits


def _consecutive(labels: np.ndarray) -> bool:
    """True when the ids present are exactly 1..max (checked without a full-size copy)."""
    mx = int(labels.max()) if labels.size else 0
    if mx > labels.size:  # more ids than pixels: gaps for sure (and find_objects would
        return False      # allocate a list as long as the largest id)
    return all(s is not None for s in ndi.find_objects(labels))


def _territories(labels: np.ndarray, band: int = 1024) -> np.ndarray:
    """Label of the nearest labelled pixel (Euclidean) for every pixel.

    Memory: the feature transform (2 x int32 per pixel) and the result; no distance map, and
    the lookup runs in bands of ``band`` rows so no full-size index temporaries are made.
    """
    ind = ndi.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
    nearest = np.empty_like(labels)
    for r0 in range(0, labels.shape[0], band):
        nearest[r0:r0 + band] = labels[ind[0, r0:r0 + band], ind[1, r0:r0 + band]]
    return nearest


def _values(img: np.ndarray, p: dict[str, Any], origin: tuple[int, int] | None = None
            ) -> np.ndarray:
    """Window heights of particle ``p``: from the full image (``origin`` None) or from a crop
    of it equal to ``p["box"]`` (``origin`` = its top-left), smoothed with ``p["s"]`` px."""
    a0, a1, b0, b1 = p["box"]
    crop = img[a0:a1, b0:b1] if origin is None else img
    if p["s"] > 0:
        crop = ndi.gaussian_filter(crop, p["s"], mode="nearest")
    return crop[p["wr"] - a0, p["wc"] - b0]


def _fit_all(prep: list[dict[str, Any]], theta0: np.ndarray, lower: np.ndarray,
             upper: np.ndarray, batch_size: int, max_iter: int, workers: int = 2):
    """Fit every particle of ``prep`` in batches of similar window size (batches run on
    ``workers`` threads: the solver's numpy kernels release the GIL)."""
    npx = np.array([p["z"].size for p in prep])
    order = np.argsort(npx, kind="stable")
    theta = np.full_like(theta0, np.nan)
    cost = np.full(len(prep), np.nan)
    iters = np.zeros(len(prep), dtype=int)
    # batches of about equal work, no larger than batch_size particles and _MAX_SLOTS padded
    # pixels (memory: the Jacobian takes 8 x 8 bytes per slot)
    # (sorted by size: the last particle of a run is the largest; a run also ends when its
    # windows grow by more than 1.5 x, so little of a batch is padding)
    nb = max(int(math.ceil(len(order) / batch_size)), min(workers, len(order)))
    chunks = []
    for c in np.array_split(order, nb):
        start = 0
        while start < c.size:
            stop = start + 1
            while (stop < c.size and (stop + 1 - start) * npx[c[stop]] <= _MAX_SLOTS
                   and npx[c[stop]] <= 1.5 * npx[c[start]] + 16):
                stop += 1
            chunks.append(c[start:stop])
            start = stop

    def run(bi: np.ndarray) -> None:
        P = int(npx[bi].max())
        X = np.zeros((bi.size, P))
        Y = np.zeros_like(X)
        Z = np.zeros_like(X)
        W = np.zeros_like(X)
        for j, i in enumerate(bi):
            n = npx[i]
            X[j, :n], Y[j, :n], Z[j, :n], W[j, :n] = prep[i]["x"], prep[i]["y"], prep[i]["z"], 1.0
        th, c, it = fit_gaussians(X, Y, Z, W, theta0[bi], lower[bi], upper[bi],
                                  max_iter=max_iter)
        theta[bi], cost[bi], iters[bi] = th, c, it

    if workers > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            list(ex.map(run, chunks))
    else:
        for bi in chunks:
            run(bi)
    return theta, cost, iters


def _deconvolved(th: np.ndarray, s: np.ndarray, cxy: np.ndarray,
                 extent: np.ndarray) -> np.ndarray:
    """Bumps of fits ``th`` (n, 7 or 8) made on data smoothed by ``s`` (n,) px, in image px:
    (n, 7) rows hm, x0, y0, Sxx, Sxy, Syy, p of the unsmoothed bump (Sigma of the Gaussian, or
    the cap's base matrix; p NaN for Gaussians); NaN rows where a fit is not usable
    (non-finite, Hm <= 0, width below the smoothing or above ``extent``)."""
    _, hmf, x0, y0, l1, l2, l3 = th[:, :7].T
    pw = th[:, 7] if th.shape[1] == 8 else np.full(len(th), np.nan)
    with np.errstate(all="ignore"):
        a, b, c = l1 * l1, l1 * l2, l2 * l2 + l3 * l3
        det = a * c - b * b
        sxx, sxy, syy = c / det - s * s, -b / det, a / det - s * s
        d2 = sxx * syy - sxy * sxy
        hm = hmf * np.sqrt((1.0 / det) / d2)
        ok = (np.isfinite(th).all(axis=1) & (hmf > 0) & (sxx > 0) & (d2 > 0)
              & (np.sqrt(np.maximum(sxx, syy)) <= extent))
    out = np.column_stack([hm, x0 + cxy[:, 0], y0 + cxy[:, 1], sxx, sxy, syy, pw])
    out[~ok] = np.nan
    return out


def _bumps_at(x: np.ndarray, y: np.ndarray, G: np.ndarray, s: float) -> np.ndarray:
    """Bumps ``G`` (k, 7) smoothed by a Gaussian of sigma ``s`` px, at (x, y): (k, P).
    Caps (finite p; fitted without smoothing, so ``s`` = 0) are evaluated as they are."""
    if len(G) == 0:
        return np.zeros((0, x.size))
    hm, x0, y0, sxx, sxy, syy, pw = (G[:, i:i + 1] for i in range(7))
    if np.isfinite(pw).all():
        det = sxx * syy - sxy * sxy
        dx, dy = x[None, :] - x0, y[None, :] - y0
        u = 1.0 - (syy * dx * dx - 2 * sxy * dx * dy + sxx * dy * dy) / det
        return np.where(u > 0, hm * np.maximum(u, 0.0) ** pw, 0.0)
    a, b, c = sxx + s * s, sxy, syy + s * s
    det = a * c - b * b
    amp = hm * np.sqrt((sxx * syy - b * b) / det)
    dx, dy = x[None, :] - x0, y[None, :] - y0
    return amp * np.exp(-0.5 * (c * dx * dx - 2 * b * dx * dy + a * dy * dy) / det)


def _neighbour_lists(prep: list[dict[str, Any]], G: np.ndarray) -> list[list[int]]:
    """For each particle, the other particles whose fitted bump (5 sigma, plus smoothing)
    reaches into its window's bounding box."""
    n = len(prep)
    wx = np.array([(p["x"].min() + p["cx"], p["x"].max() + p["cx"],
                    p["y"].min() + p["cy"], p["y"].max() + p["cy"]) for p in prep])
    s = np.array([p["s"] for p in prep])
    with np.errstate(invalid="ignore"):
        hx = 5 * np.sqrt(G[:, 3]) + 2 * s + 2
        hy = 5 * np.sqrt(G[:, 5]) + 2 * s + 2
    bx = np.column_stack([G[:, 1] - hx, G[:, 1] + hx, G[:, 2] - hy, G[:, 2] + hy])
    ok = np.isfinite(bx).all(axis=1)
    out: list[list[int]] = []
    for i in range(n):
        hit = ok & (bx[:, 0] <= wx[i, 1]) & (bx[:, 1] >= wx[i, 0]) \
            & (bx[:, 2] <= wx[i, 3]) & (bx[:, 3] >= wx[i, 2])
        hit[i] = False
        out.append(np.nonzero(hit)[0].tolist())
    return out


def _on_bound(v: float, rng: tuple[float, float]) -> bool:
    return bool(abs(v - rng[0]) < 1e-6 or abs(v - rng[1]) < 1e-6)


def _near_window(p: dict[str, Any], x0: float, y0: float) -> bool:
    """True when the pixel nearest (x0, y0) belongs to the fit window."""
    d2 = (p["x"] - x0) ** 2 + (p["y"] - y0) ** 2
    return bool(d2.min() <= 0.5)


def _ellipse_region(sig: np.ndarray, x0: float, y0: float, qmax: float, nearest: np.ndarray,
                    lab: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pixels (crop, origin) with d^T Sigma^-1 d <= qmax inside label ``lab``'s territory."""
    rows, cols = nearest.shape
    hx = math.sqrt(qmax * sig[0, 0]) + 1
    hy = math.sqrt(qmax * sig[1, 1]) + 1
    r0, r1 = max(int(math.floor(y0 - hy)), 0), min(int(math.ceil(y0 + hy)) + 1, rows)
    c0, c1 = max(int(math.floor(x0 - hx)), 0), min(int(math.ceil(x0 + hx)) + 1, cols)
    if r1 <= r0 or c1 <= c0:
        return np.zeros((0, 0), bool), (0, 0)
    dy = np.arange(r0, r1)[:, None] - y0
    dx = np.arange(c0, c1)[None, :] - x0
    det = sig[0, 0] * sig[1, 1] - sig[0, 1] ** 2
    q = (sig[1, 1] * dx * dx - 2 * sig[0, 1] * dx * dy + sig[0, 0] * dy * dy) / det
    terr = nearest[r0:r1, c0:c1] == lab
    region = (q <= qmax) & terr
    if terr.all():  # an ellipse alone is connected
        return region, (r0, c0)
    seed = (int(round(y0)) - r0, int(round(x0)) - c0)
    return _keep_piece(region, seed), (r0, c0)


def _empty_fits(zu: str) -> pd.DataFrame:
    cols = ["label", "fit_status", "fit_reason", "fit_model", f"fit_h0_{zu}", f"fit_hm_{zu}",
            f"fit_level_{zu}", "fit_x0_px", "fit_y0_px", "fit_sigma_x_px", "fit_sigma_y_px",
            "fit_sigma_xy_px2", "fit_sigma_major_px", "fit_sigma_minor_px",
            "fit_base_major_px", "fit_base_minor_px", "fit_p", "fit_fwhm_major_px",
            "fit_fwhm_minor_px", "fit_angle_deg", f"fit_volume_px2{zu}", "fit_r2",
            f"fit_rmse_{zu}", "fit_n_px",
            "fit_area_ratio", "fit_iterations", "fit_smooth_px"]
    return pd.DataFrame(columns=cols)
