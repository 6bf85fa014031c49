"""Speed and memory of the neural detector, end to end (file -> label image).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_detect.py [--sizes 512,2048] [--threads 2]
                                                               [--repeat 3] [--model DIR] [--tile PX]

For each size a synthetic STM image (``particlesnn.synth`` preset ``stm-mixed``, or the
built-in field of caps when the generator is missing) is written as a Gwyddion ``.gsf`` file;
then, in a fresh process per size with ``--threads`` intra-op threads, the chain
``io.read -> preprocess.level -> preprocess.orient -> segment.neural.segment_model`` runs
``--repeat`` times after loading the model once and one warm-up run (the first run of an
image size pays onnxruntime's set-up for the new shapes; printed as ``first_run_s``). Printed
per size: seconds per run (median and min; model loading and the warm-up apart), the detection count, the stage split of the last run (read +
level + orient, network over the resampled copies, decode, merge) and the process's peak resident memory
(``ru_maxrss``, everything: Python, numpy, onnxruntime).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def make_file(size: int, folder: Path) -> Path:
    """Write a synthetic ``size`` x ``size`` STM height map (.gsf) and return its path."""
    import numpy as np

    from particlesnn.heightmap import HeightMap
    from particlesnn.io import write

    try:
        from particlesnn.synth import generate

        hm = generate("stm-mixed", 12345, size=size).height
    except ImportError:
        yy, xx = np.mgrid[0:size, 0:size]
        z = np.maximum(0, 1 - (((yy % 32) - 16) ** 2 + ((xx % 32) - 16) ** 2) / 64.0)
        hm = HeightMap(z.astype(np.float32), pixel_size=(0.5, 0.5))
    return write(hm, folder / f"bench_{size}.gsf")


def run_one(path: Path, repeat: int, model_dir: str | None, tile: int | None = None) -> dict:
    """Time the chain on one file in this process; returns the figures as a dict."""
    from particlesnn.io import read
    from particlesnn.model import load_model
    from particlesnn.preprocess import level, orient
    from particlesnn.segment import neural

    t = time.perf_counter()
    model = load_model(model_dir)
    t_load = time.perf_counter() - t
    # the first run of an image size pays onnxruntime's one-off set-up for the new shapes
    t = time.perf_counter()
    hm, _ = orient(level(read(path)), "auto")
    neural.segment_model(hm, model=model, tile=tile)
    t_first = time.perf_counter() - t
    times, count = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        hm, _ = orient(level(read(path)), "auto")
        seg = neural.segment_model(hm, model=model, tile=tile)
        times.append(time.perf_counter() - t)
        count = seg.count
    # stage split (one more run, stages timed apart)
    t0 = time.perf_counter()
    hm, _ = orient(level(read(path)), "auto")
    t1 = time.perf_counter()
    prof = neural.PROFILES[seg.info.get("profile") or "standard"]
    net = neural.profile_model(model, seg.info.get("profile") or "standard", hm.unit == "nm")
    factors = seg.info.get("scales") or [1.0]
    t2 = time.perf_counter()
    maps_list = neural.profile_maps(net, hm.data.astype("float32"), factors, prof["background_sigma"],
                                    tile or neural.default_tile(hm.shape))
    t3 = time.perf_counter()
    cands = neural.decode_profile(maps_list, neural.profile_thresholds(
        net.thresholds, seg.info.get("profile") or "standard", hm.unit == "nm"))
    t4 = time.perf_counter()
    from particlesnn.segment.decode import merge_instances

    merge_instances(cands, hm.shape)
    t5 = time.perf_counter()
    times.sort()
    return {"file": path.name, "shape": list(hm.shape), "model_load_s": round(t_load, 3),
            "first_run_s": round(t_first, 3),
            "median_s": round(times[len(times) // 2], 3), "min_s": round(times[0], 3),
            "count": count, "profile": seg.info.get("profile"), "scales": factors,
            "model": seg.info.get("model"), "tile": tile or "default",
            "stages_s": {"read_level_orient": round(t1 - t0, 3), "network": round(t3 - t2, 3),
                         "decode": round(t4 - t3, 3), "merge": round(t5 - t4, 3)},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="512,2048")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default=None)
    ap.add_argument("--tile", type=int, default=None,
                    help="tile side of the inference, px (default: segment_model's, by image size)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(Path(a.one), a.repeat, a.model, a.tile)))
        return
    env = dict(os.environ, PARTICLESNN_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads),
               OPENBLAS_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               PYTHONPATH=str(ROOT / "src"))
    print(f"threads={a.threads} cpu_count={os.cpu_count()} load_avg={os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in a.sizes.split(",")):
            f = make_file(size, Path(tmp))
            cmd = [sys.executable, __file__, "--one", str(f), "--repeat", str(a.repeat)]
            if a.tile:
                cmd += ["--tile", str(a.tile)]
            if a.model:
                cmd += ["--model", a.model]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{size}x{size}: median {r['median_s']:.3f} s (min {r['min_s']:.3f} s), "
                  f"{r['count']} particles, model {r['model']}, profile {r['profile']} at {r['scales']}, tile {r['tile']}, peak RSS {r['peak_rss_mb']:.0f} MB, "
                  f"model load {r['model_load_s']:.3f} s, first run {r['first_run_s']:.3f} s, stages {r['stages_s']}")
    print(f"load_avg after={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
