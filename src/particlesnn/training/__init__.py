"""Training the neural detector (torch; install with ``pip install particlesnn[train]``).

All torch code of particlesnn lives in this package: the network (:mod:`.net`), training
targets (:mod:`.targets`), a built-in synthetic generator (:mod:`.synthgen`), data sources and
augmentation (:mod:`.data`), the training loop and ONNX export (:mod:`.train`).
"""
from __future__ import annotations

from particlesnn.training.net import UNet, count_parameters
from particlesnn.training.train import export_onnx, load_checkpoint, predict_torch, train

__all__ = ["UNet", "count_parameters", "export_onnx", "load_checkpoint", "predict_torch", "train"]
