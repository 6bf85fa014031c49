"""``generate``: one synthetic image with its exact ground truth (pure, deterministic)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.synth import instrument as inst_mod
from particlesnn.synth import presets as presets_mod
from particlesnn.synth.params import MODALITIES, SHAPES, SynthParams
from particlesnn.synth.particles import draw_population
from particlesnn.synth.substrate import hopg
from particlesnn.synth.tip import dilate, double_tip, kernel_halfwidth
from particlesnn.synth.truth import add_particles, relabel

TRUTH_COLUMNS = [
    "image", "label", "x_px", "y_px", "diameter_nm", "footprint_eqd_nm", "footprint_eqd_px",
    "height_nm", "ellipticity", "orientation_deg", "area_px", "shape", "population",
    "cluster", "cut_by_border", "on_step", "snr",
]


@dataclass
class SynthImage:
    """One synthetic image and its truth.

    height : HeightMap (nm, pixel_size (ps, ps) nm/px). For STM: the recorded height (with tip,
        artefacts and noise). For other modalities: the true surface topography (support +
        particles) the render was made from.
    labels : (rows, cols) int32, 0 = background, k = particle k (consecutive 1..n); the
        footprint rule is in :mod:`particlesnn.synth.truth`.
    particles : truth table (``TRUTH_COLUMNS``), row k-1 describes label k:
        x_px, y_px (true centre in image px, may lie outside for particles cut by the border),
        diameter_nm (physical), footprint_eqd_nm / _px (equivalent-circle diameter of the
        visible footprint), height_nm (apex above local substrate), ellipticity
        (1 - minor/major), orientation_deg (major axis, from +x toward +y, 0-180), area_px,
        shape, population (0/1 for bimodal), cluster (id shared by touching neighbours),
        cut_by_border (footprint touches the image edge or an overlay), on_step (STM: the
        footprint touches a substrate step edge, within 1 px; False otherwise), snr (STM: apex height
        over the rms of white + 1/f + line-offset noise; NaN for other modalities).
    image : the observation, float32: for SPM the height in nm (the same array object as
        ``height.data``: copy before modifying in place), the rendered intensity (about 0..1)
        for other modalities.
    modality : ``"stm"``, ``"haadf"``, ``"brightfield-tem"``, ``"sem"``, ``"fluorescence"``,
        ``"brightfield-cells"``.
    params : the concrete parameters used. preset : preset name or None.
    extra : modality-specific facts (e.g. ``{"cells": n}`` for bright-field cells).
    """

    height: HeightMap
    labels: np.ndarray
    particles: pd.DataFrame
    image: np.ndarray
    modality: str
    params: SynthParams
    preset: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Number of labelled particles."""
        return int(len(self.particles))


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def generate(params: SynthParams | str = "stm-mixed", rng: np.random.Generator | int | None = 0,
             *, size: int | tuple[int, int] | None = None) -> SynthImage:
    """Generate one synthetic image with exact ground truth.

    params : a :class:`SynthParams` (used as is) or a preset name (``presets.PRESETS``), from
        which concrete parameters are drawn with ``rng``.
    rng : a numpy Generator (consumed) or an int seed. The same seed gives the same image.
    size : image size (px, int or (rows, cols)) overriding the preset's (presets only).
    Returns a :class:`SynthImage`. Pure: no file access, no global state.
    Raises InputError (a ValueError) for an unknown preset or nonsensical parameters.
    """
    rng = _as_rng(rng)
    preset = None
    if isinstance(params, str):
        preset = params
        params = presets_mod.draw(params, rng, size=size)
    else:
        params = copy.deepcopy(params)
    validate(params)
    if params.modality == "stm":
        out = _generate_spm(params, rng)
    else:
        from particlesnn.synth.render import generate_optical
        out = generate_optical(params, rng)
    out.preset = preset
    out.height.metadata.update({"format": "synthetic", "preset": preset,
                                "modality": params.modality})
    return out


