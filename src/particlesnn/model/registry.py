"""Model registry: trained detectors with their training data, parameters and scores (no torch).

A registry is a folder::

    ROOT/registry.json          {"models": [entry, ...]}  (newest last)
    ROOT/models/<id>/           a model folder (config.json, model.onnx, thresholds.json,
                                weights.npz; checkpoint.pt and train.log.json when trained here)
    ROOT/datasets/<id>/         the data set the model was fine-tuned on (a snapshot)

An entry: ``id``, ``name``, ``created`` (UTC ISO 8601), ``parent`` (id of the starting model,
``"shipped"`` for the shipped default), ``data`` (data-set folder and counts), ``parameters``
(of the training run), ``scores`` (``{"user": {...}, "benchmark": {...}, "parent": {...}}``;
each ``{"iou_f1", "centre_f1", "n_images", ...}``), ``status`` (``"default"``, ``"candidate"``,
``"rolled-back"`` or ``"imported"``), ``note``.

The shipped model is always available as id ``"shipped"`` (it is not copied into the registry);
it is the default while no registered model has status ``"default"``.

Scores: IoU-0.5 F1 and centre-rule F1 (:mod:`particlesnn.evaluate`) of the analysis path
(:func:`particlesnn.segment.segment_oriented` with the model: the synthetic maps oriented as
the analysis orients them, the corrected images as stored, particles bright) on the
held-out part of the user's corrected images and on a small fixed synthetic benchmark
(:func:`benchmark_items`). Promotion rule (:func:`is_better`): at least
:data:`MIN_GAIN` higher IoU-0.5 F1 on the user's held-out images, and at most
:data:`BENCHMARK_MARGIN` lower on the benchmark.

Default location: ``~/.particlesnn/models`` (``PARTICLESNN_MODELS`` overrides); the web
service uses ``DATA/models``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import secrets
import shutil
import threading
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap

#: A candidate must beat the default by at least this IoU-0.5 F1 on the user's held-out images.
MIN_GAIN = 0.0
#: ... and may lose at most this much IoU-0.5 F1 on the synthetic benchmark.
BENCHMARK_MARGIN = 0.02
#: Synthetic benchmark: these presets, BENCHMARK_PER_PRESET images each, BENCHMARK_SIZE px,
#: seeds BENCHMARK_SEED + 100 * preset index + i (not used by training or calibration).
BENCHMARK_PRESETS = ("stm-sparse", "stm-crowded", "stm-tiny", "stm-noisy-lines", "stm-mixed")
BENCHMARK_PER_PRESET = 3
BENCHMARK_SIZE = 256
BENCHMARK_SEED = 9_100_000
SHIPPED = "shipped"
STATUSES = ("default", "candidate", "rolled-back", "imported")
MODEL_FILES = ("config.json", "model.onnx", "thresholds.json", "weights.npz", "train.log.json",
               "scores.json")


def utcnow() -> str:
    """Current UTC time, ISO 8601 (seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def default_root() -> Path:
    """The CLI's registry folder: ``$PARTICLESNN_MODELS`` or ``~/.particlesnn/models``."""
    env = os.environ.get("PARTICLESNN_MODELS")
    return Path(env) if env else Path.home() / ".particlesnn" / "models"


# ------------------------------------------------------------------------------------------
# data sets of corrected images (written by particlesnn.web.dataset / `dataset export`)
# ------------------------------------------------------------------------------------------
def heldout_ids(ids: Iterable[Any]) -> set[str]:
    """Ids (as text) held out for evaluation: sorted as text, every 4th from the first.

    The rule of :mod:`particlesnn.training.data` for every file source, so that training on
    a data set never sees its held-out images.
    """
    ordered = sorted(str(i) for i in ids)
    return {i for k, i in enumerate(ordered) if k % 4 == 0}


def dataset_json(dataset: str | Path) -> Path:
    """The COCO file of a data set (the ``.json`` itself or ``DIR/annotations.json``)."""
    p = Path(dataset)
    if p.is_dir():
        p = p / "annotations.json"
    if not p.is_file():
        raise InputError(p, "no such data set (expected annotations.json written by "
                            "'particlesnn dataset export')")
    return p


def _read_array(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path), np.float32)
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=-1)
    return a.astype(np.float32)


