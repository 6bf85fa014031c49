"""False-colour palettes: known tables, palette detection, inversion and recovery.

Exported SPM pictures are often rendered through a false-colour palette (WSxM's black-red-
yellow-white, Gwyddion's, matplotlib's ``afmhot``, ``viridis``...). Averaging the RGB channels of
such a picture does not give back the height (yellow and cyan have the same grey). This module
turns a picture back into a scalar by finding, for each colour, the nearest point on the palette
curve in RGB space.

All colours are in 8-bit RGB units (0-255); distances are Euclidean in those units.
The known tables live in ``particlesnn/data/palettes.json`` (generated from matplotlib by
``python -m particlesnn.io.palette``); WSxM's own palettes are not public, its default
black-red-yellow-white palette is approximated by ``afmhot``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

#: Palettes tried by :func:`fit_palette`, in this order (ties go to the earlier one).
KNOWN = (
    "afmhot", "hot", "gist_heat", "gray", "viridis", "inferno", "magma", "plasma",
    "cividis", "copper", "bone",
)

DATA_FILE = Path(__file__).resolve().parents[1] / "data" / "palettes.json"

#: Cap (RGB units) on a pixel's distance in :attr:`PaletteFit.mean_distance`.
CAP = 40.0

#: Sub-steps between two palette entries used for inversion (256 entries -> 2041 points).
DENSE = 8


def _from_matplotlib(name: str) -> np.ndarray:
    from matplotlib import colormaps

    cmap = colormaps[name]
    return np.round(cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0)


def write_tables(path: Path = DATA_FILE) -> None:
    """Write the 256-entry RGB tables (0-255 integers) of :data:`KNOWN` to ``path`` (JSON)."""
    tables = {name: _from_matplotlib(name).astype(int).tolist() for name in KNOWN}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"source": "matplotlib colormaps, 256 entries, RGB 0-255 rounded",
                   "palettes": tables}, fh, separators=(",", ":"))


@lru_cache(maxsize=None)
def _tables() -> dict[str, np.ndarray]:
    if DATA_FILE.is_file():
        with open(DATA_FILE) as fh:
            raw = json.load(fh)["palettes"]
        return {k: np.asarray(v, dtype=np.float64) for k, v in raw.items()}
    return {name: _from_matplotlib(name) for name in KNOWN}  # pragma: no cover


def palette_table(name: str) -> np.ndarray:
    """The palette ``name`` as a (256, 3) float array of RGB values 0-255, dark end first.

    Known names: :data:`KNOWN`; any other matplotlib colormap name is taken from matplotlib.
    Raises KeyError for an unknown name.
    """
    t = _tables()
    if name in t:
        return t[name].copy()
    return _from_matplotlib(name)


def densify(table: np.ndarray, factor: int = DENSE) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate a (K, 3) palette to ``(K - 1) * factor + 1`` points.

    Returns (points (M, 3) RGB 0-255, positions (M,) in [0, 1] along the palette index).
    """
    table = np.asarray(table, dtype=np.float64)
    k = len(table)
    pos = np.linspace(0.0, 1.0, (k - 1) * factor + 1)
    src = np.linspace(0.0, 1.0, k)
    pts = np.stack([np.interp(pos, src, table[:, c]) for c in range(3)], axis=1)
    return pts, pos


@dataclass
class PaletteFit:
    """How well a palette explains the colours of an image.

    Attributes
    ----------
    name : str
        Palette name (or ``"recovered"`` for a curve recovered from the image).
    median_distance : float
        Pixel-weighted median RGB distance (0-255 units) from each colour to the palette curve.
    mean_distance : float
        Pixel-weighted mean of the distances, each capped at :data:`CAP` RGB units (so a few
        annotation pixels cannot decide): the ranking key of :func:`fit_palette`.
    fraction_close : float
        Fraction of pixels within 12 RGB units of the curve.
    """

    name: str
    median_distance: float
    mean_distance: float
    fraction_close: float


