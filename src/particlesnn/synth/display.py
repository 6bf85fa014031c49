"""Plain-image renders: 8-bit grey, false-colour palettes, burnt-in scale bars and text.

These turn a synthetic observation into what a user would export from WSxM/Gwyddion or a
microscope (PNG/BMP), and draw the overlays (scale bar, text, frame, info band) that a
detector must learn to ignore. Overlay functions return the mask of pixels they covered.
"""
from __future__ import annotations

import cv2
import numpy as np

#: Palettes a render may use (matplotlib names; ``particlesnn.io.palette`` can invert them).
PALETTES = ("gray", "afmhot", "hot", "gist_heat", "viridis", "inferno", "magma", "copper", "bone")


def to_unit(image: np.ndarray, clip_percent: float = 0.1) -> np.ndarray:
    """Scale ``image`` to 0..1 (float32) between its ``clip_percent`` and 100-``clip_percent``
    percentiles (0 = plain min-max, as in the original study's I = (H - Hmin)/(Hmax - Hmin))."""
    z = np.asarray(image, dtype=np.float64)
    if clip_percent > 0:
        lo, hi = np.percentile(z, [clip_percent, 100 - clip_percent])
    else:
        lo, hi = float(z.min()), float(z.max())
    if hi <= lo:
        return np.zeros(z.shape, dtype=np.float32)
    return np.clip((z - lo) / (hi - lo), 0, 1).astype(np.float32)


def to_uint8(image: np.ndarray, clip_percent: float = 0.1) -> np.ndarray:
    """8-bit grey render of ``image`` (see :func:`to_unit`)."""
    return np.round(to_unit(image, clip_percent) * 255).astype(np.uint8)


