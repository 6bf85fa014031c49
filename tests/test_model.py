"""The shipped ONNX detector: loading, a clear particle field, tiling, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.model import WEIGHTS_DIR, load_model, normalise, predict_maps
from particlesnn.segment.decode import decode
from particlesnn.segment.neural import segment_model

pytestmark = pytest.mark.skipif(not (WEIGHTS_DIR / "default" / "model.onnx").is_file(),
                                reason="shipped weights not built yet")


def _cap_field(size=256, diameter=16.0, spacing=32.0, noise=0.02, seed=0):
    """A grid of separated round caps 1 high (heights in nm) and its labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.zeros((size, size), np.float32)
    lab = np.zeros((size, size), np.int32)
    r, k = diameter / 2, 0
    for cy in np.arange(spacing / 2, size - r, spacing):
        for cx in np.arange(spacing / 2, size - r, spacing):
            rho2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2
            k += 1
            lab[rho2 < 1] = k
            img[rho2 < 1] = np.sqrt(1 - rho2[rho2 < 1])
    return img + noise * rng.standard_normal(img.shape).astype(np.float32), lab


@pytest.fixture(scope="module")
def model():
    return load_model()


def test_load_model(model, tmp_path):
    assert model.stride == 8
    assert 0 < model.thresholds["prob_thresh"] < 1
    with pytest.raises(InputError):
        load_model(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match="model.onnx"):
        load_model(tmp_path)


def test_low_memory_switch(monkeypatch):
    """PARTICLESNN_LOW_MEMORY=1 turns onnxruntime's memory arena off (it is on by default)."""
    assert load_model().session.get_session_options().enable_cpu_mem_arena
    monkeypatch.setenv("PARTICLESNN_LOW_MEMORY", "1")
    assert not load_model().session.get_session_options().enable_cpu_mem_arena


