"""Web service JSON API (FastAPI TestClient): upload, jobs, results, edits, downloads, limits.

Images are made here: discs of known size in a numpy array, written as .gsf / .png, analysed
with method "threshold" and no refinement so that the answers are exact.
"""
from __future__ import annotations

import io
import json
import re
import threading
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("sqlalchemy")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from particlesnn import HeightMap
from particlesnn.io import gsf
from particlesnn.web import create_app
from particlesnn.web import edits as edit_ops
from particlesnn.web.db import FAILED, RUNNING, ImageRow, make_sessionmaker

PX = 2.0  # nm/px of the synthetic images
R = 6  # disc radius, px
CENTRES = [(16, 16), (16, 46), (46, 18), (46, 46)]
OPTS = {"method": "threshold", "refine": "false"}


def disc_map(shape=(64, 64), centres=CENTRES, r=R, h=3.0) -> np.ndarray:
    """Flat discs of height ``h`` nm on a zero background."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    z = np.zeros(shape)
    for cy, cx in centres:
        z[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = h
    return z


DISC_AREA_PX = int((disc_map(centres=[(32, 32)]) > 0).sum())  # 113 px for r = 6


def gsf_bytes(tmp_path: Path, name="discs.gsf", **kw) -> bytes:
    path = tmp_path / name
    gsf.write(path, HeightMap(disc_map(**kw), pixel_size=(PX, PX)))
    return path.read_bytes()


def png_bytes(centres=CENTRES, shape=(64, 64), sigma=3.0) -> bytes:
    """8-bit grey PNG of smooth Gaussian bumps (no scale)."""
    from PIL import Image

    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    z = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)) for cy, cx in centres)
    buf = io.BytesIO()
    Image.fromarray((z * 180 + 30).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def client(tmp_path):
    app = create_app(tmp_path / "data", max_file_bytes=200_000, max_request_bytes=2_000_000,
                     max_pixels=200 * 200)
    with TestClient(app) as c:
        yield c


def upload(client, files, **fields):
    data = {**OPTS, **{k: str(v) for k, v in fields.items()}}
    return client.post("/api/sets", files=[("files", f) for f in files], data=data)


def wait_set(client, set_id, timeout=30.0) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        s = client.get(f"/api/sets/{set_id}").json()
        if s["finished"]:
            return s
        time.sleep(0.05)
    raise AssertionError(f"set {set_id} not finished after {timeout} s: {s['counts']}")


@pytest.fixture
def done_image(client, tmp_path):
    """(client, set json, image id) of one analysed 4-disc image."""
    r = upload(client, [("discs.gsf", gsf_bytes(tmp_path))])
    assert r.status_code == 201, r.text
    s = wait_set(client, r.json()["set_id"])
    assert s["counts"]["done"] == 1, s
    return client, s, s["images"][0]["id"]


# ------------------------------------------------------------------------------ analysis
def test_upload_analyse_and_result(done_image):
    client, s, iid = done_image
    assert s["progress"] == 1.0 and s["total"] == 1
    im = client.get(f"/api/images/{iid}").json()
    assert im["status"] == "done" and im["name"] == "discs.gsf"
    assert im["shape"] == [64, 64] and im["pixel_size"] == [PX, PX]
    res = client.get(f"/api/images/{iid}/result").json()
    assert res["count"] == 4 and len(res["polygons"]) == 4
    assert res["summary"]["count"] == 4
    cols = res["table"]["columns"]
    d = np.array([row[cols.index("eq_diameter_nm")] for row in res["table"]["rows"]])
    expected = 2 * np.sqrt(DISC_AREA_PX / np.pi) * PX  # 23.98 nm
    np.testing.assert_allclose(d, expected, rtol=0.02)
    # outlines in px, corner convention: the disc at (row 16, col 16) spans x, y in [10, 23]
    assert all(len(rings) == 1 for rings in res["polygons"].values())
    p = np.array(res["polygons"]["1"][0])
    assert 9.5 <= p[:, 0].min() < 11 and 22 < p[:, 0].max() <= 23.5
    png = client.get(f"/api/images/{iid}/map.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_many_files_joint_stats_csv_zip(client, tmp_path):
    files = [("a.gsf", gsf_bytes(tmp_path)),
             ("b.gsf", gsf_bytes(tmp_path, "b.gsf", centres=CENTRES[:2])),
             ("c.png", png_bytes(centres=CENTRES[:3]))]
    r = upload(client, files)
    assert r.status_code == 201, r.text
    body = r.json()
    assert [i["name"] for i in body["images"]] == ["a.gsf", "b.gsf", "c.png"]
    s = wait_set(client, body["set_id"])
    assert s["counts"]["done"] == 3
    assert [im["summary"]["count"] for im in s["images"]] == [4, 2, 3]
    st = client.get(f"/api/sets/{body['set_id']}/stats").json()
    # the PNG has no scale: the joint statistics fall back to px for every image
    assert st["unit"] == "px" and st["column"] == "eq_diameter_px"
    assert st["note"].startswith("mixed scales: 1 of 3 images have no pixel size")
    assert st["joint"]["count"] == 9 and st["joint"]["n_images"] == 3
    assert [len(x["values"]) for x in st["series"]] == [4, 2, 3]
    d = np.concatenate([x["values"] for x in st["series"][:2]])  # the discs of the GSF files
    np.testing.assert_allclose(d, 2 * np.sqrt(DISC_AREA_PX / np.pi), rtol=0.02)
    csv = client.get(f"/api/sets/{body['set_id']}/particles.csv")
    df = pd.read_csv(io.StringIO(csv.text))
    assert len(df) == 9 and df["image"].tolist().count("b.gsf") == 2
    z = client.get(f"/api/sets/{body['set_id']}/download.zip")
    assert z.status_code == 200
    names = set(zipfile.ZipFile(io.BytesIO(z.content)).namelist())
    for stem in ("a", "b", "c"):
        for end in (".csv", ".png", ".json", "_via.json", "_coco.json", "_labels.tif",
                    "_rois.zip", "_overlay.png"):
            assert f"{stem}/{stem}{end}" in names
    assert {"particles_all.csv", "summary.csv", "status.csv", "options.json", "report.html"} <= names
    summary = pd.read_csv(zipfile.ZipFile(io.BytesIO(z.content)).open("summary.csv"))
    assert summary["image"].tolist() == ["a.gsf", "b.gsf", "c.png", "ALL"]
    assert summary["count"].tolist() == [4, 2, 3, 9]
    assert summary.loc[3, "n_images"] == 3


def test_gwyddion_download_of_a_huge_image_is_refused(done_image, monkeypatch):
    """The Gwyddion file is built in memory (16 bytes per pixel): past the limit the page's
    download says how large it would be and what to use instead, rather than load the server."""
    import particlesnn.web.app as web_app

    client, _, iid = done_image
    monkeypatch.setattr(web_app, "GWY_MAX_PIXELS", 64 * 64 - 1)
    r = client.get(f"/api/images/{iid}/download/gwy")
    assert r.status_code == 413 and "analyze --gwyddion" in r.json()["detail"]
    monkeypatch.setattr(web_app, "GWY_MAX_PIXELS", 64 * 64)
    assert client.get(f"/api/images/{iid}/download/gwy").status_code == 200


def test_detector_profile_can_be_asked_for(client, tmp_path):
    """The image page says height maps stay on the standard profile unless textured is asked
    for: the upload form can ask for it, as analyze --profile does."""
    r = upload(client, [("discs.gsf", gsf_bytes(tmp_path))], method="model", profile="textured")
    assert r.status_code == 201, r.text
    s = wait_set(client, r.json()["set_id"])
    assert s["counts"]["done"] == 1, s
    assert s["images"][0]["summary"]["detector_profile"] == "textured"


def test_zip_of_an_upload_with_one_name_twice(client, tmp_path):
    """scan.gsf from two folders in one upload: the ZIP's tables tell them apart by the names
    of their folders, and each folder's annotation files refer to its own map PNG."""
    r = upload(client, [("scan.gsf", gsf_bytes(tmp_path)),
                        ("scan.gsf", gsf_bytes(tmp_path, "b.gsf", centres=CENTRES[:2]))])
    s = wait_set(client, r.json()["set_id"])
    assert s["counts"]["done"] == 2
    zf = zipfile.ZipFile(io.BytesIO(client.get(f"/api/sets/{s['id']}/download.zip").content))
    summary = pd.read_csv(zf.open("summary.csv"))
    assert summary["image"].tolist() == ["scan.gsf", "scan_2.gsf", "ALL"]
    assert summary["count"].tolist() == [4, 2, 6]
    particles = pd.read_csv(zf.open("particles_all.csv"))
    assert particles["image"].value_counts().to_dict() == {"scan.gsf": 4, "scan_2.gsf": 2}
    assert pd.read_csv(zf.open("status.csv"))["image"].tolist() == ["scan.gsf", "scan_2.gsf"]
    for stem in ("scan", "scan_2"):
        names = set(zf.namelist())
        assert f"{stem}/{stem}.png" in names
        coco = json.loads(zf.read(f"{stem}/{stem}_coco.json"))
        assert [im["file_name"] for im in coco["images"]] == [f"{stem}.png"]
        assert json.loads(zf.read(f"{stem}/{stem}.json"))["imagePath"] == f"{stem}.png"


