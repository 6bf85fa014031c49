"""Levelling and normalisation of height maps: pure functions on arrays and HeightMaps.

Units: every function keeps the unit of its input (nm for topography) unless it says
otherwise; ``k`` thresholds are in robust standard deviations (1.4826 x MAD).
Masks are bool arrays of the image's shape with True = pixel excluded from a fit (particles,
annotation), never changed by the function.

The default chain :func:`level` is plane -> scan lines (with a first-pass mask of protrusions)
-> spike clipping, like Gwyddion's "plane level", "align rows (median, masked)" and
"remove scars/spikes".
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from particlesnn.heightmap import HeightMap

_MAD = 1.4826
#: Robust statistics (medians, MAD, percentiles, the plane fit) are taken on a regular sub-grid
#: of at most about this many pixels: exact enough (relative error ~0.5 %) and 4x faster than
#: every pixel of a 512 px image.
_SAMPLES = 65536


def _robust_sigma(x: np.ndarray) -> float:
    """1.4826 x median absolute deviation of the finite values of ``x`` (same unit as x)."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return 0.0
    return float(_MAD * np.median(np.abs(x - np.median(x))))


def _plane_fit(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Coefficients (a, b, c) of z ~ a x + b y + c by least squares (x, y in px).

    Normal equations on centred coordinates (well conditioned, and much faster than an SVD).
    """
    x0, y0, z0 = x.mean(), y.mean(), z.mean()
    dx, dy, dz = x - x0, y - y0, z - z0
    def dot(u: np.ndarray, v: np.ndarray) -> float:  # einsum: no BLAS thread start-up
        return float(np.einsum("i,i->", u, v))

    sxx, syy, sxy = dot(dx, dx), dot(dy, dy), dot(dx, dy)
    sxz, syz = dot(dx, dz), dot(dy, dz)
    det = sxx * syy - sxy * sxy
    if det <= 1e-12 * max(sxx * syy, 1e-300):
        coef = np.linalg.lstsq(np.stack([dx, dy], 1), dz, rcond=None)[0]
        a, b = float(coef[0]), float(coef[1])
    else:
        a = (syy * sxz - sxy * syz) / det
        b = (sxx * syz - sxy * sxz) / det
    return np.array([a, b, z0 - a * x0 - b * y0])


def level_plane(z: np.ndarray, mask: np.ndarray | None = None, robust: bool = True,
                k: float = 2.5, n_iter: int = 8, max_samples: int = _SAMPLES) -> np.ndarray:
    """Subtract the least-squares plane a x + b y + c.

    Parameters
    ----------
    z : (H, W) heights (any unit, e.g. nm).
    mask : (H, W) bool, True = leave out of the fit (particles, annotation).
    robust : iterate, each time fitting only the pixels whose residual lies within k sigma
        (robust, 1.4826 x MAD) of the median residual, so tall particles (and deep holes) do
        not tilt the plane.
    k : threshold in robust standard deviations of the residual.
    n_iter : most robust iterations (stops earlier when the inlier set no longer changes).
    max_samples : the fit uses a regular sub-grid of at most about this many pixels (speed);
        an exact plane is recovered exactly from any sub-grid.

    Returns
    -------
    (H, W) float64, z minus the plane (same unit); the plane's offset c is removed too.
    """
    z = np.asarray(z, dtype=np.float64)
    h, w = z.shape
    valid = np.isfinite(z)
    if mask is not None:
        valid &= ~np.asarray(mask, bool)
    if valid.sum() < 3:
        valid = np.isfinite(z)
    stride = max(1, int(np.ceil(np.sqrt(z.size / max_samples))))
    while stride > 1 and valid[::stride, ::stride].sum() < 3:
        stride //= 2
    ys, xs = np.nonzero(valid[::stride, ::stride])
    zz = z[::stride, ::stride][ys, xs]
    x = xs.astype(np.float64) * stride
    y = ys.astype(np.float64) * stride
    use = np.ones(zz.size, bool)
    coef = _plane_fit(x, y, zz)
    if robust:
        for _ in range(n_iter):
            r = zz - (coef[0] * x + coef[1] * y + coef[2])
            med = float(np.median(r[use]))
            sig = _MAD * float(np.median(np.abs(r[use] - med)))
            tol = max(k * sig, 1e-12 * (float(np.abs(r).max()) + 1e-300))
            new = np.abs(r - med) <= tol
            if new.sum() < 3 or np.array_equal(new, use):
                break
            use = new
            coef = _plane_fit(x[use], y[use], zz[use])
    yy = np.arange(h, dtype=np.float64)[:, None]
    xx = np.arange(w, dtype=np.float64)[None, :]
    return z - (coef[0] * xx + coef[1] * yy + coef[2])


def level_lines(z: np.ndarray, method: str = "median", order: int = 1,
                mask: np.ndarray | None = None) -> np.ndarray:
    """Scan-line (row) correction.

    Parameters
    ----------
    z : (H, W) heights; rows are scan lines.
    method : ``"median"`` subtract each row's median (Gwyddion "align rows: median");
        ``"diff"`` shift each row by the median of its difference to the previous row
        (keeps slow structure along y); ``"poly"`` subtract a per-row polynomial of degree
        ``order`` in x (order 0 = mean offset).
    order : polynomial degree for ``"poly"``.
    mask : (H, W) bool, True = pixel left out of the row statistics (particles). A row with no
        unmasked pixel takes the offset interpolated from its neighbours.

    Returns
    -------
    (H, W) float64 in the unit of z, rows aligned; the overall median level is kept.
    """
    z = np.asarray(z, dtype=np.float64)
    ok = np.isfinite(z)
    if mask is not None:
        ok &= ~np.asarray(mask, bool)
    h, w = z.shape
    zm = np.where(ok, z, np.nan)
    have = ok.any(axis=1)
    if method == "median":
        step = max(1, w // 1024)  # speed: every step-th column; exact on a flat background
        off = _row_nanmedian(zm[:, ::step])
        if np.isnan(off).all() and step > 1:
            off = _row_nanmedian(zm)
        off = _interp_missing(off)
        out = z - off[:, None]
        return out + np.nanmedian(off)
    if method == "diff":
        both = ok[1:] & ok[:-1]
        d = np.where(both, z[1:] - z[:-1], np.nan)
        step = np.nan_to_num(_row_nanmedian(d), nan=0.0)
        off = np.r_[0.0, np.cumsum(step)]
        return z - (off - np.median(off))[:, None]
    if method == "poly":
        x = np.linspace(-1.0, 1.0, w)
        fit = np.full((h, w), np.nan)
        for i in np.flatnonzero(have):
            m = ok[i]
            deg = min(order, int(m.sum()) - 1)
            c = np.polyfit(x[m], z[i, m], deg)
            fit[i] = np.polyval(c, x)
        if not have.all():
            rows = np.flatnonzero(have)
            miss = np.flatnonzero(~have)
            for j in range(w):
                fit[miss, j] = np.interp(miss, rows, fit[rows, j]) if rows.size else 0.0
        return z - fit + np.nanmedian(fit)
    raise ValueError(f"unknown line method {method!r} (median, diff, poly)")


def _row_nanmedian(a: np.ndarray) -> np.ndarray:
    """Median of the finite values of each row (NaN for a row without any), by one sort."""
    srt = np.sort(a, axis=1)  # NaN sorts last
    n = np.isfinite(a).sum(axis=1)
    rows = np.arange(a.shape[0])
    lo = np.maximum((n - 1) // 2, 0)
    hi = np.maximum(n // 2, 0)
    med = 0.5 * (srt[rows, lo] + srt[rows, np.minimum(hi, a.shape[1] - 1)])
    med[n == 0] = np.nan
    return med


def _interp_missing(off: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(off)
    if not bad.any():
        return off
    if bad.all():
        return np.zeros_like(off)
    idx = np.arange(off.size)
    off = off.copy()
    off[bad] = np.interp(idx[bad], idx[~bad], off[~bad])
    return off


def clip_spikes(z: np.ndarray, k: float = 6.0, c: float = 2.0,
                return_mask: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Remove single-pixel spikes and one-line outlier streaks (scars).

    Noise sigma = 1.4826 x MAD of ``z - median3x3(z)`` (unit of z). A pixel is

    * a spike when it stands above the maximum (or below the minimum) of its 8 neighbours by
      more than ``k`` sigma and by more than ``c`` times the neighbours' own range; it takes the
      3 x 3 median;
    * a streak (scar) pixel when it differs from both pixels above and below, in the same
      direction, by more than ``k`` sigma, the vertical curvature of the lines above and below
      has the opposite sign (at least a quarter as strong: a 1-line feature, not the smooth
      crest of a particle), and at least 3 such pixels follow each other along the line; it
      takes the mean of the pixels above and below.

    The top of a real particle (a few px wide or more) is curved smoothly in x and y and higher
    than its neighbours only by about their own range, so it is left alone.
    Detection runs in float32 on ``z - median(z)`` (speed); untouched pixels keep their exact
    values.

    Returns
    -------
    z cleaned (float64, unit of z); with ``return_mask``, (z cleaned, bool mask of the
    replaced pixels).
    """
    import cv2

    z = np.asarray(z, dtype=np.float64)
    fin = np.isfinite(z)
    base = float(np.median(z[fin][:: max(1, int(fin.sum()) // _SAMPLES)])) if fin.any() else 0.0
    zf = np.where(fin, z - base, 0.0).astype(np.float32)
    med = cv2.medianBlur(zf, 3)
    step = max(1, int(np.sqrt(zf.size / _SAMPLES)))
    sigma = _robust_sigma((zf - med)[::step, ::step].astype(np.float64))
    scale = float(zf.max() - zf.min()) if zf.size else 0.0
    sigma = max(sigma, 1e-6 * scale, 1e-30)
    ring = np.ones((3, 3), np.uint8)
    ring[1, 1] = 0
    nmax = cv2.dilate(zf, ring, borderType=cv2.BORDER_REFLECT)
    nmin = cv2.erode(zf, ring, borderType=cv2.BORDER_REFLECT)
    nrange = nmax - nmin
    ks = np.float32(k * sigma)
    up_ex = zf - nmax
    lo_ex = nmin - zf
    spike = ((up_ex > ks) & (up_ex > c * nrange)) | ((lo_ex > ks) & (lo_ex > c * nrange))
    del up_ex, lo_ex, nrange, nmax, nmin
    pad = cv2.copyMakeBorder(zf, 2, 2, 0, 0, cv2.BORDER_REFLECT)
    above, below = pad[1:-3], pad[3:-1]
    da, db = zf - above, zf - below
    vmean = 0.5 * (above + below)
    d2 = zf - vmean  # vertical curvature at the line
    d2_up = above - 0.5 * (pad[:-4] + zf)  # ... at the line above
    d2_dn = below - 0.5 * (zf + pad[4:])  # ... and below
    cand = (((da > ks) & (db > ks)) | ((da < -ks) & (db < -ks))) & \
        (d2 * d2_up < -0.0625 * d2 * d2) & (d2 * d2_dn < -0.0625 * d2 * d2) & ~spike
    # a scar runs along the line: keep runs of 3 px or more
    streak = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_OPEN,
                              np.ones((1, 3), np.uint8)).astype(bool)
    out = z.copy()
    out[spike] = med[spike].astype(np.float64) + base
    out[streak] = vmean[streak].astype(np.float64) + base
    out[~fin] = np.nan
    return (out, spike | streak) if return_mask else out


def fill_invalid(z: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Fill NaN/inf pixels (and ``mask`` True pixels) with the nearest valid value.

    Returns (H, W) float64 in the unit of z. ValueError when no pixel is valid.
    """
    z = np.asarray(z, dtype=np.float64)
    bad = ~np.isfinite(z)
    if mask is not None:
        bad |= np.asarray(mask, bool)
    if not bad.any():
        return z.copy()
    if bad.all():
        raise ValueError("no valid pixel to fill from")
    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return z[tuple(idx)]


def normalize_8bit(z: np.ndarray) -> np.ndarray:
    """The paper's I = 255 (H - Hmin) / (Hmax - Hmin), rounded, as uint8.

    NaNs become 0; a flat image gives all zeros.
    """
    z = np.asarray(z, dtype=np.float64)
    fin = np.isfinite(z)
    if not fin.any():
        return np.zeros(z.shape, np.uint8)
    lo, hi = float(z[fin].min()), float(z[fin].max())
    if hi <= lo:
        return np.zeros(z.shape, np.uint8)
    out = np.round(255.0 * (np.where(fin, z, lo) - lo) / (hi - lo))
    return out.clip(0, 255).astype(np.uint8)


def normalize(z: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> np.ndarray:
    """Robust normalisation to float32 in [0, 1]: percentile ``lo`` -> 0, ``hi`` -> 1, clipped.

    ``lo``/``hi`` are percentiles (0-100). A flat image gives zeros; NaNs become 0.
    """
    z = np.asarray(z, dtype=np.float64)
    fin = np.isfinite(z)
    if not fin.any():
        return np.zeros(z.shape, np.float32)
    a, b = np.percentile(z[fin], [lo, hi])
    if b <= a:
        a, b = float(z[fin].min()), float(z[fin].max())
        if b <= a:
            return np.zeros(z.shape, np.float32)
    return ((np.where(fin, z, a) - a) / (b - a)).clip(0.0, 1.0).astype(np.float32)


def _tail_score(v: np.ndarray) -> float:
    """Mean log-ratio of upper to lower tail lengths around the histogram mode (see
    :func:`polarity_score`)."""
    if v.size > 500_000:
        v = v[:: v.size // 250_000]
    if v.size < 4:
        return 0.0
    p_lo, p_hi = np.percentile(v, [0.5, 99.5])
    if p_hi <= p_lo:
        return 0.0
    hist, edges = np.histogram(v, bins=256, range=(p_lo, p_hi))
    hist = ndimage.gaussian_filter1d(hist.astype(np.float64), 2.0)
    mode = 0.5 * (edges[np.argmax(hist)] + edges[np.argmax(hist) + 1])
    qs = np.array([90, 95, 98, 99, 99.5])
    pq = np.percentile(v, np.r_[qs, 100 - qs])
    up = pq[: qs.size] - mode
    dn = mode - pq[qs.size:]
    eps = 1e-12 * (p_hi - p_lo)
    return float(np.mean(np.log((np.maximum(up, 0) + eps) / (np.maximum(dn, 0) + eps))))


def _median_background(z: np.ndarray, frac: float = 0.25) -> np.ndarray:
    """Slow background: median filter over ``frac`` of the larger side, computed on a copy
    shrunk to at most ~64 px a side and interpolated back (unit of z)."""
    import cv2

    h, w = z.shape
    f = max(1, int(max(h, w) / 64))
    small = cv2.resize(z.astype(np.float32), (max(1, w // f), max(1, h // f)),
                       interpolation=cv2.INTER_AREA)
    k = max(3, int(max(small.shape) * frac) | 1)
    bg = ndimage.median_filter(small, size=k, mode="reflect")
    return cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float64)


#: Height maps in nm: the raw tail score (:func:`polarity_parts`) that particle-free STM maps
#: reach: the 95th percentile of |raw| over 60 synthetic particle-free STM maps (terraces,
#: defects, pits, noise, scan-line artefacts; ``negatives`` preset, seeds 8,800,000+). Below it
#: the raw score may not override the background-filtered one (see :func:`polarity_score`).
POLARITY_NOISE_RAW = 1.07


def polarity_parts(z: np.ndarray) -> tuple[float, float | None]:
    """The two tail scores behind :func:`polarity_score`: (raw, background-filtered); the
    filtered one is None for maps under 32 px a side."""
    z = np.asarray(z, dtype=np.float64)
    step = max(1, int(np.ceil(np.sqrt(z.size / _SAMPLES))))  # a sub-grid is plenty (speed)
    z = z[::step, ::step]
    fin = np.isfinite(z)
    if not fin.any():
        return 0.0, None
    raw = _tail_score(z[fin])
    if min(z.shape) < 32:
        return raw, None
    zf = np.where(fin, z, np.median(z[fin]))
    return raw, _tail_score((zf - _median_background(zf))[fin])


def polarity_score(z: np.ndarray, height: bool = False) -> float:
    """Signed tail asymmetry of a levelled map around its background mode (dimensionless).

    The mode of a smoothed histogram stands for the background; for each q in (90, 95, 98, 99,
    99.5) the log-ratio log((P_q - mode) / (mode - P_(100-q))) is taken and the results
    averaged. Positive = the distribution reaches farther above the background (bright
    particles). A single bright artefact moves none of these percentiles.

    The score is taken on the map minus its slow background (median filter over a quarter of
    the larger side; maps of 32 px or more a side; large maps are read on a regular sub-grid of
    at most 256 x 256 px), since leftover shading can outweigh small features: the pits of
    ``nid/image.nid`` score +0.22 raw, -0.48 after (levelled). When the score of the
    raw map has the other sign and is more than 3 times larger, the raw score is returned: on
    a close-packed layer (80 % covered) the background filter turns the gaps between particles
    into the features (raw +10.5, filtered -1.8). For a height map (``height``) the raw score
    must also exceed what particle-free STM maps reach (:data:`POLARITY_NOISE_RAW`): on a
    terraced map with flat islands the terraces gave raw -0.58 against filtered +0.11, and the
    islands were taken as background.
    """
    raw, high = polarity_parts(z)
    if high is None:
        return raw
    if raw * high < 0 and abs(raw) > 3 * abs(high) and (not height or abs(raw) >= POLARITY_NOISE_RAW):
        return raw
    return high


def detect_polarity(z: np.ndarray, height: bool = False) -> str:
    """``"bright"`` when particles stand out above the background (STM/AFM, HAADF), ``"dark"``
    when below it (bright-field TEM). Pass a levelled map; ``height``: it is a height map in nm
    (see :func:`polarity_score`). Ties go to ``"bright"``.
    """
    return "bright" if polarity_score(z, height) >= 0 else "dark"


#: A plain image (not a height map in nm) whose :func:`polarity_score` is smaller than this in
#: magnitude gets its "auto" polarity checked (:func:`polarity_call`): on synthetic
#: bright-field TEM, SEM and cell images every wrong call of the statistic scored under 0.4 but
#: one (0.73, an SEM image where the detector finds 1 of 11 particles the right way and none the
#: other); docs/benchmarks.md, "Polarity: the detector checks a doubtful call".
POLARITY_CHECK_PLAIN = 0.5


def polarity_call(hm: HeightMap) -> tuple[str, bool]:
    """The tail statistic's "auto" call on a levelled map (:func:`detect_polarity`, as a height
    map when ``hm.unit`` is nm) and whether it deserves a second opinion (the detector run both
    ways, :func:`particlesnn.segment.segment_oriented`; the contours given,
    ``pipeline.prepare_for_labels``): a height map called dark (particles protrude in
    topography, so a dark call is suspect whatever its score), or a plain image whose score is
    under :data:`POLARITY_CHECK_PLAIN` in magnitude. Returns (polarity, check)."""
    height = hm.unit == "nm"
    score = polarity_score(hm.data, height=height)
    used = "bright" if score >= 0 else "dark"
    return used, (score < 0 if height else abs(score) < POLARITY_CHECK_PLAIN)


def contours_polarity(z: np.ndarray, labels: np.ndarray, ring: int = 3) -> str | None:
    """The way up in which given contours enclose particles: ``"bright"`` when the median of
    ``z`` inside them (``labels`` > 0) is at least that of a ``ring`` px band around them, else
    ``"dark"``; None without contours or band. For contours drawn elsewhere (``measure``:
    ``pipeline.prepare_for_labels``; user annotations for training: contours of pits keep a
    map dark)."""
    import cv2

    inside = np.asarray(labels) > 0
    if not inside.any():
        return None
    k = 2 * ring + 1
    around = cv2.dilate(inside.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool) & ~inside
    if not around.any():
        return None
    z = np.asarray(z)
    return "bright" if np.median(z[inside]) >= np.median(z[around]) else "dark"


def mirror(z: np.ndarray) -> np.ndarray:
    """``max + min - z`` (float64): the map upside down in the same range; its own inverse."""
    z = np.asarray(z, dtype=np.float64)
    return np.nanmax(z) + np.nanmin(z) - z


def orient(hm: HeightMap, polarity: str = "auto") -> tuple[HeightMap, str]:
    """A map in which particles are bright, and the polarity used.

    ``polarity``: ``"auto"`` (:func:`detect_polarity` on ``hm.data``, as a height map when
    ``hm.unit`` is nm), ``"bright"`` (returned unchanged) or ``"dark"`` (mirrored:
    ``max + min - z``, same range and unit).
    ``metadata["polarity"]`` records the choice.
    """
    if polarity not in ("auto", "bright", "dark"):
        raise ValueError(f"polarity must be auto, bright or dark, not {polarity!r}")
    used = detect_polarity(hm.data, height=hm.unit == "nm") if polarity == "auto" else polarity
    if used == "dark":
        out = hm.with_data(mirror(hm.data))
    else:
        out = hm.with_data(np.array(hm.data))
    out.metadata["polarity"] = used
    return out, used


def protrusion_mask(z: np.ndarray, k: float = 3.0, grow: int = 2) -> np.ndarray:
    """First-pass mask of features: |z - median| > k robust sigma, dilated by ``grow`` px.

    Both tails are masked so bright particles and dark pits alike are left out of fits.
    """
    z = np.asarray(z, dtype=np.float64)
    step = max(1, int(np.sqrt(z.size / _SAMPLES)))
    sub = z[::step, ::step]
    med = float(np.nanmedian(sub))
    sig = _robust_sigma(sub)
    if sig <= 0:
        m = np.abs(z - med) > 0
    else:
        m = np.abs(z - med) > k * sig
    if grow > 0 and m.any():
        import cv2

        m = cv2.dilate(m.astype(np.uint8), np.ones((2 * grow + 1,) * 2, np.uint8)).astype(bool)
    return m


def level(hm: HeightMap, plane: bool = True, lines: str | None = "auto", clip: bool = True,
          k_mask: float = 3.0, k_spike: float = 6.0, mask: np.ndarray | None = None) -> HeightMap:
    """The default levelling chain used by the analysis.

    1. robust plane removal (:func:`level_plane`);
    2. scan-line correction (:func:`level_lines` with ``lines`` = ``"median"``, ``"diff"``,
       ``"poly"`` or None; ``"auto"`` = ``"median"`` for scans read from instrument files and
       None for plain images (``metadata["format"] == "image"``: TEM/SEM/light micrographs have
       no scan lines, and row offsets there leave dark bands) leaving out a first-pass mask of
       protrusions (:func:`protrusion_mask` of a quick unmasked line correction) and ``mask`` /
       ``hm.metadata["mask"]`` (annotation);
    3. spike and scar clipping (:func:`clip_spikes`, threshold ``k_spike`` sigma).

    The result is shifted so that the background (median outside the protrusion mask) is 0.
    Units are kept (nm for topography). ``metadata["levelling"]`` records the steps and the
    number of clipped pixels.
    """
    if lines == "auto":
        lines = None if hm.metadata.get("format") == "image" else "median"
    z = np.asarray(hm.data, dtype=np.float64)
    z = fill_invalid(z) if not np.isfinite(z).all() else z
    excl = None
    for m in (mask, hm.metadata.get("mask")):
        if m is not None and np.shape(m) == z.shape:
            excl = np.asarray(m, bool) if excl is None else (excl | np.asarray(m, bool))
    steps: list[str] = []
    if plane:
        z = level_plane(z, mask=excl)
        steps.append("plane")
    # first-pass mask of features, found after a quick unmasked line correction (raw line
    # offsets would otherwise mask whole lines)
    feat = protrusion_mask(level_lines(z, method=lines, mask=excl) if lines else z, k=k_mask)
    both = feat if excl is None else (feat | excl)
    if lines:
        z = level_lines(z, method=lines, mask=both)
        steps.append(f"lines:{lines}")
        feat = protrusion_mask(z, k=k_mask)
        both = feat if excl is None else (feat | excl)
    n_clip = 0
    if clip:
        z, clipped = clip_spikes(z, k=k_spike, return_mask=True)
        n_clip = int(clipped.sum())
        steps.append("clip")
    st = max(1, int(np.sqrt(z.size / _SAMPLES)))
    zs, bg = z[::st, ::st], ~both[::st, ::st]
    z = z - (float(np.median(zs[bg])) if bg.any() else float(np.median(zs)))
    out = hm.with_data(z)
    info: dict[str, Any] = {"steps": steps, "clipped_pixels": n_clip}
    out.metadata["levelling"] = info
    return out
