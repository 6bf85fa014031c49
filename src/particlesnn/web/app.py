"""The web service: FastAPI application factory.

Pages (server-rendered, Jinja2, a little plain JavaScript, no CDN):

* ``/``                upload one or many files (drag and drop) with analysis options;
* ``/sets/{id}``       progress, then every image of an upload with joint statistics and
                       overlaid histograms;
* ``/images/{id}``     one image: map with contours (toggle, zoom, pan), per-particle table,
                       histogram, summary, editing (delete, add, redraw, merge, split, undo),
                       the particles most worth checking (lowest scores, refinement changes);
* ``/models``          learning from corrections: the corrected images, "Improve the model
                       with my corrections" (background fine-tuning with progress), the model
                       registry (scores, promote, roll back, download, upload);
* ``/docs``            the JSON API, rendered locally from ``/openapi.json``.

The JSON API under ``/api`` does everything the pages do. Ids are unguessable
(128 random bits); an image is reachable only through its own id or its set's id.
"""
from __future__ import annotations

import collections
import io
import json
import logging
import re
import shutil
import tempfile
import threading
import zipfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select

from particlesnn.errors import InputError
from particlesnn.pipeline import PROFILES
from particlesnn.web import edits as edit_ops
from particlesnn.web import store
from particlesnn.web.db import (
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    EditRow,
    ImageRow,
    SetRow,
    make_sessionmaker,
    new_id,
)
from particlesnn.web import learning
from particlesnn.web.worker import Worker, analysis_options

log = logging.getLogger("particlesnn.web")
HERE = Path(__file__).resolve().parent

#: Default limits (override with keyword arguments of :func:`create_app`).
DEFAULT_LIMITS = {
    "max_file_bytes": 256 * 1024**2,  # one uploaded file, bytes
    "max_request_bytes": 1024**3,  # one upload request (all files), bytes
    "max_files": 500,  # files per upload
    "max_pixels": 64_000_000,  # rows * cols of one image, px
    "max_annotation_bytes": 64 * 1024**2,  # an uploaded annotation file (JSON, ROI zip, .gwy), bytes
    "max_model_bytes": 64 * 1024**2,  # an uploaded model file (.zip), bytes
    "workers": 1,  # analysis threads
    "train_threads": 2,  # torch threads of a fine-tuning run
}

