"""Random fields used by the generator: 1/f^beta fields and series, band-limited textures."""
from __future__ import annotations

import numpy as np


def _radial_freq(shape: tuple[int, int]) -> np.ndarray:
    """|f| (cycles/px) on the rfft2 grid of ``shape``."""
    rows, cols = shape
    fy = np.fft.fftfreq(rows)[:, None]
    fx = np.fft.rfftfreq(cols)[None, :]
    return np.sqrt(fx * fx + fy * fy)


def _field_from_spectrum(amp: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator,
                         rms: float) -> np.ndarray:
    """Random-phase field (1D or 2D, ``shape``) with real-FFT spectral amplitude ``amp``, scaled
    to std ``rms``."""
    spec = amp * (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape))
    out = np.fft.irfftn(spec, s=shape, axes=tuple(range(len(shape))))
    sd = out.std()
    if sd > 0:
        out *= rms / sd
    return out


def fractal_field(shape: tuple[int, int], beta: float, rng: np.random.Generator,
                  rms: float = 1.0, fmin: float = 0.0) -> np.ndarray:
    """A zero-mean 2D random field with power spectrum ~ 1/f^beta.

    shape : (rows, cols) px. beta : spectral exponent (2 ~ Brownian surface, 0 = white).
    rms : standard deviation of the result (same unit as wanted, e.g. nm).
    fmin : frequencies below this (cycles/px) are removed (0 keeps all but the mean).
    Returns float64 array of ``shape``.
    """
    f = _radial_freq(shape)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2.0)
    amp[0, 0] = 0.0
    if fmin > 0:
        amp[f < fmin] = 0.0
    return _field_from_spectrum(amp, shape, rng, rms)


def bandpass_field(shape: tuple[int, int], scale_px: float, rng: np.random.Generator,
                   rms: float = 1.0) -> np.ndarray:
    """A zero-mean texture whose features are about ``scale_px`` px across.

    Gaussian-ring spectrum centred on 1/scale_px cycles/px (relative width 0.5). Used for
    amorphous-carbon speckle and grains. Returns float64 of ``shape`` with std ``rms``.
    """
    f = _radial_freq(shape)
    f0 = 1.0 / max(scale_px, 1.0)
    amp = np.exp(-0.5 * ((f - f0) / (0.5 * f0)) ** 2)
    amp[0, 0] = 0.0
    return _field_from_spectrum(amp, shape, rng, rms)


def pink_series(n: int, rng: np.random.Generator, beta: float = 1.0, rms: float = 1.0) -> np.ndarray:
    """A 1D zero-mean series of length ``n`` with spectrum ~ 1/f^beta and std ``rms``."""
    f = np.fft.rfftfreq(n)
    f[0] = 1.0
    amp = f ** (-beta / 2.0)
    amp[0] = 0.0
    return _field_from_spectrum(amp, (n,), rng, rms)