def validate(p: SynthParams) -> SynthParams:
    """Check a SynthParams for values that make no sense; raise InputError naming the field."""
    def bad(msg: str):
        raise InputError(None, f"bad synthetic parameters: {msg}")

    if p.modality not in MODALITIES:
        bad(f"modality {p.modality!r} is not one of {', '.join(MODALITIES)}")
    rows, cols = (int(v) for v in p.size)
    if not (16 <= rows <= 8192 and 16 <= cols <= 8192):
        bad(f"size {p.size} px must be 16..8192 on each side")
    if not (np.isfinite(p.pixel_size_nm) and p.pixel_size_nm > 0):
        bad(f"pixel_size_nm {p.pixel_size_nm} must be > 0")
    if not (0 < p.footprint_fraction < 1):
        bad(f"footprint_fraction {p.footprint_fraction} must be in (0, 1)")
    q = p.particles
    if not (0 <= q.coverage <= 0.9):
        bad(f"coverage {q.coverage} must be in 0..0.9")
    if q.diameter_mean_nm <= 0 or q.diameter_cv < 0 or q.diameter_min_nm <= 0:
        bad("diameters must be > 0 and diameter_cv >= 0")
    if q.shape != "mixed" and q.shape not in SHAPES:
        bad(f"particle shape {q.shape!r} is not one of mixed, {', '.join(SHAPES)}")
    if not (0 <= q.ellipticity_max < 1):
        bad(f"ellipticity_max {q.ellipticity_max} must be in 0..1")
    if p.tip.shape not in ("none", "parabolic", "sphere"):
        bad(f"tip shape {p.tip.shape!r} is not none, parabolic or sphere")
    if p.tip.shape != "none" and p.tip.radius_nm <= 0:
        bad(f"tip radius {p.tip.radius_nm} nm must be > 0")
    if not (p.substrate.grain_nm >= 0 and p.substrate.grain_rms_nm >= 0):
        bad(f"grain_nm {p.substrate.grain_nm} and grain_rms_nm {p.substrate.grain_rms_nm} "
            "must be >= 0")
    return p


def _generate_spm(p: SynthParams, rng: np.random.Generator) -> SynthImage:
    rows, cols = p.size
    ps = float(p.pixel_size_nm)
    sub = p.substrate
    part = p.particles if not p.negative else _no_particles(p)

    def pad_for(h_top: float) -> tuple[int, float]:
        # local relief the tip can feel: the tallest particle, a few steps, roughness (steps
        # are far apart, so the whole terrace staircase never sits under one tip position)
        relief = h_top + sub.step_height_nm * (min(sub.n_steps, 1) * sub.step_layers_max + 1) \
            + 4 * sub.roughness_rms_nm + 4 * sub.grain_rms_nm * (sub.grain_nm > 0)
        pad = kernel_halfwidth(p.tip.shape, p.tip.radius_nm, relief, ps) if p.tip.shape != "none" else 0
        if p.tip.double_offset_nm is not None:
            pad += int(np.ceil(np.hypot(*p.tip.double_offset_nm) / ps))
        return pad, relief

    # substrate first (particles nucleate on its step edges), on a canvas padded for the
    # tallest particle the size law allows; cropped to the tallest particle drawn
    dm = max(part.diameter_mean_nm, part.diameter2_mean_nm if part.bimodal_fraction > 0 else 0)
    cv = max(part.diameter_cv, part.diameter2_cv if part.bimodal_fraction > 0 else 0)
    h_bound = 0.95 * min(part.diameter_max_nm, dm * np.exp(5 * np.sqrt(np.log1p(cv * cv))))
    pad_b, _ = pad_for(h_bound if part.coverage > 0 else 0.0)
    big, edges = hopg(sub, (rows + 2 * pad_b, cols + 2 * pad_b), ps, rng, return_edges=True)
    ey, ex = np.nonzero(edges[pad_b:pad_b + rows, pad_b:pad_b + cols])
    pop = draw_population(part, (rows, cols), ps, rng, sites=(ey, ex))
    hmax = float(pop["h"].max()) if len(pop["h"]) else 0.0
    pad, relief = pad_for(min(hmax, h_bound))
    if hmax > h_bound:  # a > 5-sigma diameter (p ~ 3e-7 per particle): keep the canvas valid
        pad = pad_b
    canvas = (rows + 2 * pad, cols + 2 * pad)
    o = pad_b - pad
    surface = big[o:o + canvas[0], o:o + canvas[1]].copy()
    surface, lab_c, base = add_particles(surface, pop, pad, ps, p.tip.shape, p.tip.radius_nm,
                                         p.footprint_fraction)
    z = dilate(surface, p.tip.shape, p.tip.radius_nm, ps, depth_nm=relief)
    if p.tip.double_offset_nm is not None:
        z = double_tip(z, p.tip.double_offset_nm, p.tip.double_dz_nm, ps)
    z = z[pad:pad + rows, pad:pad + cols]
    labels = lab_c[pad:pad + rows, pad:pad + cols]
    yy = np.arange(rows)[:, None] * ps
    xx = np.arange(cols)[None, :] * ps
    z = z + p.substrate.tilt[0] * xx + p.substrate.tilt[1] * yy
    steps = edges[pad_b:pad_b + rows, pad_b:pad_b + cols].astype(np.uint8)
    fields = inst_mod.warp_fields((rows, cols), p.instrument)
    if fields is not None:
        z, labels = inst_mod.warp(z, labels, fields)
        steps = inst_mod.warp(steps.astype(np.float32), steps, fields)[1]
    z = inst_mod.scan_artefacts(z, p.instrument, rng)
    labels, kept = relabel(labels)
    ip = p.instrument
    noise = float(np.sqrt(ip.white_noise_nm ** 2 + ip.pink_noise_nm ** 2 + ip.line_offset_nm ** 2))
    table = truth_table(labels, kept - 1, pop, ps, fields, noise_nm=noise, steps=steps > 0)
    z32 = z.astype(np.float32)
    hm = HeightMap(z32, pixel_size=(ps, ps), channel="Z", unit="nm",
                   metadata={"synthetic": True})
    return SynthImage(height=hm, labels=labels, particles=table, image=z32, modality="stm",
                      params=p)


