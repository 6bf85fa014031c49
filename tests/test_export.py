"""Exports for editing elsewhere and their re-import, overlay picture, HTML report."""
from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest
from scipy import ndimage as ndi

from particlesnn import HeightMap, InputError
from particlesnn.export import coco, imagej, labelme, labels as labels_io, overlay, report, via

from test_polygons import make_labels, per_particle_iou


@pytest.fixture(scope="module")
def lab30() -> np.ndarray:
    return make_labels()


def assert_faithful(orig: np.ndarray, back: np.ndarray) -> None:
    assert back.shape == orig.shape
    assert back.max() == orig.max() and len(np.unique(back)) == len(np.unique(orig))
    iou = per_particle_iou(orig, back)
    assert iou.min() >= 0.98, f"worst particle {int(np.argmin(iou)) + 1}: IoU {iou.min():.3f}"


# ---------------------------------------------------------------- label TIFF and scores
def test_label_tiff_round_trip_and_limits(tmp_path, lab30):
    p = labels_io.write_labels(tmp_path / "sub" / "lab.tif", lab30)
    import tifffile

    assert tifffile.imread(p).dtype == np.uint16
    np.testing.assert_array_equal(labels_io.read_labels(p), lab30)
    with pytest.raises(InputError, match="65535"):
        labels_io.write_labels(tmp_path / "big.tif", np.array([[0, 70000]]))
    with pytest.raises(InputError):
        labels_io.write_labels(tmp_path / "f.tif", np.zeros((3, 3), float))
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    with pytest.raises(InputError, match="junk.tif"):
        labels_io.read_labels(tmp_path / "junk.tif")


def test_scores_round_trip(tmp_path):
    s = np.array([0.91, 0.5, np.nan, 0.123456789])
    p = labels_io.write_scores(tmp_path / "s.txt", s)
    lines = p.read_text().splitlines()
    assert lines[1] == "1 0.91" and len(lines) == 4  # header + 3 known scores
    back = labels_io.read_scores(p)
    assert back.shape == (4,) and np.isnan(back[2])
    np.testing.assert_allclose(back[[0, 1, 3]], [0.91, 0.5, 0.123457], rtol=1e-6)
    labels_io.write_scores(tmp_path / "d.txt", {3: 0.25})
    np.testing.assert_array_equal(np.isnan(labels_io.read_scores(tmp_path / "d.txt")), [True, True, False])
    (tmp_path / "bad.txt").write_text("1 0.5\n2 zero\n")
    with pytest.raises(InputError, match="line 2"):
        labels_io.read_scores(tmp_path / "bad.txt")


# ---------------------------------------------------------------- LabelMe
def test_labelme_schema_and_round_trip(tmp_path, lab30):
    img = tmp_path / "imgs" / "scan.png"
    overlay.write_heightmap_png(img, np.random.default_rng(0).normal(size=lab30.shape))
    p = labelme.write(tmp_path / "ann" / "scan.json", lab30, img, scores=np.linspace(0.1, 1, 30))
    doc = json.loads(p.read_text())
    # LabelMe's file schema: keys and types
    types = {"version": str, "flags": dict, "shapes": list, "imagePath": str,
             "imageHeight": int, "imageWidth": int}
    for key, t in types.items():
        assert isinstance(doc[key], t), key
    assert doc["imageData"] is None
    assert doc["imagePath"] == "../imgs/scan.png"
    assert (doc["imageHeight"], doc["imageWidth"]) == lab30.shape
    assert len(doc["shapes"]) == 30
    for sh in doc["shapes"]:
        assert sh["label"] == "particle" and sh["shape_type"] == "polygon" and sh["flags"] == {}
        assert isinstance(sh["group_id"], int)
        assert all(isinstance(v, float | int) for pt in sh["points"] for v in pt)
        assert len(sh["points"]) >= 3 and all(len(pt) == 2 for pt in sh["points"])
    assert doc["shapes"][-1]["description"] == "score=1"
    assert_faithful(lab30, labelme.read(p))


