"""Particle populations: sizes, shapes, placement (sparse to crowded, chains, clusters) and the
height profile of one particle.

A population is a dict of 1D arrays (one entry per particle), see :func:`draw_population`.
"""
from __future__ import annotations

import numpy as np

from particlesnn.synth.params import SHAPES, ParticleParams

N_HARM = 4  # outline harmonics m = 2..5


def _lognormal(rng: np.random.Generator, mean: float, cv: float, n: int) -> np.ndarray:
    """``n`` log-normal draws with the given arithmetic mean and coefficient of variation."""
    s2 = np.log1p(cv * cv)
    mu = np.log(mean) - s2 / 2.0
    return rng.lognormal(mu, np.sqrt(s2), n)


def draw_population(p: ParticleParams, shape: tuple[int, int], pixel_size_nm: float,
                    rng: np.random.Generator,
                    sites: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Draw sizes, shapes and positions of the particles of one image.

    shape : image (rows, cols) px; pixel_size_nm : nm/px.
    sites : (ys, xs) px of preferred nucleation sites (HOPG step edges); a particle that is not
        placed in a cluster goes to a random site with probability ``p.step_fraction``.
    Returns a dict of arrays, one entry per placed particle, sorted by placement order:
    ``x``, ``y`` (centre, px, sample frame; may lie outside the image by up to one radius:
    particles cut by the border), ``d`` (physical diameter, nm), ``h`` (apex height, nm),
    ``e`` (ellipticity 1 - minor/major), ``theta`` (major-axis angle, rad, from +x toward +y),
    ``shape`` (index into ``SHAPES``), ``sp`` (shape parameter: power exponent or number of
    facets), ``harm_a``/``harm_p`` (n, 4) outline harmonics, ``pop`` (0 or 1, population),
    ``cluster`` (id of the cluster the particle belongs to; its own index when isolated).
    """
    rows, cols = shape
    empty = {k: np.zeros(0) for k in ("x", "y", "d", "h", "e", "theta", "sp", "pop", "cluster")}
    empty["shape"] = np.zeros(0, dtype=np.int64)
    empty["harm_a"] = np.zeros((0, N_HARM))
    empty["harm_p"] = np.zeros((0, N_HARM))
    if p.coverage <= 0:
        return empty
    w_nm, h_nm = cols * pixel_size_nm, rows * pixel_size_nm
    m1 = p.diameter_mean_nm
    mean_area = np.pi / 4 * m1 * m1 * (1 + p.diameter_cv ** 2)
    if p.bimodal_fraction > 0:
        m2 = p.diameter2_mean_nm
        a2 = np.pi / 4 * m2 * m2 * (1 + p.diameter2_cv ** 2)
        mean_area = (1 - p.bimodal_fraction) * mean_area + p.bimodal_fraction * a2
    margin = 0.5 * max(m1, p.diameter2_mean_nm if p.bimodal_fraction > 0 else m1)
    area = (w_nm + 2 * margin) * (h_nm + 2 * margin)
    n = int(round(p.coverage * area / mean_area))
    n = int(min(max(n, 1), p.n_max))
    pop = (rng.random(n) < p.bimodal_fraction).astype(np.int64)
    d = np.where(pop == 0, _lognormal(rng, m1, p.diameter_cv, n),
                 _lognormal(rng, max(p.diameter2_mean_nm, 1e-3), p.diameter2_cv, n))
    d = np.clip(d, p.diameter_min_nm, p.diameter_max_nm)
    order = np.argsort(-d, kind="stable")
    d, pop = d[order], pop[order]
    aspect = np.clip(rng.normal(p.aspect_mean, p.aspect_sd, n), 0.1, 0.95)
    h = aspect * d
    e = rng.uniform(0, max(p.ellipticity_max, 0.0), n)
    theta = rng.uniform(0, np.pi, n)
    if p.shape == "mixed":
        # spherical (cap / truncated by aspect), ellipsoid, power
        choice = rng.choice(np.array([0, 1, 3]), size=n, p=[0.4, 0.3, 0.3])
        shp = np.where((choice == 0) & (aspect > 0.5), 2, choice)
    else:
        if p.shape not in SHAPES:
            raise ValueError(f"unknown particle shape {p.shape!r}; use one of {SHAPES} or 'mixed'")
        shp = np.full(n, SHAPES.index(p.shape))
        if p.shape == "cap":
            shp = np.where(aspect > 0.5, 2, 0)
    sp = np.where(shp == 3, rng.uniform(0.5, 1.2, n), 0.0)
    sp = np.where(shp == 4, rng.integers(4, 9, n), sp)
    amp = p.outline_roughness * rng.random((n, N_HARM)) / np.arange(1, N_HARM + 1)
    harm_p = rng.uniform(0, 2 * np.pi, (n, N_HARM))

    # placement (px, sample frame)
    r_px = d / 2 / pixel_size_nm
    mpx = margin / pixel_size_nm
    xs = np.empty(n)
    ys = np.empty(n)
    cl = np.empty(n)
    keep = np.zeros(n, dtype=bool)
    placed = 0
    idx_placed = np.empty(n, dtype=np.int64)
    rmax_ell = r_px / np.sqrt(1 - np.clip(e, 0, 0.9))  # semi-major axis, px
    n_sites = 0 if sites is None or p.step_fraction <= 0 else len(sites[0])
    for i in range(n):
        ok = False
        for attempt in range(25):
            if placed > 0 and rng.random() < p.cluster_fraction:
                j = idx_placed[rng.integers(placed)]
                ang = rng.uniform(0, 2 * np.pi)
                dist = (r_px[i] + r_px[j]) * rng.uniform(p.min_gap, max(p.min_gap, 1.0) + 0.08)
                x, y = xs[j] + dist * np.cos(ang), ys[j] + dist * np.sin(ang)
                c = cl[j]
            elif n_sites and rng.random() < p.step_fraction:
                s_i = rng.integers(n_sites)
                x = sites[1][s_i] + rng.uniform(-0.5, 0.5)
                y = sites[0][s_i] + rng.uniform(-0.5, 0.5)
                c = float(i)
            else:
                x = rng.uniform(-mpx, cols + mpx)
                y = rng.uniform(-mpx, rows + mpx)
                c = float(i)
            if x < -r_px[i] or x > cols - 1 + r_px[i] or y < -r_px[i] or y > rows - 1 + r_px[i]:
                continue
            if placed:
                ip = idx_placed[:placed]
                dd = np.hypot(xs[ip] - x, ys[ip] - y)
                # ellipses: use the equivalent radius for the gap rule, but never let one
                # particle's centre fall inside another's semi-major disc
                if np.any(dd < p.min_gap * (r_px[ip] + r_px[i])) or np.any(
                        dd < np.maximum(rmax_ell[ip], rmax_ell[i]) * 0.75):
                    continue
            ok = True
            break
        if ok:
            xs[i], ys[i], cl[i] = x, y, c
            keep[i] = True
            idx_placed[placed] = i
            placed += 1
    sel = idx_placed[:placed]
    return {
        "x": xs[sel], "y": ys[sel], "d": d[sel], "h": h[sel], "e": e[sel], "theta": theta[sel],
        "shape": shp[sel].astype(np.int64), "sp": sp[sel], "harm_a": amp[sel],
        "harm_p": harm_p[sel], "pop": pop[sel].astype(np.float64), "cluster": cl[sel],
    }


def profile(dx_nm: np.ndarray, dy_nm: np.ndarray, d: float, h: float, e: float, theta: float,
            shape: int, sp: float, harm_a: np.ndarray | None = None,
            harm_p: np.ndarray | None = None) -> np.ndarray:
    """Own height (nm) of one particle above its base plane at offsets (dx, dy) nm from its centre.

    d : physical diameter = equivalent-circle diameter of the base ellipse, nm.
    h : apex height, nm. e : ellipticity (1 - minor/major). theta : major axis angle, rad.
    shape : index into ``SHAPES``; sp : shape parameter (power exponent / facet count).
    harm_a, harm_p : outline harmonics m = 2..5 (relative amplitudes, phases).
    Returns an array like ``dx_nm``, 0 outside the base, maximum ``h``.
    """
    a_eq = d / 2.0
    q = np.sqrt(max(1.0 - e, 1e-3))
    a, b = a_eq / q, a_eq * q
    c, s = np.cos(theta), np.sin(theta)
    un = (dx_nm * c + dy_nm * s) / a
    vn = (-dx_nm * s + dy_nm * c) / b
    rho2 = un * un + vn * vn
    name = SHAPES[shape]
    if (harm_a is not None and np.any(harm_a > 0)) or name == "faceted":
        rho = np.sqrt(rho2)
        if name == "faceted":
            phi = np.arctan2(vn, un)
            nf = int(sp) if sp >= 3 else 6
            ph0 = harm_p[0] if harm_p is not None else 0.0
            apo = np.sqrt(np.pi / (nf * np.tan(np.pi / nf)))  # polygon of area pi
            sector = 2 * np.pi / nf
            delta = np.mod(phi - ph0 + sector / 2, sector) - sector / 2
            rho = rho * np.cos(delta) / apo
        if harm_a is not None and np.any(harm_a > 0):
            # cos(m phi + p) = Re(w^m e^{ip}), w = e^{i phi}: no trigonometry per pixel
            w = (un + 1j * vn) / np.maximum(np.sqrt(rho2), 1e-12)
            wm = w * w
            mod = np.ones(rho.shape)
            for m in range(len(harm_a)):
                if harm_a[m] > 0:
                    mod += harm_a[m] * (wm * np.exp(1j * harm_p[m])).real
                wm = wm * w
            rho = rho / mod
        rho2 = rho * rho
    inside = rho2 < 1.0
    z = np.zeros_like(rho2)
    if name == "cap" or name == "truncated":
        if h <= a_eq:
            R = (a_eq * a_eq + h * h) / (2 * h)
            z[inside] = np.sqrt(R * R - rho2[inside] * a_eq * a_eq) - (R - h)
        else:
            z[inside] = h - a_eq + a_eq * np.sqrt(1 - rho2[inside])
    elif name == "ellipsoid":
        z[inside] = h * np.sqrt(1 - rho2[inside])
    elif name == "power":
        z[inside] = h * (1 - rho2[inside]) ** (sp if sp > 0 else 1.0)
    elif name == "faceted":
        bevel = 0.12
        z[inside] = h * np.clip((1 - np.sqrt(rho2[inside])) / bevel, 0, 1)
    else:  # pragma: no cover - guarded by SHAPES
        raise ValueError(name)
    return np.maximum(z, 0.0)


def extent_px(d: float, e: float, pixel_size_nm: float, roughness: float = 0.0) -> int:
    """Half-size (px) of a square patch that surely contains the particle's base.

    roughness : sum of the outline harmonic amplitudes (the outline reaches at most
    1 / (1 - roughness) of the ellipse radius); facets reach 1.25x (squares).
    """
    a = d / 2.0 / np.sqrt(max(1.0 - e, 1e-3)) * 1.3 / (1.0 - min(roughness, 0.5))
    return int(np.ceil(a / pixel_size_nm)) + 2
