"""Calibrate a model folder's thresholds (no torch): decoding thresholds per profile, then
the profile switch. Never on the validation parts of the real sets or the benchmark seeds.

    PYTHONPATH=src python -m particlesnn.training.calibrate MODEL_DIR [REAL_ROOT]

REAL_ROOT defaults to ``../shared/real`` (run from the project root); without it everything is
calibrated on synthetic images only.

1. ``standard`` profile (top-level ``prob_thresh``, ``marker_thresh``, ``min_score`` of
   ``thresholds.json``): images of two groups, synthetic (``particlesnn.synth`` presets
   stm-sparse, stm-crowded, stm-tiny, stm-noisy-lines, stm-mixed and negatives, 4 each at
   384 px, seeds 1,950,000 + 100 k + i) and, with REAL_ROOT, 40 images of the training part
   of ``nuclei-dev``; the pick maximises the mean of the groups' scores.
   With REAL_ROOT, the height maps get their own values (``thresholds["standard-height"]``),
   calibrated on the synthetic group alone: a compromise with the nuclei images cost the
   synthetic STM benchmark recall.
2. ``textured`` profile (``thresholds["textured"]``), with REAL_ROOT only: the training part of
   ``stem-dev`` (Cu*, Ru*). (A model that names a ``textured_model`` decodes that profile on
   the linked model with its thresholds; its own entry serves fine-tuned copies.)
3. the profile switch (:func:`calibrate_profile_switch`).

Every image is levelled and oriented as in the analysis and segmented as
:func:`particlesnn.segment.neural.segment_model` does (multi-scale copies, background removed,
enlarged copy for small particles, merge; the network runs once per image and copy, only the
decoding is repeated). Grid (:data:`GRID`): ``prob_thresh`` in {0.5, ..., 0.8},
``marker_thresh`` in {0.3, ..., 0.7}, ``min_score`` in {0, 0.7, 0.8, 0.9, 0.95}, ``min_area``
4 px; for the textured profile (:data:`TEXTURED_GRID`) ``prob_thresh`` in {0.4, ..., 0.7},
``marker_thresh`` in {0.1, ..., 0.6}, ``min_score`` in {0, 0.6, ..., 0.9} (both widened on
2026-12-03: the picks sat on the edges of {0.5, 0.6, 0.7}^2 x {0, 0.7, 0.8, 0.9}); height maps
keep that first grid (:data:`HEIGHT_GRID`, see there). (Growing the outlines into a lower
probability, a hysteresis threshold of 0.3-0.5, was tried on 2026-11-25 and chosen by no group
of either model; it was removed.) Each group is scored by the mean of its pooled
centre-rule F1, pooled IoU-0.5 F1 (box IoU for stem-dev) and mean size accuracy.
``thresholds.json`` is written in place; the best grid points are printed.
"""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np

PRESETS = ["stm-sparse", "stm-crowded", "stm-tiny", "stm-noisy-lines", "stm-mixed", "negatives"]
#: (prob_thresh, marker_thresh, min_score) points of the standard profile (widened on
#: 2026-12-03 from {0.5, 0.6, 0.7}^2 x {0, 0.7, 0.8, 0.9}: the default's pick sat on its edges).
GRID = list(itertools.product((0.5, 0.6, 0.7, 0.8), (0.3, 0.4, 0.5, 0.6, 0.7),
                              (0.0, 0.7, 0.8, 0.9, 0.95)))
#: Height maps (``"standard-height"``) keep the narrower first grid: the wider one's pick for
#: the height-map model (marker 0.4 instead of 0.6, calibration 0.9408 vs 0.9399) cost the
#: held-out synthetic presets centre F1 (0.953 vs 0.954) and size accuracy (0.929 vs 0.956).
HEIGHT_GRID = list(itertools.product((0.5, 0.6, 0.7), (0.5, 0.6, 0.7), (0.0, 0.7, 0.8, 0.9)))
#: The textured profile's grid (its pick sat on the old grid's lowest marker_thresh, 0.5).
TEXTURED_GRID = list(itertools.product((0.4, 0.5, 0.6, 0.7), (0.1, 0.2, 0.3, 0.4, 0.5, 0.6),
                                       (0.0, 0.6, 0.7, 0.8, 0.9)))


