"""Network cost alone, onnxruntime on 2 threads (untrained weights: the time does not depend on
them): the U-Net the shipped models use, at 1x and on the image enlarged by 2 (what the shipped
height model's enlarged copy costs), the ``--out-scale 2`` U-Net, and the ``--fine-first``
U-Net, whose full-resolution level runs on the input enlarged by 2 inside the network (pooled by
4, so levels 1-3 keep their 1x sizes; by multiply-adds about 65 k per input pixel, 35 k with
8 channels in that level, against 35 k for the U-Net at 1x and 140 k on the enlarged image).
Needs the training extra (torch). Prints the best of 3 runs after a warm-up.

    PYTHONPATH=src python benchmarks/bench_net_cost.py [--sizes 512,1024]
"""
import argparse
import io
import time

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn

from particlesnn.training.net import UNet


def session(model: nn.Module) -> ort.InferenceSession:
    model.eval()
    buf = io.BytesIO()
    torch.onnx.export(model, torch.zeros(1, 1, 64, 64), buf, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}},
                      opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.enable_mem_pattern = 2, 1, False
    return ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])


def best_of_3(sess: ort.InferenceSession, n: int) -> float:
    x = np.random.default_rng(0).random((1, 1, n, n), dtype=np.float32)
    sess.run(None, {"x": x})
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        sess.run(None, {"x": x})
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="512,1024", help="input sides, px")
    args = ap.parse_args()
    torch.manual_seed(0)
    nets = {"U-Net 16-32-64-128": (session(UNet()), 1),
            "the same on the image enlarged by 2": (None, 2),
            "--out-scale 2 U-Net": (session(UNet(out_scale=2)), 1),
            "--fine-first U-Net": (session(UNet(out_scale=2, fine_first=True)), 1),
            "--fine-first U-Net, widths 8-32-64-128": (session(UNet((8, 32, 64, 128), 2, True)), 1)}
    for n in (int(s) for s in args.sizes.split(",")):
        for name, (sess, f) in nets.items():
            sess = sess or nets["U-Net 16-32-64-128"][0]
            print(f"{n} px input, {name}: {best_of_3(sess, f * n):.3f} s")


if __name__ == "__main__":
    main()