def test_labelme_reads_rectangles_circles_and_groups(tmp_path):
    doc = {"version": "5.5.0", "flags": {}, "imagePath": "x.png", "imageData": None,
           "imageHeight": 20, "imageWidth": 30, "shapes": [
               {"label": "p", "points": [[2, 3], [6, 5]], "group_id": 5, "shape_type": "rectangle", "flags": {}},
               {"label": "p", "points": [[20.5, 10.5], [23.5, 10.5]], "group_id": None,
                "shape_type": "circle", "flags": {}},
               {"label": "p", "points": [[10, 10], [13, 10], [13, 12]], "group_id": 2,
                "shape_type": "polygon", "flags": {}},
               {"label": "p", "points": [[10, 15], [12, 15], [12, 17], [10, 17]], "group_id": 2,
                "shape_type": "polygon", "flags": {}},
               {"label": "p", "points": [[1, 1]], "group_id": 9, "shape_type": "point", "flags": {}},
           ]}
    p = tmp_path / "x.json"
    p.write_text(json.dumps(doc))
    lab = labelme.read(p)
    assert lab.shape == (20, 30) and lab.max() == 3
    # group 2 (two polygons merged) first, then group 5 (rectangle 4 x 2 px), then the circle
    assert (lab[3:5, 2:6] == 2).all() and (lab == 2).sum() == 8
    # triangle below y = 10 + 2/3 (x - 10): centres (11.5, 10.5) (12.5, 10.5) (12.5, 11.5)
    # inside, (10.5, 10.5) outside; plus the 2x2 square of the same group
    assert (lab == 1).sum() == 3 + 4 and lab[11, 12] == 1 and lab[10, 10] == 0
    assert abs((lab == 3).sum() - np.pi * 9) < 4 and lab[10, 20] == 3
    p.write_text('{"shapes": 3}')
    with pytest.raises(InputError, match="x.json"):
        labelme.read(p)


# ---------------------------------------------------------------- VIA
def test_via_project_structure_and_round_trip(tmp_path, lab30):
    other = np.zeros((40, 50), int)
    other[5:9, 5:20] = 1
    (tmp_path / "a.png").write_bytes(b"0" * 123)  # only its size matters for the VIA key
    p = via.write(tmp_path / "proj.json", {"a.png": lab30, "b.png": other},
                  scores={"a.png": np.full(30, 0.75)})
    doc = json.loads(p.read_text())
    assert set(doc) >= {"_via_settings", "_via_img_metadata", "_via_attributes"}
    assert set(doc["_via_settings"]) == {"ui", "core", "project"}
    assert set(doc["_via_attributes"]) == {"region", "file"}
    meta = doc["_via_img_metadata"]
    assert set(meta) == {"a.png123", "b.png-1"} and doc["_via_image_id_list"] == list(meta)
    entry = meta["a.png123"]
    assert entry["filename"] == "a.png" and entry["size"] == 123 and len(entry["regions"]) == 30
    reg = entry["regions"][0]
    sa = reg["shape_attributes"]
    assert sa["name"] == "polygon" and len(sa["all_points_x"]) == len(sa["all_points_y"]) >= 3
    assert reg["region_attributes"]["particle_id"] == "1" and reg["region_attributes"]["score"] == "0.75"
    back = via.read(p, shape={"a.png": lab30.shape, "b.png": other.shape})
    assert_faithful(lab30, back["a.png"])
    np.testing.assert_array_equal(back["b.png"], other)


def test_via_plain_export_with_rect_circle_ellipse(tmp_path):
    from PIL import Image

    Image.new("L", (40, 30)).save(tmp_path / "im.png")  # read() learns the size from it
    doc = {"im.png-1": {"filename": "im.png", "size": -1, "file_attributes": {}, "regions": {
        "0": {"shape_attributes": {"name": "rect", "x": 1, "y": 2, "width": 5, "height": 3},
              "region_attributes": {}},
        "1": {"shape_attributes": {"name": "circle", "cx": 20.5, "cy": 15.5, "r": 4},
              "region_attributes": {}},
        "2": {"shape_attributes": {"name": "ellipse", "cx": 30, "cy": 8, "rx": 6, "ry": 2, "theta": 0},
              "region_attributes": {}},
        "3": {"shape_attributes": {"name": "point", "cx": 3, "cy": 3}, "region_attributes": {}},
    }}}
    p = tmp_path / "plain.json"
    p.write_text(json.dumps(doc))
    lab = via.read(p)["im.png"]
    assert lab.shape == (30, 40) and lab.max() == 3
    assert (lab == 1).sum() == 15 and (lab[2:5, 1:6] == 1).all()
    assert abs((lab == 2).sum() - np.pi * 16) < 5
    assert abs((lab == 3).sum() - np.pi * 12) < 5
    with pytest.raises(InputError, match="size"):
        via.read(_moved(p, tmp_path))


def _moved(p, tmp_path):
    """The same VIA file in a folder without the image (size unknown)."""
    q = tmp_path / "elsewhere" / p.name
    q.parent.mkdir()
    q.write_text(p.read_text())
    return q


