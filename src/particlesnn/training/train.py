"""Training loop, checkpoints, threshold calibration and ONNX export (torch)."""
from __future__ import annotations

import copy
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from particlesnn.errors import InputError
from particlesnn.training.data import Sample, load_source, random_crop_batch, synth_pool, synth_stream
from particlesnn.training.net import STRIDE, UNet, count_parameters, widen_head

CKPT = "checkpoint.pt"


def _log(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


def contact_weights(y: torch.Tensor, contact_weight: float) -> torch.Tensor:
    """Per-pixel loss weights, ``1 + contact_weight`` near contacts between instances.

    A contact pixel is an inner-boundary pixel (target channel 2) with no background in its
    3 x 3 neighbourhood: its other neighbour is another instance. The weight covers these
    pixels and their 3 x 3 neighbours (both sides of the contact line), as the U-Net paper's
    weight map stresses the thin gaps between touching cells.

    Parameters
    ----------
    y : (batch, 3, rows, cols) targets of :func:`~particlesnn.training.targets.make_targets`.
    contact_weight : extra weight at contacts (0: all ones).

    Returns (batch, rows, cols) float32 weights >= 1.
    """
    fg, bnd = y[:, 0:1].float(), y[:, 2:3].float()
    no_bg = 1.0 - F.max_pool2d(1.0 - fg, 3, stride=1, padding=1)
    contact = F.max_pool2d(bnd * no_bg * fg, 3, stride=1, padding=1)
    return (1.0 + float(contact_weight) * contact)[:, 0]


def loss_fn(logits: torch.Tensor, y: torch.Tensor,
            contact_weight: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Foreground BCE + 2 x distance MSE (sigmoid) + 0.5 x boundary BCE (positive weight 3).

    With ``contact_weight`` > 0 each term is a weighted mean with :func:`contact_weights`
    (pixels at contacts between touching instances count ``1 + contact_weight`` times).
    """
    logits = logits.float()
    fg, dist, bnd = y[:, 0], y[:, 1], y[:, 2]
    w = contact_weights(y, contact_weight) if contact_weight else None

    def mean(per_pixel: torch.Tensor) -> torch.Tensor:
        return per_pixel.mean() if w is None else (per_pixel * w).sum() / w.sum()

    l_fg = mean(F.binary_cross_entropy_with_logits(logits[:, 0], fg, reduction="none"))
    l_d = mean((torch.sigmoid(logits[:, 1]) - dist) ** 2)
    l_b = mean(F.binary_cross_entropy_with_logits(logits[:, 2], bnd, pos_weight=torch.tensor(3.0),
                                                  reduction="none"))
    total = l_fg + 2.0 * l_d + 0.5 * l_b
    return total, {"fg": float(l_fg.detach()), "dist": float(l_d.detach()), "bnd": float(l_b.detach())}


def _lr(base: float, frac: float) -> float:
    """Warm-up over the first 3 %, then cosine decay to 5 % of ``base``."""
    if frac < 0.03:
        return base * (0.1 + 0.9 * frac / 0.03)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def _save(path: Path, model, opt, state: dict, ema: UNet | None = None) -> None:
    tmp = path.with_suffix(".tmp")
    ck = {"model": model.state_dict(), "opt": opt.state_dict() if opt else None,
          "widths": list(model.widths), "out_scale": model.out_scale,
          "fine_first": model.fine_first, "state": state}
    if ema is not None:
        ck["ema"] = ema.state_dict()
    torch.save(ck, tmp)
    tmp.replace(path)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> float:
    """Move ``ema``'s weights and batch-norm statistics towards ``model``'s after optimisation
    step ``step`` (1-based): ``ema = d * ema + (1 - d) * model`` with ``d = min(decay,
    (1 + step) / (10 + step))``, so that the first steps are not dominated by the start;
    integer buffers are copied. Returns ``d``."""
    d = min(float(decay), (1.0 + step) / (10.0 + step))
    theirs = model.state_dict()
    for k, v in ema.state_dict().items():
        if v.dtype.is_floating_point:
            v.mul_(d).add_(theirs[k].detach(), alpha=1.0 - d)
        else:
            v.copy_(theirs[k])
    return d


#: File name of the torch-free copy of a model's weights inside a model folder.
WEIGHTS_NPZ = "weights.npz"


def save_weights_npz(model: UNet, path: str | Path) -> Path:
    """Write ``model.state_dict()`` as float32 numpy arrays (``.npz``) plus ``__widths__``,
    ``__out_scale__`` and ``__fine_first__``.

    Batch-norm statistics are kept (unlike the ONNX file, where they are folded into the
    convolutions), so fine-tuning can start from it. About 4 bytes per parameter
    (0.5 MB for the shipped 8-16-32-64 U-Net). Returns the path written.
    """
    path = Path(path)
    arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    arrays["__widths__"] = np.asarray(model.widths, np.int32)
    arrays["__out_scale__"] = np.asarray(model.out_scale, np.int32)
    arrays["__fine_first__"] = np.asarray(model.fine_first, np.int32)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path


def load_weights_npz(path: str | Path) -> UNet:
    """A UNet from a ``weights.npz`` written by :func:`save_weights_npz`.

    Raises ``InputError`` when the file is missing or its arrays do not fit a U-Net.
    """
    path = Path(path)
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as err:
        raise InputError(path, f"unreadable weights file ({err})") from None
    if "__widths__" not in arrays:
        raise InputError(path, "weights file has no __widths__ entry (not written by particlesnn)")
    out_scale = int(arrays.pop("__out_scale__", 1))  # files before out_scale existed: 1
    fine_first = bool(arrays.pop("__fine_first__", 0))
    model = UNet(tuple(int(w) for w in arrays.pop("__widths__")), out_scale, fine_first)
    ref = model.state_dict()
    if set(ref) != set(arrays):
        raise InputError(path, "weights do not match the U-Net layout "
                               f"({len(set(ref) ^ set(arrays))} tensors differ)")
    state = {}
    for k, v in ref.items():
        a = arrays[k]
        if tuple(a.shape) != tuple(v.shape):
            raise InputError(path, f"tensor {k} has shape {a.shape}, the U-Net needs {tuple(v.shape)}")
        state[k] = torch.from_numpy(np.asarray(a)).to(v.dtype)
    model.load_state_dict(state)
    return model


def resolve_weights(path_or_name: str | Path | None) -> Path:
    """The file to start training from: ``checkpoint.pt`` or ``weights.npz``.

    Accepts a checkpoint file, a ``.npz`` file, a model folder (its ``checkpoint.pt`` when
    present, else its ``weights.npz``) or the name of a shipped model (``None`` or ``"shipped"`` = ``"default"``).
    Raises ``InputError`` when none of these exists.
    """
    from particlesnn.model import WEIGHTS_DIR

    if path_or_name in (None, "shipped"):  # "shipped": --finetune without a value
        path_or_name = "default"
    p = Path(path_or_name)
    if not p.exists() and (WEIGHTS_DIR / str(path_or_name)).is_dir():
        p = WEIGHTS_DIR / str(path_or_name)
    if p.is_dir():
        for name in (CKPT, WEIGHTS_NPZ):
            if (p / name).is_file():
                return p / name
        raise InputError(p, f"model folder has neither {CKPT} nor {WEIGHTS_NPZ} to start from")
    if not p.is_file():
        raise InputError(p, "no such checkpoint, weights file or model folder")
    return p


def load_checkpoint(path: str | Path) -> tuple[UNet, dict]:
    """A UNet and the checkpoint dict from a checkpoint file, a ``weights.npz``, a model
    folder holding one of them, or a shipped model's name (see :func:`resolve_weights`).

    For a ``weights.npz`` the dict has ``model``, ``widths`` and an empty ``state``. A
    checkpoint of a run with weight averaging (``train(ema=...)``) gives the averaged weights,
    the ones its model folder exports.
    """
    p = resolve_weights(path)
    if p.suffix == ".npz":
        model = load_weights_npz(p)
        return model, {"model": model.state_dict(), "widths": list(model.widths), "state": {},
                       "source": str(p)}
    ck = torch.load(p, map_location="cpu", weights_only=False)
    model = UNet(tuple(ck.get("widths", (16, 32, 64, 128))), int(ck.get("out_scale", 1)),
                 bool(ck.get("fine_first", False)))
    model.load_state_dict(ck["ema"] if ck.get("ema") is not None else ck["model"])
    return model, ck


@torch.no_grad()
def predict_torch(model: UNet, image: np.ndarray, bf16: bool = False) -> dict:
    """Maps (``prob``, ``dist``, ``boundary``) for one normalised image, with torch (whole
    image); ``model.out_scale`` times finer than the image."""
    model.eval()
    h, w = image.shape
    f = model.out_scale
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    x = np.pad(image, ((0, ph), (0, pw)), mode="edge")
    xt = torch.from_numpy(np.ascontiguousarray(x))[None, None].float()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = torch.sigmoid(model(xt).float())[0, :, :f * h, :f * w].numpy()
    return {"prob": out[0], "dist": out[1], "boundary": out[2]}


def calibrate(model: UNet, val: list[Sample], max_images: int = 60) -> dict:
    """Pick decoding thresholds maximising IoU-0.5 F1 (pooled counts) on validation samples."""
    from particlesnn.matching import iou_match
    from particlesnn.segment.decode import decode
    from skimage.measure import label as cc_label

    grid = [(p, m) for p in (0.4, 0.5, 0.6) for m in (0.5, 0.6, 0.7)]
    counts = {g: np.zeros(3) for g in grid}
    for s in val[:max_images]:
        maps = predict_torch(model, s.image)
        true = _labels_from_targets(s.targets, cc_label)
        for g in grid:
            seg = decode(maps, prob_thresh=g[0], marker_thresh=g[1])
            r = iou_match(seg.labels, true, 0.5)
            counts[g] += (r.tp, r.fp, r.fn)
    best, best_f1 = grid[4], -1.0
    for g, (tp, fp, fn) in counts.items():
        f1 = 2 * tp / max(1.0, 2 * tp + fp + fn)
        if f1 > best_f1 + 1e-9:
            best, best_f1 = g, f1
    return {"prob_thresh": best[0], "marker_thresh": best[1], "min_area": 4, "min_score": 0.0,
            "calibrated_on": f"{min(len(val), max_images)} validation images",
            "val_iou50_f1": round(float(best_f1), 4)}


def _labels_from_targets(t: np.ndarray, cc_label) -> np.ndarray:
    """Instance labels rebuilt from stored targets: foreground minus boundary pixels, then grown."""
    from skimage.segmentation import watershed

    fg = t[0] > 127
    core = fg & (t[2] < 128)
    markers = cc_label(core)
    return watershed(-t[1].astype(np.float32), markers, mask=fg).astype(np.int32)


def train(data: list[str | Path] | None = None, out: str | Path = "model-out", *,
          minutes: float | None = None, epochs: float | None = None, resume: bool = False,
          finetune: str | Path | None = None, n_synth: int = 3000, synth_size: int = 256,
          crop: int = 160, batch: int = 12, lr: float = 2e-3, real_fraction: float = 0.25,
          threads: int = 2, workers: int = 2, seed: int = 0, p_package: float = 0.6,
          bf16: bool = False, widths: tuple[int, ...] = (12, 24, 48, 96),
          checkpoint_every_s: float = 120.0, val_every: int = 250, export: bool = True,
          calibrate_images: int = 60, name: str = "particlesnn-unet",
          samples: list[Sample] | None = None, val_samples: list[Sample] | None = None,
          thresholds: dict | None = None, progress=None, n_val_synth: int | None = None,
          freeze_bn: bool = False, pool_first: bool = False, compile: bool = False,
          presets: dict[str, float] | None = None, contact_weight: float = 0.0,
          out_scale: int | None = None, fine_first: bool = False, ema: float = 0.0) -> Path:
    """Train the detector and export it as a model folder.

    Parameters
    ----------
    data : extra sources (``particlesnn synth`` folders, ``images/`` + ``labels/`` folders,
        COCO JSON); their training parts are mixed with synthetic images (``real_fraction``
        of the crops come from them). Missing sources are reported and skipped.
    out : model folder: ``checkpoint.pt``, ``train.log.json``, and (``export``) ``model.onnx``,
        ``config.json``, ``thresholds.json``.
    minutes : wall-clock budget of the optimisation steps, min (default 30 when neither
        ``minutes`` nor ``epochs`` is given).
    epochs : budget in passes over the synthetic pool (``n_synth`` images per pass, a crop
        each).
    resume : continue from ``out/checkpoint.pt`` with the budget left; the checkpoint's
        network (widths, ``out_scale``, ``fine_first``) is used, ``finetune`` is not reloaded.
    finetune : start from these weights: a checkpoint, a ``weights.npz``, a model folder
        holding one of them, or a shipped model's name (``"default"``); the U-Net widths are
        then those of the starting model (``widths`` is ignored).
    n_synth, synth_size : size of the synthetic pool (images, px); a first part is made before
        training starts, the rest in a background process while it runs.
    crop, batch : crop side (px, multiple of 8) and crops per step.
    threads : torch intra-op threads (1 is used while the background generator runs or the
        CPUs are oversubscribed: 2 OpenMP threads then run several times slower).
    calibrate_images : validation images used to pick the decoding thresholds (a quarter
        from ``data`` sources when there are any).
    bf16 : bfloat16 autocast + channels_last (about 3x faster on CPUs with native bf16,
        but many times slower on CPUs without it, e.g. AVX2-only).
    widths : channels per U-Net level.
    samples, val_samples : extra training / validation :class:`Sample` lists already loaded
        (e.g. a user's corrected images, resampled as the analysis would); they count as
        ``data`` (``real_fraction`` of the crops).
    thresholds : decoding thresholds to write instead of calibrating on the validation images
        (fine-tuning keeps those of the starting model).
    progress : called as ``progress(dict)`` about every 10 steps and at the end with
        ``step``, ``fraction`` (0..1 of the budget), ``elapsed_s``, ``loss`` (running train
        loss), ``val_loss`` (latest, or None) and ``phase`` (``"train"``, ``"export"``).
    n_val_synth : synthetic validation images (default ``n_synth // 40`` within 4..40).
    freeze_bn : keep the batch-norm statistics of the starting model (fine-tuning: the
        decoding thresholds stay valid and what was learnt is not pulled towards the new mix).
    pool_first : make the whole synthetic pool (``workers`` processes) before the first step,
        so that torch has all ``threads`` for the whole budget (a background generator takes
        a core: on 2 cores the steps then run on one thread, ~1.6x slower).
    compile : ``torch.compile`` the training steps (~20 % faster steps on a 2-core AVX2 CPU
        after a ~1 min compilation that counts in ``minutes``; needs a C++ compiler, falls
        back to eager mode when compilation fails).
    presets : :mod:`particlesnn.synth` presets drawn for the synthetic images, name -> weight
        (:func:`~particlesnn.training.data.parse_presets`); None: all of
        :data:`~particlesnn.training.data.SYNTH_PRESETS`.
    contact_weight : extra loss weight on pixels at contacts between touching instances
        (:func:`contact_weights`; 0 = unweighted, as the shipped models were trained).
    out_scale : maps this many times finer than the input (:class:`~particlesnn.training.net.UNet`;
        targets are made from labels enlarged by
        :func:`~particlesnn.training.targets.upsample_labels`). None: the starting model's
        (``finetune``), else 1. A 1x starting model fine-tuned to 2 gets its head widened
        (:func:`~particlesnn.training.net.widen_head`).
    fine_first : the network's full-resolution level runs on the input enlarged by 2
        (:class:`~particlesnn.training.net.UNet`; implies ``out_scale`` 2). A 1x starting
        model (``finetune``) is converted (:func:`~particlesnn.training.net.widen_head`); a
        fine-tune of a fine_first model keeps its layout without this flag.
    ema : when > 0, keep an exponential moving average of the weights and batch-norm
        statistics with this decay per step (:func:`ema_update`; e.g. 0.999, a memory of about
        1,000 steps) and export it instead of the last step's weights; 0 = off, as the shipped
        models were trained. The validation loss logged is the last step's; the averaged
        model's is logged at the end.

    Returns the model folder path.
    """
    torch.set_num_threads(max(1, int(threads)))
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CKPT
    if minutes is None and epochs is None:
        minutes = 30.0
    rng = np.random.default_rng(seed)
    start = None
    resumed = None
    if resume and ckpt_path.is_file():
        # the checkpoint decides the network (layout and weights), not the options repeated
        resumed = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        ck_scale, ck_ff = int(resumed.get("out_scale", 1)), bool(resumed.get("fine_first", False))
        if (out_scale is not None and int(out_scale) != ck_scale) or (fine_first and not ck_ff):
            asked = ", ".join(([f"out_scale {out_scale}"] if out_scale is not None else [])
                              + (["fine_first"] if fine_first else []))
            raise InputError(ckpt_path, f"resume: this run's network has maps {ck_scale}x finer "
                                        f"than its input{' (fine_first)' if ck_ff else ''}, "
                                        f"not {asked} as asked")
        out_scale, fine_first = ck_scale, ck_ff
        widths = tuple(resumed.get("widths", widths))
    if fine_first:
        if out_scale not in (None, 2):
            raise ValueError(f"fine_first gives maps 2x finer: out_scale must be 2, got {out_scale}")
        out_scale = 2
    if finetune and resumed is None:
        start, _ = load_checkpoint(finetune)
        if out_scale is None:
            out_scale = start.out_scale
        if int(out_scale) != start.out_scale or (fine_first and not start.fine_first):
            if start.out_scale != 1:
                raise InputError(finetune, f"its maps are {start.out_scale}x finer than its input: "
                                           "only a 1x model can be converted (out_scale "
                                           f"{out_scale}{', fine_first' if fine_first else ''})")
            wide = UNet(start.widths, int(out_scale), fine_first)
            wide.load_state_dict(widen_head(start.state_dict(), int(out_scale), fine_first))
            start = wide
    f = int(out_scale or 1)
    if samples and any(smp.scale != f for smp in list(samples) + list(val_samples or [])):
        raise ValueError(f"samples given directly have targets of another scale than the "
                         f"network's maps ({f}x)")

    t0 = time.time()
    n_val_syn = max(4, min(40, n_synth // 40)) if n_val_synth is None else max(1, int(n_val_synth))
    base_seed = 1_000_000 * (seed + 1)
    val = synth_pool(n_val_syn, seed=base_seed + 900_000, size=synth_size, workers=workers,
                     p_package=p_package, presets=presets, scale=f)
    n_init = n_synth if pool_first else min(n_synth, max(8, 4 * batch))
    pool = synth_pool(n_init, seed=base_seed, size=synth_size, workers=workers, p_package=p_package,
                      presets=presets, scale=f)
    # the rest of the synthetic pool is made in the background while training runs
    gen_pool, gen_it = (synth_stream(n_synth - n_init, base_seed + n_init, synth_size,
                                     max(1, workers - 1), p_package, presets, f)
                        if n_synth > n_init else (None, None))
    _log(f"{n_init} synthetic images ready in {time.time() - t0:.0f} s, {n_synth - n_init} more "
         f"being generated in the background; {n_val_syn} synthetic validation images")
    real: list[Sample] = []
    for src in data or []:
        if not Path(src).exists():
            _log(f"data source {src} not found: skipped (training continues on synthetic data)")
            continue
        try:
            tr = load_source(src, "train", scale=f)
            va = load_source(src, "val", scale=f)
        except ValueError as err:
            _log(f"skipped: {err}")
            continue
        real += tr
        val += va[:20]
        _log(f"data source {src}: {len(tr)} training / {len(va)} validation images")
    if samples:
        real += list(samples)
        _log(f"{len(samples)} training images given directly")
    if val_samples:
        val += list(val_samples)[:20]

    def mix() -> tuple[list[Sample], np.ndarray | None]:
        if not real:
            return pool, None
        w = np.r_[np.full(len(pool), (1 - real_fraction) / len(pool)),
                  np.full(len(real), real_fraction / len(real))]
        return pool + real, w / w.sum()

    samples, w = mix()

    if start is not None:
        model = start
        widths = model.widths
        _log(f"fine-tuning from {finetune}" + (f" (maps {f}x finer)" if f > 1 else ""))
    else:
        model = UNet(widths, f, fine_first)
    if not 0.0 <= float(ema) < 1.0:
        raise ValueError(f"ema must be in [0, 1), got {ema}")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    state = {"step": 0, "elapsed_s": 0.0, "minutes": minutes, "epochs": epochs, "history": []}
    if resumed is not None:
        ck = resumed
        model.load_state_dict(ck["model"])
        if ck.get("opt"):
            opt.load_state_dict(ck["opt"])
        state = ck["state"]
        if minutes is not None:
            state["minutes"] = minutes
        if epochs is not None:
            state["epochs"] = epochs
        _log(f"resumed at step {state['step']} ({state['elapsed_s'] / 60:.1f} min done)")
        rng = np.random.default_rng(seed + state["step"])
    averaged = None
    if ema:
        averaged = copy.deepcopy(model).eval()
        if resumed is not None and resumed.get("ema") is not None:
            averaged.load_state_dict(resumed["ema"])
    if bf16:  # only pays off on CPUs with native bf16 (AVX-512 BF16 / AMX)
        model = model.to(memory_format=torch.channels_last)
    _log(f"model: U-Net {widths}, {count_parameters(model)} parameters; "
         f"{n_synth} synthetic + {len(real)} real training images, {len(val)} validation images")

    def pick_threads() -> int:
        # Oversubscribed CPUs make 2 OpenMP threads several times slower than 1.
        busy = gen_it is not None or os.getloadavg()[0] > (os.cpu_count() or 2) + 0.5
        return 1 if (busy and threads > 1) else max(1, int(threads))

    torch.set_num_threads(pick_threads())

    total_steps = None
    if state.get("epochs") is not None:
        total_steps = max(1, int(math.ceil(state["epochs"] * n_synth / batch)))
    budget_s = None if state.get("minutes") is None else 60.0 * state["minutes"]

    def frac_done() -> float:
        fs = [state["step"] / total_steps] if total_steps else []
        if budget_s:
            fs.append(state["elapsed_s"] / budget_s)
        return max(fs) if fs else 1.0

    show_bar = sys.stdout.isatty()
    last_ck = time.time()
    run_loss = None
    last_val = None

    def report(phase: str = "train") -> None:
        if progress is not None:
            progress({"step": state["step"], "fraction": round(min(1.0, frac_done()), 4),
                      "elapsed_s": round(state["elapsed_s"], 1), "loss": run_loss,
                      "val_loss": last_val, "phase": phase})
    vx, vy = random_crop_batch(val, np.random.default_rng(12345), min(48, 4 * len(val)), crop)
    def train_mode() -> None:
        model.train()
        if freeze_bn:
            for mod in model.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.eval()

    train_mode()
    step_model = model
    if compile:
        step_model = torch.compile(model)
        _log("training steps compiled with torch.compile (the first step compiles)")
    while frac_done() < 1.0:
        if gen_it is not None:  # collect background-generated images
            got = 0
            while True:
                try:
                    pool.append(gen_it.next(timeout=0))
                    got += 1
                except StopIteration:
                    gen_pool.close()
                    gen_it = None
                    _log(f"synthetic pool complete: {len(pool)} images")
                    torch.set_num_threads(pick_threads())
                    break
                except mp.TimeoutError:
                    break
            if got:
                samples, w = mix()
        if state["step"] % 50 == 0:
            torch.set_num_threads(pick_threads())
        ts = time.time()
        for g in opt.param_groups:
            g["lr"] = _lr(lr, frac_done())
        x, y = random_crop_batch(samples, rng, batch, crop, w)
        xt = torch.from_numpy(x)
        if bf16:
            xt = xt.to(memory_format=torch.channels_last)
        yt = torch.from_numpy(y)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            try:
                logits = step_model(xt)
            except Exception as err:  # noqa: BLE001  (compilation failed: train eagerly)
                if step_model is model:
                    raise
                _log(f"torch.compile failed ({type(err).__name__}): training in eager mode")
                step_model = model
                logits = model(xt)
        loss, parts = loss_fn(logits, yt, contact_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] += 1
        if averaged is not None:
            ema_update(averaged, model, ema, state["step"])
        state["elapsed_s"] += time.time() - ts
        lv = float(loss.detach())
        run_loss = lv if run_loss is None else 0.98 * run_loss + 0.02 * lv
        if state["step"] % 10 == 0:
            report()
        if show_bar:
            print(f"\rstep {state['step']}  {100 * frac_done():5.1f} %  loss {run_loss:.4f}",
                  end="", flush=True)
        if state["step"] % val_every == 0 or frac_done() >= 1.0:
            model.eval()
            with torch.no_grad():
                vl = float(loss_fn(model(torch.from_numpy(vx)), torch.from_numpy(vy), contact_weight)[0])
            last_val = vl
            train_mode()
            state["history"].append({"step": state["step"], "train_loss": run_loss, "val_loss": vl,
                                     "elapsed_s": round(state["elapsed_s"], 1)})
            _log(f"{'' if not show_bar else chr(10)}step {state['step']} ({100 * frac_done():.0f} %) "
                 f"train loss {run_loss:.4f} val loss {vl:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                 f"pool {len(pool)} threads {torch.get_num_threads()}")
        if time.time() - last_ck > checkpoint_every_s:
            _save(ckpt_path, model, opt, state, averaged)
            last_ck = time.time()
    if gen_pool is not None:
        gen_pool.terminate()
    _save(ckpt_path, model, opt, state, averaged)
    _log(f"training done: {state['step']} steps, {state['elapsed_s'] / 60:.1f} min")
    if averaged is not None:
        with torch.no_grad():
            vl = float(loss_fn(averaged(torch.from_numpy(vx)), torch.from_numpy(vy), contact_weight)[0])
        last = "-" if last_val is None else f"{last_val:.4f}"
        _log(f"weights averaged (ema {ema}): val loss {vl:.4f} (last step's {last}); "
             "the averaged weights are exported")
        state["ema_val_loss"] = vl
        model = averaged
    report("export")
    model.eval()
    if thresholds is None:
        n_cal_real = min(calibrate_images // 4, len(val) - n_val_syn)
        thresholds = calibrate(model, val[:calibrate_images - n_cal_real] + val[n_val_syn:n_val_syn + n_cal_real],
                               max_images=calibrate_images)
        _log(f"calibrated thresholds: {thresholds}")
    else:
        _log(f"thresholds kept: {thresholds}")
    meta = {"steps": state["step"], "train_minutes": round(state["elapsed_s"] / 60, 2),
            "batch": batch, "crop": crop, "n_synth": n_synth, "data": [str(d) for d in data or []],
            "real_images": len(real), "history": state["history"]}
    if finetune:
        meta["finetune"] = str(finetune)
    if contact_weight:
        meta["contact_weight"] = float(contact_weight)
    if f > 1:
        meta["out_scale"] = f
    if fine_first:
        meta["fine_first"] = True
    if averaged is not None:
        meta["ema"] = float(ema)
        meta["ema_val_loss"] = state["ema_val_loss"]
    if presets:
        meta["presets"] = dict(presets)
    (out / "train.log.json").write_text(json.dumps(meta, indent=1))
    if export:
        export_onnx(model, out, thresholds=thresholds, name=name, train_meta=meta)
    return out


def export_onnx(model_or_checkpoint, out_dir: str | Path, *, thresholds: dict | None = None,
                name: str = "particlesnn-unet", train_meta: dict | None = None) -> Path:
    """Write a model folder (``model.onnx``, ``config.json``, ``thresholds.json``,
    ``weights.npz``).

    ``model_or_checkpoint``: a UNet, or a checkpoint file / folder. ONNX input ``image``
    (N, 1, H, W) float32, output ``maps`` (N, 3, s H, s W) logits (``s`` the config's
    ``out_scale``), H and W dynamic (multiples of 8).
    """
    import warnings

    if isinstance(model_or_checkpoint, UNet):
        model = model_or_checkpoint
    else:
        model, ck = load_checkpoint(model_or_checkpoint)
        train_meta = train_meta or {"steps": ck.get("state", {}).get("step")}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.to(memory_format=torch.contiguous_format).float().eval()
    x = torch.zeros(1, 1, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(out / "model.onnx"), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["maps"],
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"},
                                        "maps": {0: "n", 2: "sh", 3: "sw"}})
    from particlesnn.segment.decode import DEFAULTS

    config = {"name": name, "architecture": "unet", "widths": list(model.widths),
              "out_scale": model.out_scale, "fine_first": model.fine_first,
              "parameters": count_parameters(model), "outputs": ["prob", "dist", "boundary"],
              "stride": STRIDE, "normalise": {"p_lo": 1.0, "p_hi": 99.5},
              "particles": "bright", "diameter_px_trained": [4, 60], "train": train_meta or {}}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    save_weights_npz(model, out / WEIGHTS_NPZ)  # torch-free copy: fine-tuning starts from it
    th = dict(DEFAULTS)
    if thresholds:
        th.update(thresholds)
    elif (out / "thresholds.json").is_file():
        th.update(json.loads((out / "thresholds.json").read_text()))
    (out / "thresholds.json").write_text(json.dumps(th, indent=1))
    return out
