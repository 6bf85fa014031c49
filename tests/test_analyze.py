"""End-to-end: `particlesnn analyze` on a synthetic folder, exports, re-import, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from typer.testing import CliRunner

from particlesnn import HeightMap, io
from particlesnn.cli import app

PX = 0.25  # nm/px


def _caps_field(seed: int, n_side: int = 4, size: int = 128):
    """Spherical caps of known base diameter (nm) on a flat, slightly noisy, tilted substrate."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    z = 0.002 * xx + 0.001 * yy + rng.normal(0, 0.01, (size, size))
    truth = []
    step = size / n_side
    for i in range(n_side):
        for j in range(n_side):
            d_nm = rng.uniform(3.0, 6.0)
            r = d_nm / 2 / PX
            cx, cy = (j + 0.5) * step + rng.uniform(-3, 3), (i + 0.5) * step + rng.uniform(-3, 3)
            h = 1.0  # nm
            rr2 = (xx - cx) ** 2 + (yy - cy) ** 2
            # cap of base radius r and height h: sphere radius R = (r^2 + h^2) / 2h
            R = (r**2 + (h / PX) ** 2) / (2 * h / PX)
            cap = np.sqrt(np.clip(R**2 - rr2, 0, None)) - (R - h / PX)
            z += np.clip(cap, 0, None) * PX
            truth.append((cx, cy, d_nm))
    return HeightMap(z, pixel_size=(PX, PX), channel="Z"), truth


@pytest.fixture
def synthetic_folder(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    truths = {}
    for k in range(3):
        hm, truth = _caps_field(k)
        io.write(hm, d / f"field{k}.gsf")
        truths[f"field{k}"] = truth
    return d, truths


def _run(args):
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    return res


def test_analyze_folder_matches_truth(synthetic_folder, tmp_path):
    d, truths = synthetic_folder
    out = tmp_path / "out"
    res = _run(["analyze", str(d), "--out", str(out), "--method", "watershed"])
    assert res.exit_code == 0, res.output
    parts = pd.read_csv(out / "particles.csv")
    assert set(parts["image"]) == set(truths)
    for name, truth in truths.items():
        p = parts[parts["image"] == name]
        assert len(p) == len(truth)
        # match each true cap to the nearest particle; base diameter within 10 %
        for cx, cy, d_nm in truth:
            k = np.argmin((p["x_px"] - cx) ** 2 + (p["y_px"] - cy) ** 2)
            # the Gaussian refinement takes the half-height border, so compare the unrefined
            # footprint only through the fit-independent quantity: the apex height
            assert abs(p["height_max_nm"].iloc[k] - 1.0) < 0.1
    for f in ("summary.csv", "summary.json", "particles.parquet", "report.html",
              "annotations.coco.json", "annotations.via.json", "config.yaml",
              "field0.overlay.png", "field0.labels.tif", "field0.scores.txt",
              "field0.labelme.json", "field0.particles.csv"):
        assert (out / f).is_file(), f
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["image"])[-1] == "ALL"
    assert int(summary.loc[summary["image"] == "ALL", "count"].iloc[0]) == 48
    # spacing: each image's Clark-Evans ratio; the set pools the nearest-neighbour distances
    # (the columns the statistics gather from every image's table include them)
    per_image, joint = summary.iloc[:-1], summary.iloc[-1]
    assert per_image["clark_evans_r"].between(0.3, 3).all() and np.isnan(joint["clark_evans_r"])
    assert joint["nn_distance_nm_n"] == 48
    assert joint["nn_distance_nm_mean"] == pytest.approx(parts["nn_distance_nm"].mean())


def test_unfinished_scan_is_analysed_on_its_scanned_part(synthetic_folder, tmp_path):
    """A scan stopped after 60 % of its lines (NaN below): the empty lines are not analysed
    (no streaks of the last line), densities are per scanned area, the summary says why;
    detect's label image keeps the file's size."""
    import tifffile

    d, _ = synthetic_folder
    hm = io.read(d / "field0.gsf")
    rows = hm.shape[0]
    cut = hm.data.copy()
    cut[int(0.6 * rows):] = np.nan
    f = tmp_path / "partial.gsf"
    io.write(HeightMap(cut, pixel_size=hm.pixel_size), f)
    out = tmp_path / "out"
    res = _run(["analyze", str(d / "field0.gsf"), str(f), "--out", str(out), "--method", "watershed"])
    assert res.exit_code == 0, res.output
    s = pd.read_csv(out / "summary.csv").set_index("image")
    assert s.loc["partial", "image_area_nm2"] == pytest.approx(0.6 * s.loc["field0", "image_area_nm2"], rel=0.02)
    assert "unfinished scan" in s.loc["partial", "warnings"]
    assert s.loc["partial", "count"] < s.loc["field0", "count"]
    # the particles of the scanned part only: their density is the full image's, within noise
    assert s.loc["partial", "density_per_um2"] == pytest.approx(s.loc["field0", "density_per_um2"], rel=0.35)
    res = _run(["detect", str(f), "--out", str(tmp_path / "det"), "--method", "watershed"])
    assert res.exit_code == 0 and "(note: unfinished scan: rows" in res.output, res.output
    lab = tifffile.imread(tmp_path / "det" / "partial.labels.tif")
    assert lab.shape == hm.shape and not lab[int(0.6 * rows):].any()


