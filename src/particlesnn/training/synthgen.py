"""A small built-in synthetic particle-image generator for training (numpy/scipy/OpenCV).

It complements :mod:`particlesnn.synth` (the project's full generator): it is fast, and it
always exists, so training runs even when the full generator or ``../shared`` is absent.
Images are plain 2D float arrays (arbitrary units, particles bright unless ``inverted``), with
an int32 label image. Recipe (after ``../shared/DETECTOR-NOTES.md``): caps ``(1 - r^2)^p``,
log-normal diameters 4-80 px, elliptical with rough outlines, 0-45 % coverage with touching
clusters; tilt, terraces, 1/f background, grain textures, scan-line offsets, streaks, noise,
blur, gamma; negatives (texture, text, scale bars) with no particle.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage as ndi


def _fractal_noise(shape, beta, rng):
    """1/f^beta noise, zero mean, unit std."""
    ny, nx = shape
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.rfftfreq(nx)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spec = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f ** (beta / 2)
    spec[0, 0] = 0
    n = np.fft.irfft2(spec, s=shape)
    return (n - n.mean()) / (n.std() + 1e-12)


def _background(shape, rng, amp):
    """Tilt, terraces, 1/f roughness and grainy texture, scaled by ``amp`` (particle height ~1)."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    bg = np.zeros(shape, np.float32)
    if rng.random() < 0.5:  # residual tilt / bow
        bg += amp * rng.normal(0, 0.3) * (xx / nx) + amp * rng.normal(0, 0.3) * (yy / ny)
    if rng.random() < 0.3:  # terrace steps
        ang = rng.uniform(0, np.pi)
        s = np.cos(ang) * xx + np.sin(ang) * yy
        nsteps = rng.integers(1, 5)
        for c in rng.uniform(s.min(), s.max(), nsteps):
            bg += rng.choice([-1, 1]) * amp * rng.uniform(0.1, 0.6) * (s > c)
    if rng.random() < 0.7:  # long-range roughness
        bg += amp * rng.uniform(0.02, 0.3) * _fractal_noise(shape, rng.uniform(2.0, 3.5), rng)
    if rng.random() < 0.5:  # grainy support texture: the negative that fooled the first model
        sig = rng.uniform(0.6, 3.0)
        g = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sig)
        g /= g.std() + 1e-12
        bg += amp * rng.uniform(0.03, 0.35) * g
    return bg


def _render_particles(shape, rng, diam_med, coverage, labels, height):
    """Draw particles into ``labels``/``height`` in place (max-height wins); returns count."""
    ny, nx = shape
    area_target = coverage * ny * nx
    sig = rng.uniform(0.08, 0.35)
    ecc_max = rng.uniform(0.0, 0.45)
    rough = rng.uniform(0.0, 0.12)
    p_exp = rng.uniform(0.3, 1.0)
    cluster = rng.uniform(0.0, 0.7)
    area = 0.0
    k = int(labels.max())
    centres = []
    tries = 0
    while area < area_target and tries < 4000:
        tries += 1
        d = float(np.clip(diam_med * math.exp(rng.normal(0, sig)), 3.5, 110))
        r = d / 2
        e = rng.uniform(0, ecc_max)
        a, b = r * (1 + e) ** 0.5, r / (1 + e) ** 0.5
        th = rng.uniform(0, np.pi)
        if centres and rng.random() < cluster:  # touching neighbour of an earlier particle
            cy, cx, cr = centres[rng.integers(len(centres))]
            ang = rng.uniform(0, 2 * np.pi)
            dd = (cr + r) * rng.uniform(0.75, 1.0)
            cy, cx = cy + dd * np.sin(ang), cx + dd * np.cos(ang)
        else:
            cy, cx = rng.uniform(-r, ny + r), rng.uniform(-r, nx + r)
        rr = int(math.ceil(max(a, b) * (1 + 2 * rough))) + 1
        y0, y1 = max(int(cy) - rr, 0), min(int(cy) + rr + 2, ny)
        x0, x1 = max(int(cx) - rr, 0), min(int(cx) + rr + 2, nx)
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(th) + dy * np.sin(th)
        v = -dx * np.sin(th) + dy * np.cos(th)
        rho2 = (u / a) ** 2 + (v / b) ** 2
        if rough > 0:
            phi = np.arctan2(v, u)
            mod = 1.0
            for harm in (2, 3, 4, 5):
                mod = mod + rough * rng.normal(0, 1) / harm * np.cos(harm * phi + rng.uniform(0, 6.3))
            rho2 = rho2 / np.maximum(mod, 0.5) ** 2
        inside = rho2 < 1
        if inside.sum() < 6:
            continue
        k += 1
        h = rng.uniform(0.5, 1.5) * (np.clip(1 - rho2, 0, 1) ** p_exp)
        sub_h, sub_l = height[y0:y1, x0:x1], labels[y0:y1, x0:x1]
        win = inside & (h > sub_h)
        sub_h[win] = h[win]
        sub_l[win] = k
        centres.append((cy, cx, r))
        area += float(inside.sum())
    return k


