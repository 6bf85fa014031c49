"""Neural segmentation: HeightMap -> Segmentation with the shipped ONNX detector.

Steps: check the data; run the network on the image resampled by several factors (1, 1/2,
1/4, ...: particles of about 4-40 px are seen at full size, larger ones on the shrunk copies,
and when the particles found are small, on a copy enlarged by 2; a diameter hint replaces this
by one factor), each copy with its slow background removed
(a Gaussian high-pass, :data:`PROFILES`) and inferred in overlapping tiles; decode each
(markers + watershed, :func:`particlesnn.segment.decode.decode`); merge the particles of all
factors on the input's pixel grid, best score first
(:func:`particlesnn.segment.decode.merge_instances`).

Two profiles: ``"standard"`` (mild background removal; STM/AFM height maps, cells, clean
images) and ``"textured"`` (a strong band-pass for small particles on a bright, lumpy support
such as HAADF-STEM of supported catalysts). ``profile="auto"`` runs the standard pass and
switches to the textured one when the network is unsure of what it found there (mean particle
score below the model's ``textured_below_mean_score``, calibrated on the training parts of the
real sets by :mod:`particlesnn.training.calibrate`); height maps in nm stay on the standard
profile (the textured one outlined substrate grains on rough STM maps and helped on none we
measured; docs/model.md), unless it is asked for. Each profile decodes with its own
thresholds (:func:`profile_thresholds`). Particles lower than their surroundings (pits) are
dropped; on height maps, double-tip ghosts too (:mod:`particlesnn.segment.ghosts`).

Height maps in nm run on the model's height-map model when it names one (the shipped default
names the shipped ``height`` model: as wide as the default, a quarter instead of half of its
training crops real, better on STM-like maps; see docs/model.md). The textured profile runs on
the model's textured model when it names one (the shipped default names ``textured``: half as
wide, a quarter of its crops real, better on HAADF-STEM than the default). ``info["model"]`` names the
model whose particles are returned.
"""
from __future__ import annotations


import cv2
import numpy as np

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.segment import Segmentation, keep_labels
from particlesnn.segment.decode import decode, merge_instances
from particlesnn.segment.ghosts import drop_ghosts

#: Particle diameters (px) the network handles without resampling; outside, the image is
#: resampled to bring the typical diameter to the nearest end of this band.
DIAMETER_BAND_PX = (8.0, 40.0)
#: Resampling factors are clipped to this range.
SCALE_LIMITS = (0.25, 2.5)
#: Height maps in nm whose protrusions (99.9th percentile minus median) are lower than this
#: are flat: no particles (atomic corrugation and noise are not particles), nm.
MIN_HEIGHT_NM = 0.05
#: Tile side of the inference (px, context included; :func:`particlesnn.model.predict_maps`):
#: images up to ``TILE_SMALL_IMAGE`` px a side use ``TILE[0]`` (so that a 512 px image enlarged by
#: 2 runs whole), larger ones ``TILE[1]``: onnxruntime keeps buffers for the largest tile, and
#: 768 px tiles took the peak RSS of a 2048 px image from 1.6 to 1.4 GB for ~7 % more time
#: (benchmarks/bench_detect.py, docs/model.md).
TILE = (1024, 768)
TILE_SMALL_IMAGE = 1024
#: Largest resampled image, px (memory guard).
MAX_PIXELS = 8192 * 8192
#: Resampled copies whose short side would be below this (px) are skipped.
MIN_WORK_SIDE = 48
#: Per profile: resampling factors of the multi-scale pass (< 1 shrinks the image) and the
#: background removal (the copy minus its Gaussian blur of ``background_sigma``, px of the
#: copy the network sees). The strong band-pass of "textured" keeps particles up to about
#: 12 px per copy, hence its finer ladder of factors (particles up to ~190 px at 1/16).
PROFILES = {
    "standard": {"scales": (1.0, 0.5, 0.25), "background_sigma": 20.0},
    "textured": {"scales": (1.0, 0.5, 0.25, 0.125, 0.0625), "background_sigma": 3.0},
}
#: ``profile="auto"`` switches to "textured" when the standard pass found at least this many
#: particles and the mean score of its candidates (before the ``min_score`` cut) is below the
#: model's ``textured_below_mean_score``.
SWITCH_MIN_COUNT = 3
SWITCH_MEAN_SCORE = 0.92
#: Small particles: when the first pass of the standard profile found at least
#: ``SWITCH_MIN_COUNT`` particles of median diameter below ``UPSCALE_BELOW_PX`` (px), the image
#: is also inferred enlarged by ``UPSCALE_FACTOR`` (as the paper's 3x upscaling did) and those
#: particles merged in: crowded 5-8 px particles go from recall 0.75-0.90 to 0.92-0.99 on the
#: synthetic suite. Skipped for images of more than ``UPSCALE_MAX_PIXELS`` px (time, memory),
#: and then said in ``info["warnings"]``.
UPSCALE_BELOW_PX = 12.0
UPSCALE_FACTOR = 2.0
UPSCALE_MAX_PIXELS = 2048 * 2048


