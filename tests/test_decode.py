"""Decoding ideal detector maps recovers known instances; the LoG size estimate is right."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from particlesnn.segment.decode import decode
from particlesnn.segment.neural import choose_scale, estimate_diameter


def _discs(shape, specs):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    lab = np.zeros(shape, np.int32)
    for k, (cy, cx, r) in enumerate(specs, start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = k
    return lab


def _ideal_maps(lab):
    dist = np.zeros(lab.shape, np.float32)
    for k in range(1, lab.max() + 1):
        m = lab == k
        d = ndi.distance_transform_edt(m)
        dist[m] = d[m] / d.max()
    return {"prob": (lab > 0).astype(np.float32), "dist": dist}


def _best_iou(lab_true, lab_pred, k):
    m = lab_true == k
    ids, n = np.unique(lab_pred[m], return_counts=True)
    j = ids[np.argmax(n)]
    if j == 0:
        return 0.0
    p = lab_pred == j
    return (m & p).sum() / (m | p).sum()


def test_touching_particles_come_out_separate():
    # two overlapping discs (centres 18 px apart, radius 10) and one isolated disc
    truth = _discs((80, 120), [(40, 30, 10), (40, 48, 10), (40, 95, 12)])
    # the overlap pixels go to the nearer centre, as in a real label image
    seg = decode(_ideal_maps(truth))
    assert seg.count == 3
    for k in (1, 2, 3):
        assert _best_iou(truth, seg.labels, k) > 0.9
    assert seg.labels.dtype == np.int32
    assert set(np.unique(seg.labels)) == {0, 1, 2, 3}
    np.testing.assert_allclose(seg.scores, 1.0)


def test_empty_and_tiny():
    z = np.zeros((32, 32), np.float32)
    assert decode({"prob": z, "dist": z}).count == 0
    # a 3x3 foreground blob whose distance never passes the marker threshold still counts
    prob = z.copy()
    prob[10:13, 10:13] = 0.9
    dist = prob * 0.3
    seg = decode({"prob": prob, "dist": dist}, min_area=4)
    assert seg.count == 1 and (seg.labels > 0).sum() == 9
    assert seg.scores[0] == pytest.approx(0.9, abs=1e-6)
    assert decode({"prob": prob, "dist": dist}, min_area=10).count == 0
    assert decode({"prob": prob, "dist": dist}, min_score=0.95).count == 0


def test_size_estimate_and_scale():
    rng = np.random.default_rng(0)
    for d in (6.0, 16.0, 40.0):
        lab = _discs((256, 256), [(y, x, d / 2) for y in np.arange(d, 256 - d, 2.5 * d)
                                  for x in np.arange(d, 256 - d, 2.5 * d)])
        img = (lab > 0).astype(np.float32) + 0.02 * rng.standard_normal(lab.shape)
        est = estimate_diameter(img)
        assert est is not None and 0.7 * d < est < 1.4 * d, (d, est)
    assert estimate_diameter(np.zeros((64, 64))) is None
    assert choose_scale((512, 512), 4.0) == pytest.approx(2.0)
    assert choose_scale((512, 512), 1.0) == pytest.approx(2.5)
    assert choose_scale((512, 512), 20.0) == 1.0
    assert choose_scale((512, 512), 80.0) == pytest.approx(0.5)
    assert choose_scale((512, 512), None) == 1.0
