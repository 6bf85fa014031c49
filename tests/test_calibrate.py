"""Threshold calibration of a model folder: decoding thresholds per profile on a grid, written
to thresholds.json (tiny grid and images: this checks the mechanism, not the figures)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from particlesnn.model import WEIGHTS_DIR

pytestmark = pytest.mark.skipif(not (WEIGHTS_DIR / "default" / "model.onnx").is_file(),
                                reason="shipped weights not built yet")


def _fake_stem(root):
    """A stem-dev-like YOLO folder: two training images (Cu*, Ru*) and one held out (Pd*)."""
    rng = np.random.default_rng(0)
    (root / "stem-dev" / "images").mkdir(parents=True)
    (root / "stem-dev" / "labels").mkdir()
    yy, xx = np.mgrid[0:128, 0:128]
    for name in ("Cu1", "Ru1", "Pd1"):
        img = 60 + 10 * rng.standard_normal((128, 128))
        lines = []
        for cy, cx in rng.uniform(16, 112, (6, 2)):
            img += 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0 ** 2))
            lines.append(f"0 {cx / 128:.4f} {cy / 128:.4f} {12 / 128:.4f} {12 / 128:.4f}")
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "stem-dev" / "images" / f"{name}.png")
        (root / "stem-dev" / "labels" / f"{name}.txt").write_text("\n".join(lines) + "\n")


def _fake_nuclei(root, n=4):
    """A nuclei-dev-like label folder of n images of bright discs (every 4th sorted id held out)."""
    rng = np.random.default_rng(1)
    (root / "nuclei-dev" / "images").mkdir(parents=True)
    (root / "nuclei-dev" / "labels").mkdir()
    yy, xx = np.mgrid[0:96, 0:96]
    for k in range(n):
        img = 20 + 5 * rng.standard_normal((96, 96))
        lab = np.zeros((96, 96), np.uint16)
        for j, (cy, cx) in enumerate([(24, 24), (24, 70), (70, 30), (68, 72)], start=1):
            m = (yy - cy) ** 2 + (xx - cx) ** 2 < 10 ** 2
            img[m] += 150
            lab[m] = j
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "nuclei-dev" / "images" / f"n{k}.png")
        Image.fromarray(lab).save(root / "nuclei-dev" / "labels" / f"n{k}.png")


GRID = [(0.5, 0.5, 0.0), (0.7, 0.7, 0.9)]
# disjoint grids: the textured profile and the height maps have their own
TEXTURED_GRID = [(0.6, 0.1, 0.8), (0.4, 0.3, 0.0)]
HEIGHT_GRID = [(0.6, 0.6, 0.7), (0.8, 0.4, 0.95)]


def _calibrate(tmp_path, monkeypatch, make_real, **kwargs) -> dict:
    """calibrate_decoding of a copy of the shipped model on a tiny grid, one synthetic preset and
    the fake real sets ``make_real`` writes; returns the thresholds as saved."""
    import particlesnn.training.calibrate as cal

    mdir = tmp_path / "model"
    shutil.copytree(WEIGHTS_DIR / "default", mdir)
    make_real(tmp_path / "real")
    monkeypatch.setattr(cal, "GRID", GRID)
    monkeypatch.setattr(cal, "TEXTURED_GRID", TEXTURED_GRID)
    monkeypatch.setattr(cal, "HEIGHT_GRID", HEIGHT_GRID)
    monkeypatch.setattr(cal, "PRESETS", ["stm-sparse"])
    th = cal.calibrate_decoding(mdir, tmp_path / "real", n_per_preset=1, size=96, **kwargs)
    saved = json.loads((mdir / "thresholds.json").read_text())
    assert saved == json.loads(json.dumps(th))
    return saved


def test_calibrate_decoding_writes_thresholds_per_profile(tmp_path, monkeypatch):
    saved = _calibrate(tmp_path, monkeypatch, _fake_stem)
    assert (saved["prob_thresh"], saved["marker_thresh"], saved["min_score"]) in GRID
    assert set(saved["cal_per_group"]) == {"synthetic"}  # no nuclei-dev under this root
    assert len(saved["cal_per_group"]["synthetic"]) == 3  # centre F1, IoU F1, size accuracy
    tex = saved["textured"]
    assert (tex["prob_thresh"], tex["marker_thresh"], tex["min_score"]) in TEXTURED_GRID
    assert "2 images" in tex["calibrated_on"]  # the training part only: Pd1 is held out
    assert 0.0 <= tex["cal_centre_f1"] <= 1.0
    assert "standard-height" not in saved  # no light-microscope group to separate from


def test_height_maps_get_their_own_thresholds_when_nuclei_join(tmp_path, monkeypatch):
    saved = _calibrate(tmp_path, monkeypatch, _fake_nuclei, n_nuclei=3)
    assert set(saved["cal_per_group"]) == {"synthetic", "nuclei-dev"}
    h = saved["standard-height"]
    assert (h["prob_thresh"], h["marker_thresh"], h["min_score"]) in HEIGHT_GRID
    assert set(h["cal_per_group"]) == {"synthetic"}
    assert "textured" not in saved  # no stem-dev under this root


def test_profile_switch_calibrates_the_model_itself(tmp_path, monkeypatch):
    """The switch of a model that hands height maps to another one is calibrated on its own
    standard pass for every image, height maps included (not on the other model's); its
    textured pass runs on the model it names for that profile, as the analysis does."""
    import particlesnn.training.calibrate as cal
    from particlesnn.heightmap import HeightMap
    from particlesnn.segment import neural

    mdir = tmp_path / "model"
    shutil.copytree(WEIGHTS_DIR / "default", mdir)
    assert "height_model" in json.loads((mdir / "config.json").read_text())
    yy, xx = np.mgrid[0:96, 0:96]
    hm = HeightMap(sum(np.exp(-((yy - c) ** 2 + (xx - d) ** 2) / 18.0)
                       for c in (20, 50, 75) for d in (20, 50, 75)), pixel_size=(0.2, 0.2), unit="nm")
    lab = np.zeros((96, 96), np.int32)
    monkeypatch.setattr(cal, "_profile_items", lambda *a: [("synthetic", hm, lab)])
    ran = []
    real_segment = neural.segment_model

    def spy(hm, **kw):
        seg = real_segment(hm, **kw)
        ran.append(seg.info["model"])
        return seg

    monkeypatch.setattr(neural, "segment_model", spy)
    cal.calibrate_profile_switch(mdir, None)
    assert ran and set(ran) == {"particlesnn-unet-plain", "particlesnn-unet-textured"}
