"""Matching predicted particles to true ones (pure functions on label images and boxes).

Two rules:

* the paper's **centre rule** (Okunev et al. 2020): a prediction whose centre lies inside a true
  outline (or, for box ground truth, inside a true box) is a true positive; each truth is
  matched at most once; a prediction covering several truths counts once as TP and the others
  stay false negatives; every other prediction is a false positive;
* **one-to-one IoU matching**: Hungarian assignment (``scipy.optimize.linear_sum_assignment``)
  on the IoU matrix, pairs with IoU >= threshold are TP (StarDist's ``matching.py`` rule).

Coordinates: label images are (rows, cols) int arrays, 0 = background. Boxes are
``(n, 4)`` float arrays ``x0, y0, x1, y1`` in pixel-edge coordinates (a pixel (r, c) spans
``c..c+1`` in x and ``r..r+1`` in y), so the bounding box of a mask is
``min_col, min_row, max_col + 1, max_row + 1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


# --------------------------------------------------------------------------- label geometry

def _n_labels(labels: np.ndarray) -> int:
    return int(labels.max()) if labels.size else 0


def label_areas(labels: np.ndarray) -> np.ndarray:
    """Pixel count of each label 1..n, shape (n,) (index k-1 for label k)."""
    n = _n_labels(labels)
    return np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.int64)


def label_centroids(labels: np.ndarray, band: int = 512) -> np.ndarray:
    """Centre of mass (row, col) in px of each label 1..n, shape (n, 2); NaN for empty labels.

    Summed ``band`` rows at a time, so no full-image index arrays are made (large images).
    """
    n = _n_labels(labels)
    rows, cols = labels.shape if labels.ndim == 2 else (0, 0)
    sums = np.zeros((n + 1, 2))
    cnt = np.zeros(n + 1)
    cc = np.arange(cols, dtype=np.float64)
    for r0 in range(0, rows, band):
        flat = labels[r0:r0 + band].ravel()
        h = flat.size // max(cols, 1)
        cnt += np.bincount(flat, minlength=n + 1)
        sums[:, 0] += np.bincount(flat, np.repeat(np.arange(r0, r0 + h, dtype=np.float64), cols), n + 1)
        sums[:, 1] += np.bincount(flat, np.tile(cc, h), n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums[1:] / cnt[1:, None]


def label_boxes(labels: np.ndarray) -> np.ndarray:
    """Bounding box ``x0, y0, x1, y1`` (pixel edges, px) of each label 1..n, shape (n, 4).

    Empty labels get NaN.
    """
    n = _n_labels(labels)
    out = np.full((n, 4), np.nan)
    if n == 0:
        return out
    rows, cols = np.nonzero(labels)
    lab = labels[rows, cols]
    big = np.iinfo(np.int64).max
    r0 = np.full(n + 1, big); c0 = np.full(n + 1, big)
    r1 = np.full(n + 1, -1); c1 = np.full(n + 1, -1)
    np.minimum.at(r0, lab, rows); np.minimum.at(c0, lab, cols)
    np.maximum.at(r1, lab, rows); np.maximum.at(c1, lab, cols)
    present = r1[1:] >= 0
    out[present, 0] = c0[1:][present]
    out[present, 1] = r0[1:][present]
    out[present, 2] = c1[1:][present] + 1
    out[present, 3] = r1[1:][present] + 1
    return out


def equivalent_diameters(labels: np.ndarray) -> np.ndarray:
    """Equivalent-circle diameter ``sqrt(4 A / pi)`` in px of each non-empty label."""
    a = label_areas(labels)
    a = a[a > 0]
    return np.sqrt(4.0 * a / np.pi)


# --------------------------------------------------------------------------- results

@dataclass
class MatchResult:
    """Outcome of matching one image.

    tp, fp, fn : counts.
    pairs : (m, 2) int array of matched (pred index, true index), 0-based (label - 1).
    ious : (m,) IoU of each matched pair (NaN for the centre rule).
    """

    tp: int
    fp: int
    fn: int
    pairs: np.ndarray
    ious: np.ndarray

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


def _ratio(a: float, b: float) -> float:
    """a / b, with 0/0 = 1.0 (nothing to find and nothing found is perfect)."""
    if b == 0:
        return 1.0
    return float(a) / float(b)


def _order(n: int, scores: np.ndarray | None) -> np.ndarray:
    if scores is None or n == 0:
        return np.arange(n)
    s = np.asarray(scores, dtype=np.float64)
    return np.argsort(-s, kind="stable")


# --------------------------------------------------------------------------- centre rule

def centre_match(pred: np.ndarray, true: np.ndarray, scores: np.ndarray | None = None) -> MatchResult:
    """The paper's centre rule on two label images of the same shape.

    Each prediction (taken by decreasing score, then by label) is reduced to its centre of
    mass, rounded to the nearest pixel. If that pixel lies in a true particle not yet
    matched, the pair is a TP. If the centre lies on background but the prediction covers
    one or more unmatched true particles (contains their centres), it is matched to the one
    whose centre is nearest to its own: a prediction covering several truths counts once as
    TP. Every other prediction is FP (including a second prediction on an already matched
    truth); unmatched truths are FN.
    """
    pred = np.asarray(pred)
    true = np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"label images differ in shape: {pred.shape} vs {true.shape}")
    n_p, n_t = _n_labels(pred), _n_labels(true)
    pc = label_centroids(pred)
    tc = label_centroids(true)
    present_t = label_areas(true) > 0
    matched = np.zeros(n_t + 1, dtype=bool)
    matched[0] = True
    # true centres (rounded) -> which prediction covers them
    cover: dict[int, list[int]] = {}
    if n_t:
        tr = np.clip(np.rint(tc[:, 0]), 0, true.shape[0] - 1)
        tcc = np.clip(np.rint(tc[:, 1]), 0, true.shape[1] - 1)
        for j in np.flatnonzero(present_t):
            p = int(pred[int(tr[j]), int(tcc[j])])
            if p:
                cover.setdefault(p, []).append(j + 1)
    pairs = []
    fp = 0
    present_p = label_areas(pred) > 0
    for i in _order(n_p, scores):
        if not present_p[i]:
            continue
        r = int(np.clip(np.rint(pc[i, 0]), 0, pred.shape[0] - 1))
        c = int(np.clip(np.rint(pc[i, 1]), 0, pred.shape[1] - 1))
        t = int(true[r, c])
        if t and not matched[t]:
            matched[t] = True
            pairs.append((i, t - 1))
            continue
        if t == 0:
            cand = [j for j in cover.get(i + 1, []) if not matched[j]]
            if cand:
                d = [np.hypot(*(tc[j - 1] - pc[i])) for j in cand]
                t = cand[int(np.argmin(d))]
                matched[t] = True
                pairs.append((i, t - 1))
                continue
        fp += 1
    tp = len(pairs)
    fn = int(present_t.sum()) - tp
    return MatchResult(tp, fp, fn, np.array(pairs, dtype=np.int64).reshape(-1, 2),
                       np.full(tp, np.nan))


def centre_match_boxes(pred_centres: np.ndarray, true_boxes: np.ndarray,
                       scores: np.ndarray | None = None) -> MatchResult:
    """Centre rule against boxes: a predicted centre (row, col) inside a true box is a TP.

    Predictions are taken by decreasing score. A centre inside several unmatched boxes
    matches the one whose centre is nearest; a centre only inside already matched boxes, or
    in none, is FP. Boxes are ``x0, y0, x1, y1`` pixel edges; the centre of pixel (r, c) is
    at ``(c + 0.5, r + 0.5)`` in that frame.
    """
    pc = np.asarray(pred_centres, dtype=np.float64).reshape(-1, 2)
    tb = np.asarray(true_boxes, dtype=np.float64).reshape(-1, 4)
    n_t = len(tb)
    matched = np.zeros(n_t, dtype=bool)
    bcx = (tb[:, 0] + tb[:, 2]) / 2
    bcy = (tb[:, 1] + tb[:, 3]) / 2
    pairs = []
    fp = 0
    for i in _order(len(pc), scores):
        if not np.all(np.isfinite(pc[i])):
            continue
        x = pc[i, 1] + 0.5
        y = pc[i, 0] + 0.5
        inside = (~matched) & (tb[:, 0] <= x) & (x <= tb[:, 2]) & (tb[:, 1] <= y) & (y <= tb[:, 3])
        cand = np.flatnonzero(inside)
        if cand.size == 0:
            fp += 1
            continue
        j = cand[int(np.argmin(np.hypot(bcx[cand] - x, bcy[cand] - y)))]
        matched[j] = True
        pairs.append((i, j))
    tp = len(pairs)
    return MatchResult(tp, fp, n_t - tp, np.array(pairs, dtype=np.int64).reshape(-1, 2),
                       np.full(tp, np.nan))


# --------------------------------------------------------------------------- IoU matching

def label_iou(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse IoU between the instances of two label images.

    Returns ``(pi, ti, iou)``: 0-based indices of every overlapping (pred, true) pair and their
    IoU (pairs that do not overlap have IoU 0 and are not listed).
    """
    pred = np.asarray(pred)
    true = np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"label images differ in shape: {pred.shape} vs {true.shape}")
    n_t = _n_labels(true)
    ap = label_areas(pred)
    at = label_areas(true)
    both = (pred > 0) & (true > 0)
    if not both.any():
        e = np.zeros(0, dtype=np.int64)
        return e, e, np.zeros(0)
    key = pred[both].astype(np.int64) * (n_t + 1) + true[both].astype(np.int64)
    u, inter = np.unique(key, return_counts=True)
    pi = u // (n_t + 1) - 1
    ti = u % (n_t + 1) - 1
    iou = inter / (ap[pi] + at[ti] - inter)
    return pi, ti, iou


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense IoU matrix (len(a), len(b)) of two box arrays ``x0, y0, x1, y1``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    ab = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = aa[:, None] + ab[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(out)


def _hungarian(pi: np.ndarray, ti: np.ndarray, iou: np.ndarray, n_p: int, n_t: int,
               thresh: float) -> MatchResult:
    keep = iou >= thresh
    pi, ti, iou = pi[keep], ti[keep], iou[keep]
    if pi.size == 0:
        return MatchResult(0, n_p, n_t, np.zeros((0, 2), dtype=np.int64), np.zeros(0))
    rows, r_inv = np.unique(pi, return_inverse=True)
    cols, c_inv = np.unique(ti, return_inverse=True)
    m = np.zeros((rows.size, cols.size))
    m[r_inv, c_inv] = iou
    r, c = linear_sum_assignment(m, maximize=True)
    ok = m[r, c] >= thresh
    pairs = np.stack([rows[r[ok]], cols[c[ok]]], axis=1).astype(np.int64)
    ious = m[r[ok], c[ok]]
    tp = int(ok.sum())
    return MatchResult(tp, n_p - tp, n_t - tp, pairs, ious)


def iou_match(pred: np.ndarray, true: np.ndarray, thresh: float = 0.5) -> MatchResult:
    """One-to-one IoU matching of two label images (Hungarian, pairs with IoU >= ``thresh``)."""
    pi, ti, iou = label_iou(pred, true)
    n_p = int((label_areas(np.asarray(pred)) > 0).sum())
    n_t = int((label_areas(np.asarray(true)) > 0).sum())
    return _hungarian(pi, ti, iou, n_p, n_t, thresh)


def iou_match_boxes(pred_boxes: np.ndarray, true_boxes: np.ndarray, thresh: float = 0.5) -> MatchResult:
    """One-to-one IoU matching of two box sets (Hungarian, pairs with IoU >= ``thresh``)."""
    pb = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    tb = np.asarray(true_boxes, dtype=np.float64).reshape(-1, 4)
    pb = pb[np.all(np.isfinite(pb), axis=1)]
    m = box_iou(pb, tb)
    pi, ti = np.nonzero(m >= thresh)
    return _hungarian(pi, ti, m[pi, ti], len(pb), len(tb), thresh)


__all__ = [
    "MatchResult", "centre_match", "centre_match_boxes", "iou_match", "iou_match_boxes",
    "label_iou", "box_iou", "label_areas", "label_centroids", "label_boxes", "equivalent_diameters",
]
