"""Metrics on hand-made label images with known TP / FP / FN."""
from __future__ import annotations

import math

import numpy as np
import pytest

from particlesnn.evaluate import Boxes, evaluate_pair, evaluate_set, coco_map, size_accuracy
from particlesnn.matching import centre_match, centre_match_boxes, iou_match, label_boxes


def square(lab, k, r0, c0, size):
    lab[r0:r0 + size, c0:c0 + size] = k


@pytest.fixture
def truth():
    t = np.zeros((60, 60), dtype=np.int32)
    square(t, 1, 2, 2, 10)     # A
    square(t, 2, 2, 30, 10)    # B
    square(t, 3, 30, 2, 10)    # C
    square(t, 4, 30, 30, 10)   # D
    return t


def test_known_counts(truth):
    p = np.zeros_like(truth)
    square(p, 1, 2, 2, 10)     # A exact
    square(p, 2, 3, 31, 8)     # inside B: IoU 64/100 -> TP at 0.5
    square(p, 3, 30, 2, 4)     # small corner of C: centre inside C, IoU 0.16 -> centre TP, IoU FP
    square(p, 4, 48, 48, 6)    # on background: FP for both rules
    d = evaluate_pair(p, truth, coco=False)
    assert (d["centre_tp"], d["centre_fp"], d["centre_fn"]) == (3, 1, 1)
    assert (d["iou_tp"], d["iou_fp"], d["iou_fn"]) == (2, 2, 2)
    assert d["centre_precision"] == pytest.approx(0.75)
    assert d["centre_recall"] == pytest.approx(0.75)
    assert d["iou_f1"] == pytest.approx(0.5)
    assert d["mean_matched_iou"] == pytest.approx((1.0 + 0.64) / 2)
    assert d["pq"] == pytest.approx(1.64 / (2 + 1 + 1))


def test_second_prediction_on_same_truth_is_fp(truth):
    p = np.zeros_like(truth)
    square(p, 1, 2, 2, 5)
    square(p, 2, 7, 7, 5)      # both centres inside A
    d = evaluate_pair(p, truth, coco=False)
    assert (d["centre_tp"], d["centre_fp"], d["centre_fn"]) == (1, 1, 3)


def test_centre_rule_prediction_covering_several_truths():
    t = np.zeros((20, 40), dtype=np.int32)
    square(t, 1, 5, 2, 10)
    square(t, 2, 5, 20, 10)    # gap of columns 12..19 between them
    p = np.zeros_like(t)
    p[5:15, 2:30] = 1          # one blob over both; its centre (col 15.5) lies in the gap
    r = centre_match(p, t)
    assert (r.tp, r.fp, r.fn) == (1, 0, 1)
    # centre inside the first truth: same outcome
    t2 = np.zeros((20, 40), dtype=np.int32)
    t2[5:15, 2:16] = 1
    t2[5:15, 16:26] = 2        # touching pair, the first larger
    p2 = np.zeros_like(t2)
    p2[5:15, 2:26] = 1         # merged: centre at col 13.5, inside truth 1
    assert t2[tuple(np.rint(np.argwhere(p2).mean(axis=0)).astype(int))] == 1
    r2 = centre_match(p2, t2)
    assert (r2.tp, r2.fp, r2.fn) == (1, 0, 1)


def test_identical_is_perfect(truth):
    d = evaluate_pair(truth, truth)
    for k in ("centre_f1", "iou_f1", "mean_matched_iou", "pq", "size_accuracy", "map_bbox", "map_segm"):
        assert d[k] == pytest.approx(1.0), k
    assert d["centre_fp"] == d["iou_fp"] == 0


def test_map_drops_for_shifted_prediction(truth):
    shifted = np.roll(truth, 3, axis=1)
    d = evaluate_pair(shifted, truth)
    assert d["map_segm"] < 0.6 and d["map_bbox"] < 0.6
    assert d["map50_bbox"] == pytest.approx(1.0)      # IoU 7/13 = 0.54 still passes 0.5
    far = np.roll(truth, 6, axis=1)
    assert evaluate_pair(far, truth)["map_bbox"] == pytest.approx(0.0)


def test_map_counts_scores_order(truth):
    p = truth.copy()
    square(p, 5, 48, 48, 6)    # a false positive
    hi = evaluate_pair(p, truth, scores=[0.9, 0.9, 0.9, 0.9, 0.1])["map_bbox"]
    lo = evaluate_pair(p, truth, scores=[0.5, 0.5, 0.5, 0.5, 0.99])["map_bbox"]
    assert hi == pytest.approx(1.0)
    assert lo < hi


