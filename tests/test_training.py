"""A tiny training run lowers the loss; ONNX export matches torch; train without torch."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from particlesnn.training import UNet, export_onnx, predict_torch, train  # noqa: E402
from particlesnn.training.data import random_crop_batch, synth_sample, to_sample  # noqa: E402
from particlesnn.training.synthgen import render_disc_field  # noqa: E402
from particlesnn.training.targets import make_targets  # noqa: E402
from particlesnn.training.train import contact_weights, loss_fn  # noqa: E402


def test_targets_known_disc():
    lab = np.zeros((21, 21), np.int32)
    yy, xx = np.mgrid[0:21, 0:21]
    lab[(yy - 10) ** 2 + (xx - 10) ** 2 <= 36] = 1
    t = make_targets(lab)
    assert t[0].sum() == (lab > 0).sum()
    assert t[1][10, 10] == pytest.approx(1.0) and t[1][0, 0] == 0
    assert t[2][10, 4] == 1 and t[2][10, 10] == 0


def test_contact_weights_mark_where_two_particles_touch_only():
    lab = np.zeros((20, 30), np.int32)
    lab[5:15, 3:10] = 1          # alone
    lab[5:15, 14:20] = 2         # 2 and 3 touch along columns 19 | 20
    lab[5:15, 20:26] = 3
    y = torch.from_numpy(make_targets(lab)[None])
    w = contact_weights(y, 4.0)[0].numpy()
    assert w.min() == 1.0 and w.max() == 5.0
    heavy = w > 1
    cols = np.flatnonzero(heavy.any(axis=0))
    assert cols.min() >= 18 and cols.max() <= 21          # around the contact line only
    assert not heavy[:, :12].any()                         # the lone particle keeps weight 1
    assert heavy[8, 19] and heavy[8, 20]                   # both sides of the contact
    assert (contact_weights(y, 0.0) == 1).all()
    # the weighted loss is the plain one when the weight is 0, and weighs the contact more
    logits = torch.zeros((1, 3, 20, 30))
    plain, _ = loss_fn(logits, y)
    assert float(loss_fn(logits, y, 0.0)[0]) == pytest.approx(float(plain))
    wrong = logits.clone()
    wrong[0, 0, 5:15, 19:21] = -8.0  # background predicted across the contact
    d_plain = float(loss_fn(wrong, y)[0]) - float(plain)
    d_weighted = float(loss_fn(wrong, y, 4.0)[0]) - float(loss_fn(logits, y, 4.0)[0])
    assert d_weighted > 2 * d_plain > 0


def test_loss_decreases_and_onnx_matches(tmp_path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    samples = [to_sample(*render_disc_field(96, 12, 24, seed=i), source="discs") for i in range(2)]
    samples += [synth_sample(i, size=96, p_package=0.0) for i in range(2)]
    x, y = random_crop_batch(samples, rng, 4, 64)
    model = UNet((8, 16, 32, 64))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    losses = []
    for _ in range(12):
        loss, _ = loss_fn(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]
    out = export_onnx(model, tmp_path / "m", thresholds={"prob_thresh": 0.5})
    from particlesnn.model import load_model, predict_maps

    m = load_model(out)
    img = samples[0].image[:72, :80]
    a = predict_maps(m, img, normalised=True)
    b = predict_torch(model, img)
    for k in ("prob", "dist", "boundary"):
        np.testing.assert_allclose(a[k], b[k], atol=1e-4)


def test_train_smoke(tmp_path):
    out = train(None, tmp_path / "run", epochs=1, n_synth=8, synth_size=64, crop=64, batch=4,
                workers=1, p_package=0.0, widths=(8, 16, 32, 64), calibrate_images=2, threads=1)
    for f in ("model.onnx", "config.json", "thresholds.json", "checkpoint.pt", "train.log.json"):
        assert (out / f).is_file()
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ck["state"]["step"] == 2
    # resume with a larger budget continues from step 2
    train(None, tmp_path / "run", epochs=2, n_synth=8, synth_size=64, crop=64, batch=4,
          workers=1, p_package=0.0, widths=(8, 16, 32, 64), resume=True, export=False,
          threads=1)
    assert torch.load(out / "checkpoint.pt", weights_only=False)["state"]["step"] == 4


def test_ema_update_follows_its_formula():
    from particlesnn.training.net import UNet
    from particlesnn.training.train import ema_update

    torch.manual_seed(0)
    a, b = UNet((4, 8, 16, 32)), UNet((4, 8, 16, 32))
    b.enc[0][1].num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    d = ema_update(a, b, 0.999, step=1)
    assert d == pytest.approx(2 / 11)  # early steps: (1 + t) / (10 + t), not 0.999
    for k, v in a.state_dict().items():
        want = (d * before[k] + (1 - d) * b.state_dict()[k]) if v.dtype.is_floating_point \
            else b.state_dict()[k]
        assert torch.allclose(v, want, atol=1e-6), k
    assert ema_update(a, b, 0.9, step=10_000) == 0.9


def test_train_with_ema_exports_the_averaged_weights(tmp_path):
    from particlesnn.training.train import load_checkpoint, load_weights_npz

    kw = dict(n_synth=8, synth_size=64, crop=64, batch=4, workers=1, p_package=0.0,
              widths=(8, 16, 32, 64), threads=1, ema=0.5)
    out = train(None, tmp_path / "run", epochs=1.5, calibrate_images=2, **kw)
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ck["state"]["step"] == 3 and "ema" in ck
    last, avg = ck["model"], ck["ema"]
    key = "head.weight"
    assert not torch.equal(last[key], avg[key])  # averaged, not the last step's
    assert torch.equal(load_checkpoint(out)[0].state_dict()[key], avg[key])
    exported = load_weights_npz(out / "weights.npz").state_dict()[key]
    assert torch.allclose(exported, avg[key])
    assert json.loads((out / "train.log.json").read_text())["ema"] == 0.5
    # resume keeps averaging from the saved average, not from the last weights
    train(None, tmp_path / "run", epochs=2, resume=True, export=False, **kw)
    ck2 = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ck2["state"]["step"] == 4
    d = min(0.5, 5 / 14)
    assert not torch.allclose(ck2["ema"][key], ck2["model"][key])
    assert torch.allclose(ck2["ema"][key], d * avg[key] + (1 - d) * ck2["model"][key], atol=1e-6)


def test_train_pool_first_makes_the_whole_pool_before_training(tmp_path, capsys):
    train(None, tmp_path / "run", epochs=0.3, n_synth=24, synth_size=64, crop=64, batch=4,
          workers=1, p_package=0.0, widths=(8, 16, 32, 64), export=False, threads=1,
          pool_first=True)
    out = capsys.readouterr().out
    assert "24 synthetic images ready" in out and "0 more being generated" in out
    assert "training done: 2 steps" in out


def test_train_command_without_torch(monkeypatch, capsys):
    from typer.testing import CliRunner

    from particlesnn.cli import app

    for name in list(sys.modules):
        if name.startswith("particlesnn.training"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)
    res = CliRunner().invoke(app, ["train", "--out", "x"])
    assert res.exit_code == 1
    assert "pip install particlesnn[train]" in (res.output + capsys.readouterr().err)


def test_coco_and_label_folder_sources(tmp_path):
    import json

    from PIL import Image

    from particlesnn.training.data import load_source

    img = np.zeros((40, 50), np.uint8)
    img[10:20, 10:20] = 200
    Image.fromarray(img).save(tmp_path / "a.png")
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 50, "height": 40}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                             "segmentation": [[10, 10, 20, 10, 20, 20, 10, 20]]}]}
    (tmp_path / "a.json").write_text(json.dumps(coco))
    s = load_source(tmp_path / "a.json", "all")
    assert len(s) == 1 and 80 <= (s[0].targets[0] > 127).sum() <= 121
    # images/ + labels/ folder: every 4th sorted id is validation
    for d in ("images", "labels"):
        (tmp_path / "f" / d).mkdir(parents=True)
    lab = np.zeros((40, 50), np.uint16)
    lab[5:15, 5:15] = 1
    for i in range(5):
        Image.fromarray(img).save(tmp_path / "f" / "images" / f"id{i}.png")
        Image.fromarray(lab).save(tmp_path / "f" / "labels" / f"id{i}.png")
    assert [x.source for x in load_source(tmp_path / "f", "val")] == ["f/id0", "f/id4"]
    assert len(load_source(tmp_path / "f", "train")) == 3


def _labelme(path, shapes, h, w, image_path=None, image_data=None):
    import json

    path.write_text(json.dumps({"version": "5.0", "shapes": shapes, "imagePath": image_path,
                                "imageData": image_data, "imageHeight": h, "imageWidth": w}))


def test_labelme_folder_source_oriented_by_its_contours(tmp_path):
    """A LabelMe folder (analyze's output, corrected in LabelMe) is a training source; dark
    particles (bright-field) are inverted, so the network learns them bright; an image
    embedded as imageData is read; analyze's label TIFFs beside the JSON do not hide it."""
    import base64
    import io

    from PIL import Image

    from particlesnn.training.data import load_source, particles_dark

    img = np.full((40, 50), 200, np.uint8)
    img[10:20, 10:20] = 40  # a dark particle on a bright background
    square = [{"label": "particle", "shape_type": "polygon",
               "points": [[10, 10], [20, 10], [20, 20], [10, 20]]}]
    for i in range(3):
        Image.fromarray(img).save(tmp_path / f"s{i}.image.png")
        _labelme(tmp_path / f"s{i}.labelme.json", square, 40, 50, image_path=f"s{i}.image.png")
        (tmp_path / f"s{i}.labels.tif").write_bytes(b"")  # as analyze writes beside them
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    _labelme(tmp_path / "s3.labelme.json", square, 40, 50, image_path="elsewhere/s3.png",
             image_data=base64.b64encode(buf.getvalue()).decode())
    train, val = load_source(tmp_path, "train"), load_source(tmp_path, "val")
    assert len(train) == 3 and len(val) == 1
    for x in train + val:
        inside = x.targets[0] > 127
        assert 80 <= inside.sum() <= 121
        assert x.image[inside].mean() > x.image[~inside].mean() + 0.2  # inverted: bright now
    lab = np.zeros((40, 50), np.int32)
    lab[10:20, 10:20] = 1
    assert particles_dark(img, lab) and not particles_dark(255 - img, lab)
    # s0's contours then edited in ImageJ (rois/s0.roi.zip, as analyze writes it): a particle
    # added there is learnt, the unedited LabelMe file does not hide it
    from particlesnn.export import imagej, labels as labels_io

    labels_io.write_labels(tmp_path / "s0.labels.tif", lab)
    imagej.write(tmp_path / "rois" / "s0.roi.zip", lab)  # as analyze wrote it
    assert sum(x.targets[0].sum() for x in load_source(tmp_path, "train")) == pytest.approx(
        sum(x.targets[0].sum() for x in train))
    edited = lab.copy()
    edited[25:35, 30:40] = 2
    imagej.write(tmp_path / "rois" / "s0.roi.zip", edited)
    found = [int((x.targets[0] > 127).sum()) for x in load_source(tmp_path, "train") + load_source(tmp_path, "val")]
    assert sorted(found)[-1] > 1.8 * sorted(found)[0], found


def test_bad_training_sources_say_what_is_wrong(tmp_path):
    import json

    from typer.testing import CliRunner

    from particlesnn.cli import app
    from particlesnn.training.data import load_source

    (tmp_path / "c").mkdir()
    json.dump({"images": [{"id": 1, "file_name": "gone.png", "width": 10, "height": 10}],
               "annotations": []}, open(tmp_path / "c" / "x.json", "w"))
    with pytest.raises(ValueError, match="gone.png"):
        load_source(tmp_path / "c" / "x.json", "all")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "model"
    for src, said in ((tmp_path / "missing", "no such file"), (tmp_path / "empty", "not a training data source"),
                      (tmp_path / "c" / "x.json", "gone.png")):
        res = CliRunner().invoke(app, ["train", "--data", str(src), "--out", str(out), "--minutes", "0.01"])
        assert res.exit_code == 2 and said in res.output, res.output
        assert not out.exists()  # nothing trained, nothing written


def test_boxes_become_inscribed_ellipses_small_on_top():
    from particlesnn.training.data import boxes_to_labels

    lab = boxes_to_labels(np.array([[10, 10, 50, 30], [20, 15, 26, 21]]), (64, 64))
    assert lab.max() == 2
    big = (lab > 0).sum()  # both together fill the big ellipse
    assert abs(big - np.pi * 20 * 10) / (np.pi * 20 * 10) < 0.06
    small = (lab == 2).sum()  # the inner box (drawn last) keeps its own ellipse
    assert abs(small - np.pi * 3 * 3) / (np.pi * 9) < 0.5 and small > 0
    assert lab[0, 0] == 0 and lab[20, 30] == 1


def test_yolo_folder_weak_labels_resampled_and_tiled(tmp_path):
    from PIL import Image

    from particlesnn.training.data import YOLO_TARGET_PX, load_source

    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for k in range(4):  # every 4th sorted id (k = 0) is the validation part
        img = (rng.random((300, 300)) * 50).astype(np.uint8)
        lines = []
        for cy, cx in ((60, 60), (150, 200), (240, 90)):
            yy, xx = np.mgrid[0:300, 0:300]
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < 14 ** 2] = 220
            lines.append(f"0 {cx / 300} {cy / 300} {28 / 300} {28 / 300}")
        Image.fromarray(img).save(tmp_path / "images" / f"im{k}.png")
        (tmp_path / "labels" / f"im{k}.txt").write_text("\n".join(lines))
    train = load_source(tmp_path, "train")
    val = load_source(tmp_path, "val")
    assert {s.source.split("@")[0] for s in train} == {f"{tmp_path.name}/im{k}" for k in (1, 2, 3)}
    assert {s.source.split("@")[0] for s in val} == {f"{tmp_path.name}/im0"}
    # 28 px boxes resampled to YOLO_TARGET_PX: 300 px -> 150 px, one tile per image
    s = train[0]
    assert s.image.shape == (150, 150)
    fg = s.targets[0] > 127
    from scipy import ndimage as ndi

    lab, n = ndi.label(fg)
    assert n == 3
    d = np.sqrt(4 * np.bincount(lab.ravel())[1:] / np.pi)
    assert np.allclose(d, YOLO_TARGET_PX, atol=2.5)


