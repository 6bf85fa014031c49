"""Choose the decoding thresholds of a model folder on held-out synthetic STM images, and the
profile switch on the training parts of the real sets (no torch).

    PYTHONPATH=src python -m particlesnn.training.calibrate MODEL_DIR [REAL_ROOT]

REAL_ROOT defaults to ``../shared/real`` (run from the project root); without it the profile
switch is calibrated on synthetic images only.

Images: ``particlesnn.synth`` presets stm-sparse, stm-crowded, stm-tiny, stm-noisy-lines,
stm-mixed and negatives, 4 each at 384 px, seeds 1,950,000 + 100 k + i (not the training seeds
1,000,000-1,903,000, not the benchmark seeds 9,000,000+), levelled and oriented as in the
analysis, and inferred as :func:`particlesnn.segment.neural.segment_model` does with the
"standard" profile (multi-scale copies, background removed, particles merged). Grid:
``prob_thresh`` and ``marker_thresh`` in {0.5, 0.6, 0.7}, ``min_score`` in
{0, 0.7, 0.8, 0.85, 0.9}, ``min_area`` 4 px (8 px gained nothing: +0.0002); the pick
maximises the mean of the pooled centre-rule F1 and IoU-0.5 F1.
Writes ``thresholds.json`` in place and prints the six best grid points.
"""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np

PRESETS = ["stm-sparse", "stm-crowded", "stm-tiny", "stm-noisy-lines", "stm-mixed", "negatives"]


def calibrate_synthetic(model_dir: str | Path, n_per_preset: int = 4, size: int = 384) -> dict:
    """Pick and write the decoding thresholds of ``model_dir``; returns the thresholds dict."""
    from particlesnn.evaluate import evaluate_pair
    from particlesnn.model import load_model
    from particlesnn.preprocess import level, orient
    from particlesnn.segment.decode import merge_instances
    from particlesnn.segment.neural import MIN_WORK_SIDE, PROFILES, decode_profile, profile_maps
    from particlesnn.synth import generate

    mdir = Path(model_dir)
    m = load_model(mdir)
    items = []
    for k, p in enumerate(PRESETS):
        for i in range(n_per_preset):
            si = generate(p, 1_950_000 + 100 * k + i, size=size)
            hm = si.height if si.modality == "stm" else si.height.with_data(si.image, unit="a.u.")
            hm, _ = orient(level(hm), "auto")
            z = hm.data.astype(np.float32)
            prof = PROFILES["standard"]
            factors = [f for f in prof["scales"] if f == 1.0 or min(z.shape) * f >= MIN_WORK_SIDE]
            items.append((profile_maps(m, z, factors, prof["background_sigma"]), z.shape, si.labels))
    res = []
    for pt, mt, ms, ma in itertools.product((0.5, 0.6, 0.7), (0.5, 0.6, 0.7), (0.0, 0.7, 0.8, 0.85, 0.9),
                                            (4,)):
        tot = np.zeros(6)
        th = {"prob_thresh": pt, "marker_thresh": mt, "min_area": ma, "min_score": ms}
        for maps_list, shape, truth in items:
            lab = merge_instances(decode_profile(maps_list, th), shape).labels
            r = evaluate_pair(lab, truth)
            tot += [r["centre_tp"], r["centre_fp"], r["centre_fn"], r["iou_tp"], r["iou_fp"], r["iou_fn"]]
        cf1 = 2 * tot[0] / max(1, 2 * tot[0] + tot[1] + tot[2])
        if1 = 2 * tot[3] / max(1, 2 * tot[3] + tot[4] + tot[5])
        res.append(((cf1 + if1) / 2, pt, mt, ms, ma, cf1, if1, tot[0] / max(1, tot[0] + tot[1]),
                    tot[0] / max(1, tot[0] + tot[2])))
    res.sort(reverse=True)
    for r in res[:6]:
        print("score %.3f prob %.1f marker %.1f min_score %.2f min_area %d | centre F1 %.3f IoU F1 %.3f "
              "P %.3f R %.3f" % r)
    best = res[0]
    th = json.loads((mdir / "thresholds.json").read_text()) if (mdir / "thresholds.json").is_file() else {}
    th.update({"prob_thresh": best[1], "marker_thresh": best[2], "min_score": best[3], "min_area": best[4],
               "calibrated_on": f"{len(items)} held-out synthetic images (seeds 1950000+, presets "
                                f"{', '.join(PRESETS)}), {size} px; mean of centre F1 and IoU-0.5 F1",
               "cal_centre_f1": round(best[5], 4), "cal_iou50_f1": round(best[6], 4)})
    th.pop("val_iou50_f1", None)
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

    Every image is segmented with both profiles; the standard pass's mean particle score
    ``m`` is recorded. A threshold ``t`` sends the images with ``m < t`` (and at least
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
    root = Path(real_root) if real_root is not None else None
    rec = []
    for group, hm, truth in _profile_items(root, n_nuclei, n_synth):
        std = segment_model(hm, model=m, profile="standard")
        tex = segment_model(hm, model=m, profile="textured")
        mean = float(np.mean(std.scores)) if std.count >= SWITCH_MIN_COUNT else 1.0
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
        print(f"{grp}: {len(ms)} images, standard-pass mean score {min(ms):.3f}-{max(ms):.3f}")
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
    out = calibrate_synthetic(sys.argv[1])
    real = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("../shared/real")
    out = calibrate_profile_switch(sys.argv[1], real if real.is_dir() else None)
    print(json.dumps(out))