def default_tile(shape: tuple[int, int]) -> int:
    """The inference tile side (px) for an image of ``shape`` (rows, cols): :data:`TILE`."""
    return TILE[0] if max(shape) <= TILE_SMALL_IMAGE else TILE[1]


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


def background_removed(img: np.ndarray, sigma: float) -> np.ndarray:
    """``img`` minus its Gaussian blur of ``sigma`` px (edges reflected): the slow background
    removal of the profiles (:data:`PROFILES`), applied to each copy before the network and to
    training crops alike (:mod:`particlesnn.training.data`). ``sigma`` 0: ``img`` unchanged."""
    if sigma <= 0:
        return img
    return img - cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def copy_maps(model, data: np.ndarray, factor: float, sigma: float, tile: int = 1024) -> dict:
    """The network's maps of ``data`` resampled by ``factor`` (< 1 shrinks: area average;
    > 1 enlarges: bicubic), with its slow background removed: the copy minus its Gaussian blur
    of ``sigma`` px of the copy (0 = none). Maps on the copy's grid, also for a model whose
    maps are finer than its input (their block means, :func:`~particlesnn.model.predict_maps`)."""
    from particlesnn.model import predict_maps

    rows, cols = data.shape
    if factor != 1.0:
        size = (max(8, round(cols * factor)), max(8, round(rows * factor)))
        work = cv2.resize(data, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    else:
        work = data
    return predict_maps(model, background_removed(work, sigma), tile=tile, coarse=True)


class MapsOf:
    """The network's maps of one image per resampling factor: ``get(f)`` = :func:`copy_maps`
    on the copy's grid. The maps of the factor asked for last are kept (asked again, they are
    not computed again); those of earlier factors are let go, since each copy is decoded before
    the next is inferred: the four copies' maps of a 2048 px image held together took ~70 MB
    of its peak memory. ``keep_all`` keeps every factor's maps (calibration decodes the same
    maps with many thresholds).

    A model whose maps are finer than its input (``out_scale`` > 1) gives its maps of every
    copy on the copy's grid (the fine maps' ``out_scale`` x ``out_scale`` block means, per
    tile, :func:`~particlesnn.model.predict_maps`), and ``enlarged_copy`` is False for it:
    :func:`run_profile` gives it no enlarged copy (docs/model.md, 2026-12-07: trained on
    targets twice as fine, its maps of the image find about as many small particles, the
    suite's ``stm-tiny`` recall 0.712 against 0.720 with the enlarged copy, at a third of the
    time), unless its ``config.json`` asks for one (``"enlarged_copy": true``).
    """

    def __init__(self, model, data: np.ndarray, sigma: float, tile: int = 1024,
                 keep_all: bool = False):
        self.model, self.data, self.sigma, self.tile = model, data, sigma, tile
        self.keep_all = keep_all
        config = getattr(model, "config", None) or {}
        self.enlarged_copy = (int(getattr(model, "out_scale", 1)) == 1
                              or config.get("enlarged_copy") is True)
        self._maps: dict[float, dict] = {}

    def __call__(self, f: float) -> dict:
        if f not in self._maps:
            if not self.keep_all:
                self._maps.clear()  # before the next copy's maps exist, not after
            self._maps[f] = copy_maps(self.model, self.data, f, self.sigma, self.tile)
        return self._maps[f]


def profile_maps(model, data: np.ndarray, factors, sigma: float, tile: int = 1024) -> list:
    """The maps of each factor on the copy's grid (:class:`MapsOf`): ``[(maps, factor), ...]``."""
    get = MapsOf(model, data, sigma, tile, keep_all=True)
    return [(get(f), f) for f in factors]


def profile_thresholds(thresholds: dict, name: str, height: bool = False) -> dict:
    """The decoding thresholds of profile ``name``: the model's top-level values, overridden by
    its ``thresholds[name]`` entry when the model has one (calibrated per profile), and for a
    height map (``height``) by ``thresholds[name + "-height"]`` (calibrated on STM height maps;
    the top-level values are a compromise with light-microscope images)."""
    out = {k: v for k, v in thresholds.items() if not isinstance(v, dict)}
    out.update(thresholds.get(name) or {})
    if height:
        out.update(thresholds.get(f"{name}-height") or {})
    return out


def decode_profile(maps_list: list, thresholds: dict) -> list:
    """Decode each ``(maps, factor)`` of :func:`profile_maps` with the decoding
    ``thresholds`` (``prob_thresh``, ``marker_thresh``, ``min_area`` px of the copy,
    ``min_score``, optional ``peak_h``); returns the candidates of :func:`~particlesnn.segment.decode.merge_instances`."""
    out = []
    for maps, f in maps_list:
        seg = decode(maps, prob_thresh=thresholds["prob_thresh"],
                     marker_thresh=thresholds["marker_thresh"],
                     min_area=int(thresholds["min_area"]) * (max(1, round(f * f)) if f > 1 else 1),
                     min_score=thresholds["min_score"],
                     peak_h=float(thresholds.get("peak_h", 0.0)))
        out.append((seg.labels, seg.scores, f))
    return out


def _small_particles(seg: Segmentation, shape: tuple[int, int]) -> str | None:
    """Why the image should also be inferred enlarged (:data:`UPSCALE_BELOW_PX`), or None."""
    if seg.count < SWITCH_MIN_COUNT:
        return None
    area = np.bincount(seg.labels.ravel())[1:]
    d = float(np.median(2.0 * np.sqrt(area[area > 0] / np.pi)))
    if d >= UPSCALE_BELOW_PX:
        return None
    return f"median particle diameter {d:.1f} px < {UPSCALE_BELOW_PX:g} px"


def run_profile(get_maps, name: str, factors, thresholds: dict, shape: tuple[int, int],
                upscale: bool = True, height: bool = False) -> tuple[Segmentation, list, str | None]:
    """One profile's pass: decode the maps of each factor (``get_maps(factor)``, see
    :func:`copy_maps`) with the profile's thresholds (:func:`profile_thresholds`; ``height``
    for height maps), merge; for "standard" with ``upscale``,
    add the enlarged copy when the particles are small (:data:`UPSCALE_BELOW_PX`).

    Returns (segmentation, factors used, why the enlarged copy was added or None). The
    segmentation's ``info["certainty"]`` is the mean score of every candidate of the first
    factors *before* the ``min_score`` cut (what the profile switch reads: texture specks the
    network is unsure of pull it down even when the cut removes them).
    """
    th = profile_thresholds(thresholds, name, height)
    # one copy at a time: its maps are decoded (and let go) before the next copy's are made
    raw = [r for f in factors for r in decode_profile([(get_maps(f), f)], {**th, "min_score": 0.0})]
    every = np.concatenate([np.asarray(sc, float) for _, sc, _ in raw]) if raw else np.zeros(0)
    certainty = float(every.mean()) if every.size else float("nan")
    cands = [_above(lab, sc, f, th["min_score"]) for lab, sc, f in raw]
    seg = merge_instances(cands, shape)
    used, why = list(factors), None
    skipped = None
    if upscale and name == "standard" and getattr(get_maps, "enlarged_copy", True):
        why = _small_particles(seg, shape)
        if why is not None and shape[0] * shape[1] > UPSCALE_MAX_PIXELS:
            skipped, why = (f"small particles ({why}) on an image over {UPSCALE_MAX_PIXELS / 1e6:.1f} "
                            "Mpx: not inferred enlarged (time, memory), so the faintest and "
                            "smallest may be missed; give the typical diameter (--diameter, or "
                            "the upload form's 'Typical diameter'), or analyse crops"), None
        if why is not None:
            cands += decode_profile([(get_maps(UPSCALE_FACTOR), UPSCALE_FACTOR)], th)
            seg = merge_instances(cands, shape)
            used = [UPSCALE_FACTOR, *used]
    seg.info["certainty"] = certainty
    if skipped:
        seg.info["warnings"] = [skipped]
    return seg, used, why


def _above(labels: np.ndarray, scores: np.ndarray, factor: float, min_score: float) -> tuple:
    """A candidate ``(labels, scores, factor)`` without the particles scored under ``min_score``."""
    keep = np.r_[False, np.asarray(scores) >= min_score]
    if keep[1:].all():
        return labels, scores, factor
    return keep_labels(labels, keep), np.asarray(scores)[keep[1:]], factor


def profile_model(model, profile: str, height: bool = False):
    """The model whose network runs ``profile`` (a :class:`~particlesnn.model.DetectorModel`):
    for a height map in nm (``height``) the model's height-map model when it names one, and for
    the textured profile that model's textured model when it names one."""
    m = model.for_heightmaps() if height else model
    return m.for_textured() if profile == "textured" else m


def segment_model(hm: HeightMap, *, diameter: float | None = None, model=None,
                  tile: int | None = None, min_height_nm: float = MIN_HEIGHT_NM,
                  profile: str = "auto", ghosts: bool = True) -> Segmentation:
    """Find particles in a levelled height map with the neural detector.

    Parameters
    ----------
    hm : HeightMap, levelled, particles bright (orient first with
        :func:`particlesnn.preprocess.orient`). ``hm.pixel_size`` (nm/px) is used to convert a
        diameter hint given in nm.
    diameter : optional typical particle diameter: nm when ``hm.pixel_size`` is known, else
        px. The image is then resampled once, by :func:`choose_scale`, instead of the
        multi-scale pass.
    model : a :class:`particlesnn.model.DetectorModel` or a model folder / name; None loads
        the shipped default model. Height maps in nm run on the model's height-map model
        when it names one (:meth:`~particlesnn.model.DetectorModel.for_heightmaps`: the
        shipped default hands them to the shipped ``height`` model), and the textured
        profile runs on its textured model when it names one
        (:meth:`~particlesnn.model.DetectorModel.for_textured`); ``info["model"]`` says which
        model's particles are returned.
    tile : tile side for inference, px; None: :data:`TILE` by the image's size.
    min_height_nm : for height maps in nm (``hm.unit == "nm"``): when the 99.9th percentile
        is less than this above the median, the map is flat and no particle is returned.
    profile : "auto", "standard" or "textured" (see the module's docstring).
    ghosts : for height maps in nm, drop double-tip ghosts
        (:func:`particlesnn.segment.ghosts.drop_ghosts`; reported in ``info["double_tip"]``
        and ``info["warnings"]``).

    Returns
    -------
    Segmentation whose labels have the input's shape; ``info`` holds the model name, the
    profile used and why (``profile_reason``), the resampling factors, the diameter hint (px)
    and the decoding thresholds.

    Raises
    ------
    InputError for an empty image, one with NaN / infinite values, or an unknown profile.
    """
    from particlesnn.model import DetectorModel, load_model

    data = np.asarray(hm.data)
    src = hm.source
    if data.size == 0 or min(data.shape) < 2:
        raise InputError(src, f"empty image (shape {data.shape})")
    if not np.isfinite(data).all():
        raise InputError(src, "image holds NaN or infinite values")
    if diameter is not None and not diameter > 0:
        raise InputError(src, f"diameter must be positive, got {diameter}")
    if profile not in ("auto", *PROFILES):
        raise InputError(src, f"unknown detector profile {profile!r} "
                              f"(use auto, {', '.join(PROFILES)})")
    if not isinstance(model, DetectorModel):
        model = load_model(model)
    height = hm.unit == "nm"
    if height:
        model = model.for_heightmaps()
    data = data.astype(np.float32)
    rows, cols = data.shape
    if tile is None:
        tile = default_tile(data.shape)
    base = {"method": "model", "model": model.name}
    if hm.unit == "nm" and min_height_nm > 0:
        p50, p999 = np.percentile(data[::2, ::2], [50, 99.9])
        if p999 - p50 < min_height_nm:
            return Segmentation(np.zeros(data.shape, np.int32), np.zeros(0, np.float32),
                                {**base, "flat": True, "protrusion_nm": float(p999 - p50),
                                 "profile": None, "scales": [], "diameter_px": None})
    d_px = None
    if diameter is not None:
        d_px = float(diameter) / hm.pixel_size[0] if hm.pixel_size is not None else float(diameter)

    def factors(name: str) -> list[float]:
        if d_px is not None:
            return [choose_scale(data.shape, d_px)]
        return [f for f in PROFILES[name]["scales"] if f == 1.0 or min(rows, cols) * f >= MIN_WORK_SIDE]

    switch = float(model.thresholds.get("textured_below_mean_score", SWITCH_MEAN_SCORE))

    def run(name: str):
        m = profile_model(model, name)
        sigma = PROFILES[name]["background_sigma"]
        return run_profile(MapsOf(m, data, sigma, tile), name, factors(name),
                           m.thresholds, data.shape, upscale=d_px is None, height=height)

    chosen = "standard" if profile == "auto" else profile
    seg, used, upscale = run(chosen)
    mean = float(seg.info.get("certainty", np.nan))
    reason = "chosen by the user"
    if profile == "auto" and height:
        reason = "height maps stay on the standard profile unless textured is asked for"
    elif profile == "auto":
        if seg.count >= SWITCH_MIN_COUNT and mean < switch:
            chosen = "textured"
            reason = (f"standard pass unsure (mean candidate score {mean:.3f} < {switch:.3f}, "
                      f"{seg.count} particles): small particles on a textured support assumed")
            seg, used, upscale = run(chosen)
        elif seg.count:
            reason = f"standard pass sure enough (mean candidate score {mean:.3f} >= {switch:.3f})"
        else:
            reason = "standard pass found no particles"
    ran = profile_model(model, chosen)
    th = profile_thresholds(ran.thresholds, chosen, height)
    seg.info = {**base, "model": ran.name, "profile": chosen, "profile_reason": reason, "scales": used,
                "upscaled_because": upscale,
                "diameter_px": d_px, "prob_thresh": float(th["prob_thresh"]),
                "marker_thresh": float(th["marker_thresh"]), "min_area": int(th["min_area"]),
                "min_score": float(th["min_score"]), "max_overlap": seg.info["max_overlap"],
                "fragments_replaced": seg.info.get("fragments_replaced", 0),
                "crumbs_absorbed": seg.info.get("crumbs_absorbed", 0),
                "certainty": mean,
                **({"warnings": seg.info["warnings"]} if seg.info.get("warnings") else {})}
    if th.get("peak_h"):
        seg.info["peak_h"] = float(th["peak_h"])
    seg = _drop_sunken(seg, data)
    if height and ghosts:
        seg = drop_ghosts(seg, data)
    return seg


def _drop_sunken(seg: Segmentation, data: np.ndarray, ring: int = 3) -> Segmentation:
    """``seg`` without the particles whose mean value is below that of the ``ring`` px around
    them: in a map oriented particles-bright a particle stands above its surroundings, a pit
    (or the dark gap between bright objects) does not. ``info["sunken_dropped"]`` counts them."""
    n = seg.count
    seg.info["sunken_dropped"] = 0
    if n == 0:
        return seg
    lab = seg.labels
    around = cv2.dilate(lab.astype(np.float32), np.ones((2 * ring + 1,) * 2, np.uint8)).astype(np.int64)
    around[lab > 0] = 0
    z = np.asarray(data, np.float64).ravel()
    n_in, s_in = np.bincount(lab.ravel(), minlength=n + 1), np.bincount(lab.ravel(), z, n + 1)
    n_ar, s_ar = np.bincount(around.ravel(), minlength=n + 1), np.bincount(around.ravel(), z, n + 1)
    sunken = (n_ar > 0) & (s_in * np.maximum(n_ar, 1) < s_ar * np.maximum(n_in, 1))
    sunken[0] = False
    if not sunken.any():
        return seg
    info = {**seg.info, "sunken_dropped": int(sunken.sum())}
    return Segmentation(keep_labels(lab, ~sunken), np.asarray(seg.scores)[~sunken[1:]], info)
