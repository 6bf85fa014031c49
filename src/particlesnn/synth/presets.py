"""Named presets: each draws one concrete :class:`SynthParams` from documented ranges.

``draw(name, rng, size=None)`` -> SynthParams. The ranges are listed in ``docs/synthetic.md``
and in each function's docstring. ``PRESETS`` maps names to functions.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from particlesnn.errors import InputError

from particlesnn.synth.params import (InstrumentParams, OpticsParams, OverlayParams,
                                      ParticleParams, SubstrateParams, SynthParams, TipParams)


def _logu(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Log-uniform draw in [lo, hi]."""
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _size(rng: np.random.Generator, size: int | tuple[int, int] | None, default: tuple[int, ...]
          ) -> tuple[int, int]:
    if size is None:
        s = int(rng.choice(np.array(default)))
        return (s, s)
    if isinstance(size, (int, np.integer)):
        return (int(size), int(size))
    return (int(size[0]), int(size[1]))


def _stm(rng: np.random.Generator, size, *, sizes=(512,), d_mean=(1.5, 8.0), cov=(0.02, 0.35),
         px_per_d=(5.0, 50.0), noise=1.0, lines=1.0, cluster=(0.0, 0.6), min_gap=(0.8, 1.05),
         tip_r=(0.5, 5.0), aspect=(0.15, 0.6), rough_nm=(0.0, 0.05), rough_beta=(1.5, 3.0)
         ) -> SynthParams:
    """Common STM draw. ``noise``/``lines`` scale the noise / scan-line artefact ranges;
    ``aspect`` is the range of the mean height / diameter, ``rough_nm`` and ``rough_beta`` those
    of the substrate's roughness (rms, nm) and spectral exponent."""
    shape = _size(rng, size, sizes)
    dm = _logu(rng, *d_mean)
    # pixel size: the mean particle spans px_per_d px, within the instrument range 0.05-0.5 nm
    lo = max(0.05, dm / px_per_d[1])
    hi = min(0.5, dm / px_per_d[0])
    px = _logu(rng, lo, hi) if hi > lo else float(np.clip(dm / 10, 0.05, 0.5))
    bimodal = rng.random() < 0.2
    part = ParticleParams(
        coverage=_logu(rng, *cov) if cov[0] > 0 else 0.0,
        diameter_mean_nm=dm,
        diameter_cv=rng.uniform(0.08, 0.45),
        bimodal_fraction=rng.uniform(0.1, 0.5) if bimodal else 0.0,
        diameter2_mean_nm=min(dm * rng.uniform(1.6, 3.0), 12.0),
        diameter2_cv=rng.uniform(0.08, 0.3),
        aspect_mean=rng.uniform(*aspect),
        aspect_sd=rng.uniform(0.02, 0.12),
        shape="mixed",
        ellipticity_max=rng.uniform(0.0, 0.45),
        outline_roughness=rng.uniform(0.0, 0.12),
        cluster_fraction=rng.uniform(*cluster),
        min_gap=rng.uniform(*min_gap),
        step_fraction=rng.uniform(0.1, 0.6) if rng.random() < 0.5 else 0.0,
    )
    sub = SubstrateParams(
        kind="hopg",
        n_steps=int(rng.choice(np.array([0, 0, 1, 1, 2, 3, 5]))),
        step_layers_max=int(rng.choice(np.array([1, 1, 2, 3]))),
        step_waviness=rng.uniform(0.0, 0.06),
        tilt=(rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03)),
        roughness_rms_nm=rng.uniform(*rough_nm),
        roughness_beta=rng.uniform(*rough_beta),
        n_pits=int(rng.integers(0, 3)) if rng.random() < 0.2 else 0,
        n_point_defects=int(rng.integers(0, 20)) if rng.random() < 0.3 else 0,
        lattice_nm=rng.uniform(0.005, 0.03) if rng.random() < 0.3 else 0.0,
    )
    u = rng.random()
    tip_shape = "none" if u < 0.1 else ("sphere" if u < 0.25 else "parabolic")
    # tip apex radius 0.5-5 nm, but at most 30 px (a wider apex only blurs, and costs O(R))
    r_tip = min(_logu(rng, *tip_r), 30.0 * px)
    if tip_shape == "sphere" and r_tip / px > 8:
        tip_shape = "parabolic"  # the exact ball costs O(k^2) per pixel: only for small kernels
    tip = TipParams(shape=tip_shape, radius_nm=r_tip)
    if rng.random() < 0.1:
        ang = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.5, 5.0)
        tip.double_offset_nm = (dist * np.cos(ang), dist * np.sin(ang))
        tip.double_dz_nm = rng.uniform(0.05, 0.5)
    inst = InstrumentParams(
        line_offset_nm=lines * _logu(rng, 0.002, 0.1),
        line_tilt_nm=lines * rng.uniform(0.0, 0.05),
        n_jumps=int(rng.integers(0, 2 + int(2 * lines))) if rng.random() < 0.3 * lines else 0,
        jump_nm=rng.uniform(0.05, 1.0),
        white_noise_nm=noise * _logu(rng, 0.002, 0.05),
        pink_noise_nm=noise * _logu(rng, 0.001, 0.04),
        feedback_lag=rng.uniform(0, 0.6) if rng.random() < 0.3 * lines else 0.0,
        n_streaks=int(rng.integers(0, 4 + int(6 * lines))) if rng.random() < 0.4 * lines else 0,
        streak_nm=rng.uniform(0.05, 1.0),
        n_spikes=int(rng.integers(0, 30)) if rng.random() < 0.3 else 0,
        spike_nm=rng.uniform(0.3, 3.0),
        drift_px=(rng.uniform(-0.05, 0.05) * shape[1], rng.uniform(-0.05, 0.05) * shape[0])
        if rng.random() < 0.4 else (0.0, 0.0),
        creep_px=rng.uniform(0, 0.05) * shape[1] if rng.random() < 0.3 else 0.0,
        creep_decay=rng.uniform(0.05, 0.3),
    )
    return SynthParams(modality="stm", size=shape, pixel_size_nm=px, substrate=sub,
                       particles=part, tip=tip, instrument=inst)