class _Item:
    """One calibration image: its levelled map, truth, and the network's maps per factor
    (computed once, on first use)."""

    def __init__(self, group, z, truth, model, profile):
        from particlesnn.segment.neural import MIN_WORK_SIDE, PROFILES

        self.group, self.z, self.truth, self.model = group, z, truth, model
        self.sigma = PROFILES[profile]["background_sigma"]
        self.factors = [f for f in PROFILES[profile]["scales"]
                        if f == 1.0 or min(z.shape) * f >= MIN_WORK_SIDE]
        self.profile = profile
        from particlesnn.segment.neural import MapsOf

        self.maps = MapsOf(model, z, self.sigma, keep_all=True)

    def segment(self, th: dict):
        from particlesnn.segment.neural import run_profile

        return run_profile(self.maps, self.profile, self.factors, th, self.z.shape)[0]


def _grid_search(items, what: str, grid: list[dict]) -> list:
    """Score every thresholds dict of ``grid`` over ``items``; returns rows sorted best first:
    (score, thresholds, {group: (centre F1, IoU/box F1, size accuracy)}). A group's score is
    the mean of its pooled centre-rule F1, pooled IoU-0.5 F1 and mean per-image size accuracy;
    the row's score is the mean over groups."""
    from particlesnn.evaluate import evaluate_pair

    groups = sorted({it.group for it in items})
    rows = []
    for th in grid:
        tot = {g: np.zeros(6) for g in groups}
        size = {g: [] for g in groups}
        for it in items:
            r = evaluate_pair(it.segment(th).labels, it.truth, coco=False)
            tot[it.group] += [r["centre_tp"], r["centre_fp"], r["centre_fn"],
                              r["iou_tp"], r["iou_fp"], r["iou_fn"]]
            if np.isfinite(r["size_accuracy"]):
                size[it.group].append(r["size_accuracy"])
        per = {}
        for g, t in tot.items():
            per[g] = (2 * t[0] / max(1, 2 * t[0] + t[1] + t[2]),
                      2 * t[3] / max(1, 2 * t[3] + t[4] + t[5]),
                      float(np.mean(size[g])) if size[g] else 0.0)
        rows.append((float(np.mean([np.mean(v) for v in per.values()])), th, per))
    rows.sort(key=lambda r: -r[0])
    for sc, th, per in rows[:4]:
        print(f"{what}: score {sc:.3f} " + " ".join(f"{k} {v}" for k, v in th.items()) + " | "
              + ", ".join(f"{g} centre F1 {c:.3f} IoU F1 {i:.3f} size {z:.3f}"
                          for g, (c, i, z) in per.items()))
    return rows


def _calibrate(items, what: str, points=None) -> tuple:
    """The best row of :func:`_grid_search` over prob / marker / min_score (``points``:
    ``(prob, marker, min_score)`` triples, default :data:`GRID`)."""
    grid = [{"prob_thresh": pt, "marker_thresh": mt, "min_area": 4, "min_score": ms}
            for pt, mt, ms in (GRID if points is None else points)]
    return _grid_search(items, what, grid)[0]


