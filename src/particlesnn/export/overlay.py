"""Overlay picture: the height map in a fiery palette with particle contours, ids and scale bar.

:func:`render_overlay` returns an RGB array and writes a PNG when given a path. Small scans are
enlarged by an integer factor (nearest neighbour, pixels stay honest) to about 1000 px so that
contours and text stay readable; contours are drawn as polygons from
:func:`particlesnn.polygons.label_polygons` (the same outlines the exports carry).
"""
from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.polygons import label_polygons

__all__ = ["render_overlay", "write_heightmap_png", "nice_length", "TARGET_SIZE"]

TARGET_SIZE = 1000  # px, enlarge small images to about this long side
MAX_IDS = 400  # never print more ids than this
CONTOUR_RGB = (0, 225, 255)  # cyan: clear on black-red-yellow-white
FLAGGED_RGB = (255, 64, 255)  # magenta
PERCENTILES = (0.5, 99.5)  # robust colour limits


def nice_length(target: float) -> float:
    """Largest 1-2-5 x 10^k value <= ``target`` (any unit); 0 for target <= 0."""
    if not np.isfinite(target) or target <= 0:
        return 0.0
    exp = np.floor(np.log10(target))
    for m in (5.0, 2.0, 1.0):
        v = m * 10.0**exp
        if v <= target * (1 + 1e-9):
            return float(v)
    return float(10.0 ** (exp - 1) * 5)


def _format_length(nm: float) -> str:
    """'500 nm', '2 µm', '0.5 nm' for a length in nm."""
    if nm >= 1000:
        v, unit = nm / 1000.0, "µm"
    else:
        v, unit = nm, "nm"
    return f"{v:g} {unit}"


@lru_cache(maxsize=16)
def _font(size: int, bold: bool = True):
    from matplotlib import font_manager
    from PIL import ImageFont

    try:
        fp = font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")
        return ImageFont.truetype(font_manager.findfont(fp, fallback_to_default=True), size)
    except Exception:  # pragma: no cover - matplotlib always ships DejaVu
        return ImageFont.load_default()


def _colourise(data: np.ndarray) -> tuple[np.ndarray, float, float]:
    """afmhot RGB uint8 of ``data`` with robust limits; NaNs black. Returns (rgb, lo, hi)."""
    from matplotlib import colormaps

    finite = np.isfinite(data)
    if finite.any():
        lo, hi = np.percentile(data[finite], PERCENTILES)
        if not hi > lo:
            lo, hi = float(np.min(data[finite])), float(np.max(data[finite]))
    else:
        lo, hi = 0.0, 1.0
    span = hi - lo if hi > lo else 1.0
    norm = np.clip((np.where(finite, data, lo) - lo) / span, 0.0, 1.0)
    rgb = (colormaps["afmhot"](norm)[..., :3] * 255 + 0.5).astype(np.uint8)
    rgb[~finite] = 0
    return rgb, float(lo), float(hi)


def displayed(hm: HeightMap | np.ndarray) -> np.ndarray:
    """The values to show of a levelled map: as recorded, also when the analysis mirrored it
    to make dark particles bright (``metadata["polarity"] == "dark"``, see
    :func:`particlesnn.preprocess.orient`): a person expects their own image, dark particles
    dark, under the outlines. Mirroring back keeps the range."""
    if not isinstance(hm, HeightMap):
        return np.asarray(hm, dtype=float)
    if hm.metadata.get("polarity") == "dark":
        from particlesnn.preprocess import mirror

        return mirror(hm.data)
    return np.asarray(hm.data, dtype=float)


def write_heightmap_png(path: str | Path, hm: HeightMap | np.ndarray) -> Path:
    """Write the bare height map as an RGB PNG at its native size (1 image px = 1 map px).

    afmhot palette with robust limits (0.5-99.5 percentiles), NaNs black, no decorations:
    the backdrop for editing the exported outlines in LabelMe, VIA or COCO tools, whose
    coordinates refer to this pixel grid. Returns the path written.
    """
    from PIL import Image

    data = displayed(hm)
    src = hm.source if isinstance(hm, HeightMap) else None
    if data.ndim != 2 or data.size == 0:
        raise InputError(src, f"height map must be a non-empty 2D array, got shape {data.shape}")
    rgb, _, _ = _colourise(data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, "RGB").save(path, format="PNG")
    return path