def read_dataset(dataset: str | Path, part: str = "all") -> list[dict]:
    """The images of a data set with their truth.

    Parameters
    ----------
    dataset : data-set folder or its COCO JSON.
    part : ``"train"``, ``"heldout"`` (every 4th sorted id, see :func:`heldout_ids`) or
        ``"all"``.

    Returns
    -------
    list of dicts: ``name``, ``image`` (float32 levelled map, particles bright: heights from
    ``height_file`` when present, else the PNG's grey values), ``labels`` (int32),
    ``pixel_size`` (nm/px or None), ``unit`` (of the heights).
    """
    from particlesnn.export import coco as coco_io

    if part not in ("train", "heldout", "all"):
        raise ValueError(f"part must be train, heldout or all, not {part!r}")
    path = dataset_json(dataset)
    doc = json.loads(path.read_text())
    truth = coco_io.read(path)
    images = {str(im["id"]): im for im in doc.get("images", [])}
    held = heldout_ids(images)
    out = []
    for iid in sorted(images):
        if part != "all" and (iid in held) != (part == "heldout"):
            continue
        im = images[iid]
        src = path.parent / str(im.get("height_file") or im["file_name"])
        if not src.is_file():
            src = path.parent / im["file_name"]
        if not src.is_file():
            raise InputError(src, "image of the data set is missing")
        img = _read_array(src)
        lab = truth.get(im["file_name"])
        if lab is None or lab.shape != img.shape:
            raise InputError(path, f"image {im['file_name']}: no truth of its shape {img.shape}")
        ps = im.get("pixel_size_nm")
        out.append({"name": im["file_name"], "image": img, "labels": np.asarray(lab, np.int32),
                    "pixel_size": float(ps) if ps else None, "unit": im.get("unit") or "nm"})
    return out


def dataset_items(dataset: str | Path, part: str = "heldout") -> list[tuple[HeightMap, np.ndarray]]:
    """``(levelled map, truth labels)`` pairs of a data set, for :func:`evaluate_model`."""
    out = []
    for it in read_dataset(dataset, part):
        ps = (it["pixel_size"], it["pixel_size"]) if it["pixel_size"] else None
        out.append((HeightMap(it["image"].astype(np.float64), pixel_size=ps,
                              unit=it["unit"] if ps else "a.u."), it["labels"]))
    return out


# ------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def benchmark_items(per_preset: int = BENCHMARK_PER_PRESET, size: int = BENCHMARK_SIZE
                    ) -> tuple[tuple[HeightMap, np.ndarray], ...]:
    """The fixed synthetic benchmark: levelled maps (not oriented: :func:`score` orients them
    as the analysis does, with :func:`particlesnn.segment.segment_oriented`) and their truth
    (cached)."""
    from particlesnn.preprocess import level
    from particlesnn.synth import generate

    out = []
    for k, preset in enumerate(BENCHMARK_PRESETS):
        for i in range(per_preset):
            si = generate(preset, BENCHMARK_SEED + 100 * k + i, size=size)
            out.append((level(si.height), si.labels))
    return tuple(out)


def evaluate_model(model: Any, items: Iterable[tuple[HeightMap, np.ndarray]],
                   polarity: str = "bright") -> dict[str, Any]:
    """Scores of a model on ``(levelled map, truth)`` pairs through the analysis path.

    ``model``: a model folder, shipped name or loaded :class:`~particlesnn.model.DetectorModel`.
    ``polarity``: how the maps are oriented (:func:`particlesnn.segment.segment_oriented`):
    "bright" for maps stored particles bright (the corrected images of a data set), "auto" for
    maps as levelled (the synthetic benchmark: the statistic alone turned 2 of its 15 maps
    upside down, the detector's check sets them right).
    Returns ``iou_f1``, ``centre_f1``, ``iou_precision``, ``iou_recall`` (0..1, pooled counts),
    ``n_images``, ``n_true``, ``n_pred``.
    """
    from particlesnn.evaluate import evaluate_set
    from particlesnn.model import DetectorModel, load_model
    from particlesnn.segment import segment_oriented

    m = model if isinstance(model, DetectorModel) else load_model(model)
    pairs = []
    for hm, truth in items:
        _, _, seg = segment_oriented(hm, polarity, "model", model=m)
        pairs.append((seg.labels, truth, seg.scores))
    if not pairs:
        return {"iou_f1": None, "centre_f1": None, "n_images": 0}
    _, o = evaluate_set(pairs, coco=False)
    keys = ("iou_f1", "centre_f1", "iou_precision", "iou_recall", "n_images", "n_true", "n_pred")
    return {k: (round(float(o[k]), 4) if isinstance(o[k], float) else int(o[k])) for k in keys}


