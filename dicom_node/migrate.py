"""Schema migrations at start-up: `upgrade_to_head(engine)` and the ORM-vs-database check.

Why: the schema of a long-lived hospital database must evolve without hand-written SQL; every
process (node, stand-alone worker) runs `upgrade head` before touching tables. On PostgreSQL
an advisory lock serializes machines starting at the same time; on SQLite the migration runs
in one BEGIN IMMEDIATE transaction.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from dicom_node.db import Base

logger = logging.getLogger(__name__)

_LOCK_KEY = 0x76706574  # "vpet": pg_advisory_lock key for migrations
MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_to_head(engine: Engine) -> None:
    """Migrate the database to the newest revision (no-op when already there)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
            conn.commit()
        try:
            _upgrade(conn)
        finally:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                conn.commit()


def _upgrade(conn: Connection) -> None:
    cfg = alembic_config(conn)
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables and "job" in tables:
        # created by a `create_all` (the node before migrations, or a test's): adopt it as
        # the revision its columns show
        columns = {c["name"] for c in inspect(conn).get_columns("series")}
        adopted = "0002" if "source_address" in columns else "0001"
        logger.warning("database has tables but no alembic_version: stamping revision %s",
                       adopted)
        command.stamp(cfg, adopted)
    before = MigrationContext.configure(conn).get_current_revision()
    command.upgrade(cfg, "head")
    conn.commit()
    after = MigrationContext.configure(conn).get_current_revision()
    if before != after:
        logger.info("database migrated %s -> %s", before or "(empty)", after)


def schema_diffs(engine: Engine) -> list:
    """Differences between the ORM models and the live database (empty = in sync)."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))