def test_unrefined_sizes_match_truth(synthetic_folder, tmp_path):
    d, truths = synthetic_folder
    out = tmp_path / "out"
    res = _run(["analyze", str(d / "field0.gsf"), "--out", str(out), "--method", "threshold",
                "--no-refine"])
    assert res.exit_code == 0, res.output
    p = pd.read_csv(out / "particles.csv")
    for cx, cy, d_nm in truths["field0"]:
        k = np.argmin((p["x_px"] - cx) ** 2 + (p["y_px"] - cy) ** 2)
        # the Otsu level cuts the cap at about a third of its height, so the footprint is
        # smaller than the base: between 60 % and 100 % of the base diameter
        assert 0.6 * d_nm < p["eq_diameter_nm"].iloc[k] <= 1.02 * d_nm


def test_bad_file_is_skipped_and_reported(synthetic_folder, tmp_path):
    d, _ = synthetic_folder
    (d / "broken.gsf").write_bytes(b"Gwyddion Simple Field 1.0\nXRes = 100\nYRes = 100\n")
    out = tmp_path / "out"
    res = _run(["analyze", str(d), "--out", str(out), "--method", "threshold", "--no-refine"])
    assert res.exit_code == 1
    assert "broken.gsf" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert [f["file"].endswith("broken.gsf") for f in summary["failed"]] == [True]
    assert len(summary["images"]) == 3
    # counts stay integers in summary.csv despite the blanks of the ALL and FAILED rows
    lines = (out / "summary.csv").read_text().splitlines()
    head = lines[0].split(",")
    first = dict(zip(head, lines[1].split(",")))
    assert first["rows"].isdigit() and first["cols"].isdigit() and first["count"].isdigit(), first


def test_single_bad_file_gives_one_line(tmp_path):
    bad = tmp_path / "truncated.gsf"
    bad.write_bytes(b"Gwyddion Simple Field 1.0\nXRes = 100\nYRes = 100\n")
    res = _run(["analyze", str(bad), "--out", str(tmp_path / "out"), "--method", "threshold"])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    # one unwrapped line naming the file and the problem; no empty summary table
    assert len(lines) == 1, res.output
    assert lines[0].startswith("error: truncated.gsf: ") and len(lines[0]) > 30


def test_existing_output_is_not_mixed(synthetic_folder, tmp_path):
    d, _ = synthetic_folder
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.csv").write_text("x")
    res = _run(["analyze", str(d), "--out", str(out), "--method", "threshold"])
    assert res.exit_code != 0
    assert (out / "old.csv").exists()
    res = _run(["analyze", str(d), "--out", str(out), "--method", "threshold", "--overwrite"])
    assert res.exit_code == 0
    assert not (out / "old.csv").exists()


def test_config_file_repeats_run(synthetic_folder, tmp_path):
    d, _ = synthetic_folder
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("method: threshold\nrefine: false\nmin_size: 3.5\n")
    out = tmp_path / "out"
    assert _run(["analyze", str(d), "--out", str(out), "--config", str(cfg)]).exit_code == 0
    used = (out / "config.yaml").read_text()
    assert "min_size: 3.5" in used and "method: threshold" in used
    p = pd.read_csv(out / "particles.csv")
    assert (p["eq_diameter_nm"] >= 3.5).all()
    out2 = tmp_path / "out2"
    assert _run(["analyze", str(d), "--out", str(out2), "--config", str(out / "config.yaml")]).exit_code == 0
    pd.testing.assert_frame_equal(p, pd.read_csv(out2 / "particles.csv"))


@pytest.mark.parametrize("fmt", ["labelme", "via", "coco"])
def test_export_import_round_trip(synthetic_folder, tmp_path, fmt):
    d, _ = synthetic_folder
    out = tmp_path / "out"
    assert _run(["analyze", str(d), "--out", str(out), "--method", "watershed"]).exit_code == 0
    ann = {"labelme": out, "via": out / "annotations.via.json",
           "coco": out / "annotations.coco.json"}[fmt]
    back = tmp_path / "back"
    res = _run(["measure", str(d), "--annotations", str(ann), "--out", str(back),
                "--config", str(out / "config.yaml")])
    assert res.exit_code == 0, res.output
    a = pd.read_csv(out / "particles.csv")
    b = pd.read_csv(back / "particles.csv")
    assert len(a) == len(b)
    # same particles, same sizes (polygons are faithful to IoU >= 0.98)
    for col in ("eq_diameter_nm", "height_max_nm"):
        ra = np.sort(a[col].to_numpy())
        rb = np.sort(b[col].to_numpy())
        np.testing.assert_allclose(ra, rb, rtol=0.03)


