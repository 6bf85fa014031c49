"""Statistics with known answers."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from particlesnn import InputError
from particlesnn import stats


def table(d_nm, border=None, image=None, ps=0.5):
    d = np.asarray(d_nm, float)
    df = pd.DataFrame({
        "label": np.arange(1, d.size + 1),
        "area_px2": math.pi * (d / ps) ** 2 / 4, "area_nm2": math.pi * d ** 2 / 4,
        "eq_diameter_px": d / ps, "eq_diameter_nm": d,
        "length_nm": d * 1.2, "width_nm": d, "length_px": d * 1.2 / ps, "width_px": d / ps,
        "height_max_nm": d / 2,
        "touches_border": np.zeros(d.size, bool) if border is None else np.asarray(border),
    })
    if image is not None:
        df["image"] = image
    return df


def test_sem_is_std_over_sqrt_n_and_mid_surface():
    d = np.array([2.0, 3.0, 4.0, 5.0, 9.0])
    s = stats.summarize_image(table(d), image_area_nm2=1000.0)
    assert s["length_unit"] == "nm"
    assert s["eq_diameter_nm_mean"] == pytest.approx(d.mean())
    assert s["eq_diameter_nm_median"] == pytest.approx(4.0)
    assert s["eq_diameter_nm_std"] == pytest.approx(d.std(ddof=1))
    assert s["eq_diameter_nm_sem"] == pytest.approx(d.std(ddof=1) / math.sqrt(5))
    assert s["d_mean_nm"] == pytest.approx(d.mean())
    assert s["d_std_nm"] == pytest.approx(d.std(ddof=1))
    assert s["d_mid_surface_nm"] == pytest.approx(math.sqrt(np.mean(d ** 2)))
    assert s["count"] == 5
    assert s["density_per_100nm2"] == pytest.approx(0.5)
    assert s["density_per_um2"] == pytest.approx(5000.0)
    assert s["coverage"] == pytest.approx(np.sum(math.pi * d ** 2 / 4) / 1000.0)


def test_border_particles_counted_but_not_sized_and_filters():
    d = [2.0, 4.0, 6.0, 50.0]
    df = table(d, border=[False, False, False, True])
    s = stats.summarize_image(df, image_area_nm2=1e4)
    assert s["count"] == 4 and s["n_border"] == 1 and s["n_sized"] == 3
    assert s["eq_diameter_nm_mean"] == pytest.approx(4.0)
    s2 = stats.summarize_image(df, image_area_nm2=1e4, include_border=True)
    assert s2["eq_diameter_nm_mean"] == pytest.approx(15.5)
    s3 = stats.summarize_image(df, image_area_nm2=1e4, min_diameter=3.0, max_diameter=10.0)
    assert s3["count"] == 2 and s3["eq_diameter_nm_mean"] == pytest.approx(5.0)


def test_pixels_when_scale_unknown():
    d = np.array([10.0, 20.0, 30.0])
    df = table(d).drop(columns=[c for c in table(d).columns if c.endswith(("_nm", "_nm2"))])
    s = stats.summarize_image(df, image_shape_px=(100, 200))
    assert s["length_unit"] == "px"
    assert not any(k.endswith(("_nm", "nm2")) or "_nm_" in k for k in s)
    assert "density_per_100nm2" not in s
    assert s["density_per_mpx"] == pytest.approx(3 / 20000 * 1e6)
    assert s["eq_diameter_px_mean"] == pytest.approx(40.0)  # d / 0.5 px


def test_lognormal_recovers_parameters():
    rng = np.random.default_rng(1)
    mu, sigma = math.log(5.0), 0.3
    d = rng.lognormal(mu, sigma, 2000)
    f = stats.fit_lognormal(d)
    assert f["mu"] == pytest.approx(mu, abs=3 * sigma / math.sqrt(2000))
    assert f["sigma"] == pytest.approx(sigma, rel=0.05)
    assert f["median"] == pytest.approx(5.0, rel=0.03)
    assert f["mode"] == pytest.approx(math.exp(f["mu"] - f["sigma"] ** 2))
    assert f["ks_p"] > 0.01
    # a normal (not log-normal) wide sample is rejected
    bad = stats.fit_lognormal(np.abs(rng.normal(5, 2.5, 2000)) + 0.01)
    assert bad["ks_p"] < 0.01


def test_joint_equals_concatenated():
    rng = np.random.default_rng(2)
    a = table(rng.lognormal(1.5, 0.2, 40), image="a")
    b = table(rng.lognormal(1.7, 0.3, 60), image="b")
    both = pd.concat([a, b], ignore_index=True)
    images = pd.DataFrame({"image": ["a", "b"], "area_nm2": [1e4, 2e4]})
    res = stats.summarize_set(both, images)
    concat = stats.summarize_image(both.drop(columns="image"), image_area_nm2=3e4)
    for k, v in concat.items():
        if isinstance(v, float) and math.isfinite(v):
            assert res["joint"][k] == pytest.approx(v), k
    assert res["joint"]["count"] == 100
    assert res["per_image"].loc["a", "count"] == 40
    assert res["per_image"].loc["b", "density_per_100nm2"] == pytest.approx(60 / 2e4 * 100)
    assert res["joint"]["density_per_100nm2"] == pytest.approx(100 / 3e4 * 100)


def test_density_errors():
    """Counting error sqrt(N)/A per image and for the set; the set's standard error of the
    images' densities (two images: half their difference)."""
    rng = np.random.default_rng(4)
    a = table(rng.lognormal(1.5, 0.2, 16), image="a")
    b = table(rng.lognormal(1.5, 0.2, 36), image="b")
    res = stats.summarize_set(pd.concat([a, b], ignore_index=True),
                              pd.DataFrame({"image": ["a", "b"], "area_nm2": [1e4, 1e4]}))
    assert res["per_image"].loc["a", "density_per_um2_poisson"] == pytest.approx(4 / 1e4 * 1e6)
    assert res["per_image"].loc["b", "density_per_100nm2_poisson"] == pytest.approx(6 / 1e4 * 100)
    j = res["joint"]
    assert j["density_per_um2_poisson"] == pytest.approx(math.sqrt(52) / 2e4 * 1e6)
    assert j["density_per_um2_sem"] == pytest.approx((36 - 16) / 1e4 * 1e6 / 2)
    one = stats.summarize_set(a, pd.DataFrame({"image": ["a"], "area_nm2": [1e4]}))
    assert "density_per_um2_sem" not in one["joint"]  # one image: no spread to measure
    px = stats.summarize_image(table([3.0, 4.0, 5.0, 6.0]), image_shape_px=(100, 100), unit="px")
    assert px["density_per_mpx_poisson"] == pytest.approx(2 / 1e4 * 1e6)