def apply_palette(grey: np.ndarray, name: str = "afmhot") -> np.ndarray:
    """Map an 8-bit grey image through palette ``name`` (one of ``PALETTES``) -> (H, W, 3) uint8.

    ``"gray"`` returns the grey copied into three channels.
    """
    if name not in PALETTES:
        raise ValueError(f"unknown palette {name!r}; use one of {PALETTES}")
    g = np.asarray(grey, dtype=np.uint8)
    if name == "gray":
        return np.repeat(g[..., None], 3, axis=2)
    from matplotlib import colormaps
    lut = (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    return lut[g]


def nice_length(max_len: float) -> float:
    """Largest 1-2-5 x 10^k value not above ``max_len`` (for scale bars)."""
    if max_len <= 0:
        return 0.0
    e = np.floor(np.log10(max_len))
    for m in (5.0, 2.0, 1.0):
        if m * 10 ** e <= max_len:
            return float(m * 10 ** e)
    return float(10 ** e)


def length_text(nm: float) -> str:
    """'20 nm', '1.5 um' style label for a length in nm."""
    if nm >= 1000:
        v = nm / 1000
        return f"{v:g} um"
    return f"{nm:g} nm"


def burn_scale_bar(img: np.ndarray, pixel_size_nm: float | None, rng: np.random.Generator,
                   value: float | np.ndarray | None = None) -> np.ndarray:
    """Draw a scale bar with its length label into ``img`` (in place, grey float or RGB uint8).

    The bar is 15-25 % of the width, a round length (1-2-5 rule) when ``pixel_size_nm`` is
    known, placed in a random corner, white (or ``value``), optionally on a dark box.
    Returns the bool mask of the pixels drawn.
    """
    rows, cols = img.shape[:2]
    frac = rng.uniform(0.15, 0.25)
    if pixel_size_nm:
        length_nm = nice_length(frac * cols * pixel_size_nm)
        bar_px = max(4, int(round(length_nm / pixel_size_nm)))
        text = length_text(length_nm)
    else:
        bar_px = int(frac * cols)
        text = f"{bar_px} px"
    th = max(2, int(rows * rng.uniform(0.008, 0.02)))
    scale = max(0.3, rows / 700 * rng.uniform(0.8, 1.4))
    thick = max(1, int(round(scale * 1.5)))
    (tw, tht), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    margin = int(0.03 * cols) + 2
    box_w = max(bar_px, tw) + 8
    box_h = th + tht + 14
    left = rng.random() < 0.5
    top = rng.random() < 0.3
    x0 = margin if left else cols - margin - box_w
    y0 = margin if top else rows - margin - box_h
    x0, y0 = max(0, x0), max(0, y0)
    mask = np.zeros((rows, cols), np.uint8)
    boxed = rng.random() < 0.4
    if boxed:
        cv2.rectangle(mask, (x0, y0), (x0 + box_w, y0 + box_h), 2, -1)
    cv2.rectangle(mask, (x0 + 4, y0 + box_h - 4 - th), (x0 + 4 + bar_px, y0 + box_h - 4), 1, -1)
    cv2.putText(mask, text, (x0 + 4, y0 + tht + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, 1, thick,
                cv2.LINE_AA)
    _paint(img, mask, value)
    return mask > 0


TEXTS = ("HAADF", "BF", "SE", "x150k", "200 kV", "STM", "U=0.5 V I=0.2 nA", "Pt/HOPG", "Mag 500kx",
         "WD 5.1 mm", "EHT 10 kV", "Det: InLens", "#0042", "scan 3", "Z 2.1 nm", "A", "B", "(c)")


def burn_text(img: np.ndarray, rng: np.random.Generator, value=None) -> np.ndarray:
    """Write 1-3 random short labels (instrument texts, panel letters) into ``img``, in place.

    Returns the bool mask of the pixels drawn.
    """
    rows, cols = img.shape[:2]
    mask = np.zeros((rows, cols), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        text = str(rng.choice(np.array(TEXTS)))
        scale = max(0.3, rows / 600 * rng.uniform(0.6, 1.6))
        thick = max(1, int(round(scale * rng.uniform(1, 2.5))))
        (tw, tht), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        x = int(rng.uniform(0, max(1, cols - tw)))
        lo, hi = tht + 2, rows - 2  # a band lower than the text: the text is cut
        y = int(rng.uniform(lo, hi)) if hi > lo else max(1, hi)
        font = int(rng.choice(np.array([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN,
                                        cv2.FONT_HERSHEY_DUPLEX])))
        cv2.putText(mask, text, (x, y), font, scale, 1, thick, cv2.LINE_AA)
    _paint(img, mask, value)
    return mask > 0


def burn_frame(img: np.ndarray, width_px: int, value=None) -> np.ndarray:
    """Black (or ``value``) frame of ``width_px`` px around ``img``, in place; returns mask."""
    rows, cols = img.shape[:2]
    mask = np.zeros((rows, cols), bool)
    w = int(width_px)
    if w > 0:
        mask[:w] = mask[-w:] = True
        mask[:, :w] = mask[:, -w:] = True
        _paint(img, mask.astype(np.uint8) * 2, 0.0 if value is None else value)
    return mask


def burn_info_band(img: np.ndarray, frac: float, rng: np.random.Generator,
                   pixel_size_nm: float | None = None) -> np.ndarray:
    """Opaque dark info band along the bottom (``frac`` of the rows) with white text and a
    scale bar, as SEM/TEM software saves it. In place; returns the bool mask of the band."""
    rows, cols = img.shape[:2]
    hb = int(round(frac * rows))
    mask = np.zeros((rows, cols), bool)
    if hb < 4:
        return mask
    mask[rows - hb:] = True
    band = img[rows - hb:]
    hi = _white(img)
    band[...] = 0 if img.dtype == np.uint8 else np.min(img) * 0 + 0.0
    burn_text(band, rng, value=hi)
    if pixel_size_nm is not None and rng.random() < 0.8:
        burn_scale_bar(band, pixel_size_nm, rng, value=hi)
    return mask


def _white(img: np.ndarray):
    if img.dtype == np.uint8:
        return 255
    return float(np.percentile(img, 99.9)) * 1.1 + 1e-6


def _paint(img: np.ndarray, mask: np.ndarray, value) -> None:
    """Paint ``mask`` (1 = foreground, 2 = dark box) into ``img`` in place."""
    fg = mask == 1
    box = mask == 2
    hi = _white(img) if value is None else value
    lo = 0 if img.dtype == np.uint8 else float(np.min(img))
    if img.ndim == 3:
        img[box] = lo
        img[fg] = hi
    else:
        img[box] = lo
        img[fg] = hi
