"""Other microscopes: TEM/STEM (HAADF, bright-field), SEM, fluorescence and bright-field cells.

All renders start from the same particle geometry as the SPM path (sizes, shapes, placement,
footprints from :mod:`particlesnn.synth.truth`) and a support texture, and turn it into an
intensity image:

* ``haadf``: Z-contrast, signal ~ projected thickness; bright particles on a bright lumpy
  support over dark vacuum (the support can be as bright as many particles);
* ``brightfield-tem``: transmission exp(-mu t), dark particles on a bright amorphous-carbon
  speckle, optional Fresnel fringe at edges;
* ``sem``: secondary-electron yield from the surface slope (edge-brightened, shaded
  particles) on a grainy support;
* ``fluorescence``: touching bright nuclei with chromatin texture on a dark background;
* ``brightfield-cells``: dark nuclei inside grey cells on white (labels = nuclei).

Then: blur (probe/PSF), uneven illumination, Poisson shot noise, read noise, overlays.
Images are float32 scaled to about 0..1.
"""
from __future__ import annotations

import copy

import numpy as np
from scipy import ndimage as ndi

from particlesnn.heightmap import HeightMap
from particlesnn.synth import display
from particlesnn.synth.noise import bandpass_field, fractal_field
from particlesnn.synth.params import SHAPES, OpticsParams, OverlayParams, SynthParams
from particlesnn.synth.particles import draw_population, profile
from particlesnn.synth.truth import relabel, stamp_particles


# ----------------------------------------------------------------------------- supports
def support_region(shape: tuple[int, int], fraction: float, rng: np.random.Generator
                   ) -> np.ndarray:
    """Bool mask covering about ``fraction`` of the field with one or a few irregular lumpy
    regions (the support, the rest is vacuum)."""
    if fraction >= 0.999:
        return np.ones(shape, bool)
    rows, cols = shape
    f = fractal_field(shape, 4.0, rng)
    # bias toward one side so vacuum forms contiguous regions, as in real images
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:rows, 0:cols]
    ramp = (np.cos(ang) * (xx / cols - 0.5) + np.sin(ang) * (yy / rows - 0.5)) * 2.0
    f = f + rng.uniform(0.0, 1.5) * ramp
    thr = np.quantile(f, 1 - fraction)
    return f > thr