def test_group_table_density_coverage_and_spacing():
    """Per group: density pooled over its images' area with the SEM of its images' densities,
    pooled coverage, and the nearest-neighbour spacing (border particles included)."""
    a1 = table(np.full(10, 4.0), image="a1").assign(nn_distance_nm=10.0)
    a2 = table(np.full(30, 4.0), image="a2").assign(nn_distance_nm=6.0)
    b1 = table(np.full(5, 4.0), border=[True] + [False] * 4, image="b1").assign(nn_distance_nm=20.0)
    p = pd.concat([a1, a2, b1], ignore_index=True)
    images = pd.DataFrame({"image": ["a1", "a2", "b1"], "area_nm2": [1e4, 1e4, 2e4]})
    per_image = stats.summarize_set(p, images)["per_image"]
    groups = {"a1": "fresh", "a2": "fresh", "b1": "annealed"}
    t = stats.group_table(p, groups, per_image=per_image)
    assert t.loc["fresh", "density_per_um2"] == pytest.approx(40 / 2e4 * 1e6)
    assert t.loc["fresh", "density_per_um2_image_sem"] == pytest.approx(1000.0)
    assert t.loc["annealed", "count"] == 5 and t.loc["annealed", "n_particles"] == 4
    assert t.loc["fresh", "coverage"] == pytest.approx(40 * math.pi * 4.0 / 2e4)
    assert t.loc["fresh", "nn_distance_nm_mean"] == pytest.approx((10 * 10 + 30 * 6) / 40)
    assert t.loc["fresh", "nn_distance_nm_image_mean_sem"] == pytest.approx(2.0)
    assert t.loc["annealed", "nn_distance_nm_mean"] == pytest.approx(20.0)
    assert "density_per_um2" not in stats.group_table(p, groups).columns  # no areas given


