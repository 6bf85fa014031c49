"""Neural detector inference on onnxruntime (no torch).

A model is a folder in the StarDist style:

* ``config.json``      ``{"name", "outputs": ["prob", "dist", "boundary"], "stride": 8,
  "normalise": {"p_lo": 1.0, "p_hi": 99.5}, "train": {...}}``;
* ``model.onnx``       input ``image`` (N, 1, H, W) float32, output ``maps`` (N, 3, s H, s W)
  logits, ``s`` the config's ``"out_scale"`` (1 when absent; 2: maps twice as fine as the image);
* ``thresholds.json``  decoding thresholds (``prob_thresh``, ``marker_thresh``, ``min_area``,
  ``min_score``, optional ``peak_h``: peak seeds, off when absent; an entry per profile, e.g.
  ``"textured": {...}``, overrides them for that profile) and the profile switch
  (``textured_below_mean_score``).

The shipped models live in ``particlesnn/model/weights/``: ``default/``, ``height/`` and
``textured/``. The default's ``config.json`` names the other two: height maps in nm are handed
to ``"height_model": "height"`` (:meth:`DetectorModel.for_heightmaps`), and plain images that
the profile switch sends to the textured profile (small particles on a lumpy support, as in
HAADF-STEM) to ``"textured_model": "textured"`` (:meth:`DetectorModel.for_textured`); other
plain images stay with the default. A model without these keys (one from ``particlesnn train``,
a fine-tuned one) runs on everything.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from particlesnn.errors import InputError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
OUTPUTS = ("prob", "dist", "boundary")


@dataclass
class DetectorModel:
    """A loaded detector: onnxruntime session, config and decoding thresholds."""

    path: Path
    config: dict
    thresholds: dict
    session: object = field(repr=False)
    _linked: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        """Model name (config ``name`` or the folder name)."""
        return str(self.config.get("name", self.path.name))

    @property
    def stride(self) -> int:
        """Input height and width must be multiples of this, px."""
        return int(self.config.get("stride", 8))

    @property
    def out_scale(self) -> int:
        """How many times finer than the input the network's maps are (config ``out_scale``)."""
        return int(self.config.get("out_scale", 1))

    def linked(self, key: str) -> "DetectorModel":
        """The model named by the config's ``key`` (``"height_model"`` or ``"textured_model"``:
        a shipped model's name or a folder; loaded once, then kept), else this one. Raises
        InputError when the named model cannot be loaded."""
        name = self.config.get(key)
        if not name:
            return self
        if key not in self._linked:
            shipped = WEIGHTS_DIR / str(name)
            self._linked[key] = load_model(shipped if shipped.is_dir() else name)
        return self._linked[key]

    def for_heightmaps(self) -> "DetectorModel":
        """The model to run on height maps in nm (config ``height_model``, else this one)."""
        return self.linked("height_model")

    def for_textured(self) -> "DetectorModel":
        """The model to run the ``"textured"`` profile with (config ``textured_model``, else
        this one); its own thresholds decode that profile."""
        return self.linked("textured_model")


def _threads() -> int:
    env = os.environ.get("PARTICLESNN_THREADS")
    if env:
        return max(1, int(env))
    return max(1, min(4, os.cpu_count() or 1))