def _no_particles(p: SynthParams):
    q = copy.deepcopy(p.particles)
    q.coverage = 0.0
    return q


def truth_table(labels: np.ndarray, idx: np.ndarray, pop: dict[str, np.ndarray], ps: float,
                fields=None, blocked: np.ndarray | None = None,
                noise_nm: float | None = None, steps: np.ndarray | None = None) -> pd.DataFrame:
    """Per-particle truth for consecutive ``labels``; ``idx[k-1]`` = population index of label k.

    ps : pixel size nm/px. fields : drift/creep warp (to map true centres to image px).
    blocked : bool mask of overlay pixels (a footprint touching it counts as cut).
    noise_nm : rms height noise (nm) for the ``snr`` column (None -> NaN).
    steps : bool mask of substrate step-edge pixels (``on_step``: a footprint within 1 px).
    """
    rows, cols = labels.shape
    n = len(idx)
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in TRUTH_COLUMNS})
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.int64)
    edge = np.zeros(n + 1, dtype=bool)
    for border in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        edge[np.unique(border)] = True
    if blocked is not None and blocked.any():
        from scipy import ndimage as ndi
        near = ndi.binary_dilation(blocked, iterations=1)
        edge[np.unique(labels[near])] = True
    on_step = np.zeros(n + 1, dtype=bool)
    if steps is not None and steps.any():
        from scipy import ndimage as ndi
        on_step[np.unique(labels[ndi.binary_dilation(steps, np.ones((3, 3), bool))])] = True
    x, y = inst_mod.sample_to_image(pop["x"][idx], pop["y"][idx], (rows, cols), fields)
    eqd_px = 2.0 * np.sqrt(area / np.pi)
    shapes = np.array(SHAPES)[pop["shape"][idx].astype(int)]
    return pd.DataFrame({
        "image": "",
        "label": np.arange(1, n + 1, dtype=np.int64),
        "x_px": x, "y_px": y,
        "diameter_nm": pop["d"][idx],
        "footprint_eqd_nm": eqd_px * ps,
        "footprint_eqd_px": eqd_px,
        "height_nm": pop["h"][idx],
        "ellipticity": pop["e"][idx],
        "orientation_deg": np.degrees(pop["theta"][idx]) % 180.0,
        "area_px": area,
        "shape": shapes,
        "population": pop["pop"][idx].astype(np.int64),
        "cluster": pop["cluster"][idx].astype(np.int64),
        "cut_by_border": edge[1:],
        "on_step": on_step[1:],
        "snr": pop["h"][idx] / max(noise_nm, 1e-6) if noise_nm is not None else np.nan,
    })