def test_edited_annotations_change_the_count(synthetic_folder, tmp_path):
    d, _ = synthetic_folder
    out = tmp_path / "out"
    assert _run(["analyze", str(d / "field0.gsf"), "--out", str(out), "--method", "watershed"]).exit_code == 0
    doc = json.loads((out / "field0.labelme.json").read_text())
    doc["shapes"] = doc["shapes"][:-2]  # the user deletes two particles
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    back = tmp_path / "back"
    assert _run(["measure", str(d / "field0.gsf"), "--annotations", str(edited),
                 "--out", str(back)]).exit_code == 0
    assert len(pd.read_csv(back / "particles.csv")) == 16 - 2


def test_contours_edited_in_imagej_are_measured(synthetic_folder, tmp_path):
    """An analyze folder holds each image's contours twice (LabelMe, ImageJ): the one the user
    edited is read; both edited and disagreeing: refused, not one picked at random."""
    from roifile import roiread, roiwrite

    d, _ = synthetic_folder
    f = d / "field0.gsf"
    out = tmp_path / "out"
    assert _run(["analyze", str(f), "--out", str(out), "--method", "watershed"]).exit_code == 0
    roi_zip, lm = out / "rois" / "field0.roi.zip", out / "field0.labelme.json"

    def remeasured(tag, annotations=out, files=(f,)):
        back = tmp_path / tag
        res = _run(["measure", *map(str, files), "--annotations", str(annotations), "--out", str(back)])
        return res, (len(pd.read_csv(back / "particles.csv")) if res.exit_code == 0 else None)

    res, n = remeasured("untouched")  # both as written: the same contours
    assert n == 16 and "contours from" in res.output, res.output
    rois = roiread(roi_zip)
    roi_zip.unlink()
    roiwrite(roi_zip, rois[:-2])  # the user deletes two particles in Fiji's ROI Manager
    res, n = remeasured("imagej")
    assert n == 14, res.output
    assert "field0.roi.zip" in res.output
    fiji = tmp_path / "RoiSet.zip"  # Fiji's own name for a saved ROI set: one image, its file
    roiwrite(fiji, rois[:-3])
    assert remeasured("roiset", fiji)[1] == 13
    res, _ = remeasured("roiset2", fiji, files=(f, d / "field1.gsf"))  # names no image of two
    assert "ImageJ ROIs name no image" in res.output
    junk = tmp_path / "junk.gwy"
    junk.write_text("not gwyddion")
    res, _ = remeasured("junk", junk)  # the annotation file at fault is named
    assert res.exit_code == 1 and "field0.gsf: junk.gwy: not a Gwyddion 2 file" in res.output, res.output
    doc = json.loads(lm.read_text())
    doc["shapes"] = doc["shapes"][:-1]  # ... and one in LabelMe, differently
    lm.write_text(json.dumps(doc))
    res, n = remeasured("both")
    assert res.exit_code == 1 and "labelme and imagej were edited" in res.output, res.output
    roi_zip.unlink()
    roiwrite(roi_zip, rois)  # the ImageJ file put back: the LabelMe edit counts
    res, n = remeasured("labelme")
    assert n == 15 and "field0.labelme.json" in res.output, res.output