# ---------------------------------------------------------------- COCO
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2
def test_coco_loads_in_pycocotools_and_round_trips(tmp_path, lab30):
    from pycocotools.coco import COCO

    other = np.zeros((40, 50), int)
    other[10:20, 10:30] = 1
    p = coco.write(tmp_path / "c.json", {"a.png": lab30, "b.png": other},
                   scores={"a.png": np.linspace(0, 1, 30)})
    c = COCO(str(p))
    assert len(c.getImgIds()) == 2 and len(c.getAnnIds()) == 31
    assert [cat["name"] for cat in c.loadCats(c.getCatIds())] == ["particle"]
    sizes = np.bincount(lab30.ravel())
    for ann in c.loadAnns(c.getAnnIds(imgIds=[1])):
        m = c.annToMask(ann)
        assert m.shape == lab30.shape
        assert ann["iscrowd"] == 0 and ann["category_id"] == 1 and 0 <= ann["score"] <= 1
        k = ann["particle_id"]
        assert ann["area"] == sizes[k]
        x, y, w, h = ann["bbox"]
        ys, xs = np.nonzero(lab30 == k)
        assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert "score" not in c.loadAnns(c.getAnnIds(imgIds=[2]))[0]
    back = coco.read(p)
    assert_faithful(lab30, back["a.png"])
    for ann in c.loadAnns(c.getAnnIds(imgIds=[1])):  # read() rasterises exactly as annToMask
        np.testing.assert_array_equal(back["a.png"] == ann["particle_id"], c.annToMask(ann) > 0)
    np.testing.assert_array_equal(back["b.png"], other)
    (tmp_path / "bad.json").write_text('{"images": []}')
    with pytest.raises(InputError, match="bad.json"):
        coco.read(tmp_path / "bad.json")


# ---------------------------------------------------------------- ImageJ
def test_imagej_zip_reads_in_roifile_and_round_trips(tmp_path, lab30):
    from roifile import ROI_TYPE, roiread

    p = imagej.write(tmp_path / "rois.zip", lab30)
    assert zipfile.is_zipfile(p)
    rois = roiread(p)
    assert len(rois) == 30
    assert [r.name for r in rois] == [f"{k:04d}" for k in range(1, 31)]
    assert all(r.roitype == ROI_TYPE.POLYGON for r in rois)
    assert_faithful(lab30, imagej.read(p, lab30.shape))
    with pytest.raises(InputError):
        imagej.write(tmp_path / "none.zip", np.zeros((4, 4), int))
    (tmp_path / "x.zip").write_bytes(b"PK nonsense")
    with pytest.raises(InputError, match="x.zip"):
        imagej.read(tmp_path / "x.zip", (10, 10))


# ---------------------------------------------------------------- Gwyddion
def test_gwyddion_mask_keeps_touching_particles_apart(tmp_path):
    """Three particles in a row touching edge to edge and one alone: four Gwyddion grains
    (4-connected), each particle losing only the pixels it shares an edge with a lower id;
    the channel reads back as the map (nm, nm/px) with our own reader."""
    from particlesnn import HeightMap
    from particlesnn import io as pio
    from particlesnn.export import gwyddion

    lab = np.zeros((30, 40), np.int32)
    lab[5:15, 2:10], lab[5:15, 10:18], lab[8:12, 18:22] = 1, 2, 3  # 1|2|3 touching
    lab[20:27, 25:35] = 4
    lab[15, 9] = 2  # a stray pixel of 2 under 1's pixel (14, 9): it touches 1 too
    mask = gwyddion.grain_mask(lab)
    grains, n = ndi.label(mask)
    assert n == 4
    for k in range(1, 5):  # one grain per particle, holding nearly all its pixels
        assert len(np.unique(grains[(lab == k) & mask])) == 1
    assert (lab == 1).sum() == ((lab == 1) & mask).sum()  # the lowest id keeps every pixel
    assert ((lab == 2) & ~mask).sum() == 10 + 1  # its column at x=10 and the pixel under 1
    assert ((lab == 4) & ~mask).sum() == 0
    z = np.linspace(0, 3, 30 * 40).reshape(30, 40)
    hm = HeightMap(z, pixel_size=(0.25, 0.25))
    p = gwyddion.write(tmp_path / "gwy" / "s.gwy", hm, lab)
    back = gwyddion.read(p, lab.shape)
    assert back.max() == 4 and np.array_equal(back > 0, mask)
    assert np.array_equal(gwyddion.as_read(lab), back)  # what a file of lab reads as
    ch = pio.read(p)
    assert ch.unit == "nm" and np.allclose(ch.data, z) and np.allclose(ch.pixel_size, 0.25)
    with pytest.raises(InputError, match="mask is 40 x 30 px"):
        gwyddion.read(p, (40, 40))
    with pytest.raises(InputError, match="labels are"):
        gwyddion.write(tmp_path / "x.gwy", hm, lab[:-1])
    (tmp_path / "junk.gwy").write_bytes(b"GWYP" + b"\x00" * 7)
    with pytest.raises(InputError, match="junk.gwy"):
        gwyddion.read(tmp_path / "junk.gwy", lab.shape)


