"""Fine-tuning the detector on a user's corrected images (torch).

The corrected images come as a data set written by ``particlesnn dataset export`` (or by
:func:`particlesnn.web.dataset.write_dataset`): ``annotations.json`` (COCO) next to
``images/`` (16-bit grey PNG of the levelled map, particles bright) and ``heights/``
(float32 TIFF, the levelled map in nm). Images with large particles are shrunk as the detector
would see them (:func:`training_scale`), so the network learns the particles at the size it
meets them at inference ("train as you infer").

Held-out rule (the same as every file source of :mod:`particlesnn.training.data`): image ids
sorted as text, every 4th (index 0, 4, 8, ...) is held out for evaluation, never trained on.

The run starts from a model folder's ``weights.npz`` (the shipped default when none is
given), mixes the user's crops with synthetic ones (``real_fraction`` of the crops are the
user's) so that nothing learnt before is forgotten, and keeps the starting model's decoding
thresholds.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from particlesnn.errors import InputError
from particlesnn.training.data import Sample, to_sample

#: Defaults of a fine-tuning run (the web page and ``particlesnn train --finetune`` use them).
DEFAULTS = {"minutes": 10.0, "threads": 2, "lr": 2e-4, "batch": 8, "crop": 160,
            "n_synth": 600, "real_fraction": 0.5}


def training_scale(labels: np.ndarray, largest_px: float = 40.0, smallest: float = 0.25) -> float:
    """The resampling factor at which the network sees a user image's particles.

    The detector looks at an image at full size and shrunk by 1/2 and 1/4
    (:mod:`particlesnn.segment.neural`): particles up to about ``largest_px`` px across are
    found at full size, larger ones on a shrunk copy. So an image whose particles have a
    median equivalent-circle diameter ``d`` (px) above ``largest_px`` is trained on shrunk by
    ``largest_px / d`` (at least ``smallest``), any other at full size. Returns 1.0 for an
    image without particles.
    """
    from particlesnn.matching import equivalent_diameters

    d = equivalent_diameters(np.asarray(labels))
    if d.size == 0:
        return 1.0
    med = float(np.median(d))
    return 1.0 if med <= largest_px else max(smallest, largest_px / med)


def resample(image: np.ndarray, labels: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Image (area / cubic interpolation, as the analysis) and labels (nearest) resampled by
    ``scale`` (> 1 enlarges)."""
    import cv2

    if abs(scale - 1.0) < 1e-6:
        return image, labels
    rows, cols = image.shape
    new = (max(8, round(cols * scale)), max(8, round(rows * scale)))
    img = cv2.resize(np.asarray(image, np.float32), new,
                     interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    lab = cv2.resize(np.asarray(labels, np.int32), new, interpolation=cv2.INTER_NEAREST)
    return img, lab


def user_samples(dataset: str | Path, part: str = "train", scale: int = 1) -> list[Sample]:
    """Training samples from a data set (``part``: ``"train"``, ``"heldout"``, ``"all"``),
    resampled by :func:`training_scale`; targets ``scale`` times finer (the network's
    ``out_scale``, :func:`~particlesnn.training.data.to_sample`)."""
    from particlesnn.model.registry import read_dataset

    out = []
    for it in read_dataset(dataset, part):
        img, lab = resample(it["image"], it["labels"], training_scale(it["labels"]))
        out.append(to_sample(img, lab, f"user/{it['name']}", scale=scale))
    return out


def _shipped_height_model() -> str | None:
    """Name of the shipped height-map model (the default's ``config.json`` ``height_model``),
    or None when the default names none or it is not shipped."""
    from particlesnn.model import WEIGHTS_DIR

    config = WEIGHTS_DIR / "default" / "config.json"
    name = json.loads(config.read_text()).get("height_model") if config.is_file() else None
    return str(name) if name and (WEIGHTS_DIR / str(name)).is_dir() else None


def shipped_start(datasets: list[str | Path]) -> str:
    """The shipped model to start from when none is named: the shipped height-map model when
    most images of the data sets are height maps in nm (with a pixel size), since the analysis
    ran those on it; else ``"default"``."""
    from particlesnn.model.registry import dataset_json

    images = [im for d in datasets for im in json.loads(dataset_json(d).read_text()).get("images", [])]
    heights = sum(1 for im in images if im.get("pixel_size_nm") and (im.get("unit") or "nm") == "nm")
    name = _shipped_height_model()
    return name if name and 2 * heights > len(images) else "default"


def finetune(datasets: list[str | Path], out: str | Path, *, base: str | Path | None = None,
             minutes: float = DEFAULTS["minutes"], epochs: float | None = None,
             threads: int = DEFAULTS["threads"], lr: float = DEFAULTS["lr"],
             batch: int = DEFAULTS["batch"], crop: int = DEFAULTS["crop"],
             n_synth: int = DEFAULTS["n_synth"], real_fraction: float = DEFAULTS["real_fraction"],
             seed: int = 0, workers: int | None = None, progress=None,
             data: list[str | Path] | None = None, freeze_bn: bool = True,
             name: str = "particlesnn-unet-finetuned") -> Path:
    """Fine-tune a detector on corrected images and export it as a model folder.

    Parameters
    ----------
    datasets : data sets written by ``particlesnn dataset export`` (their training part is
        used; the held-out part only for validation loss).
    out : model folder to write (``model.onnx``, ``config.json``, ``thresholds.json``,
        ``weights.npz``, ``checkpoint.pt``, ``train.log.json``).
    base : model folder / checkpoint / shipped name to start from; None or ``"shipped"`` =
        the shipped model that analyses images of this kind (:func:`shipped_start`).
    minutes : wall-clock budget of the optimisation steps, min (``epochs`` instead when given:
        passes over the synthetic pool).
    threads : torch threads (2 = the two cores of a small server).
    lr : peak learning rate (lower than training from scratch: the weights are adapted, not
        relearnt).
    n_synth : synthetic images mixed in (256 px; made in the background while training runs
        when more than ``4 * batch``); with a ``minutes`` budget at most one per second of it.
    real_fraction : share of the crops taken from the user's images (0..1).
    progress : callback, see :func:`particlesnn.training.train.train`.
    freeze_bn : keep the starting model's batch-norm statistics (see ``train``).
    data : further training sources (as ``particlesnn train --data``).

    A model fine-tuned from the shipped default on plain images keeps the default's
    ``height_model`` link: height maps still run on the shipped height-map model.

    Returns the model folder. Raises ``InputError`` when the data sets hold no training image.
    """
    from particlesnn.training.train import load_checkpoint, resolve_weights, train

    shipped = shipped_start(datasets) if base in (None, "shipped") else None
    start = resolve_weights(shipped or base)
    # fail early (InputError) on an unusable starting point; its maps' scale sets the targets'
    scale = load_checkpoint(start)[0].out_scale
    samples: list[Sample] = []
    val: list[Sample] = []
    for d in datasets:
        samples += user_samples(d, "train", scale)
        val += user_samples(d, "heldout", scale)
    if not samples:
        raise InputError(datasets[0] if datasets else None,
                         "no training image: a data set needs at least 2 corrected images "
                         "(every 4th is held out for evaluation)")
    base_dir = start.parent
    th = None
    if (base_dir / "thresholds.json").is_file():
        th = json.loads((base_dir / "thresholds.json").read_text())
    if epochs is None:  # about one synthetic image per second of budget is enough variety
        n_synth = min(int(n_synth), max(4 * batch, round(60 * minutes)))
    if workers is None:
        workers = max(1, min(2, os.cpu_count() or 1))
    folder = train(list(data or []), out, minutes=None if epochs else minutes, epochs=epochs,
                   finetune=start, n_synth=n_synth, crop=crop, batch=batch, lr=lr,
                   real_fraction=real_fraction, threads=threads, workers=workers, seed=seed + 17,
                   samples=samples, val_samples=val, thresholds=th, progress=progress, name=name,
                   n_val_synth=4, freeze_bn=freeze_bn)
    link = _shipped_height_model() if shipped == "default" else None
    cfg_path = Path(folder) / "config.json"
    if link and cfg_path.is_file():
        # adapted to plain images only: height maps stay with the shipped height-map model
        cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "height_model": link},
                                       indent=1))
    return folder


def main(argv: list[str] | None = None) -> None:
    """``python -m particlesnn.training.finetune DATASET OUT [--minutes M] [--base MODEL]
    [--threads N] [--progress FILE]``: one fine-tuning run (the web service starts it in a
    child process). ``--progress`` receives the latest progress dict as JSON (replaced
    atomically about every 10 steps)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m particlesnn.training.finetune")
    ap.add_argument("dataset", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--base", default=None)
    ap.add_argument("--minutes", type=float, default=DEFAULTS["minutes"])
    ap.add_argument("--threads", type=int, default=DEFAULTS["threads"])
    ap.add_argument("--n-synth", type=int, default=DEFAULTS["n_synth"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", default=None)
    a = ap.parse_args(argv)
    prog = Path(a.progress) if a.progress else None

    def report(d: dict) -> None:
        if prog is not None:
            tmp = prog.with_name(prog.name + ".tmp")
            tmp.write_text(json.dumps(d))
            tmp.replace(prog)

    finetune(a.dataset, a.out, base=a.base, minutes=a.minutes, threads=a.threads,
             n_synth=a.n_synth, seed=a.seed, progress=report)


if __name__ == "__main__":
    main()
