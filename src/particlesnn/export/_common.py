"""Helpers shared by the exporters (not public API)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from particlesnn.errors import InputError
from particlesnn.polygons import polygon_pixels

PARTICLE = "particle"


def check_labels(labels: np.ndarray, where: str | Path | None) -> np.ndarray:
    """Validate a 2D non-negative integer label image; InputError otherwise."""
    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.size == 0:
        raise InputError(where, f"label image must be a non-empty 2D array, got shape {lab.shape}")
    if lab.dtype.kind == "b":
        lab = lab.astype(np.int32)
    if lab.dtype.kind not in "iu":
        raise InputError(where, f"label image must hold integers, got dtype {lab.dtype}")
    if lab.size and lab.min() < 0:
        raise InputError(where, "label image has negative labels")
    return lab


def score_of(scores: Any, k: int) -> float | None:
    """Score of particle k from an array (index k-1) or a dict, None when unknown."""
    if scores is None:
        return None
    try:
        if isinstance(scores, dict):
            v = scores.get(k)
        else:
            arr = np.asarray(scores, dtype=float).ravel()
            v = arr[k - 1] if 0 < k <= arr.size else None
    except (TypeError, ValueError):
        return None
    if v is None or not np.isfinite(float(v)):
        return None
    return float(v)


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; InputError naming the file when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({exc})") from exc


def dump_json(path: str | Path, obj: Any) -> Path:
    """Write JSON (UTF-8, indented), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def round_pts(poly: np.ndarray) -> list[list[float]]:
    """(k, 2) -> [[x, y], ...] with at most 3 decimals (half-pixel vertices stay exact)."""
    return [[round(float(x), 3), round(float(y), 3)] for x, y in np.asarray(poly).reshape(-1, 2)]


def ellipse_polygon(cx: float, cy: float, rx: float, ry: float, theta: float = 0.0,
                    n: int | None = None) -> np.ndarray:
    """Polygon (n, 2) x, y approximating an ellipse (radii px, rotation theta rad)."""
    if n is None:
        n = int(np.clip(4 * np.ceil(max(abs(rx), abs(ry), 1.0)), 16, 360))
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = np.cos(theta), np.sin(theta)
    return np.column_stack([cx + c * x - s * y, cy + s * x + c * y])


def rect_polygon(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Axis-aligned rectangle as a polygon (corners in any order)."""
    xa, xb = sorted((x0, x1))
    ya, yb = sorted((y0, y1))
    return np.array([[xa, ya], [xb, ya], [xb, yb], [xa, yb]], dtype=float)


def objects_to_labels(objects: list[tuple[Any, list[np.ndarray]]], shape: tuple[int, int]) -> np.ndarray:
    """Label image from [(sort key, [polygon, ...])], labels 1..n in key order, consecutive.

    Each object is the union of its polygons' pixels (pixel centre inside, see
    :mod:`particlesnn.polygons`). Objects are drawn largest first so that a small particle
    lying on a big one survives; an object whose pixels are all taken by others disappears
    and the labels stay consecutive.
    """
    rows, cols = int(shape[0]), int(shape[1])
    pix = []
    for _, polys in objects:
        rr = [polygon_pixels(p, (rows, cols)) for p in polys]
        r = np.concatenate([a for a, _ in rr]) if rr else np.zeros(0, np.intp)
        c = np.concatenate([b for _, b in rr]) if rr else np.zeros(0, np.intp)
        pix.append((r, c))
    order = sorted(range(len(objects)), key=lambda i: _key(objects[i][0]))
    rank = {i: n + 1 for n, i in enumerate(order)}
    tmp = np.zeros((rows, cols), dtype=np.int32)
    for i in sorted(range(len(objects)), key=lambda i: -pix[i][0].size):
        tmp[pix[i]] = rank[i]
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(tmp)[0].astype(np.int32)


def _key(k: Any) -> tuple:
    """Sort key mixing numbers (first) and other ids (after, as text)."""
    if isinstance(k, tuple):
        return tuple(_key(x) for x in k)
    if isinstance(k, (int, float, np.integer, np.floating)) and not isinstance(k, bool):
        return (0, float(k), "")
    return (1, 0.0, str(k))