def score(model: Any, datasets: str | Path | list | None = None) -> dict[str, Any]:
    """``{"user": scores on the held-out images of the data set(s) (None when there are
    none), "benchmark": scores on :func:`benchmark_items`}`` (see :func:`evaluate_model`)."""
    from particlesnn.model import DetectorModel, load_model

    m = model if isinstance(model, DetectorModel) else load_model(model)
    if datasets is None:
        datasets = []
    elif isinstance(datasets, (str, Path)):
        datasets = [datasets]
    items = [it for d in datasets for it in dataset_items(d, "heldout")]
    user = evaluate_model(m, items) if items else None
    return {"user": user, "benchmark": evaluate_model(m, benchmark_items(), polarity="auto")}


def is_better(new: dict, current: dict, *, min_gain: float = MIN_GAIN,
              margin: float = BENCHMARK_MARGIN) -> tuple[bool, str]:
    """Promotion rule on two :func:`score` results; returns ``(ok, reason)``.

    Better when its user held-out IoU-0.5 F1 exceeds the current one by more than
    ``min_gain`` and its benchmark IoU-0.5 F1 is at most ``margin`` below the current one.
    """
    nu, cu = (new.get("user") or {}).get("iou_f1"), (current.get("user") or {}).get("iou_f1")
    nb, cb = new["benchmark"]["iou_f1"], current["benchmark"]["iou_f1"]
    if nu is None or cu is None:
        return False, "no held-out corrected images to compare on"
    if not nu > cu + min_gain:
        return False, f"not better on your held-out images (F1 {nu:.3f} vs {cu:.3f})"
    if nb < cb - margin:
        return False, (f"worse on the synthetic benchmark (F1 {nb:.3f} vs {cb:.3f}, "
                       f"more than {margin:.2f} lower)")
    return True, (f"better on your held-out images (F1 {nu:.3f} vs {cu:.3f}); benchmark F1 "
                  f"{nb:.3f} vs {cb:.3f}")


# ------------------------------------------------------------------------------------------
# the registry
# ------------------------------------------------------------------------------------------
_ID_RE = re.compile(r"^m-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")