def load_model(path_or_name: str | Path | None = None) -> DetectorModel:
    """Load a model folder.

    Parameters
    ----------
    path_or_name : a folder holding ``config.json`` + ``model.onnx`` (+ ``thresholds.json``),
        or the name of a shipped model (``"default"``); ``None`` means ``"default"``.

    Raises
    ------
    InputError when the folder or one of its files is missing or unreadable.
    """
    import onnxruntime as ort

    if path_or_name is None:
        path_or_name = "default"
    p = Path(path_or_name)
    if not (p / "config.json").is_file() and (WEIGHTS_DIR / str(path_or_name)).is_dir():
        p = WEIGHTS_DIR / str(path_or_name)
    if not p.is_dir():
        raise InputError(p, "no such model folder (expected config.json + model.onnx)")
    for f in ("config.json", "model.onnx"):
        if not (p / f).is_file():
            raise InputError(p, f"model folder has no {f}")
    try:
        config = json.loads((p / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise InputError(p / "config.json", f"unreadable model config ({err})") from None
    from particlesnn.segment.decode import DEFAULTS

    thresholds = dict(DEFAULTS)
    if (p / "thresholds.json").is_file():
        try:
            thresholds.update(json.loads((p / "thresholds.json").read_text()))
        except ValueError as err:
            raise InputError(p / "thresholds.json", f"unreadable thresholds ({err})") from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = _threads()
    so.inter_op_num_threads = 1
    # onnxruntime's memory arena keeps its largest buffers: fast, but about 2 GB of RSS after
    # a 2048 px image; PARTICLESNN_LOW_MEMORY=1 halves that for ~40 % more time (docs/model.md)
    so.enable_cpu_mem_arena = os.environ.get("PARTICLESNN_LOW_MEMORY", "0") in ("", "0")
    # the memory pattern pre-plans one block per input shape: without it the same speed and
    # ~350 MB less peak RSS on a 2048 px image (benchmarks/bench_detect.py, docs/model.md)
    so.enable_mem_pattern = False
    try:
        sess = ort.InferenceSession(str(p / "model.onnx"), so, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise InputError(p / "model.onnx", f"cannot load ONNX model ({err})") from None
    return DetectorModel(path=p, config=config, thresholds=thresholds, session=sess)


def normalise(image: np.ndarray, p_lo: float = 1.0, p_hi: float = 99.5) -> np.ndarray:
    """Robust intensity normalisation used for training and inference.

    ``(x - P_lo) / (P_hi - P_lo)`` with the ``p_lo`` and ``p_hi`` percentiles of the finite
    pixels (computed on at most ~1 M pixels), clipped to [-3, 5]. Returns float32, unitless.
    """
    x = np.asarray(image, np.float32)
    sample = x if x.size <= 1_100_000 else x[:: max(1, x.shape[0] // 1024), :: max(1, x.shape[1] // 1024)]
    lo, hi = np.percentile(sample, [p_lo, p_hi])
    scale = float(hi - lo)
    if not np.isfinite(scale) or scale <= 0:
        scale = float(np.std(sample)) or 1.0
    return np.clip((x - lo) / scale, -3.0, 5.0).astype(np.float32)


def _sigmoid_inplace(z: np.ndarray) -> np.ndarray:
    """The logistic function of a float32 array, computed in its own memory (a 4096 px map is
    67 MB; the plain expression made three temporaries of that size)."""
    with np.errstate(over="ignore"):
        np.negative(z, out=z)
        np.exp(z, out=z)
    z += 1.0
    np.reciprocal(z, out=z)
    return z


def _run(model: DetectorModel, x: np.ndarray) -> np.ndarray:
    """Raw logits (3, s h, s w) for one normalised tile whose sides are multiples of the
    stride (``s`` = ``model.out_scale``)."""
    out = model.session.run(None, {"image": x[None, None].astype(np.float32)})[0]
    return out[0]


def block_mean(maps: np.ndarray, f: int) -> np.ndarray:
    """(3, f h, f w) maps -> (3, h, w): the mean of each f x f block."""
    c, h, w = maps.shape
    return maps.reshape(c, h // f, f, w // f, f).mean(axis=(2, 4), dtype=np.float32)


def predict_maps(model: DetectorModel, image2d: np.ndarray, *, normalised: bool = False,
                 tile: int = 1024, margin: int = 64, coarse: bool = False) -> dict:
    """Run the network over a 2D image, in overlapping tiles when it is large.

    Parameters
    ----------
    model : from :func:`load_model`.
    image2d : (rows, cols) float, particles bright.
    normalised : True when ``image2d`` is already normalised with :func:`normalise`.
    tile : largest tile side in px, context included (rounded down to the stride); images
        that fit are run whole.
    margin : context added on each side of a tile and discarded after inference, px
        (rounded up to the stride). With the default 64 px (more than the network's receptive
        radius) the stitched maps equal whole-image inference up to float rounding.
    coarse : for a model whose maps are finer than its input (``out_scale`` > 1), return them
        on the input's grid (each tile's maps averaged over ``out_scale`` x ``out_scale``
        blocks, so the fine maps of a large image are never held whole).

    Returns
    -------
    dict of float32 maps: ``"prob"``, ``"dist"``, ``"boundary"`` (all in [0, 1]), with the
    input's shape times ``model.out_scale`` (the input's shape for a 1x model or ``coarse``).
    """
    img = np.asarray(image2d)
    if img.ndim != 2 or img.size == 0:
        raise InputError(None, f"expected a non-empty 2D image, got shape {img.shape}")
    if not np.isfinite(img).all():
        raise InputError(None, "image holds NaN or infinite values")
    cfg = model.config.get("normalise", {})
    x = img.astype(np.float32) if normalised else normalise(img, cfg.get("p_lo", 1.0), cfg.get("p_hi", 99.5))
    s = model.stride
    rows, cols = x.shape
    pr, pc = (-rows) % s, (-cols) % s
    if pr or pc:
        x = np.pad(x, ((0, pr), (0, pc)), mode="reflect" if min(rows, cols) > max(pr, pc) else "edge")
    H, W = x.shape
    tile = max(s, (int(tile) // s) * s)
    margin = int(np.ceil(margin / s) * s)
    f = model.out_scale
    shrink = coarse and f > 1

    def run(tile_x: np.ndarray) -> np.ndarray:  # logits, or probabilities on the input's grid
        out = _run(model, tile_x)
        return block_mean(_sigmoid_inplace(out), f) if shrink else out

    g = 1 if shrink else f  # output pixels per input pixel
    if H <= tile and W <= tile:
        maps = run(x)
    else:
        core = max(s, tile - 2 * margin)
        maps = np.empty((3, g * H, g * W), np.float32)
        for y0 in range(0, H, core):
            for x0 in range(0, W, core):
                y1, x1 = min(y0 + core, H), min(x0 + core, W)
                ty0, tx0 = max(0, y0 - margin), max(0, x0 - margin)
                ty1, tx1 = min(H, y1 + margin), min(W, x1 + margin)
                out = run(x[ty0:ty1, tx0:tx1])
                maps[:, g * y0:g * y1, g * x0:g * x1] = out[:, g * (y0 - ty0):g * (y1 - ty0),
                                                            g * (x0 - tx0):g * (x1 - tx0)]
    maps = maps[:, :g * rows, :g * cols]
    if shrink:
        return {name: np.ascontiguousarray(maps[i]) for i, name in enumerate(OUTPUTS)}
    return {name: _sigmoid_inplace(np.ascontiguousarray(maps[i])) for i, name in enumerate(OUTPUTS)}


__all__ = ["DetectorModel", "block_mean", "load_model", "normalise", "predict_maps", "WEIGHTS_DIR"]
