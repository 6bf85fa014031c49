"""Benchmark on the real development sets in ../shared/real: every method side by side.

    PYTHONPATH=src .venv/bin/python benchmarks/real.py [--methods threshold,watershed,model]
        [--sets stem-dev,nuclei-dev] [--split val|train|all] [--overlays docs/img] [--out DIR]

* ``stem-dev`` (HAADF-STEM, YOLO boxes): validation = the ``Pd*`` images, training part = ``Cu*``,
  ``Ru*``. Scored with "predicted centre inside a box" and the IoU of each predicted mask's
  bounding box with the true boxes; bbox mAP; size = mean ``sqrt(w h)``.
* ``nuclei-dev`` (fluorescence / bright-field nuclei, instance masks): validation = every 4th id
  in sorted order (:func:`particlesnn.io.groundtruth.real_split`). Masks: centre rule, IoU
  matching, segm and bbox mAP, equivalent-diameter size accuracy.

Each image is read with ``particlesnn.io`` (plain image -> HeightMap), levelled and oriented
(``preprocess.level``, ``orient(hm, "auto")``) and segmented (the model as the analysis runs it,
:func:`particlesnn.segment.segment_oriented`: the detector checks a weak polarity call). Printed: the set-level figures
(ratios from summed counts), seconds per image (segmentation; reading + preprocessing shown
apart) and peak heap memory of the segmentation (tracemalloc, largest image). With
``--overlays DIR`` the best and worst validation image per set (by centre F1 for boxes, IoU F1
for masks, of ``--overlay-method``: default the model when it runs) are written as small PNGs.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import _common as C
from particlesnn import preprocess as pp
from particlesnn.evaluate import coco_map, evaluate_pair, summarize
from particlesnn.io.groundtruth import read_real_set

REAL = C.ROOT.parent / "shared" / "real"


def read_image(path: Path):
    """A plain image as a HeightMap (``particlesnn.io.read`` when present)."""
    try:
        from particlesnn.io import read
    except ImportError:
        from particlesnn.io.image import read
    return read(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="threshold,watershed,model")
    ap.add_argument("--sets", default="stem-dev,nuclei-dev")
    ap.add_argument("--split", default="val", choices=["val", "train", "all"])
    ap.add_argument("--root", type=Path, default=REAL)
    ap.add_argument("--overlays", type=Path, default=None, help="folder for real_*.png overlays")
    ap.add_argument("--overlay-method", default=None,
                    help="method drawn in the overlays (default: model when it runs, else the first)")
    ap.add_argument("--out", type=Path, default=None, help="write real-<split>.md and .json here")
    ap.add_argument("--limit", type=int, default=None, help="at most this many images per set (smoke runs)")
    ap.add_argument("--model", default=None, help="model folder for the model method (default: shipped)")
    args = ap.parse_args(argv)
    C.MODEL_DIR = args.model
    if not args.root.is_dir():
        print(f"{args.root} not present: nothing to do")
        return 0
    wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    t_start = time.perf_counter()
    header = ["set", "split", "method", "images", "true", "pred", "ctr P", "ctr R", "ctr F1", "IoU F1",
              "mIoU", "mAP mask", "mAP box", "size acc", "s/image", "peak MB"]
    table, results, notes, why_all = [], [], [], {}
    for set_name in sets:
        gts = read_real_set(args.root, set_name, None if args.split == "all" else args.split)
        if args.limit:
            gts = gts[: args.limit]
        rows: dict[str, list[dict]] = {}
        coco_in: dict[str, tuple[list, list, list]] = {}
        secs: dict[str, float] = {}
        peak: dict[str, float] = {}
        read_s = prep_s = 0.0
        n_dark = n_model_flipped = 0
        methods = None
        keep: dict[str, dict] = {}        # name -> image, truth, predictions (for overlays)
        largest = max(gts, key=lambda g: g.shape[0] * g.shape[1]).name
        for g in gts:
            hm, dt = C.timed(read_image, g.image)
            read_s += dt
            lev, dt_level = C.timed(pp.level, hm)
            (hm, pol), dt = C.timed(pp.orient, lev, "auto")
            prep_s += dt + dt_level
            n_dark += pol != "bright"
            if hm.shape != g.shape:
                raise SystemExit(f"{g.name}: image {hm.shape} but truth {g.shape}")
            if methods is None:
                methods, why = C.available(wanted, hm)
                why_all.update(why)
            preds = {}
            for m in methods:
                if m == "model":  # as the analysis: the detector checks a weak polarity call
                    (_, pol_m, seg), dt = C.timed(C.segment_oriented, lev, "auto", m)
                    n_model_flipped += pol_m != pol
                else:
                    seg, dt = C.timed(C.segment, hm, m)
                secs[m] = secs.get(m, 0.0) + dt
                if g.name == largest:
                    peak[m] = C.peak_mb(C.segment, hm, m)
                r = evaluate_pair(seg.labels, g.truth, seg.scores, coco=False)
                r["name"] = g.name
                r["detector"] = seg.info.get("model")  # which shipped model ran (by content)
                rows.setdefault(m, []).append(r)
                ci = coco_in.setdefault(m, ([], [], []))
                ci[0].append(seg.labels); ci[1].append(g.truth); ci[2].append(seg.scores)
                preds[m] = seg.labels
            if args.overlays and methods:
                m0 = args.overlay_method or ("model" if "model" in methods else methods[0])
                keep[g.name] = {"image": hm.data.astype(np.float32), "truth": g.truth, "pred": preds[m0]}
        for m in methods or []:
            o = summarize(rows[m])
            o.update(coco_map(*coco_in[m]))
            spi = secs[m] / len(gts)
            results.append({"set": set_name, "split": args.split, "method": m, **o, "s_per_image": spi,
                            "peak_mb": peak.get(m), "per_image": rows[m]})
            table.append([set_name, args.split, m, C.fmt(o["n_images"], "d"), C.fmt(o["n_true"], "d"),
                          C.fmt(o["n_pred"], "d"), C.fmt(o["centre_precision"]), C.fmt(o["centre_recall"]),
                          C.fmt(o["centre_f1"]), C.fmt(o["iou_f1"]), C.fmt(o["mean_matched_iou"]),
                          C.fmt(o["map_segm"]), C.fmt(o["map_bbox"]), C.fmt(o["size_accuracy"]),
                          C.fmt(spi, ".3f"), C.fmt(peak.get(m), ".0f")])
        ran = [r["detector"] for r in rows.get("model", []) if r.get("detector")]
        ran = "; model ran: " + ", ".join(f"{k} on {ran.count(k)}" for k in sorted(set(ran))) if ran else ""
        notes.append(f"{set_name} ({args.split}, {len(gts)} images): reading {read_s / len(gts):.3f} s/image, "
                     f"level + orient {prep_s / len(gts):.3f} s/image; orient chose 'dark' on {n_dark} images"
                     + (f", the detector's check turned {n_model_flipped} the other way (model)"
                        if "model" in (methods or []) else "") + f"{ran}.")
        del coco_in
        if args.overlays and methods:
            m0 = args.overlay_method or ("model" if "model" in methods else methods[0])
            key = "iou_f1" if set_name == "nuclei-dev" else "centre_f1"
            ranked = sorted(rows[m0], key=lambda r: (r[key], r["name"]))
            short = "stem" if set_name == "stem-dev" else "nuclei"
            for tag, r in (("worst", ranked[0]), ("best", ranked[-1])):
                k = keep[r["name"]]
                path = args.overlays / f"real_{short}_{tag}.png"
                size = C.overlay_png(path, k["image"], k["pred"], k["truth"],
                                     title=f"{r['name'][:16]} {m0} {key.replace('_', ' ')} {r[key]:.2f}")
                notes.append(f"overlay {path.name}: {r['name']} ({m0}, {key} {r[key]:.3f}), {size / 1e3:.0f} kB")
        keep.clear()
    md = C.markdown_table(header, table)
    tail = (f"Machine: {C.machine()}. Whole run {time.perf_counter() - t_start:.0f} s, max RSS "
            f"{C.max_rss_mb():.0f} MB. stem-dev has boxes only: 'IoU F1' is box IoU of the predicted "
            f"masks' bounding boxes, 'mAP mask' is undefined.")
    print(md)
    print()
    for n in notes + [tail]:
        print(n)
    for m, w in why_all.items():
        print(f"Not run: {m} ({w})")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"real-{args.split}.md").write_text(md + "\n\n" + "\n".join(notes + [tail]) + "\n")
        (args.out / f"real-{args.split}.json").write_text(json.dumps(
            {"machine": C.machine(), "results": results, "notes": notes, "not_run": why_all},
            indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