def test_image_without_particles_counts_as_zero():
    a = table([3.0, 4.0], image="a")
    res = stats.summarize_set(a, {"a": {"area_nm2": 100.0}, "empty": {"area_nm2": 100.0}})
    assert res["per_image"].loc["empty", "count"] == 0
    assert res["joint"]["density_per_100nm2"] == pytest.approx(1.0)


def test_groups_table_and_tests():
    rng = np.random.default_rng(3)
    parts = [table(rng.lognormal(1.5, 0.2, 300), image="a1"),
             table(rng.lognormal(1.5, 0.2, 300), image="a2"),
             table(rng.lognormal(2.0, 0.2, 300), image="b1")]
    p = pd.concat(parts, ignore_index=True)
    groups = pd.DataFrame({"image": ["a1", "a2", "b1"], "group": ["ctrl", "ctrl", "heated"]})
    t = stats.group_table(p, groups)
    assert t.loc["ctrl", "n_images"] == 2 and t.loc["ctrl", "n_particles"] == 600
    ctrl = p[p.image.isin(["a1", "a2"])]["eq_diameter_nm"]
    assert t.loc["ctrl", "eq_diameter_nm_mean"] == pytest.approx(ctrl.mean())
    assert t.loc["ctrl", "eq_diameter_nm_sem"] == pytest.approx(ctrl.std() / math.sqrt(600))
    c = stats.compare_groups(p, dict(zip(groups.image, groups.group)))
    assert len(c) == 1 and c.loc[0, "ks_p"] < 1e-6 and c.loc[0, "mw_p"] < 1e-6
    same = stats.compare_groups(p[p.image != "b1"], {"a1": "x", "a2": "y"})
    assert same.loc[0, "ks_p"] > 0.001
    with pytest.raises(InputError):
        stats.compare_groups(p, {"a1": "x"})


def test_groups_from_paths():
    g = stats.groups_from_paths(["/d/ctrl/s1.txt", "/d/heated/s2.sxm"])
    assert g == {"s1": "ctrl", "s2": "heated"}


def test_measure_then_summarize_end_to_end():
    from particlesnn import HeightMap
    from particlesnn.measure import measure
    yy, xx = np.mgrid[0:200, 0:200]
    lab = np.zeros((200, 200), np.int32)
    radii = [10, 14, 18, 22]
    for k, (r, cx) in enumerate(zip(radii, (25.5, 70.5, 120.5, 170.5)), start=1):
        lab[(xx - cx) ** 2 + (yy - 100.5) ** 2 <= r * r] = k
    lab[0:6, 0:6] = 5  # a border particle: counted, not sized
    hm = HeightMap((lab > 0) * 1.0, pixel_size=(0.25, 0.25))
    df = measure(hm, lab)
    s = stats.summarize_image(df, image_shape_px=hm.shape)  # pixel size from df.attrs
    d = np.array(radii) * 2 * 0.25
    assert s["count"] == 5 and s["n_sized"] == 4
    assert s["image_area_nm2"] == pytest.approx(2500.0)
    assert s["density_per_100nm2"] == pytest.approx(0.2)
    assert s["eq_diameter_nm_mean"] == pytest.approx(d.mean(), rel=0.01)
    assert s["d_mid_surface_nm"] == pytest.approx(math.sqrt(np.mean(d ** 2)), rel=0.01)
    assert s["height_max_nm_mean"] == pytest.approx(1.0)


