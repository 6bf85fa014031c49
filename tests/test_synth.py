"""Tests of the synthetic generator: physics with known answers, truth consistency, files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from particlesnn import InputError
from particlesnn.synth import (PRESETS, InstrumentParams, ParticleParams, SubstrateParams,
                               SynthParams, TipParams, generate)
from particlesnn.synth.params import SHAPES
from particlesnn.synth.tip import dilate
from particlesnn.synth.truth import add_particles

F = 0.05  # footprint fraction used by default


def _single(d, h, shape, e=0.0, theta=0.0, sp=1.0, ps=0.05, n=256):
    """Footprint labels and surface of one particle centred on a flat n x n canvas."""
    pop = {"x": np.array([n / 2 + 0.3]), "y": np.array([n / 2 - 0.2]), "d": np.array([d]),
           "h": np.array([h]), "e": np.array([e]), "theta": np.array([theta]),
           "shape": np.array([SHAPES.index(shape)]), "sp": np.array([sp]),
           "harm_a": np.zeros((1, 4)), "harm_p": np.zeros((1, 4))}
    return pop


def _footprint_eqd(d, h, shape, tip="none", r_tip=0.0, e=0.0, sp=1.0, ps=0.05, n=256):
    pop = _single(d, h, shape, e=e, sp=sp, ps=ps, n=n)
    surf = np.zeros((n, n))
    surf, lab, _ = add_particles(surf, pop, 0, ps, tip, r_tip, F)
    area = int((lab == 1).sum())
    return 2 * np.sqrt(area / np.pi) * ps, surf, lab


@pytest.mark.parametrize("shape,aspect,e", [
    ("cap", 0.5, 0.0),        # hemisphere
    ("cap", 0.3, 0.0),        # flat cap: worst case of the rule
    ("cap", 0.15, 0.3),       # very flat elliptical cap
    ("truncated", 0.8, 0.0),  # sphere truncated above its equator
    ("ellipsoid", 0.4, 0.4),
    ("power", 0.4, 0.2),
    ("faceted", 0.5, 0.0),
])
@pytest.mark.parametrize("sp", [1.2, 0.5])
def test_isolated_particle_no_tip_footprint_matches_diameter(shape, aspect, e, sp):
    # sp: power-profile exponent (1.2 = the sharpest drawn) or facet count (ignored <3 -> 6)
    d = 6.0
    eqd, surf, _ = _footprint_eqd(d, aspect * d, shape, e=e, sp=sp)
    assert abs(eqd - d) / d < 0.05, (shape, eqd)
    assert surf.max() == pytest.approx(aspect * d, rel=0.01)


def test_parabolic_tip_widens_paraboloid_exactly():
    # paraboloid z = h (1 - r^2/a^2) = h - r^2 / (2 Rp), Rp = a^2 / (2h); a parabolic tip of
    # radius R turns it into h - r^2 / (2 (Rp + R)): footprint where that > f h:
    # d' = 2 sqrt(2 (Rp + R) (1 - f) h)
    d, h, R = 6.0, 2.0, 2.0
    a = d / 2
    rp = a * a / (2 * h)
    expected = 2 * np.sqrt(2 * (rp + R) * (1 - F) * h)
    eqd0, _, _ = _footprint_eqd(d, h, "power", sp=1.0)
    eqd, _, _ = _footprint_eqd(d, h, "power", tip="parabolic", r_tip=R, sp=1.0)
    assert expected / d > 1.3  # the test is meaningful: the tip widens by > 30 %
    assert abs(eqd - expected) / expected < 0.02, (eqd, expected)
    assert abs(eqd0 - 2 * a * np.sqrt(1 - F)) / d < 0.02


def test_sphere_tip_on_hemisphere_matches_offset_sphere():
    # hemisphere radius a, ball tip radius R: image = sqrt((a + R)^2 - r^2) - R, so the
    # footprint (image > f a) has diameter 2 sqrt((a + R)^2 - (f a + R)^2)
    d, R, ps, n = 4.0, 1.5, 0.06, 160
    a = d / 2
    expected = 2 * np.sqrt((a + R) ** 2 - (F * a + R) ** 2)
    eqd, surf, _ = _footprint_eqd(d, a, "cap", tip="sphere", r_tip=R, ps=ps, n=n)
    assert abs(eqd - expected) / expected < 0.02, (eqd, expected)
    # and the recorded image itself follows the analytic profile
    img = dilate(surf, "sphere", R, ps)
    yy, xx = np.mgrid[0:n, 0:n]
    r = np.hypot(xx - (n / 2 + 0.3), yy - (n / 2 - 0.2)) * ps
    ana = np.maximum(np.sqrt(np.maximum((a + R) ** 2 - r * r, 0)) - R, 0)
    assert np.abs(img - ana).max() < 0.03  # nm, pixel discretisation only


def _flat_params(**kw):
    p = SynthParams(size=(128, 128), pixel_size_nm=0.2,
                    substrate=SubstrateParams(kind="hopg", n_steps=0, roughness_rms_nm=0.0),
                    particles=ParticleParams(coverage=0.0),
                    tip=TipParams(shape="none"), instrument=InstrumentParams())
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def test_terraces_have_the_set_step_height():
    for step in (0.335, 0.5):
        p = _flat_params(substrate=SubstrateParams(kind="hopg", n_steps=3, step_height_nm=step,
                                                   step_layers_max=1, roughness_rms_nm=0.0))
        z = generate(p, 3).height.data.astype(np.float64)
        levels = np.unique(np.round(z / step, 6))
        assert len(levels) >= 2
        assert np.allclose(levels, np.round(levels), atol=1e-4)  # every pixel on a layer
        # neighbouring pixels differ by whole steps, nearly always one (edges may cross)
        dz = np.abs(np.diff(z, axis=1))
        jumps = dz[dz > 1e-6] / step
        assert jumps.size > 0 and np.allclose(jumps, np.round(jumps), atol=1e-3)
        assert np.mean(np.round(jumps) == 1) > 0.9


def test_labels_and_truth_table_consistent():
    si = generate("stm-crowded", 5, size=192)
    lab = si.labels
    assert lab.dtype == np.int32 and lab.shape == (192, 192)
    n = int(lab.max())
    assert n == si.count > 5
    assert set(np.unique(lab)) == set(range(n + 1))
    counts = np.bincount(lab.ravel())[1:]
    assert np.array_equal(counts, si.particles["area_px"].to_numpy())
    t = si.particles
    assert np.allclose(t["footprint_eqd_px"], 2 * np.sqrt(counts / np.pi))
    assert (t["height_nm"] < t["diameter_nm"]).all()
    assert si.height.pixel_size == (si.params.pixel_size_nm,) * 2


def test_overlap_goes_to_the_higher_particle():
    n, ps = 200, 0.05
    pop = {"x": np.array([90.0, 110.0]), "y": np.array([100.0, 100.0]),
           "d": np.array([4.0, 4.0]), "h": np.array([1.0, 2.0]), "e": np.zeros(2),
           "theta": np.zeros(2), "shape": np.array([1, 1]), "sp": np.zeros(2),
           "harm_a": np.zeros((2, 4)), "harm_p": np.zeros((2, 4))}
    _, lab, _ = add_particles(np.zeros((n, n)), pop, 0, ps, "none", 0.0, F)
    # midpoint between the two centres: both claim it, particle 2 is higher there
    assert lab[100, 100] == 2
    assert lab[100, 55] == 1 and lab[100, 140] == 2
    # on particle 1's side of the midpoint, but particle 2 is still the higher one there
    assert lab[100, 75] == 2


def test_particle_against_a_higher_terrace_is_labelled_where_it_shows():
    # a 4 nm wide, 0.5 nm high cap whose centre sits 10 px left of a 1.005 nm step (3 layers):
    # the terrace right of the step is higher than the particle, so only its left part shows
    n, ps = 200, 0.05
    pop = {"x": np.array([90.0]), "y": np.array([100.0]), "d": np.array([4.0]),
           "h": np.array([0.5]), "e": np.zeros(1), "theta": np.zeros(1),
           "shape": np.array([SHAPES.index("cap")]), "sp": np.zeros(1),
           "harm_a": np.zeros((1, 4)), "harm_p": np.zeros((1, 4))}
    sub = np.zeros((n, n))
    sub[:, 100:] = 3 * 0.335
    surf, lab, base = add_particles(sub.copy(), pop, 0, ps, "none", 0.0, F)
    assert base[0] == 0.0
    assert (lab[:, 100:] == 0).all()  # hidden under the terrace: not the particle's
    flat, _, _ = add_particles(np.zeros((n, n)), pop, 0, ps, "none", 0.0, F)
    assert np.array_equal(lab[:, :100] == 1, flat[:, :100] > F * 0.5)  # the part that shows
    assert np.array_equal(surf[:, 100:], sub[:, 100:])  # and the image shows no particle there
    # a taller particle shows above the terrace where it rises more than the step
    pop["h"] = np.array([1.8])
    surf, lab, _ = add_particles(sub.copy(), pop, 0, ps, "none", 0.0, F)
    right = lab[:, 100:] == 1
    assert right.any() and np.array_equal(right, surf[:, 100:] > sub[:, 100:])


def test_deterministic_for_a_seed():
    a = generate("stm-mixed", 11, size=160)
    b = generate("stm-mixed", np.random.default_rng(11), size=160)
    c = generate("stm-mixed", 12, size=160)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.particles.equals(b.particles)
    assert not np.array_equal(a.image, c.image)


def test_every_preset_runs_small():
    for name in PRESETS:
        si = generate(name, 1, size=128)
        assert si.image.shape == si.labels.shape == (128, 128)
        assert np.isfinite(si.image).all()
        assert len(si.particles) == int(si.labels.max())


def test_bad_input_is_input_error():
    with pytest.raises(InputError, match="unknown preset"):
        generate("no-such-preset", 0)
    with pytest.raises(InputError, match="pixel_size_nm"):
        generate(_flat_params(pixel_size_nm=0.0), 0)
    with pytest.raises(InputError, match="coverage"):
        generate(_flat_params(particles=ParticleParams(coverage=2.0)), 0)


def test_cli_synth_writes_a_set(tmp_path, capsys):
    from particlesnn.cli import main
    with pytest.raises(SystemExit) as ex:
        main(["synth", "--n", "2", "--out", str(tmp_path / "s"), "--size", "96",
              "--preset", "any", "--seed", "3", "--image-format", "bmp", "--palette", "viridis"])
    assert ex.value.code == 0
    bmps = sorted((tmp_path / "s" / "images").glob("*.bmp"))
    assert len(bmps) == 2
    from PIL import Image
    assert Image.open(bmps[0]).mode == "RGB" and Image.open(bmps[0]).size == (96, 96)
    assert len(list((tmp_path / "s" / "labels").glob("*.tif"))) == 2
    assert (tmp_path / "s" / "coco.json").is_file() and (tmp_path / "s" / "truth.csv").is_file()
    with pytest.raises(SystemExit) as ex:
        main(["synth", "--n", "1", "--out", str(tmp_path / "t"), "--preset", "nope"])
    assert ex.value.code == 2
    assert "unknown preset" in capsys.readouterr().err


def test_dataset_coco_matches_labels_exactly(tmp_path):
    pycoco = pytest.importorskip("pycocotools.coco")
    tifffile = pytest.importorskip("tifffile")
    from particlesnn.io import gsf, wsxm_ascii
    from particlesnn.synth.dataset import image_rng, write_dataset

    write_dataset(tmp_path, 3, preset="stm-crowded", seed=4, size=128, palette="random",
                  scale_bar=True)
    coco = pycoco.COCO(str(tmp_path / "coco.json"))
    n_ann = 0
    for img in coco.loadImgs(coco.getImgIds()):
        lab = tifffile.imread(tmp_path / img["label_file"])
        assert lab.dtype == np.uint16
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        assert len(anns) == lab.max()
        for a in anns:
            assert np.array_equal(coco.annToMask(a).astype(bool), lab == a["label"])
            assert a["area"] == int((lab == a["label"]).sum())
        n_ann += len(anns)
        # the stored height map is the generated one (regenerated from its stream)
        si = generate("stm-crowded", image_rng(4, img["id"] - 1), size=128)
        hm = gsf.read(tmp_path / img["height_map"])
        assert np.allclose(hm.data, si.height.data, atol=1e-5)
        assert hm.pixel_size == pytest.approx(si.height.pixel_size)
        hw = wsxm_ascii.read(tmp_path / img["height_map_wsxm"])
        assert np.allclose(hw.data, si.height.data, atol=1e-4)
    # the project's COCO reader gives back the same label images
    from particlesnn.io.groundtruth import read_coco
    gt = read_coco(tmp_path / "coco.json")
    for img in coco.loadImgs(coco.getImgIds()):
        stem = img["file_name"].split("/")[-1][:-4]
        lab = tifffile.imread(tmp_path / img["label_file"])
        assert np.array_equal(gt[stem].labels, lab)
        assert gt[stem].image is not None and gt[stem].image.is_file()
    import pandas as pd
    truth = pd.read_csv(tmp_path / "truth.csv")
    assert len(truth) == n_ann > 0
    lines = (tmp_path / "params.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["preset"] == "stm-crowded"


def test_write_dataset_bad_input(tmp_path):
    from particlesnn.synth.dataset import write_dataset
    with pytest.raises(InputError):
        write_dataset(tmp_path, 0)
    with pytest.raises(InputError):
        write_dataset(tmp_path, 1, preset="nope")


def _optical_params(modality, **optics):
    from particlesnn.synth import OpticsParams
    o = OpticsParams(support="carbon", blur_px=1.0, dose=2000.0, read_noise=0.0,
                     illumination=0.0, particle_contrast=1.0, support_brightness=0.5)
    for k, v in optics.items():
        setattr(o, k, v)
    return SynthParams(modality=modality, size=(160, 160), pixel_size_nm=0.2,
                       substrate=SubstrateParams(kind="flat"), tip=TipParams(shape="none"),
                       particles=ParticleParams(coverage=0.05, diameter_mean_nm=3.0,
                                                diameter_cv=0.1, aspect_mean=0.9,
                                                cluster_fraction=0.0, min_gap=1.3),
                       optics=o)


@pytest.mark.parametrize("modality,sign", [("haadf", 1), ("brightfield-tem", -1),
                                           ("fluorescence", 1)])
def test_optical_particles_have_the_expected_contrast(modality, sign):
    from scipy import ndimage as ndi
    si = generate(_optical_params(modality), 2)
    assert si.count >= 3
    img, lab = si.image, si.labels
    for k in range(1, si.count + 1):
        inside = lab == k
        ring = ndi.binary_dilation(inside, iterations=4) & ~ndi.binary_dilation(inside, iterations=2)
        ring &= lab == 0
        if ring.sum() < 10 or si.particles["cut_by_border"].iloc[k - 1]:
            continue
        assert sign * (img[inside].mean() - img[ring].mean()) > 0.05, (modality, k)


def test_overlays_remove_labels_and_negatives_have_none():
    from particlesnn.synth import OverlayParams
    p = _optical_params("haadf")
    p.particles.coverage = 0.3
    p.particles.min_gap = 0.9
    p.overlay = OverlayParams(scale_bar=True, text=True, frame_px=6, info_band=0.1)
    si = generate(p, 1)
    assert (si.labels[:6] == 0).all() and (si.labels[:, -6:] == 0).all()
    assert (si.labels[-16:] == 0).all()  # the info band (10 % of 160 rows)
    assert si.count > 0
    for seed in range(4):
        neg = generate("negatives", seed, size=128)
        assert neg.count == 0 and neg.labels.max() == 0 and len(neg.particles) == 0


def test_fluorescence_nuclei_sizes_in_range():
    eqd = np.concatenate([generate("fluorescence", s, size=256).particles.query(
        "not cut_by_border")["footprint_eqd_px"].to_numpy() for s in range(3)])
    assert len(eqd) > 5
    assert 4 <= np.median(eqd) <= 90


def test_step_fraction_puts_particles_on_step_edges():
    from scipy import ndimage as ndi

    def on_edge_fraction(step_fraction):
        p = _flat_params(substrate=SubstrateParams(kind="hopg", n_steps=3, roughness_rms_nm=0.0),
                         particles=ParticleParams(coverage=0.02, diameter_mean_nm=2.0,
                                                  diameter_cv=0.1, cluster_fraction=0.0,
                                                  min_gap=1.2, step_fraction=step_fraction))
        si = generate(p, 5)
        z, lab = si.height.data.astype(np.float64), si.labels
        hits = []
        for k in range(1, si.count + 1):
            fp = lab == k
            ring = ndi.binary_dilation(fp, iterations=3) & ~fp & (lab == 0)
            levels = np.unique(np.round(z[ring] / 0.335))
            hits.append(len(levels) >= 2)
        # the truth table's on_step (footprint within 1 px of a step edge) agrees with the
        # levels around each particle
        agree = np.mean(np.array(hits) == si.particles["on_step"].to_numpy(bool))
        return np.mean(hits), si.count, si.particles["on_step"].mean(), agree

    f1, n1, s1, a1 = on_edge_fraction(1.0)
    f0, n0, s0, a0 = on_edge_fraction(0.0)
    assert n1 >= 5 and n0 >= 5
    assert f1 > 0.8 and f0 < 0.5, (f1, f0)
    assert s1 > 0.8 and s0 < 0.5 and min(a1, a0) >= 0.8, (s1, s0, a1, a0)
    flat = generate(_flat_params(particles=ParticleParams(coverage=0.02)), 5)
    assert flat.count and not flat.particles["on_step"].any()  # no steps: never on one


def test_heldout_presets_draw_outside_the_training_ranges():
    from particlesnn.synth.presets import HELDOUT_PRESETS, draw

    rng = np.random.default_rng(5)
    for _ in range(20):
        flat = draw("heldout-flat", rng)
        assert 0.10 <= flat.particles.aspect_mean <= 0.14  # training presets: 0.15-0.6
        rough = draw("heldout-rough", rng)
        assert 0.06 <= rough.substrate.roughness_rms_nm <= 0.12  # training presets: <= 0.05
        for name in ("stm-mixed", "stm-sparse", "stm-tiny"):
            p = draw(name, rng)
            assert p.particles.aspect_mean >= 0.15 and p.substrate.roughness_rms_nm <= 0.05
    assert set(HELDOUT_PRESETS) <= set(PRESETS)
    for _ in range(10):
        g = draw("heldout-grains", rng)
        d, h = g.particles.diameter_mean_nm, g.particles.diameter_mean_nm * g.particles.aspect_mean
        assert 3.0 * d <= g.substrate.grain_nm <= 8.0 * d
        assert 0.3 * h <= g.substrate.grain_rms_nm <= 1.0 * h
        assert draw("stm-mixed", rng).substrate.grain_nm == 0  # no training preset has grains


def test_grains_are_flat_topped_cells_of_the_asked_size_and_height():
    from scipy import ndimage as ndi

    from particlesnn.synth.substrate import grains

    z = grains((256, 256), 32.0, 0.5, np.random.default_rng(3))
    assert 0.3 < z.std() < 0.7  # rms of the grain heights (0.5 nm), rounding takes a little
    # flat tops: most pixels lie on a plateau (gradient ~0), the slopes are the grain boundaries
    g = np.hypot(*np.gradient(z))
    assert np.mean(g < 1e-3) > 0.5
    # about (256 / 32)^2 = 64 plateaus
    n = ndi.label(ndi.binary_erosion(g < 1e-3, iterations=2))[1]
    assert 30 <= n <= 100, n
    # particles keep their truth on a granular film: footprints where the particles are
    si = generate("heldout-grains", 9_007_003)
    assert si.count > 10 and si.labels.max() == si.count
    with pytest.raises(InputError, match="grain_nm"):
        generate(_flat_params(substrate=SubstrateParams(grain_nm=-1.0)), 0)
