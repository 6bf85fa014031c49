"""Double-tip ghosts: a shared, one-way offset from higher to lower particles is found and its
lower members dropped; random fields and regular arrays of equal particles are left alone."""
from __future__ import annotations

import numpy as np

from particlesnn.segment import Segmentation
from particlesnn.segment.ghosts import drop_ghosts, find_ghosts


def _field(centres, heights, shape=(256, 256), r=5):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    lab = np.zeros(shape, np.int32)
    z = np.zeros(shape)
    for k, ((cy, cx), h) in enumerate(zip(centres, heights), start=1):
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        m = d2 < r * r
        lab[m] = k
        z = np.maximum(z, np.where(m, h * (1 - d2 / (r * r)), 0))
    return lab, z


def _random_centres(rng, n, shape=(256, 256), margin=20, min_gap=30):
    pts = []
    while len(pts) < n:
        p = rng.uniform(margin, np.array(shape) - margin)
        if all(np.hypot(*(p - q)) > min_gap for q in pts):
            pts.append(p)
    return np.array(pts)


def test_ghosts_of_a_double_tip_are_found_and_dropped():
    rng = np.random.default_rng(1)
    real = _random_centres(rng, 20)
    off = np.array([7.0, -9.0])  # (rows, cols) from each particle to its ghost
    h = rng.uniform(1.0, 3.0, 20)
    lab, z = _field(np.r_[real, real + off], np.r_[h, h - 0.3])
    found = find_ghosts(lab, z)
    assert found is not None
    assert np.allclose(found["offset_px"], off, atol=0.5)
    assert found["ghosts"].tolist() == list(range(21, 41))  # exactly the ghosts
    seg = drop_ghosts(Segmentation(lab, np.ones(40, np.float32), {}), z)
    assert seg.count == 20 and set(np.unique(seg.labels)) == set(range(21))
    assert seg.info["double_tip"]["ghosts_dropped"] == 20
    assert "double tip" in seg.info["warnings"][0]


def test_random_fields_and_regular_arrays_have_no_ghosts():
    rng = np.random.default_rng(2)
    for _ in range(5):  # random positions and heights, some close pairs
        c = _random_centres(rng, 60, min_gap=11)
        lab, z = _field(c, rng.uniform(1, 3, len(c)))
        assert find_ghosts(lab, z) is None
    # a square array of equal pillars (a calibration grating) with noise on their heights
    c = np.array([(r, q) for r in range(20, 240, 25) for q in range(20, 240, 25)], float)
    lab, z = _field(c, 2.0 + 0.01 * rng.standard_normal(len(c)))
    assert find_ghosts(lab, z) is None
    seg = Segmentation(lab, np.ones(len(c), np.float32), {})
    assert drop_ghosts(seg, z) is seg  # unchanged, no warning
    # the same array on a slight height gradient along the rows: every pair points one way
    lab, z = _field(c, 2.0 + 0.002 * c[:, 1] + 0.0005 * rng.standard_normal(len(c)))
    assert find_ghosts(lab, z, max_chains=1.0) is not None  # what the chain test is for
    assert find_ghosts(lab, z) is None


def test_detector_drops_the_ghosts_of_a_synthetic_double_tip_scan():
    import pytest

    from particlesnn.model import WEIGHTS_DIR
    from particlesnn.preprocess import level, orient
    from particlesnn.segment.neural import segment_model
    from particlesnn.synth import generate
    from particlesnn.synth.presets import draw

    if not (WEIGHTS_DIR / "default" / "model.onnx").is_file():
        pytest.skip("shipped weights not built yet")
    p = draw("stm-sparse", np.random.default_rng(5), size=384)
    p.particles.coverage = 0.04
    ghost_nm = 12 * p.pixel_size_nm  # 12 px to the right of each particle, 0.3 nm lower
    p.tip.double_offset_nm, p.tip.double_dz_nm = (ghost_nm, 0.0), 0.3
    si = generate(p, 7)
    hm, _ = orient(level(si.height), "bright")
    seg = segment_model(hm)
    assert "double_tip" in seg.info, seg.info
    assert abs(abs(seg.info["double_tip"]["offset_px"][1]) - 12) < 3
    n_true = int(si.labels.max())
    assert abs(seg.count - n_true) <= max(2, 0.15 * n_true)  # not twice as many
    assert any("double tip" in w for w in seg.info["warnings"])
