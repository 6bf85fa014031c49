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


def test_calibrate_decoding_writes_thresholds_per_profile(tmp_path, monkeypatch):
    import particlesnn.training.calibrate as cal

    mdir = tmp_path / "model"
    shutil.copytree(WEIGHTS_DIR / "default", mdir)
    _fake_stem(tmp_path / "real")
    grid = [(0.5, 0.5, 0.0), (0.7, 0.7, 0.9)]
    monkeypatch.setattr(cal, "GRID", grid)
    monkeypatch.setattr(cal, "PRESETS", ["stm-sparse"])
    monkeypatch.setattr(cal, "GROW", (0.4,))
    th = cal.calibrate_decoding(mdir, tmp_path / "real", n_per_preset=1, size=96)
    saved = json.loads((mdir / "thresholds.json").read_text())
    assert saved == json.loads(json.dumps(th))
    assert (saved["prob_thresh"], saved["marker_thresh"], saved["min_score"]) in grid
    assert saved.get("grow_thresh", 0.4) == 0.4
    assert set(saved["cal_per_group"]) == {"synthetic"}  # no nuclei-dev under this root
    assert len(saved["cal_per_group"]["synthetic"]) == 3  # centre F1, IoU F1, size accuracy
    tex = saved["textured"]
    assert (tex["prob_thresh"], tex["marker_thresh"], tex["min_score"]) in grid
    assert "2 images" in tex["calibrated_on"]  # the training part only: Pd1 is held out
    assert 0.0 <= tex["cal_centre_f1"] <= 1.0