def test_size_accuracy():
    assert size_accuracy(9.0, 10.0) == pytest.approx(0.9)
    assert size_accuracy(11.0, 10.0) == pytest.approx(0.9)
    t = np.zeros((40, 40), dtype=np.int32)
    square(t, 1, 5, 5, 10)
    p = np.zeros_like(t)
    square(p, 1, 5, 5, 5)      # area 25 vs 100 -> diameters ratio 0.5
    assert evaluate_pair(p, t, coco=False)["size_accuracy"] == pytest.approx(0.5)
    assert evaluate_pair(np.zeros_like(t), t, coco=False)["size_accuracy"] == 0.0


def test_empty_images():
    z = np.zeros((10, 10), dtype=np.int32)
    d = evaluate_pair(z, z)
    assert d["centre_f1"] == 1.0 and d["iou_tp"] == 0
    assert math.isnan(d["map_bbox"])
    t = z.copy(); square(t, 1, 2, 2, 3)
    d = evaluate_pair(z, t)
    assert d["centre_fn"] == 1 and d["centre_recall"] == 0.0 and d["map_bbox"] == 0.0


def test_set_sums_counts_not_ratios(truth):
    empty = np.zeros_like(truth)
    df, overall = evaluate_set([(truth, truth), (empty, truth)], names=["a", "b"])
    assert list(df["name"]) == ["a", "b"]
    assert overall["centre_tp"] == 4 and overall["centre_fn"] == 4
    assert overall["centre_recall"] == pytest.approx(0.5)
    assert overall["centre_precision"] == pytest.approx(1.0)
    assert overall["n_images"] == 2
    assert overall["size_accuracy"] == pytest.approx(0.5)
    assert 0.4 < overall["map_segm"] < 0.6


def test_boxes(truth):
    boxes = label_boxes(truth)
    assert boxes[0].tolist() == [2, 2, 12, 12]
    b = Boxes(boxes, truth.shape)
    d = evaluate_pair(truth, b)
    assert d["truth"] == "boxes"
    assert d["centre_f1"] == 1.0 and d["iou_f1"] == 1.0 and d["map_bbox"] == pytest.approx(1.0)
    assert math.isnan(d["map_segm"])
    assert d["size_accuracy"] == pytest.approx(1.0)
    p = truth.copy(); p[p == 4] = 0
    d = evaluate_pair(p, b, coco=False)
    assert (d["centre_tp"], d["centre_fp"], d["centre_fn"]) == (3, 0, 1)


def test_centre_in_two_boxes_matches_nearest():
    boxes = np.array([[0, 0, 20, 20], [8, 8, 40, 40]], dtype=float)
    r = centre_match_boxes(np.array([[10.0, 10.0]]), boxes)     # (row, col) -> x,y = 10.5
    assert (r.tp, r.fp, r.fn) == (1, 0, 1) and r.pairs[0].tolist() == [0, 0]
    r = centre_match_boxes(np.array([[10.0, 10.0], [11.0, 11.0]]), boxes)
    assert (r.tp, r.fp, r.fn) == (2, 0, 0)


def test_iou_hungarian_one_to_one():
    t = np.zeros((10, 30), dtype=np.int32)
    t[0:10, 0:10] = 1
    p = np.zeros_like(t)
    p[0:10, 0:10] = 1
    r = iou_match(p, t)
    assert (r.tp, r.fp, r.fn) == (1, 0, 0) and r.ious[0] == 1.0


def test_bad_input():
    with pytest.raises(ValueError):
        evaluate_pair(np.zeros((5, 5), int), np.zeros((6, 5), int))
    with pytest.raises(ValueError):
        evaluate_pair(np.zeros((5, 5), float), np.zeros((5, 5), int))
    with pytest.raises(ValueError):
        evaluate_pair(np.ones((5, 5), int), np.zeros((5, 5), int), scores=[0.5, 0.2])


