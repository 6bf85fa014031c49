"""Scale-out of ``particlesnn analyze``: images per minute on 1 and 2 processes and on a local
Dask cluster of 2 workers, and the peak memory of one 8192 x 8192 image.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_scale.py [--n512 16] [--n2048 4]
                        [--method model] [--big 8192] [--skip-big] [--keep DIR]

Synthetic STM height maps (``particlesnn.synth`` preset ``stm-sparse``, seeds 0..n-1) are
written as Gwyddion ``.gsf`` files. For each size and mode the per-image tasks run through
``particlesnn.parallel.run_images`` exactly as ``particlesnn analyze`` runs them (analysis and
all per-image files; the pool or cluster start-up is included in the time), then the set
files are built from the per-image files (``write_set_outputs_from_records``, timed apart).
Printed: images per minute of the per-image phase, the scaling efficiency
``rate(N workers) / (N x rate(1 process))``, the mean analysis time of one image inside its
worker (levelling to measures, no reading or writing: it grows when workers share cores or
memory bandwidth), and the set phase's seconds. "1 process" runs with
``PARTICLESNN_THREADS=1`` (the detector on one core, as in each worker). The particle tables
of all modes are checked equal. Then one ``--big`` image is analysed by
``particlesnn analyze`` in a child process: its peak resident memory (``ru_maxrss`` of the child: Python, numpy, onnxruntime) and, in a
second child, the peak RSS of each stage (read, level, detect, refine, measure; sampled every
20 ms with psutil when it is installed).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import machine, markdown_table  # noqa: E402

_STAGES = r'''
import json, sys, threading, time, resource
import psutil
proc = psutil.Process(); peak = [0]; stop = [False]
def sample():
    while not stop[0]:
        peak[0] = max(peak[0], proc.memory_info().rss); time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
from particlesnn import io, measure
from particlesnn.pipeline import AnalyzeOptions, prepare, detector
from particlesnn.refine import refine
from particlesnn.segment import segment
out = {}
def mark(name, t0):
    time.sleep(0.05)
    out[name] = {"seconds": round(time.perf_counter() - t0, 2), "peak_mb": round(peak[0] / 2**20)}
    peak[0] = proc.memory_info().rss
opts = AnalyzeOptions(method=sys.argv[2])
t = time.perf_counter(); hm = io.read(sys.argv[1]); mark("read", t)
t = time.perf_counter(); lev, pol = prepare(hm, opts); mark("level + orient", t)
kw = {"model": detector()} if opts.method == "model" else {}
t = time.perf_counter(); seg = segment(lev, opts.method, **kw); mark("detect", t)
t = time.perf_counter(); labels, fits = refine(lev, seg.labels); mark("refine", t)
t = time.perf_counter(); p = measure.measure(lev, labels, scores=seg.scores, fits=fits)
mark("measure", t)
out["particles"] = int(len(p))
print(json.dumps(out))
'''


def make_images(folder: Path, size: int, n: int) -> list[Path]:
    """n synthetic ``stm-sparse`` height maps of size x size px as .gsf files."""
    from particlesnn import io
    from particlesnn.synth import generate

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(n):
        f = folder / f"s{size}_{k:03d}.gsf"
        if not f.exists():
            io.write(generate("stm-sparse", k, size=size).height, f)
        files.append(f)
    return files


def run_mode(files: list[Path], out: Path, method: str, mode: str, workers: int,
             scheduler: str | None) -> dict:
    """Per-image phase and set phase of one run; returns seconds and the tables' paths."""
    from particlesnn.export.results import write_set_outputs_from_records
    from particlesnn.parallel import run_images, tasks_for
    from particlesnn.pipeline import AnalyzeOptions

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    opts = AnalyzeOptions(method=method).to_dict()
    tasks = tasks_for(files, [f.stem for f in files], out, opts)
    t0 = time.perf_counter()
    recs = sorted(run_images(tasks, mode=mode, workers=workers, scheduler=scheduler),
                  key=lambda r: r["index"])
    t_img = time.perf_counter() - t0
    bad = [r for r in recs if r["status"] != "done"]
    if bad:
        raise RuntimeError(f"failed: {bad[0]}")
    t0 = time.perf_counter()
    write_set_outputs_from_records(recs, out, options=opts)
    t_set = time.perf_counter() - t0
    return {"images_s": t_img, "set_s": t_set, "rate": len(files) / t_img * 60.0,
            "particles": sum(r["n_particles"] for r in recs),
            "per_image_s": sum(r["seconds"] for r in recs) / len(recs)}