def stm_sparse(rng, size=None):
    """Few isolated particles: coverage 0.5-5 %, clustering 0-20 %, mean d 1.5-8 nm."""
    return _stm(rng, size, cov=(0.005, 0.05), cluster=(0.0, 0.2), min_gap=(1.0, 1.3))


def stm_crowded(rng, size=None):
    """Crowded: coverage 20-40 %, clustering 40-80 % (touching pairs, chains), gap 0.75-0.95."""
    return _stm(rng, size, cov=(0.2, 0.4), cluster=(0.4, 0.8), min_gap=(0.75, 0.95))


def stm_tiny(rng, size=None):
    """Tiny particles: mean d 1-2 nm at 4-15 px per particle, coverage 2-25 %."""
    return _stm(rng, size, d_mean=(1.0, 2.0), px_per_d=(4.0, 15.0), cov=(0.02, 0.25),
                tip_r=(0.5, 2.0))


def stm_noisy_lines(rng, size=None):
    """Strong scan-line artefacts (x3 line offsets, jumps, streaks) and x2 noise."""
    return _stm(rng, size, noise=2.0, lines=3.0)


def stm_large(rng, size=None):
    """Large frames, 1024 or 1536 px, coverage 2-30 %."""
    return _stm(rng, size, sizes=(1024, 1536), cov=(0.02, 0.3))


def stm_mixed(rng, size=None):
    """Random draw over all STM ranges (the default for training): 256-1024 px, mean d
    1-10 nm, coverage 0.5-40 %, pixel 0.05-0.5 nm, tips 0.5-5 nm, all artefacts."""
    u = rng.random()
    if u < 0.15:
        return stm_sparse(rng, size if size is not None else None)
    if u < 0.35:
        return stm_crowded(rng, size)
    if u < 0.5:
        return stm_tiny(rng, size)
    if u < 0.6:
        return stm_noisy_lines(rng, size)
    return _stm(rng, size, sizes=(256, 384, 512, 512, 768, 1024), d_mean=(1.0, 10.0),
                cov=(0.005, 0.4))


