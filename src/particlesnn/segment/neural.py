"""Neural segmentation: HeightMap -> Segmentation with the shipped ONNX detector.

Steps: check the data; decide a resampling factor (diameter hint, else a detector-independent
scale-space size estimate) so particles fall in the size band the network was trained on;
resample; normalise (robust percentiles); run the network in overlapping tiles; decode
(markers + watershed, :func:`particlesnn.segment.decode.decode`); bring the labels back to the
input's pixel grid.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.segment import Segmentation
from particlesnn.segment.decode import decode, relabel_with_scores

#: Particle diameters (px) the network handles without resampling; outside, the image is
#: resampled to bring the typical diameter to the nearest end of this band.
DIAMETER_BAND_PX = (8.0, 40.0)
#: Resampling factors are clipped to this range.
SCALE_LIMITS = (0.25, 2.5)
#: Height maps in nm whose protrusions (99.9th percentile minus median) are lower than this
#: are flat: no particles (atomic corrugation and noise are not particles), nm.
MIN_HEIGHT_NM = 0.05
#: Largest resampled image, px (memory guard).
MAX_PIXELS = 8192 * 8192


def estimate_diameter(image: np.ndarray, sigmas: np.ndarray | None = None,
                      max_side: int = 768) -> float | None:
    """Typical bright-blob diameter in px from a scale-space blob response.

    Independent of the detector (so texture found by the network cannot feed back into the
    scale). The scale-normalised Laplacian of Gaussian is approximated by differences of
    Gaussians (OpenCV; large scales on a 2x / 4x reduced image): ``R_s = (G(s) - G(k s)) /
    (k - 1)`` for sigmas ``s`` (px, default 12 from 1 to 32, ratio ``k``). Every pixel keeps
    its best scale; 5x5 maxima of the best response above ``median + 6 MAD`` vote with weight
    ``R - threshold`` for their scale; the diameter is ``2 sqrt(2) s`` at the weighted median
    of the votes. Only the central ``max_side`` square is looked at. Returns None when fewer
    than 3 blobs are found (flat or texture-only images).
    """
    img = np.asarray(image, np.float32)
    if img.ndim != 2 or min(img.shape) < 8:
        return None
    r0 = max(0, (img.shape[0] - max_side) // 2)
    c0 = max(0, (img.shape[1] - max_side) // 2)
    img = np.ascontiguousarray(img[r0:r0 + max_side, c0:c0 + max_side])
    if sigmas is None:
        sigmas = np.geomspace(1.0, 32.0, 12)
    sigmas = np.asarray(sigmas, float)
    k = float(sigmas[1] / sigmas[0])
    shape = img.shape
    best = np.full(shape, -np.inf, np.float32)
    best_s = np.zeros(shape, np.float32)
    level, f = img, 1
    for s in sigmas:
        while s / f > 4.0 and min(level.shape) >= 32:
            level = cv2.resize(level, (level.shape[1] // 2, level.shape[0] // 2),
                               interpolation=cv2.INTER_AREA)
            f *= 2
        a = cv2.GaussianBlur(level, (0, 0), s / f, borderType=cv2.BORDER_REFLECT)
        b = cv2.GaussianBlur(level, (0, 0), s * k / f, borderType=cv2.BORDER_REFLECT)
        r = (a - b) / (k - 1.0)
        if f > 1:
            r = cv2.resize(r, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        better = r > best
        best = np.where(better, r, best)
        best_s[better] = s
    sub = best[::4, ::4]
    med = float(np.median(sub))
    thr = med + 6.0 * (float(np.median(np.abs(sub - med))) + 1e-12)
    peaks = (best >= cv2.dilate(best, np.ones((5, 5), np.uint8))) & (best > thr)
    if peaks.sum() < 3:
        return None
    sv, wv = best_s[peaks], best[peaks] - thr
    order = np.argsort(sv)
    cw = np.cumsum(wv[order])
    s_med = float(sv[order][np.searchsorted(cw, 0.5 * cw[-1])])
    if s_med <= sigmas[0] * 1.001:  # at the edge of the scale range: noise or texture, not blobs
        return None
    return 2.0 * math.sqrt(2.0) * s_med


def choose_scale(shape: tuple[int, int], diameter_px: float | None) -> float:
    """Resampling factor (>1 enlarges) bringing ``diameter_px`` into :data:`DIAMETER_BAND_PX`
    (1.0 when the factor would lie between 0.8 and 1.25)."""
    if diameter_px is None or not np.isfinite(diameter_px) or diameter_px <= 0:
        return 1.0
    lo, hi = DIAMETER_BAND_PX
    target = min(max(diameter_px, lo), hi)
    s = float(np.clip(target / diameter_px, *SCALE_LIMITS))
    if 0.8 < s < 1.25:  # not worth resampling (the network was trained over this range)
        s = 1.0
    while shape[0] * shape[1] * s * s > MAX_PIXELS and s > SCALE_LIMITS[0]:
        s /= 1.25
    return s


def segment_model(hm: HeightMap, *, diameter: float | None = None, model=None,
                  tile: int = 1024, min_height_nm: float = MIN_HEIGHT_NM) -> Segmentation:
    """Find particles in a levelled height map with the neural detector.

    Parameters
    ----------
    hm : HeightMap, levelled, particles bright (orient first with
        :func:`particlesnn.preprocess.orient`). ``hm.pixel_size`` (nm/px) is used to convert a
        diameter hint given in nm.
    diameter : optional typical particle diameter: nm when ``hm.pixel_size`` is known, else
        px. Overrides the automatic size estimate.
    model : a :class:`particlesnn.model.DetectorModel` or a model folder / name; None loads
        the shipped default model.
    tile : tile side for inference, px.
    min_height_nm : for height maps in nm (``hm.unit == "nm"``): when the 99.9th percentile
        is less than this above the median, the map is flat and no particle is returned.

    Returns
    -------
    Segmentation whose labels have the input's shape; ``info`` holds the model name, the
    diameter used (px, and its source: ``"hint"``, ``"log-estimate"`` or ``None``), the
    resampling factor and the decoding thresholds.

    Raises
    ------
    InputError for an empty image, or one with NaN / infinite values.
    """
    from particlesnn.model import DetectorModel, load_model, predict_maps

    data = np.asarray(hm.data)
    src = hm.source
    if data.size == 0 or min(data.shape) < 2:
        raise InputError(src, f"empty image (shape {data.shape})")
    if not np.isfinite(data).all():
        raise InputError(src, "image holds NaN or infinite values")
    if diameter is not None and not diameter > 0:
        raise InputError(src, f"diameter must be positive, got {diameter}")
    if not isinstance(model, DetectorModel):
        model = load_model(model)
    data = data.astype(np.float32)
    rows, cols = data.shape
    if hm.unit == "nm" and min_height_nm > 0:
        p50, p999 = np.percentile(data[::2, ::2], [50, 99.9])
        if p999 - p50 < min_height_nm:
            return Segmentation(np.zeros(data.shape, np.int32), np.zeros(0, np.float32),
                                {"method": "model", "model": model.name, "flat": True,
                                 "protrusion_nm": float(p999 - p50), "scale": 1.0,
                                 "diameter_px": None, "diameter_source": None})
    if diameter is not None:
        d_px = float(diameter) / hm.pixel_size[0] if hm.pixel_size is not None else float(diameter)
        d_src = "hint"
    else:
        d_px = estimate_diameter(data)
        d_src = "log-estimate" if d_px is not None else None
    s = choose_scale(data.shape, d_px)
    if abs(s - 1.0) > 1e-6:
        new = (max(8, round(cols * s)), max(8, round(rows * s)))
        work = cv2.resize(data, new, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    else:
        work = data
    maps = predict_maps(model, work, tile=tile)
    th = model.thresholds
    seg = decode(maps, prob_thresh=th["prob_thresh"], marker_thresh=th["marker_thresh"],
                 min_area=max(1, int(round(th["min_area"] * s * s))) if s > 1 else int(th["min_area"]),
                 min_score=th["min_score"])
    info = {"method": "model", "model": model.name, "diameter_px": d_px, "diameter_source": d_src,
            "scale": s, **seg.info}
    if work is not data:
        labels = cv2.resize(seg.labels, (cols, rows), interpolation=cv2.INTER_NEAREST)
        prob = cv2.resize(maps["prob"], (cols, rows), interpolation=cv2.INTER_LINEAR)
        seg = relabel_with_scores(labels, prob, min_area=1, info=info)
    else:
        seg.info = info
    return seg
