"""Ground-truth readers on tiny hand-made folders, and the real-set split."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from particlesnn import InputError
from particlesnn.evaluate import Boxes, evaluate_pair
from particlesnn.io.groundtruth import (
    detect_format, read_coco, read_groundtruth, read_label_folder, read_labelme_folder,
    read_real_set, read_yolo_folder, real_split,
)


def write_png16(path, arr):
    Image.fromarray(arr.astype(np.uint16)).save(path)


def test_label_folder_png_and_tiff(tmp_path):
    a = np.zeros((20, 30), dtype=np.uint16)
    a[2:5, 2:5] = 1
    a[10:15, 10:20] = 7            # non-consecutive ids are renumbered
    write_png16(tmp_path / "s1.png", a)
    b = np.zeros((16, 16), dtype=np.uint16)
    b[1:3, 1:3] = 1; b[5:9, 5:9] = 2; b[12:14, 12:14] = 3
    tifffile.imwrite(tmp_path / "s2.tif", b)
    gts = read_groundtruth(tmp_path)
    assert sorted(gts) == ["s1", "s2"]
    assert gts["s1"].count == 2 and gts["s2"].count == 3
    assert gts["s1"].labels.max() == 2 and gts["s1"].labels.dtype == np.int32
    assert gts["s1"].shape == (20, 30)


def test_label_folder_with_images_subfolder(tmp_path):
    (tmp_path / "labels").mkdir(); (tmp_path / "images").mkdir()
    a = np.zeros((8, 8), dtype=np.uint16); a[1:4, 1:4] = 1
    write_png16(tmp_path / "labels" / "x.png", a)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "images" / "x.png")
    assert detect_format(tmp_path) == "labels"
    g = read_label_folder(tmp_path)["x"]
    assert g.count == 1 and g.image.name == "x.png"


def test_yolo_folder_crlf_lf_no_final_newline(tmp_path):
    (tmp_path / "images").mkdir(); (tmp_path / "labels").mkdir()
    Image.fromarray(np.zeros((100, 200), np.uint8)).save(tmp_path / "images" / "a.jpg")
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(tmp_path / "images" / "b.png")
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(tmp_path / "images" / "c.png")
    (tmp_path / "labels" / "a.txt").write_bytes(b"0 0.5 0.5 0.1 0.2\r\n0 0.25 0.25 0.05 0.1\r\n")
    (tmp_path / "labels" / "b.txt").write_bytes(b"0 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.1 0.1\n0 0.9 0.9 0.1 0.1")
    gts = read_groundtruth(tmp_path)
    assert detect_format(tmp_path) == "yolo"
    assert [len(gts[k].boxes) for k in "abc"] == [2, 3, 0]
    a = gts["a"].boxes
    assert a.shape == (100, 200)
    np.testing.assert_allclose(a.xyxy[0], [90, 40, 110, 60])     # x0 y0 x1 y1 in px
    # a prediction equal to the first box is a perfect match of that box
    p = np.zeros((100, 200), np.int32); p[40:60, 90:110] = 1
    d = evaluate_pair(p, a, coco=False)
    assert (d["iou_tp"], d["iou_fn"], d["centre_tp"]) == (1, 1, 1)


def test_yolo_labels_folder_stands_for_the_set(tmp_path):
    """``--gt set/labels`` (the folder of .txt files a user points at) reads the YOLO set; a
    folder of .txt files without images beside it says what is missing."""
    (tmp_path / "images").mkdir(); (tmp_path / "labels").mkdir()
    Image.fromarray(np.zeros((40, 80), np.uint8)).save(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    assert detect_format(tmp_path / "labels") == "yolo"
    gts = read_groundtruth(tmp_path / "labels")
    np.testing.assert_allclose(gts["a"].boxes.xyxy, [[30, 10, 50, 30]])
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    with pytest.raises(InputError, match="images/ and labels/"):
        read_groundtruth(alone)


def test_yolo_bad_line(tmp_path):
    (tmp_path / "images").mkdir(); (tmp_path / "labels").mkdir()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5\n")
    with pytest.raises(InputError, match="line 1"):
        read_yolo_folder(tmp_path)


def test_coco_masks_later_wins_and_boxes(tmp_path):
    def poly(x0, y0, x1, y1):
        return [[x0, y0, x1, y0, x1, y1, x0, y1]]
    coco = {
        "images": [{"id": 1, "file_name": "m.png", "width": 40, "height": 30},
                   {"id": 2, "file_name": "sub/b.jpg", "width": 50, "height": 50}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": poly(2, 2, 20, 20), "bbox": [2, 2, 18, 18], "area": 1, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": poly(10, 10, 30, 25), "bbox": [10, 10, 20, 15], "area": 1, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [5, 5, 10, 10], "area": 100, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "particle"}],
    }
    p = tmp_path / "gt.json"
    p.write_text(json.dumps(coco))
    gts = read_groundtruth(p)
    m = gts["m"]
    assert m.count == 2
    assert m.labels[15, 15] == 2                 # overlap: the later annotation wins
    assert m.labels[5, 5] == 1
    b = gts["b"].boxes
    assert isinstance(b, Boxes) and b.xyxy.tolist() == [[5, 5, 15, 15]] and b.shape == (50, 50)
    p.write_text("{not json")
    with pytest.raises(InputError):
        read_coco(p)


def test_labelme_folder(tmp_path):
    doc = {"imageHeight": 20, "imageWidth": 20, "imagePath": "x.png", "shapes": [
        {"label": "p", "shape_type": "polygon", "points": [[2, 2], [8, 2], [8, 8], [2, 8]]},
        {"label": "p", "shape_type": "rectangle", "points": [[12, 12], [17, 16]]},
        {"label": "p", "shape_type": "circle", "points": [[10, 4], [12, 4]]},
    ]}
    (tmp_path / "x.json").write_text(json.dumps(doc))
    assert detect_format(tmp_path) == "labelme"
    g = read_labelme_folder(tmp_path)["x"]
    assert g.count == 3
    assert g.labels[5, 5] == 1 and g.labels[14, 14] == 2 and g.labels[4, 10] == 3
    # the project's one pixel convention (corners at integers, centre inside): the 6 x 6
    # square is 36 px, the 5 x 4 rectangle 20 px (skimage's centre convention gave 49 and 30)
    assert (g.labels == 1).sum() == 36 and (g.labels == 2).sum() == 20


def test_labelme_written_by_analyze_reads_back_as_its_labels(tmp_path):
    """``evaluate`` and training read LabelMe as ``measure`` does: the file ``analyze`` writes
    gives back its label image, so corrected outlines do not grow by half a pixel all round
    (+40 % area for a 5 px particle) when they become truth or training targets."""
    from particlesnn.export import labelme

    yy, xx = np.mgrid[0:40, 0:50]
    lab = np.zeros((40, 50), np.int32)
    for k, (cy, cx, r) in enumerate(((10, 10, 2.5), (25, 30, 6), (8, 40, 4)), start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    labelme.write(tmp_path / "s.labelme.json", lab, "s.image.png", tolerance=0)
    np.testing.assert_array_equal(read_labelme_folder(tmp_path)["s"].labels, lab)


def test_nothing_found(tmp_path):
    with pytest.raises(InputError):
        read_groundtruth(tmp_path)
    with pytest.raises(InputError):
        read_groundtruth(tmp_path / "missing")


def test_real_split_rules():
    s = real_split("stem-dev", ["Cu1", "Pd3", "Ru2", "Pd_silica1"])
    assert s == {"Cu1": "train", "Pd3": "val", "Ru2": "train", "Pd_silica1": "val"}
    with pytest.raises(ValueError):
        real_split("stem-dev", ["Pt1"])
    ids = [f"{i:03d}" for i in range(40)][::-1]
    s = real_split("nuclei-dev", ids)
    assert sum(v == "val" for v in s.values()) == 10
    assert s["000"] == "val" and s["004"] == "val" and s["003"] == "train"


def test_real_sets(real_dir):
    val = read_real_set(real_dir, "stem-dev", "val")
    assert [g.name for g in val] == ["Pd1", "Pd3", "Pd_alumina1", "Pd_silica1", "Pd_silica2",
                                     "Pd_silica3", "Pd_silica4"]
    assert [len(g.boxes) for g in val] == [192, 218, 83, 125, 51, 246, 267]
    assert all(g.image is not None for g in val)
    sp = real_split("nuclei-dev", [p.stem for p in (real_dir / "nuclei-dev" / "labels").glob("*.png")])
    assert len(sp) == 413 and sum(v == "val" for v in sp.values()) == 104