def _text_and_bars(img, rng, amp):
    """Scale bars and text labels (negatives: not particles)."""
    ny, nx = img.shape
    canvas = np.zeros(img.shape, np.uint8)
    for _ in range(rng.integers(1, 3)):
        if rng.random() < 0.5:
            y, x = rng.integers(0, ny - 10), rng.integers(0, nx - 40)
            w, h = rng.integers(20, max(21, nx // 3)), rng.integers(2, 8)
            canvas[y:y + h, x:x + w] = 1
        txt = "".join(rng.choice(list("0123456789 nmuµkVx")) for _ in range(rng.integers(2, 7)))
        cv2.putText(canvas, txt, (int(rng.integers(0, nx - 60)), int(rng.integers(15, ny))),
                    cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.3, 1.0)), 1,
                    int(rng.integers(1, 3)))
    return img + amp * rng.uniform(0.5, 2.0) * canvas.astype(np.float32) * (1 if rng.random() < 0.8 else -1)


def generate_sample(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image and its labels.

    Parameters
    ----------
    rng : numpy Generator.
    size : side in px.

    Returns
    -------
    image : (size, size) float32, arbitrary units, particles bright (about 1 high) on a
        background near 0 (before any inversion the caller may apply).
    labels : (size, size) int32 instance labels.
    """
    shape = (size, size)
    labels = np.zeros(shape, np.int32)
    height = np.zeros(shape, np.float32)
    negative = rng.random() < 0.12
    if not negative:
        diam = float(np.exp(rng.uniform(np.log(4.0), np.log(60.0))))
        coverage = rng.uniform(0.02, 0.45)
        _render_particles(shape, rng, diam, coverage, labels, height)
    img = height.copy()
    # Smooth SPM tip / TEM blur of the particles themselves.
    if rng.random() < 0.5:
        img = ndi.gaussian_filter(img, rng.uniform(0.3, 1.5))
    bg_amp = rng.uniform(0.05, 1.0) if not negative else rng.uniform(0.2, 1.5)
    img = img + _background(shape, rng, bg_amp)
    if rng.random() < (0.5 if negative else 0.08):
        img = _text_and_bars(img, rng, 1.0)
    if rng.random() < 0.4:  # scan-line offsets
        img = img + rng.uniform(0.01, 0.15) * rng.standard_normal((size, 1)).astype(np.float32)
    if rng.random() < 0.15:  # streaks (tip changes)
        for _ in range(rng.integers(1, 4)):
            y = rng.integers(0, size)
            x0 = rng.integers(0, size)
            img[y, x0:x0 + rng.integers(10, size)] += rng.uniform(0.2, 1.0)
    img = img + rng.uniform(0.005, 0.15) * rng.standard_normal(shape).astype(np.float32)
    return img.astype(np.float32), labels


def render_disc_field(size: int = 256, diameter: float = 16.0, spacing: float = 32.0,
                      noise: float = 0.02, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A clearly separated grid of round caps (tests and sanity checks).

    Returns ``(image, labels)``: float32 heights (caps 1 high, noise std ``noise``) and int32
    labels; ``diameter`` and ``spacing`` in px.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.zeros((size, size), np.float32)
    labels = np.zeros((size, size), np.int32)
    r = diameter / 2
    k = 0
    for cy in np.arange(spacing / 2, size - r, spacing):
        for cx in np.arange(spacing / 2, size - r, spacing):
            rho2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2
            m = rho2 < 1
            k += 1
            labels[m] = k
            img[m] = np.sqrt(1 - rho2[m])
    img += noise * rng.standard_normal(img.shape).astype(np.float32)
    return img, labels