def _new_id() -> str:
    return "m-" + _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class Registry:
    """A folder of model folders with ``registry.json`` (see the module docstring).

    Thread-safe within one process (a lock guards ``registry.json``); the file is replaced
    atomically.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()
        self._lock = threading.RLock()

    # -- storage ----------------------------------------------------------------------------
    @property
    def index(self) -> Path:
        """Path of ``registry.json``."""
        return self.root / "registry.json"

    def _load(self) -> list[dict]:
        if not self.index.is_file():
            return []
        try:
            return list(json.loads(self.index.read_text()).get("models", []))
        except (OSError, ValueError) as err:
            raise InputError(self.index, f"unreadable registry ({err})") from None

    def _save(self, models: list[dict]) -> None:
        self._write_json(self.index, {"models": models})

    def _write_json(self, path: Path, doc: dict) -> None:
        """Write ``doc`` to ``path`` atomically (a temporary file moved over it): a reader in
        another thread or process sees the old file or the new one, never a half-written one."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path)

    def model_dir(self, model_id: str) -> Path:
        """Folder of a model (the shipped default for ``"shipped"``); InputError if unknown."""
        if model_id == SHIPPED:
            from particlesnn.model import WEIGHTS_DIR

            return WEIGHTS_DIR / "default"
        if not _ID_RE.match(str(model_id or "")):
            raise InputError(None, f"no model {model_id!r} in the registry")
        d = self.root / "models" / model_id
        if not d.is_dir():
            raise InputError(None, f"no model {model_id!r} in the registry")
        return d

    def dataset_dir(self, model_id: str) -> Path:
        """Folder for the training-data snapshot of a model."""
        if not _ID_RE.match(str(model_id or "")):
            raise InputError(None, f"no model {model_id!r} in the registry")
        return self.root / "datasets" / model_id

    # -- queries ----------------------------------------------------------------------------
    def list(self) -> list[dict]:
        """All entries, the shipped model first (status ``default`` when no other is)."""
        with self._lock:
            models = self._load()
            shipped_scores = self._shipped_scores()
        has_default = any(m.get("status") == "default" for m in models)
        shipped = {"id": SHIPPED, "name": "shipped default", "created": None, "parent": None,
                   "data": None, "parameters": {}, "scores": shipped_scores,
                   "status": "candidate" if has_default else "default",
                   "note": "the model that comes with particlesnn"}
        return [shipped] + models

    def _shipped_scores(self) -> dict:
        p = self.root / "shipped_scores.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    def get(self, model_id: str) -> dict:
        """One entry; InputError when unknown."""
        for m in self.list():
            if m["id"] == model_id:
                return m
        raise InputError(None, f"no model {model_id!r} in the registry")

    def default_id(self) -> str:
        """Id of the current default model (``"shipped"`` when none was promoted)."""
        for m in self._load():
            if m.get("status") == "default":
                return m["id"]
        return SHIPPED

    def default_path(self) -> Path:
        """Folder of the current default model."""
        return self.model_dir(self.default_id())

    def resolve(self, model: str | None) -> Path:
        """A model folder from an id (``None``/``""``: the current default)."""
        return self.model_dir(model or self.default_id())

    # -- changes ----------------------------------------------------------------------------
    def add(self, model_dir: str | Path, *, name: str = "", parent: str | None = None,
            data: dict | None = None, parameters: dict | None = None,
            scores: dict | None = None, status: str = "candidate", note: str = "",
            move: bool = False, dataset: str | Path | None = None) -> dict:
        """Copy (or ``move``) a model folder into the registry as a new entry; returns it.

        ``dataset``: the data-set folder it was trained on, copied to ``datasets/<id>``
        (its path goes to ``data["snapshot"]``).
        """
        src = Path(model_dir)
        for f in ("config.json", "model.onnx"):
            if not (src / f).is_file():
                raise InputError(src, f"not a model folder (no {f})")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        mid = _new_id()
        dest = self.root / "models" / mid
        dest.parent.mkdir(parents=True, exist_ok=True)
        if move:
            shutil.move(str(src), dest)
        else:
            dest.mkdir()
            for f in MODEL_FILES + ("checkpoint.pt",):
                if (src / f).is_file():
                    shutil.copy2(src / f, dest / f)
        data = dict(data) if data else None
        if dataset is not None:
            ds = Path(dataset)
            ds = ds if ds.is_dir() else ds.parent
            snap = self.root / "datasets" / mid
            shutil.copytree(ds, snap)
            data = dict(data or {})
            data["snapshot"] = str(snap)
            if (snap / "annotations.json").is_file():
                man = json.loads((snap / "annotations.json").read_text()).get("info", {})
                data.update({k: man.get(k) for k in ("images", "particles", "train_images",
                                                     "heldout_images")})
        entry = {"id": mid, "name": name or mid, "created": utcnow(), "parent": parent,
                 "data": data, "parameters": parameters or {}, "scores": scores or {},
                 "status": status, "note": note}
        (dest / "scores.json").write_text(json.dumps(entry["scores"], indent=1))
        with self._lock:
            models = self._load()
            if status == "default":
                for m in models:
                    if m.get("status") == "default":
                        m["status"] = "candidate"
            models.append(entry)
            self._save(models)
        return entry

    def update(self, model_id: str, **fields: Any) -> dict:
        """Change fields of an entry (``scores``, ``note``, ``name``); returns it."""
        with self._lock:
            models = self._load()
            for m in models:
                if m["id"] == model_id:
                    m.update(fields)
                    self._save(models)
                    return m
        raise InputError(None, f"no model {model_id!r} in the registry")

    def set_shipped_scores(self, scores: dict) -> None:
        """Remember the shipped model's scores (benchmark, last user data set)."""
        with self._lock:
            self._write_json(self.root / "shipped_scores.json", scores)

    def promote(self, model_id: str, *, force: bool = False,
                current_scores: dict | None = None) -> tuple[bool, str]:
        """Make ``model_id`` the default if :func:`is_better` than the current default on the
        scores stored with the candidate (``scores["parent"]`` holds the current default's
        scores on the same data unless ``current_scores`` is given), or when ``force``.

        Returns ``(promoted, reason)``; the entry's note records the reason.
        """
        with self._lock:
            entry = self.get(model_id)
            cur = self.default_id()
            if cur == model_id:
                return True, "already the default"
            if not force:
                new = entry.get("scores") or {}
                ref = current_scores or new.get("parent") or {}
                if not new.get("benchmark") or not ref.get("benchmark"):
                    return False, "no scores to compare (evaluate first)"
                ok, reason = is_better(new, ref)
                if not ok:
                    if model_id != SHIPPED:
                        self.update(model_id, note=f"not promoted: {reason}")
                    return False, reason
            else:
                reason = "chosen by the user"
            models = self._load()
            for m in models:
                if m.get("status") == "default":
                    m["status"] = "candidate"
                if m["id"] == model_id:
                    m["status"] = "default"
                    m["note"] = f"default since {utcnow()}: {reason}"
                    m["promoted"] = utcnow()
            self._save(models)
            return True, reason

    def rollback(self) -> str:
        """Retire the current default (status ``rolled-back``); the previous default (the
        most recently promoted other model, else the shipped one) becomes the default again.
        Returns the new default's id."""
        with self._lock:
            models = self._load()
            cur = next((m for m in models if m.get("status") == "default"), None)
            if cur is None:
                raise InputError(None, "nothing to roll back: the shipped model is the default")
            cur["status"] = "rolled-back"
            cur["note"] = f"rolled back {utcnow()}"
            prev = [m for m in models if m is not cur and m.get("promoted")
                    and m.get("status") != "rolled-back"]
            new = SHIPPED
            if prev:
                best = max(prev, key=lambda m: m["promoted"])
                best["status"] = "default"
                new = best["id"]
            self._save(models)
            return new

    def export(self, model_id: str, dest: str | Path) -> Path:
        """Write a model as a ``.zip`` (model files + ``entry.json``) to share; returns it."""
        src = self.model_dir(model_id)
        entry = self.get(model_id)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in MODEL_FILES:
                if (src / f).is_file():
                    zf.write(src / f, f)
            zf.writestr("entry.json", json.dumps(entry, indent=1))
        return dest

    def import_zip(self, path: str | Path, *, name: str = "") -> dict:
        """Add a model from a ``.zip`` made by :meth:`export` (status ``imported``).

        Raises InputError for a file that is not such a zip or whose model does not load.
        """
        import tempfile

        from particlesnn.model import load_model

        path = Path(path)
        try:
            zf = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as err:
            raise InputError(path, f"not a model file (zip): {err}") from None
        with zf, tempfile.TemporaryDirectory(prefix="pnn-model-") as tmp:
            names = set(zf.namelist())
            for f in ("config.json", "model.onnx"):
                if f not in names:
                    raise InputError(path, f"not a particlesnn model file (no {f} inside)")
            total = sum(i.file_size for i in zf.infolist())
            if total > 512 * 1024**2:
                raise InputError(path, "model file unpacks to more than 512 MiB")
            for f in MODEL_FILES + ("entry.json",):
                if f in names:
                    (Path(tmp) / f).write_bytes(zf.read(f))
            load_model(tmp)  # raises InputError when the ONNX file is unusable
            old = {}
            if (Path(tmp) / "entry.json").is_file():
                try:
                    old = json.loads((Path(tmp) / "entry.json").read_text())
                except ValueError:
                    old = {}
            return self.add(tmp, name=name or f"imported {old.get('name') or path.stem}",
                            parent=old.get("parent"), data=old.get("data"),
                            parameters=old.get("parameters") or {},
                            scores=old.get("scores") or {}, status="imported",
                            note=f"imported from {path.name}")


