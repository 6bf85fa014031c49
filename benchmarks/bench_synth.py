"""Speed of the synthetic generator (prints figures; not a test).

    PYTHONPATH=src python benchmarks/bench_synth.py [--n 100] [--size 512] [--presets ...]

Prints, per preset, the time to generate N images of SIZE x SIZE px with
``particlesnn.synth.generate`` (in memory, one process), and the time to write a small set to
disk with ``write_dataset`` (height maps, PNG, label TIFF, COCO, CSV).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np

from particlesnn.synth import generate
from particlesnn.synth.dataset import image_rng, write_dataset


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--presets", default="stm-mixed,stm-crowded,haadf,any")
    ap.add_argument("--write-n", type=int, default=20)
    a = ap.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs visible, {platform.processor() or platform.machine()}")
    for name in a.presets.split(","):
        times, counts = [], []
        t0 = time.perf_counter()
        c0 = time.process_time()
        for i in range(a.n):
            t = time.perf_counter()
            si = generate(name, image_rng(0, i), size=a.size)
            times.append(time.perf_counter() - t)
            counts.append(si.count)
        total = time.perf_counter() - t0
        cpu = time.process_time() - c0
        times = np.array(times)
        load = os.getloadavg()[0]
        print(f"{name:16s} {a.n} images {a.size}x{a.size}: {total:6.1f} s wall "
              f"({cpu:.1f} s CPU, load avg {load:.1f}), "
              f"{times.mean():.3f} s/image (median {np.median(times):.3f}, max {times.max():.2f}), "
              f"{np.mean(counts):.0f} particles/image")
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        write_dataset(d, a.write_n, preset="stm-mixed", seed=0, size=a.size)
        dt = time.perf_counter() - t
        print(f"write_dataset stm-mixed {a.write_n} images {a.size}x{a.size} (.txt, .gsf, .png, "
              f".tif, COCO, CSV): {dt:.1f} s, {dt / a.write_n:.3f} s/image")


if __name__ == "__main__":
    main()
