"""The synthetic benchmark's own measure: does a true particle show an apex of its own?"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from synthetic import own_apex  # noqa: E402


def _bump(yy, xx, cy, cx, sigma, h):
    return h * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))


def test_own_apex_tells_a_particle_from_a_shoulder():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128].astype(float)
    z = 0.01 * rng.standard_normal(yy.shape)
    truth = np.zeros(yy.shape, np.int32)
    # 1: a lone bump; 2 and 3: two touching bumps, each with its own top
    for k, (cy, cx) in enumerate([(24, 24), (24, 70), (24, 82)], start=1):
        z += _bump(yy, xx, cy, cx, 3.0, 1.0)
    # 4: a small bump on the flank of a large one (5), close enough to leave only a shoulder
    z += _bump(yy, xx, 70, 60, 8.0, 3.0) + _bump(yy, xx, 70, 71, 2.0, 0.4)
    ext = (yy - 70) ** 2 + (xx - 71) ** 2 <= 9
    big = ((yy - 70) ** 2 + (xx - 60) ** 2 <= 100) & ~ext
    for k, (cy, cx) in enumerate([(24, 24), (24, 70), (24, 82)], start=1):
        truth[((yy - cy) ** 2 + (xx - cx) ** 2 <= 25) & (truth == 0)] = k
    truth[ext] = 4
    truth[big] = 5
    # 6: a footprint on flat, noisy ground: no particle to see
    truth[80:86, 110:116] = 6
    assert own_apex(z, truth).tolist() == [True, True, True, False, True, False]
    # the same small bump alone has its own top
    z2 = 0.01 * rng.standard_normal(yy.shape) + _bump(yy, xx, 70, 71, 2.0, 0.4)
    assert own_apex(z2, truth).tolist() == [False, False, False, True, False, False]
