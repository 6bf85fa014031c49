"""Detection and segmentation metrics over label images and box sets (pure functions).

Per image (:func:`evaluate_pair`, :func:`evaluate_boxes_pair`) and over a set
(:func:`evaluate_set`), with

* the paper's centre rule (``centre_tp/fp/fn``, ``centre_precision/recall/f1``), see
  :func:`particlesnn.matching.centre_match`;
* one-to-one IoU >= 0.5 matching (``iou_tp/fp/fn``, ``iou_precision/recall/f1``,
  ``mean_matched_iou``, panoptic quality ``pq``); for box truth the IoU is that of the bounding
  box of each predicted mask with the true box;
* COCO mAP@[.50:.95] (and AP50) through pycocotools at maxDets 500: ``map_bbox``, ``map_segm``
  (``segm`` only with mask truth);
* mean-size accuracy ``1 - |d_pred - d_true| / d_true`` with ``d`` the mean equivalent-circle
  diameter in px (boxes: mean ``sqrt(w h)`` of true boxes vs of predicted masks' bounding boxes).
  No prediction gives ``d_pred = 0`` and accuracy 0; the value can be negative when
  ``d_pred > 2 d_true``.

Set-level ratios come from summed TP/FP/FN (not averaged per-image ratios); set-level mAP from
one COCOeval over all images; set-level size accuracy is the mean of the per-image values.
Ratios with a zero denominator (no truth and no prediction) are 1.0.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from particlesnn import matching as M

COCO_MAX_DETS = 500
IOU_THRESHOLD = 0.5

COUNT_KEYS = ("n_true", "n_pred", "centre_tp", "centre_fp", "centre_fn",
              "iou_tp", "iou_fp", "iou_fn", "sum_matched_iou")


@dataclass
class Boxes:
    """Box ground truth of one image.

    xyxy : (n, 4) float, ``x0, y0, x1, y1`` pixel edges (px), x = column, y = row.
    shape : (rows, cols) of the image in px.
    """

    xyxy: np.ndarray
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float64).reshape(-1, 4)
        self.shape = (int(self.shape[0]), int(self.shape[1]))

    def __len__(self) -> int:
        return len(self.xyxy)


# --------------------------------------------------------------------------- helpers

def _ratios(d: dict[str, Any]) -> dict[str, Any]:
    """Add precision, recall, F1, mean IoU and PQ from the counts in ``d``."""
    r = M._ratio
    for rule in ("centre", "iou"):
        tp, fp, fn = d[f"{rule}_tp"], d[f"{rule}_fp"], d[f"{rule}_fn"]
        d[f"{rule}_precision"] = r(tp, tp + fp)
        d[f"{rule}_recall"] = r(tp, tp + fn)
        d[f"{rule}_f1"] = r(2 * tp, 2 * tp + fp + fn)
    tp, fp, fn = d["iou_tp"], d["iou_fp"], d["iou_fn"]
    d["mean_matched_iou"] = d["sum_matched_iou"] / tp if tp else float("nan")
    den = tp + 0.5 * fp + 0.5 * fn
    d["pq"] = d["sum_matched_iou"] / den if den else 1.0
    return d


def size_accuracy(d_pred: float, d_true: float) -> float:
    """``1 - |d_pred - d_true| / d_true`` (diameters in any one unit); NaN when ``d_true`` is 0."""
    if not d_true:
        return float("nan")
    return 1.0 - abs(float(d_pred) - float(d_true)) / float(d_true)


def _check_labels(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must be a 2D integer label image, got {a.dtype} {a.shape}")
    if a.size and a.min() < 0:
        raise ValueError(f"{what} has negative labels")
    return a


def _scores_for(labels: np.ndarray, scores: Sequence[float] | np.ndarray | None) -> np.ndarray:
    n = int(labels.max()) if labels.size else 0
    if scores is None:
        return np.ones(n)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size != n:
        raise ValueError(f"{s.size} scores for {n} labels")
    return s


# --------------------------------------------------------------------------- COCO

def _rles(labels: np.ndarray, ids: np.ndarray) -> list[dict]:
    """Uncompressed COCO RLEs (column-major) of the given 1-based label ids, one pass."""
    h, w = labels.shape
    flat = np.asarray(labels).ravel(order="F")
    fg = np.flatnonzero(flat)
    lab = flat[fg]
    order = np.argsort(lab, kind="stable")
    fg, lab = fg[order], lab[order]
    starts = np.searchsorted(lab, ids, side="left")
    ends = np.searchsorted(lab, ids, side="right")
    out = []
    total = h * w
    for s, e in zip(starts, ends):
        idx = fg[s:e]
        if idx.size == 0:
            out.append({"size": [h, w], "counts": [total]})
            continue
        brk = np.flatnonzero(np.diff(idx) != 1)
        run_start = np.concatenate([idx[:1], idx[brk + 1]])
        run_end = np.concatenate([idx[brk], idx[-1:]]) + 1
        counts = np.empty(2 * run_start.size + 1, dtype=np.int64)
        counts[0] = run_start[0]
        counts[1::2] = run_end - run_start
        counts[2:-1:2] = run_start[1:] - run_end[:-1]
        counts[-1] = total - run_end[-1]
        out.append({"size": [h, w], "counts": counts.tolist()})
    return out


class _CocoBuilder:
    """Accumulates images, truths and detections, then runs COCOeval (bbox and segm)."""

    def __init__(self, max_dets: int = COCO_MAX_DETS) -> None:
        self.max_dets = max_dets
        self.images: list[dict] = []
        self.gt: list[dict] = []
        self.dt: list[dict] = []
        self.has_masks = True

    def add(self, pred: np.ndarray, scores: np.ndarray, truth: np.ndarray | Boxes) -> None:
        from pycocotools import mask as mask_utils

        img_id = len(self.images) + 1
        h, w = pred.shape
        self.images.append({"id": img_id, "height": h, "width": w})
        if isinstance(truth, Boxes):
            self.has_masks = False
            for b in truth.xyxy:
                bw, bh = float(b[2] - b[0]), float(b[3] - b[1])
                self.gt.append({"id": len(self.gt) + 1, "image_id": img_id, "category_id": 1,
                                "bbox": [float(b[0]), float(b[1]), bw, bh], "area": bw * bh,
                                "iscrowd": 0})
        else:
            ids = np.flatnonzero(M.label_areas(truth) > 0) + 1
            boxes = M.label_boxes(truth)
            areas = M.label_areas(truth)
            for k, rle in zip(ids, _rles(truth, ids)):
                b = boxes[k - 1]
                seg = mask_utils.frPyObjects(rle, h, w)
                self.gt.append({"id": len(self.gt) + 1, "image_id": img_id, "category_id": 1,
                                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                                "area": float(areas[k - 1]), "iscrowd": 0, "segmentation": seg})
        ids = np.flatnonzero(M.label_areas(pred) > 0) + 1
        if ids.size == 0:
            return
        s = scores[ids - 1]
        top = np.argsort(-s, kind="stable")[:self.max_dets]
        ids, s = ids[top], s[top]
        boxes = M.label_boxes(pred)
        need_masks = not isinstance(truth, Boxes)
        rles = _rles(pred, ids) if need_masks else [None] * len(ids)
        for k, sc, rle in zip(ids, s, rles):
            b = boxes[k - 1]
            det = {"image_id": img_id, "category_id": 1, "score": float(sc),
                   "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
            if rle is not None:
                det["segmentation"] = mask_utils.frPyObjects(rle, h, w)
            self.dt.append(det)

    def evaluate(self) -> dict[str, float]:
        out: dict[str, float] = {}
        kinds = ("bbox", "segm") if self.has_masks else ("bbox",)
        for kind in kinds:
            ap, ap50 = self._run(kind)
            out[f"map_{kind}"] = ap
            out[f"map50_{kind}"] = ap50
        if not self.has_masks:
            out["map_segm"] = float("nan")
            out["map50_segm"] = float("nan")
        return out

    def _run(self, kind: str) -> tuple[float, float]:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        if not self.gt:
            return float("nan"), float("nan")
        if not self.dt:
            return 0.0, 0.0
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO()
            gt.dataset = {"images": self.images, "annotations": self.gt,
                          "categories": [{"id": 1, "name": "particle"}]}
            gt.createIndex()
            dets = [dict(d) for d in self.dt]
            for d in dets:
                d.pop("segmentation" if kind == "bbox" else "bbox", None)
            dt = gt.loadRes(dets)
            ev = COCOeval(gt, dt, kind)
            ev.params.maxDets = [1, 10, self.max_dets]
            ev.params.areaRng = [[0, 1e10]]
            ev.params.areaRngLbl = ["all"]
            ev.evaluate()
            ev.accumulate()
        prec = ev.eval["precision"][:, :, :, 0, -1]  # (iou thr, recall, class) at area all, 500 dets
        valid = prec[prec > -1]
        ap = float(valid.mean()) if valid.size else float("nan")
        p50 = prec[0][prec[0] > -1]
        ap50 = float(p50.mean()) if p50.size else float("nan")
        return ap, ap50


class _FastCoco:
    """COCOeval's algorithm for one category, no crowd regions, area range "all", maxDets 500,
    re-implemented on label images with numpy (same matching and same 101-point interpolated
    precision; the tests check equality with pycocotools). pycocotools' pure-Python
    ``evaluateImg`` needs minutes on images with thousands of particles; this needs
    milliseconds. IoU of masks = pixel IoU (as COCO's RLE IoU); IoU of boxes = continuous box
    IoU of ``x0, y0, x1, y1`` (as COCO's ``x, y, w, h``)."""

    IOU_THRS = np.linspace(0.5, 0.95, 10)
    REC_THRS = np.linspace(0.0, 1.0, 101)

    def __init__(self, max_dets: int = COCO_MAX_DETS) -> None:
        self.max_dets = max_dets
        self.kinds: dict[str, list[tuple[np.ndarray, np.ndarray, int]]] = {"bbox": [], "segm": []}
        self.has_masks = True

    @classmethod
    def _match(cls, ious: np.ndarray) -> np.ndarray:
        """(T, D) bool: det d (in score order) matched at IoU threshold t (greedy, as COCO)."""
        n_d, n_g = ious.shape
        out = np.zeros((len(cls.IOU_THRS), n_d), dtype=bool)
        if n_d == 0 or n_g == 0:
            return out
        rows = [np.flatnonzero(ious[d] > 0) for d in range(n_d)]
        for ti, t in enumerate(cls.IOU_THRS):
            thr = min(t, 1 - 1e-10)
            taken = np.zeros(n_g, dtype=bool)
            for d in range(n_d):
                g = rows[d]
                if g.size == 0:
                    continue
                v = np.where(taken[g], -1.0, ious[d, g])
                j = v.size - 1 - int(np.argmax(v[::-1]))     # last maximum, as COCO's loop
                if v[j] >= thr:
                    taken[g[j]] = True
                    out[ti, d] = True
        return out

    def add(self, pred: np.ndarray, scores: np.ndarray, truth: np.ndarray | Boxes) -> None:
        present = np.flatnonzero(M.label_areas(pred) > 0)            # 0-based indices
        s = scores[present]
        order = np.argsort(-s, kind="mergesort")[:self.max_dets]
        dets, s = present[order], s[order]
        pb = M.label_boxes(pred)[dets] if dets.size else np.zeros((0, 4))
        if isinstance(truth, Boxes):
            self.has_masks = False
            tb = truth.xyxy
            self.kinds["bbox"].append((s, self._match(M.box_iou(pb, tb)), len(tb)))
            return
        t_present = np.flatnonzero(M.label_areas(truth) > 0)
        tb = M.label_boxes(truth)[t_present]
        self.kinds["bbox"].append((s, self._match(M.box_iou(pb, tb)), t_present.size))
        pi, ti, iou = M.label_iou(pred, truth)
        dpos = np.full(int(pred.max()) + 1 if pred.size else 1, -1)
        dpos[dets] = np.arange(dets.size)
        tpos = np.full(int(truth.max()) + 1 if truth.size else 1, -1)
        tpos[t_present] = np.arange(t_present.size)
        m = np.zeros((dets.size, t_present.size))
        keep = dpos[pi] >= 0
        m[dpos[pi[keep]], tpos[ti[keep]]] = iou[keep]
        self.kinds["segm"].append((s, self._match(m), t_present.size))

    @classmethod
    def _ap(cls, items: list[tuple[np.ndarray, np.ndarray, int]]) -> tuple[float, float]:
        n_gt = sum(i[2] for i in items)
        if n_gt == 0:
            return float("nan"), float("nan")
        if not items or sum(len(i[0]) for i in items) == 0:
            return 0.0, 0.0
        scores = np.concatenate([i[0] for i in items])
        matched = np.concatenate([i[1] for i in items], axis=1)
        order = np.argsort(-scores, kind="mergesort")
        matched = matched[:, order]
        prec = np.zeros((len(cls.IOU_THRS), len(cls.REC_THRS)))
        eps = np.spacing(1)
        for t in range(len(cls.IOU_THRS)):
            tp = np.cumsum(matched[t]).astype(np.float64)
            fp = np.cumsum(~matched[t]).astype(np.float64)
            rc = tp / n_gt
            pr = tp / (fp + tp + eps)
            pr = np.maximum.accumulate(pr[::-1])[::-1]
            idx = np.searchsorted(rc, cls.REC_THRS, side="left")
            ok = idx < len(pr)
            prec[t, ok] = pr[idx[ok]]
        return float(prec.mean()), float(prec[0].mean())

    def evaluate(self) -> dict[str, float]:
        out: dict[str, float] = {}
        out["map_bbox"], out["map50_bbox"] = self._ap(self.kinds["bbox"])
        if self.has_masks:
            out["map_segm"], out["map50_segm"] = self._ap(self.kinds["segm"])
        else:
            out["map_segm"] = out["map50_segm"] = float("nan")
        return out


def _coco_engine(engine: str, max_dets: int):
    if engine == "fast":
        return _FastCoco(max_dets)
    if engine == "pycocotools":
        return _CocoBuilder(max_dets)
    raise ValueError(f"unknown COCO engine {engine!r}; use 'fast' or 'pycocotools'")


def coco_map(pred_labels: Sequence[np.ndarray], truths: Sequence[np.ndarray | Boxes],
             scores: Sequence[np.ndarray | None] | None = None, *, engine: str = "fast",
             max_dets: int = COCO_MAX_DETS) -> dict[str, float]:
    """COCO mAP@[.50:.95] and AP50 at maxDets 500 (``max_dets``) over a set of images.

    With maxDets 500 an image of more than 500 true particles cannot reach AP 1: even a perfect
    prediction is scored on its 500 best-scored particles only (benchmarks/synthetic.py prints
    that ceiling beside the scores).

    ``engine``: ``"fast"`` (numpy re-implementation of COCOeval for one class, no crowd,
    area "all"; equal to pycocotools, milliseconds per image) or ``"pycocotools"`` (COCOeval
    itself; slow on crowded images). Returns ``map_bbox``, ``map50_bbox``, ``map_segm``,
    ``map50_segm`` (segm NaN for box truth); 0.0 when there is truth but no prediction, NaN
    when there is no truth at all.
    """
    cb = _coco_engine(engine, max_dets)
    scores = scores if scores is not None else [None] * len(pred_labels)
    for p, t, s in zip(pred_labels, truths, scores):
        p = _check_labels(p, "prediction")
        cb.add(p, _scores_for(p, s), t)
    return cb.evaluate()


# --------------------------------------------------------------------------- per image

def _counts_masks(pred: np.ndarray, true: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    c = M.centre_match(pred, true, scores)
    m = M.iou_match(pred, true, IOU_THRESHOLD)
    dp = M.equivalent_diameters(pred)
    dt = M.equivalent_diameters(true)
    d_pred = float(dp.mean()) if dp.size else 0.0
    d_true = float(dt.mean()) if dt.size else float("nan")
    return {
        "n_true": int(dt.size), "n_pred": int(dp.size),
        "centre_tp": c.tp, "centre_fp": c.fp, "centre_fn": c.fn,
        "iou_tp": m.tp, "iou_fp": m.fp, "iou_fn": m.fn,
        "sum_matched_iou": float(m.ious.sum()),
        "d_true_px": d_true, "d_pred_px": d_pred,
        "size_accuracy": size_accuracy(d_pred, d_true) if dt.size else float("nan"),
    }


def _counts_boxes(pred: np.ndarray, truth: Boxes, scores: np.ndarray) -> dict[str, Any]:
    present = M.label_areas(pred) > 0
    pb = M.label_boxes(pred)[present]
    pcent = M.label_centroids(pred)[present]
    ps = scores[present]
    c = M.centre_match_boxes(pcent, truth.xyxy, ps)
    m = M.iou_match_boxes(pb, truth.xyxy, IOU_THRESHOLD)
    tb = truth.xyxy
    st = np.sqrt(np.clip((tb[:, 2] - tb[:, 0]) * (tb[:, 3] - tb[:, 1]), 0, None))
    sp = np.sqrt((pb[:, 2] - pb[:, 0]) * (pb[:, 3] - pb[:, 1])) if len(pb) else np.zeros(0)
    d_pred = float(sp.mean()) if sp.size else 0.0
    d_true = float(st.mean()) if st.size else float("nan")
    return {
        "n_true": int(len(tb)), "n_pred": int(present.sum()),
        "centre_tp": c.tp, "centre_fp": c.fp, "centre_fn": c.fn,
        "iou_tp": m.tp, "iou_fp": m.fp, "iou_fn": m.fn,
        "sum_matched_iou": float(m.ious.sum()),
        "d_true_px": d_true, "d_pred_px": d_pred,
        "size_accuracy": size_accuracy(d_pred, d_true) if st.size else float("nan"),
    }


def evaluate_pair(pred_labels: np.ndarray, true_labels: np.ndarray | Boxes,
                  scores: Sequence[float] | np.ndarray | None = None, *,
                  coco: bool = True, coco_engine: str = "fast") -> dict[str, Any]:
    """All metrics for one image.

    Parameters
    ----------
    pred_labels : (rows, cols) int array
        Predicted instances, 0 = background, k = particle k.
    true_labels : (rows, cols) int array, or :class:`Boxes`
        True instances (mask truth) or true boxes (box truth; the image shape must match).
    scores : (n,) floats, optional
        Confidence of predicted label k at index k-1 (used for the centre rule's order and for
        mAP); default 1.0 for all.
    coco : bool
        Also compute COCO mAP (maxDets 500, :func:`coco_map`).
    coco_engine : {"fast", "pycocotools"}
        See :func:`coco_map`.

    Returns
    -------
    dict
        Counts (``n_true``, ``n_pred``, ``centre_tp`` ... ``iou_fn``), ratios
        (``centre_precision/recall/f1``, ``iou_precision/recall/f1``), ``mean_matched_iou``,
        ``pq``, ``d_true_px``, ``d_pred_px`` (mean diameters, px), ``size_accuracy``, and with
        ``coco`` ``map_bbox``, ``map50_bbox``, ``map_segm``, ``map50_segm``; plus ``truth``
        (``"masks"`` or ``"boxes"``).
    """
    pred = _check_labels(pred_labels, "prediction")
    s = _scores_for(pred, scores)
    if isinstance(true_labels, Boxes):
        if tuple(true_labels.shape) != pred.shape:
            raise ValueError(f"image shapes differ: prediction {pred.shape} vs boxes {true_labels.shape}")
        d = _counts_boxes(pred, true_labels, s)
        d["truth"] = "boxes"
    else:
        true = _check_labels(true_labels, "truth")
        if true.shape != pred.shape:
            raise ValueError(f"image shapes differ: prediction {pred.shape} vs truth {true.shape}")
        d = _counts_masks(pred, true, s)
        d["truth"] = "masks"
    _ratios(d)
    if coco:
        d.update(coco_map([pred], [true_labels], [s], engine=coco_engine))
    return d


def evaluate_boxes_pair(pred_labels: np.ndarray, true_boxes: np.ndarray, shape: tuple[int, int] | None = None,
                        scores: Sequence[float] | np.ndarray | None = None, *,
                        coco: bool = True) -> dict[str, Any]:
    """:func:`evaluate_pair` against boxes given as an ``(n, 4)`` array ``x0, y0, x1, y1`` (px)."""
    pred = np.asarray(pred_labels)
    return evaluate_pair(pred, Boxes(true_boxes, shape or pred.shape), scores, coco=coco)


# --------------------------------------------------------------------------- sets

def summarize(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Set-level figures from per-image dicts: summed counts, ratios from the sums,
    mean per-image size accuracy (NaN images left out) and ``n_images``."""
    rows = list(rows)
    d: dict[str, Any] = {k: 0 for k in COUNT_KEYS}
    d["sum_matched_iou"] = 0.0
    for r in rows:
        for k in COUNT_KEYS:
            d[k] += r[k]
    _ratios(d)
    acc = np.array([r["size_accuracy"] for r in rows], dtype=np.float64)
    acc = acc[np.isfinite(acc)]
    d["size_accuracy"] = float(acc.mean()) if acc.size else float("nan")
    d["n_images"] = len(rows)
    return d


def evaluate_set(pairs: Iterable[Any], *, names: Sequence[str] | None = None,
                 coco: bool = True, per_image_coco: bool = True, coco_engine: str = "fast"):
    """Metrics per image and over a set.

    Parameters
    ----------
    pairs : iterable
        Items ``(pred_labels, truth)`` or ``(pred_labels, truth, scores)``, truth a label image
        or :class:`Boxes`; or dicts with keys ``pred``, ``truth``, optional ``scores``, ``name``.
    names : sequence of str, optional
        Image names (default ``"0"``, ``"1"``, ...) for the ``name`` column.
    coco : bool
        Compute set-level mAP (one COCOeval over all images).
    per_image_coco : bool
        Also compute mAP per image.
    coco_engine : {"fast", "pycocotools"}
        See :func:`coco_map`.

    Returns
    -------
    (pandas.DataFrame, dict)
        One row per image (columns as :func:`evaluate_pair` plus ``name``) and the overall
        figures (:func:`summarize` plus set-level ``map_*``).
    """
    import pandas as pd

    rows = []
    cb = _coco_engine(coco_engine, COCO_MAX_DETS) if coco else None
    for i, item in enumerate(pairs):
        if isinstance(item, dict):
            pred, truth, sc, nm = item["pred"], item["truth"], item.get("scores"), item.get("name")
        else:
            pred, truth = item[0], item[1]
            sc = item[2] if len(item) > 2 else None
            nm = None
        if nm is None:
            nm = names[i] if names is not None else str(i)
        pred = _check_labels(pred, "prediction")
        s = _scores_for(pred, sc)
        r = evaluate_pair(pred, truth, s, coco=per_image_coco and coco, coco_engine=coco_engine)
        r["name"] = nm
        rows.append(r)
        if cb is not None:
            cb.add(pred, s, truth)
    overall = summarize(rows)
    if cb is not None:
        overall.update(cb.evaluate())
    df = pd.DataFrame(rows)
    if len(df):
        df = df[["name"] + [c for c in df.columns if c != "name"]]
    return df, overall


__all__ = ["Boxes", "evaluate_pair", "evaluate_boxes_pair", "evaluate_set", "summarize",
           "coco_map", "size_accuracy", "COCO_MAX_DETS", "IOU_THRESHOLD"]
