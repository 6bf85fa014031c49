"""Decoding ideal detector maps recovers known instances; scales and merging are right."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from particlesnn.segment.decode import decode
from particlesnn.segment.neural import choose_scale


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


def test_diameter_hint_scale():
    assert choose_scale((512, 512), 4.0) == pytest.approx(2.0)
    assert choose_scale((512, 512), 1.0) == pytest.approx(2.5)
    assert choose_scale((512, 512), 20.0) == 1.0
    assert choose_scale((512, 512), 80.0) == pytest.approx(0.5)
    assert choose_scale((512, 512), None) == 1.0


def test_merge_instances_keeps_best_and_maps_back():
    from particlesnn.segment.decode import merge_instances

    full = _discs((64, 64), [(16, 16, 6), (48, 48, 10)])
    # the same large disc found on a copy shrunk by 2 (better score), plus a fragment of it
    # at full size (worse score) and the small disc only at full size
    half = _discs((32, 32), [(24, 24, 5)])
    frag = np.zeros((64, 64), np.int32)
    frag[full == 1] = 1
    frag[44:52, 44:52] = 2
    seg = merge_instances([(frag, np.array([0.9, 0.5]), 1.0), (half, np.array([0.95]), 0.5)],
                          (64, 64))
    assert seg.count == 2
    assert seg.scores.tolist() == pytest.approx([0.95, 0.9])
    big = seg.labels == 1
    inter = (big & (full == 2)).sum() / (big | (full == 2)).sum()
    assert inter > 0.8  # mapped back to the full grid at the right place and size
    assert ((seg.labels == 2) == (full == 1)).all()
    empty = merge_instances([(np.zeros((8, 8), np.int32), np.zeros(0), 1.0)], (8, 8))
    assert empty.count == 0 and empty.labels.shape == (8, 8)


def test_auto_profile_switches_when_the_standard_pass_is_unsure(monkeypatch):
    import particlesnn.segment.neural as neural
    from particlesnn.heightmap import HeightMap
    from particlesnn.model import load_model

    model = load_model()
    lab = _discs((96, 96), [(20, 20, 5), (60, 30, 5), (40, 70, 5)])
    calls = []

    def fake_run(get_maps, name, factors, thresholds, shape, upscale=True, height=False):
        calls.append(name)
        score = 0.80 if name == "standard" else 0.95
        seg = neural.merge_instances([(lab, np.full(3, score), 1.0)], shape)
        seg.info["certainty"] = score
        return seg, list(factors), None

    monkeypatch.setattr(neural, "run_profile", fake_run)
    img = 0.1 * np.random.default_rng(0).random((96, 96)) + (lab > 0)  # the discs stand out
    hm = HeightMap(img, pixel_size=None, unit="a.u.")
    seg = neural.segment_model(hm, model=model)
    assert calls == ["standard", "textured"]
    assert seg.info["profile"] == "textured" and "unsure" in seg.info["profile_reason"]
    assert seg.count == 3 and seg.scores.min() == pytest.approx(0.95)

    # a height map in nm stays on the standard profile however unsure the pass is
    calls.clear()
    seg = neural.segment_model(HeightMap(img, pixel_size=(0.1, 0.1), unit="nm"), model=model)
    assert calls == ["standard"] and seg.info["profile"] == "standard"
    assert seg.info["profile_reason"].startswith("height maps stay")

    calls.clear()
    monkeypatch.setattr(neural, "SWITCH_MEAN_SCORE", 0.5)
    model.thresholds.pop("textured_below_mean_score", None)
    seg = neural.segment_model(hm, model=model)
    assert calls == ["standard"] and seg.info["profile"] == "standard"
    seg = neural.segment_model(hm, model=model, profile="textured")
    assert calls == ["standard", "textured"] and seg.info["profile_reason"] == "chosen by the user"
    with pytest.raises(Exception, match="profile"):
        neural.segment_model(hm, model=model, profile="nope")


def test_merge_replaces_fragments_inside_a_large_particle_but_keeps_cluster_parts():
    from particlesnn.segment.decode import merge_instances

    big = _discs((96, 96), [(48, 48, 30)])
    # full-size pass: two small, confident fragments inside the large particle
    frags = _discs((96, 96), [(40, 40, 5), (58, 55, 4)])
    half = _discs((48, 48), [(24, 24, 15)])  # the large particle, on a copy shrunk by 2
    seg = merge_instances([(frags, np.array([0.97, 0.96]), 1.0), (half, np.array([0.9]), 0.5)],
                          (96, 96))
    assert seg.count == 1 and seg.info["fragments_replaced"] == 2
    m = seg.labels == 1
    assert (m & (big == 1)).sum() / (m | (big == 1)).sum() > 0.9  # whole, without holes
    # a cluster of three touching particles: the parts cover the blob, so they are kept
    parts = _discs((96, 96), [(48, 30, 12), (48, 54, 12), (48, 78, 12)])
    blob = np.zeros((48, 48), np.int32)
    blob[cv_small(parts > 0)] = 1
    seg = merge_instances([(parts, np.array([0.95, 0.95, 0.95]), 1.0), (blob, np.array([0.9]), 0.5)],
                          (96, 96))
    assert seg.count == 3 and seg.info["fragments_replaced"] == 0


@pytest.mark.parametrize("sliver_score", [0.97, 0.85])  # placed before / after the whole one
def test_merge_gives_crumbs_to_their_particle_but_keeps_a_small_neighbour(sliver_score):
    """An 80 px particle cut on the full-size copy into most of it plus a sliver at its edge,
    and found whole on the copy shrunk by 2: the sliver goes back to the particle. A small
    particle touching it from outside (not inside the whole one) stays a particle."""
    from particlesnn.segment.decode import merge_instances

    big = _discs((128, 128), [(64, 64, 40)])
    full = big.copy()
    full[(big == 1) & (np.arange(128)[None, :] > 98)] = 2  # a 6 px wide sliver at the right edge
    full[_discs((128, 128), [(64, 17, 6)]) == 1] = 3  # a small particle touching it on the left
    half = np.zeros((64, 64), np.int32)
    half[cv_small(big == 1)] = 1
    seg = merge_instances([(full, np.array([0.96, sliver_score, 0.95]), 1.0),
                           (half, np.array([0.9]), 0.5)], (128, 128))
    assert seg.count == 2 and seg.info["crumbs_absorbed"] == 1
    whole = seg.labels == seg.labels[64, 64]
    assert (whole & (big == 1)).sum() / (whole | (big == 1)).sum() > 0.97
    assert seg.labels[64, 17] not in (0, seg.labels[64, 64])
    # without the whole particle on a shrunk copy, nothing says the sliver is a crumb
    seg = merge_instances([(full, np.array([0.96, sliver_score, 0.95]), 1.0)], (128, 128))
    assert seg.count == 3 and seg.info["crumbs_absorbed"] == 0


def cv_small(mask):
    """Shrink a bool mask by 2 (any pixel of each 2 x 2 block)."""
    return mask.reshape(mask.shape[0] // 2, 2, mask.shape[1] // 2, 2).any(axis=(1, 3))


def test_profile_thresholds_override_the_top_level_ones():
    from particlesnn.segment.neural import profile_thresholds

    th = {"prob_thresh": 0.6, "marker_thresh": 0.5, "min_area": 4, "min_score": 0.8,
          "textured": {"prob_thresh": 0.5, "min_score": 0.7}, "standard-height": {"min_score": 0.6}}
    assert profile_thresholds(th, "standard") == {"prob_thresh": 0.6, "marker_thresh": 0.5,
                                                  "min_area": 4, "min_score": 0.8}
    assert profile_thresholds(th, "textured") == {"prob_thresh": 0.5, "marker_thresh": 0.5,
                                                  "min_area": 4, "min_score": 0.7}
    assert profile_thresholds(th, "standard", height=True)["min_score"] == 0.6
    assert profile_thresholds(th, "textured", height=True)["min_score"] == 0.7



def test_enlarged_copy_particles_keep_their_area_and_place():
    """A particle found on the image enlarged by 2 comes back with a quarter of its area (the
    mean over many discs within 1.5 %) and its centre where it was (within 0.1 px on average),
    whatever the parity of its box; nearest-neighbour resizing of the box stretched it by up
    to a pixel (+3 % area)."""
    from particlesnn.segment.decode import merge_instances, shrink_mask

    rng = np.random.default_rng(4)
    ratios, shifts = [], []
    yy, xx = np.mgrid[0:96, 0:96]
    for _ in range(200):
        r = rng.uniform(3.0, 14.0)
        cy, cx = rng.uniform(20, 76, 2)
        big = (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).astype(np.int32)
        seg = merge_instances([(big, np.array([0.9]), 2.0)], (48, 48))
        assert seg.count == 1
        ratios.append(np.count_nonzero(seg.labels) / (big.sum() / 4))
        ys, xs = np.nonzero(seg.labels)
        by, bx = np.nonzero(big)
        # fine pixel i has its centre at coarse coordinate (i + 0.5) / 2 - 0.5
        shifts.append(np.hypot(ys.mean() - ((by.mean() + 0.5) / 2 - 0.5),
                               xs.mean() - ((bx.mean() + 0.5) / 2 - 0.5)))
    assert abs(np.mean(ratios) - 1.0) < 0.015
    assert np.mean(shifts) < 0.1
    # ties (half a block) are in on a checkerboard of the coarse grid: half of them stay
    stripes = np.zeros((8, 8), bool)
    stripes[:, ::2] = True
    assert shrink_mask(stripes, (0, 0), 2).sum() == 8
    assert shrink_mask(stripes, (0, 0), 2, origin=(0, 1)).sum() == 8
    one = shrink_mask(np.ones((3, 3), bool), (1, 1), 2)    # blocks 1/4, 1/2, 1/2, 1
    assert one.tolist() == [[False, False], [False, True]]
    assert shrink_mask(np.ones((3, 3), bool), (1, 1), 2, origin=(0, 1)).tolist() == [[False, True], [True, True]]


def _shoulder_maps(second_peak: float):
    """A particle (disc r 12, dist peak 1) with a smaller one (r 7) on its flank, 15 px away,
    whose own dist peak is ``second_peak`` and which the foreground joins to the first."""
    truth = _discs((60, 80), [(30, 30, 12), (30, 45, 7)])
    maps = _ideal_maps(truth)
    maps["dist"][truth == 2] *= second_peak
    return truth, maps


def test_peak_seeds_split_a_shoulder_that_never_reaches_the_marker_threshold():
    truth, maps = _shoulder_maps(0.5)  # its dist peaks at 0.5, under marker_thresh 0.6
    assert decode(maps, marker_thresh=0.6).count == 1
    seg = decode(maps, marker_thresh=0.6, peak_h=0.1)
    assert seg.count == 2 and seg.info["peak_h"] == 0.1
    for k in (1, 2):
        assert _best_iou(truth, seg.labels, k) > 0.85
    # isolated particles (no border between basins) and an empty map
    iso = _ideal_maps(_discs((40, 40), [(20, 20, 8)]))
    assert decode(iso, peak_h=0.1).count == 1
    z = np.zeros((16, 16), np.float32)
    assert decode({"prob": z, "dist": z}, peak_h=0.1).count == 0
    # a peak whose dynamic (about 0.5 here) is below h seeds nothing
    assert decode(maps, marker_thresh=0.6, peak_h=0.6).count == 1


def test_peak_seeds_without_seed_regions_are_the_h_maxima():
    from skimage.morphology import h_maxima

    from particlesnn.segment.decode import peak_labels

    for seed in range(8):
        f = ndi.gaussian_filter(np.random.default_rng(seed).random((96, 96)), 3)
        f = (f - f.min()) / (f.max() - f.min())
        for h in (0.02, 0.05, 0.1):
            lab = peak_labels(f, np.ones(f.shape, bool), np.zeros(f.shape, bool), h)
            ref, n_ref = ndi.label(h_maxima(f, h), structure=np.ones((3, 3)))
            assert len(np.unique(lab[lab > 0])) == n_ref
            # each particle holds exactly one h-maximum region
            pairs = np.unique(np.c_[lab[ref > 0], ref[ref > 0]], axis=0)
            assert len(np.unique(pairs[:, 0])) == len(pairs) == n_ref


def test_segment_model_reports_peak_seeds_when_a_model_asks_for_them():
    import particlesnn.segment.neural as neural
    from particlesnn.heightmap import HeightMap
    from particlesnn.model import load_model

    lab = _discs((96, 96), [(30, 30, 8), (30, 44, 6), (70, 60, 8)])
    hm = HeightMap(0.05 * np.random.default_rng(1).random((96, 96)) + (lab > 0), pixel_size=None, unit="a.u.")
    model = load_model()
    assert "peak_h" not in neural.segment_model(hm, model=model, profile="standard").info
    model.thresholds["peak_h"] = 0.2  # top level: the standard profile of plain images
    seg = neural.segment_model(hm, model=model, profile="standard")
    assert seg.info["peak_h"] == 0.2 and seg.count >= 2
