"""Database schema and engine: the node's single source of truth and its job coordinator.

Why: SQLite (WAL) for the embedded node, PostgreSQL for several machines, same ORM code.
On SQLite every transaction starts with BEGIN IMMEDIATE so a read that later writes never
hits a "database is locked" upgrade failure; busy_timeout makes writers wait instead of failing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

logger = logging.getLogger(__name__)


def utcnow() -> dt.datetime:
    """Naive UTC timestamp (portable between SQLite and PostgreSQL columns)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# Named constraints: migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Instance(Base):
    """One received SOP instance, durably written at `path`."""

    __tablename__ = "instance"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_uid: Mapped[str] = mapped_column(String(64), index=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    sop_class: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    calling_ae: Mapped[str] = mapped_column(String(16))
    series_version: Mapped[int] = mapped_column(Integer, default=1)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Series(Base):
    """A series being received or processed; `version` grows when a late instance re-opens it."""

    __tablename__ = "series"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str] = mapped_column(String(16), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    called_ae: Mapped[str] = mapped_column(String(16), default="")
    body_part: Mapped[str] = mapped_column(String(64), default="")
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    last_received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    assoc_key: Mapped[str] = mapped_column(String(64), default="", index=True)
    source_address: Mapped[str] = mapped_column(String(64), default="", server_default="")
    association_released: Mapped[bool] = mapped_column(Boolean, default=False)
    # receiving | complete | unmatched | queued
    state: Mapped[str] = mapped_column(String(16), default="receiving", index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    rule: Mapped[str | None] = mapped_column(String(128), nullable=True)


class Job(Base):
    """Work for a worker: run a recipe on one series version and deliver the outputs."""

    __tablename__ = "job"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_version: Mapped[int] = mapped_column(Integer, default=1)
    rule: Mapped[str] = mapped_column(String(128))
    recipe: Mapped[str] = mapped_column(String(128))
    destinations: Mapped[list] = mapped_column(JSON, default=list)
    # queued | running | sending | done | failed | dead
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    timings: Mapped[dict] = mapped_column(JSON, default=dict)
    outputs: Mapped[list] = mapped_column(JSON, default=list)


class Delivery(Base):
    """Per-instance, per-destination delivery status of a job's outputs."""

    __tablename__ = "delivery"
    __table_args__ = (UniqueConstraint("job_id", "destination", "sop_instance_uid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    destination: Mapped[str] = mapped_column(String(128))
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    # pending (not tried yet) | sent | failed (last attempt failed, will be retried) |
    # dead (retries exhausted: dead-lettered, last_error says why)
    status: Mapped[str] = mapped_column(String(32), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Event(Base):
    """Audit of bad input and refused work (non-DICOM data, missing tags, refused peers)."""

    __tablename__ = "event"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[str] = mapped_column(Text)
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    peer: Mapped[str | None] = mapped_column(String(128), nullable=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def _sqlite_setup(engine: Engine) -> None:
    """WAL, busy timeout, and BEGIN IMMEDIATE (pysqlite's own transaction handling disabled)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        # NORMAL (WAL): a commit survives a killed process; on power loss the last commits
        # may roll back, and dicom_node/reconcile.py re-indexes their (fsynced) files at the
        # next start. FULL flushed on every C-STORE and halved receive speed.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """Engine + session factory for one URL; create it once per process (not at import)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            _sqlite_setup(self.engine)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    def upgrade(self) -> None:
        """Migrate the schema to the newest alembic revision (what start-up runs)."""
        from dicom_node.migrate import upgrade_to_head

        upgrade_to_head(self.engine)

    def create_all(self) -> None:
        """Kept for callers and tests: the schema now comes from the migrations."""
        self.upgrade()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        with self._factory() as s, s.begin():
            yield s

    def dispose(self) -> None:
        self.engine.dispose()


def record_event(
    db: Database, kind: str, detail: str, *, sop_instance_uid: str | None = None,
    peer: str | None = None,
) -> None:
    """Record bad input or a refusal; never raises (the caller is already handling a failure)."""
    try:
        with db.session() as s:
            s.add(Event(kind=kind, detail=detail[:4000], sop_instance_uid=sop_instance_uid,
                        peer=peer))
    except Exception:
        logger.exception("could not record event %s: %s", kind, detail)