def lumpy_support(shape: tuple[int, int], region: np.ndarray, grain_px: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Projected thickness (a.u., mean about 1 on the support) of overlapping rounded lumps
    of typical radius ``grain_px`` px filling ``region``, plus fine texture."""
    rows, cols = shape
    t = np.zeros(shape)
    area = float(region.sum())
    if area == 0:
        return t
    n = int(np.clip(1.6 * area / (np.pi * grain_px ** 2), 3, 600))
    ys, xs = np.nonzero(region)
    pick = rng.integers(0, len(ys), n)
    for k in range(n):
        r = grain_px * rng.lognormal(0.0, 0.45)
        q = rng.uniform(0.4, 1.0)
        th = rng.uniform(0, np.pi)
        cy, cx = ys[pick[k]] + rng.normal(0, 2), xs[pick[k]] + rng.normal(0, 2)
        ext = int(np.ceil(r / np.sqrt(q) * 1.3)) + 2
        i0, i1 = max(0, int(cy) - ext), min(rows, int(cy) + ext + 1)
        j0, j1 = max(0, int(cx) - ext), min(cols, int(cx) + ext + 1)
        if i0 >= i1 or j0 >= j1:
            continue
        dy = (np.arange(i0, i1) - cy)[:, None]
        dx = (np.arange(j0, j1) - cx)[None, :]
        own = profile(dx, dy, 2 * r, 2 * r * rng.uniform(0.5, 1.0), 1 - q, th, 1, 0.0,
                      rng.uniform(0, 0.12, 4), rng.uniform(0, 2 * np.pi, 4))
        t[i0:i1, j0:j1] += own
    t /= max(np.percentile(t[region], 60), 1e-9)
    t *= 1 + bandpass_field(shape, rng.uniform(2, 6), rng, rms=rng.uniform(0.03, 0.12))
    return np.clip(t, 0, None)


def carbon_support(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Amorphous-carbon film: mean 1, fine speckle (1.5-4 px) and slow thickness variation."""
    s = 1 + bandpass_field(shape, rng.uniform(1.5, 4), rng, rms=rng.uniform(0.05, 0.15))
    s += fractal_field(shape, 3.0, rng, rms=rng.uniform(0.02, 0.1))
    return s


def grainy_support(shape: tuple[int, int], grain_px: float, rng: np.random.Generator) -> np.ndarray:
    """SEM support topography (px units of height): grains of ``grain_px`` plus roughness."""
    g = bandpass_field(shape, grain_px, rng, rms=grain_px * rng.uniform(0.05, 0.25))
    g += fractal_field(shape, 2.5, rng, rms=grain_px * rng.uniform(0.05, 0.3))
    return g


# ----------------------------------------------------------------------------- detector
def _illumination(shape, amp, rng):
    if amp <= 0:
        return np.ones(shape)
    g = fractal_field(shape, 5.0, rng, rms=1.0)
    return np.clip(1 + amp * g / 2.0, 0.2, None)


def _detect(signal: np.ndarray, o: OpticsParams, rng: np.random.Generator) -> np.ndarray:
    """Blur, uneven illumination, Poisson shot noise (``dose`` counts at signal 1), read noise."""
    s = signal
    if o.blur_px > 0:
        s = ndi.gaussian_filter(s, o.blur_px)
    s = s * _illumination(s.shape, o.illumination, rng)
    s = np.clip(s, 0, None)
    if o.dose > 0:
        s = rng.poisson(s * o.dose) / o.dose
    if o.read_noise > 0:
        s = s + rng.normal(0, o.read_noise * max(float(np.percentile(s, 99.5)), 1e-6), s.shape)
    return s


def _unit(s: np.ndarray) -> np.ndarray:
    hi = float(np.percentile(s, 99.9))
    lo = float(min(np.percentile(s, 0.1), 0.0))
    return ((s - lo) / max(hi - lo, 1e-9)).astype(np.float32)


# ----------------------------------------------------------------------------- modalities
def _no_particles(p: SynthParams):
    q = copy.deepcopy(p.particles)
    q.coverage = 0.0
    return q


def _keep(pop: dict, sel: np.ndarray) -> dict:
    return {k: v[sel] for k, v in pop.items()}


def generate_optical(p: SynthParams, rng: np.random.Generator):
    """Render a non-SPM modality (see module doc). Returns a SynthImage."""
    from particlesnn.synth.generate import SynthImage, truth_table

    rows, cols = p.size
    shape = (rows, cols)
    ps = float(p.pixel_size_nm)
    o = p.optics
    part = _no_particles(p) if p.negative else p.particles
    m = p.modality
    topo = np.zeros(shape)
    extra = {}
    if m in ("haadf", "brightfield-tem"):
        if o.support == "lumpy":
            region = support_region(shape, o.support_fraction, rng)
            sup = lumpy_support(shape, region, o.support_grain_px, rng)
        else:
            region = np.ones(shape, bool)
            sup = carbon_support(shape, rng) if o.support == "carbon" else np.zeros(shape)
        pop = draw_population(part, shape, ps, rng)
        if len(pop["d"]) and o.support == "lumpy":
            ii = np.clip(np.round(pop["y"]).astype(int), 0, rows - 1)
            jj = np.clip(np.round(pop["x"]).astype(int), 0, cols - 1)
            on = region[ii, jj] | (rng.random(len(ii)) < 0.03)
            pop = _keep(pop, on)
        # signal ~ thickness, compressed (sqrt of the apex ratio) so that the smallest
        # particles stay visible, as in real images where they are labelled
        t_ref = float(np.median(pop["h"])) if len(pop["h"]) else 1.0
        w = np.sqrt(pop["h"] / max(t_ref, 1e-9))
        total, top, P, lab = stamp_particles(shape, pop, ps, p.footprint_fraction, weights=w)
        topo = sup + total
        if m == "haadf":
            signal = o.support_brightness * sup + o.particle_contrast * P + rng.uniform(0.0, 0.05)
        else:
            mu_s = o.support_brightness * 0.5
            signal = np.exp(-(mu_s * sup + o.particle_contrast * P))
            if o.defocus_fringe > 0 and total.any():
                dog = ndi.gaussian_filter(P, 1.0) - ndi.gaussian_filter(P, 2.5)
                signal = signal + o.defocus_fringe * dog / max(np.abs(dog).max(), 1e-9) * 0.5
            signal = np.clip(signal, 0.0, None)
    elif m == "sem":
        hgt = grainy_support(shape, o.support_grain_px, rng)
        pop = draw_population(part, shape, ps, rng)
        total, top, _, lab = stamp_particles(shape, pop, ps, p.footprint_fraction)
        hpx = hgt + top / ps  # heights in px units so slopes are geometric
        topo = hpx * ps
        gy, gx = np.gradient(ndi.gaussian_filter(hpx, 0.7))
        slope = np.sqrt(gx * gx + gy * gy)
        tilt_yield = 1.0 / np.sqrt(1.0 / (1.0 + slope * slope)) - 1.0  # 1/cos(a) - 1
        lap = -ndi.gaussian_laplace(hpx, rng.uniform(1.0, 2.5))
        edge = np.clip(lap, 0, None)
        ang = rng.uniform(0, 2 * np.pi)
        shade = (np.cos(ang) * gx + np.sin(ang) * gy) / np.sqrt(1 + slope * slope)
        material = np.where(top > 0, o.particle_contrast * 0.3, 0.0)
        signal = (0.25 + material + 0.35 * np.clip(tilt_yield, 0, 3)
                  + 0.4 * edge / max(np.percentile(edge, 99.5), 1e-9)
                  + rng.uniform(0.0, 0.25) * shade)
        signal = np.clip(signal, 0, None)
    elif m == "fluorescence":
        pop = draw_population(part, shape, ps, rng)
        n = len(pop["d"])
        w = rng.uniform(0.25, 1.0, n) * np.where(rng.random(n) < 0.05, 2.5, 1.0)  # a few bright
        total, top, wmap, lab = stamp_particles(shape, pop, ps, p.footprint_fraction, weights=w)
        tex = 1 + bandpass_field(shape, rng.uniform(1.5, 5), rng, rms=rng.uniform(0.05, 0.3))
        bg = rng.uniform(0.01, 0.08) + fractal_field(shape, 4.0, rng, rms=rng.uniform(0, 0.02))
        signal = np.clip(bg + o.particle_contrast * wmap * tex, 0, None)
        # unlabelled debris: a few small bright specks (not nuclei)
        yy, xx = np.ogrid[0:rows, 0:cols]
        for _ in range(int(rng.integers(0, 6))):
            cy, cx, r = rng.uniform(0, rows), rng.uniform(0, cols), rng.uniform(0.7, 1.5)
            signal += rng.uniform(0.1, 0.6) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        topo = top
    elif m == "brightfield-cells":
        cells = draw_population(part, shape, ps, rng)
        n = len(cells["d"])
        ang = rng.uniform(0, 2 * np.pi, n)
        off = rng.uniform(0, 0.2, n) * cells["d"] / 2 / ps
        nd = cells["d"] * rng.uniform(0.18, 0.32, n)
        nuc = {"x": cells["x"] + off * np.cos(ang), "y": cells["y"] + off * np.sin(ang),
               "d": nd, "h": nd * 0.5, "e": rng.uniform(0, 0.3, n),
               "theta": rng.uniform(0, np.pi, n),
               "shape": np.full(n, SHAPES.index("power"), dtype=np.int64),
               "sp": rng.uniform(0.3, 0.6, n),
               "harm_a": rng.uniform(0, 0.04, (n, 4)), "harm_p": rng.uniform(0, 2 * np.pi, (n, 4)),
               "pop": np.zeros(n), "cluster": cells["cluster"]}
        _, _, cmap, _ = stamp_particles(shape, cells, ps, p.footprint_fraction,
                                        weights=rng.uniform(0.25, 0.6, n))
        _, top, nmap, lab = stamp_particles(shape, nuc, ps, p.footprint_fraction,
                                            weights=rng.uniform(0.6, 1.4, n) * o.particle_contrast)
        ctex = 1 + bandpass_field(shape, rng.uniform(2, 6), rng, rms=rng.uniform(0.1, 0.3))
        signal = rng.uniform(0.85, 0.97) * np.exp(-(np.clip(cmap, 0, 1.2) * ctex + nmap))
        # dark debris specks (not nuclei)
        for _ in range(int(rng.integers(0, 15))):
            cy, cx, r = rng.uniform(0, rows), rng.uniform(0, cols), rng.uniform(1, 4)
            yy, xx = np.ogrid[0:rows, 0:cols]
            signal *= 1 - 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        pop = nuc
        topo = top
        extra["cells"] = int(n)
    else:
        raise ValueError(f"unknown modality {m!r}")

    img = _unit(_detect(signal, o, rng))
    img, lab, blocked = apply_overlays(img, lab, p.overlay, ps, rng)
    labels, kept = relabel(lab)
    table = truth_table(labels, kept - 1, pop, ps, None, blocked)
    hm = HeightMap(topo.astype(np.float32), pixel_size=(ps, ps), channel="topography",
                   unit="nm", metadata={"synthetic": True})
    return SynthImage(height=hm, labels=labels, particles=table, image=img, modality=m,
                      params=p, extra=extra)


def apply_overlays(img: np.ndarray, labels: np.ndarray, ov: OverlayParams, pixel_size_nm: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Burn scale bar / text / frame / info band into ``img`` (float); zero the labels under
    them. Returns ``(img, labels, blocked)`` where ``blocked`` marks the overlay pixels."""
    blocked = np.zeros(img.shape, bool)
    if not (ov.scale_bar or ov.text or ov.frame_px > 0 or ov.info_band > 0):
        return img, labels, blocked
    img = img.copy()
    if ov.info_band > 0:
        blocked |= display.burn_info_band(img, ov.info_band, rng, pixel_size_nm)
    if ov.scale_bar:
        blocked |= display.burn_scale_bar(img, pixel_size_nm, rng)
    if ov.text:
        blocked |= display.burn_text(img, rng)
    if ov.frame_px > 0:
        blocked |= display.burn_frame(img, ov.frame_px)
    labels = np.where(blocked, 0, labels).astype(labels.dtype)
    return img, labels, blocked