def test_parse_presets_and_a_restricted_sample():
    from particlesnn.training.data import SYNTH_PRESETS, parse_presets

    assert parse_presets(None) is None and parse_presets("") is None
    stm = parse_presets("stm")
    assert set(stm) == {k for k in SYNTH_PRESETS if k.startswith("stm-")}
    assert parse_presets("stm-tiny:2,negatives") == {"stm-tiny": 2.0, "negatives": SYNTH_PRESETS["negatives"]}
    for bad in ("nonsense", "stm-tiny:x", "stm-tiny:0"):
        with pytest.raises(ValueError):
            parse_presets(bad)
    # p_package=1: the image comes from the one preset allowed
    s = synth_sample(3, size=64, p_package=1.0, presets={"stm-sparse": 1.0})
    assert s.source == "synth:stm-sparse"


def test_training_never_draws_the_heldout_presets():
    from particlesnn.synth.presets import HELDOUT_PRESETS
    from particlesnn.training.data import SYNTH_PRESETS, parse_presets

    assert set(HELDOUT_PRESETS).isdisjoint(SYNTH_PRESETS)
    with pytest.raises(ValueError, match="held out from training"):
        parse_presets("heldout-flat")


def test_upsample_labels_keeps_shapes_and_areas():
    from particlesnn.training.targets import upsample_labels

    yy, xx = np.mgrid[0:40, 0:40]
    lab = np.zeros((40, 40), np.int32)
    lab[(yy - 15) ** 2 + (xx - 12) ** 2 <= 40] = 1
    lab[(yy - 15) ** 2 + (xx - 24) ** 2 <= 36] = 2      # touches 1
    lab[30, 30] = 3                                     # a one-pixel particle
    up = upsample_labels(lab, 2)
    assert up.shape == (80, 80)
    for k in (1, 2, 3):
        assert abs((up == k).sum() - 4 * (lab == k).sum()) <= 0.05 * 4 * (lab == k).sum()
    # every enlarged pixel keeps the label of the pixel it lies in, except along outlines
    assert (up == np.kron(lab, np.ones((2, 2), np.int32))).mean() > 0.97
    # smooth outline: a disc's enlarged outline is closer to a circle than pixel repetition
    assert (up == 3).sum() == 4 and np.array_equal(upsample_labels(lab, 1), lab)


