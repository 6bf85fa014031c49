"""Shared helpers of the benchmark scripts: running a method, timing, memory, tables, overlays."""
from __future__ import annotations

import os
import platform
import resource
import sys
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from particlesnn.heightmap import HeightMap  # noqa: E402
from particlesnn.segment import Segmentation  # noqa: E402


#: Model folder the "model" method uses (None = the shipped default); set by ``--model``.
MODEL_DIR: str | None = None
_MODEL = None


def _model():
    """The model of the "model" method (``MODEL_DIR``), loaded once."""
    global _MODEL
    if _MODEL is None:
        from particlesnn.model import load_model

        _MODEL = load_model(MODEL_DIR)
    return _MODEL


def segment(hm: HeightMap, method: str) -> Segmentation:
    """``particlesnn.segment.segment`` when the dispatcher exists, else the classic module.
    The model (``MODEL_DIR``) is loaded once."""
    try:
        from particlesnn.segment import segment as dispatch
    except ImportError:
        dispatch = None
    if dispatch is not None:
        if method == "model":
            return dispatch(hm, method=method, model=_model())
        return dispatch(hm, method=method)
    from particlesnn.segment import classic

    if method in ("threshold", "watershed"):
        return getattr(classic, method)(hm.data)
    raise RuntimeError(f"method {method!r} is not available (no particlesnn.segment.segment)")


def segment_oriented(levelled: HeightMap, polarity: str, method: str):
    """:func:`particlesnn.segment.segment_oriented` (orient, segment; the detector checks a
    doubtful polarity call) with the model of :func:`segment`: (map, polarity, result)."""
    from particlesnn.segment import segment_oriented as so

    if method != "model":
        return so(levelled, polarity, method)
    return so(levelled, polarity, "model", model=_model())


def available(methods: list[str], probe: HeightMap) -> tuple[list[str], dict[str, str]]:
    """The methods that run on ``probe``, and why the others do not."""
    ok, why = [], {}
    for m in methods:
        try:
            segment(probe, m)
            ok.append(m)
        except Exception as err:  # a missing model or dispatcher: report, do not crash
            why[m] = f"{type(err).__name__}: {err}"[:200]
    return ok, why


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def peak_mb(fn, *args, **kwargs) -> float:
    """Peak Python/numpy heap (MB) allocated during one call (tracemalloc; native allocations
    of onnxruntime are not seen: see the process's max RSS for those)."""
    tracemalloc.start()
    try:
        fn(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 1e6


def max_rss_mb() -> float:
    """Maximum resident set size of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> str:
    """One line: date (UTC), CPU, cores available, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu}, {cores} cores, "
            f"Python {platform.python_version()}")


def fmt(v, f=".3f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not np.isfinite(v):
        return "-"
    if f == "d":
        return str(int(v))
    return format(float(v), f)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table (numbers right-aligned)."""
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join([":--"] + ["--:"] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def overlay_png(path: Path, image: np.ndarray, pred_labels: np.ndarray, truth, max_side: int = 600,
                title: str | None = None) -> int:
    """Write a small overlay PNG: grey image, true outlines/boxes green, predicted outlines red.

    Returns the file size in bytes. The image is downscaled so its longer side is ``max_side``.
    """
    from PIL import Image, ImageDraw
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    from particlesnn.evaluate import Boxes

    img = np.asarray(image, dtype=np.float64)
    lo, hi = np.nanpercentile(img, [0.5, 99.5])
    g = np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1)
    rgb = np.repeat((g * 255).astype(np.uint8)[..., None], 3, axis=2)
    scale = min(1.0, max_side / max(rgb.shape[:2]))
    # outlines as thick as one pixel of the downscaled picture, or they vanish in it
    width = max(1, int(np.ceil(1.0 / scale)))

    def outline(lab):
        b = find_boundaries(lab, mode="inner")
        return ndimage.binary_dilation(b, iterations=width - 1) if width > 1 else b

    if not isinstance(truth, Boxes):
        rgb[outline(truth)] = (0, 220, 0)
    rgb[outline(pred_labels)] = (255, 40, 40)
    im = Image.fromarray(rgb)
    if scale < 1.0:
        im = im.resize((max(1, int(im.size[0] * scale)), max(1, int(im.size[1] * scale))), Image.LANCZOS)
    draw = ImageDraw.Draw(im)
    if isinstance(truth, Boxes):
        for x0, y0, x1, y1 in truth.xyxy * scale:
            draw.rectangle([x0, y0, x1, y1], outline=(0, 220, 0))
    if title:
        draw.rectangle([0, 0, 8 + 6 * len(title), 14], fill=(0, 0, 0))
        draw.text((4, 2), title, fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    im = im.quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    im.save(path, optimize=True)
    return path.stat().st_size