def render_overlay(
    hm: HeightMap | np.ndarray,
    labels: np.ndarray | None,
    path: str | Path | None = None,
    *,
    ids: bool = True,
    scale_bar: bool = True,
    flagged: Iterable[int] | None = None,
    colorbar: bool = True,
    title: str | None = None,
) -> np.ndarray:
    """Render the height map with particle contours, ids and a scale bar.

    A map the analysis mirrored (dark particles, ``metadata["polarity"] == "dark"``) is shown
    as recorded (:func:`displayed`).

    Parameters
    ----------
    hm : HeightMap (heights in ``hm.unit``, pixel size in nm/px or None) or a 2D array
        (treated as a plain image without scale).
    labels : (rows, cols) int label image (0 = background) of the same shape, or None for
        the bare height map.
    path : where to write the PNG (parent folders created); None = only return the array.
    ids : print particle ids (white on a dark outline) when not too crowded: at the centre of
        a particle wider than its id, beside the bounding box of a smaller one; skipped
        altogether above 400 particles or when the median particle is under a third of the
        text height; an id that would overlap another id or a legend is left out.
    scale_bar : draw a scale bar (1-2-5 length near 1/5 of the width, labelled in nm or µm)
        at the bottom right; only when the pixel size is known. Its length uses the x pixel
        size (pixels are shown square).
    flagged : labels to outline in magenta instead of cyan (e.g. particles cut by the border
        or with a low score).
    colorbar : draw a small height colour bar with its limits at the bottom left.
    title : optional text at the top left (e.g. the file name).

    Returns
    -------
    (H, W, 3) uint8 RGB image; H, W = the map's shape times an integer factor >= 1 that brings
    the long side near 1000 px (at most x16).
    """
    from PIL import Image, ImageDraw

    if isinstance(hm, HeightMap):
        data, px, unit, src = displayed(hm), hm.pixel_size, hm.unit, hm.source
    else:
        data, px, unit, src = np.asarray(hm, dtype=float), None, "a.u.", None
    if data.ndim != 2 or data.size == 0:
        raise InputError(src, f"height map must be a non-empty 2D array, got shape {data.shape}")
    rows, cols = data.shape
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != data.shape:
            raise InputError(src, f"labels shape {labels.shape} differs from image shape {data.shape}")
        if labels.dtype.kind not in "iub" or (labels.size and labels.min() < 0):
            raise InputError(src, "labels must be a non-negative integer image")

    f = int(np.clip(int(np.ceil(TARGET_SIZE / max(rows, cols) - 0.25)), 1, 16))
    base, lo, hi = _colourise(data.astype(float))
    if f > 1:
        base = np.repeat(np.repeat(base, f, axis=0), f, axis=1)
    H, W = base.shape[:2]
    img = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(img, "RGBA")
    short = min(H, W)
    text_px = int(np.clip(round(short * 0.016), 10, 28))
    font = _font(text_px)
    lw = int(np.clip(round(short / 600), 1, 3))
    flagged_set = {int(k) for k in (flagged or [])}

    margin = max(8, int(short * 0.02))
    plates: list[tuple[float, float, float, float]] = []
    legends = []
    if scale_bar and px is not None and px[0] > 0:
        box = _scale_bar_box(draw, W, H, px[0], f, margin, font, text_px)
        if box is not None:
            plates.append(box[0])
            legends.append(lambda b=box: _draw_scale_bar(draw, b, font))
    if colorbar:
        box = _colorbar_box(draw, W, H, lo, hi, unit, margin, font, text_px)
        if box is not None:
            plates.append(box[0])
            legends.append(lambda b=box: _draw_colorbar(img, draw, b, font))
    if title:
        stroke = max(1, text_px // 8)
        plates.append(draw.textbbox((margin, margin), str(title), font=font, stroke_width=stroke))
        legends.append(lambda: draw.text((margin, margin), str(title), font=font, fill=(255, 255, 255, 255),
                                         stroke_width=stroke, stroke_fill=(0, 0, 0, 255)))

    if labels is not None and labels.max() > 0:
        polys = label_polygons(labels.astype(np.int64))
        for k, p in polys.items():
            pts = [(float(x) * f, float(y) * f) for x, y in p]
            if len(pts) < 2:
                continue
            colour = FLAGGED_RGB if k in flagged_set else CONTOUR_RGB
            width = lw + 1 if k in flagged_set else lw
            draw.line(pts + [pts[0]], fill=colour + (255,), width=width, joint="curve")
        if ids:
            _draw_ids(draw, labels, f, font, text_px, plates)
    for draw_legend in legends:
        draw_legend()

    out = np.asarray(img.convert("RGB"))
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(out).save(path, format="PNG", compress_level=6)
    return out


def _draw_ids(draw, labels: np.ndarray, f: int, font, text_px: int,
              reserved: list[tuple[float, float, float, float]]) -> None:
    """Particle ids, skipping crowded ones (see render_overlay).

    A particle wider than its id gets it at its centre of mass; a smaller one gets it just
    beside its bounding box (upper right, else another corner) so the particle stays visible.
    Ids never overlap each other nor the ``reserved`` boxes (legend plates).
    """
    n_ids = np.unique(labels[labels > 0])
    if n_ids.size == 0 or n_ids.size > MAX_IDS:
        return
    areas = ndi.sum_labels(np.ones_like(labels, dtype=float), labels, n_ids)
    diam_out = np.sqrt(np.maximum(areas, 1.0)) * f  # px in the output image
    # too crowded when the typical particle is much smaller than a digit
    if np.median(diam_out) < 0.3 * text_px:
        return
    centres = ndi.center_of_mass(np.ones_like(labels, dtype=float), labels, n_ids)
    slices = ndi.find_objects(labels.astype(np.int64))
    stroke = max(1, text_px // 8)
    H, W = labels.shape[0] * f, labels.shape[1] * f
    taken = list(reserved)

    def free(box) -> bool:
        if box[0] < 0 or box[1] < 0 or box[2] > W or box[3] > H:
            return False
        return all(box[2] < o[0] or box[0] > o[2] or box[3] < o[1] or box[1] > o[3] for o in taken)

    # big particles first: their ids are the most readable
    for i in np.argsort(-areas):
        k = int(n_ids[i])
        text = str(k)
        l, t, r, b = draw.textbbox((0, 0), text, font=font, anchor="mm", stroke_width=stroke)
        tw, th = r - l, b - t
        cy, cx = centres[i]
        sl = slices[k - 1]
        x0, x1 = sl[1].start * f, sl[1].stop * f
        y0, y1 = sl[0].start * f, sl[0].stop * f
        if min(x1 - x0, y1 - y0) >= 1.1 * max(tw, th):
            spots = [((cx + 0.5) * f, (cy + 0.5) * f)]
        else:
            gap = 1
            spots = [(x1 + gap + tw / 2, y0 - gap - th / 2 + th * 0.35),
                     (x0 - gap - tw / 2, y0 - gap - th / 2 + th * 0.35),
                     (x1 + gap + tw / 2, y1 + gap + th / 2 - th * 0.35),
                     (x0 - gap - tw / 2, y1 + gap + th / 2 - th * 0.35)]
        for x, y in spots:
            box = (x - tw / 2 - 1, y - th / 2 - 1, x + tw / 2 + 1, y + th / 2 + 1)
            if free(box):
                taken.append(box)
                draw.text((x, y), text, font=font, anchor="mm", fill=(255, 255, 255, 255),
                          stroke_width=stroke, stroke_fill=(0, 0, 0, 255))
                break


def _scale_bar_box(draw, W: int, H: int, px_nm: float, f: int, margin: int, font, text_px: int):
    """Layout of the scale bar (plate box, bar box, label, label anchor) or None."""
    width_nm = W / f * px_nm
    length_nm = nice_length(width_nm / 5.0)
    if length_nm <= 0:
        return None
    bar_px = length_nm / px_nm * f
    if bar_px < 0.12 * W:  # 1-2-5 step fell short: take the next one up if it still fits
        up = nice_length(width_nm / 5.0 * 2.6)
        if up / px_nm * f <= 0.35 * W:
            length_nm, bar_px = up, up / px_nm * f
    label = _format_length(length_nm)
    bar_h = max(4, text_px // 3)
    l, t, r, b = draw.textbbox((0, 0), label, font=font)
    tw, th = r - l, b - t
    pad = max(4, text_px // 3)
    plate_w = max(bar_px, tw) + 2 * pad
    plate_h = th + bar_h + 3 * pad
    x1, y1 = W - margin, H - margin
    x0, y0 = x1 - plate_w, y1 - plate_h
    bx0 = x0 + (plate_w - bar_px) / 2
    by1 = y1 - pad
    return (x0, y0, x1, y1), (bx0, by1 - bar_h, bx0 + bar_px, by1), label, (x0 + plate_w / 2, y0 + pad)


def _draw_scale_bar(draw, layout, font) -> None:
    """1-2-5 scale bar near 1/5 of the width, bottom right, on a dark translucent plate."""
    plate, bar, label, at = layout
    draw.rectangle(plate, fill=(0, 0, 0, 150))
    # the bar spans exactly length/pixel size: PIL's rectangle includes both end pixels
    draw.rectangle((bar[0], bar[1], bar[2] - 1, bar[3]), fill=(255, 255, 255, 255))
    draw.text(at, label, font=font, anchor="mt", fill=(255, 255, 255, 255))


def _colorbar_box(draw, W: int, H: int, lo: float, hi: float, unit: str, margin: int, font,
                  text_px: int):
    """Layout of the colour bar (plate box, strip box, texts) or None when too small."""
    cb_w = int(min(0.22 * W, 260))
    cb_h = max(6, text_px // 2)
    if cb_w < 30:
        return None
    pad = max(4, text_px // 3)
    lo_s, hi_s = f"{lo:.3g}", f"{hi:.3g} {unit}"
    l, t, r, b = draw.textbbox((0, 0), hi_s, font=font)
    th = b - t
    plate_w = cb_w + 2 * pad
    plate_h = cb_h + th + 3 * pad
    x0, y1 = margin, H - margin
    y0 = y1 - plate_h
    sx, sy = x0 + pad, y1 - pad - cb_h
    return (x0, y0, x0 + plate_w, y1), (sx, sy, cb_w, cb_h), (lo_s, hi_s), y0 + pad


def _draw_colorbar(img, draw, layout, font) -> None:
    """Horizontal afmhot strip with its limits, bottom left."""
    from matplotlib import colormaps
    from PIL import Image

    plate, (sx, sy, cb_w, cb_h), (lo_s, hi_s), ty = layout
    draw.rectangle(plate, fill=(0, 0, 0, 150))
    grad = (colormaps["afmhot"](np.linspace(0, 1, cb_w))[:, :3] * 255).astype(np.uint8)
    strip = np.repeat(grad[None, :, :], cb_h, axis=0)
    img.paste(Image.fromarray(strip, "RGB"), (int(sx), int(sy)))
    draw.rectangle((sx - 1, sy - 1, sx + cb_w, sy + cb_h), outline=(255, 255, 255, 255), width=1)
    draw.text((sx, ty), lo_s, font=font, anchor="lt", fill=(255, 255, 255, 255))
    draw.text((sx + cb_w, ty), hi_s, font=font, anchor="rt", fill=(255, 255, 255, 255))