def register_trained(registry: Registry, model_dir: str | Path, datasets: list[str | Path], *,
                     base: str | None = None, parameters: dict | None = None,
                     promote: bool = True, name: str = "", note: str = "",
                     move: bool = False) -> tuple[dict, bool, str]:
    """Score a newly trained model next to the registry's current default, register it, and
    (``promote``) make it the default when :func:`is_better`.

    Scores (:func:`score`): the held-out images of ``datasets`` and the synthetic benchmark,
    for the new model and for the current default (stored as ``scores["parent"]``). The
    first data set is copied into the registry with the model. ``base``: the model the run
    started from (``None`` / ``"default"``: the shipped one).

    Returns ``(entry, promoted, reason)``.
    """
    current_id = registry.default_id()
    new = score(model_dir, datasets)
    cur = score(registry.model_dir(current_id), datasets)
    cur["id"] = current_id
    if current_id == SHIPPED:
        registry.set_shipped_scores({k: v for k, v in cur.items() if k != "id"})
    parent = SHIPPED if base in (None, "", "default", SHIPPED) else str(base)
    entry = registry.add(model_dir, name=name, parent=parent, parameters=parameters or {},
                         scores={**new, "parent": cur}, dataset=datasets[0] if datasets else None,
                         data={"sources": [str(d) for d in datasets]}, note=note, move=move)
    if not promote:
        return entry, False, "not compared for promotion"
    ok, reason = registry.promote(entry["id"])
    return registry.get(entry["id"]), ok, reason