def test_edited_copy_found_among_touching_particles(tmp_path):
    """An analyze folder's three copies of one image's contours, with touching particles (the
    Gwyddion mask then reads smaller than the others even unedited): untouched -> the LabelMe
    file; the mask edited -> the mask; it and LabelMe edited differently -> refused."""
    from particlesnn import HeightMap
    from particlesnn.export import gwyddion
    from particlesnn.export.annotations import read_annotations

    lab = np.zeros((40, 50), np.int32)
    lab[5:15, 5:15], lab[5:15, 15:25], lab[25:35, 30:40] = 1, 2, 3  # 1 and 2 touch
    labels_io.write_labels(tmp_path / "s.labels.tif", lab)
    labelme.write(tmp_path / "s.labelme.json", lab, "s.image.png")
    imagej.write(tmp_path / "rois" / "s.roi.zip", lab)
    g = gwyddion.write(tmp_path / "gwy" / "s.gwy", HeightMap(np.zeros(lab.shape), pixel_size=(1, 1)), lab)

    def source():
        return read_annotations(tmp_path, "s.gsf", lab.shape, with_source=True)[1].name

    assert source() == "s.labelme.json"
    one = lab.copy()
    one[one == 3] = 0
    gwyddion.write(g, HeightMap(np.zeros(lab.shape), pixel_size=(1, 1)), one)  # edited in Gwyddion
    labels, src = read_annotations(tmp_path, "s", lab.shape, with_source=True)
    assert src.name == "s.gwy" and labels.max() == 2
    labelme.write(tmp_path / "s.labelme.json", one, "s.image.png")  # and in LabelMe too
    with pytest.raises(InputError, match="labelme and gwyddion were edited"):
        read_annotations(tmp_path, "s", lab.shape)


# ---------------------------------------------------------------- overlay
def _field():
    """200 x 200 px at 5 nm/px (1 µm wide), three dome particles."""
    yy, xx = np.mgrid[:200, :200]
    h = np.zeros((200, 200))
    lab = np.zeros((200, 200), int)
    for k, (cy, cx, r) in enumerate([(50, 50, 20), (120, 140, 25), (150, 40, 12)], start=1):
        d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2
        h = np.maximum(h, 8 * np.sqrt(np.clip(1 - d2, 0, None)))
        lab[d2 < 0.8] = k
    return HeightMap(h, pixel_size=(5.0, 5.0)), lab


def _longest_white_run(rows: np.ndarray) -> int:
    white = (rows == 255).all(axis=-1)
    best = 0
    for line in white:
        run = 0
        for v in line:
            run = run + 1 if v else 0
            best = max(best, run)
    return best


def test_overlay_contours_ids_scale_bar(tmp_path):
    hm, lab = _field()
    p = tmp_path / "ov.png"
    rgb = overlay.render_overlay(hm, lab, p, flagged=[3])
    f = 5  # 200 px -> enlarged x5 to 1000 px
    assert rgb.shape == (1000, 1000, 3) and rgb.dtype == np.uint8
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(p).convert("RGB")), rgb)
    cyan = (rgb == overlay.CONTOUR_RGB).all(-1)
    magenta = (rgb == overlay.FLAGGED_RGB).all(-1)
    # contours of particle 1 lie on its boundary (radius ~0.89*20 px), none at its centre
    ys, xs = np.nonzero(cyan[: 100 * f, : 100 * f])
    rad = np.hypot(ys / f - 50, xs / f - 50)
    assert ys.size > 200 and np.percentile(np.abs(rad - 20 * np.sqrt(0.8)), 90) < 1.5
    assert magenta.sum() > 200 and not magenta[: 100 * f, : 100 * f].any()  # only particle 3
    # ids: white text at particle centres only when ids=True
    no_ids = overlay.render_overlay(hm, lab, ids=False)
    diff = (rgb != no_ids).any(-1)
    for cy, cx in [(50, 50), (120, 140), (150, 40)]:
        assert diff[(cy - 3) * f:(cy + 3) * f, (cx - 3) * f:(cx + 3) * f].any()
    # scale bar: 1 µm wide image -> 200 nm bar = 40 px = 200 output px, bottom right
    assert overlay.nice_length(1000 / 5) == 200
    assert abs(_longest_white_run(rgb[-80:, 500:]) - 200) <= 2
    # no pixel size -> no scale bar
    plain = overlay.render_overlay(hm.data, lab, colorbar=False)
    assert _longest_white_run(plain[-80:, 500:]) < 100