# Held-out presets: parameter ranges that no training preset draws (``training.data``'s
# SYNTH_PRESETS never names them and no other preset reaches them); benchmarks/synthetic.py
# scores the detector on them apart, as a test of what it learnt beyond its training ranges.

def heldout_flat(rng, size=None):
    """Held out from training: flat islands, mean height / diameter 0.10-0.14 (training
    presets: 0.15-0.6), mean d 3-10 nm, coverage 5-30 %, 512 px."""
    return _stm(rng, size, d_mean=(3.0, 10.0), cov=(0.05, 0.3), aspect=(0.10, 0.14))


def heldout_rough(rng, size=None):
    """Held out from training: particles on a rough substrate, rms 0.06-0.12 nm with spectral
    exponent 1.2-1.8 (training presets: 0-0.05 nm, 1.5-3.0), mean d 2-8 nm, coverage
    5-30 %, 512 px."""
    return _stm(rng, size, d_mean=(2.0, 8.0), cov=(0.05, 0.3), rough_nm=(0.06, 0.12),
                rough_beta=(1.2, 1.8))


def heldout_grains(rng, size=None):
    """Held out from training: particles (mean d 2-8 nm, coverage 2-15 %) on a granular film,
    Voronoi grains 3-8 particle diameters across whose heights vary by 0.3-1x the mean
    particle height (no training preset has grains), 512 px. The grains are not particles: what
    a detector outlines on them is a false object (real granular films, docs/model.md)."""
    p = _stm(rng, size, d_mean=(2.0, 8.0), cov=(0.02, 0.15))
    q = p.particles
    p.substrate.grain_nm = q.diameter_mean_nm * rng.uniform(3.0, 8.0)
    p.substrate.grain_rms_nm = q.diameter_mean_nm * q.aspect_mean * rng.uniform(0.3, 1.0)
    return p


def _overlay(rng: np.random.Generator, p_bar=0.3, p_text=0.2, p_band=0.1, p_frame=0.05,
             ) -> OverlayParams:
    return OverlayParams(scale_bar=rng.random() < p_bar, text=rng.random() < p_text,
                         frame_px=int(rng.integers(2, 16)) if rng.random() < p_frame else 0,
                         info_band=rng.uniform(0.05, 0.12) if rng.random() < p_band else 0.0)


def _optical(rng, size, modality, *, sizes, d_px, d_nm, cov, cluster, min_gap, aspect,
             shape, ellipticity, roughness, optics) -> SynthParams:
    shp = _size(rng, size, sizes)
    dpx = _logu(rng, *d_px)
    dnm = _logu(rng, *d_nm)
    part = ParticleParams(
        coverage=_logu(rng, *cov), diameter_mean_nm=dnm, diameter_cv=rng.uniform(0.1, 0.45),
        diameter_min_nm=dnm / dpx * 2.0, diameter_max_nm=dnm * 4,
        bimodal_fraction=rng.uniform(0.1, 0.4) if rng.random() < 0.15 else 0.0,
        diameter2_mean_nm=dnm * rng.uniform(1.6, 2.5), diameter2_cv=rng.uniform(0.1, 0.3),
        aspect_mean=rng.uniform(*aspect), aspect_sd=0.05, shape=shape,
        ellipticity_max=rng.uniform(*ellipticity), outline_roughness=rng.uniform(*roughness),
        cluster_fraction=rng.uniform(*cluster), min_gap=rng.uniform(*min_gap))
    return SynthParams(modality=modality, size=shp, pixel_size_nm=dnm / dpx, particles=part,
                       substrate=SubstrateParams(kind="flat"), tip=TipParams(shape="none"),
                       optics=optics, overlay=_overlay(rng))