def calibrate_decoding(model_dir: str | Path, real_root: str | Path | None = None,
                       n_per_preset: int = 4, size: int = 384, n_nuclei: int = 40) -> dict:
    """Pick and write the decoding thresholds of ``model_dir`` (steps 1 and 2 of the module's
    docstring); returns the thresholds dict."""
    from particlesnn.io import read
    from particlesnn.io.groundtruth import read_real_set
    from particlesnn.model import load_model
    from particlesnn.preprocess import level, orient
    from particlesnn.synth import generate

    mdir = Path(model_dir)
    m = load_model(mdir)
    root = Path(real_root) if real_root is not None else None
    std = []
    for k, p in enumerate(PRESETS):
        for i in range(n_per_preset):
            si = generate(p, 1_950_000 + 100 * k + i, size=size)
            hm = si.height if si.modality == "stm" else si.height.with_data(si.image, unit="a.u.")
            hm, _ = orient(level(hm), "auto")
            std.append(_Item("synthetic", hm.data.astype(np.float32), si.labels, m, "standard"))
    if root is not None and (root / "nuclei-dev").is_dir():
        gts = read_real_set(root, "nuclei-dev", "train")
        for g in gts[:: max(1, len(gts) // n_nuclei)][:n_nuclei]:
            hm, _ = orient(level(read(g.image)), "auto")
            std.append(_Item("nuclei-dev", hm.data.astype(np.float32), g.truth, m, "standard"))
    th = json.loads((mdir / "thresholds.json").read_text()) if (mdir / "thresholds.json").is_file() else {}
    score, best, per = _calibrate(std, "standard")
    th.update({**best, "calibrated_on": "standard profile: " + ", ".join(
                   f"{g} {sum(it.group == g for it in std)}" for g in per)
               + f" images (synthetic: seeds 1950000+, presets {', '.join(PRESETS)}, {size} px; "
                 "nuclei-dev: training part); mean over groups of the mean of centre F1, "
                 "IoU-0.5 F1 and size accuracy",
               "cal_per_group": {g: [round(float(x), 4) for x in v] for g, v in per.items()}})
    for key in ("val_iou50_f1", "cal_centre_f1", "cal_iou50_f1", "textured", "standard-height"):
        th.pop(key, None)
    syn = [it for it in std if it.group == "synthetic"]
    if len(syn) < len(std):  # height maps get their own (light-microscope images pulled the above)
        _, bh, per_h = _calibrate(syn, "standard, height maps", HEIGHT_GRID)
        th["standard-height"] = {**bh, "calibrated_on": f"the {len(syn)} synthetic STM images above",
                                 "cal_per_group": {g: [round(float(x), 4) for x in v]
                                                   for g, v in per_h.items()}}
    if root is not None and (root / "stem-dev").is_dir():
        tex = []
        for g in read_real_set(root, "stem-dev", "train"):
            hm, _ = orient(level(read(g.image)), "auto")
            tex.append(_Item("stem-dev", hm.data.astype(np.float32), g.truth, m, "textured"))
        _, bt, per = _calibrate(tex, "textured", TEXTURED_GRID)
        c, b, z = per["stem-dev"]
        th["textured"] = {**bt, "calibrated_on": f"stem-dev training part ({len(tex)} images); "
                                                 "mean of centre F1, box-IoU F1, size accuracy",
                          "cal_centre_f1": round(float(c), 4), "cal_box_f1": round(float(b), 4),
                          "cal_size_accuracy": round(float(z), 4)}
    (mdir / "thresholds.json").write_text(json.dumps(th, indent=1))
    return th


def _profile_items(real_root: Path | None, n_nuclei: int, n_synth: int):
    """(set name, levelled map, truth) for the profile-switch calibration: the training parts
    of the real sets (when present) and synthetic STM images of seeds 8,500,000+."""
    from particlesnn.io import read
    from particlesnn.io.groundtruth import read_real_set
    from particlesnn.preprocess import level, orient
    from particlesnn.synth import generate

    if real_root is not None and (real_root / "stem-dev").is_dir():
        for g in read_real_set(real_root, "stem-dev", "train"):
            yield "stem-dev", orient(level(read(g.image)), "auto")[0], g.truth
    if real_root is not None and (real_root / "nuclei-dev").is_dir():
        gts = read_real_set(real_root, "nuclei-dev", "train")
        for g in gts[:: max(1, len(gts) // n_nuclei)][:n_nuclei]:
            yield "nuclei-dev", orient(level(read(g.image)), "auto")[0], g.truth
    presets = ["stm-sparse", "stm-crowded", "stm-tiny", "stm-noisy-lines", "stm-large"]
    for i in range(n_synth):
        k = i % len(presets)
        si = generate(presets[k], 8_500_000 + 1000 * k + i // len(presets))
        yield "synthetic", orient(level(si.height), "auto")[0], si.labels


def calibrate_profile_switch(model_dir: str | Path, real_root: str | Path | None = None,
                             n_nuclei: int = 40, n_synth: int = 20) -> dict:
    """Pick the model's ``textured_below_mean_score`` (see :mod:`particlesnn.segment.neural`).

    Every image is segmented with both profiles (the textured one on the model's
    ``textured_model`` when it names one, as in the analysis); the standard pass's mean candidate score
    ``m`` (before the ``min_score`` cut, ``info["certainty"]``) is recorded. A threshold ``t`` sends the images with ``m < t`` (and at least
    ``SWITCH_MIN_COUNT`` particles) to the textured profile; the pick maximises the mean over
    the three groups (stem-dev training part, ``n_nuclei`` nuclei-dev training images,
    ``n_synth`` synthetic STM images; never the validation parts or the benchmark seeds) of the
    mean per-image centre-rule F1. Without ``real_root`` only the synthetic group is used.
    Writes ``thresholds.json`` in place; returns the thresholds dict.
    """
    from particlesnn.evaluate import evaluate_pair
    from particlesnn.model import load_model
    from particlesnn.segment.neural import SWITCH_MIN_COUNT, segment_model

    mdir = Path(model_dir)
    m = load_model(mdir)
    # this model's switch, on every image kind; the textured pass runs where the analysis runs
    # it (the model's textured_model when it names one)
    m.config.pop("height_model", None)
    root = Path(real_root) if real_root is not None else None
    rec = []
    for group, hm, truth in _profile_items(root, n_nuclei, n_synth):
        std = segment_model(hm, model=m, profile="standard")
        tex = segment_model(hm, model=m, profile="textured")
        mean = float(std.info["certainty"]) if std.count >= SWITCH_MIN_COUNT else 1.0
        rec.append((group, mean, evaluate_pair(std.labels, truth, coco=False)["centre_f1"],
                    evaluate_pair(tex.labels, truth, coco=False)["centre_f1"]))
    groups = sorted({r[0] for r in rec})
    best = None
    for t in np.round(np.arange(0.80, 0.991, 0.005), 3):
        per = [np.mean([(tf if mean < t else sf) for g, mean, sf, tf in rec if g == grp]) for grp in groups]
        score = float(np.mean(per))
        if best is None or score > best[0] + 1e-9:
            best = (score, float(t), per)
    for grp in groups:
        ms = [r[1] for r in rec if r[0] == grp]
        print(f"{grp}: {len(ms)} images, standard-pass mean candidate score {min(ms):.3f}-{max(ms):.3f}")
    print(f"switch below {best[1]:.3f}: mean centre F1 per group "
          + ", ".join(f"{g} {v:.3f}" for g, v in zip(groups, best[2])))
    th = json.loads((mdir / "thresholds.json").read_text()) if (mdir / "thresholds.json").is_file() else {}
    th.update({"textured_below_mean_score": best[1],
               "textured_calibrated_on": f"{len(rec)} images: " + ", ".join(
                   f"{g} {sum(r[0] == g for r in rec)}" for g in groups)
               + " (training parts / seeds 8,500,000+); mean per-group centre F1 "
               + f"{best[0]:.3f}"})
    (mdir / "thresholds.json").write_text(json.dumps(th, indent=1))
    return th


if __name__ == "__main__":
    real = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("../shared/real")
    real = real if real.is_dir() else None
    calibrate_decoding(sys.argv[1], real)
    out = calibrate_profile_switch(sys.argv[1], real)
    print(json.dumps(out))