def test_sem_picture_with_its_sidecar_scale(client):
    """A JEOL/Hitachi SEM picture uploaded with its S.txt: the text file is the picture's
    scale, not a rejected file; a note uploaded alone is still refused."""
    side = b"[SemImageFile]\r\nPixelSize=2.5\r\n"
    r = upload(client, [("sem1.png", png_bytes()), ("sem1.txt", side)])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["rejected"] == [] and body["sidecars"] == [{"file": "sem1.txt", "for": "sem1.png"}]
    s = wait_set(client, body["set_id"])
    assert s["counts"]["done"] == 1
    im = client.get(f"/api/images/{s['images'][0]['id']}").json()
    assert im["pixel_size"] == [2.5, 2.5]
    r = upload(client, [("sem2.png", png_bytes()), ("notes.txt", b"sample 3\n")])
    assert r.status_code == 201 and [x["file"] for x in r.json()["rejected"]] == ["notes.txt"]


def test_outlines_drawn_on_a_picture_with_an_info_band(client, tmp_path):
    """An SEM picture whose info band the reader leaves out: outlines drawn on the whole
    picture in another tool (COCO) are cut to the analysed part on import."""
    from PIL import Image

    from particlesnn.export import coco

    rng = np.random.default_rng(2)
    img = (40 + rng.integers(0, 20, (96, 120))).astype(np.uint8)
    lab = np.zeros((96, 120), np.uint16)
    yy, xx = np.mgrid[:96, :120]
    for k, (cy, cx) in enumerate([(20, 20), (25, 70), (50, 100), (60, 40)], 1):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 36
        img[disc], lab[disc] = 210, k
    img[-14:] = 0
    img[-8:-5, 8:60] = 255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    r = upload(client, [("band.png", buf.getvalue())])
    s = wait_set(client, r.json()["set_id"])
    iid = s["images"][0]["id"]
    assert client.get(f"/api/images/{iid}").json()["shape"] == [82, 120]
    raw = coco.write(tmp_path / "c.json", {"band.png": lab}).read_bytes()
    r = client.post(f"/api/images/{iid}/annotations", files={"file": ("c.json", raw)})
    assert r.status_code == 200 and r.json()["count"] == 4, r.text
    bad = coco.write(tmp_path / "d.json", {"band.png": np.zeros((50, 50), np.uint16) + 1}).read_bytes()
    r = client.post(f"/api/images/{iid}/annotations", files={"file": ("d.json", bad)})
    assert r.status_code == 422 and "82 x 120" in r.text