def test_overlay_shows_a_mirrored_map_as_recorded(tmp_path):
    """Dark particles made bright for the detector (polarity "dark") are drawn dark again."""
    from PIL import Image

    from particlesnn.preprocess import orient

    hm, lab = _field()
    recorded = hm.with_data(hm.data.max() - hm.data)  # dark particles on a bright background
    mirrored, used = orient(recorded, "dark")
    assert used == "dark"
    np.testing.assert_allclose(overlay.displayed(mirrored), recorded.data, atol=1e-9)
    np.testing.assert_array_equal(overlay.render_overlay(mirrored, lab, ids=False),
                                  overlay.render_overlay(recorded, lab, ids=False))
    a = overlay.write_heightmap_png(tmp_path / "a.png", mirrored)
    b = overlay.write_heightmap_png(tmp_path / "b.png", recorded)
    np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    # a web upload's stored map keeps the polarity, so the browser shows it as recorded too
    from particlesnn.web import store

    store.save_levelled(tmp_path / "up", mirrored)
    assert store.load_levelled(tmp_path / "up").metadata["polarity"] == "dark"
    np.testing.assert_allclose(overlay.displayed(store.load_levelled(tmp_path / "up")),
                               recorded.data, atol=1e-5)


def test_overlay_crowded_field_skips_ids_and_bad_shape_raises():
    rng = np.random.default_rng(1)
    lab = np.zeros((100, 100), int)
    pts = rng.choice(100 * 100, 450, replace=False)
    lab.ravel()[pts] = np.arange(1, 451)  # 450 one-pixel particles: too crowded for ids
    a = overlay.render_overlay(np.zeros((100, 100)), lab, ids=True)
    b = overlay.render_overlay(np.zeros((100, 100)), lab, ids=False)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError):
        overlay.render_overlay(np.zeros((10, 10)), np.zeros((5, 5), int))


def test_nice_length_steps():
    assert [overlay.nice_length(v) for v in (1, 1.9, 2.5, 7, 19.9, 480, 0)] == [1, 1, 2, 5, 10, 200, 0]


# ---------------------------------------------------------------- HTML report
def test_report_self_contained(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    hm, lab = _field()
    ov = overlay.render_overlay(hm, lab)
    png = overlay.write_heightmap_png(tmp_path / "hm.png", hm)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.hist(np.random.default_rng(0).normal(10, 2, 200), bins=20)
    ax.set_xlabel("diameter (nm)")
    big = pd.DataFrame({"label": np.arange(1, 1001), "diameter (nm)": np.linspace(5, 30, 1000)})
    images = [
        {"name": "scan<1>.sxm", "overlay": ov, "summary": {"count": 3, "mean diameter (nm)": 31.2},
         "particles": [{"label": 1, "diameter (nm)": 40.0}, {"label": 2, "diameter (nm)": 50.5}],
         "notes": ["1 particle cut by the border"]},
        {"name": "scan2.sxm", "overlay": png, "summary": {"count": 1000}, "particles": big},
    ]
    p = report.write_report(tmp_path / "r" / "report.html", images,
                            {"images": 2, "particles": 1003, "method": "model"},
                            {"Diameter histogram": fig, "Height map": png}, max_rows=300)
    plt.close(fig)
    text = p.read_text(encoding="utf-8")
    srcs = re.findall(r'src="([^"]*)"', text)
    assert len(srcs) == 4 and all(s.startswith("data:image/") for s in srcs)
    stripped = re.sub(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+", "", text)
    assert "http" not in stripped and 'src="/' not in text and "<link" not in text
    assert "scan&lt;1&gt;.sxm" in text  # escaped
    assert "Showing the first 300 of 1000 particles" in text
    # rows: set summary 3; per-image table 1 + 2; image 1: summary 2, particles 1 + 2;
    # image 2: summary 1, particles 1 + 300 (truncated)
    assert text.count("<tr>") == 3 + 3 + 2 + 3 + 1 + 301
    assert "table.sortable" in text and "<script>" in text
    with pytest.raises(InputError):
        report.write_report(tmp_path / "x.html", [{"overlay": ov}], {}, {})
