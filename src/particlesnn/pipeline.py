"""The chain for one image: read -> level -> orient -> segment -> refine -> measure -> summarise.

Plain functions over plain data; the faces (CLI ``analyze``, web service) call these and write
the outputs. Nothing here writes files.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from particlesnn.heightmap import HeightMap


#: Detector profiles (see :mod:`particlesnn.segment.neural`).
PROFILES = ("auto", "standard", "textured")


@dataclass
class AnalyzeOptions:
    """Every option of an analysis; the keys of the YAML config file are these field names.

    method : "model" (neural network), "threshold" (global flooding) or "watershed".
    diameter : typical particle diameter hint, in nm when the scale is known, else px; None = auto.
    pixel_size : override of the pixel size in nm/px (plain images, or a wrong header).
    polarity : "auto", "bright" (particles protrude) or "dark" (particles darker than the support).
    min_size, max_size : keep particles whose equivalent-circle diameter lies in this range
        (nm when the scale is known, else px); None = no limit.
    include_border : include particles touching the image border in the size statistics.
    refine : refine contours by the 2D Gaussian fit to the half-height cross-section (the
        paper's post-processing); None (default) = on for height maps in nm (topography, where
        the half-height outline is the paper's particle size), off for plain images and other
        channels (intensity is not height: on the real validation sets the half-height outline
        shrank nuclei to 0.81 of their annotated diameter and widened STEM particles;
        docs/benchmarks.md, "Refinement on plain images").
    channel : channel to read from multi-channel files; None = the height channel.
    scale_bar : plain images: length in nm of the burnt-in scale bar (sets the pixel size).
    level : plane + scan-line levelling before detection.
    profile : detector profile (method "model"): "auto" (chosen by content, see
        :mod:`particlesnn.segment.neural`), "standard" (STM/AFM, clean images) or "textured"
        (small particles on a bright, lumpy support, e.g. HAADF-STEM).
    model : detector for method "model": a model folder (``config.json`` + ``model.onnx``, e.g.
        one from ``particlesnn train`` or the model registry) or a shipped model's name; None
        = the shipped default.
    gwyddion : also write ``gwy/S.gwy``, the levelled map with the particles as its Gwyddion
        mask (:mod:`particlesnn.export.gwyddion`; off by default: 16 bytes per pixel).
    """

    method: str = "model"
    diameter: float | None = None
    pixel_size: float | None = None
    polarity: str = "auto"
    min_size: float | None = None
    max_size: float | None = None
    include_border: bool = False
    refine: bool | None = None
    channel: str | None = None
    scale_bar: float | None = None
    level: bool = True
    profile: str = "auto"
    model: str | None = None
    gwyddion: bool = False

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r} (use {', '.join(PROFILES)})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AnalyzeOptions":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass
class ImageResult:
    """Everything the analysis of one image produced."""

    heightmap: HeightMap
    levelled: HeightMap
    labels: np.ndarray
    scores: np.ndarray
    particles: pd.DataFrame
    summary: dict[str, Any]
    polarity: str = "bright"
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    #: The name of its outputs and rows when not the file's stem (the same scan name in
    #: several folders: :func:`particlesnn.cli.analyze_cmd.output_names`).
    output_name: str | None = None

    @property
    def name(self) -> str:
        return self.output_name or self.heightmap.name


def _size_filter(labels: np.ndarray, scores: np.ndarray, pixel_size, lo, hi):
    """Drop particles whose equivalent-circle diameter (nm if scale known, else px) is outside
    [lo, hi]; return consecutive labels, their scores and the kept old ids."""
    from skimage.segmentation import relabel_sequential

    n = int(labels.max()) if labels.size else 0
    if n == 0 or (lo is None and hi is None):
        return labels, scores, np.arange(1, n + 1)
    area_px = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(float)
    px_area = pixel_size[0] * pixel_size[1] if pixel_size is not None else 1.0
    d = np.sqrt(4.0 * area_px * px_area / np.pi)
    keep = np.ones(n, bool)
    if lo is not None:
        keep &= d >= lo
    if hi is not None:
        keep &= d <= hi
    lut = np.zeros(n + 1, labels.dtype)
    lut[1:][keep] = np.arange(1, int(keep.sum()) + 1)
    new = lut[labels]
    new, _, _ = relabel_sequential(new)
    return new.astype(np.int32), np.asarray(scores)[keep], np.flatnonzero(keep) + 1


def _levelled(hm: HeightMap, options: AnalyzeOptions) -> HeightMap:
    """Apply overrides, validate and level a height map (not yet oriented)."""
    from particlesnn import io, preprocess

    if options.pixel_size is not None:
        hm = hm.with_data(hm.data, pixel_size=(options.pixel_size, options.pixel_size))
    io.validate(hm, hm.source)
    return preprocess.level(hm) if options.level else hm


def prepare(hm: HeightMap, options: AnalyzeOptions) -> tuple[HeightMap, str]:
    """Apply overrides, validate, level and orient a height map (particles bright).

    Returns the levelled map and the polarity used ("bright" or "dark"). The orientation is
    the tail statistic's alone (:func:`particlesnn.preprocess.orient`); the analysis checks a
    doubtful call with the detector (:func:`particlesnn.segment.segment_oriented`).
    """
    from particlesnn import preprocess

    return preprocess.orient(_levelled(hm, options), options.polarity)


def prepare_for_labels(hm: HeightMap, options: AnalyzeOptions,
                       labels: np.ndarray) -> tuple[HeightMap, str]:
    """:func:`prepare` for contours given from outside (edited, imported): where the analysis
    checks the tail statistic's "auto" call with the detector
    (:func:`particlesnn.preprocess.polarity_call`,
    :func:`particlesnn.segment.segment_oriented`), the contours decide instead: the orientation
    in which their insides stand above a 3-px ring around them (median values) is kept.
    Contours of pits keep a map dark."""
    from particlesnn import preprocess

    lev = _levelled(hm, options)
    if options.polarity != "auto":
        return preprocess.orient(lev, options.polarity)
    used, check = preprocess.polarity_call(lev)
    oriented, _ = preprocess.orient(lev, used)
    way = preprocess.contours_polarity(lev.data, labels) if check else None
    return (oriented, used) if way in (None, used) else preprocess.orient(lev, way)


_DETECTOR: dict[tuple, Any] = {}


def detector(model: str | None = None):
    """A detector, loaded once per process and model (one onnxruntime session per worker).

    ``model``: a model folder or shipped name, None = the shipped default. Keyed by process
    id, ``PARTICLESNN_THREADS`` (the session's thread count), the model and its ONNX file's
    modification time: a forked worker, a changed thread budget or a retrained model folder
    gets its own session.
    """
    from particlesnn.model import WEIGHTS_DIR, load_model

    folder = Path(model) if model is not None and (Path(model) / "model.onnx").is_file() \
        else WEIGHTS_DIR / str(model or "default")
    onnx = folder / "model.onnx"
    mtime = onnx.stat().st_mtime_ns if onnx.is_file() else None
    key = (os.getpid(), os.environ.get("PARTICLESNN_THREADS"), str(model), mtime)
    det = _DETECTOR.get(key)
    if det is None:
        det = load_model(model)
        if len(_DETECTOR) > 4:
            _DETECTOR.clear()
        _DETECTOR[key] = det
    return det


def refines(options: AnalyzeOptions, hm: HeightMap) -> bool:
    """Whether the analysis refines ``hm``'s contours: ``options.refine``, or when that is None,
    for height maps in nm only (see :class:`AnalyzeOptions`)."""
    return bool(options.refine) if options.refine is not None else hm.unit == "nm"


def analyze_heightmap(hm: HeightMap, options: AnalyzeOptions | None = None, *,
                      tile: int | None = None) -> ImageResult:
    """Run the whole chain on a height map already read.

    ``tile`` (px): side of the tiles the detector runs on (``method="model"``; default
    :data:`particlesnn.segment.neural.TILE` by the image's size; larger images are run in
    overlapping tiles, which bounds the inference memory).
    Raises :class:`particlesnn.InputError` for maps that cannot be analysed (empty, constant...).
    """
    from particlesnn.segment import segment_oriented

    options = options or AnalyzeOptions()
    t0 = time.perf_counter()
    kw: dict[str, Any] = {}
    if options.method == "model":
        kw["model"] = detector(options.model)
        kw["profile"] = options.profile
        if tile is not None:
            kw["tile"] = int(tile)
    levelled, polarity, seg = segment_oriented(_levelled(hm, options), options.polarity,
                                               options.method, diameter=options.diameter, **kw)
    warnings: list[str] = list(seg.info.get("warnings", []))
    return _finish(hm, levelled, seg.labels, seg.scores, options, polarity, warnings,
                   t0, info=dict(seg.info), refine=refines(options, hm))


def remeasure(result_or_levelled: ImageResult | HeightMap, labels: np.ndarray,
              scores: np.ndarray | None = None, options: AnalyzeOptions | None = None,
              *, heightmap: HeightMap | None = None) -> ImageResult:
    """Measure a label image given from outside (edited contours, imported annotations).

    No detection and no refinement: the contours are taken as drawn. ``scores`` default to 1.
    """
    options = options or AnalyzeOptions()
    t0 = time.perf_counter()
    if isinstance(result_or_levelled, ImageResult):
        levelled = result_or_levelled.levelled
        heightmap = result_or_levelled.heightmap
        polarity = result_or_levelled.polarity
    else:
        levelled, polarity = result_or_levelled, options.polarity
        heightmap = heightmap if heightmap is not None else levelled
    from skimage.segmentation import relabel_sequential

    labels = np.asarray(labels)
    if labels.shape != levelled.shape:
        from particlesnn.errors import InputError

        raise InputError(heightmap.source, f"labels of shape {labels.shape} do not match the "
                                           f"image's {levelled.shape}")
    labels, fw, _ = relabel_sequential(labels.astype(np.int32))
    n = int(labels.max())
    if scores is None:
        new_scores = np.ones(n)
    else:
        old = np.asarray(scores, float)
        new_scores = np.array([old[o - 1] if 0 < o <= len(old) else 1.0
                               for o in fw.in_values[fw.in_values > 0]]) if n else np.ones(0)
    return _finish(heightmap, levelled, labels, new_scores, options, polarity, [], t0,
                   info={"method": "annotations"}, refine=False)


def _finish(hm, levelled, labels, scores, options, polarity, warnings, t0, *, info, refine):
    from particlesnn import measure as measure_mod
    from particlesnn import stats

    labels = np.asarray(labels, dtype=np.int32)
    scores = np.asarray(scores, dtype=float)
    # what the reader had to do (an unfinished scan cut, NaN pixels filled, no scale in the
    # header) is the scientist's to know, first
    meta = getattr(hm, "metadata", None) or {}
    warnings = [str(w) for w in meta.get("warnings", []) if str(w) not in warnings] + list(warnings)
    fits = None
    if refine and labels.max() > 0:
        from particlesnn.refine import refine as refine_fn

        labels, fits = refine_fn(levelled, labels)
        if "fit_status" in fits.columns:
            n_bad = int((fits["fit_status"] != "ok").sum())
            if n_bad:
                info["refine_fallbacks"] = n_bad
    labels, scores, kept = _size_filter(labels, scores, levelled.pixel_size,
                                        options.min_size, options.max_size)
    if fits is not None and len(kept) != len(fits):
        fits = fits.set_index("label").loc[kept].reset_index()
        fits["label"] = np.arange(1, len(fits) + 1)
    particles = measure_mod.measure(levelled, labels, scores=scores, fits=fits)
    summary = stats.summarize_image(particles, image_shape_px=levelled.shape,
                                    pixel_size=levelled.pixel_size,
                                    include_border=options.include_border)
    if info.get("profile"):
        summary["detector_profile"] = info["profile"]
    if info.get("model"):
        summary["detector_model"] = info["model"]
    summary["refined"] = bool(refine)  # (options.refine None: height maps in nm only)
    if labels.max() == 0:
        warnings.append("no particles found")
    return ImageResult(heightmap=hm, levelled=levelled, labels=labels, scores=scores,
                       particles=particles, summary=summary, polarity=polarity,
                       warnings=warnings, seconds=time.perf_counter() - t0, info=info)


def analyze_file(path: str | Path, options: AnalyzeOptions | None = None) -> ImageResult:
    """Read a file (any supported format) and analyse it."""
    from particlesnn import io

    options = options or AnalyzeOptions()
    hm = io.read(path, channel=options.channel, scale_bar=options.scale_bar)
    return analyze_heightmap(hm, options)
