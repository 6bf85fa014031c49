"""Load test of the web service: many clients upload at once, then wait for the analyses.

Starts ``particlesnn serve`` in a subprocess on a free localhost port with a fresh data folder,
makes one synthetic height map (Gaussian particles, .gsf), and lets N client threads upload it
at the same moment (one upload request each). Prints, for the uploads: successes, failures,
latency (median, 95th percentile, max, seconds), wall time and requests/s; then the time until
every image is analysed, and checks that every upload is stored and analysed (none lost).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_web_upload.py [--clients 50] [--size 256]
        [--method threshold] [--workers 1]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from particlesnn import HeightMap
from particlesnn.io import gsf


def make_sample(path: Path, size: int, n: int = 40, seed: int = 0) -> Path:
    """A size x size map (0.5 nm/px) with ``n`` Gaussian particles and noise, as .gsf."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    z = rng.normal(0, 0.05, (size, size))
    for _ in range(n):
        cy, cx = rng.uniform(8, size - 8, 2)
        s = rng.uniform(2.0, 3.5)
        z += 2.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    gsf.write(path, HeightMap(z, pixel_size=(0.5, 0.5)))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50, help="concurrent uploads (default 50)")
    ap.add_argument("--size", type=int, default=256, help="image side, px (default 256)")
    ap.add_argument("--method", default="threshold", help="analysis method (default threshold)")
    ap.add_argument("--workers", type=int, default=1, help="server analysis threads (default 1)")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    sample = make_sample(tmp / "sample.gsf", args.size)
    raw = sample.read_bytes()
    port = free_port()
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    server = subprocess.Popen(
        [sys.executable, "-m", "particlesnn", "serve", "--port", str(port), "--data",
         str(tmp / "data"), "--workers", str(args.workers), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.perf_counter() - t0 > 120:
                print("server did not start:", server.stderr.read().decode()[-2000:])
                return 1
            time.sleep(0.2)
        print(f"server up in {time.perf_counter() - t0:.1f} s; {args.clients} clients upload "
              f"{len(raw) / 1024:.0f} KiB ({args.size} x {args.size} px) each, method {args.method}")

        release: list[float] = []
        barrier = threading.Barrier(args.clients, action=lambda: release.append(time.perf_counter()))
        latency: list[float] = [0.0] * args.clients
        answers: list = [None] * args.clients

        def client(i: int) -> None:
            with httpx.Client(timeout=300) as c:
                barrier.wait()
                t = time.perf_counter()
                try:
                    answers[i] = c.post(base + "/api/sets", data={"method": args.method},
                                        files={"files": (f"scan{i:03d}.gsf", raw)})
                except httpx.HTTPError as err:
                    answers[i] = err
                latency[i] = time.perf_counter() - t

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        t_up = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - release[0]  # from the moment all clients were released
        ok = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 201]
        bad = [a if not isinstance(a, httpx.Response) else f"{a.status_code} {a.text[:100]}"
               for a in answers if a not in ok]
        lat = sorted(latency)
        print(f"uploads: {len(ok)} accepted, {len(bad)} failed; latency median "
              f"{statistics.median(lat):.2f} s, p95 {lat[int(0.95 * (len(lat) - 1))]:.2f} s, "
              f"max {lat[-1]:.2f} s; wall {wall:.2f} s = {args.clients / wall:.1f} uploads/s")
        for b in bad[:5]:
            print("  failure:", b)

        set_ids = [a.json()["set_id"] for a in ok]
        t_an = time.perf_counter()
        with httpx.Client(base_url=base, timeout=60) as c:
            while True:
                sets = [c.get(f"/api/sets/{sid}").json() for sid in set_ids]
                if all(s["finished"] for s in sets):
                    break
                if time.perf_counter() - t_an > 1800:
                    print("analyses not finished after 30 min")
                    return 1
                time.sleep(0.5)
        total = time.perf_counter() - t_up
        done = sum(s["counts"]["done"] for s in sets)
        failed = sum(s["counts"]["failed"] for s in sets)
        names = sorted(s["images"][0]["name"] for s in sets)
        lost = args.clients - len(set(names))
        seconds = [s["images"][0]["seconds"] for s in sets if s["counts"]["done"]]
        counts = {s["images"][0]["summary"].get("count") for s in sets if s["counts"]["done"]}
        print(f"analysed: {done} done, {failed} failed, {lost} lost; all finished "
              f"{total:.1f} s after the client threads started ({done / total:.2f} images/s); "
              f"analysis per image median {statistics.median(seconds):.2f} s; "
              f"particle counts found {sorted(counts)}")
        return 0 if (not bad and failed == 0 and lost == 0) else 1
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