@pytest.mark.parametrize("unit", ["a.u.", "nm"])  # the default model, then the height-map model
def test_separated_field_found(model, unit):
    img, truth = _cap_field()
    seg = segment_model(HeightMap(img, pixel_size=None, unit=unit), model=model)
    assert seg.labels.shape == img.shape
    n_true = int(truth.max())
    # every true particle hit by exactly one prediction, no extra predictions
    hit = [len(set(np.unique(seg.labels[truth == k])) - {0}) for k in range(1, n_true + 1)]
    assert sum(h == 1 for h in hit) >= 0.95 * n_true
    assert abs(seg.count - n_true) <= max(1, n_true // 20)
    # size: mean equivalent diameter within 15 % of the true 16 px
    areas = np.bincount(seg.labels.ravel())[1:]
    d = np.sqrt(4 * areas / np.pi).mean()
    assert 0.85 * 16 < d < 1.15 * 16
    assert np.all((seg.scores > 0.5) & (seg.scores <= 1))


@pytest.mark.parametrize("unit", ["a.u.", "nm"])
def test_large_particles_found_whole(model, unit):
    """80 px particles, no diameter hint (the issue's upper end): the shrunk copies find them
    and the full-size copy does not cut them into parts."""
    img, truth = _cap_field(size=384, diameter=80.0, spacing=92.0)
    seg = segment_model(HeightMap(img, pixel_size=None, unit=unit), model=model)
    n_true = int(truth.max())
    assert seg.count == n_true
    for k in range(1, n_true + 1):
        ids, counts = np.unique(seg.labels[truth == k], return_counts=True)
        best = ids[np.argmax(np.where(ids > 0, counts, 0))]
        pred = seg.labels == best
        iou = (pred & (truth == k)).sum() / (pred | (truth == k)).sum()
        assert iou > 0.8, (k, iou)


def test_small_particles_get_an_enlarged_pass(model):
    # 6 px particles: the pass over the image enlarged by 2 runs and its particles are merged in
    img, truth = _cap_field(size=192, diameter=6.0, spacing=14.0, noise=0.01, seed=3)
    seg = segment_model(HeightMap(img, pixel_size=None, unit="a.u."), model=model,
                        profile="standard")
    assert seg.info["upscaled_because"] and 2.0 in seg.info["scales"]
    hit = [len(set(np.unique(seg.labels[truth == k])) - {0}) for k in range(1, truth.max() + 1)]
    assert sum(h == 1 for h in hit) >= 0.9 * truth.max()
    # 16 px particles: no enlarged pass
    img, _ = _cap_field()
    seg = segment_model(HeightMap(img, pixel_size=None, unit="a.u."), model=model,
                        profile="standard")
    assert seg.info["upscaled_because"] is None and 2.0 not in seg.info["scales"]
    assert "warnings" not in seg.info


def test_small_particles_on_a_too_large_image_are_said(model, monkeypatch):
    """Over UPSCALE_MAX_PIXELS the enlarged pass is skipped (time, memory): the analysis says
    so, with what to do, instead of losing the smallest particles silently."""
    from particlesnn.pipeline import AnalyzeOptions, analyze_heightmap
    from particlesnn.segment import neural

    monkeypatch.setattr(neural, "UPSCALE_MAX_PIXELS", 100 * 100)
    img, _ = _cap_field(size=192, diameter=6.0, spacing=14.0, noise=0.01, seed=3)
    hm = HeightMap(img, pixel_size=None, unit="a.u.")
    seg = segment_model(hm, model=model, profile="standard")
    assert seg.info["upscaled_because"] is None and 2.0 not in seg.info["scales"]
    assert "not inferred enlarged" in seg.info["warnings"][0]
    result = analyze_heightmap(hm, AnalyzeOptions(profile="standard"))
    assert any("--diameter" in w for w in result.warnings)


def test_tiling_matches_whole_image(model):
    img, _ = _cap_field(size=200, diameter=12.0, spacing=20.0, seed=1)
    img = img[:, :184]
    x = normalise(img)
    whole = predict_maps(model, x, normalised=True, tile=1024)
    tiled = predict_maps(model, x, normalised=True, tile=136, margin=64)
    for k in whole:
        np.testing.assert_allclose(tiled[k], whole[k], atol=1e-4)
    a, b = decode(whole), decode(tiled)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_bad_input(model):
    img = np.zeros((64, 64), np.float32)
    img[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        segment_model(HeightMap(img), model=model)
    with pytest.raises(InputError):
        segment_model(HeightMap(np.zeros((64, 64))), model=model, diameter=-3)


def test_flat_height_map_gives_nothing(model):
    rng = np.random.default_rng(3)
    flat = 0.005 * rng.standard_normal((128, 128))  # nm: noise and corrugation only
    seg = segment_model(HeightMap(flat, pixel_size=(0.2, 0.2), unit="nm"), model=model)
    assert seg.count == 0 and seg.info["flat"]
    # the same field of 1 nm caps is not flat
    img, truth = _cap_field(size=128)
    seg = segment_model(HeightMap(img, pixel_size=(0.2, 0.2), unit="nm"), model=model)
    assert seg.count > 0.9 * truth.max()


def test_detect_command(tmp_path):
    import tifffile
    from typer.testing import CliRunner

    from particlesnn.cli import app
    from particlesnn.io import write

    img, truth = _cap_field(size=192)
    f = write(HeightMap(img, pixel_size=(0.5, 0.5), unit="nm"), tmp_path / "field.gsf")
    res = CliRunner().invoke(app, ["detect", str(f), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    lab = tifffile.imread(tmp_path / "out" / "field.labels.tif")
    assert lab.dtype == np.uint16 and lab.shape == img.shape
    lines = (tmp_path / "out" / "field.scores.txt").read_text().splitlines()
    assert len(lines) == lab.max() and abs(len(lines) - truth.max()) <= 2
    assert lines[0].split()[0] == "1" and 0 < float(lines[0].split()[1]) <= 1
    assert "profile standard" in res.output
    res = CliRunner().invoke(app, ["detect", str(f), "--out", str(tmp_path / "o2"),
                                   "--profile", "textured"])
    assert res.exit_code == 0 and "profile textured" in res.output
    res = CliRunner().invoke(app, ["detect", str(f), "--out", str(tmp_path / "o3"),
                                   "--profile", "bogus"])
    assert res.exit_code == 2 and "unknown profile" in res.output
    assert "polarity bright" in CliRunner().invoke(
        app, ["detect", str(f), "--out", str(tmp_path / "o4")]).output
    # the caps turned into pits by the user's choice: (almost) nothing is found
    res = CliRunner().invoke(app, ["detect", str(f), "--out", str(tmp_path / "o5"),
                                   "--polarity", "dark"])
    assert res.exit_code == 0 and "polarity dark" in res.output
    assert tifffile.imread(tmp_path / "o5" / "field.labels.tif").max() <= 2
    res = CliRunner().invoke(app, ["detect", str(f), "--out", str(tmp_path / "o6"),
                                   "--polarity", "up"])
    assert res.exit_code == 2 and "unknown polarity" in res.output


def test_detect_on_a_chosen_plane_of_a_tiff_stack(tmp_path):
    """detect --channel picks a TIFF stack's plane (an empty plane 0, the particles on 1)."""
    import tifffile
    from typer.testing import CliRunner

    from particlesnn.cli import app

    img, truth = _cap_field(size=128)
    grey = np.round(40 + 180 * (img - img.min()) / np.ptp(img)).astype(np.uint8)
    flat = np.full_like(grey, 40) + np.random.default_rng(0).integers(0, 3, grey.shape).astype(np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", np.stack([flat, grey]), photometric="minisblack")
    found = {}
    for ch in ("0", "1"):
        res = CliRunner().invoke(app, ["detect", str(tmp_path / "s.tif"), "--out",
                                       str(tmp_path / f"o{ch}"), "--channel", ch])
        assert res.exit_code == 0, res.output
        found[ch] = int(tifffile.imread(tmp_path / f"o{ch}" / "s.labels.tif").max())
    assert found["0"] <= 1 and abs(found["1"] - truth.max()) <= 2, found


def test_detect_goes_on_past_an_unreadable_file(tmp_path):
    # a folder holding a good map and a truncated file: the good one is written, the bad one
    # named on one line, exit status 1 (some inputs failed; 2 is for bad options)
    import tifffile
    from typer.testing import CliRunner

    from particlesnn.cli import app
    from particlesnn.io import write

    img, truth = _cap_field(size=128)
    d = tmp_path / "in"
    d.mkdir()
    (d / "a_broken.gsf").write_bytes(b"Gwyddion Simple Field 1.0\nXRes = 64\n")
    write(HeightMap(img, pixel_size=(0.5, 0.5), unit="nm"), d / "b_field.gsf")
    res = CliRunner().invoke(app, ["detect", str(d), "--out", str(tmp_path / "out"),
                                   "--method", "threshold"])
    assert res.exit_code == 1, res.output
    assert "skipped a_broken.gsf: " in res.output and "Traceback" not in res.output
    assert tifffile.imread(tmp_path / "out" / "b_field.labels.tif").shape == img.shape
    assert not (tmp_path / "out" / "a_broken.labels.tif").exists()


def test_pits_are_not_particles(model):
    # caps up and the same caps as pits: after orientation (particles bright) only the caps count
    img, truth = _cap_field(size=192, diameter=16.0, spacing=32.0, noise=0.01, seed=4)
    sign = np.where((np.arange(truth.max() + 1) % 2) == 0, -1.0, 1.0)  # even labels are pits
    img = img * sign[truth]
    seg = segment_model(HeightMap(img, pixel_size=None, unit="a.u."), model=model)
    caps = [k for k in range(1, truth.max() + 1) if k % 2]
    pits = [k for k in range(1, truth.max() + 1) if k % 2 == 0]
    assert all(seg.labels[truth == k].any() for k in caps)
    assert not any((seg.labels[truth == k] > 0).mean() > 0.5 for k in pits)


def _default_without(tmp_path, key: str):
    """A copy of the shipped default named "own-model" without the config key ``key``."""
    import json
    import shutil

    own = tmp_path / "own"
    shutil.copytree(WEIGHTS_DIR / "default", own)
    cfg = json.loads((own / "config.json").read_text())
    del cfg[key]
    cfg["name"] = "own-model"
    (own / "config.json").write_text(json.dumps(cfg))
    return load_model(own)


def test_height_maps_go_to_the_height_model(model, tmp_path):
    """The shipped default hands height maps in nm to the shipped height-map model (loaded
    once) and says so; plain images stay with it; a model naming no height model runs on both."""
    img, _ = _cap_field(size=128)
    height = segment_model(HeightMap(img, pixel_size=(0.2, 0.2), unit="nm"), model=model)
    plain = segment_model(HeightMap(img, pixel_size=None, unit="a.u."), model=model)
    assert model.config["height_model"] == "height"
    assert height.info["model"] == "particlesnn-unet-height"
    assert plain.info["model"] == "particlesnn-unet-plain"
    assert model.for_heightmaps() is model.for_heightmaps()
    assert model.for_heightmaps().path.name == "height"

    own = _default_without(tmp_path, "height_model")
    seg = segment_model(HeightMap(img, pixel_size=(0.2, 0.2), unit="nm"), model=own)
    assert seg.info["model"] == "own-model"


def test_textured_profile_runs_on_the_textured_model(model, tmp_path):
    """The shipped default runs the textured profile of plain images on the shipped textured
    model with that model's thresholds, and says so; height maps keep the height-map model for
    both profiles; a model naming no textured model runs the profile itself."""
    img, _ = _cap_field(size=128)
    plain = HeightMap(img, pixel_size=None, unit="a.u.")
    tex = segment_model(plain, model=model, profile="textured")
    std = segment_model(plain, model=model, profile="standard")
    assert model.config["textured_model"] == "textured"
    textured = model.for_textured()
    assert textured is model.for_textured() and textured.config["widths"] != model.config["widths"]
    assert tex.info["model"] == "particlesnn-unet-textured"
    assert std.info["model"] == "particlesnn-unet-plain"
    assert tex.info["min_score"] == textured.thresholds["textured"]["min_score"]
    assert tex.count >= 10  # the clear cap field is found by the textured model too
    height = segment_model(HeightMap(img, pixel_size=(0.2, 0.2), unit="nm"), model=model,
                           profile="textured")
    assert height.info["model"] == "particlesnn-unet-height"

    own = _default_without(tmp_path, "textured_model")
    assert segment_model(plain, model=own, profile="textured").info["model"] == "own-model"


def test_large_images_run_in_smaller_tiles(model, monkeypatch):
    """Images up to TILE_SMALL_IMAGE px run with TILE[0] (a 512 px image enlarged by 2 runs
    whole), larger ones in TILE[1] tiles (less onnxruntime memory); a given tile wins."""
    from particlesnn.segment import neural

    seen = []

    def fake(m, data, factor, sigma, tile=1024):
        seen.append(tile)
        shape = (max(8, round(data.shape[0] * factor)), max(8, round(data.shape[1] * factor)))
        return {k: np.zeros(shape, np.float32) for k in ("prob", "dist", "boundary")}

    monkeypatch.setattr(neural, "copy_maps", fake)
    plain = dict(pixel_size=None, unit="a.u.")
    segment_model(HeightMap(np.zeros((512, 512), np.float32), **plain), model=model)
    assert set(seen) == {neural.TILE[0]} and neural.TILE[0] >= 1024
    seen.clear()
    segment_model(HeightMap(np.zeros((1100, 900), np.float32), **plain), model=model)
    assert set(seen) == {neural.TILE[1]} and neural.TILE[1] < neural.TILE[0]
    seen.clear()
    segment_model(HeightMap(np.zeros((1100, 900), np.float32), **plain), model=model, tile=512)
    assert set(seen) == {512}


def test_finer_maps_need_no_enlarged_copy(monkeypatch):
    """A model with maps twice as fine as its input runs once per factor and gets no
    enlarged copy, even when its particles are small, unless its config asks for one; a 1x
    model gets the enlarged copy then
    (that copy_maps gives such a model's maps on the copy's grid: test_predict_maps_* above)."""
    from types import SimpleNamespace

    from particlesnn.segment import neural

    calls = []

    def fake(m, data, factor, sigma, tile=1024):
        calls.append(factor)
        shape = (max(8, round(data.shape[0] * factor)), max(8, round(data.shape[1] * factor)))
        prob = np.zeros(shape, np.float32)
        prob[4::8, 4::8] = 1.0                      # many 1 px particles: "small"
        prob = np.maximum(prob, np.roll(prob, 1, 0))
        return {"prob": prob, "dist": prob.copy(), "boundary": np.zeros_like(prob)}

    monkeypatch.setattr(neural, "copy_maps", fake)
    th = {"prob_thresh": 0.5, "marker_thresh": 0.5, "min_area": 1, "min_score": 0.0}
    z = np.zeros((64, 48), np.float32)
    fine = neural.MapsOf(SimpleNamespace(out_scale=2), z, sigma=20.0)
    assert not fine.enlarged_copy and fine(1.0)["prob"].shape == (64, 48) and fine(1.0) is fine(1.0)
    seg, used, why = neural.run_profile(fine, "standard", [1.0, 0.5], th, z.shape)
    assert seg.count > neural.SWITCH_MIN_COUNT and why is None and used == [1.0, 0.5]
    assert calls == [1.0, 0.5]                      # no enlarged copy
    calls.clear()
    asked = neural.MapsOf(SimpleNamespace(out_scale=2, config={"enlarged_copy": True}), z, 20.0)
    seg, used, why = neural.run_profile(asked, "standard", [1.0, 0.5], th, z.shape)
    assert asked.enlarged_copy and why is not None and calls[-1] == neural.UPSCALE_FACTOR
    calls.clear()
    plain = neural.MapsOf(SimpleNamespace(out_scale=1), z, 20.0)
    seg, used, why = neural.run_profile(plain, "standard", [1.0, 0.5], th, z.shape)
    assert plain.enlarged_copy and why is not None and used[0] == neural.UPSCALE_FACTOR
    assert calls == [1.0, 0.5, neural.UPSCALE_FACTOR]
    # only the last copy's maps are kept (peak memory); calibration keeps them all
    calls.clear()
    plain(1.0)
    assert calls == [1.0] and list(plain._maps) == [1.0]  # asked again after the 2x copy
    kept = neural.MapsOf(SimpleNamespace(out_scale=1), z, 20.0, keep_all=True)
    kept(1.0), kept(0.5), kept(1.0)
    assert calls == [1.0, 1.0, 0.5] and sorted(kept._maps) == [0.5, 1.0]




def test_detector_checks_a_dark_call_on_height_maps(model, bumps_and_pit):
    from particlesnn import preprocess as pp
    from particlesnn.segment import segment, segment_oriented

    # five particles beside a deep etch pit: the tail statistic calls the map dark, and the
    # dark orientation finds only the pit; the detector's check keeps the particles
    hm = bumps_and_pit(pit_depth=2.0, bumps=1.0)
    assert pp.detect_polarity(hm.data, height=True) == "dark"
    assert segment(pp.orient(hm, "auto")[0], "model", model=model).count <= 1
    oriented, used, seg = segment_oriented(hm, "auto", "model", model=model)
    assert used == "bright" and oriented.metadata["polarity"] == "bright"
    assert seg.count == 5 and seg.info["polarity_check"]["bright"] > 4.0
    from particlesnn.pipeline import analyze_heightmap

    r = analyze_heightmap(hm)  # the analysis runs the same check
    assert r.polarity == "bright" and int(r.labels.max()) == 5
    assert np.allclose(r.particles["height_max_nm"], 1.0, atol=0.1)  # measured standing up
    # a map of pits only stays dark: its pits are what the detector finds
    pits = bumps_and_pit(pit_depth=0.0, bumps=-1.0)
    _, used, seg = segment_oriented(pits, "auto", "model", model=model)
    assert used == "dark" and seg.count == 5
    # no check where the user chose, for other methods, or for plain images
    assert segment_oriented(hm, "dark", "model", model=model)[1] == "dark"
    assert segment_oriented(hm, "auto", "threshold")[1] == "dark"
    plain = HeightMap(hm.data, pixel_size=None, unit="a.u.")
    _, used, seg = segment_oriented(plain, "auto", "model", model=model)
    assert used == "dark" and "polarity_check" not in seg.info  # a plain image, a clear call


def test_detector_checks_a_weak_call_on_plain_images(model):
    from particlesnn import preprocess as pp
    from particlesnn.segment import segment_oriented

    # ten dark particles and six larger, brighter spots on a grey plain image: the tail
    # statistic leans (weakly) to bright; the detector finds more the other way
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    z = 1.0 + rng.normal(0, 0.02, (256, 256))
    for k, (cy, cx) in enumerate((40 + 58 * i, 40 + 58 * j) for i in range(4) for j in range(4)):
        amp, r = (2.0, 8.0) if k < 6 else (-0.5, 8.0)
        z += amp * np.sqrt(np.clip(1 - ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2, 0, None))
    hm = pp.level(HeightMap(z, pixel_size=None, unit="a.u.", metadata={"format": "image"}))
    assert 0 < pp.polarity_score(hm.data) < pp.POLARITY_CHECK_PLAIN
    assert pp.polarity_call(hm) == ("bright", True)
    _, used, seg = segment_oriented(hm, "auto", "model", model=model)
    assert used == "dark" and seg.count == 10
    assert seg.info["polarity_check"]["dark"] > seg.info["polarity_check"]["bright"]
