"""Ground truth: the true surface with its particles, and each particle's footprint (labels).

Footprint rule (documented in ``docs/synthetic.md``): pixel p belongs to particle k when k's
*own* height above its base plane, after tip convolution (primary apex only), exceeds
``fraction * h_k`` (h_k = k's apex height) and k's top there (base + own dilated height) is
above the bare substrate: a particle against a higher terrace (a step edge) is not labelled
where the terrace hides it. Where several particles claim p, p belongs to the one whose
absolute top is highest there.
"""
from __future__ import annotations

import numpy as np

from particlesnn.synth.particles import extent_px, profile
from particlesnn.synth.tip import dilate, kernel_halfwidth


def add_particles(surface: np.ndarray, pop: dict[str, np.ndarray], offset: int,
                  pixel_size_nm: float, tip_shape: str, tip_radius_nm: float,
                  fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put the particles on ``surface`` (in place) and compute their footprints.

    surface : substrate height (nm) on a canvas whose pixel (offset, offset) is image pixel
        (0, 0). pop : population from :func:`particlesnn.synth.particles.draw_population`
        (centres in image px). Particles sit on the substrate height under their centre.
    Returns ``(surface, labels, base)``: labels int32 on the canvas (k = index in pop + 1,
    not yet consecutive), ``base`` (n,) nm the base level of each particle.
    """
    rows, cols = surface.shape
    n = len(pop["d"])
    labels = np.zeros((rows, cols), dtype=np.int32)
    best = np.full((rows, cols), -np.inf)
    base = np.zeros(n)
    ps = pixel_size_nm
    bare = surface.copy()  # the substrate alone: a particle is visible only above it
    for k in range(n):
        cx = pop["x"][k] + offset
        cy = pop["y"][k] + offset
        d, h, e = float(pop["d"][k]), float(pop["h"][k]), float(pop["e"][k])
        ha, hp = pop["harm_a"][k], pop["harm_p"][k]
        ext = extent_px(d, e, ps, float(ha.sum()))
        kt = kernel_halfwidth(tip_shape, tip_radius_nm, h, ps)
        ic, jc = int(np.floor(cy)), int(np.floor(cx))
        # the particle itself (own > 0) lies inside +-ext; its dilation reaches kt further
        i0, i1 = max(0, ic - ext), min(rows, ic + ext + 2)
        j0, j1 = max(0, jc - ext), min(cols, jc + ext + 2)
        if i0 >= i1 or j0 >= j1:
            continue
        bi = int(np.clip(round(cy), 0, rows - 1))
        bj = int(np.clip(round(cx), 0, cols - 1))
        base[k] = surface[bi, bj]
        dy = (np.arange(i0, i1) - cy)[:, None] * ps
        dx = (np.arange(j0, j1) - cx)[None, :] * ps
        own = profile(dx, dy, d, h, e, float(pop["theta"][k]), int(pop["shape"][k]),
                      float(pop["sp"][k]), ha, hp)
        view = surface[i0:i1, j0:j1]
        np.maximum(view, np.where(own > 0, base[k] + own, -np.inf), out=view)
        if kt > 0:
            p0, p1 = min(kt, i0), min(kt, rows - i1)
            q0, q1 = min(kt, j0), min(kt, cols - j1)
            own_d = _dilate_bump(own, (p0, p1, q0, q1), tip_shape, tip_radius_nm, ps, h)
            i0, i1, j0, j1 = i0 - p0, i1 + p1, j0 - q0, j1 + q1
        else:
            own_d = own
        mask = own_d > fraction * h
        abs_d = base[k] + own_d
        bview = best[i0:i1, j0:j1]
        win = mask & (abs_d > bview) & (abs_d > bare[i0:i1, j0:j1])
        bview[win] = abs_d[win]
        labels[i0:i1, j0:j1][win] = k + 1
    return surface, labels, base


def _dilate_bump(own: np.ndarray, pads: tuple[int, int, int, int], shape: str, radius_nm: float,
                 ps: float, h: float) -> np.ndarray:
    """Tip dilation of one particle's own height (zero outside ``own``), padded by ``pads``
    (top, bottom, left, right) px. For the separable parabolic tip the first (x) pass runs only
    on the rows that hold the particle: the padding rows are 0 and stay 0 in that pass."""
    p0, p1, q0, q1 = pads
    if shape != "parabolic":
        return dilate(np.pad(own, ((p0, p1), (q0, q1))), shape, radius_nm, ps, depth_nm=h)
    from scipy import ndimage as ndi

    from particlesnn.synth.tip import kernel_halfwidth
    k = kernel_halfwidth(shape, radius_nm, h, ps)
    u = np.arange(-k, k + 1) * ps
    st = (-(u * u) / (2.0 * radius_nm)).astype(np.float32)
    a = np.pad(own.astype(np.float32), ((0, 0), (q0, q1)))
    a = ndi.grey_dilation(a, structure=st[None, :], mode="constant", cval=0.0)
    a = np.pad(a, ((p0, p1), (0, 0)))
    return ndi.grey_dilation(a, structure=st[:, None], mode="constant", cval=0.0).astype(np.float64)


def relabel(labels: np.ndarray, min_px: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Make labels consecutive 1..m, dropping ids with fewer than ``min_px`` pixels.

    Returns ``(new_labels int32, kept)`` where ``kept[m-1]`` is the old id of new label m.
    """
    counts = np.bincount(labels.ravel())
    ids = np.nonzero(counts >= max(min_px, 1))[0]
    ids = ids[ids > 0]
    lut = np.zeros(counts.shape[0], dtype=np.int32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lut[labels], ids


def stamp_particles(shape: tuple[int, int], pop: dict[str, np.ndarray], pixel_size_nm: float,
                    fraction: float, weights: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Particles on an empty field, no tip (for TEM/SEM/fluorescence renders).

    Returns ``(total, top, weighted, labels)``: ``total`` = sum of the particles' own heights
    (nm; = projected thickness when the profile is read as thickness), ``top`` = their maximum,
    ``weighted`` = sum of ``weights[k] * own_k / h_k`` (per-particle brightness, 0..weight),
    ``labels`` int32 (k = index + 1) by the same footprint rule as :func:`add_particles`.
    """
    rows, cols = shape
    n = len(pop["d"])
    total = np.zeros(shape)
    top = np.zeros(shape)
    wmap = np.zeros(shape)
    labels = np.zeros(shape, dtype=np.int32)
    best = np.zeros(shape)
    ps = pixel_size_nm
    for k in range(n):
        cx, cy = pop["x"][k], pop["y"][k]
        d, h, e = float(pop["d"][k]), float(pop["h"][k]), float(pop["e"][k])
        ha, hp = pop["harm_a"][k], pop["harm_p"][k]
        ext = extent_px(d, e, ps, float(ha.sum()))
        ic, jc = int(np.floor(cy)), int(np.floor(cx))
        i0, i1 = max(0, ic - ext), min(rows, ic + ext + 2)
        j0, j1 = max(0, jc - ext), min(cols, jc + ext + 2)
        if i0 >= i1 or j0 >= j1:
            continue
        dy = (np.arange(i0, i1) - cy)[:, None] * ps
        dx = (np.arange(j0, j1) - cx)[None, :] * ps
        own = profile(dx, dy, d, h, e, float(pop["theta"][k]), int(pop["shape"][k]),
                      float(pop["sp"][k]), ha, hp)
        total[i0:i1, j0:j1] += own
        np.maximum(top[i0:i1, j0:j1], own, out=top[i0:i1, j0:j1])
        if weights is not None:
            wmap[i0:i1, j0:j1] += weights[k] * own / max(h, 1e-9)
        bview = best[i0:i1, j0:j1]
        win = (own > fraction * h) & (own > bview)
        bview[win] = own[win]
        labels[i0:i1, j0:j1][win] = k + 1
    return total, top, wmap, labels
