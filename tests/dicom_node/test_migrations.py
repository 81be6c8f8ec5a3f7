"""Alembic migrations: a fresh SQLite and a fresh PostgreSQL migrate to head, ORM in sync."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from dicom_node.db import Base, Database
from dicom_node.migrate import current_revision, head_revision, schema_diffs


def _check(db: Database) -> None:
    db.upgrade()
    db.upgrade()  # idempotent: a restart runs it again
    assert current_revision(db.engine) == head_revision()
    assert schema_diffs(db.engine) == []
    assert set(Base.metadata.tables) <= set(inspect(db.engine).get_table_names())


def test_sqlite_fresh_to_head(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    _check(db)
    db.dispose()


def test_sqlite_created_without_migrations_is_adopted(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    Base.metadata.create_all(db.engine)  # what the node did before migrations existed
    _check(db)
    db.dispose()


@pytest.mark.postgres
def test_postgres_fresh_to_head(pg_url):
    db = Database(pg_url)
    _check(db)
    db.dispose()
