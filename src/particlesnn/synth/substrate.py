"""The SPM substrate: HOPG terraces (0.335 nm steps), roughness, pits, point defects, lattice,
and (held-out preset only) the grains of a granular film."""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from particlesnn.synth.noise import fractal_field, pink_series
from particlesnn.synth.params import SubstrateParams


def terrace_index(shape: tuple[int, int], n_steps: int, layers_max: int, waviness: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Integer terrace level per pixel (number of graphite layers above the lowest terrace).

    Step edges are gently meandering lines crossing the image at random angles; crossing an
    edge changes the level by 1..``layers_max`` layers (up or down). ``waviness`` is the edge
    meander amplitude as a fraction of the image size. Returns int32 array of ``shape``,
    minimum 0.
    """
    rows, cols = shape
    level = np.zeros(shape, dtype=np.int32)
    if n_steps <= 0:
        return level
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    scale = float(max(rows, cols))
    # a common dominant direction (HOPG steps are often roughly parallel), with scatter
    base = rng.uniform(0, np.pi)
    for _ in range(n_steps):
        ang = base + rng.normal(0, 0.35)
        nx, ny = np.cos(ang), np.sin(ang)
        # signed distance to a line through a random point, plus a 1D meander along the line
        px, py = rng.uniform(0.1, 0.9) * cols, rng.uniform(0.1, 0.9) * rows
        along = -ny * (xx - px) + nx * (yy - py)
        n_s = int(2 * scale) + 8
        meander = pink_series(n_s, rng, beta=2.0, rms=waviness * scale)
        idx = np.clip((along + scale).astype(np.int64), 0, n_s - 1)
        dist = nx * (xx - px) + ny * (yy - py) + meander[idx]
        layers = int(rng.integers(1, max(1, layers_max) + 1))
        sign = 1 if rng.random() < 0.5 else -1
        level += sign * layers * (dist > 0)
    level -= level.min()
    return level


def hopg(params: SubstrateParams, shape: tuple[int, int], pixel_size_nm: float,
         rng: np.random.Generator, return_edges: bool = False):
    """Height of the bare substrate in nm (no tilt: tilt is added after tip convolution).

    ``params.kind == "flat"`` returns zeros. Otherwise: terraces of ``step_height_nm`` steps,
    1/f^beta roughness of ``roughness_rms_nm``, one-layer vacancy pits, bright point defects
    (not particles) and, where resolvable, the atomic lattice.
    return_edges : also return a bool mask of the step-edge pixels (lower side of each edge),
        where particles nucleate preferentially.
    """
    rows, cols = shape
    z = np.zeros(shape, dtype=np.float64)
    edges = np.zeros(shape, dtype=bool)
    if params.kind == "flat":
        return (z, edges) if return_edges else z
    if params.n_steps > 0:
        lev = terrace_index(shape, params.n_steps, params.step_layers_max,
                            params.step_waviness, rng)
        z += params.step_height_nm * lev
        dx = np.diff(lev, axis=1)
        dy = np.diff(lev, axis=0)
        edges[:, :-1] |= dx > 0
        edges[:, 1:] |= dx < 0
        edges[:-1, :] |= dy > 0
        edges[1:, :] |= dy < 0
    if params.roughness_rms_nm > 0:
        z += fractal_field(shape, params.roughness_beta, rng, rms=params.roughness_rms_nm)
    if params.grain_nm > 0 and params.grain_rms_nm > 0:
        z += grains(shape, params.grain_nm / pixel_size_nm, params.grain_rms_nm, rng)
    for _ in range(params.n_pits):
        r = rng.uniform(0.5, 4.0) / pixel_size_nm
        cx, cy = rng.uniform(0, cols), rng.uniform(0, rows)
        _stamp(z, cx, cy, r, -params.step_height_nm, sharp=True)
    for _ in range(params.n_point_defects):
        w = rng.uniform(0.15, 0.5) / pixel_size_nm
        cx, cy = rng.uniform(0, cols), rng.uniform(0, rows)
        _stamp(z, cx, cy, w, rng.uniform(0.02, 0.1), sharp=False)
    if params.lattice_nm > 0 and pixel_size_nm < 0.12:
        a = 0.246 / pixel_size_nm  # lattice period in px
        yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
        th = rng.uniform(0, np.pi / 3)
        lat = np.zeros(shape)
        for k in range(3):
            ang = th + k * np.pi / 3
            lat += np.cos(2 * np.pi / a * (np.cos(ang) * xx + np.sin(ang) * yy) * 2 / np.sqrt(3))
        z += params.lattice_nm * lat / 3.0
    return (z, edges) if return_edges else z


def grains(shape: tuple[int, int], size_px: float, rms_nm: float,
           rng: np.random.Generator) -> np.ndarray:
    """Height of a granular film, nm: Voronoi grains of mean size ``size_px`` px (seeds
    uniform, one per ``size_px**2`` px), each a flat top at its own height (normal, rms
    ``rms_nm``, mean 0), rounded over about a twentieth of a grain (at least 1 px) so that grain
    boundaries are slopes rather than cliffs."""
    rows, cols = shape
    n = max(2, int(round(rows * cols / max(size_px, 2.0) ** 2)))
    seeds = np.zeros(shape, bool)
    seeds[rng.integers(0, rows, n), rng.integers(0, cols, n)] = True
    iy, ix = ndi.distance_transform_edt(~seeds, return_distances=False, return_indices=True)
    height = np.zeros(shape)
    height[seeds] = rng.normal(0.0, rms_nm, int(seeds.sum()))
    z = height[iy, ix]
    return ndi.gaussian_filter(z, max(1.0, size_px / 20.0))


def _stamp(z: np.ndarray, cx: float, cy: float, r: float, dz: float, sharp: bool) -> None:
    """Add a round feature of radius ``r`` px and height ``dz`` nm at (cx, cy) px, in place.

    ``sharp``: flat-bottomed pit with a 1 px soft edge; else a Gaussian bump of sigma ``r``.
    """
    rows, cols = z.shape
    ext = int(np.ceil(3 * r + 2))
    i0, i1 = max(0, int(cy) - ext), min(rows, int(cy) + ext + 1)
    j0, j1 = max(0, int(cx) - ext), min(cols, int(cx) + ext + 1)
    if i0 >= i1 or j0 >= j1:
        return
    yy, xx = np.mgrid[i0:i1, j0:j1]
    d = np.hypot(xx - cx, yy - cy)
    if sharp:
        z[i0:i1, j0:j1] += dz * np.clip(r + 0.5 - d, 0.0, 1.0)
    else:
        z[i0:i1, j0:j1] += dz * np.exp(-0.5 * (d / max(r, 0.3)) ** 2)