#: Options a client may set for an upload, with their types.
OPTION_TYPES: dict[str, type] = {
    "method": str,
    "diameter": float,
    "pixel_size": float,
    "polarity": str,
    "min_size": float,
    "max_size": float,
    "include_border": bool,
    "refine": bool,
    "channel": str,
    "level": bool,
    "model": str,
    "profile": str,
}
METHODS = ("model", "threshold", "watershed")
POLARITIES = ("auto", "bright", "dark")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _safe_display_name(name: str) -> str:
    """The client's file name reduced to its last component, printable, at most 200 chars."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '"<>|*?:').strip()
    return (base or "upload")[:200]


def _stored_name(display_name: str) -> str:
    """Server-made stored name ``source.<ext>`` (extension: lower-case, [a-z0-9], <= 10 chars)."""
    suffixes = Path(display_name.lower()).suffixes[-2:]
    ext = "".join(s for s in suffixes if re.fullmatch(r"\.[a-z0-9]{1,10}", s))
    return "source" + ext


def _parse_bool(value: str) -> bool:
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a yes/no value: {value!r}")


def parse_options(fields: dict[str, str]) -> dict[str, Any]:
    """Analysis options from form fields; raises HTTPException 422 on a bad value.

    Numbers are in nm when the scale is known (``pixel_size`` in nm/px), else px.
    Empty fields mean "default".
    """
    out: dict[str, Any] = {}
    for key, typ in OPTION_TYPES.items():
        if key not in fields:
            continue
        raw = str(fields[key]).strip()
        if raw == "" and typ is not bool:
            continue
        if key == "refine" and raw.lower() == "auto":  # the default: height maps in nm only
            continue
        try:
            if typ is bool:
                val: Any = _parse_bool(raw)
            elif typ is float:
                val = float(raw)
                if not np.isfinite(val) or val <= 0:
                    raise ValueError("must be a positive number")
            else:
                val = raw
        except ValueError as err:
            raise HTTPException(422, f"option {key}: {err}") from None
        out[key] = val
    if out.get("method", "threshold") not in METHODS:
        raise HTTPException(422, f"option method: choose one of {', '.join(METHODS)}")
    if out.get("polarity", "auto") not in POLARITIES:
        raise HTTPException(422, f"option polarity: choose one of {', '.join(POLARITIES)}")
    if out.get("profile", "auto") not in PROFILES:
        raise HTTPException(422, f"option profile: choose one of {', '.join(PROFILES)}")
    if "min_size" in out and "max_size" in out and out["min_size"] > out["max_size"]:
        raise HTTPException(422, "option min_size is larger than max_size")
    try:
        analysis_options(out)
    except (TypeError, ValueError) as err:
        raise HTTPException(422, f"options: {err}") from None
    return out


class _BodyLimit:
    """ASGI middleware: refuse request bodies over a limit with 413 (header or streamed count)."""

    def __init__(self, app, limit_for):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope.get("path", ""))
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await _send_json(send, 413, _too_large_msg(int(length), limit))
        seen = 0
        started = False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, _too_large_msg(seen, limit))


class _TooLarge(Exception):
    pass


def _too_large_msg(n: int, limit: int) -> str:
    return (f"upload too large: more than {limit / 1024**2:.1f} MiB "
            f"(received at least {n / 1024**2:.1f} MiB); split it or ask the admin to raise the limit")


async def _one_file_form(request: Request, max_fields: int, default_name: str):
    """Read a multipart form with one file (field ``file``): ``(bytes, safe display name,
    {other field: text})``. A form that cannot be read or has no file is a 422."""
    try:
        form = await request.form(max_files=1, max_fields=max_fields)
    except _TooLarge:
        raise
    except Exception as err:  # noqa: BLE001
        raise HTTPException(422, f"could not read the upload form: {err}") from None
    try:
        f = form.get("file")
        if f is None or not hasattr(f, "read"):
            raise HTTPException(422, "no file in the upload (form field 'file')")
        raw = await f.read()
        fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
        return raw, _safe_display_name(f.filename or default_name), fields
    finally:
        await form.close()


async def _send_json(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------------------
# the application
# ------------------------------------------------------------------------------------------
def create_app(data_dir: str | Path, **limits: Any) -> FastAPI:
    """Build the web service storing everything under ``data_dir``.

    Parameters
    ----------
    data_dir : folder for the SQLite database and all files (created if missing).
    limits : override :data:`DEFAULT_LIMITS`: ``max_file_bytes``, ``max_request_bytes``,
        ``max_annotation_bytes``, ``max_model_bytes`` (bytes), ``max_files``, ``max_pixels``
        (rows x cols, px), ``workers`` (analysis threads), ``train_threads`` (torch threads of
        a fine-tuning run), ``start_worker`` (False: queue only, for tests).

    The model registry lives in ``data_dir/models`` (:mod:`particlesnn.model.registry`).
    """
    data = Path(data_dir).resolve()
    (data / "images").mkdir(parents=True, exist_ok=True)
    start_worker = bool(limits.pop("start_worker", True))
    unknown = set(limits) - set(DEFAULT_LIMITS)
    if unknown:
        raise TypeError(f"unknown limit(s): {', '.join(sorted(unknown))}")
    cfg = {**DEFAULT_LIMITS, **limits}
    sessions = make_sessionmaker(data / "db.sqlite3")
    from particlesnn.model.registry import Registry

    registry = Registry(data / "models")
    worker = Worker(sessions, data, threads=cfg["workers"], registry=registry)
    trainer = learning.Trainer(sessions, data, registry, threads=cfg["train_threads"])
    image_locks: dict[str, threading.Lock] = {}
    locks_guard = threading.Lock()

    def lock_for(image_id: str) -> threading.Lock:
        with locks_guard:
            return image_locks.setdefault(image_id, threading.Lock())

    @asynccontextmanager
    async def lifespan(_app):
        trainer.recover()
        if start_worker:
            worker.start()
        yield
        await run_in_threadpool(trainer.stop)
        if start_worker:
            await run_in_threadpool(worker.stop)

    app = FastAPI(
        title="particlesnn",
        summary="Find, outline and measure nanoparticles in SPM images",
        description=(
            "JSON API of the particlesnn web service. Upload files with `POST /api/sets`, poll "
            "`GET /api/sets/{set_id}` until every image is `done`, then fetch results and "
            "downloads. Ids are unguessable; keep them private unless you mean to share."
        ),
        version=_version(),
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.data_dir = data
    app.state.limits = cfg
    app.state.sessions = sessions
    app.state.worker = worker
    app.state.registry = registry
    app.state.trainer = trainer

    def body_limit(path: str) -> int:
        if path.startswith("/api/images/") and path.endswith("/annotations"):
            return cfg["max_annotation_bytes"]
        if path.startswith("/api/images/"):
            return 4 * 1024**2  # edits are small JSON
        if path == "/api/models/import":
            return cfg["max_model_bytes"]
        return cfg["max_request_bytes"]

    app.add_middleware(_BodyLimit, limit_for=body_limit)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")

    @app.exception_handler(InputError)
    async def _input_error(_request: Request, err: InputError):
        return JSONResponse({"detail": err.problem if err.path is None else str(err)}, 422)

    # -- lookups ----------------------------------------------------------------------------
    def get_set(s, set_id: str) -> SetRow:
        row = s.get(SetRow, set_id) if store.valid_id(set_id) else None
        if row is None:
            raise HTTPException(404, "no such upload (check the link)")
        return row

    def get_image(s, image_id: str) -> ImageRow:
        row = s.get(ImageRow, image_id) if store.valid_id(image_id) else None
        if row is None:
            raise HTTPException(404, "no such image (check the link)")
        return row

    def require_done(row: ImageRow) -> None:
        if row.status != DONE:
            msg = f"analysis not finished: status {row.status}"
            if row.status == FAILED:
                msg = f"analysis failed: {row.error}"
            raise HTTPException(409, msg)

    def folder_of(row: ImageRow) -> Path:
        return store.image_dir(data, row.id)

    def image_json(row: ImageRow) -> dict[str, Any]:
        out = {
            "id": row.id,
            "set_id": row.set_id,
            "name": row.original_name,
            "status": row.status,
            "error": row.error,
            "size_bytes": row.size_bytes,
            "shape": [row.rows, row.cols],
            "created": row.created,
            "started": row.started,
            "finished": row.finished,
            "seconds": row.seconds,
            "version": row.version,
            "summary": row.summary,
            "warnings": row.warnings,
            "info": row.info,
            "page": f"/images/{row.id}",
            "api": f"/api/images/{row.id}",
        }
        if row.status == DONE:
            meta = json.loads((folder_of(row) / "meta.json").read_text())
            out["pixel_size"] = meta.get("pixel_size")
            out["unit"] = meta.get("unit")
            out["channel"] = meta.get("channel")
            out["downloads"] = {k: f"/api/images/{row.id}/{v}" for k, v in DOWNLOADS.items()}
            # which particles the size statistics hold (the page's histogram shows those)
            out["include_border"] = bool(row.set.options.get("include_border", False))
        return out

    def set_json(row: SetRow) -> dict[str, Any]:
        images = [image_json(im) for im in row.images]
        counts = {st: sum(1 for im in images if im["status"] == st)
                  for st in (QUEUED, RUNNING, DONE, FAILED)}
        total = len(images)
        return {
            "id": row.id,
            "name": row.name,
            "created": row.created,
            "options": row.options,
            "images": images,
            "counts": counts,
            "total": total,
            "finished": counts[DONE] + counts[FAILED] == total,
            "progress": (counts[DONE] + counts[FAILED]) / total if total else 1.0,
            "page": f"/sets/{row.id}",
            "downloads": {"zip": f"/api/sets/{row.id}/download.zip",
                          "csv": f"/api/sets/{row.id}/particles.csv"},
        }

    def current_result(row: ImageRow) -> dict[str, Any]:
        labels, scores, particles, summary = store.load_version(folder_of(row), row.version)
        return {
            "id": row.id,
            "version": row.version,
            "shape": list(labels.shape),
            "count": int(scores.shape[0]),
            "summary": summary,
            "table": store.table_json(particles),
            "polygons": store.polygons_json(labels),
            "scores": store.to_jsonable(np.round(scores, 4)),
            "can_undo": row.version != 0,
            "check_first": learning.uncertain_particles(particles),
        }

    # -- pages ------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page_index(request: Request):
        return templates.TemplateResponse(request, "index.html",
                                          {"limits": cfg, "methods": METHODS, "formats": _formats(),
                                           "models": _model_choices()})

    def _model_choices() -> list[dict[str, str]]:
        out = []
        for m in registry.list():
            if m["status"] == "rolled-back":
                continue
            f1 = ((m.get("scores") or {}).get("user") or {}).get("iou_f1")
            out.append({"id": m["id"], "label": f"{m['name']}"
                        + (f" (F1 {f1:.3f} on your held-out images)" if f1 is not None else "")})
        return out

    @app.get("/models", response_class=HTMLResponse, include_in_schema=False)
    def page_models(request: Request):
        return templates.TemplateResponse(request, "models.html", {
            "defaults": {"minutes": learning.DEFAULT_MINUTES, "min": learning.MIN_MINUTES,
                         "max": learning.MAX_MINUTES},
            "margin": _registry_mod().BENCHMARK_MARGIN})

    @app.get("/sets/{set_id}", response_class=HTMLResponse, include_in_schema=False)
    def page_set(request: Request, set_id: str):
        with sessions() as s:
            row = get_set(s, set_id)
            return templates.TemplateResponse(request, "set.html", {"set": set_json(row)})

    @app.get("/images/{image_id}", response_class=HTMLResponse, include_in_schema=False)
    def page_image(request: Request, image_id: str):
        with sessions() as s:
            row = get_image(s, image_id)
            return templates.TemplateResponse(
                request, "image.html", {"image": image_json(row), "set_name": row.set.name})

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def page_docs(request: Request):
        return templates.TemplateResponse(request, "docs.html", {"api": _api_summary(app.openapi())})

    # -- upload -----------------------------------------------------------------------------
    @app.post(
        "/api/sets",
        status_code=201,
        summary="Upload one or many files for analysis",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                  "description": "SPM files or images (any supported format)"},
                        "name": {"type": "string", "description": "name of the upload"},
                        "user": {"type": "string", "description": "who uploads"},
                        "method": {"type": "string", "enum": list(METHODS)},
                        "pixel_size": {"type": "number", "description": "nm/px override"},
                        "diameter": {"type": "number", "description": "typical diameter (nm, px without scale)"},
                        "polarity": {"type": "string", "enum": list(POLARITIES)},
                        "min_size": {"type": "number"}, "max_size": {"type": "number"},
                        "include_border": {"type": "boolean"}, "refine": {"type": "string", "enum": ["auto", "true", "false"],
                                                                    "description": "Gaussian half-height refinement; auto (default): height maps in nm only"},
                        "channel": {"type": "string"}, "level": {"type": "boolean"},
                        "profile": {"type": "string", "enum": list(PROFILES),
                                    "description": "detector profile: auto (by content; height maps in nm stay standard), "
                                                   "standard (STM/AFM, clean images), textured (small particles on a lumpy support, e.g. HAADF-STEM)"},
                    }}}},
            }
        },
        responses={413: {"description": "upload too large"},
                   422: {"description": "no acceptable file, or a bad option"}},
    )
    async def api_upload(request: Request):
        """Store the files, check each by its content, queue the analysis.

        Accepted files are queued at once; unreadable ones are listed under ``rejected`` with
        the reason. When no file is accepted the answer is 413 (all too large) or 422.
        """
        try:
            form = await request.form(max_files=cfg["max_files"], max_fields=100)
        except (HTTPException, _TooLarge):
            raise
        except Exception as err:  # multipart errors
            raise HTTPException(422, f"could not read the upload form: {err}") from None
        try:
            files = [v for k, v in form.multi_items() if k == "files" and hasattr(v, "filename")]
            fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
            if not files:
                raise HTTPException(422, "no file in the upload (form field 'files')")
            options = parse_options(fields)
            if options.get("model"):
                try:
                    registry.get(options["model"])
                except InputError as err:
                    raise HTTPException(422, f"option model: {err.problem}") from None
            name = _safe_display_name(fields.get("name", "")) if fields.get("name") else ""
            user = (fields.get("user") or request.headers.get("x-user") or "")[:100]
            result = await run_in_threadpool(_store_upload, files, options, name, user)
        finally:
            await form.close()
        if not result["images"]:
            too_big = all(r.get("too_large") for r in result["rejected"])
            raise HTTPException(413 if too_big else 422,
                                "; ".join(r["problem"] for r in result["rejected"]))
        worker.notify()
        return JSONResponse(result, 201)

    def _store_upload(files, options: dict, name: str, user: str) -> dict[str, Any]:
        accepted: list[tuple[str, str, Path, int, tuple[int, int]]] = []
        rejected: list[dict[str, Any]] = []
        staging = Path(tempfile.mkdtemp(prefix="upload-", dir=data))
        try:
            staged: list[tuple[str, str, Path, int]] = []
            for i, f in enumerate(files):
                display = _safe_display_name(f.filename or f"file{i + 1}")
                image_id = new_id()
                stored = _stored_name(display)
                path = staging / image_id / stored
                path.parent.mkdir()
                try:
                    size = _copy_limited(f.file, path, cfg["max_file_bytes"])
                except _TooLarge:
                    rejected.append({"file": display, "too_large": True,
                                     "problem": f"{display}: file larger than "
                                                f"{cfg['max_file_bytes'] / 1024**2:.1f} MiB"})
                    continue
                staged.append((image_id, display, path, size))
            sidecars = _pair_sidecars(staged)
            for image_id, display, path, size in staged:
                if path in sidecars:
                    continue
                problem, shape, too_large = _check_content(path, display, options)
                if problem:
                    rejected.append({"file": display, "problem": problem, "too_large": too_large})
                    continue
                accepted.append((image_id, display, path, size, shape))
            if not accepted:
                return {"set_id": None, "images": [], "rejected": rejected}
            with sessions() as s:
                default = accepted[0][1] + (f" and {len(accepted) - 1} more" if len(accepted) > 1 else "")
                srow = SetRow(id=new_id(), name=name or default, user=user,
                              options_json=json.dumps(options))
                s.add(srow)
                for pos, (image_id, display, path, size, shape) in enumerate(accepted):
                    dest = store.image_dir(data, image_id)
                    dest.mkdir(parents=True)
                    shutil.move(str(path), dest / path.name)
                    side = path.with_suffix(".txt")
                    if side != path and side.is_file():  # a JEOL / Hitachi SEM's scale
                        shutil.move(str(side), dest / side.name)
                    s.add(ImageRow(id=image_id, set_id=srow.id, position=pos,
                                   original_name=display, stored_name=path.name,
                                   size_bytes=size, rows=shape[0], cols=shape[1]))
                s.commit()
                set_id = srow.id
            return {
                "set_id": set_id,
                "page": f"/sets/{set_id}",
                "api": f"/api/sets/{set_id}",
                "images": [{"id": a[0], "name": a[1], "status": QUEUED,
                            "page": f"/images/{a[0]}", "api": f"/api/images/{a[0]}"}
                           for a in accepted],
                "rejected": rejected,
                "sidecars": [{"file": d, "for": sidecars[p]} for _, d, p, _ in staged if p in sidecars],
            }
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _pair_sidecars(staged: list[tuple[str, str, Path, int]]) -> dict[Path, str]:
        """The text files of an upload that hold no height map and share their stem with an
        uploaded picture (a JEOL or Hitachi SEM's ``S.txt`` beside ``S.tif``): each is copied
        beside its picture as the stored name's ``.txt``, where the reader finds the scale.
        Returns {text file's staged path: the picture's name}."""
        from particlesnn import io as pio
        from particlesnn.io.image import EXTENSIONS

        pictures = {Path(d).stem.lower(): (d, p) for _, d, p, _ in staged
                    if p.suffix.lower() in EXTENSIONS}
        out: dict[Path, str] = {}
        for _, display, path, _ in staged:
            pic = pictures.get(Path(display).stem.lower())
            if path.suffix.lower() == ".txt" and pic and not pio.readable(path):
                shutil.copyfile(path, pic[1].with_suffix(".txt"))
                out[path] = pic[0]
        return out

    def _check_content(path: Path, display: str, options: dict) -> tuple[str, tuple[int, int], bool]:
        """(problem or "", (rows, cols), too_large) from reading the file by its content."""
        if path.stat().st_size == 0:
            return f"{display}: empty file", (0, 0), False
        from particlesnn import io as pio

        try:
            hm = pio.read(path, channel=options.get("channel"))
            rows, cols = hm.shape
            if rows * cols > cfg["max_pixels"]:
                return (f"{display}: image too large ({cols} x {rows} px = {rows * cols / 1e6:.1f} Mpx; "
                        f"limit {cfg['max_pixels'] / 1e6:.1f} Mpx)"), (rows, cols), True
            pio.validate(hm, path)
        except InputError as err:
            return f"{display}: {err.problem}", (0, 0), False
        except Exception as err:  # noqa: BLE001 - a reader crash means an unreadable file
            return f"{display}: not a readable image or SPM file ({type(err).__name__}: {err})", (0, 0), False
        return "", (rows, cols), False

    # -- sets -------------------------------------------------------------------------------
    @app.get("/api/sets/{set_id}", summary="An upload: progress and every image's status and summary")
    def api_set(set_id: str):
        with sessions() as s:
            return set_json(get_set(s, set_id))

    @app.get("/api/sets/{set_id}/stats", summary="Joint statistics over the finished images of an upload")
    def api_set_stats(set_id: str):
        with sessions() as s:
            row = get_set(s, set_id)
            done = [im for im in row.images if im.status == DONE]
            options = row.options
            tables = {}
            for im in done:
                folder = folder_of(im)
                _, _, particles, _ = store.load_version(folder, im.version)
                meta = json.loads((folder / "meta.json").read_text())
                tables[im.id] = (im.original_name, particles, meta)
        return store.to_jsonable(_joint_stats(tables, options))

    @app.get("/api/sets/{set_id}/particles.csv", summary="All particles of an upload (CSV, column image)")
    def api_set_csv(set_id: str):
        with sessions() as s:
            row = get_set(s, set_id)
            frames = []
            for im in row.images:
                if im.status != DONE:
                    continue
                _, _, particles, _ = store.load_version(folder_of(im), im.version)
                frames.append(particles.assign(image=im.original_name, image_id=im.id))
            name = row.name
        if not frames:
            raise HTTPException(409, "no finished image in this upload yet")
        df = pd.concat(frames, ignore_index=True)
        df = df[["image", "image_id"] + [c for c in df.columns if c not in ("image", "image_id")]]
        return Response(df.to_csv(index=False), media_type="text/csv",
                        headers=_attachment(f"{_stem(name)}_particles.csv"))

    @app.get("/api/sets/{set_id}/download.zip", summary="Every result of an upload as one ZIP")
    def api_set_zip(set_id: str):
        with sessions() as s:
            row = get_set(s, set_id)
            images = [(im.id, im.original_name, im.status, im.error, im.version) for im in row.images]
            name = row.name
            options = row.options
        buf = io.BytesIO()
        used: set[str] = set()
        frames = []
        tables: dict[str, tuple] = {}
        report_items: list[tuple] = []
        summaries: list[dict] = []
        # one name per image: a file name uploaded twice (scan1.gsf from two folders) gets the
        # name of its ZIP folder (scan1_2.gsf) in every table, and its annotation files refer
        # to the map PNG beside them (scan1_2.png), not to the other image's
        seen = collections.Counter(im[1] for im in images)
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("options.json", json.dumps(options, indent=2))
            status_lines = ["image,status,error"]
            for image_id, uploaded, status, error, version in images:
                stem = _unique(_stem(uploaded), used)
                renamed = f"{stem}{Path(uploaded).suffix}" if stem != _stem(uploaded) else uploaded
                original = renamed if seen[uploaded] > 1 else uploaded
                status_lines.append(",".join(_csv_cell(v) for v in (original, status, error)))
                if status != DONE:
                    continue
                folder = store.image_dir(data, image_id)
                labels, scores, particles, summary = store.load_version(folder, version)
                frames.append(particles.assign(image=original))
                meta = json.loads((folder / "meta.json").read_text())
                rows_cols, ps = meta.get("shape") or [None, None], meta.get("pixel_size") or [None, None]
                summaries.append({"image": original, "rows": rows_cols[0], "cols": rows_cols[1],
                                  "pixel_x_nm": ps[0], "pixel_y_nm": ps[1],
                                  **{k: v for k, v in summary.items() if np.isscalar(v) or v is None}})
                tables[image_id] = (original, particles, meta)
                report_items.append((folder, original, labels, particles, summary))
                for kind in ZIP_KINDS:
                    try:
                        payload, ext = _export(kind, folder, renamed, labels, scores, particles, summary)
                    except _ExportMissing:
                        continue
                    zf.writestr(f"{stem}/{stem}{ext}", payload)
            zf.writestr("status.csv", "\n".join(status_lines) + "\n")
            if tables:
                joint = _joint_stats(tables, options)["joint"]
                zf.writestr("summary.csv", _set_summary_csv(summaries, joint))
                try:
                    zf.writestr("report.html", _set_report(report_items, joint, name))
                except _ExportMissing:
                    pass
            if frames:
                df = pd.concat(frames, ignore_index=True)
                df = df[["image"] + [c for c in df.columns if c != "image"]]
                zf.writestr("particles_all.csv", df.to_csv(index=False))
        return Response(buf.getvalue(), media_type="application/zip",
                        headers=_attachment(f"{_stem(name)}.zip"))

    # -- images -----------------------------------------------------------------------------
    @app.get("/api/images/{image_id}", summary="One image: status, summary, warnings, downloads")
    def api_image(image_id: str):
        with sessions() as s:
            return image_json(get_image(s, image_id))

    @app.get("/api/images/{image_id}/result",
             summary="Current result: outlines (px), per-particle table, summary")
    def api_result(image_id: str):
        with sessions() as s:
            row = get_image(s, image_id)
            require_done(row)
            return current_result(row)

    @app.get("/api/images/{image_id}/map.png", summary="The levelled height map as PNG (1 px per px)")
    def api_map(image_id: str):
        with sessions() as s:
            row = get_image(s, image_id)
            require_done(row)
            return FileResponse(folder_of(row) / "map.png", media_type="image/png",
                                headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/images/{image_id}/source", summary="The uploaded file as it was sent")
    def api_source(image_id: str):
        with sessions() as s:
            row = get_image(s, image_id)
            return FileResponse(folder_of(row) / row.stored_name, media_type="application/octet-stream",
                                headers=_attachment(row.original_name))

    @app.get("/api/images/{image_id}/download/{kind}",
             summary="Download: csv, parquet, labelme, via, coco, labels (TIFF), imagej, gwy (Gwyddion, particles as mask), overlay (PNG), report (HTML), map (PNG)")
    def api_download(image_id: str, kind: str, version: int | None = None):
        """``version`` (optional): an earlier version from the edit log (0 = as analysed)."""
        if kind not in EXPORTS:
            raise HTTPException(404, f"unknown download {kind!r}; choose one of {', '.join(EXPORTS)}")
        with sessions() as s:
            row = get_image(s, image_id)
            require_done(row)
            folder, original = folder_of(row), row.original_name
            version = row.version if version is None else version
        if version < 0 or not store.has_version(folder, version):
            raise HTTPException(404, f"no version {version} of this image")
        labels, scores, particles, summary = store.load_version(folder, version)
        if kind == "gwy" and labels.size > GWY_MAX_PIXELS:  # 16 bytes per pixel, built in memory
            raise HTTPException(413, f"the Gwyddion file of a {labels.shape[1]} x {labels.shape[0]} px "
                                     f"image would take {16 * labels.size / 2**20:.0f} MiB; "
                                     "make it with 'particlesnn analyze --gwyddion'")
        try:
            payload, ext = _export(kind, folder, original, labels, scores, particles, summary)
        except _ExportMissing as err:
            raise HTTPException(501, f"{kind} export is not available in this installation ({err})") from None
        return Response(payload, media_type=EXPORTS[kind],
                        headers=_attachment(f"{_stem(original)}{ext}"))

    @app.get("/api/images/{image_id}/edits", summary="The edit log of an image (who, when, what)")
    def api_edits(image_id: str):
        with sessions() as s:
            row = get_image(s, image_id)
            edits = s.scalars(select(EditRow).where(EditRow.image_id == row.id).order_by(EditRow.id))
            return {"id": row.id, "version": row.version, "edits": [e.to_dict() for e in edits]}

    def _commit_version(image_id: str, action: str, payload: dict, labels, scores,
                        user: str, client: str) -> dict[str, Any]:
        """Remeasure, store as a new version, log the edit; caller holds the image lock."""
        with sessions() as s:
            row = get_image(s, image_id)
            folder, options, parent = folder_of(row), row.set.options, row.version
            count_before = int(store.load_version(folder, parent)[1].shape[0])
            top = s.scalar(select(func.max(EditRow.version)).where(EditRow.image_id == row.id)) or 0
        result = _remeasure(folder, labels, scores, options)
        version = top + 1
        store.save_version(folder, version, result.labels, result.scores, result.particles,
                           result.summary)
        with sessions() as s:
            row = get_image(s, image_id)
            row.version = version
            row.summary_json = json.dumps(store.to_jsonable(result.summary))
            s.add(EditRow(image_id=row.id, user=user[:100], client=client[:100], action=action,
                          payload_json=json.dumps(store.to_jsonable(payload)), parent=parent,
                          version=version, count_before=count_before,
                          count_after=int(np.asarray(result.scores).shape[0])))
            s.commit()
            return current_result(row)

    @app.post("/api/images/{image_id}/edits",
              summary="Apply one edit: delete, add, redraw, merge or split (JSON body)",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"type": "object", "required": ["action"], "properties": {
                      "action": {"type": "string", "enum": list(edit_ops.ACTIONS)},
                      "labels": {"type": "array", "items": {"type": "integer"},
                                 "description": "delete: particles; merge: two or more"},
                      "label": {"type": "integer", "description": "redraw/split: the particle"},
                      "polygon": {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                                  "description": "add/redraw: [[x, y], ...] px, corner convention"},
                      "line": {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                               "description": "split: [[x, y], ...] px"},
                      "user": {"type": "string"},
                  }}}}}})
    async def api_edit(image_id: str, request: Request):
        """Apply the edit to the current version; answers the new result (as ``/result``)."""
        try:
            edit = await request.json()
        except _TooLarge:
            raise
        except Exception:  # noqa: BLE001
            raise HTTPException(422, "the body must be JSON: {\"action\": ..., ...}") from None
        if not isinstance(edit, dict):
            raise HTTPException(422, "the body must be a JSON object")
        user = str(edit.pop("user", "") or request.headers.get("x-user") or "")
        client = request.client.host if request.client else ""
        return await run_in_threadpool(_do_edit, image_id, edit, user, client)

    def _do_edit(image_id: str, edit: dict, user: str, client: str):
        with sessions() as s:
            require_done(get_image(s, image_id))
        with lock_for(image_id):
            with sessions() as s:
                row = get_image(s, image_id)
                folder, version = folder_of(row), row.version
            labels, scores, _, _ = store.load_version(folder, version)
            new_labels, new_scores = edit_ops.apply(labels, scores, edit)
            return _commit_version(image_id, str(edit["action"]), edit, new_labels, new_scores,
                                   user, client)

    @app.post("/api/images/{image_id}/undo", summary="Undo the last edit (the log keeps it)")
    def api_undo(image_id: str, request: Request):
        user = request.headers.get("x-user", "")
        client = request.client.host if request.client else ""
        with lock_for(image_id), sessions() as s:
            row = get_image(s, image_id)
            require_done(row)
            if row.version == 0:
                raise HTTPException(409, "nothing to undo: this is the analysis as computed")
            made = s.scalars(select(EditRow).where(EditRow.image_id == row.id,
                                                   EditRow.version == row.version,
                                                   EditRow.action != "undo")).first()
            parent = made.parent if made is not None else 0
            folder = folder_of(row)
            _, scores_now, _, _ = store.load_version(folder, row.version)
            _, scores_back, _, summary = store.load_version(folder, parent)
            s.add(EditRow(image_id=row.id, user=user[:100], client=client[:100], action="undo",
                          payload_json=json.dumps({"undone": row.version}), parent=row.version,
                          version=parent, count_before=int(scores_now.shape[0]),
                          count_after=int(scores_back.shape[0])))
            row.version = parent
            row.summary_json = json.dumps(summary)
            s.commit()
            return current_result(row)

    @app.post(
        "/api/images/{image_id}/annotations",
        summary="Replace the outlines by an edited LabelMe, VIA, COCO, ImageJ ROI or Gwyddion (mask) file, and remeasure",
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {
            "schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"},
                "format": {"type": "string", "enum": ["auto", "labelme", "via", "coco", "imagej", "gwy"]},
                "user": {"type": "string"}}}}}}},
    )
    async def api_annotations(image_id: str, request: Request):
        """Read the outlines from the file (format auto-detected from its content)."""
        raw, display, fields = await _one_file_form(request, 10, "annotations.json")
        fmt = str(fields.get("format") or "auto")
        user = str(fields.get("user") or request.headers.get("x-user") or "")
        client = request.client.host if request.client else ""
        return await run_in_threadpool(_do_import, image_id, raw, fmt, display, user, client)

    def _do_import(image_id: str, raw: bytes, fmt: str, display: str, user: str, client: str):
        with sessions() as s:
            row = get_image(s, image_id)
            require_done(row)
            shape = (row.rows, row.cols)
            original = row.original_name
        if not raw:
            raise HTTPException(422, f"{display}: empty file")
        try:
            meta = json.loads((store.image_dir(data, image_id) / "meta.json").read_text())
        except (OSError, ValueError):
            meta = {}
        frame = (meta.get("file_shape"), meta.get("scanned_region")) if meta.get("file_shape") else None
        labels, fmt = _import_annotations(raw, fmt, display, shape, original, frame)
        n = int(labels.max(initial=0))
        with lock_for(image_id):
            return _commit_version(image_id, "import", {"file": display, "format": fmt, "count": n},
                                   labels, np.ones(n), user, client)

    # -- learning from corrections ----------------------------------------------------------
    def corrections_json() -> dict[str, Any]:
        from particlesnn.web.dataset import corrected_summary

        return corrected_summary(sessions)

    @app.get("/api/corrections", summary="Corrected images (edited or re-imported outlines): who, when, what")
    def api_corrections():
        return corrections_json()

    @app.get("/api/corrections/dataset.zip",
             summary="Every corrected image as a training data set (COCO + images + heights in nm), ZIP")
    def api_dataset_zip():
        from particlesnn.web.dataset import corrected_items, write_dataset

        items = corrected_items(sessions, data)
        if not items:
            raise HTTPException(409, "no corrected image yet: edit or re-import outlines first")
        with tempfile.TemporaryDirectory(prefix="pnn-dataset-", dir=data) as tmp:
            write_dataset(Path(tmp) / "corrections", items)
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for f in sorted((Path(tmp) / "corrections").rglob("*")):
                    if f.is_file():
                        zf.write(f, f.relative_to(tmp))
        return Response(buf.getvalue(), media_type="application/zip",
                        headers=_attachment("particlesnn-corrections.zip"))

    @app.get("/api/models", summary="The model registry: models with scores and status, the running training")
    def api_models():
        return {"models": registry.list(), "default": registry.default_id(),
                "training": trainer.latest(), "corrections": corrections_json()["counts"],
                "rule": {"min_gain": _registry_mod().MIN_GAIN,
                         "benchmark_margin": _registry_mod().BENCHMARK_MARGIN}}

    @app.post("/api/models/finetune", status_code=202,
              summary="Improve the model with my corrections: start a background fine-tuning run",
              openapi_extra={"requestBody": {"required": False, "content": {"application/json": {
                  "schema": {"type": "object", "properties": {
                      "minutes": {"type": "number", "description": "optimisation budget, min (default 10)"},
                      "user": {"type": "string"}}}}}}})
    async def api_finetune(request: Request):
        """Queue a fine-tuning run on every corrected image (409 while another runs)."""
        try:
            body = await request.json() if (await request.body()) else {}
        except Exception:  # noqa: BLE001
            raise HTTPException(422, "the body must be JSON: {\"minutes\": 10}") from None
        if not isinstance(body, dict):
            raise HTTPException(422, "the body must be a JSON object")
        user = str(body.get("user") or request.headers.get("x-user") or "")
        try:
            return await run_in_threadpool(trainer.start, body.get("minutes", learning.DEFAULT_MINUTES), user)
        except learning.Busy as err:
            raise HTTPException(409, str(err)) from None

    @app.get("/api/models/trainings/{training_id}", summary="One fine-tuning run: status and progress")
    def api_training(training_id: str):
        t = trainer.get(training_id) if store.valid_id(training_id) else None
        if t is None:
            raise HTTPException(404, "no such training")
        return t

    @app.post("/api/models/{model_id}/promote",
              summary="Make a model the default (only if better, unless force=true)")
    def api_promote(model_id: str, force: bool = False):
        registry.get(model_id)
        ok, reason = registry.promote(model_id, force=force)
        if not ok:
            raise HTTPException(409, f"not made the default: {reason}")
        return {"default": registry.default_id(), "reason": reason}

    @app.post("/api/models/rollback", summary="Retire the current default; the previous one comes back")
    def api_rollback():
        return {"default": registry.rollback()}

    @app.get("/api/models/{model_id}/download", summary="A model as a .zip file to share")
    def api_model_download(model_id: str):
        entry = registry.get(model_id)
        with tempfile.TemporaryDirectory(prefix="pnn-model-", dir=data) as tmp:
            p = registry.export(model_id, Path(tmp) / "model.zip")
            payload = p.read_bytes()
        name = "particlesnn-shipped-model" if model_id == "shipped" else f"particlesnn-{entry['id']}"
        return Response(payload, media_type="application/zip", headers=_attachment(f"{name}.zip"))

    @app.post("/api/models/import", status_code=201, summary="Add a model file (.zip) shared by another lab",
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {
                  "schema": {"type": "object", "required": ["file"], "properties": {
                      "file": {"type": "string", "format": "binary"}}}}}}})
    async def api_model_import(request: Request):
        raw, display, _fields = await _one_file_form(request, 5, "model.zip")

        def _import():
            with tempfile.TemporaryDirectory(prefix="pnn-import-", dir=data) as tmp:
                path = Path(tmp) / display
                path.write_bytes(raw)
                return registry.import_zip(path)

        return await run_in_threadpool(_import)

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        return {"ok": True}

    return app


def _registry_mod():
    from particlesnn.model import registry

    return registry


def _formats() -> str:
    """Readable list of the supported formats with their extensions (from particlesnn.io)."""
    from particlesnn.io import SUPPORTED

    by_name: dict[str, list[str]] = {}
    for ext, name in SUPPORTED.items():
        if ext[1:].isdigit() and ext != ".001":
            continue
        by_name.setdefault(name, []).append(".0xx" if ext == ".001" else ext)
    return "; ".join(f"{name} {' '.join(exts)}" for name, exts in by_name.items())


def _version() -> str:
    from particlesnn import __version__

    return __version__


def _copy_limited(src, dest: Path, limit: int) -> int:
    """Copy a file object to ``dest`` in 1 MiB chunks; raise _TooLarge past ``limit`` bytes."""
    n = 0
    src.seek(0)
    with open(dest, "wb") as out:
        while chunk := src.read(1024 * 1024):
            n += len(chunk)
            if n > limit:
                raise _TooLarge()
            out.write(chunk)
    return n


def _remeasure(folder: Path, labels: np.ndarray, scores: np.ndarray, options: dict):
    from particlesnn.pipeline import remeasure

    levelled = store.load_levelled(folder)
    # edits are taken as drawn: the upload's size filter is not applied to them again
    opts = {k: v for k, v in options.items() if k not in ("min_size", "max_size")}
    return remeasure(levelled, np.asarray(labels, np.int32), np.asarray(scores, float),
                     analysis_options(opts))


def _stem(name: str) -> str:
    stem = Path(name or "image").name
    for _ in range(2):
        stem = Path(stem).stem if Path(stem).suffix and len(Path(stem).suffix) <= 6 else stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"
    return stem[:100]


def _unique(stem: str, used: set[str]) -> str:
    out, i = stem, 2
    while out in used:
        out, i = f"{stem}_{i}", i + 1
    used.add(out)
    return out


def _csv_cell(v: Any) -> str:
    s = str(v or "")
    return '"' + s.replace('"', '""') + '"' if any(c in s for c in ',"\n') else s


def _attachment(filename: str) -> dict[str, str]:
    from urllib.parse import quote

    ascii_name = re.sub(r"[^A-Za-z0-9._-]+", "_", filename)
    return {"Content-Disposition": f"attachment; filename=\"{ascii_name}\"; "
                                   f"filename*=UTF-8''{quote(filename)}"}


def _api_summary(spec: dict) -> list[dict[str, Any]]:
    """Flatten an OpenAPI spec into rows for the local docs page."""
    rows = []
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            params = [p.get("name") + (" (path)" if p.get("in") == "path" else "")
                      for p in op.get("parameters", [])]
            body = op.get("requestBody", {}).get("content", {})
            fields = []
            for ctype, c in body.items():
                props = c.get("schema", {}).get("properties", {})
                fields += [f"{k} ({ctype.split('/')[-1]})" for k in props]
            rows.append({
                "method": method.upper(),
                "path": path,
                "summary": op.get("summary", ""),
                "description": op.get("description", ""),
                "params": params + fields,
            })
    return rows


# ------------------------------------------------------------------------------------------
# exports (through particlesnn.export) and re-import
# ------------------------------------------------------------------------------------------
EXPORTS = {
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "labelme": "application/json",
    "via": "application/json",
    "coco": "application/json",
    "labels": "image/tiff",
    "imagej": "application/zip",
    "gwy": "application/octet-stream",
    "overlay": "image/png",
    "report": "text/html",
    "map": "image/png",
}
EXPORT_EXT = {
    "csv": ".csv", "parquet": ".parquet", "labelme": ".json", "via": "_via.json",
    "coco": "_coco.json", "labels": "_labels.tif", "imagej": "_rois.zip", "gwy": "_particles.gwy",
    "overlay": "_overlay.png", "report": "_report.html", "map": ".png",
}
DOWNLOADS = {k: f"download/{k}" for k in EXPORTS}
#: Largest image the web service writes as a Gwyddion file (16 bytes per pixel: 256 MiB).
GWY_MAX_PIXELS = 4096 * 4096
ZIP_KINDS = ("csv", "map", "labelme", "via", "coco", "labels", "imagej", "overlay")


class _ExportMissing(Exception):
    pass


def _export(kind: str, folder: Path, original: str, labels: np.ndarray, scores: np.ndarray,
            particles: pd.DataFrame, summary: dict) -> tuple[bytes, str]:
    """Bytes of one download and its file-name ending."""
    ext = EXPORT_EXT[kind]
    if kind == "csv":
        return particles.to_csv(index=False).encode(), ext
    if kind == "parquet":
        buf = io.BytesIO()
        particles.to_parquet(buf, index=False)
        return buf.getvalue(), ext
    from particlesnn.web import exports

    try:
        return exports.export_bytes(kind, folder, original, labels, scores, particles, summary), ext
    except (ImportError, AttributeError) as err:
        raise _ExportMissing(str(err)) from None


def _set_report(items: list[tuple], joint: dict, name: str) -> bytes:
    """HTML report over every finished image of a set (``joint`` statistics at the top)."""
    try:
        from particlesnn.web import exports

        entries = [exports.report_entry(*it) for it in items]
        with tempfile.TemporaryDirectory(prefix="pnn-report-") as tmp:
            out = exports.write_set_report(Path(tmp) / "report.html", entries, joint,
                                           title=f"particlesnn: {name}")
            return out.read_bytes()
    except (ImportError, AttributeError) as err:
        raise _ExportMissing(str(err)) from None


def _import_annotations(raw: bytes, fmt: str, display: str, shape, original: str, frame=None):
    from particlesnn.web import exports

    return exports.import_labels(raw, fmt, display, shape, original, frame)


def _set_summary_csv(summaries: list[dict], joint: dict) -> str:
    """``summary.csv`` of an upload's ZIP, as ``particlesnn analyze`` writes it: one row per
    finished image (its stored summary) and an ``ALL`` row with the ``joint`` statistics."""
    from particlesnn.export.results import counts_as_integers

    scalars = {k: v for k, v in joint.items() if np.isscalar(v) or v is None}
    table = pd.DataFrame(summaries + [{"image": "ALL", **scalars}])
    return counts_as_integers(table).to_csv(index=False)


def _joint_stats(tables: dict[str, tuple[str, pd.DataFrame, dict]], options: dict) -> dict[str, Any]:
    from particlesnn.web import exports

    return exports.joint_stats(tables, options)
