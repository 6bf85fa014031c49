"""Background analysis: a small pool of threads that take queued images from the database.

The database is the queue, so nothing is lost when the server stops: on start, images left
``running`` by a stopped server are queued again (resumed) unless they already failed to
finish ``MAX_ATTEMPTS`` times, in which case they are marked failed with the reason.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from pathlib import Path

from sqlalchemy import select

from particlesnn.errors import InputError
from particlesnn.web import store
from particlesnn.web.db import DONE, FAILED, QUEUED, RUNNING, ImageRow, utcnow

log = logging.getLogger("particlesnn.web")

#: An image whose analysis was interrupted this many times is marked failed instead of resumed.
MAX_ATTEMPTS = 2


#: Keys of a set's stored options that are not analysis options (the detector choice).
SERVICE_KEYS = ("model",)


def analysis_options(options: dict):
    """:class:`particlesnn.pipeline.AnalyzeOptions` from the JSON options stored with a set
    (the service's own keys, :data:`SERVICE_KEYS`, left out)."""
    from particlesnn.pipeline import AnalyzeOptions

    return AnalyzeOptions.from_dict({k: v for k, v in options.items() if k not in SERVICE_KEYS})


def run_analysis(path: Path, options: dict, model_dir: Path | None = None):
    """Analyse one stored file; returns the pipeline's ``ImageResult``.

    ``model_dir``: the detector to use (``method="model"``); None = the shipped default.
    """
    from particlesnn.pipeline import analyze_file

    opts = analysis_options(options)
    if model_dir is not None and opts.method == "model":
        opts.model = str(model_dir)
    return analyze_file(path, opts)


class Worker:
    """Thread pool that analyses queued images.

    Parameters
    ----------
    sessions : sqlalchemy sessionmaker bound to the service database.
    data_dir : data folder (images under ``data_dir/images``).
    threads : number of analysis threads (each analyses one image at a time).
    registry : :class:`particlesnn.model.registry.Registry` the detector of a job is taken
        from (the set's ``model`` option: a model id, or empty for the current default).
    """

    def __init__(self, sessions, data_dir: Path, threads: int = 1, registry=None):
        self.sessions = sessions
        self.data_dir = Path(data_dir)
        self.threads = max(1, int(threads))
        self.registry = registry
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._claim_lock = threading.Lock()
        self._pool: list[threading.Thread] = []

    # -- life cycle -------------------------------------------------------------------------
    def recover(self) -> dict[str, int]:
        """Requeue or fail images left ``running`` by a stopped server; returns the counts."""
        resumed = failed = 0
        with self.sessions() as s:
            for row in s.scalars(select(ImageRow).where(ImageRow.status == RUNNING)):
                if row.attempts >= MAX_ATTEMPTS:
                    row.status = FAILED
                    row.error = (f"analysis interrupted {row.attempts} times by a server stop; "
                                 "not retried (the file may be too large for this server)")
                    row.finished = utcnow()
                    failed += 1
                else:
                    row.status = QUEUED
                    row.error = "resumed after a server restart"
                    resumed += 1
            s.commit()
        if resumed or failed:
            log.warning("recovered interrupted jobs: %d resumed, %d failed", resumed, failed)
        return {"resumed": resumed, "failed": failed}

    def start(self) -> None:
        """Recover interrupted jobs and start the threads."""
        self.recover()
        self._stop.clear()
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, name=f"particlesnn-worker-{i}", daemon=True)
            t.start()
            self._pool.append(t)
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the threads to stop after their current image; wait up to ``timeout`` s."""
        self._stop.set()
        self._wake.set()
        for t in self._pool:
            t.join(timeout)
        self._pool.clear()

    def notify(self) -> None:
        """Wake the threads: new images were queued."""
        self._wake.set()

    # -- work -------------------------------------------------------------------------------
    def _claim(self) -> str | None:
        with self._claim_lock, self.sessions() as s:
            row = s.scalars(
                select(ImageRow)
                .where(ImageRow.status == QUEUED)
                .order_by(ImageRow.created, ImageRow.position)
                .limit(1)
            ).first()
            if row is None:
                return None
            row.status = RUNNING
            row.attempts += 1
            row.started = utcnow()
            s.commit()
            return row.id

    def _loop(self) -> None:
        while not self._stop.is_set():
            image_id = self._claim()
            if image_id is None:
                self._wake.wait(timeout=2.0)
                self._wake.clear()
                continue
            self.process(image_id)

    def process(self, image_id: str) -> None:
        """Analyse one claimed image and store its result (or the reason it failed)."""
        t0 = time.perf_counter()
        with self.sessions() as s:
            row = s.get(ImageRow, image_id)
            options = dict(row.set.options)
            original = row.original_name
            folder = store.image_dir(self.data_dir, row.id)
            path = folder / row.stored_name
        model_id = model_dir = None
        try:
            if self.registry is not None and options.get("method", "model") == "model":
                model_id = options.get("model") or self.registry.default_id()
                model_dir = self.registry.model_dir(model_id)
                if model_id == "shipped":
                    model_dir = None  # the pipeline's own (cached) shipped detector
            result = (run_analysis(path, options) if model_dir is None
                      else run_analysis(path, options, model_dir))
            store.save_levelled(folder, result.levelled)
            store.save_version(folder, 0, result.labels, result.scores, result.particles,
                               result.summary)
        except InputError as err:
            self._fail(image_id, f"{original}: {err.problem}")
            return
        except Exception as err:  # noqa: BLE001 - any failure must reach the user, not kill the thread
            log.error("analysis of %s failed:\n%s", image_id, traceback.format_exc())
            self._fail(image_id, f"{original}: analysis failed ({type(err).__name__}: {err})")
            return
        with self.sessions() as s:
            row = s.get(ImageRow, image_id)
            row.status = DONE
            row.error = ""
            row.version = 0
            row.finished = utcnow()
            row.seconds = float(getattr(result, "seconds", 0.0) or (time.perf_counter() - t0))
            row.summary_json = json.dumps(store.to_jsonable(result.summary))
            row.warnings_json = json.dumps([str(w) for w in (result.warnings or [])])
            info = dict(getattr(result, "info", {}) or {})
            info["polarity"] = getattr(result, "polarity", None)
            if model_id is not None:
                info["model_id"] = model_id
            row.info_json = json.dumps(store.to_jsonable(info), default=str)
            s.commit()

    def _fail(self, image_id: str, reason: str) -> None:
        with self.sessions() as s:
            row = s.get(ImageRow, image_id)
            row.status = FAILED
            row.error = reason
            row.finished = utcnow()
            s.commit()
