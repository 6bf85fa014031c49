"""SPM scanning artefacts and noise, applied to a tip-dilated height map (nm) in raster order.

Rows are scan lines (fast axis x, left to right), the frame is scanned top to bottom.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.signal import lfilter

from particlesnn.synth.noise import pink_series
from particlesnn.synth.params import InstrumentParams


def warp_fields(shape: tuple[int, int], p: InstrumentParams) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-row sampling shifts (dx, dy) in px caused by drift and piezo creep.

    The image pixel at row i, column j shows the sample point ``(j + dx[i], i + dy[i])`` px.
    Drift accumulates linearly with the row (time); creep is ``creep_px * exp(-i / tau)``.
    Returns None when there is no distortion.
    """
    rows, _ = shape
    if p.drift_px == (0.0, 0.0) and p.creep_px == 0.0:
        return None
    t = np.arange(rows) / max(rows - 1, 1)
    dx = p.drift_px[0] * t + p.creep_px * np.exp(-t / max(p.creep_decay, 1e-3))
    dy = p.drift_px[1] * t
    return dx, dy


def warp(image: np.ndarray, labels: np.ndarray, fields: tuple[np.ndarray, np.ndarray]
         ) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``image`` (linear) and ``labels`` (nearest) along the drift/creep fields."""
    rows, cols = image.shape
    dx, dy = fields
    yy = (np.arange(rows) + dy)[:, None] * np.ones((1, cols))
    xx = np.arange(cols)[None, :] + dx[:, None]
    coords = np.stack([yy, xx])
    img = ndi.map_coordinates(image, coords, order=1, mode="nearest")
    lab = ndi.map_coordinates(labels, coords, order=0, mode="nearest")
    return img, lab.astype(labels.dtype)


def sample_to_image(x: np.ndarray, y: np.ndarray, shape: tuple[int, int],
                    fields: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """Map sample-frame points (px) to image px (inverse of the warp, by fixed-point iteration)."""
    if fields is None:
        return x, y
    rows = shape[0]
    dx, dy = fields
    r = np.arange(rows, dtype=np.float64)
    yi = np.array(y, dtype=np.float64)
    for _ in range(6):
        yi = y - np.interp(yi, r, dy)
    xi = x - np.interp(yi, r, dx)
    return xi, yi


def scan_artefacts(z: np.ndarray, p: InstrumentParams, rng: np.random.Generator) -> np.ndarray:
    """Apply feedback lag, line offsets/tilts, jumps, streaks, spikes and noise (all nm).

    ``z`` is the tip-dilated height (nm); returns a new array. Every random draw comes from
    ``rng``; a parameter at 0 draws nothing.
    """
    rows, cols = z.shape
    out = np.array(z, dtype=np.float64, copy=True)
    if p.feedback_lag > 0:
        a = float(np.clip(p.feedback_lag, 0, 0.95))
        # y[n] = (1 - a) x[n] + a y[n-1], started at the line's first sample
        zi = (a * out[:, :1])
        out, _ = lfilter([1 - a], [1, -a], out, axis=1, zi=zi)
    if p.line_offset_nm > 0:
        # mix of white and slowly wandering per-line offsets
        off = rng.normal(0, p.line_offset_nm, rows) * 0.6
        off += pink_series(rows, rng, beta=1.5, rms=p.line_offset_nm * 0.8)
        out += off[:, None]
    if p.line_tilt_nm > 0:
        sl = rng.normal(0, p.line_tilt_nm, rows)
        out += sl[:, None] * (np.linspace(-0.5, 0.5, cols)[None, :])
    for _ in range(p.n_jumps):
        r0 = int(rng.integers(1, rows))
        c0 = int(rng.integers(0, cols))
        jump = rng.normal(0, p.jump_nm)
        out[r0:, :] += jump
        out[r0 - 1, c0:] += jump  # the jump happens mid-line
    for _ in range(p.n_streaks):
        r0 = int(rng.integers(0, rows))
        nl = int(rng.integers(1, 4))
        c0 = int(rng.integers(0, cols))
        c1 = int(min(cols, c0 + rng.integers(cols // 10 + 1, cols + 1)))
        hgt = rng.normal(0, p.streak_nm)
        out[r0:r0 + nl, c0:c1] += hgt
    if p.pink_noise_nm > 0:
        out += pink_series(rows * cols, rng, beta=1.0, rms=p.pink_noise_nm).reshape(rows, cols)
    if p.white_noise_nm > 0:
        out += rng.normal(0, p.white_noise_nm, (rows, cols))
    for _ in range(p.n_spikes):
        r0 = int(rng.integers(0, rows))
        c0 = int(rng.integers(0, cols))
        ln = int(rng.integers(1, 4))
        out[r0, c0:c0 + ln] += rng.normal(0, p.spike_nm)
    return out
