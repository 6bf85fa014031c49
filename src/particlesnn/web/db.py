"""Persistence of the web service: SQLite through SQLAlchemy.

Tables
------
``sets``    one upload (one or many files) with the analysis options chosen for it.
``images``  one uploaded file: its job state, summary and the current label-image version.
``edits``   the edit log: who changed which particles of which image, when, and how
            (delete, add, redraw, merge, split, import, undo). Each edit makes a new label-image
            version; an image's current version, when not 0, is its annotation (a correction)
            and goes into the training data set (:mod:`particlesnn.web.dataset`).
``trainings`` fine-tuning runs started from the web page (:mod:`particlesnn.web.learning`).

Array data (label images, levelled height maps) live as files under the data folder; the
database holds only the server-generated ids that name them.
"""
from __future__ import annotations

import datetime as _dt
import json
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

#: Job states of an image.
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


def new_id() -> str:
    """An unguessable id (22 url-safe characters, 128 random bits)."""
    return secrets.token_urlsafe(16)


def utcnow() -> str:
    """Current UTC time as ISO 8601 text (seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


class Base(DeclarativeBase):
    pass



class SetRow(Base):
    """One upload: a set of images analysed with the same options."""

    __tablename__ = "sets"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    created: Mapped[str] = mapped_column(String(32), default=utcnow)
    name: Mapped[str] = mapped_column(String(200), default="")
    user: Mapped[str] = mapped_column(String(100), default="")
    options_json: Mapped[str] = mapped_column(Text, default="{}")
    images: Mapped[list["ImageRow"]] = relationship(
        back_populates="set", order_by="ImageRow.position", cascade="all, delete-orphan"
    )

    @property
    def options(self) -> dict[str, Any]:
        return json.loads(self.options_json or "{}")


class ImageRow(Base):
    """One uploaded file and its analysis job."""

    __tablename__ = "images"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    set_id: Mapped[str] = mapped_column(ForeignKey("sets.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    original_name: Mapped[str] = mapped_column(String(255))
    stored_name: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    cols: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[str] = mapped_column(String(32), default=utcnow)
    started: Mapped[str] = mapped_column(String(32), default="")
    finished: Mapped[str] = mapped_column(String(32), default="")
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    version: Mapped[int] = mapped_column(Integer, default=0)
    summary_json: Mapped[str] = mapped_column(Text, default="{}")
    warnings_json: Mapped[str] = mapped_column(Text, default="[]")
    info_json: Mapped[str] = mapped_column(Text, default="{}")
    set: Mapped[SetRow] = relationship(back_populates="images")

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads(self.summary_json or "{}")

    @property
    def warnings(self) -> list[str]:
        return json.loads(self.warnings_json or "[]")

    @property
    def info(self) -> dict[str, Any]:
        return json.loads(self.info_json or "{}")


class EditRow(Base):
    """One entry of the edit log.

    ``version`` is the label-image version the edit produced; ``parent`` the version it was
    applied to. An undo entry has ``action == "undo"``, ``version`` = the version restored and
    ``parent`` = the version undone.
    """

    __tablename__ = "edits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id"), index=True)
    created: Mapped[str] = mapped_column(String(32), default=utcnow)
    user: Mapped[str] = mapped_column(String(100), default="")
    client: Mapped[str] = mapped_column(String(100), default="")
    action: Mapped[str] = mapped_column(String(16))
    payload_json: Mapped[str] = mapped_column(Text, default="{}")
    parent: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    count_before: Mapped[int] = mapped_column(Integer, default=0)
    count_after: Mapped[int] = mapped_column(Integer, default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": self.created,
            "user": self.user,
            "client": self.client,
            "action": self.action,
            "payload": json.loads(self.payload_json or "{}"),
            "parent": self.parent,
            "version": self.version,
            "count_before": self.count_before,
            "count_after": self.count_after,
        }


class TrainingRow(Base):
    """One fine-tuning run ("Improve the model with my corrections")."""

    __tablename__ = "trainings"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    created: Mapped[str] = mapped_column(String(32), default=utcnow)
    user: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    minutes: Mapped[float] = mapped_column(Float, default=10.0)
    phase: Mapped[str] = mapped_column(String(200), default="")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    started: Mapped[str] = mapped_column(String(32), default="")
    finished: Mapped[str] = mapped_column(String(32), default="")
    model_id: Mapped[str] = mapped_column(String(64), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    result_json: Mapped[str] = mapped_column(Text, default="{}")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "created": self.created, "user": self.user, "status": self.status,
                "minutes": self.minutes, "phase": self.phase, "progress": self.progress,
                "started": self.started, "finished": self.finished, "model_id": self.model_id,
                "error": self.error, "result": json.loads(self.result_json or "{}")}


def make_sessionmaker(db_path: Path) -> sessionmaker:
    """Engine + session factory for the SQLite file ``db_path`` (created if missing).

    WAL journal and a 30 s busy timeout let many request threads and the worker share it.
    """
    engine = create_engine(
        f"sqlite:///{db_path}",
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_pre_ping=True,
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    Base.metadata.create_all(engine)
    return sessionmaker(bind=engine, expire_on_commit=False)