def haadf(rng, size=None):
    """HAADF-STEM catalyst: bright particles (4-30 px mean, 1-10 nm, coverage 1-12 %) on a bright lumpy support
    (85 %: lumps 15-150 px, 40-100 % of the field, brightness 0.3-1.0) over dark vacuum, or
    on carbon; particle contrast 0.8-2.0, blur 0.5-2 px, dose 5-100 counts, uneven
    illumination 0-0.3."""
    o = OpticsParams(
        support="lumpy" if rng.random() < 0.85 else "carbon",
        support_fraction=rng.uniform(0.4, 1.0), support_brightness=rng.uniform(0.3, 1.0),
        support_grain_px=_logu(rng, 15, 150), particle_contrast=rng.uniform(0.8, 2.0),
        blur_px=rng.uniform(0.5, 2.0), dose=_logu(rng, 5, 100), read_noise=rng.uniform(0, 0.03),
        illumination=rng.uniform(0, 0.3))
    return _optical(rng, size, "haadf", sizes=(256, 512, 640, 1024), d_px=(4, 30), d_nm=(1, 10),
                    cov=(0.01, 0.12), cluster=(0.0, 0.4), min_gap=(0.8, 1.05),
                    aspect=(0.6, 1.0), shape=str(rng.choice(np.array(["mixed", "faceted"]),
                                                            p=[0.7, 0.3])),
                    ellipticity=(0.0, 0.35), roughness=(0.0, 0.1), optics=o)


def brightfield_tem(rng, size=None):
    """Bright-field TEM: dark particles (5-40 px) on amorphous carbon speckle (70 %) or a lumpy
    support; contrast 0.3-1.5, Fresnel fringe 0-0.3 (half the images), dose 20-500."""
    o = OpticsParams(
        support="carbon" if rng.random() < 0.7 else "lumpy",
        support_fraction=rng.uniform(0.5, 1.0), support_brightness=rng.uniform(0.2, 1.0),
        support_grain_px=_logu(rng, 15, 150), particle_contrast=rng.uniform(0.3, 1.5),
        blur_px=rng.uniform(0.5, 2.0), dose=_logu(rng, 20, 500), read_noise=rng.uniform(0, 0.02),
        illumination=rng.uniform(0, 0.3),
        defocus_fringe=rng.uniform(0, 0.3) if rng.random() < 0.5 else 0.0, invert=True)
    return _optical(rng, size, "brightfield-tem", sizes=(256, 512, 1024), d_px=(5, 40),
                    d_nm=(1, 10), cov=(0.005, 0.25), cluster=(0.0, 0.5), min_gap=(0.8, 1.05),
                    aspect=(0.6, 1.0), shape=str(rng.choice(np.array(["mixed", "faceted"]),
                                                            p=[0.7, 0.3])),
                    ellipticity=(0.0, 0.35), roughness=(0.0, 0.1), optics=o)


def sem(rng, size=None):
    """SEM: edge-brightened, shaded particles (6-60 px, 10-100 nm, material contrast 0.3-1) on
    a grainy support (grains 3-20 px, at most 0.4 of the mean particle); blur 0.5-1.5 px,
    dose 5-60; info band 10 %, scale bar 30 %."""
    o = OpticsParams(support="grainy", support_grain_px=_logu(rng, 3, 20),
                     particle_contrast=rng.uniform(0.3, 1.0), blur_px=rng.uniform(0.5, 1.5),
                     dose=_logu(rng, 5, 60), read_noise=rng.uniform(0, 0.03),
                     illumination=rng.uniform(0, 0.25))
    p = _optical(rng, size, "sem", sizes=(256, 512, 1024), d_px=(6, 60), d_nm=(10, 100),
                 cov=(0.01, 0.35), cluster=(0.0, 0.6), min_gap=(0.8, 1.05),
                 aspect=(0.4, 0.9), shape="mixed", ellipticity=(0.0, 0.4),
                 roughness=(0.0, 0.12), optics=o)
    # support grains stay below 0.4 of the mean particle, else particles are not recognisable
    d_px = p.particles.diameter_mean_nm / p.pixel_size_nm
    o.support_grain_px = float(max(2.0, min(o.support_grain_px, 0.4 * d_px)))
    return p


def fluorescence(rng, size=None):
    """Fluorescent nuclei: touching bright blobs (8-60 px mean, range 5-90) on a dark
    background, brightness 0.25-1 (5 % brighter), chromatin texture, blur 0.5-2, dose 20-300."""
    o = OpticsParams(support="none", particle_contrast=rng.uniform(0.5, 1.0),
                     blur_px=rng.uniform(0.5, 2.0), dose=_logu(rng, 20, 300),
                     read_noise=rng.uniform(0, 0.02), illumination=rng.uniform(0, 0.2))
    p = _optical(rng, size, "fluorescence", sizes=(256, 360, 512), d_px=(8, 60),
                 d_nm=(5000, 15000), cov=(0.03, 0.4), cluster=(0.1, 0.7), min_gap=(0.85, 1.0),
                 aspect=(0.3, 0.6), shape="ellipsoid", ellipticity=(0.0, 0.5),
                 roughness=(0.0, 0.06), optics=o)
    p.overlay = OverlayParams()
    return p