def test_corrected_labelme_files_are_truth_for_evaluate(synthetic_folder, tmp_path):
    """analyze -> correct S.labelme.json -> evaluate the predictions against it: the files
    match the predictions by name (S, not S.labelme) and read back as the labels (mIoU ~1)."""
    import shutil

    d, _ = synthetic_folder
    out, truth = tmp_path / "out", tmp_path / "truth"
    assert _run(["analyze", str(d), "--out", str(out), "--method", "watershed"]).exit_code == 0
    truth.mkdir()
    for f in out.glob("*.labelme.json"):
        shutil.copy(f, truth / f.name)
    doc = json.loads((truth / "field0.labelme.json").read_text())
    doc["shapes"] = doc["shapes"][:-1]  # the user deletes a false particle
    (truth / "field0.labelme.json").write_text(json.dumps(doc))
    res = _run(["evaluate", "--pred", str(out), "--gt", str(truth), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    ev = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["overall"]
    assert ev["centre_fp"] == 1 and ev["centre_fn"] == 0
    assert ev["iou_tp"] == 3 * 16 - 1 and ev["mean_matched_iou"] > 0.98, ev


def test_truth_corrected_in_fiji_or_gwyddion_for_evaluate(synthetic_folder, tmp_path):
    """--gt takes analyze's rois/ (ImageJ, the image size from the prediction of the same name)
    or gwy/ (Gwyddion masks) folder, corrected: a deleted particle is a false positive."""
    import gwyfile
    from roifile import roiread, roiwrite

    d, _ = synthetic_folder
    out = tmp_path / "out"
    assert _run(["analyze", str(d), "--out", str(out), "--method", "watershed",
                 "--gwyddion"]).exit_code == 0
    z = out / "rois" / "field1.roi.zip"
    rois = roiread(z)
    z.unlink()
    roiwrite(z, rois[:-1])
    g = out / "gwy" / "field2.gwy"
    obj = gwyfile.load(str(g))
    mask = np.asarray(obj["/0/mask"].data)
    grains, _ = ndi.label(mask > 0.5)
    obj["/0/mask"].data = np.where(grains == 5, 0.0, mask)
    obj.tofile(str(g))
    for truth, fp in (("rois", {"field1": 1}), ("gwy", {"field2": 1})):
        res = _run(["evaluate", "--pred", str(out), "--gt", str(out / truth), "--out", str(tmp_path / truth)])
        assert res.exit_code == 0, res.output
        ev = json.loads((tmp_path / truth / "evaluation.json").read_text())
        got = {r["name"]: r["centre_fp"] for r in ev["per_image"]}
        assert got == {"field0": 0, "field1": 0, "field2": 0, **fp}, got
        assert ev["overall"]["centre_fn"] == 0


def test_gwyddion_file_with_mask_round_trip(synthetic_folder, tmp_path):
    """--gwyddion writes gwy/S.gwy (the levelled map in nm, the particles as its mask); the
    mask edited in Gwyddion is what measure then reads, from the folder or the file."""
    import gwyfile

    d, _ = synthetic_folder
    f = d / "field0.gsf"
    out = tmp_path / "out"
    res = _run(["analyze", str(f), "--out", str(out), "--method", "watershed", "--gwyddion"])
    assert res.exit_code == 0, res.output
    gwy = out / "gwy" / "field0.gwy"
    hm = io.read(gwy)
    assert hm.unit == "nm" and np.allclose(hm.pixel_size, io.read(f).pixel_size)
    assert "gwyddion: true" in (out / "config.yaml").read_text()
    assert "gwy/field0.gwy" in json.loads((out / "field0.summary.json").read_text())["files"].values()
    res = _run(["measure", str(f), "-a", str(out), "--out", str(tmp_path / "same")])
    assert res.exit_code == 0 and "field0.labelme.json" in res.output, res.output  # unedited
    assert len(pd.read_csv(tmp_path / "same" / "particles.csv")) == 16
    obj = gwyfile.load(str(gwy))  # the user unmasks two grains in Gwyddion and saves
    mask = np.asarray(obj["/0/mask"].data)
    grains, n = ndi.label(mask > 0.5)
    assert n == 16
    obj["/0/mask"].data = np.where(np.isin(grains, [3, 7]), 0.0, mask)
    obj.tofile(str(gwy))
    for tag, ann in (("folder", out), ("file", gwy)):
        res = _run(["measure", str(f), "-a", str(ann), "--out", str(tmp_path / tag)])
        assert res.exit_code == 0 and "field0.gwy" in res.output, res.output
        assert len(pd.read_csv(tmp_path / tag / "particles.csv")) == 14
    # a run without --gwyddion in the same folder removes the stale file
    assert _run(["analyze", str(f), "--out", str(out), "--method", "watershed",
                 "--overwrite"]).exit_code == 0
    assert not gwy.exists()


def test_groups_are_compared(tmp_path):
    """Two treatments with different particle sizes: the group table and the tests see it."""
    root = tmp_path / "in"
    for group, seed0 in (("fresh", 0), ("annealed", 10)):
        (root / group).mkdir(parents=True)
        for k in range(2):
            hm, _ = _caps_field(seed0 + k)
            if group == "annealed":  # sintered: the same caps, twice as wide
                from scipy import ndimage as ndi
                hm = HeightMap(ndi.zoom(hm.data, 2, order=1)[:128, :128], pixel_size=(PX, PX))
            io.write(hm, root / group / f"{group}{k}.gsf")
    out = tmp_path / "out"
    res = _run(["analyze", str(root), "--out", str(out), "--method", "watershed",
                "--no-refine", "--group-by-folder"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "groups.csv", index_col="group")
    assert set(table.index) == {"fresh", "annealed"}
    d = table["eq_diameter_nm_mean"]
    assert d["annealed"] > 1.5 * d["fresh"]
    tests = pd.read_csv(out / "group_tests.csv")
    assert tests["mw_p"].iloc[0] < 1e-3
    assert (out / "diameter_by_group.png").is_file()
    # the same grouping from a CSV
    csv = tmp_path / "groups.csv"
    csv.write_text("image,group\n" + "".join(f"{g}{k}.gsf,{g}\n" for g in ("fresh", "annealed")
                                             for k in range(2)))
    out2 = tmp_path / "out2"
    assert _run(["analyze", str(root), "--out", str(out2), "--method", "watershed", "--no-refine",
                 "--groups", str(csv)]).exit_code == 0
    pd.testing.assert_frame_equal(table, pd.read_csv(out2 / "groups.csv", index_col="group"))


def test_all_inputs_bad_still_reports(tmp_path):
    bad = tmp_path / "cut.gsf"
    bad.write_bytes(b"Gwyddion Simple Field 1.0\nXRes = 100\nYRes = 100\n")
    out = tmp_path / "out"
    res = _run(["analyze", str(bad), "--out", str(out), "--method", "threshold"])
    assert res.exit_code == 1
    assert "cut.gsf" in res.output and "Traceback" not in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == [] and len(summary["failed"]) == 1


def test_parallel_workers_give_identical_tables(synthetic_folder, tmp_path):
    d, _ = synthetic_folder
    hm, _ = _caps_field(7)
    io.write(hm, d / "field0.txt")  # same stem as field0.gsf: both kept, named apart
    a, b = tmp_path / "serial", tmp_path / "parallel"
    assert _run(["analyze", str(d), "--out", str(a), "--method", "watershed"]).exit_code == 0
    assert _run(["analyze", str(d), "--out", str(b), "--method", "watershed",
                 "--workers", "2"]).exit_code == 0
    pa, pb = pd.read_csv(a / "particles.csv"), pd.read_csv(b / "particles.csv")
    assert set(pa["image"]) == {"field0_gsf", "field0_txt", "field1", "field2"}
    pd.testing.assert_frame_equal(pa, pb)
    sa = pd.read_csv(a / "summary.csv").drop(columns=["seconds"])
    sb = pd.read_csv(b / "summary.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(sa, sb)


def test_detector_profile_is_reported_and_can_be_forced(synthetic_folder, tmp_path):
    d, truths = synthetic_folder
    out = tmp_path / "out"
    res = _run(["analyze", str(d / "field0.gsf"), "--out", str(out), "--no-refine"])
    assert res.exit_code == 0, res.output
    summary = pd.read_csv(out / "summary.csv")
    row = summary[summary["image"] == "field0"].iloc[0]
    assert row["detector_profile"] == "standard"  # clear caps on a flat substrate: sure enough
    assert int(row["count"]) == len(truths["field0"])
    assert "profile" in res.output and "standard" in res.output  # the notes column (wrapped)
    report = (out / "report.html").read_text()  # the report says which model and profile ran
    assert "detector model" in report and row["detector_model"] in report
    assert "detector profile" in report
    assert "shipped default" in report and "from the file" in report  # unset options say what they mean
    out2 = tmp_path / "out2"
    res = _run(["analyze", str(d / "field0.gsf"), "--out", str(out2), "--no-refine",
                "--profile", "textured"])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(out2 / "summary.csv")["detector_profile"].iloc[0] == "textured"
    res = _run(["analyze", str(d / "field0.gsf"), "--out", str(tmp_path / "o3"), "--profile", "x"])
    assert res.exit_code == 2 and "unknown profile 'x'" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_model_option_picks_a_model_folder(synthetic_folder, tmp_path):
    import shutil

    from particlesnn.model import WEIGHTS_DIR

    d, truths = synthetic_folder
    mine = tmp_path / "my-model"
    shutil.copytree(WEIGHTS_DIR / "default", mine)
    out = tmp_path / "out"
    res = _run(["analyze", str(d / "field1.gsf"), "--out", str(out), "--no-refine",
                "--model", str(mine)])
    assert res.exit_code == 0, res.output
    assert int(pd.read_csv(out / "summary.csv")["count"].iloc[0]) == len(truths["field1"])
    assert str(mine.resolve()) in (out / "config.yaml").read_text()
    res = _run(["analyze", str(d / "field1.gsf"), "--out", str(tmp_path / "o2"), "--model",
                str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no such model folder" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_double_tip_scan_is_flagged_in_the_tables(tmp_path):
    from particlesnn.synth import generate
    from particlesnn.synth.presets import draw

    p = draw("stm-sparse", np.random.default_rng(5), size=384)
    p.particles.coverage = 0.04
    p.tip.double_offset_nm, p.tip.double_dz_nm = (12 * p.pixel_size_nm, 0.0), 0.3
    si = generate(p, 7)
    io.write(si.height, tmp_path / "tip.gsf")
    out = tmp_path / "out"
    res = _run(["analyze", str(tmp_path / "tip.gsf"), "--out", str(out), "--no-refine"])
    assert res.exit_code == 0, res.output
    row = pd.read_csv(out / "summary.csv").iloc[0]
    assert "double tip" in row["warnings"]
    n_true = int(si.labels.max())
    assert abs(int(row["count"]) - n_true) <= max(2, 0.15 * n_true)
    assert "double tip" in json.loads((out / "tip.summary.json").read_text())["warnings"][0]


def test_measure_keeps_edited_particles_standing_up(bumps_and_pit, tmp_path):
    """Five particles beside a deep pit: the tail statistic calls the map dark; the analysis
    (detector check) and the re-measure of its contours (contours above their ring) agree."""
    d = tmp_path / "in"
    d.mkdir()
    io.write(bumps_and_pit(pit_depth=2.0, bumps=1.0), d / "pit.gsf")
    out, back = tmp_path / "out", tmp_path / "back"
    assert _run(["analyze", str(d), "--out", str(out), "--no-refine"]).exit_code == 0
    a = pd.read_csv(out / "particles.csv")
    assert len(a) == 5 and np.allclose(a["height_max_nm"], 1.0, atol=0.1)
    res = _run(["measure", str(d), "--annotations", str(out), "--out", str(back)])
    assert res.exit_code == 0, res.output
    b = pd.read_csv(back / "particles.csv")
    assert len(b) == 5 and np.allclose(b["height_max_nm"], 1.0, atol=0.1)


def test_mixed_scales_are_said_and_not_pooled_in_nm(tmp_path):
    # a calibrated map and the same map as a PNG (no pixel size): the set is pooled in px,
    # the ALL row says why, and it has no density per um^2 (it once borrowed the first
    # image's pixel size for the PNG)
    d = tmp_path / "in"
    d.mkdir()
    hm, _ = _caps_field(1)
    io.write(hm, d / "a_map.gsf")
    io.write(hm, d / "b_plain.png")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["analyze", str(d), "--out", str(out), "--method", "watershed"],
                             env={"COLUMNS": "250"}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "mixed scales: 1 of 2 images have no pixel size" in res.output
    s = pd.read_csv(out / "summary.csv").set_index("image")
    assert s.loc["a_map", "length_unit"] == "nm" and s.loc["a_map", "density_per_um2"] > 0
    assert s.loc["ALL", "length_unit"] == "px" and pd.isna(s.loc["ALL", "density_per_um2"])
    # the PNG given its pixel size: summary.csv shows the scale it was measured with
    res = CliRunner().invoke(app, ["analyze", str(d / "b_plain.png"), "--out", str(tmp_path / "px"),
                                   "--method", "watershed", "--pixel-size", "0.5"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    row = pd.read_csv(tmp_path / "px" / "summary.csv").set_index("image").loc["b_plain"]
    assert row["length_unit"] == "nm" and row["pixel_x_nm"] == 0.5 and row["pixel_y_nm"] == 0.5


def test_refinement_by_default_on_height_maps_only():
    # the half-height outline is the paper's size for topography; on plain images (intensity)
    # it shrank annotated nuclei to 0.82 of their diameter, so it is off there unless asked for
    from particlesnn.pipeline import AnalyzeOptions, analyze_heightmap

    hm, _ = _caps_field(2)
    plain = HeightMap(hm.data, pixel_size=None, unit="a.u.")
    opts = AnalyzeOptions(method="watershed")
    on_map = analyze_heightmap(hm, opts)
    on_plain = analyze_heightmap(plain, opts)
    assert on_map.summary["refined"] and not on_plain.summary["refined"]
    raw = analyze_heightmap(plain, AnalyzeOptions(method="watershed", refine=False))
    assert np.array_equal(on_plain.labels, raw.labels)
    forced = analyze_heightmap(plain, AnalyzeOptions(method="watershed", refine=True))
    assert forced.summary["refined"] and not np.array_equal(forced.labels, raw.labels)


@pytest.mark.parametrize("value, err, text", [
    (4450.3, 22.1, "4450 ± 22"), (190.33, 9.61, "190.3 ± 9.6"), (1441.0, 213.0, "1440 ± 210"),
    (12.345, 0.0123, "12.345 ± 0.012"), (3.2, float("nan"), "3.2"), (3.2, 0.0, "3.2"),
    (22.2, None, "22.2"), (4452.9, None, "4453"),
])
def test_mean_and_sem_are_written_to_the_sem_precision(value, err, text):
    """The terminal table's 'mean d ± SEM': the SEM to two significant figures, the mean to the
    same decimal place (it printed 4.45e+03 ± 22 nm)."""
    from particlesnn.cli.analyze_cmd import value_pm

    assert value_pm(value, err) == text


def test_densities_are_written_without_exponents():
    from particlesnn.cli.analyze_cmd import _plain

    assert [_plain(v) for v in (11630.4, 782.94, 0.2084, 1.5e8, float("nan"))] == \
        ["11630", "782.9", "0.2084", "1.5e+08", "nan"]


def test_the_same_scan_names_in_every_sample_folder(tmp_path):
    """fresh/scan0.gsf and annealed/scan0.gsf (the usual layout for --group-by-folder): each
    image keeps its own outputs and row (folder_stem names; it crashed), groups come from the
    folders or from a CSV naming folder/file; a bare shared name in the CSV is refused."""
    from particlesnn.cli.analyze_cmd import output_names

    root = tmp_path / "in"
    for g, seed0 in (("fresh", 0), ("annealed", 10)):
        (root / g).mkdir(parents=True)
        for k in range(2):
            io.write(_caps_field(seed0 + k)[0], root / g / f"scan{k}.gsf")
    out = tmp_path / "out"
    res = _run(["analyze", str(root), "--out", str(out), "--method", "watershed", "--no-refine",
                "--group-by-folder"])
    assert res.exit_code == 0, res.output
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["image"]) == ["ALL", "annealed_scan0", "annealed_scan1", "fresh_scan0",
                                        "fresh_scan1"]
    assert (out / "fresh_scan0.particles.csv").is_file() and (out / "annealed_scan0.labels.tif").is_file()
    table = pd.read_csv(out / "groups.csv", index_col="group")
    assert table.loc["fresh", "n_images"] == 2 and table.loc["annealed", "n_images"] == 2
    csv = tmp_path / "groups.csv"
    csv.write_text("image,group\n" + "".join(f"{g}/scan{k}.gsf,{g}\n" for g in ("fresh", "annealed")
                                             for k in range(2)))
    res = _run(["analyze", str(root), "--out", str(tmp_path / "out2"), "--method", "watershed",
                "--no-refine", "--groups", str(csv)])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "out2" / "groups.csv")["n_images"].tolist() == [2, 2]
    csv.write_text("image,group\nscan0.gsf,a\nscan1.gsf,b\n")
    res = _run(["analyze", str(root), "--out", str(tmp_path / "out3"), "--method", "watershed",
                "--groups", str(csv)])
    assert res.exit_code == 2 and "names several images" in res.output
    # measure finds each image's annotations by the names analyze gave them
    res = _run(["measure", str(root), "--annotations", str(out), "--out", str(tmp_path / "back")])
    assert res.exit_code == 0, res.output
    back = pd.read_csv(tmp_path / "back" / "summary.csv").set_index("image")["count"]
    assert back.to_dict() == summary.set_index("image")["count"].to_dict()
    # detect writes one label image per input too
    res = _run(["detect", str(root), "--out", str(tmp_path / "det"), "--method", "threshold"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "det").glob("*.labels.tif"))) == 4
    # the naming rule: stems, then stem_ext, then folder_stem, then numbers
    names = output_names([Path("a/x.gsf"), Path("a/x.txt"), Path("a/y.gsf"), Path("b/y.gsf"),
                          Path("c/d/y.gsf"), Path("e/d/y.gsf")])
    assert names[:4] == ["x_gsf", "x_txt", "a_y", "b_y"] and names[4] == "d_y" and names[5] == "d_y_gsf"
    assert len(set(names)) == len(names)


def test_earlier_outputs_inside_an_input_folder_are_not_inputs(tmp_path):
    """analyze DATA/ where DATA/ holds an earlier run's output folder (and detect's label
    images and scores): only the scans are analysed, not the plots, maps and score files; an
    image with one particle (no SEM) prints (it crashed the terminal table)."""
    root = tmp_path / "data"
    root.mkdir()
    io.write(_caps_field(0)[0], root / "scan0.gsf")
    one = np.zeros((64, 64), np.float32)
    one[28:36, 28:36] = 1.0
    io.write(HeightMap(one, pixel_size=(PX, PX)), root / "single.gsf")
    first = _run(["analyze", str(root), "--out", str(root / "results"), "--method", "watershed",
                  "--no-refine"])
    assert first.exit_code == 0, first.output
    assert _run(["detect", str(root / "scan0.gsf"), "--out", str(root / "det"),
                 "--method", "threshold"]).exit_code == 0
    again = _run(["analyze", str(root), "--out", str(tmp_path / "again"), "--method", "watershed",
                  "--no-refine"])
    assert again.exit_code == 0, again.output
    assert sorted(pd.read_csv(tmp_path / "again" / "summary.csv")["image"]) == ["ALL", "scan0", "single"]


def test_evaluate_says_when_predictions_are_refined_outlines(synthetic_folder, tmp_path):
    """analyze refines height maps to the half-height contour: evaluate against footprint
    truth says so (and counts them in evaluation.json); detector outlines get no note."""
    import tifffile

    d, truths = synthetic_folder
    gt = tmp_path / "gt"
    gt.mkdir()
    yy, xx = np.mgrid[0:128, 0:128]
    for name, caps in truths.items():
        lab = np.zeros((128, 128), np.uint16)
        for k, (cx, cy, d_nm) in enumerate(caps, 1):
            lab[(xx - cx) ** 2 + (yy - cy) ** 2 <= (d_nm / 2 / PX) ** 2] = k
        tifffile.imwrite(gt / f"{name}.tif", lab)
    found = {}
    for flag in ("--refine", "--no-refine"):
        out = tmp_path / flag
        assert _run(["analyze", str(d), "--out", str(out), "--method", "watershed", flag]).exit_code == 0
        res = _run(["evaluate", "--pred", str(out), "--gt", str(gt), "--out", str(tmp_path / f"ev{flag}")])
        assert res.exit_code == 0, res.output
        ev = json.loads((tmp_path / f"ev{flag}" / "evaluation.json").read_text())["overall"]
        found[flag] = (ev["refined_predictions"], "refined outlines" in res.output, ev["iou_tp"])
    assert found["--refine"][:2] == (3, True) and found["--no-refine"][:2] == (0, False), found
    assert found["--refine"][2] < found["--no-refine"][2] == 48  # the half-height contour is inside


def test_table_says_why_an_image_has_no_size(tmp_path):
    """One particle, cut by the frame: counted, not sized, and the table says why."""
    yy, xx = np.mgrid[0:96, 0:96].astype(float)
    z = np.random.default_rng(3).normal(0, 0.01, (96, 96))
    z += np.clip(1 - ((xx - 2) ** 2 + (yy - 48) ** 2) / 100, 0, None)  # a cap on the left edge
    io.write(HeightMap(z, pixel_size=(PX, PX), channel="Z"), tmp_path / "edge.gsf")
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "edge.gsf"), "--out", str(tmp_path / "o"),
                                   "--method", "threshold"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "the particle touches the border: not sized" in res.output, res.output


def test_measure_annotations_drawn_on_a_picture_with_an_info_band(tmp_path):
    """COCO outlines drawn on the whole SEM picture (band included) are measured on the
    imaged part that the reader keeps; the density is per imaged area."""
    from PIL import Image

    from particlesnn.export import coco

    rng = np.random.default_rng(1)
    img = (50 + rng.integers(0, 20, (100, 120))).astype(np.uint8)
    lab = np.zeros((100, 120), np.uint16)
    yy, xx = np.mgrid[:100, :120]
    for k, (cy, cx) in enumerate([(20, 20), (25, 70), (50, 100), (60, 40)], 1):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 49
        img[disc], lab[disc] = 200, k
    img[-16:] = 0
    img[-9:-6, 8:70] = 255  # text-coloured bar on the band
    Image.fromarray(img).save(tmp_path / "sem.png")
    coco.write(tmp_path / "ann.json", {"sem.png": lab})
    res = _run(["measure", str(tmp_path / "sem.png"), "--annotations", str(tmp_path / "ann.json"),
                "--out", str(tmp_path / "m"), "--pixel-size", "2"])
    assert res.exit_code == 0, res.output
    summ = pd.read_csv(tmp_path / "m" / "summary.csv")
    assert summ["count"].iloc[0] == 4
    assert summ["density_per_um2"].iloc[0] == pytest.approx(4 / (84 * 120 * 4e-6), rel=1e-6)


def test_folder_text_files_that_are_not_height_maps_are_ignored(tmp_path):
    """A folder of scans holds notes and SEM sidecar files (.txt) beside the maps: they are
    named once and left out (exit 0); a WSxM file cut short is still a failure."""
    d = tmp_path / "scans"
    d.mkdir()
    hm, _ = _caps_field(0, n_side=2, size=64)
    io.write(hm, d / "a.txt")  # WSxM ASCII matrix
    (d / "notes.txt").write_text("sample 3, annealed 500 K, tip changed after scan 2\n")
    (d / "a_sem.txt").write_text("$CM_FORMAT JEOL/SEM\n$$SM_MICRON_BAR 150\n")
    res = _run(["analyze", str(d), "--out", str(tmp_path / "o"), "--method", "threshold"])
    assert res.exit_code == 0, res.output
    assert "ignored 2 text file(s) in the folders that hold no height map" in res.output
    assert list(pd.read_csv(tmp_path / "o" / "summary.csv")["image"]) == ["a", "ALL"]
    text = (d / "a.txt").read_text()
    (d / "b.txt").write_text(text[: len(text) // 2])  # a WSxM header, its matrix cut short
    res = _run(["analyze", str(d), "--out", str(tmp_path / "o2"), "--method", "threshold"])
    assert res.exit_code == 1 and "b.txt" in res.output, res.output


def test_set_density_error_is_never_below_counting(synthetic_folder, tmp_path):
    """Two copies of one map agree exactly (images' SEM 0): the ALL row's density still
    carries the counting error sqrt(N) / area, which the images' spread cannot undercut."""
    import shutil

    d, _ = synthetic_folder
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(d / "field0.gsf", tmp_path / sub / "field0.gsf")
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                                   str(tmp_path / "o"), "--method", "watershed"],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    summ = pd.read_csv(tmp_path / "o" / "summary.csv").set_index("image")
    assert summ.loc["ALL", "density_per_um2_sem"] == 0
    n, area = summ.loc["ALL", "count"], summ.loc["ALL", "image_area_nm2"]
    assert summ.loc["ALL", "density_per_um2_poisson"] == pytest.approx(np.sqrt(n) / area * 1e6)
    row = next(ln for ln in res.output.splitlines() if "ALL" in ln)
    assert "±" in row.split("│")[3], row
