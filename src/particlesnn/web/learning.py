"""Learning from corrections in the web service: fine-tuning runs and the model registry.

"Improve the model with my corrections" (:meth:`Trainer.start`):

1. the corrected images are exported as a data set (:mod:`particlesnn.web.dataset`) into
   ``DATA/models/work/<training id>/dataset``;
2. a child process (``python -m particlesnn.training.finetune``; torch lives only there)
   fine-tunes the service's current default model (the shipped weights until a fine-tuned
   model was promoted, so improvements accumulate run after run) on it within the budget
   (minutes of optimisation, 2 torch threads), writing its progress to a JSON file that this thread copies into the
   ``trainings`` row;
3. the new model is scored next to the current default (held-out corrected images and the
   synthetic benchmark), added to the registry with its data set, and made the default only
   when it is better (:func:`particlesnn.model.registry.is_better`).

One training at a time: a second request while one is queued or running gets a clear refusal.
A run interrupted by a server stop is marked failed at the next start.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from particlesnn.errors import InputError
from particlesnn.model.registry import SHIPPED, Registry, register_trained
from particlesnn.web.db import DONE, FAILED, QUEUED, RUNNING, TrainingRow, utcnow

log = logging.getLogger("particlesnn.web")

#: Budget limits of one fine-tuning run, minutes of optimisation.
MIN_MINUTES, MAX_MINUTES, DEFAULT_MINUTES = 0.01, 240.0, 10.0
#: The training process is stopped when it runs this much longer than its budget, s
#: (start-up, synthetic images, export: about a minute).
OVERTIME_S = 600.0


class Busy(Exception):
    """A training is already queued or running."""


class Trainer:
    """Runs one fine-tuning job at a time in a background thread + child process.

    Parameters
    ----------
    sessions : sqlalchemy sessionmaker of the service database.
    data_dir : the service's data folder.
    registry : the model registry (``DATA/models``).
    threads : torch threads of the training process (2 by default).
    """

    def __init__(self, sessions, data_dir: Path, registry: Registry, threads: int = 2):
        self.sessions = sessions
        self.data_dir = Path(data_dir)
        self.registry = registry
        self.threads = max(1, int(threads))
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        self._stop = threading.Event()

    # -- life cycle -------------------------------------------------------------------------
    def recover(self) -> int:
        """Mark trainings left queued/running by a stopped server as failed; returns the count."""
        n = 0
        with self.sessions() as s:
            for row in s.scalars(select(TrainingRow).where(TrainingRow.status.in_((QUEUED, RUNNING)))):
                row.status = FAILED
                row.error = "interrupted by a server stop; start it again"
                row.finished = utcnow()
                n += 1
            s.commit()
        return n

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a running training (its child process is terminated) and wait for the thread."""
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- queries ----------------------------------------------------------------------------
    def active(self) -> dict | None:
        """The queued or running training, or None."""
        with self.sessions() as s:
            row = s.scalars(select(TrainingRow).where(TrainingRow.status.in_((QUEUED, RUNNING)))
                            .order_by(TrainingRow.created.desc())).first()
            return row.to_dict() if row else None

    def latest(self) -> dict | None:
        """The most recent training (any status), or None."""
        with self.sessions() as s:
            row = s.scalars(select(TrainingRow).order_by(TrainingRow.created.desc(),
                                                         TrainingRow.started.desc())).first()
            return row.to_dict() if row else None

    def get(self, training_id: str) -> dict | None:
        """One training by id, or None."""
        with self.sessions() as s:
            row = s.get(TrainingRow, training_id)
            return row.to_dict() if row else None

    # -- start ------------------------------------------------------------------------------
    def start(self, minutes: float = DEFAULT_MINUTES, user: str = "") -> dict:
        """Queue a fine-tuning run on every corrected image; returns its row as a dict.

        Raises :class:`Busy` when one is already queued or running, ``InputError`` for a bad
        budget, a server without torch, or too few corrected images (at least 2: every 4th is
        held out).
        """
        from particlesnn.web.dataset import corrected_items

        try:
            minutes = float(minutes)
        except (TypeError, ValueError):
            raise InputError(None, f"budget must be a number of minutes, not {minutes!r}") from None
        if not MIN_MINUTES <= minutes <= MAX_MINUTES:
            raise InputError(None, f"budget must lie between {MIN_MINUTES} and {MAX_MINUTES:.0f} minutes")
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise InputError(None, "fine-tuning needs torch on the server: pip install particlesnn[train]")
        with self._lock:
            act = self.active()
            if act is not None:
                raise Busy(f"a training is already {act['status']} (started {act['created']}"
                           f"{' by ' + act['user'] if act['user'] else ''}, "
                           f"{100 * act['progress']:.0f} % done); one at a time: wait for it to finish")
            items = corrected_items(self.sessions, self.data_dir)
            if len(items) < 2:
                raise InputError(None, f"{len(items)} corrected image(s): correct at least 2 images "
                                       "(every 4th is held out to check the new model)")
            with self.sessions() as s:
                row = TrainingRow(user=user[:100], minutes=minutes, status=QUEUED,
                                  phase="queued")
                s.add(row)
                s.commit()
                tid = row.id
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, args=(tid, items, minutes),
                                            name="particlesnn-finetune", daemon=True)
            self._thread.start()
        return self.get(tid)

    # -- the run ----------------------------------------------------------------------------
    def _set(self, tid: str, **fields: Any) -> None:
        with self.sessions() as s:
            row = s.get(TrainingRow, tid)
            for k, v in fields.items():
                setattr(row, k, v)
            s.commit()

    def command(self, dataset: Path, out: Path, minutes: float, progress: Path) -> tuple[list[str], str]:
        """The fine-tuning process's command line and the id of the model it starts from: the
        registry's current default (the shipped model until a fine-tuned one was promoted, or
        when the default has no torch weights to start from, e.g. an imported ONNX-only model)."""
        base_id = self.registry.default_id()
        cmd = [sys.executable, "-m", "particlesnn.training.finetune", str(dataset), "--out", str(out),
               "--minutes", str(minutes), "--threads", str(self.threads), "--progress", str(progress)]
        base = self.registry.model_dir(base_id)
        if base_id != SHIPPED and any((base / f).is_file() for f in ("checkpoint.pt", "weights.npz")):
            cmd += ["--base", str(base)]
        else:
            base_id = SHIPPED
        return cmd, base_id

    def _run(self, tid: str, items: list[dict], minutes: float) -> None:
        from particlesnn.web.dataset import write_dataset

        work = self.registry.root / "work" / tid
        try:
            self._set(tid, status=RUNNING, started=utcnow(), phase="exporting the corrected images")
            ds = work / "dataset"
            man = write_dataset(ds, items, description="particlesnn web corrections")
            out = work / "model"
            prog = work / "progress.json"
            logf = work / "train.log"
            cmd, base_id = self.command(ds, out, minutes, prog)
            env = dict(os.environ)
            src = str(Path(__file__).resolve().parents[2])  # the folder holding particlesnn
            env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            self._set(tid, phase=f"training on {man['train_images']} images "
                                 f"({man['heldout_images']} held out), {minutes:g} min budget")
            with open(logf, "w") as fh:
                self._proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
            t0 = time.time()
            while self._proc.poll() is None:
                if self._stop.wait(1.0):
                    self._proc.terminate()
                    self._proc.wait(10)
                    raise RuntimeError("stopped with the server")
                if time.time() - t0 > 60 * minutes + OVERTIME_S:
                    self._proc.kill()
                    raise RuntimeError("the training process ran far over its budget and was stopped")
                if prog.is_file():
                    try:
                        p = json.loads(prog.read_text())
                    except ValueError:
                        continue
                    phase = ("training" if p.get("phase") == "train" else "saving the model")
                    loss = p.get("loss")
                    self._set(tid, progress=0.9 * float(p.get("fraction", 0.0)),
                              phase=f"{phase}: step {p.get('step')}"
                                    + (f", loss {loss:.3f}" if loss is not None else ""))
            if self._proc.returncode != 0:
                tail = logf.read_text()[-600:] if logf.is_file() else ""
                raise RuntimeError(f"training process failed (exit {self._proc.returncode}): {tail}")
            self._set(tid, progress=0.92, phase="scoring the new and the current model")
            entry, promoted, reason = register_trained(
                self.registry, out, [ds], base=base_id,
                parameters={"minutes": minutes, "threads": self.threads},
                name=f"fine-tuned {utcnow()[:16].replace('T', ' ')}", move=True,
                note=f"started by {self._user(tid) or 'anonymous'}")
            self._set(tid, status=DONE, progress=1.0, finished=utcnow(), model_id=entry["id"],
                      phase="done: " + ("now the default model" if promoted else "kept as a candidate"),
                      result_json=json.dumps({"promoted": promoted, "reason": reason,
                                              "scores": entry["scores"], "data": entry["data"]}))
        except Exception as err:  # noqa: BLE001 - any failure must reach the page
            log.exception("fine-tuning %s failed", tid)
            msg = err.problem if isinstance(err, InputError) else str(err)
            self._set(tid, status=FAILED, finished=utcnow(), error=msg[:2000], phase="failed")
        finally:
            self._proc = None
            shutil.rmtree(work, ignore_errors=True)

    def _user(self, tid: str) -> str:
        d = self.get(tid)
        return d["user"] if d else ""