def test_cli_evaluate(tmp_path, truth):
    import json as _json

    import tifffile
    from PIL import Image
    from typer.testing import CliRunner

    from particlesnn.cli import app

    pred_dir, gt_dir, out = tmp_path / "pred", tmp_path / "gt", tmp_path / "out"
    pred_dir.mkdir(); gt_dir.mkdir()
    p = truth.copy(); p[p == 4] = 0                      # one miss
    tifffile.imwrite(pred_dir / "s1.labels.tif", p.astype(np.uint16))
    (pred_dir / "s1.scores.txt").write_text("label score\n1 0.9\n2 0.8\n3 0.7\n")
    tifffile.imwrite(pred_dir / "s2.labels.tif", truth.astype(np.uint16))
    Image.fromarray(truth.astype(np.uint16)).save(gt_dir / "s1.png")
    Image.fromarray(truth.astype(np.uint16)).save(gt_dir / "s2.png")
    # with a single registered command typer makes it the root command
    sub = ["evaluate"] if len(app.registered_commands) + len(app.registered_groups) > 1 else []
    res = CliRunner().invoke(app, sub + ["--pred", str(pred_dir), "--gt", str(gt_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "overall" in res.output
    doc = _json.loads((out / "evaluation.json").read_text())
    assert doc["overall"]["centre_tp"] == 7 and doc["overall"]["centre_fn"] == 1
    assert doc["overall"]["centre_recall"] == pytest.approx(7 / 8)
    assert (out / "evaluation.csv").read_text().count("\n") == 3
    # a score file missing a label is a clear input error
    (pred_dir / "s1.scores.txt").write_text("1 0.9\n2 0.8\n")
    res = CliRunner().invoke(app, sub + ["--pred", str(pred_dir), "--gt", str(gt_dir)])
    assert res.exit_code != 0
    try:
        err = res.stderr
    except ValueError:  # older click: stderr mixed into output
        err = ""
    assert "no score for label 3" in res.output + err + str(res.exception)


@pytest.mark.parametrize("boxes", [False, True])
def test_fast_map_equals_pycocotools(boxes):
    from scipy import ndimage as ndi

    rng = np.random.default_rng(7)
    preds, truths, scores = [], [], []
    for _ in range(3):
        z = np.zeros((80, 80), bool)
        for r, c, rad in zip(rng.integers(0, 80, 30), rng.integers(0, 80, 30), rng.uniform(2, 6, 30)):
            rr, cc = np.ogrid[:80, :80]
            z |= (rr - r) ** 2 + (cc - c) ** 2 < rad ** 2
        t, _ = ndi.label(z)
        p, _ = ndi.label(np.roll(z, int(rng.integers(1, 3)), axis=1) | (rng.random((80, 80)) > 0.995))
        preds.append(p)
        truths.append(Boxes(label_boxes(t) + rng.normal(0, 0.5, (t.max(), 4)), t.shape) if boxes else t)
        scores.append(rng.random(p.max()))
    fast = coco_map(preds, truths, scores, engine="fast")
    ref = coco_map(preds, truths, scores, engine="pycocotools")
    assert 0.05 < fast["map_bbox"] < 0.95
    for k in fast:
        if math.isnan(ref[k]):
            assert math.isnan(fast[k])
        else:
            assert fast[k] == pytest.approx(ref[k], abs=1e-12), k


@pytest.mark.parametrize("engine", ["fast", "pycocotools"])
def test_map_max_dets_caps_a_perfect_prediction(engine):
    # 30 separate squares predicted exactly: AP 1 when all may count; with maxDets 20 only the
    # 20 best-scored count, so precision is 1 up to recall 20/30 and 0 after: 67 of the 101
    # recall points (0, 0.01, ..., 0.66).
    t = np.zeros((60, 100), int)
    for k in range(30):
        r, c = divmod(k, 10)
        t[r * 20 + 5:r * 20 + 12, c * 10 + 2:c * 10 + 8] = k + 1
    s = np.linspace(1.0, 0.5, 30)
    assert coco_map([t], [t], [s], engine=engine)["map_segm"] == pytest.approx(1.0)
    capped = coco_map([t], [t], [s], engine=engine, max_dets=20)
    assert capped["map_segm"] == pytest.approx(67 / 101)
    assert capped["map_bbox"] == pytest.approx(67 / 101)


def test_predictions_named_apart_by_detect_find_their_truth(tmp_path):
    """detect names outputs apart where inputs share a stem (scan1_gsf, fresh_scan1): evaluate
    matches such a prediction to the truth's scan1 when it is the only one, and refuses to pick
    among several (the same image in several formats)."""
    from particlesnn.cli.evaluate_cmd import _by_truth_names
    from particlesnn.errors import InputError

    gts = {"scan1": 1, "scan2": 2}
    assert _by_truth_names({"scan1_gsf": "a", "fresh_scan2": "b"}, gts, tmp_path) == \
        {"scan1": "a", "scan2": "b"}
    assert _by_truth_names({"scan1": "a", "scan1_txt": "c"}, gts, tmp_path) == {"scan1": "a", "scan1_txt": "c"}
    with pytest.raises(InputError, match="several predictions for the image 'scan1'"):
        _by_truth_names({"scan1_gsf": "a", "scan1_png": "b"}, gts, tmp_path)
