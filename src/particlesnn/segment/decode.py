"""Decoding the detector's maps into instances: markers + watershed (scikit-image).

The maps (all float in [0, 1], same shape, px grid of the image the network saw):

* ``"prob"``     foreground probability;
* ``"dist"``     distance to the particle's boundary normalised per particle (1 at the centre);
* ``"boundary"`` probability of an instance's inner boundary (optional).

Foreground is ``prob > prob_thresh``; each connected region of ``dist > marker_thresh`` inside
the foreground seeds one particle; a watershed on ``-dist`` inside the foreground grows the
seeds, so touching particles come out separate. Foreground regions without a seed (tiny
particles) become one particle each.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from particlesnn.segment import Segmentation, keep_labels

#: Default decoding thresholds (the shipped model's ``thresholds.json`` overrides them).
DEFAULTS = {"prob_thresh": 0.5, "marker_thresh": 0.6, "min_area": 4, "min_score": 0.0}


def decode(maps: dict, prob_thresh: float = 0.5, marker_thresh: float = 0.6,
           min_area: int = 4, min_score: float = 0.0, peak_h: float = 0.0) -> Segmentation:
    """Instances from the detector's maps.

    Parameters
    ----------
    maps : dict with ``"prob"`` and ``"dist"`` (and optionally ``"boundary"``), 2D float
        arrays in [0, 1] of one shape.
    prob_thresh : foreground threshold on ``prob``.
    marker_thresh : seed threshold on ``dist`` (higher -> fewer splits; 0.6 beat 0.45 in the
        first experiment).
    min_area : particles smaller than this many px are dropped.
    min_score : particles whose score (mean ``prob`` over the particle) is below are dropped.
    peak_h : when > 0, every peak of ``dist`` inside the foreground that stands at least
        ``peak_h`` above the highest pass to a higher peak (its dynamic) seeds a particle of
        its own too, when no seed region holds it: a neighbour's shoulder whose ``dist``
        never reaches ``marker_thresh`` is split off (:func:`peak_labels`). 0 = off.

    Returns
    -------
    Segmentation with consecutive int32 labels, per-particle scores (mean foreground
    probability, in [0, 1]) and ``info`` holding the thresholds used.
    """
    prob = np.asarray(maps["prob"], np.float32)
    dist = np.asarray(maps["dist"], np.float32)
    if prob.ndim != 2 or prob.shape != dist.shape:
        raise ValueError(f"prob and dist must be 2D of one shape, got {prob.shape}, {dist.shape}")
    fg = prob > prob_thresh
    info = {"prob_thresh": float(prob_thresh), "marker_thresh": float(marker_thresh),
            "min_area": int(min_area), "min_score": float(min_score)}
    if not fg.any():
        return Segmentation(np.zeros(prob.shape, np.int32), np.zeros(0, np.float32), info)
    seed_mask = fg & (dist > marker_thresh)
    if "boundary" in maps and maps["boundary"] is not None:
        seed_mask &= np.asarray(maps["boundary"]) < 0.5
    if peak_h > 0:
        return _finish(peak_labels(dist, fg, seed_mask, peak_h), prob, min_area, min_score,
                       {**info, "peak_h": float(peak_h)})
    markers, nm = ndi.label(seed_mask)
    # Foreground components with no seed get one seed: the component itself.
    comp, nc = ndi.label(fg)
    if nc:
        has_seed = np.zeros(nc + 1, bool)
        has_seed[np.unique(comp[markers > 0])] = True
        lone = ~has_seed[comp] & fg
        if lone.any():
            extra, ne = ndi.label(lone)
            markers[extra > 0] = extra[extra > 0] + nm
    labels = watershed(-dist, markers, mask=fg)
    return _finish(labels, prob, min_area, min_score, info)


def peak_labels(dist: np.ndarray, fg: np.ndarray, seed_mask: np.ndarray, h: float) -> np.ndarray:
    """Label image of the foreground ``fg``: one particle per connected region of ``seed_mask``
    and one per peak of ``dist`` whose dynamic is at least ``h`` (and that no seed region holds).

    One watershed on ``-dist`` (8-connected) from the seed regions and from every local
    maximum of ``dist`` (3 x 3) outside them gives basins; basins are then joined in decreasing
    order of the pass (saddle) between them, as in the computation of dynamics: a group of
    basins without a seed whose top stands at least ``h`` above the pass becomes a particle of
    its own, two groups that both own a particle stay apart, any other pair is joined. A group
    never joined to an owner (a foreground region without seed or peak of dynamic ``h``) is one
    particle. Without seeds the particles are those of the regions of
    ``skimage.morphology.h_maxima(dist, h)`` (tested); decoding takes about half the time it
    takes with ``h_maxima`` seeds (docs/model.md, session 17).
    """
    markers, nm = ndi.label(seed_mask)
    d = np.where(fg, dist, -1.0).astype(np.float32)
    local = (d >= cv2.dilate(d, np.ones((3, 3), np.uint8))) & fg & (markers == 0)
    peaks, npk = ndi.label(local, structure=np.ones((3, 3), bool))
    if npk:
        markers = np.where(peaks > 0, peaks + nm, markers)
    n = nm + npk
    basins = watershed(-dist, markers, mask=fg, connectivity=2)
    if n == 0:
        return basins
    top = np.asarray(ndi.maximum(d, markers, index=np.arange(n + 1)), np.float64)
    lo, hi, sad = [], [], []
    for a, b, da, db in ((basins[:, :-1], basins[:, 1:], d[:, :-1], d[:, 1:]),
                         (basins[:-1], basins[1:], d[:-1], d[1:]),
                         (basins[:-1, :-1], basins[1:, 1:], d[:-1, :-1], d[1:, 1:]),
                         (basins[:-1, 1:], basins[1:, :-1], d[:-1, 1:], d[1:, :-1])):
        m = (a != b) & (a > 0) & (b > 0)
        a, b = a[m].astype(np.int64), b[m].astype(np.int64)
        lo.append(np.minimum(a, b))
        hi.append(np.maximum(a, b))
        sad.append(np.minimum(da[m], db[m]))
    lo, hi, sad = np.concatenate(lo), np.concatenate(hi), np.concatenate(sad)
    # the pass between two basins: the highest of the lower sides of their border's pixel pairs
    key = lo * (n + 1) + hi
    o = np.lexsort((-sad, key))
    first = np.r_[key[o][:1] >= 0, key[o][1:] != key[o][:-1]]
    o = o[first]
    o = o[np.argsort(-sad[o], kind="stable")]
    parent = list(range(n + 1))
    tops = top.tolist()
    owner = [False] + [True] * nm + [False] * npk

    def root(x: int) -> int:
        r = x
        while parent[r] != r:
            r = parent[r]
        while parent[x] != r:
            parent[x], x = r, parent[x]
        return r

    for x, y, s in zip(lo[o].tolist(), hi[o].tolist(), sad[o].tolist()):
        rx, ry = root(x), root(y)
        if rx == ry:
            continue
        ox = owner[rx] or tops[rx] - s >= h
        oy = owner[ry] or tops[ry] - s >= h
        owner[rx], owner[ry] = ox, oy
        if ox and oy:
            continue
        if oy:
            rx, ry = ry, rx
        parent[ry] = rx
        tops[rx] = max(tops[rx], tops[ry])
    lut = np.asarray([root(i) for i in range(n + 1)], np.int32)
    return lut[basins]


def _finish(labels: np.ndarray, prob: np.ndarray, min_area: int, min_score: float,
            info: dict) -> Segmentation:
    """Drop small / low-score particles, renumber 1..n, score = mean prob."""
    labels = labels.astype(np.int32, copy=False)
    n = int(labels.max())
    if n == 0:
        return Segmentation(labels, np.zeros(0, np.float32), info)
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n + 1)
    psum = np.bincount(flat, weights=prob.ravel(), minlength=n + 1)
    score = psum / np.maximum(area, 1)
    keep = (area >= min_area) & (score >= min_score)
    keep[0] = False
    return Segmentation(keep_labels(labels, keep), score[keep].astype(np.float32), info)


def relabel_with_scores(labels: np.ndarray, prob: np.ndarray, min_area: int = 1,
                        min_score: float = 0.0, info: dict | None = None) -> Segmentation:
    """Renumber a label image 1..n and score each particle by mean ``prob`` (px grid of labels)."""
    return _finish(np.asarray(labels), np.asarray(prob, np.float32), min_area, min_score,
                   dict(info or {}))


_BOARD = np.zeros((0, 0), np.float32)


def _board(rows: int, cols: int, parity: int) -> np.ndarray:
    """+1e-3 on the black squares ((row + col + parity) even) of a rows x cols checkerboard,
    -1e-3 elsewhere (a view of a cached array, grown on demand)."""
    global _BOARD
    board = _BOARD  # one reference: another thread may replace the cache meanwhile
    if board.shape[0] < rows + 1 or board.shape[1] < cols:
        n = max(rows + 1, cols, 2 * board.shape[0], 64)
        grid = np.add.outer(np.arange(n), np.arange(n)) % 2 == 0
        board = np.where(grid, 1e-3, -1e-3).astype(np.float32)
        _BOARD = board
    return board[parity:parity + rows, :cols]


def shrink_mask(mask: np.ndarray, offset: tuple[int, int], k: int,
                origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A mask on a grid ``k`` times finer (integer ``k``), brought to the coarse grid: a coarse
    pixel is in when more than half of its ``k`` x ``k`` block is, and a tie (exactly half) is
    in on the black squares of a checkerboard of the coarse grid, so that the area is kept on
    average (counting every tie in adds 3-7 %, out takes 3-8 % off; docs/model.md, session 16).

    ``mask``: 2D bool / 0-1 array whose first row and column lie ``offset`` = (rows, cols) fine
    pixels after the start of the first coarse pixel's block; ``origin``: that coarse pixel's
    (row, col) in the whole coarse grid (for the checkerboard). Returns a bool array of
    ``ceil((offset + mask.shape) / k)`` coarse pixels, starting at that block.
    """
    mask = np.asarray(mask)
    oy, ox = int(offset[0]), int(offset[1])
    rows, cols = -(-(oy + mask.shape[0]) // k), -(-(ox + mask.shape[1]) // k)
    fine = cv2.copyMakeBorder((mask != 0).astype(np.float32), oy, rows * k - oy - mask.shape[0],
                              ox, cols * k - ox - mask.shape[1], cv2.BORDER_CONSTANT, value=0)
    # the share of each block that is in (INTER_AREA at an integer factor: the block means, in
    # steps of 1 / k^2, so the checkerboard's +-0.001 decides exact halves only)
    block = cv2.resize(fine, (cols, rows), interpolation=cv2.INTER_AREA)
    return block + _board(rows, cols, (int(origin[0]) + int(origin[1])) % 2) > 0.5


def merge_instances(candidates, shape: tuple[int, int], max_overlap: float = 0.3,
                    fragment_cover: float = 0.25, crumb_size: float = 0.1) -> Segmentation:
    """Merge instances found at several resampling factors into one label image.

    Parameters
    ----------
    candidates : iterable of ``(labels, scores, factor)``: a label image on a grid resampled by
        ``factor`` (< 1 = shrunk; ``labels.shape`` is about ``shape * factor``), and the score
        of each of its particles (``scores[k - 1]`` for label ``k``).
    shape : (rows, cols) of the output grid, px.
    max_overlap : a candidate is dropped when more than this fraction of its area is already
        taken by a better-scored particle.
    fragment_cover : a candidate replaces better-scored particles that lie inside it (at
        least 80 % of each) when together they cover at most this fraction of it and each is
        at most a quarter of its area: fragments of a large particle found on the full-size
        image, where the network sees only part of it. Parts of a cluster, which cover the
        cluster's outline, are kept instead (0 = never replace).
    crumb_size : a candidate dropped because one kept particle takes most of it (70 %) gives
        that particle the crumbs beside it: kept particles touching it, at least 80 % inside
        the candidate and each at most this fraction of its area (slivers cut from a large
        particle's edge on the full-size copy; 0 = never).

    Every particle is brought back to the output grid inside its own bounding box (from shrunk
    copies by bilinear enlargement of its mask cut at one half, so outlines are not blocky;
    from copies enlarged by an integer factor by :func:`shrink_mask`, which keeps its area;
    from other enlarged copies by nearest neighbour), so memory stays that of one label image. Candidates are taken in decreasing
    score; a kept one gets the pixels not yet taken.

    Returns
    -------
    Segmentation with consecutive int32 labels (in decreasing score) and their scores;
    ``info["fragments_replaced"]`` counts the fragments removed, ``info["crumbs_absorbed"]``
    the crumbs joined to their particle.
    """
    rows, cols = int(shape[0]), int(shape[1])
    items = []
    for labels, scores, factor in candidates:
        labels = np.asarray(labels)
        scores = np.asarray(scores, float)
        f = float(factor)
        for i, sl in enumerate(ndi.find_objects(labels)):
            if sl is not None:
                items.append((float(scores[i]), labels, i + 1, sl, f))
    items.sort(key=lambda t: -t[0])
    out = np.zeros((rows, cols), np.int32)
    kept: list[float] = []
    areas: list[int] = []
    boxes: list[tuple[int, int, int, int]] = []
    dropped: set[int] = set()
    crumbs = 0
    overlapped: list[tuple] = []  # candidates dropped as taken by others (a crumb may lie beside)
    for score, labels, k, sl, f in items:
        patch = (labels[sl] == k).astype(np.uint8)
        if f == 1.0:
            r0, c0 = sl[0].start, sl[1].start
        elif f < 1.0:
            # enlarge smoothly (bilinear, cut at one half) rather than in blocks of 1/f px
            r0 = int(np.floor((sl[0].start - 1) / f))
            c0 = int(np.floor((sl[1].start - 1) / f))
            r1 = int(np.ceil((sl[0].stop + 1) / f))
            c1 = int(np.ceil((sl[1].stop + 1) / f))
            patch = cv2.resize(cv2.copyMakeBorder(patch, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
                               .astype(np.float32), (c1 - c0, r1 - r0),
                               interpolation=cv2.INTER_LINEAR) > 0.5
            patch = patch[max(0, -r0):, max(0, -c0):]
            r0, c0 = max(0, r0), max(0, c0)
        elif float(f).is_integer():
            # k x k blocks of the enlarged copy are exactly the image's pixels
            k = int(f)
            r0, c0 = sl[0].start // k, sl[1].start // k
            patch = shrink_mask(patch, (sl[0].start - r0 * k, sl[1].start - c0 * k), k, (r0, c0))
            patch = patch[:rows - r0, :cols - c0]
        else:
            r0 = int(np.floor(sl[0].start / f))
            c0 = int(np.floor(sl[1].start / f))
            r1 = min(rows, max(r0 + 1, int(np.ceil(sl[0].stop / f))))
            c1 = min(cols, max(c0 + 1, int(np.ceil(sl[1].stop / f))))
            patch = cv2.resize(patch, (c1 - c0, r1 - r0), interpolation=cv2.INTER_NEAREST)
        m = patch.astype(bool)
        region = out[r0:r0 + m.shape[0], c0:c0 + m.shape[1]]
        m = m[:region.shape[0], :region.shape[1]]
        area = int(np.count_nonzero(m))  # (count_nonzero: ~3x faster than sum on small masks)
        if area == 0:
            continue
        taken = (region > 0) & m
        n_taken = int(np.count_nonzero(taken))
        if n_taken and fragment_cover > 0 and n_taken <= fragment_cover * area:
            ids, inside = np.unique(region[taken], return_counts=True)
            own = np.asarray([areas[i - 1] for i in ids])
            if np.all(inside >= 0.8 * own) and np.all(own <= 0.25 * area):
                for i in ids:  # fragments of this particle: give their pixels back
                    b0, b1, b2, b3 = boxes[i - 1]
                    sub = out[b0:b1, b2:b3]
                    sub[sub == i] = 0
                    dropped.add(int(i))
                taken = (region > 0) & m
                n_taken = int(np.count_nonzero(taken))
        if n_taken > max_overlap * area:
            if crumb_size > 0 and n_taken < area:
                overlapped.append((r0, c0, m, area))
            continue
        kept.append(score)
        areas.append(int(np.count_nonzero(m & ~taken)))
        boxes.append((r0, r0 + m.shape[0], c0, c0 + m.shape[1]))
        region[m & ~taken] = len(kept)
    for r0, c0, m, area in overlapped:  # after all are placed: crumbs scored below the candidate too
        crumbs += _absorb_crumbs(out, r0, c0, m, area, areas, boxes, dropped, crumb_size)
    scores = np.asarray(kept, np.float32)
    if dropped:
        keep = np.ones(len(kept) + 1, bool)
        keep[list(dropped)] = False
        out = keep_labels(out, keep)
        scores = scores[keep[1:]]
    return Segmentation(out, scores, {"max_overlap": float(max_overlap),
                                      "fragments_replaced": len(dropped) - crumbs,
                                      "crumbs_absorbed": crumbs})


def _absorb_crumbs(out, r0, c0, m, area, areas, boxes, dropped, crumb_size) -> int:
    """For a candidate (mask ``m`` of ``area`` px at ``r0, c0`` of ``out``) dropped because
    kept particles take it: when one particle takes most of it (70 %) and others are crumbs --
    each at most ``crumb_size`` of the candidate, at least 80 % inside it and touching that
    particle -- the crumbs' pixels go to that particle (and their labels to ``dropped``).
    Crumbs are slivers the watershed of one copy cuts from the edge of a particle larger than
    that copy's network sees well (an 80 px particle on the full-size copy) while a shrunk copy
    outlines it whole (docs/model.md, session 21). Returns the number of crumbs absorbed."""
    region = out[r0:r0 + m.shape[0], c0:c0 + m.shape[1]]
    ids, inside = np.unique(region[m & (region > 0)], return_counts=True)
    keep = np.asarray([int(i) not in dropped for i in ids], bool)
    ids, inside = ids[keep], inside[keep]
    if ids.size < 2:
        return 0
    dom = int(ids[np.argmax(inside)])
    if inside.max() < 0.7 * area:
        return 0
    n = 0
    for i, n_in in zip(ids.tolist(), inside.tolist()):
        if i == dom or areas[i - 1] > crumb_size * area or n_in < 0.8 * areas[i - 1]:
            continue
        b0, b1, b2, b3 = boxes[i - 1]
        r0, r1, c0, c1 = max(0, b0 - 1), b1 + 1, max(0, b2 - 1), b3 + 1
        sub = out[r0:r1, c0:c1]
        mine = sub == i
        beside = cv2.dilate(mine.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        if not (beside & (sub == dom)).any():
            continue
        sub[mine] = dom
        areas[dom - 1] += areas[i - 1]
        b = boxes[dom - 1]
        boxes[dom - 1] = (min(b[0], b0), max(b[1], b1), min(b[2], b2), max(b[3], b3))
        dropped.add(int(i))
        n += 1
    return n