def test_mixed_scales_pool_in_pixels():
    a = table([2.0, 4.0], image="a")  # nm known
    b = table([3.0], image="b").drop(columns=["eq_diameter_nm", "area_nm2", "length_nm",
                                              "width_nm", "height_max_nm"])
    res = stats.summarize_set(pd.concat([a, b], ignore_index=True),
                              {"a": {"rows": 10, "cols": 10}, "b": {"rows": 10, "cols": 10}})
    assert res["length_unit"] == "px"
    assert "eq_diameter_px_mean" in res["per_image"].columns
    assert "eq_diameter_nm_mean" not in res["per_image"].columns
    assert res["per_image"].loc["a", "eq_diameter_px_mean"] == pytest.approx(6.0)
    assert res["joint"]["eq_diameter_px_mean"] == pytest.approx(6.0)


def test_set_pixel_size_is_not_lent_to_an_uncalibrated_image():
    # as `analyze` builds it: the concatenated table carries the first image's pixel size in
    # its attrs; image "b" (a plain PNG, say) has none, so the set has no area in nm^2 and no
    # density per um^2 (it once got 100 px x 100 px x (2 nm/px)^2 from "a")
    a = table([2.0, 4.0], image="a")
    b = table([3.0], image="b").drop(columns=["eq_diameter_nm", "area_nm2", "length_nm",
                                              "width_nm", "height_max_nm"])
    both = pd.concat([a, b], ignore_index=True)
    both.attrs = {"pixel_size": (2.0, 2.0)}
    images = pd.DataFrame([{"image": "a", "rows": 100, "cols": 100, "pixel_x": 2.0, "pixel_y": 2.0},
                           {"image": "b", "rows": 100, "cols": 100}])
    res = stats.summarize_set(both, images)
    assert pd.isna(res["per_image"].loc["b"].get("image_area_nm2", np.nan))
    assert res["per_image"].loc["a", "image_area_nm2"] == pytest.approx(4e4)
    assert "density_per_um2" not in res["joint"] and "image_area_nm2" not in res["joint"]
    assert res["joint"]["density_per_mpx"] == pytest.approx(3 / 2e4 * 1e6)


def test_groups_keep_nm_where_they_can():
    # two calibrated groups and one without a pixel size: the calibrated groups are described
    # and compared in nm (their pixel sizes differ, so px would mix scales); pairs with the
    # uncalibrated group fall back to px
    rng = np.random.default_rng(4)
    a = table(rng.lognormal(1.5, 0.2, 200), image="a", ps=0.5)
    b = table(rng.lognormal(1.5, 0.2, 200), image="b", ps=0.25)  # same sizes, finer pixels
    c = table(rng.lognormal(1.5, 0.2, 200), image="c").drop(
        columns=["eq_diameter_nm", "area_nm2", "length_nm", "width_nm", "height_max_nm"])
    p = pd.concat([a, b, c], ignore_index=True)
    groups = {"a": "A", "b": "B", "c": "C"}
    t = stats.group_table(p, groups)
    assert list(t["length_unit"]) == ["nm", "nm", "px"]
    assert t.loc["A", "eq_diameter_nm_mean"] == pytest.approx(a["eq_diameter_nm"].mean())
    assert t.loc["C", "eq_diameter_px_mean"] == pytest.approx(c["eq_diameter_px"].mean())
    cmp = stats.compare_groups(p, groups).set_index(["group_a", "group_b"])
    assert cmp.loc[("A", "B"), "measure"] == "eq_diameter_nm"
    assert cmp.loc[("A", "B"), "ks_p"] > 0.001  # same sizes: no difference in nm
    assert cmp.loc[("A", "C"), "measure"] == "eq_diameter_px"