def brightfield_cells(rng, size=None):
    """Bright-field stained cells: dark nuclei (0.18-0.32 of the cell, 5-22 px) inside grey
    irregular cells (25-70 px, coverage 15-50 %) on white, cells overlapping, dark debris."""
    o = OpticsParams(support="none", particle_contrast=rng.uniform(0.6, 1.2),
                     blur_px=rng.uniform(0.5, 1.5), dose=_logu(rng, 50, 500),
                     read_noise=rng.uniform(0, 0.01), illumination=rng.uniform(0, 0.15))
    p = _optical(rng, size, "brightfield-cells", sizes=(256, 512), d_px=(25, 70),
                 d_nm=(20000, 60000), cov=(0.15, 0.5), cluster=(0.3, 0.8), min_gap=(0.6, 0.9),
                 aspect=(0.3, 0.5), shape="faceted", ellipticity=(0.0, 0.5),
                 roughness=(0.12, 0.3), optics=o)
    p.overlay = OverlayParams()
    return p


def negatives(rng, size=None):
    """No particles: a random modality's support alone (STM terraces/defects/noise, lumpy or
    carbon supports, grains, cells without nuclei are not drawn), with scale bars (60 %), text
    (50 %), black frames (25 %) and info bands (25 %)."""
    u = rng.random()
    if u < 0.35:
        p = stm_mixed(rng, size)
        p.substrate.n_point_defects = int(rng.integers(0, 15))
        p.substrate.n_pits = int(rng.integers(0, 5))
    else:
        p = PRESETS[str(rng.choice(np.array(["haadf", "brightfield-tem", "sem", "fluorescence"]),
                                   p=[0.45, 0.2, 0.25, 0.1]))](rng, size)
        p.overlay = _overlay(rng, p_bar=0.6, p_text=0.5, p_band=0.25, p_frame=0.25)
    p.negative = True
    return p


def any_preset(rng, size=None):
    """Random over all presets: stm-mixed 40 %, haadf 15 %, brightfield-tem 10 %, sem 10 %,
    fluorescence 8 %, brightfield-cells 5 %, negatives 12 %."""
    names = ["stm-mixed", "haadf", "brightfield-tem", "sem", "fluorescence", "brightfield-cells",
             "negatives"]
    w = [0.40, 0.15, 0.10, 0.10, 0.08, 0.05, 0.12]
    return PRESETS[str(rng.choice(np.array(names), p=w))](rng, size)


PRESETS: dict[str, Callable[..., SynthParams]] = {
    "stm-sparse": stm_sparse,
    "stm-crowded": stm_crowded,
    "stm-tiny": stm_tiny,
    "stm-noisy-lines": stm_noisy_lines,
    "stm-large": stm_large,
    "stm-mixed": stm_mixed,
    "haadf": haadf,
    "brightfield-tem": brightfield_tem,
    "sem": sem,
    "fluorescence": fluorescence,
    "brightfield-cells": brightfield_cells,
    "negatives": negatives,
    "any": any_preset,
    "heldout-flat": heldout_flat,
    "heldout-rough": heldout_rough,
    "heldout-grains": heldout_grains,
}
#: Presets no training run draws (see heldout_flat, heldout_rough, heldout_grains).
HELDOUT_PRESETS = ("heldout-flat", "heldout-rough", "heldout-grains")


def draw(name: str, rng: np.random.Generator, size: int | tuple[int, int] | None = None
         ) -> SynthParams:
    """Draw the parameters of one image of preset ``name`` (see ``PRESETS``).

    size : force the image size (px, int or (rows, cols)); None lets the preset choose.
    Raises InputError (a ValueError) for an unknown name.
    """
    if name not in PRESETS:
        raise InputError(None, f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name](rng, size)