def unique_colours(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct colours of an (H, W, 3) uint8 image.

    Returns (colours (K, 3) float, counts (K,), inverse (H, W) index of each pixel's colour).
    """
    rgb = np.asarray(rgb)
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    packed = (r << 16) | (g << 8) | b
    keys, inverse, counts = np.unique(packed.ravel(), return_inverse=True, return_counts=True)
    cols = np.stack([(keys >> 16) & 255, (keys >> 8) & 255, keys & 255], axis=1).astype(np.float64)
    return cols, counts, inverse.reshape(rgb.shape[:2])


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cw = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cw, cw[-1] / 2.0)])


def invert_colours(colours: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position on the palette of each colour, by nearest point on the densified palette curve.

    Parameters
    ----------
    colours : (K, 3) RGB 0-255.
    table : (N, 3) palette, dark (position 0) first.

    Returns
    -------
    (positions (K,) in [0, 1], distances (K,) in RGB units 0-255).
    """
    pts, pos = densify(table)
    dist, idx = cKDTree(pts).query(np.asarray(colours, dtype=np.float64))
    return pos[idx], dist


def score(colours: np.ndarray, counts: np.ndarray, table: np.ndarray, name: str) -> PaletteFit:
    """:class:`PaletteFit` of ``table`` to distinct ``colours`` occurring ``counts`` times."""
    _, dist = invert_colours(colours, table)
    w = counts.astype(np.float64)
    return PaletteFit(
        name,
        _weighted_median(dist, w),
        float((np.minimum(dist, CAP) * w).sum() / w.sum()),
        float(w[dist <= 12.0].sum() / w.sum()),
    )


def fit_palette(colours: np.ndarray, counts: np.ndarray, names=KNOWN) -> list[PaletteFit]:
    """Score each known palette against an image's colours; best first.

    The ranking key is the capped mean distance (:attr:`PaletteFit.mean_distance`), not the
    median: palettes that share their dark segment (afmhot, hot and gist_heat all start
    black -> red) tie on the median of a mostly dark image and differ only in the brighter tail.
    """
    fits = [score(colours, counts, palette_table(n), n) for n in names]
    return sorted(fits, key=lambda f: (f.mean_distance, f.median_distance))


def recover_palette(colours: np.ndarray, counts: np.ndarray, max_colours: int = 4000,
                    min_count: int = 2, bin_size: float | None = None) -> np.ndarray:
    """Recover an unknown palette as a 1D curve through an image's colours.

    Colours are first pooled into RGB cubes of ``bin_size`` units (count-weighted mean colour
    per cube; default 8 when the image has more than 1000 distinct colours, as JPEG noise gives,
    else no pooling). Those occurring at least ``min_count`` times (at most ``max_colours``, most
    frequent first) are joined by a minimum spanning tree in RGB space; the longest path through
    the tree from the darkest colour is the palette curve (a discrete principal curve). Stray
    colours (annotation, anti-aliased text) hang off that path as short branches and are left
    out. The path is smoothed over 3 (5 when pooled) nodes.

    Returns
    -------
    (256, 3) RGB 0-255 palette, dark end first, evenly spaced in RGB arc length.
    Raises ValueError when too few colours are left.
    """
    from scipy.ndimage import uniform_filter1d
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree, shortest_path

    colours = np.asarray(colours, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if bin_size is None:
        bin_size = 8.0 if len(colours) > 1000 else 0.0
    if bin_size > 0:
        key = np.floor(colours / bin_size).astype(np.int64)
        key = (key[:, 0] * 4096 + key[:, 1]) * 4096 + key[:, 2]
        uk, inv = np.unique(key, return_inverse=True)
        n = np.bincount(inv, weights=counts)
        c = np.stack([np.bincount(inv, weights=counts * colours[:, j]) for j in range(3)], 1)
        c /= n[:, None]
        colours, counts = c, n
    keep = counts >= min_count
    if keep.sum() < 8:
        keep = np.ones(len(colours), bool)
    c, n = colours[keep], counts[keep]
    if len(c) > max_colours:
        c = c[np.argsort(n)[::-1][:max_colours]]
    if len(c) < 2:
        raise ValueError("too few distinct colours to recover a palette")
    k = min(12, len(c) - 1)
    d, j = cKDTree(c).query(c, k + 1)
    rows = np.repeat(np.arange(len(c)), k)
    g = coo_matrix((d[:, 1:].ravel() + 1e-9, (rows, j[:, 1:].ravel())), shape=(len(c), len(c)))
    mst = minimum_spanning_tree(g.tocsr())
    mst = mst + mst.T
    start = int(np.argmin(c @ np.array([0.299, 0.587, 0.114])))
    dist, pred = shortest_path(mst, directed=False, indices=start, return_predecessors=True)
    end = int(np.argmax(np.where(np.isfinite(dist), dist, -1)))
    path = [end]
    while path[-1] != start and pred[path[-1]] >= 0:
        path.append(int(pred[path[-1]]))
    curve = c[np.array(path[::-1])]
    if len(curve) < 2:
        raise ValueError("could not trace a colour curve")
    win = 5 if bin_size > 0 else 3
    if len(curve) >= 2 * win:
        curve = uniform_filter1d(curve, size=win, axis=0, mode="nearest")
    seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    s = np.r_[0.0, np.cumsum(seg)]
    if s[-1] <= 0:
        raise ValueError("colour curve has zero length")
    t = np.linspace(0.0, s[-1], 256)
    return np.stack([np.interp(t, s, curve[:, ch]) for ch in range(3)], axis=1)


if __name__ == "__main__":  # regenerate the shipped tables
    write_tables()
    print(f"wrote {DATA_FILE}")