def _dots(points, shape, pixel_size=None):
    """Particles of 3 x 3 px at the given (row, col) centres, measured."""
    from particlesnn import HeightMap
    from particlesnn.measure import measure

    lab = np.zeros(shape, np.int32)
    for k, (r, c) in enumerate(points, start=1):
        lab[int(r) - 1:int(r) + 2, int(c) - 1:int(c) + 2] = k
    return measure(HeightMap(1.0 * (lab > 0), pixel_size=pixel_size), lab)


def test_nearest_neighbour_distances_and_clark_evans():
    """Known patterns: a square lattice (spacing 20 px = 10 nm) has every nearest neighbour at
    10 nm and is regular (R near 2); uniform random centres read R ~ 1 without a significant
    p; tight pairs are clustered (R << 1). Anisotropic pixels: distances in nm are exact."""
    lattice = [(r, c) for r in range(10, 200, 20) for c in range(10, 200, 20)]
    df = _dots(lattice, (200, 200), (0.5, 0.5))
    assert np.allclose(df["nn_distance_nm"], 10.0) and np.allclose(df["nn_distance_px"], 20.0)
    s = stats.summarize_image(df, image_shape_px=(200, 200), pixel_size=(0.5, 0.5))
    assert s["nn_distance_nm_mean"] == pytest.approx(10.0) and s["nn_distance_nm_n"] == 100
    assert 1.8 < s["clark_evans_r"] < 2.1 and s["clark_evans_p"] < 1e-10
    rs, ps = [], []
    for seed in range(10):  # Poisson: R ~ 1, p < 0.05 in about 5 % of patterns
        rng = np.random.default_rng(seed)
        pts = rng.uniform(2, 398, (150, 2))
        s = stats.summarize_image(_dots(pts, (400, 400)), image_shape_px=(400, 400))
        rs.append(s["clark_evans_r"]), ps.append(s["clark_evans_p"])
    assert 0.95 < np.mean(rs) < 1.05 and sum(p < 0.05 for p in ps) <= 2, (rs, ps)
    rng = np.random.default_rng(3)
    centres = rng.uniform(10, 390, (60, 2))
    pairs = np.concatenate([centres, centres + [0, 4]])  # each particle 4 px from its twin
    s = stats.summarize_image(_dots(pairs, (400, 400)), image_shape_px=(400, 400))
    assert s["nn_distance_px_median"] == pytest.approx(4.0) and s["clark_evans_r"] < 0.5
    # anisotropic pixels: the nearest neighbour is found in nm
    df = _dots([(10, 10), (10, 30), (22, 10)], (40, 40), (1.0, 2.0))  # 20 nm right, 24 nm down
    assert df["nn_distance_nm"].tolist() == pytest.approx([20.0, 20.0, 24.0])
    assert df["nn_distance_px"].tolist() == pytest.approx([20.0, 20.0, 12.0])
    # a lone particle has no neighbour; too few particles give no ratio
    df = _dots([(10, 10)], (40, 40))
    assert np.isnan(df["nn_distance_px"].iloc[0])
    s = stats.summarize_image(_dots([(10, 10), (20, 20)], (40, 40)), image_shape_px=(40, 40))
    assert math.isnan(s["clark_evans_r"])
    # a set: per image ratios; the joint statistics pool the distances but give no ratio
    # (images of different densities pooled would read as clustered)
    a, b = _dots(lattice, (200, 200)), _dots(pairs, (400, 400))
    res = stats.summarize_set(pd.concat([a.assign(image="a"), b.assign(image="b")]),
                              {"a": {"rows": 200, "cols": 200}, "b": {"rows": 400, "cols": 400}})
    assert res["per_image"].loc["a", "clark_evans_r"] > 1.8 > 0.5 > res["per_image"].loc["b", "clark_evans_r"]
    assert "clark_evans_r" not in res["joint"] and res["joint"]["nn_distance_px_n"] == 100 + 120
