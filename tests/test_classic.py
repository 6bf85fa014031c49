"""Classic baselines: global threshold and distance-transform watershed."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk

from particlesnn import HeightMap, InputError
from particlesnn.evaluate import evaluate_pair
from particlesnn.segment.classic import threshold, threshold_level, watershed


def separated_discs(rng):
    """Nine discs of radius 5-9 px, 3 nm high, on a noisy flat background (nm)."""
    z = rng.normal(0.0, 0.05, (120, 120))
    truth = np.zeros(z.shape, dtype=np.int32)
    k = 0
    for i, r0 in enumerate((20, 60, 100)):
        for j, c0 in enumerate((20, 60, 100)):
            k += 1
            rr, cc = disk((r0, c0), 5 + (i + j), shape=z.shape)
            z[rr, cc] += 3.0
            truth[rr, cc] = k
    return z, truth


@pytest.mark.parametrize("fn", [threshold, watershed])
def test_separated_discs_found_exactly(fn):
    z, truth = separated_discs(np.random.default_rng(1))
    seg = fn(HeightMap(z, pixel_size=(1.0, 1.0)))
    assert seg.count == 9
    assert seg.labels.dtype == np.int32
    assert sorted(np.unique(seg.labels)) == list(range(10))       # consecutive
    assert np.all(seg.scores == 1.0)
    d = evaluate_pair(seg.labels, truth, coco=False)
    assert d["iou_f1"] == 1.0 and d["mean_matched_iou"] == 1.0
    assert 0.05 < seg.info["level"] < 2.95


def touching_pair():
    z = np.zeros((60, 80))
    for c in (28, 48):                 # radius 11, centres 20 px apart: a neck of ~9 px
        rr, cc = disk((30, c), 11, shape=z.shape)
        z[rr, cc] = 2.0
    return z


def test_watershed_splits_touching_discs_threshold_merges():
    z = touching_pair()
    t = threshold(z)
    w = watershed(z)
    assert t.count == 1
    assert w.count == 2
    # the split runs near the middle column
    left = w.labels[30, 20]
    right = w.labels[30, 56]
    assert left and right and left != right


def test_manual_level_and_min_area():
    z = np.zeros((30, 30))
    z[2:4, 2:4] = 5.0                  # 4 px
    z[10:20, 10:20] = 1.0              # 100 px, lower
    assert threshold(z, level=0.5).count == 2
    assert threshold(z, level=0.5, min_area_px=5).count == 1
    assert threshold(z, level=2.0).count == 1
    seg = threshold(z, level=0.5)
    assert seg.info["level"] == 0.5 and seg.info["threshold_method"] is None


def test_nan_is_background_and_bad_input():
    z = np.zeros((20, 20))
    z[5:10, 5:10] = 1.0
    z[0, :] = np.nan
    seg = threshold(z)
    assert seg.count == 1
    with pytest.raises(InputError):
        threshold(np.full((5, 5), np.nan))
    with pytest.raises(InputError):
        threshold(np.zeros((0, 5)))
    with pytest.raises(InputError):
        threshold(z, method="nope")
    with pytest.raises(InputError):
        watershed(np.zeros((3, 3, 3)))


def test_flat_image_gives_nothing():
    seg = watershed(np.ones((10, 10)))
    assert seg.count == 0 and seg.labels.max() == 0
    assert threshold_level(np.ones((4, 4))) == 1.0
