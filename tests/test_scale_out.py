"""Scale-out of `particlesnn analyze`: serial, process and Dask runs give the same tables; a
killed run resumes without recomputing or duplicating anything; tiled == untiled."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from particlesnn import HeightMap, io
from particlesnn.cli import app

PX = 0.5  # nm/px
N_IMAGES = 50
ROOT = Path(__file__).resolve().parents[1]
# fast settings: the classic detector, polarity given (the refinement stays on)
FAST = ["--method", "threshold", "--polarity", "bright"]


def _bumps(seed: int, size: int = 64) -> HeightMap:
    """Four Gaussian bumps (sigma 2.5-4 px, 0.8-1.5 nm high) on a tilted, noisy plane."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    z = 0.001 * xx + rng.normal(0, 0.01, (size, size))
    for i in range(2):
        for j in range(2):
            cx = (j + 0.5) * size / 2 + rng.uniform(-3, 3)
            cy = (i + 0.5) * size / 2 + rng.uniform(-3, 3)
            s = rng.uniform(2.5, 4.0)
            z += rng.uniform(0.8, 1.5) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    return HeightMap(z, pixel_size=(PX, PX), channel="Z")


def _folder(root: Path, n: int) -> Path:
    d = root / f"in{n}"
    d.mkdir()
    for k in range(n):
        io.write(_bumps(k), d / f"img{k:02d}.gsf")
    return d


@pytest.fixture(scope="module")
def folder50(tmp_path_factory) -> Path:
    return _folder(tmp_path_factory.mktemp("scale"), N_IMAGES)