def _assert_loss_falls(net, xb, yb, steps: int = 20) -> None:
    """20 Adam steps on one batch lower the loss by at least a fifth."""
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss, _ = loss_fn(net(torch.from_numpy(xb)), torch.from_numpy(yb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]


def test_finer_maps_start_as_the_coarse_maps_and_export(tmp_path):
    """out_scale 2: a 1x model's head widened gives its maps enlarged by repetition; the
    model trains on targets twice as fine; ONNX (tiled or not) matches torch, and its
    coarse maps are the fine maps' 2 x 2 block means."""
    from particlesnn.model import block_mean, load_model, predict_maps
    from particlesnn.training.net import widen_head

    torch.manual_seed(0)
    torch.set_num_threads(1)
    coarse = UNet((8, 16, 32, 64)).eval()
    fine = UNet((8, 16, 32, 64), out_scale=2)
    fine.load_state_dict(widen_head(coarse.state_dict(), 2))
    fine.eval()
    x = torch.randn(1, 1, 32, 40)
    with torch.no_grad():
        a, b = coarse(x), fine(x)
    assert b.shape == (1, 3, 64, 80)
    np.testing.assert_allclose(b.numpy(), a.repeat_interleave(2, 2).repeat_interleave(2, 3).numpy(),
                               atol=1e-5)
    rng = np.random.default_rng(0)
    samples = [to_sample(*render_disc_field(96, 12, 24, seed=i), source="discs", scale=2)
               for i in range(2)]
    assert samples[0].scale == 2 and samples[0].targets.shape == (3, 192, 192)
    xb, yb = random_crop_batch(samples, rng, 4, 64)
    assert xb.shape == (4, 1, 64, 64) and yb.shape == (4, 3, 128, 128)
    fine.train()
    _assert_loss_falls(fine, xb, yb)
    m = load_model(export_onnx(fine, tmp_path / "m"))
    assert m.out_scale == 2
    img = np.tile(samples[0].image, (2, 2))[:184, :192]  # multiples of 8: no padding
    whole = predict_maps(m, img, normalised=True)
    tiled = predict_maps(m, img, normalised=True, tile=136, margin=64)
    ref = predict_torch(fine, img)
    for k in ("prob", "dist", "boundary"):
        assert whole[k].shape == (368, 384)
        np.testing.assert_allclose(whole[k], ref[k], atol=1e-4)
        np.testing.assert_allclose(tiled[k], whole[k], atol=1e-4)
    # what inference decodes: per-tile 2 x 2 block means, on the image's grid
    coarse = predict_maps(m, img, normalised=True, tile=136, margin=64, coarse=True)
    for k in ("prob", "dist", "boundary"):
        assert coarse[k].shape == img.shape
        np.testing.assert_allclose(coarse[k], block_mean(whole[k][None], 2)[0], atol=1e-4)
    with pytest.raises(ValueError, match="target scales"):
        random_crop_batch(samples + [to_sample(np.zeros((64, 64)), np.zeros((64, 64)), "x")],
                          np.random.default_rng(1), 16, 32)


def test_fine_first_network_trains_exports_and_reloads(tmp_path):
    """fine_first: the full-resolution level on the input enlarged by 2 gives maps 2x finer;
    it trains, its ONNX export (whole and tiled) matches torch, and weights.npz rebuilds it."""
    from particlesnn.model import load_model, predict_maps
    from particlesnn.training.train import load_weights_npz

    torch.manual_seed(0)
    torch.set_num_threads(1)
    with pytest.raises(ValueError, match="out_scale must be 2"):
        UNet((8, 16, 32, 64), out_scale=1, fine_first=True)
    # from a 1x model: the last transposed convolution gives the old features pixel-repeated
    from particlesnn.errors import InputError
    from particlesnn.training.net import widen_head
    from particlesnn.training.train import load_checkpoint, save_weights_npz

    coarse = UNet((8, 16, 32, 64)).eval()
    start = UNet((8, 16, 32, 64), out_scale=2, fine_first=True).eval()
    start.load_state_dict(widen_head(coarse.state_dict(), 2, fine_first=True))
    y = torch.randn(1, 16, 5, 6)
    with torch.no_grad():
        np.testing.assert_allclose(start.up[-1](y).numpy(), coarse.up[-1](y).repeat_interleave(
            2, 2).repeat_interleave(2, 3).numpy(), atol=1e-6)
    save_weights_npz(coarse, tmp_path / "coarse.npz")
    run = train(None, tmp_path / "ff", epochs=1, n_synth=8, synth_size=64, crop=64, batch=4,
                workers=1, p_package=0.0, finetune=tmp_path / "coarse.npz", fine_first=True,
                export=False, threads=1)
    assert load_checkpoint(run)[0].fine_first
    # resume takes the network from the checkpoint, without the options repeated
    train(None, run, epochs=2, n_synth=8, synth_size=64, crop=64, batch=4, workers=1,
          p_package=0.0, resume=True, export=False, threads=1)
    net, ck = load_checkpoint(run)
    assert net.fine_first and ck["state"]["step"] == 4
    with pytest.raises(InputError, match="resume: this run's network has maps 2x finer"):
        train(None, run, epochs=3, resume=True, out_scale=1, export=False)
    save_weights_npz(UNet((8, 16, 32, 64), out_scale=2), tmp_path / "sub.npz")
    with pytest.raises(InputError, match="only a 1x model"):
        train(None, tmp_path / "x", finetune=tmp_path / "sub.npz", fine_first=True)
    net = UNet((8, 16, 32, 64), out_scale=2, fine_first=True)
    assert net(torch.randn(1, 1, 32, 40)).shape == (1, 3, 64, 80)
    rng = np.random.default_rng(0)
    samples = [to_sample(*render_disc_field(96, 12, 24, seed=i), source="discs", scale=2)
               for i in range(2)]
    xb, yb = random_crop_batch(samples, rng, 4, 64)
    _assert_loss_falls(net, xb, yb)
    net.eval()
    folder = export_onnx(net, tmp_path / "m")
    m = load_model(folder)
    assert m.out_scale == 2 and m.config["fine_first"] is True
    img = np.tile(samples[0].image, (2, 2))[:184, :192]
    whole = predict_maps(m, img, normalised=True)
    tiled = predict_maps(m, img, normalised=True, tile=136, margin=64)
    ref = predict_torch(net, img)
    again = predict_torch(load_weights_npz(folder / "weights.npz"), img)
    for k in ("prob", "dist", "boundary"):
        assert whole[k].shape == (368, 384)
        np.testing.assert_allclose(whole[k], ref[k], atol=1e-4)
        np.testing.assert_allclose(tiled[k], whole[k], atol=1e-4)
        np.testing.assert_allclose(again[k], ref[k], atol=1e-5)


def test_detect_style_folder_with_info_band(tmp_path):
    """S.png + S.labels.tif (the whole file's labels): the reader leaves the info band out,
    and the labels are cut the same way, so image and targets stay aligned."""
    import tifffile
    from PIL import Image

    from particlesnn.training.data import load_source

    img = np.full((96, 128), 60, np.uint8)
    lab = np.zeros((96, 128), np.uint16)
    yy, xx = np.mgrid[:96, :128]
    rng = np.random.default_rng(0)
    img = (img + rng.integers(0, 20, img.shape)).astype(np.uint8)
    for k, (cy, cx) in enumerate([(20, 20), (30, 70), (50, 100), (60, 40)], 1):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 36
        img[disc], lab[disc] = 220, k
    img[-14:] = 0  # the band, with a bar of text-coloured pixels on it
    img[-8:-5, 10:60] = 255
    Image.fromarray(img).save(tmp_path / "s.png")
    tifffile.imwrite(tmp_path / "s.labels.tif", lab)
    (sample,) = load_source(tmp_path, "all")
    assert sample.image.shape == (82, 128)
    assert sample.targets.shape[1:] == (82, 128)
    assert (sample.targets[0] > 127).sum() == (lab[:82] > 0).sum()
