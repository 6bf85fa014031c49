"""Learning from corrections: corrections persist and export with their geometry; the torch
weights of the shipped model; fine-tuning on a user kind of image improves it measurably
without losing the synthetic benchmark."""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from particlesnn import HeightMap  # noqa: E402
from particlesnn.io import gsf  # noqa: E402
from particlesnn.matching import label_iou  # noqa: E402
from particlesnn.model import WEIGHTS_DIR  # noqa: E402
from particlesnn.model import registry as R  # noqa: E402
from particlesnn.web import create_app, store  # noqa: E402
from particlesnn.web.dataset import export_dataset  # noqa: E402

OPTS = {"method": "threshold", "refine": "false"}


def discs(centres, shape=(64, 64), r=6, h=3.0):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    z = np.zeros(shape)
    for cy, cx in centres:
        z[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = h
    return z


def upload_and_wait(client, tmp_path, name, centres):
    path = tmp_path / name
    gsf.write(path, HeightMap(discs(centres), pixel_size=(2.0, 2.0)))
    r = client.post("/api/sets", files=[("files", (name, path.read_bytes()))], data=OPTS)
    assert r.status_code == 201, r.text
    image_id = r.json()["images"][0]["id"]
    t0 = time.time()
    while client.get(f"/api/images/{image_id}").json()["status"] != "done":
        assert time.time() - t0 < 60
        time.sleep(0.1)
    return image_id


def test_corrections_persist_and_export_with_their_geometry(tmp_path):
    data = tmp_path / "data"
    with TestClient(create_app(data)) as c:
        a = upload_and_wait(c, tmp_path, "a.gsf", [(16, 16), (16, 46), (46, 18), (46, 46)])
        b = upload_and_wait(c, tmp_path, "b.gsf", [(20, 20), (44, 44)])
        u = upload_and_wait(c, tmp_path, "untouched.gsf", [(32, 32)])
        assert c.get("/api/corrections").json()["counts"]["images"] == 0
        r = c.post(f"/api/images/{a}/edits", json={"action": "delete", "labels": [2], "user": "ana"})
        assert r.status_code == 200 and r.json()["count"] == 3
        square = [[50, 2], [60, 2], [60, 12], [50, 12]]
        r = c.post(f"/api/images/{b}/edits", json={"action": "add", "polygon": square, "user": "bo"})
        assert r.status_code == 200 and r.json()["count"] == 3
        r = c.post(f"/api/images/{b}/edits", json={"action": "redraw", "label": 1,
                                                   "polygon": [[12, 12], [30, 12], [30, 28], [12, 28]]})
        assert r.status_code == 200
        # outlines re-imported from a LabelMe file are a correction too (logged as "import")
        lm = c.get(f"/api/images/{b}/download/labelme").content
        r = c.post(f"/api/images/{b}/annotations", files={"file": ("b.json", lm)},
                   data={"user": "bo"})
        assert r.status_code == 200 and r.json()["count"] == 3
        # an edit undone is no correction
        c.post(f"/api/images/{u}/edits", json={"action": "delete", "labels": [1]})
        c.post(f"/api/images/{u}/undo")
    # a new server on the same data folder: the corrections are still there
    with TestClient(create_app(data)) as c:
        corr = c.get("/api/corrections").json()
        assert corr["counts"] == {"images": 2, "particles": 6, "heldout": 1}
        by_name = {im["name"]: im for im in corr["images"]}
        assert by_name["a.gsf"]["edited_by"] == "ana" and by_name["a.gsf"]["edits"] == 1
        assert by_name["b.gsf"]["edits"] == 3
        assert by_name["b.gsf"]["actions"] == ["add", "import", "redraw"]
        zipped = c.get("/api/corrections/dataset.zip")
        assert zipped.status_code == 200
    man = export_dataset(data, tmp_path / "ds")
    assert man["images"] == 2 and man["particles"] == 6
    items = {it["name"]: it for it in R.read_dataset(tmp_path / "ds", "all")}
    for name, image_id in (("images/a.png", a), ("images/b.png", b)):
        folder = store.image_dir(data, image_id)
        with TestClient(create_app(data, start_worker=False)) as c:
            version = c.get(f"/api/images/{image_id}").json()["version"]
        labels, _, _, _ = store.load_version(folder, version)
        got = items[name]
        assert got["pixel_size"] == 2.0
        np.testing.assert_allclose(got["image"], np.load(folder / "levelled.npy"), atol=1e-5)
        pi, ti, iou = label_iou(got["labels"], labels)
        assert len(iou) == labels.max() and np.all(pi == ti)
        assert iou.min() >= 0.98, iou  # polygon export: IoU ~1 per particle
    # the redrawn square of b: 18 x 16 px
    assert (items["images/b.png"]["labels"] == 1).sum() == 18 * 16


def test_dataset_export_cli(tmp_path):
    from typer.testing import CliRunner

    from particlesnn.cli import app

    data = tmp_path / "data"
    with TestClient(create_app(data)) as c:
        for k in range(2):
            i = upload_and_wait(c, tmp_path, f"s{k}.gsf", [(16, 16), (46, 46)])
            c.post(f"/api/images/{i}/edits", json={"action": "delete", "labels": [1]})
            if k == 0:  # one corrected image: it is held out, nothing is left to train on
                r = CliRunner().invoke(app, ["dataset", "export", "--out", str(tmp_path / "one"),
                                             "--data-dir", str(data)])
                assert "1 corrected image (0 for training, 1 held out)" in r.output, r.output
                assert "note: nothing to train on yet: correct at least 2 images" in r.output
    r = CliRunner().invoke(app, ["dataset", "export", "--out", str(tmp_path / "ds"),
                                 "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    assert "2 corrected images (1 for training, 1 held out), 2 particles" in r.output
    assert "nothing to train on" not in r.output
    doc = json.loads((tmp_path / "ds" / "annotations.json").read_text())
    assert len(doc["images"]) == 2 and len(doc["annotations"]) == 2
    r = CliRunner().invoke(app, ["dataset", "export", "--out", str(tmp_path / "x"),
                                 "--data-dir", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "error:" in r.output and "db.sqlite3" in r.output


def test_shipped_weights_npz_matches_onnx():
    """The shipped model's weights.npz is the same network as its model.onnx."""
    pytest.importorskip("torch")
    from particlesnn.model import load_model, predict_maps
    from particlesnn.training.train import load_checkpoint, predict_torch

    assert (WEIGHTS_DIR / "default" / "weights.npz").is_file()
    model, ck = load_checkpoint("default")
    cfg = json.loads((WEIGHTS_DIR / "default" / "config.json").read_text())
    assert list(model.widths) == cfg["widths"]
    img = np.random.default_rng(1).normal(size=(48, 72)).astype(np.float32)
    a = predict_maps(load_model("default"), img, normalised=True)
    b = predict_torch(model, img)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-4)


def small_particle_set(path: Path, n: int = 16, size: int = 160, seed: int = 8_200_000,
                       plain: bool = False) -> dict:
    """A "user" kind of image the shipped model is weak on: STM particles only 1.5-2.2 px
    across (sparse and crowded alternately), levelled and oriented, written as a data set.
    ``plain``: stored as plain images (no pixel size, unit a.u.) instead of height maps."""
    from particlesnn.preprocess import level, orient
    from particlesnn.synth import generate
    from particlesnn.synth import presets as P
    from particlesnn.web.dataset import write_dataset

    items = []
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        p = P.draw("stm-crowded" if i % 2 else "stm-sparse", rng, size=size)
        p.pixel_size_nm = p.particles.diameter_mean_nm / rng.uniform(1.5, 2.2)
        si = generate(p, rng)
        hm, _ = orient(level(si.height), "auto")
        if plain:
            hm = HeightMap(hm.data, pixel_size=None, unit="a.u.")
        items.append({"id": 100000 + i, "name": f"user{i:02d}", "levelled": hm, "labels": si.labels})
    return write_dataset(path, items)


@pytest.mark.slow
def test_finetune_on_corrections_improves_held_out_images(tmp_path):
    """particlesnn train --finetune --from DATASET: better on held-out images of the user's
    kind, not more than the margin worse on the synthetic benchmark, registered and promoted."""
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from particlesnn.cli import app

    # plain images: their parent is the shipped default, which 16 epochs improve (measured
    # 2026-12-03 with the width-16 default: IoU-0.5 F1 0.443 -> 0.455, centre F1 0.445 -> 0.469;
    # 24 epochs gave the same; the width-8 default it replaced gained over 0.03). As height
    # maps they would be analysed by, and fine-tuned from, the height-map model, which 16
    # epochs do not move (IoU-0.5 F1 0.442 -> 0.437, centre F1 0.450 -> 0.450); the registry
    # then rightly keeps the shipped model.
    man = small_particle_set(tmp_path / "ds", plain=True)
    assert man["heldout_images"] == 4
    t0 = time.time()
    r = CliRunner().invoke(app, ["train", "--finetune", "--from", str(tmp_path / "ds"),
                                 "--out", str(tmp_path / "model"), "--epochs", "16",
                                 "--n-synth", "64", "--registry", str(tmp_path / "reg")])
    assert r.exit_code == 0, r.output
    reg = R.Registry(tmp_path / "reg")
    new = reg.list()[-1]
    s, before = new["scores"], new["scores"]["parent"]
    print(f"\nfine-tuning ({time.time() - t0:.0f} s): held-out small-particle images (4 images, "
          f"{s['user']['n_true']} particles): IoU-0.5 F1 {before['user']['iou_f1']:.3f} -> "
          f"{s['user']['iou_f1']:.3f}, centre F1 {before['user']['centre_f1']:.3f} -> "
          f"{s['user']['centre_f1']:.3f}; synthetic benchmark IoU-0.5 F1 "
          f"{before['benchmark']['iou_f1']:.3f} -> {s['benchmark']['iou_f1']:.3f}")
    assert "registered as" in r.output and "held-out corrected images" in r.output
    # better on the user's kind: more particles found (centre rule), and outlines at least as
    # good (the registry promotes only on a higher IoU-0.5 F1)
    assert s["user"]["centre_f1"] >= before["user"]["centre_f1"] + 0.015
    assert s["user"]["iou_f1"] > before["user"]["iou_f1"]
    assert s["benchmark"]["iou_f1"] >= before["benchmark"]["iou_f1"] - R.BENCHMARK_MARGIN
    assert new["status"] == "default" and reg.default_id() == new["id"]
    assert (tmp_path / "model" / "weights.npz").is_file()  # the next run can start from it
    # adapted to plain images: height maps still go to the shipped height-map model
    assert json.loads((tmp_path / "model" / "config.json").read_text())["height_model"] == "height"
    assert new["parameters"]["epochs"] == 16.0 and new["parent"] == "shipped"


def test_train_from_a_missing_data_set_is_a_clear_error(tmp_path):
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from particlesnn.cli import app

    r = CliRunner().invoke(app, ["train", "--finetune", "--from", str(tmp_path / "nothing"),
                                 "--out", str(tmp_path / "m"), "--registry", str(tmp_path / "reg")])
    assert r.exit_code == 2 and "error:" in r.output and "no such data set" in r.output
    assert not (tmp_path / "m").exists()


def test_finetune_start_points(tmp_path):
    """--finetune resolves the shipped name, a model folder, a weights.npz and a checkpoint."""
    pytest.importorskip("torch")
    from particlesnn import InputError
    from particlesnn.training.train import resolve_weights

    assert resolve_weights(None) == WEIGHTS_DIR / "default" / "weights.npz"
    assert resolve_weights("default") == WEIGHTS_DIR / "default" / "weights.npz"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
    assert resolve_weights(tmp_path / "run") == tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(InputError, match="no such checkpoint"):
        resolve_weights(tmp_path / "missing.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither checkpoint.pt nor weights.npz"):
        resolve_weights(tmp_path / "empty")


def test_finetune_starts_from_the_model_that_analysed_the_kind(tmp_path):
    """Without a named start, height-map data sets fine-tune the shipped height-map model (the
    one the analysis ran on them), plain images the default."""
    from particlesnn.heightmap import HeightMap
    from particlesnn.training.finetune import shipped_start
    from particlesnn.web.dataset import write_dataset

    lab = np.zeros((32, 32), np.int32)
    lab[10:16, 10:16] = 1
    img = lab.astype(float)
    nm = [{"id": i, "name": f"h{i}", "labels": lab,
           "levelled": HeightMap(img, pixel_size=(0.5, 0.5), unit="nm")} for i in range(3)]
    plain = [{"id": 10 + i, "name": f"p{i}", "labels": lab,
              "levelled": HeightMap(img, pixel_size=None, unit="a.u.")} for i in range(3)]
    write_dataset(tmp_path / "heights", nm)
    write_dataset(tmp_path / "plain", plain)
    assert shipped_start([tmp_path / "heights"]) == "height"
    assert shipped_start([tmp_path / "plain"]) == "default"
    assert shipped_start([tmp_path / "plain", tmp_path / "heights"]) == "default"  # no majority