@pytest.fixture(scope="module")
def serial50(folder50, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "out"
    res = _run(["analyze", str(folder50), "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path]:
    """12 images and their uninterrupted serial run (the reference of the resume tests)."""
    root = tmp_path_factory.mktemp("small")
    d = _folder(root, 12)
    ref = root / "ref"
    assert _run(["analyze", str(d), "--out", str(ref), *FAST]).exit_code == 0
    return d, ref


def _run(args):
    return CliRunner().invoke(app, args, catch_exceptions=False)


def _events(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "progress.jsonl").read_text().splitlines()]


def _same_tables(a: Path, b: Path) -> None:
    pa_, pb = pd.read_csv(a / "particles.csv"), pd.read_csv(b / "particles.csv")
    pd.testing.assert_frame_equal(pa_, pb)
    pd.testing.assert_frame_equal(pd.read_parquet(a / "particles.parquet"),
                                  pd.read_parquet(b / "particles.parquet"))
    sa = pd.read_csv(a / "summary.csv").drop(columns=["seconds"])
    sb = pd.read_csv(b / "summary.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(sa, sb)


def test_serial_run_is_complete(serial50):
    p = pd.read_csv(serial50 / "particles.csv")
    assert list(dict.fromkeys(p["image"])) == [f"img{k:02d}" for k in range(N_IMAGES)]
    assert len(p) == 4 * N_IMAGES  # four bumps per image, none lost, none doubled
    assert (p["fit_status"] == "ok").mean() > 0.9  # the refinement ran
    ev = _events(serial50)
    assert sorted(e["image"] for e in ev if e.get("status") == "done") == \
        [f"img{k:02d}" for k in range(N_IMAGES)]
    assert {e["pid"] for e in ev if "pid" in e} == {os.getpid()}
    rec = json.loads((serial50 / "img07.summary.json").read_text())
    assert rec["complete"] is True and rec["n_particles"] == 4
    assert all((serial50 / f).is_file() for f in rec["files"].values())
    assert (serial50 / "report.html").stat().st_size > 10_000


def test_processes_give_identical_tables(folder50, serial50, tmp_path):
    out = tmp_path / "proc"
    res = _run(["analyze", str(folder50), "--out", str(out), *FAST, "--workers", "2"])
    assert res.exit_code == 0, res.output
    _same_tables(serial50, out)
    pids = {e["pid"] for e in _events(out) if "pid" in e}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # the work ran in the pool


def test_local_dask_gives_identical_tables(folder50, serial50, tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "dask"
    res = _run(["analyze", str(folder50), "--out", str(out), *FAST, "--workers", "2",
                "--scheduler", "local"])
    assert res.exit_code == 0, res.output
    _same_tables(serial50, out)
    pids = {e["pid"] for e in _events(out) if "pid" in e}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # the work ran on the workers


class _Killed(BaseException):
    """Stands for SIGKILL in the middle of an image (not an Exception: nothing catches it)."""


def test_interrupted_run_resumes_without_recomputing(small, tmp_path, monkeypatch):
    import particlesnn.parallel as par

    d, ref = small
    out = tmp_path / "out"
    real = par.process_image
    calls: list[str] = []
    k = 5

    def dying(task):
        if len(calls) == k:  # the 6th image: half its files are written, then the kill
            Path(task.out, f"{task.name}.particles.csv").write_text("image,label\nhalf,1\n")
            raise _Killed
        calls.append(task.name)
        return real(task)

    monkeypatch.setattr(par, "process_image", dying)
    with pytest.raises(_Killed):
        _run(["analyze", str(d), "--out", str(out), *FAST])
    assert len(list(out.glob("*.summary.json"))) == k
    assert not (out / f"img{k:02d}.summary.json").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.summary.json")}

    # without --resume the folder is refused, not wiped
    assert _run(["analyze", str(d), "--out", str(out), *FAST]).exit_code == 2
    calls.clear()
    monkeypatch.setattr(par, "process_image", lambda t: (calls.append(t.name), real(t))[1])
    res = _run(["analyze", str(d), "--out", str(out), *FAST, "--resume"])
    assert res.exit_code == 0, res.output
    assert calls == [f"img{i:02d}" for i in range(k, 12)]  # only the missing ones
    for name, t in stamps.items():  # the finished images were not touched
        assert (out / name).stat().st_mtime_ns == t
    done = [e["image"] for e in _events(out) if e.get("status") == "done"]
    assert sorted(done) == [f"img{i:02d}" for i in range(12)]  # each computed once
    _same_tables(ref, out)  # no row lost or doubled, the half-written image redone


def test_killed_process_resumes(small, tmp_path):
    """A real SIGKILL of the command-line run, then --resume."""
    d, ref = small
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "particlesnn", "analyze", str(d), "--out",
                             str(out), *FAST], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t0 = time.time()
    while len(list(out.glob("*.summary.json"))) < 3 and proc.poll() is None \
            and time.time() - t0 < 60:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(list(out.glob("*.summary.json")))
    assert 3 <= n_done < 12 and not (out / "summary.csv").exists()
    res = _run(["analyze", str(d), "--out", str(out), *FAST, "--resume"])
    assert res.exit_code == 0, res.output
    resumed = [e for e in _events(out) if e.get("event") == "resume"]
    assert resumed and resumed[-1]["complete"] == n_done and resumed[-1]["todo"] == 12 - n_done
    _same_tables(ref, out)


def test_resume_refuses_other_options(small, tmp_path):
    import shutil

    d, ref = small
    out = tmp_path / "copy"
    shutil.copytree(ref, out)
    res = _run(["analyze", str(d), "--out", str(out), "--method", "watershed",
                "--polarity", "bright", "--resume"])
    assert res.exit_code == 2
    msg = res.output.strip()
    assert msg.startswith("error: config.yaml: --resume") and "method" in msg
    assert "\n" not in msg and "Traceback" not in msg
    assert (out / "img00.summary.json").exists()  # nothing wiped
    # the same options: everything is complete, nothing is recomputed
    n_events = len(_events(out))
    res = _run(["analyze", str(d), "--out", str(out), *FAST, "--resume"])
    assert res.exit_code == 0, res.output
    new = _events(out)[n_events:]
    assert [(e.get("event"), e.get("complete"), e.get("todo")) for e in new] == \
        [("resume", 12, 0)]  # nothing recomputed
    _same_tables(ref, out)


def test_scheduler_needs_dask(folder50, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask were not installed
    res = _run(["analyze", str(folder50), "--out", str(tmp_path / "o"), *FAST,
                "--scheduler", "tcp://127.0.0.1:1"])
    assert res.exit_code == 2
    assert "install particlesnn[dist]" in res.output


def test_bad_scheduler_is_one_line(folder50, tmp_path):
    pytest.importorskip("distributed")
    res = _run(["analyze", str(folder50), "--out", str(tmp_path / "o"), *FAST,
                "--scheduler", "nowhere"])
    assert res.exit_code == 2 and "tcp://" in res.output and "Traceback" not in res.output


def test_tiled_detection_equals_whole_image():
    """The detector in overlapping 256-px tiles (3 x 3 tiles of 128-px cores) == one pass
    over the whole image: same labels, same particle table (refinement and measures too)."""
    from particlesnn.pipeline import AnalyzeOptions, analyze_heightmap
    from particlesnn.synth import generate

    hm = generate("stm-sparse", 1, size=384).height
    opts = AnalyzeOptions(method="model")
    whole = analyze_heightmap(hm, opts)  # 384 px < the default tile (1024): one pass
    tiled = analyze_heightmap(hm, opts, tile=256)
    assert whole.labels.max() >= 10
    np.testing.assert_array_equal(tiled.labels, whole.labels)
    pd.testing.assert_frame_equal(tiled.particles, whole.particles)


def test_banded_territories_equal_whole_image():
    """refine's nearest-particle map computed in bands == computed at once == brute force."""
    from particlesnn.refine import _territories

    rng = np.random.default_rng(0)
    labels = np.zeros((37, 41), np.int32)
    for k in range(1, 9):
        r, c = rng.integers(0, 37), rng.integers(0, 41)
        labels[r:r + 3, c:c + 2] = k
    whole = _territories(labels, band=10_000)
    np.testing.assert_array_equal(_territories(labels, band=5), whole)
    rr, cc = np.nonzero(labels)
    yy, xx = np.mgrid[0:37, 0:41]
    d2 = (yy[..., None] - rr) ** 2 + (xx[..., None] - cc) ** 2
    best = d2.min(axis=-1)
    # every pixel's territory is the label of one of its nearest labelled pixels
    for y in range(37):
        for x in range(41):
            assert whole[y, x] in set(labels[rr, cc][d2[y, x] == best[y, x]])


def test_unexpected_error_fails_one_image_only(tmp_path, monkeypatch):
    """A crash on one image (a bug, lack of memory) is reported for that image, no record is
    written, and the run goes on."""
    import particlesnn.pipeline as pipeline
    from particlesnn.parallel import run_images, tasks_for
    from particlesnn.pipeline import AnalyzeOptions

    d = tmp_path / "in"
    d.mkdir()
    files = []
    for k in range(3):
        files.append(d / f"img{k}.gsf")
        io.write(_bumps(k), files[-1])
    real = pipeline.analyze_file

    def flaky(path, options=None):
        if Path(path).stem == "img1":
            raise MemoryError("8 TB needed")
        return real(path, options)

    monkeypatch.setattr(pipeline, "analyze_file", flaky)
    out = tmp_path / "out"
    out.mkdir()
    opts = AnalyzeOptions(method="threshold", polarity="bright").to_dict()
    recs = list(run_images(tasks_for(files, [f.stem for f in files], out, opts)))
    assert [r["status"] for r in recs] == ["done", "failed", "done"]
    assert recs[1]["problem"] == "unexpected error (MemoryError: 8 TB needed)"
    assert sorted(p.name for p in out.glob("*.summary.json")) == \
        ["img0.summary.json", "img2.summary.json"]
    assert recs[2]["n_particles"] == 4 and recs[2]["index"] == 2