def uncertain_particles(particles, n: int = 6, min_change: float = 0.2) -> dict[str, list[dict]]:
    """The particles most worth checking by eye (active learning), from a particle table.

    Returns ``{"low_score": [...], "refinement": [...]}``, each at most ``n`` dicts
    ``{"label", "score", "reason"}``:

    * ``low_score``: the lowest detector scores (left empty when every particle has the same
      score, e.g. threshold methods or hand-drawn particles, which score 1);
    * ``refinement``: particles whose refined outline differs most from the detected one,
      compared with the image's typical change: refined / detected area ratio
      (``fit_area_ratio``) off from the median ratio of the image's successful fits by more
      than ``min_change`` (0.2 = 20 %), or a refinement fit that failed or was implausible
      (``fit_status``), largest change first. (The half-height outline of a refined particle
      is smaller than its detected footprint by design, often by half; only particles that
      change unlike the others are worth a look.)
    """
    import numpy as np

    out: dict[str, list[dict]] = {"low_score": [], "refinement": []}
    if particles is None or len(particles) == 0 or "label" not in particles.columns:
        return out
    labels = particles["label"].to_numpy()
    if "score" in particles.columns:
        sc = particles["score"].to_numpy(dtype=float)
        fin = np.isfinite(sc)
        if fin.sum() > 1 and np.nanmax(sc) - np.nanmin(sc) > 1e-6:
            for i in np.argsort(np.where(fin, sc, np.inf))[:n]:
                if not fin[i] or sc[i] >= 1.0:
                    break
                out["low_score"].append({"label": int(labels[i]), "score": round(float(sc[i]), 3),
                                         "reason": f"detector score {sc[i]:.2f}"})
    ratio = (particles["fit_area_ratio"].to_numpy(dtype=float) if "fit_area_ratio" in particles.columns
             else np.full(len(particles), np.nan))
    status = (particles["fit_status"].astype(str).to_numpy() if "fit_status" in particles.columns
              else np.full(len(particles), "nan"))
    why = (particles["fit_reason"].astype(str).to_numpy() if "fit_reason" in particles.columns
           else np.full(len(particles), ""))
    bad = np.isin(status, ("failed", "implausible"))
    good = np.isfinite(ratio) & (ratio > 0)
    typical = float(np.median(ratio[good & ~bad])) if (good & ~bad).sum() >= 3 else 1.0
    change = np.where(good, np.abs(np.log(np.where(good, ratio, 1.0) / typical)), 0.0)
    note = (f" (typical here: {abs(100 * (typical - 1)):.0f} % {'larger' if typical > 1 else 'smaller'})"
            if abs(typical - 1.0) > min_change else "")
    key = change + np.where(bad, 10.0, 0.0)
    for i in np.argsort(-key):
        if len(out["refinement"]) >= n:
            break
        if bad[i]:
            reason = f"refinement {status[i]}" + (f" ({why[i]})" if why[i] not in ("", "nan") else "")
        elif good[i] and abs(ratio[i] / typical - 1.0) > min_change:
            pct = 100 * (ratio[i] - 1.0)
            reason = (f"refined outline {abs(pct):.0f} % {'larger' if pct > 0 else 'smaller'} "
                      f"than detected{note}")
        else:
            break
        sc_i = particles["score"].iloc[i] if "score" in particles.columns else float("nan")
        out["refinement"].append({"label": int(labels[i]),
                                  "score": round(float(sc_i), 3) if np.isfinite(sc_i) else None,
                                  "reason": reason})
    return out
