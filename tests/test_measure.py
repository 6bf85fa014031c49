"""Per-particle measures on synthetic particles of known size, height and volume."""
from __future__ import annotations

import math

import numpy as np
import pytest

from particlesnn import HeightMap, InputError
from particlesnn.measure import measure


def disc(shape, cx, cy, r):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2


def cap(shape, cx, cy, a, h, ps, base=0.0):
    """Spherical cap of base radius a (nm), height h (nm) on a flat substrate at ``base``."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    R = (a * a + h * h) / (2 * h)
    r2 = ((xx - cx) * ps) ** 2 + ((yy - cy) * ps) ** 2
    z = np.where(r2 < a * a, np.sqrt(np.maximum(R * R - r2, 0)) - (R - h), 0.0)
    return z + base, r2 < a * a


@pytest.mark.parametrize("c", [63.5, 64.0, 63.3])
def test_disc_40px_at_quarter_nm_is_10nm(c):
    m = disc((128, 128), c, c, 20)
    df = measure(HeightMap(m * 1.0, pixel_size=(0.25, 0.25)), m.astype(np.int32))
    row = df.iloc[0]
    assert row["eq_diameter_nm"] == pytest.approx(10.0, rel=0.01)
    # min-area rectangle and calipers of a digital disc: within 2 %
    for col in ("length_nm", "width_nm", "feret_min_nm"):
        assert row[col] == pytest.approx(10.0, rel=0.02), col
    assert row["feret_max_nm"] == pytest.approx(10.0, rel=0.025)
    assert row["perimeter_nm"] == pytest.approx(math.pi * 10.0, rel=0.015)
    assert row["circularity"] == pytest.approx(1.0, abs=0.03)
    assert row["aspect_ratio"] == pytest.approx(1.0, abs=0.02)
    assert row["area_nm2"] == pytest.approx(row["area_px2"] * 0.0625)
    assert row["x_nm"] == pytest.approx(c * 0.25, abs=0.01)
    assert row["y_nm"] == pytest.approx(c * 0.25, abs=0.01)
    assert not row["touches_border"]
    assert df.attrs["length_unit"] == "nm"
    assert df.attrs["units"]["eq_diameter_nm"] == "nm"


def test_unknown_scale_gives_pixels_only():
    m = disc((100, 100), 49.5, 49.5, 20)
    hm = HeightMap(m * 1.0, pixel_size=None, unit="a.u.")
    df = measure(hm, m.astype(int))
    assert not any("_nm" in c for c in df.columns)
    assert df.attrs["length_unit"] == "px"
    assert df.attrs["height_unit"] == "au"
    assert df["eq_diameter_px"].iloc[0] == pytest.approx(40.0, rel=0.01)
    assert "height_max_au" in df.columns and "volume_px2au" in df.columns
    assert df.attrs["units"]["height_max_au"] == "a.u."


def test_ellipse_length_width_orientation():
    yy, xx = np.mgrid[0:160, 0:160]
    th = math.radians(30.0)  # counter-clockwise as displayed (y down)
    u = (xx - 80) * math.cos(th) - (yy - 80) * math.sin(th)
    v = (xx - 80) * math.sin(th) + (yy - 80) * math.cos(th)
    m = (u / 40.0) ** 2 + (v / 15.0) ** 2 <= 1
    df = measure(HeightMap(m * 1.0, pixel_size=(0.5, 0.5)), m.astype(int))
    r = df.iloc[0]
    assert r["length_nm"] == pytest.approx(40.0, rel=0.02)
    assert r["width_nm"] == pytest.approx(15.0, rel=0.03)
    assert r["feret_max_nm"] == pytest.approx(40.0, rel=0.02)
    assert r["feret_min_nm"] == pytest.approx(15.0, rel=0.03)
    assert r["aspect_ratio"] == pytest.approx(40 / 15, rel=0.04)
    assert r["orientation_deg"] == pytest.approx(30.0, abs=1.0)


def test_anisotropic_pixels_use_nm_geometry():
    # a 10 nm disc sampled with 0.25 nm/px in x and 0.5 nm/px in y: ellipse in px, disc in nm
    yy, xx = np.mgrid[0:80, 0:120]
    m = ((xx - 59.5) * 0.25) ** 2 + ((yy - 39.5) * 0.5) ** 2 <= 25.0
    df = measure(HeightMap(m * 1.0, pixel_size=(0.25, 0.5)), m.astype(int))
    r = df.iloc[0]
    assert r["eq_diameter_nm"] == pytest.approx(10.0, rel=0.01)
    assert r["length_nm"] == pytest.approx(10.0, rel=0.02)
    assert r["width_nm"] == pytest.approx(10.0, rel=0.02)
    assert r["length_px"] == pytest.approx(40.0, rel=0.02)
    assert r["width_px"] == pytest.approx(20.0, rel=0.03)


def test_cap_height_and_volume_above_local_substrate():
    ps, a, h = 0.25, 5.0, 2.0
    z, m = cap((128, 128), 64.3, 63.8, a, h, ps, base=3.0)
    z[5:9, 5:9] = -10.0  # a deep pit far away: the global minimum must not matter
    z += 0.5 * np.arange(128)[None, :] * 0.0
    df = measure(HeightMap(z, pixel_size=(ps, ps)), m.astype(int))
    r = df.iloc[0]
    assert r["substrate_nm"] == pytest.approx(3.0, abs=1e-9)
    assert r["substrate_source"] == "ring"
    assert r["height_max_nm"] == pytest.approx(h, rel=0.03)
    vol = math.pi * h * (3 * a * a + h * h) / 6
    assert r["volume_nm3"] == pytest.approx(vol, rel=0.03)
    # mean height of a cap over its base disc = V / (pi a^2)
    assert r["height_mean_nm"] == pytest.approx(vol / (math.pi * a * a), rel=0.03)


def test_ring_excludes_other_particles_and_tilt_is_local():
    ps = 0.25
    yy, xx = np.mgrid[0:128, 0:200]
    z = 0.02 * xx  # tilted substrate: local level differs from particle to particle
    lab = np.zeros(z.shape, int)
    for k, cx in enumerate((40.0, 150.0), start=1):
        zc, m = cap(z.shape, cx, 64, 4.0, 1.5, ps)
        z = z + zc
        lab[m] = k
    # a tall neighbour touching particle 1's ring region must not raise its substrate
    tall = disc(z.shape, 40, 90, 6)
    z[tall] += 50.0
    lab[tall] = 3
    df = measure(HeightMap(z, pixel_size=(ps, ps)), lab).set_index("label")
    assert df.loc[1, "height_max_nm"] == pytest.approx(1.5, rel=0.03)
    assert df.loc[2, "height_max_nm"] == pytest.approx(1.5, rel=0.03)
    assert df.loc[1, "substrate_nm"] == pytest.approx(0.8, abs=0.1)
    assert df.loc[2, "substrate_nm"] == pytest.approx(3.0, abs=0.1)


def test_border_flag_scores_and_fits_join():
    lab = np.zeros((50, 50), int)
    lab[0:5, 10:15] = 1
    lab[20:30, 20:30] = 2
    fits = __import__("pandas").DataFrame({"label": [1, 2], "fit_status": ["failed", "ok"]})
    df = measure(HeightMap(np.zeros((50, 50)) + (lab > 0), pixel_size=(1, 1)), lab,
                 scores=np.array([0.3, 0.9]), fits=fits)
    assert df["touches_border"].tolist() == [True, False]
    assert df["score"].tolist() == [0.3, 0.9]
    assert df["fit_status"].tolist() == ["failed", "ok"]
    assert df["area_px2"].tolist() == [25.0, 100.0]
    assert df["length_px"].iloc[1] == pytest.approx(10.0)


def test_empty_label_image_gives_empty_table_with_columns():
    df = measure(HeightMap(np.zeros((20, 20)), pixel_size=(1.0, 1.0)), np.zeros((20, 20), int))
    assert len(df) == 0 and "eq_diameter_nm" in df.columns


def test_bad_input_raises_input_error():
    hm = HeightMap(np.zeros((20, 20)), pixel_size=(1.0, 1.0))
    with pytest.raises(InputError):
        measure(hm, np.zeros((10, 10), int))
    with pytest.raises(InputError):
        measure(hm, -np.ones((20, 20), int))
    bad = hm.with_data(np.full((20, 20), np.nan))
    with pytest.raises(InputError):
        measure(bad, np.zeros((20, 20), int))


def test_refined_labels_substrate_fit_ring_and_fit_volume():
    from particlesnn.refine import gaussian2d, refine
    yy, xx = np.mgrid[0:64, 0:64]
    z = gaussian2d(xx, yy, 0.7, 1.0, 30.2, 31.0, 4.0, 0.0, 4.0)
    hm = HeightMap(z, pixel_size=(0.5, 0.5))
    out, fits = refine(hm, (z > 1.0).astype(np.int32))
    r = measure(hm, out, fits=fits, substrate="fit").iloc[0]
    assert r["substrate_source"] == "fit"
    assert r["substrate_nm"] == pytest.approx(0.7, abs=1e-3)
    assert r["height_max_nm"] == pytest.approx(1.0, rel=0.01)
    assert r["fit_volume_nm3"] == pytest.approx(2 * math.pi * 1.0 * 16.0 * 0.25, rel=0.01)
    # default adaptive ring: walks past the flank of the half-height border
    a = measure(hm, out, fits=fits)
    assert a.attrs["units"]["fit_volume_nm3"] == "nm^3"
    assert a["substrate_source"].iloc[0] == "ring"
    assert a["height_max_nm"].iloc[0] == pytest.approx(1.0, rel=0.02)
    # a fixed 3-px ring next to a half-height border sits on the flank: height reads low
    fixed = measure(hm, out, background_ring_px=3).iloc[0]
    assert fixed["height_max_nm"] < 0.85
    with pytest.raises(InputError):
        measure(hm, out, substrate="lowest")


def test_half_height_mask_of_a_cap_still_gives_its_height():
    ps, a, h = 0.25, 5.0, 1.0
    z, foot = cap((128, 128), 64.3, 63.8, a, h, ps, base=2.0)
    z = z + 0.004 * np.arange(128)[None, :]  # tilted substrate
    tight = (z - 2.0 - 0.004 * np.arange(128)[None, :]) > 0.5 * h
    r = measure(HeightMap(z, pixel_size=(ps, ps)), tight.astype(int)).iloc[0]
    assert r["height_max_nm"] == pytest.approx(h, rel=0.03)


def test_arbitrary_label_ids_are_kept():
    lab = np.zeros((40, 40), np.int64)
    lab[5:15, 5:15] = 10 ** 9
    lab[20:30, 20:30] = 3
    df = measure(HeightMap(np.zeros((40, 40)) + (lab > 0), pixel_size=(1, 1)), lab,
                 scores=np.linspace(0, 1, 3))
    assert df["label"].tolist() == [3, 10 ** 9]
    assert df["score"].iloc[0] == pytest.approx(1.0)  # score of particle 3 at index 2
    assert np.isnan(df["score"].iloc[1])
