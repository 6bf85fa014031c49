"""Run the per-image analysis serially, in local processes or on a Dask cluster.

One task = one input image: read, analyse (:func:`particlesnn.pipeline.analyze_file`), write
the image's files into the output folder, and last, atomically, its record
``S.summary.json`` (:func:`particlesnn.export.results.write_image_record`). Every image
writes only its own files, so workers never contend on one file; the task returns the small
record (a dict of a few kB), never label images. The set files are built afterwards from the
files on disk (:func:`particlesnn.export.results.write_set_outputs_from_records`).

Modes of :func:`run_images`:

* ``"serial"``: in this process (the detector uses ``PARTICLESNN_THREADS`` threads, default
  up to 4);
* ``"processes"``: a local process pool of ``workers`` processes, each running the detector on
  one thread (``PARTICLESNN_THREADS=1``) with its own onnxruntime session;
* ``"dask"``: a Dask distributed cluster: ``scheduler="local"`` starts a ``LocalCluster`` of
  ``workers`` single-threaded worker processes, ``scheduler="tcp://host:8786"`` connects to a
  running scheduler (``dask scheduler`` / ``dask worker``, or dask-jobqueue / dask-kubernetes).
  Workers need ``particlesnn`` installed and the input and output folders at the same paths
  (a shared file system). Dask is imported only here, only for this mode (``particlesnn[dist]``).

At most ``max_in_flight`` tasks (default 4 per worker) are submitted at a time, so the
parent's memory does not grow with the number of images.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from particlesnn.errors import InputError

__all__ = ["ImageTask", "MODES", "process_image", "run_images", "mode_for", "tasks_for",
           "check_scheduler"]

MODES = ("serial", "processes", "dask")


@dataclass(frozen=True)
class ImageTask:
    """One image to analyse.

    path : input file (absolute path, readable by the worker).
    name : output stem (``S`` of ``S.particles.csv`` ...), unique within the run.
    out : output folder (absolute path, writable by the worker).
    options : :class:`particlesnn.pipeline.AnalyzeOptions` as a dict (``to_dict()``).
    index : position of the image in the input list (the set files keep this order).
    """

    path: str
    name: str
    out: str
    options: dict
    index: int = 0


def mode_for(workers: int, scheduler: str | None) -> str:
    """The mode :func:`run_images` uses for ``--workers`` and ``--scheduler``: ``"dask"`` with
    a scheduler, else ``"processes"`` for more than one worker, else ``"serial"``."""
    if scheduler:
        return "dask"
    return "processes" if workers > 1 else "serial"


def process_image(task: ImageTask) -> dict[str, Any]:
    """Analyse one image and write its files; return its record.

    The record is that of :func:`particlesnn.export.results.image_record` plus ``status``
    (``"done"``), ``index`` and ``pid`` (the process that did the work). An input that cannot
    be analysed (:class:`InputError`, or any other error, e.g. lack of memory, reported as
    ``"unexpected error (...)"``) gives ``{"image", "source", "status": "failed", "problem",
    "index"}`` and no record (a ``--resume`` tries it again). Any earlier record of the
    image is removed first, so an interrupted rewrite never leaves a stale complete record.
    """
    from particlesnn.export.results import (image_record, record_path, write_image_outputs,
                                            write_image_record)
    from particlesnn.pipeline import AnalyzeOptions, analyze_file

    out = Path(task.out)
    f = Path(task.path)
    rec_file = record_path(out, task.name)
    if rec_file.exists():
        rec_file.unlink()
    try:
        opts = AnalyzeOptions.from_dict(dict(task.options))
        r = analyze_file(f, opts)
        if r.name != task.name:  # two inputs with the same stem: name them apart
            r.output_name = task.name
        paths = write_image_outputs(r, out, gwyddion=opts.gwyddion)
        rec = image_record(r, paths, out, source=str(f))
        write_image_record(out, rec)
    except InputError as err:
        return {"image": task.name, "source": str(f), "status": "failed",
                "problem": err.problem, "index": task.index}
    except Exception as err:  # a bug or lack of memory on one image must not end a long run
        return {"image": task.name, "source": str(f), "status": "failed",
                "problem": f"unexpected error ({type(err).__name__}: {err})",
                "index": task.index}
    return {**rec, "status": "done", "index": task.index, "pid": os.getpid()}


def _init_worker() -> None:
    """Process-pool worker start: the detector and OpenCV on one thread each."""
    os.environ["PARTICLESNN_THREADS"] = "1"
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - opencv is a core dependency
        pass


def _dask_task(task: ImageTask) -> dict[str, Any]:
    """:func:`process_image` on a Dask worker (one detector thread per task)."""
    _init_worker()
    return process_image(task)


def run_images(tasks: Iterable[ImageTask], mode: str = "serial", workers: int = 1,
               scheduler: str | None = None, *,
               max_in_flight: int | None = None) -> Iterator[dict[str, Any]]:
    """Run :func:`process_image` over ``tasks``; yield each record as it completes.

    Parameters
    ----------
    tasks : the images (:class:`ImageTask`), in input order.
    mode : ``"serial"``, ``"processes"`` or ``"dask"`` (see the module docstring).
    workers : processes (``"processes"``), or worker processes of a local Dask cluster
        (``"dask"`` with ``scheduler="local"``); ignored for a remote scheduler.
    scheduler : ``"dask"`` mode: ``"local"`` or a scheduler address ``tcp://host:port``.
    max_in_flight : most tasks submitted at once (default 4 x workers, at least 8).

    Records come in completion order (serial: input order); each carries its ``index``.
    Only the caller (the parent process) logs or appends anything; workers only write their
    own image's files. Raises :class:`InputError` for an unknown mode, for ``"dask"`` without
    dask installed, or a scheduler that cannot be reached.
    """
    if mode not in MODES:
        raise InputError(None, f"unknown run mode {mode!r} (use one of {', '.join(MODES)})")
    workers = max(1, int(workers))
    window = max_in_flight or max(8, 4 * workers)
    if mode == "serial":
        for t in tasks:
            yield process_image(t)
    elif mode == "processes":
        yield from _run_processes(tasks, workers, window)
    else:
        yield from _run_dask(tasks, workers, scheduler or "local", window)


def _run_processes(tasks: Iterable[ImageTask], workers: int, window: int):
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    it = iter(tasks)
    # "spawn": fresh interpreters. Forking a parent that runs threads (the progress bar, a
    # Dask client, onnxruntime) can deadlock the children on a lock held at fork time.
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, mp_context=ctx)
    finished = False
    try:
        pending = set()
        for t in it:
            pending.add(pool.submit(process_image, t))
            if len(pending) >= window:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.add(pool.submit(process_image, nxt))
        finished = True
    finally:  # interrupted: drop the queued tasks, do not wait for the running ones
        pool.shutdown(wait=finished, cancel_futures=not finished)


def _import_dask():
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise InputError(None, "--scheduler needs Dask distributed: install particlesnn[dist] "
                               "(pip install 'particlesnn[dist]')") from None
    return distributed


def check_scheduler(scheduler: str) -> None:
    """Raise :class:`InputError` unless ``scheduler`` is ``"local"`` or an address
    (``tcp://host:port``, ``tls://...``) and Dask distributed is installed."""
    if scheduler != "local" and "://" not in scheduler:
        raise InputError(None, f"scheduler {scheduler!r} is neither 'local' nor an address like "
                               "tcp://host:8786")
    _import_dask()


def _client(scheduler: str, workers: int):
    """(client, cluster or None) for ``"local"`` or a scheduler address."""
    check_scheduler(scheduler)
    distributed = _import_dask()
    import logging

    if scheduler == "local":
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                           processes=True, dashboard_address=None,
                                           silence_logs=logging.ERROR)
        return distributed.Client(cluster), cluster
    try:
        return distributed.Client(scheduler, timeout="20s"), None
    except (OSError, TimeoutError) as err:
        raise InputError(None, f"cannot reach the Dask scheduler at {scheduler} ({err})") from None


def _run_dask(tasks: Iterable[ImageTask], workers: int, scheduler: str, window: int):
    distributed = _import_dask()
    import uuid

    client, cluster = _client(scheduler, workers)
    run = uuid.uuid4().hex[:8]  # task keys unique to this run on a shared scheduler

    def submit(t: ImageTask):
        return client.submit(_dask_task, t, pure=False, key=f"particlesnn-{run}-{t.index}")

    try:
        it = iter(tasks)
        first = []
        for t in it:
            first.append(submit(t))
            if len(first) >= window:
                break
        ac = distributed.as_completed(first)
        for fut in ac:
            rec = fut.result()
            fut.release()
            yield rec
            nxt = next(it, None)
            if nxt is not None:
                ac.add(submit(nxt))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def tasks_for(files: Sequence[Path], names: Sequence[str], out: Path,
              options: dict) -> list[ImageTask]:
    """:class:`ImageTask` list for input ``files`` named ``names``, writing into ``out``
    (paths made absolute, so that workers elsewhere find them on a shared file system)."""
    out = Path(out).resolve()
    return [ImageTask(path=str(Path(f).resolve()), name=n, out=str(out), options=dict(options),
                      index=i) for i, (f, n) in enumerate(zip(files, names))]