# ------------------------------------------------------------------------------ bad uploads
def test_bad_uploads(client, tmp_path):
    good = gsf_bytes(tmp_path)
    r = upload(client, [("empty.gsf", b"")])
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    # wrong type: checked by content, whatever the name says
    r = upload(client, [("scan.gsf", b"MZ\x90\x00 this is not an SPM file" * 10)])
    assert r.status_code == 422 and "scan.gsf" in r.json()["detail"]
    r = upload(client, [("picture.png", b"<html><script>alert(1)</script></html>")])
    assert r.status_code == 422
    # corrupt SPM file: a truncated GSF
    r = upload(client, [("cut.gsf", good[: len(good) // 2])])
    assert r.status_code == 422 and "cut.gsf" in r.json()["detail"]
    # too large a file (limit 200 000 bytes)
    r = upload(client, [("huge.gsf", good + b"\0" * 200_000)])
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    # too large a request: refused from Content-Length before reading the body
    r = client.post("/api/sets", content=b"x" * 2_000_001,
                    headers={"content-type": "multipart/form-data; boundary=zz"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    # ... or as soon as a streamed body (no Content-Length) passes the limit
    head = (b'--zz\r\nContent-Disposition: form-data; name="files"; filename="big.gsf"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n")
    chunks = iter([head] + [b"y" * 100_000] * 40 + [b"\r\n--zz--\r\n"])
    r = client.post("/api/sets", content=chunks,
                    headers={"content-type": "multipart/form-data; boundary=zz"})
    assert r.status_code == 413
    # too many pixels (limit 200 x 200)
    big = tmp_path / "big.gsf"
    gsf.write(big, HeightMap(disc_map(shape=(210, 210)), pixel_size=(1, 1)))
    r = upload(client, [("big.gsf", big.read_bytes())])
    assert r.status_code == 413 and "Mpx" in r.json()["detail"]
    # constant image: nothing to detect
    flat = tmp_path / "flat.gsf"
    gsf.write(flat, HeightMap(np.ones((32, 32)), pixel_size=(1, 1)))
    r = upload(client, [("flat.gsf", flat.read_bytes())])
    assert r.status_code == 422 and "constant" in r.json()["detail"]
    # no file, bad options
    assert client.post("/api/sets", data=OPTS).status_code == 422
    r = upload(client, [("a.gsf", good)], method="magic")
    assert r.status_code == 422 and "method" in r.json()["detail"]
    r = upload(client, [("a.gsf", good)], pixel_size="-1")
    assert r.status_code == 422 and "pixel_size" in r.json()["detail"]
    r = upload(client, [("a.gsf", good)], profile="lumpy")
    assert r.status_code == 422 and "profile" in r.json()["detail"]
    # one bad file among good ones: the good ones are taken, the bad one is listed
    r = upload(client, [("a.gsf", good), ("bad.gsf", b"nonsense")])
    assert r.status_code == 201
    assert len(r.json()["images"]) == 1 and r.json()["rejected"][0]["file"] == "bad.gsf"


def test_names_and_ids_cannot_escape(client, tmp_path):
    data_dir = Path(client.app.state.data_dir)
    r = upload(client, [("../../../etc/evil.gsf", gsf_bytes(tmp_path))])
    assert r.status_code == 201
    iid = r.json()["images"][0]["id"]
    assert r.json()["images"][0]["name"] == "evil.gsf"
    assert len(iid) >= 22  # 128 random bits
    stored = sorted(p.relative_to(data_dir) for p in data_dir.rglob("*.gsf"))
    assert stored == [Path("images") / iid / "source.gsf"]
    assert not (tmp_path / "etc").exists()
    set_id = r.json()["set_id"]
    for url in (f"/api/images/{set_id}", "/api/images/..%2F..%2Fdb.sqlite3",
                "/api/images/AAAAAAAAAAAAAAAAAAAAAA", f"/api/sets/{iid}",
                "/api/images/x/download/csv", "/images/nope"):
        assert client.get(url).status_code == 404, url
    assert client.get("/static/../db.sqlite3").status_code == 404


def test_results_wait_for_the_analysis(tmp_path):
    app = create_app(tmp_path / "data", start_worker=False)
    with TestClient(app) as c:
        r = upload(c, [("discs.gsf", gsf_bytes(tmp_path))])
        iid = r.json()["images"][0]["id"]
        assert c.get(f"/api/images/{iid}").json()["status"] == "queued"
        for url in ("result", "map.png", "download/csv"):
            res = c.get(f"/api/images/{iid}/{url}")
            assert res.status_code == 409 and "queued" in res.json()["detail"]
        assert c.get(f"/images/{iid}").status_code == 200  # page shows progress


def test_failed_analysis_is_reported(client, tmp_path, monkeypatch):
    from particlesnn import InputError
    from particlesnn.web import worker

    def broken(path, options):
        if "bad" in str(options.get("channel")):
            raise InputError(path, "no particles can be found in a test")
        raise RuntimeError("out of cheese")

    monkeypatch.setattr(worker, "run_analysis", broken)
    monkeypatch.setattr("particlesnn.web.app.analysis_options", lambda o: o)
    monkeypatch.setattr("particlesnn.io.read", lambda p, channel=None: HeightMap(disc_map()))
    s1 = wait_set(client, upload(client, [("one.gsf", gsf_bytes(tmp_path))], channel="bad").json()["set_id"])
    s2 = wait_set(client, upload(client, [("two.gsf", gsf_bytes(tmp_path))]).json()["set_id"])
    assert s1["images"][0]["status"] == s2["images"][0]["status"] == "failed"
    assert s1["images"][0]["error"] == "one.gsf: no particles can be found in a test"
    assert s2["images"][0]["error"] == "two.gsf: analysis failed (RuntimeError: out of cheese)"
    r = client.get(f"/api/images/{s2['images'][0]['id']}/result")
    assert r.status_code == 409 and "out of cheese" in r.json()["detail"]


# ------------------------------------------------------------------------------ edits
def test_edits_update_counts_log_and_undo(done_image):
    client, _, iid = done_image
    post = lambda body: client.post(f"/api/images/{iid}/edits", json=body)  # noqa: E731
    before = client.get(f"/api/images/{iid}/result").json()["summary"]
    r = post({"action": "delete", "labels": [1], "user": "ana"})
    assert r.status_code == 200 and r.json()["count"] == 3 and r.json()["summary"]["count"] == 3
    # an edited version's summary holds the same measures as the analysis' own
    assert set(r.json()["summary"]) == set(before) and len(before) > 3
    # add a square 10 x 10 px in an empty corner (x, y px, corner convention)
    sq = [[0, 26], [10, 26], [10, 36], [0, 36]]
    r = post({"action": "add", "polygon": sq, "user": "ana"})
    assert r.json()["count"] == 4
    cols = r.json()["table"]["columns"]
    areas = sorted(row[cols.index("area_px2")] for row in r.json()["table"]["rows"])
    assert 100 in areas
    # merge two discs, then split them again along the gap between them (x = 32)
    res = client.get(f"/api/images/{iid}/result").json()
    xs = {int(k): np.mean(np.array(p[0])[:, 0]) for k, p in res["polygons"].items()}
    ys = {int(k): np.mean(np.array(p[0])[:, 1]) for k, p in res["polygons"].items()}
    bottom = sorted((k for k in xs if ys[k] > 40), key=lambda k: xs[k])
    assert len(bottom) == 2
    r = post({"action": "merge", "labels": bottom})
    assert r.json()["count"] == 3
    two = [int(k) for k, rings in r.json()["polygons"].items() if len(rings) == 2]
    assert len(two) == 1  # the merged particle: two separate pieces, two outlines
    merged = two[0]
    r = post({"action": "split", "label": merged, "line": [[32.5, 30], [32.5, 60]]})
    assert r.status_code == 200 and r.json()["count"] == 4
    # redraw: one disc becomes a 6 x 6 square
    r = post({"action": "redraw", "label": 1, "polygon": [[12, 12], [18, 12], [18, 18], [12, 18]]})
    assert r.status_code == 200
    cols = r.json()["table"]["columns"]
    row1 = next(x for x in r.json()["table"]["rows"] if x[cols.index("label")] == 1)
    assert row1[cols.index("area_px2")] == 36
    # refused edits change nothing
    for bad in ({"action": "explode"}, {"action": "delete", "labels": [99]},
                {"action": "split", "label": 2, "line": [[0, 0], [1, 0]]},
                {"action": "add", "polygon": [[1, 1], [2, 2]]}, {"action": "merge", "labels": [2]}):
        r = post(bad)
        assert r.status_code == 422, bad
    assert client.post(f"/api/images/{iid}/edits", content=b"not json").status_code == 422
    # the log: who, when, what
    log = client.get(f"/api/images/{iid}/edits").json()["edits"]
    assert [e["action"] for e in log] == ["delete", "add", "merge", "split", "redraw"]
    assert log[0]["user"] == "ana" and log[0]["count_before"] == 4 and log[0]["count_after"] == 3
    # undo all the way back to the analysis, then nothing is left to undo
    counts = [client.post(f"/api/images/{iid}/undo").json()["count"] for _ in range(5)]
    assert counts == [4, 3, 4, 3, 4]
    r = client.post(f"/api/images/{iid}/undo")
    assert r.status_code == 409
    assert client.get(f"/api/images/{iid}").json()["version"] == 0
    # a new edit after undo starts a new branch; versions are never overwritten
    r = post({"action": "delete", "labels": [2]})
    assert r.json()["version"] == 6


def test_edit_functions_known_answers():
    lab = np.zeros((20, 20), np.int32)
    lab[2:8, 2:8] = 1
    lab[10:18, 10:18] = 2
    sc = np.array([0.5, 0.7])
    out, s = edit_ops.delete(lab, sc, [1])
    assert out.max() == 1 and (out == 1).sum() == 64 and s.tolist() == [0.7]
    out, s = edit_ops.add(lab, sc, [[0, 10], [8, 10], [8, 18], [0, 18]])
    assert (out == 3).sum() == 64 and s.tolist() == [0.5, 0.7, 1.0]
    out, s = edit_ops.add(lab, sc, [[0, 0], [20, 0], [20, 20], [0, 20]])  # never takes a neighbour's pixels
    assert (out == 1).sum() == 36 and (out == 2).sum() == 64 and (out == 3).sum() == 400 - 100
    out, s = edit_ops.merge(lab, sc, [2, 1])
    assert out.max() == 1 and (out == 1).sum() == 100 and s.tolist() == [0.7]
    out, s = edit_ops.split(lab, sc, 2, [[14.5, 9], [14.5, 19]])  # cut column 14
    assert out.max() == 3 and (out == 2).sum() + (out == 3).sum() == 64
    assert sorted([(out == 2).sum(), (out == 3).sum()]) == [24, 40]
    with pytest.raises(ValueError, match="does not cut"):
        edit_ops.split(lab, sc, 1, [[0, 0], [1, 0]])


def test_restart_keeps_results_and_resumes_jobs(tmp_path):
    data = tmp_path / "data"
    app = create_app(data)
    with TestClient(app) as c:
        r = upload(c, [("discs.gsf", gsf_bytes(tmp_path))])
        s = wait_set(c, r.json()["set_id"])
        iid = s["images"][0]["id"]
        c.post(f"/api/images/{iid}/edits", json={"action": "delete", "labels": [1]})
    # queue two more without a worker, then pretend the server died while analysing them
    app = create_app(data, start_worker=False)
    with TestClient(app) as c:
        r = upload(c, [("x.gsf", gsf_bytes(tmp_path)), ("y.gsf", gsf_bytes(tmp_path))])
        ids = [i["id"] for i in r.json()["images"]]
        set2 = r.json()["set_id"]
    sessions = make_sessionmaker(data / "db.sqlite3")
    with sessions() as s:
        for image_id, attempts in zip(ids, (1, 2)):
            row = s.get(ImageRow, image_id)
            row.status, row.attempts = RUNNING, attempts
        s.commit()
    app = create_app(data)
    with TestClient(app) as c:
        res = c.get(f"/api/images/{iid}/result").json()
        assert res["count"] == 3 and res["version"] == 1  # the edit survived
        s2 = wait_set(c, set2)
        status = {im["id"]: im for im in s2["images"]}
        assert status[ids[0]]["status"] == "done"  # resumed
        assert status[ids[0]]["summary"]["count"] == 4
        assert status[ids[1]]["status"] == FAILED  # interrupted twice: not retried
        assert "interrupted" in status[ids[1]]["error"]
        assert c.post(f"/api/images/{iid}/undo").json()["count"] == 4


# ------------------------------------------------------------------------------ downloads
def test_downloads(done_image):
    import tifffile

    client, _, iid = done_image
    get = lambda kind: client.get(f"/api/images/{iid}/download/{kind}")  # noqa: E731
    r = get("csv")
    assert r.status_code == 200 and "discs.csv" in r.headers["content-disposition"]
    assert len(pd.read_csv(io.StringIO(r.text))) == 4
    assert len(pd.read_parquet(io.BytesIO(get("parquet").content))) == 4
    assert len(get("labelme").json()["shapes"]) == 4
    via = get("via").json()
    assert len(next(iter(via["_via_img_metadata"].values()))["regions"]) == 4
    assert len(get("coco").json()["annotations"]) == 4
    lab = tifffile.imread(io.BytesIO(get("labels").content))
    assert lab.shape == (64, 64) and lab.max() == 4
    assert len(zipfile.ZipFile(io.BytesIO(get("imagej").content)).namelist()) == 4
    assert get("overlay").content[:4] == b"\x89PNG"
    assert get("map").content[:4] == b"\x89PNG"
    rep = get("report")
    assert rep.status_code == 200 and "discs.gsf" in rep.text and "<html" in rep.text.lower()
    src = client.get(f"/api/images/{iid}/source")
    assert src.status_code == 200 and src.content[:18] == b"Gwyddion Simple Fi"
    assert get("exe").status_code == 404
    # downloads follow edits
    client.post(f"/api/images/{iid}/edits", json={"action": "delete", "labels": [2, 3]})
    assert len(pd.read_csv(io.StringIO(get("csv").text))) == 2
    assert len(get("labelme").json()["shapes"]) == 2
    # every version stays downloadable (training on corrections needs before and after)
    before = client.get(f"/api/images/{iid}/download/labels?version=0")
    assert tifffile.imread(io.BytesIO(before.content)).max() == 4
    assert client.get(f"/api/images/{iid}/download/csv?version=7").status_code == 404


def test_import_edited_annotations(done_image, tmp_path):
    client, _, iid = done_image
    doc = client.get(f"/api/images/{iid}/download/labelme").json()
    doc["shapes"] = doc["shapes"][:3]  # someone deleted one particle in LabelMe
    up = lambda name, raw: client.post(f"/api/images/{iid}/annotations",  # noqa: E731
                                       files={"file": (name, raw)}, data={"user": "bo"})
    r = up("edited.json", json.dumps(doc).encode())
    assert r.status_code == 200 and r.json()["count"] == 3
    for kind in ("via", "coco"):
        raw = client.get(f"/api/images/{iid}/download/{kind}").content
        r = up(f"{kind}.json", raw)
        assert r.status_code == 200 and r.json()["count"] == 3, kind
    # the ImageJ ROIs the page offers, one ROI deleted in Fiji's ROI Manager
    from roifile import roiread, roiwrite

    zpath = tmp_path / "rois.zip"
    zpath.write_bytes(client.get(f"/api/images/{iid}/download/imagej").content)
    rois = roiread(zpath)
    zpath.unlink()
    roiwrite(zpath, rois[:2])
    r = up("RoiSet.zip", zpath.read_bytes())
    assert r.status_code == 200 and r.json()["count"] == 2, r.text
    roiwrite(zpath.with_suffix(".roi"), rois[0])  # a single ROI file
    assert up("one.roi", zpath.with_suffix(".roi").read_bytes()).json()["count"] == 1
    assert up("bad.zip", b"PK\x03\x04 truncated").status_code == 422
    # the Gwyddion download: the levelled map with the particles as its mask; a grain
    # unmasked in Gwyddion comes back as a particle fewer
    import gwyfile

    g = client.get(f"/api/images/{iid}/download/gwy")
    assert g.status_code == 200 and g.content[:4] == b"GWYP"
    assert '_particles.gwy"' in g.headers["content-disposition"]
    gpath = tmp_path / "mask.gwy"
    gpath.write_bytes(g.content)
    obj = gwyfile.load(str(gpath))
    mask = np.asarray(obj["/0/mask"].data)
    from scipy import ndimage as ndi

    grains, n = ndi.label(mask > 0.5)
    assert n == 1  # the version just loaded: one particle
    obj["/0/mask"].data = np.zeros_like(mask)
    obj.tofile(str(gpath))
    assert up("mask.gwy", gpath.read_bytes()).json()["count"] == 0
    log = client.get(f"/api/images/{iid}/edits").json()["edits"]
    assert [e["action"] for e in log] == ["import"] * 6 and log[0]["user"] == "bo"
    doc["imageHeight"] = 100
    assert up("wrong.json", json.dumps(doc).encode()).status_code == 422
    assert up("junk.json", b"{not json").status_code == 422
    assert up("other.json", b'{"a": 1}').status_code == 422
    assert up("empty.json", b"").status_code == 422


# ------------------------------------------------------------------------------ pages, docs
def test_pages_and_local_docs(done_image):
    client, s, iid = done_image
    for url in ("/", f"/sets/{s['id']}", f"/images/{iid}", "/docs", "/models"):
        r = client.get(url)
        assert r.status_code == 200, url
        # everything served locally: no CDN, no external script, style, image or font
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", r.text), url
        assert "@import" not in r.text and "cdn" not in r.text.lower(), url
    assert "/api/sets" in client.get("/docs").text
    spec = client.get("/openapi.json").json()
    for path in ("/api/sets", "/api/sets/{set_id}", "/api/images/{image_id}/edits",
                 "/api/images/{image_id}/undo", "/api/images/{image_id}/annotations",
                 "/api/images/{image_id}/download/{kind}", "/api/sets/{set_id}/download.zip"):
        assert path in spec["paths"], path
    for asset in ("app.css", "common.js", "hist.js", "upload.js", "set.js", "image.js", "models.js"):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200, asset
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", r.text), asset
    assert client.get("/redoc").status_code == 404


# ------------------------------------------------------------------ learning from corrections
def test_models_api_registry_and_refusals(done_image, tmp_path):
    client, s, iid = done_image
    d = client.get("/api/models").json()
    assert [m["id"] for m in d["models"]] == ["shipped"] and d["default"] == "shipped"
    assert d["training"] is None and d["corrections"] == {"images": 0, "particles": 0, "heldout": 0}
    assert d["rule"]["benchmark_margin"] == 0.02
    # fine-tuning needs corrected images (every 4th is held out)
    r = client.post("/api/models/finetune", json={"minutes": 1})
    assert r.status_code == 422 and "correct at least 2 images" in r.json()["detail"]
    client.post(f"/api/images/{iid}/edits", json={"action": "delete", "labels": [1], "user": "ana"})
    assert client.get("/api/corrections").json()["counts"] == {"images": 1, "particles": 3, "heldout": 1}
    r = client.post("/api/models/finetune", json={"minutes": 1})
    assert r.status_code == 422 and "1 corrected image" in r.json()["detail"]
    for bad in (0, -1, 1000, "soon"):
        r = client.post("/api/models/finetune", json={"minutes": bad})
        assert r.status_code == 422 and "budget" in r.json()["detail"], bad
    # one training at a time
    from particlesnn.web.db import TrainingRow

    sessions = client.app.state.sessions
    with sessions() as ss:
        ss.add(TrainingRow(user="bo", status="running", minutes=10, progress=0.4, phase="training"))
        ss.commit()
    r = client.post("/api/models/finetune", json={"minutes": 1})
    assert r.status_code == 409 and "already running" in r.json()["detail"] and "bo" in r.json()["detail"]
    assert client.get("/api/models").json()["training"]["status"] == "running"
    # a restart marks it failed (interrupted), so a new one can start
    assert client.app.state.trainer.recover() == 1
    assert "interrupted" in client.get("/api/models").json()["training"]["error"]
    # registry actions
    r = client.post("/api/models/m-20990101-000000-abcdef/promote")
    assert r.status_code == 422 and "no model" in r.json()["detail"]
    r = client.post("/api/models/rollback")
    assert r.status_code == 422 and "nothing to roll back" in r.json()["detail"]
    z = client.get("/api/models/shipped/download")
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    names = set(zipfile.ZipFile(io.BytesIO(z.content)).namelist())
    assert {"config.json", "model.onnx", "thresholds.json", "weights.npz", "entry.json"} <= names
    r = client.post("/api/models/import", files={"file": ("lab2.zip", z.content)})
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    assert r.json()["status"] == "imported"
    r = client.post(f"/api/models/{mid}/promote")  # no scores of its own: not automatically
    assert r.status_code == 409
    r = client.post(f"/api/models/{mid}/promote?force=true")  # the user's choice
    assert r.status_code == 200 and client.get("/api/models").json()["default"] == mid
    # the next fine-tuning starts from the model the service now uses, not the shipped one
    trainer, reg = client.app.state.trainer, client.app.state.registry
    cmd, base = trainer.command(tmp_path / "ds", tmp_path / "out", 1.0, tmp_path / "p.json")
    assert base == mid and cmd[cmd.index("--base") + 1] == str(reg.model_dir(mid))
    (reg.model_dir(mid) / "weights.npz").rename(reg.model_dir(mid) / "w.bak")  # ONNX only
    cmd, base = trainer.command(tmp_path / "ds", tmp_path / "out", 1.0, tmp_path / "p.json")
    assert base == "shipped" and "--base" not in cmd
    (reg.model_dir(mid) / "w.bak").rename(reg.model_dir(mid) / "weights.npz")
    r = client.post("/api/models/import", files={"file": ("x.zip", b"not a zip")})
    assert r.status_code == 422 and "not a model file" in r.json()["detail"]
    # the upload form offers the models; a job can name one, an unknown one is refused
    assert mid in client.get("/").text
    r = upload(client, [("discs.gsf", gsf_bytes(tmp_path))], model="m-20990101-000000-abcdef")
    assert r.status_code == 422 and "option model" in r.json()["detail"]
    r = upload(client, [("discs.gsf", gsf_bytes(tmp_path))], model=mid)
    assert r.status_code == 201
    assert client.post("/api/models/rollback").json()["default"] == "shipped"
    cmd, base = client.app.state.trainer.command(tmp_path / "ds", tmp_path / "o", 1.0, tmp_path / "p")
    assert base == "shipped" and "--base" not in cmd


def test_job_runs_with_the_chosen_model(client, tmp_path):
    """method=model with a registered model: the job records which one analysed it."""
    reg = client.app.state.registry
    from particlesnn.model import WEIGHTS_DIR

    e = reg.add(WEIGHTS_DIR / "default", name="copy")
    path = tmp_path / "p.gsf"
    yy, xx = np.mgrid[0:96, 0:96]
    z = sum(2.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
            for cy, cx in [(20, 20), (20, 70), (70, 25), (70, 70), (45, 45)])
    z = z + np.random.default_rng(0).normal(0, 0.05, z.shape)
    gsf.write(path, HeightMap(z, pixel_size=(0.5, 0.5)))
    r = client.post("/api/sets", files=[("files", ("p.gsf", path.read_bytes()))],
                    data={"method": "model", "refine": "false", "model": e["id"]})
    assert r.status_code == 201, r.text
    s = wait_set(client, r.json()["set_id"])
    im = s["images"][0]
    assert im["status"] == "done", im
    assert im["info"]["model_id"] == e["id"] and im["summary"]["count"] == 5
    res = client.get(f"/api/images/{im['id']}/result").json()
    assert set(res["check_first"]) == {"low_score", "refinement"}


def test_check_first_lists_low_scores_and_refinement_changes():
    from particlesnn.web.learning import uncertain_particles

    df = pd.DataFrame({"label": [1, 2, 3, 4, 5], "score": [0.99, 0.86, 0.95, 0.9, 1.0],
                       "fit_area_ratio": [1.05, 0.5, 1.0, 1.3, np.nan],
                       "fit_status": ["ok", "ok", "implausible", "ok", "ok"],
                       "fit_reason": ["", "", "centre outside the window", "", ""]})
    c = uncertain_particles(df, n=3)
    assert [x["label"] for x in c["low_score"]] == [2, 4, 3]
    assert c["low_score"][0]["reason"] == "detector score 0.86"
    assert [x["label"] for x in c["refinement"]] == [3, 2, 4]
    assert c["refinement"][0]["reason"] == "refinement implausible (centre outside the window)"
    assert c["refinement"][1]["reason"] == "refined outline 50 % smaller than detected"
    assert c["refinement"][2]["reason"] == "refined outline 30 % larger than detected"
    same = pd.DataFrame({"label": [1, 2], "score": [1.0, 1.0]})  # hand-drawn / threshold
    assert uncertain_particles(same) == {"low_score": [], "refinement": []}
    # half-height outlines are smaller than footprints by design: only the odd one out is listed
    shrunk = pd.DataFrame({"label": [1, 2, 3, 4, 5], "score": [0.9] * 5,
                           "fit_area_ratio": [0.40, 0.38, 0.36, 0.19, 0.39], "fit_status": ["ok"] * 5})
    c = uncertain_particles(shrunk)
    assert [x["label"] for x in c["refinement"]] == [4]
    assert c["refinement"][0]["reason"] == ("refined outline 81 % smaller than detected "
                                            "(typical here: 62 % smaller)")


def test_concurrent_uploads_are_all_kept(tmp_path):
    """50 clients upload at once through a real server; every upload is stored and queued.

    (The analysis of them all is timed in ``benchmarks/bench_web_upload.py``.)
    """
    import httpx
    import uvicorn

    app = create_app(tmp_path / "data", start_worker=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    t0 = time.time()
    while not server.started and time.time() - t0 < 20:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    raw = gsf_bytes(tmp_path)
    results: list = [None] * 50
    go = threading.Barrier(50)

    shared = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=50))

    def one(i):
        go.wait()
        results[i] = shared.post(f"{base}/api/sets", data=OPTS,
                                 files={"files": (f"scan{i}.gsf", raw)})

    try:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.status_code for r in results] == [201] * 50
        set_ids = {r.json()["set_id"] for r in results}
        assert len(set_ids) == 50
        with httpx.Client(base_url=base, timeout=30) as c:
            sets = [c.get(f"/api/sets/{sid}").json() for sid in set_ids]
        assert sorted(s["images"][0]["name"] for s in sets) == sorted(f"scan{i}.gsf" for i in range(50))
        assert all(s["counts"]["queued"] == 1 for s in sets)
        stored = list((tmp_path / "data" / "images").glob("*/source.gsf"))
        assert len(stored) == 50 and all(p.read_bytes() == raw for p in stored)
    finally:
        shared.close()
        server.should_exit = True
        th.join(10)


def test_serve_command_help():
    from typer.testing import CliRunner

    from particlesnn.cli import app

    r = CliRunner().invoke(app, ["serve", "--help"])
    assert r.exit_code == 0 and "--data" in r.output and "--port" in r.output