def same_tables(a: Path, b: Path) -> bool:
    import pandas as pd

    pa_, pb = pd.read_csv(a / "particles.csv"), pd.read_csv(b / "particles.csv")
    return pa_.equals(pb)


def big_image(work: Path, size: int, method: str) -> dict:
    """Peak RSS of ``particlesnn analyze`` on one size x size image, and per stage."""
    files = make_images(work / f"in{size}", size, 1)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True); "
               "print(r.returncode, time.perf_counter() - t, "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    cmd = [sys.executable, "-c", wrapper, sys.executable, "-m", "particlesnn", "analyze",
           str(files[0]), "--out", str(work / f"out{size}"), "--overwrite", "--method", method]
    rc, secs, rss = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                   check=True).stdout.split()
    res = {"rc": int(rc), "seconds": float(secs), "peak_mb": float(rss)}
    try:
        import psutil  # noqa: F401
    except ImportError:
        return res
    st = subprocess.run([sys.executable, "-c", _STAGES, str(files[0]), method], env=env,
                        capture_output=True, text=True)
    if st.returncode == 0:
        res["stages"] = json.loads(st.stdout.strip().splitlines()[-1])
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n512", type=int, default=16, help="images of 512 x 512 px")
    ap.add_argument("--n2048", type=int, default=4, help="images of 2048 x 2048 px")
    ap.add_argument("--method", default="model")
    ap.add_argument("--big", type=int, default=8192, help="side of the big image, px")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    a = ap.parse_args(argv)

    work = a.keep or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    print(f"# particlesnn analyze scale-out ({machine()})")
    print(f"command: PYTHONPATH=src python benchmarks/bench_scale.py "
          f"{' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"method {a.method}; images: synth preset stm-sparse, .gsf; work folder {work}\n")
    modes = [("1 process", "serial", 1, None), ("2 processes", "processes", 2, None),
             ("Dask local, 2 workers", "dask", 2, "local")]
    rows = []
    for size, n in ((512, a.n512), (2048, a.n2048)):
        if n <= 0:
            continue
        files = make_images(work / f"in{size}", size, n)
        base = None
        ref_out = None
        for label, mode, w, sched in modes:
            out = work / f"out{size}_{mode}"
            os.environ.pop("PARTICLESNN_THREADS", None)
            if mode == "serial":  # 1 process = 1 core: the detector on one thread
                os.environ["PARTICLESNN_THREADS"] = "1"
            r = run_mode(files, out, a.method, mode, w, sched)
            os.environ.pop("PARTICLESNN_THREADS", None)
            if base is None:
                base, ref_out = r["rate"], out
            eff = r["rate"] / (w * base)
            same = "yes" if same_tables(ref_out, out) else "NO"
            rows.append([f"{size}²", str(n), label, f"{r['images_s']:.1f}", f"{r['rate']:.1f}",
                         f"{eff:.2f}", f"{r['per_image_s']:.2f}", f"{r['set_s']:.1f}",
                         str(r["particles"]), same])
            print(" | ".join(rows[-1]), flush=True)
    print()
    print(markdown_table(["size", "images", "mode", "per-image phase (s)", "images/min",
                          "scaling efficiency", "analysis s/image (in its worker)",
                          "set files (s)", "particles", "tables = 1 process"], rows))
    if not a.skip_big:
        r = big_image(work, a.big, a.method)
        print(f"\n{a.big}² image, `particlesnn analyze` (method {a.method}): exit {r['rc']}, "
              f"{r['seconds']:.0f} s, peak RSS {r['peak_mb']:.0f} MB")
        if "stages" in r:
            st = r["stages"]
            print(markdown_table(["stage", "seconds", "peak RSS during the stage (MB)"],
                                 [[k, f"{v['seconds']:.1f}", f"{v['peak_mb']:.0f}"]
                                  for k, v in st.items() if isinstance(v, dict)]))
            print(f"particles: {st.get('particles')}")
    if a.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
