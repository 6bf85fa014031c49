"""Label image <-> polygons (particlesnn.polygons)."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from particlesnn.polygons import (
    label_polygons, polygon_area, polygon_mask, polygon_pixels, polygons_to_labels,
)


def make_labels() -> np.ndarray:
    """30 particles: disks of diameter 4..60 px, touching pairs, one cut by the right border,
    tiny ones of 1-5 px (2x2, 1x4, L shape, single pixel, diagonal pair), small ellipses."""
    lab = np.zeros((300, 320), np.int32)
    k = 0

    def put(rr, cc):
        nonlocal k
        k += 1
        lab[rr, cc] = k

    cy, cx = 35, 35
    for d in [4, 5, 6, 8, 10, 12, 15, 18, 22, 26, 30, 36, 44, 52, 60]:
        if cx + d / 2 > 310:
            cx, cy = 35, cy + 75
        put(*disk((cy, cx), d / 2, shape=lab.shape))
        cx += max(d, 20) + 12
    rr, cc = disk((250, 60), 20, shape=lab.shape)  # a disk split in two touching halves
    left = cc < 60
    put(rr[left], cc[left])
    put(rr[~left], cc[~left])
    put(*ellipse(250, 140, 12, 22, shape=lab.shape, rotation=0.5))  # touching ellipse + disk
    rr, cc = disk((262, 170), 10, shape=lab.shape)
    free = lab[rr, cc] == 0
    put(rr[free], cc[free])
    put(*disk((150, 318), 15, shape=lab.shape))  # cut by the border
    for pix in ([(290, 10), (290, 11), (291, 10), (291, 11)], [(280, c) for c in range(30, 34)],
                [(285, 50), (286, 50), (287, 50), (287, 51), (287, 52)], [(292, 70)],
                [(290, 90), (291, 91)]):
        put(*np.array(pix).T)
    rng = np.random.default_rng(3)
    while k < 30:
        y, x = int(rng.integers(200, 290)), int(rng.integers(200, 300))
        if (lab[max(0, y - 10):y + 10, max(0, x - 10):x + 10] == 0).all():
            put(*ellipse(y, x, rng.uniform(2, 6), rng.uniform(2, 8), shape=lab.shape,
                         rotation=rng.uniform(0, 3)))
    return lab


def per_particle_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = int(a.max())
    return np.array([((a == k) & (b == k)).sum() / ((a == k) | (b == k)).sum() for k in range(1, n + 1)])


@pytest.fixture(scope="module")
def lab30() -> np.ndarray:
    lab = make_labels()
    assert lab.max() == 30 and len(np.unique(lab)) == 31
    return lab


def test_fixture_has_what_the_round_trips_need(lab30):
    sizes = np.bincount(lab30.ravel())[1:]
    assert sizes.min() == 1 and sizes.max() > 2500
    assert (lab30[:, -1] > 0).any()  # one particle cut by the border
    # touching particles: some label is 4-adjacent to another label
    a, b = lab30[:, :-1], lab30[:, 1:]
    assert ((a > 0) & (b > 0) & (a != b)).any()


def test_round_trip_faithful_and_simplified(lab30):
    polys = label_polygons(lab30)
    assert sorted(polys) == list(range(1, 31))
    back = polygons_to_labels(polys, lab30.shape)
    iou = per_particle_iou(lab30, back)
    assert iou.min() >= 0.98
    assert back.max() == 30 and len(np.unique(back)) == 31
    # simplified: a 60 px disk is outlined by a few dozen vertices, not hundreds
    big = int(np.argmax(np.bincount(lab30.ravel())[1:])) + 1
    assert 8 <= len(polys[big]) <= 60
    # the unsimplified outline reproduces the image exactly
    exact = polygons_to_labels(label_polygons(lab30, tolerance=0), lab30.shape)
    np.testing.assert_array_equal(exact, lab30)


def test_touching_particles_stay_disjoint_in_any_order(lab30):
    polys = label_polygons(lab30)
    a = polygons_to_labels(polys, lab30.shape, order="given")
    b = polygons_to_labels(dict(reversed(list(polys.items()))), lab30.shape, order="given")
    np.testing.assert_array_equal(a, b)


def test_polygon_vertices_pixel_corner_convention():
    lab = np.zeros((6, 6), int)
    lab[1:4, 2:4] = 1  # rows 1..3, cols 2..3 -> x in [2, 4], y in [1, 4]
    p = label_polygons(lab, tolerance=0)[1]
    assert p[:, 0].min() == 2.0 and p[:, 0].max() == 4.0
    assert p[:, 1].min() == 1.0 and p[:, 1].max() == 4.0
    # traced along pixel edges: the rectangle itself, area = pixel count
    assert len(p) == 4 and polygon_area(p) == 6.0


def test_tiny_particles_survive_both_ways():
    lab = np.zeros((8, 8), int)
    lab[0, 0] = 1  # corner pixel
    lab[3, 3] = 2
    lab[5, 6] = 3
    lab[6, 7] = 3  # diagonal pair
    polys = label_polygons(lab)
    np.testing.assert_array_equal(polygons_to_labels(polys, lab.shape), lab)
    # a degenerate polygon (all inside one pixel, no centre covered) keeps that pixel
    m = polygon_mask(np.array([[3.1, 3.1], [3.3, 3.1], [3.2, 3.2]]), (8, 8))
    assert m.sum() == 1 and m[3, 3]


def test_pixel_centre_rule_and_clipping():
    sq = np.array([[2, 2], [4, 2], [4, 4], [2, 4]], float)  # covers pixels 2..3
    rr, cc = polygon_pixels(sq, (6, 6))
    assert sorted(zip(rr.tolist(), cc.tolist())) == [(2, 2), (2, 3), (3, 2), (3, 3)]
    m = polygon_mask(sq + 3, (6, 6))  # partly outside: clipped to pixels 5,5 only
    assert m.sum() == 1 and m[5, 5]


def test_smaller_particle_on_a_bigger_one_survives():
    big = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    small = np.array([[4, 4], [6, 4], [6, 6], [4, 6]], float)
    lab = polygons_to_labels({1: small, 2: big}, (12, 12))  # default order: by area
    assert (lab == 1).sum() == 4 and (lab == 2).sum() == 96
    lab = polygons_to_labels({1: small, 2: big}, (12, 12), order="given")  # later wins
    assert (lab == 1).sum() == 0


def test_holes_filled_and_empty_input():
    lab = np.zeros((9, 9), int)
    lab[1:8, 1:8] = 1
    lab[4, 4] = 0
    back = polygons_to_labels(label_polygons(lab), lab.shape)
    assert (back == 1).sum() == 49  # outer outline only
    assert label_polygons(np.zeros((5, 5), int)) == {}
    with pytest.raises(ValueError):
        label_polygons(np.zeros((5, 5), float))
