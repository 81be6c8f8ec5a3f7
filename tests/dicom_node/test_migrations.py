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
    db = Database(f"sqlite:///{tmp_path / 'new.sqlite3'}")
    Base.metadata.create_all(db.engine)  # today's schema, no alembic_version
    _check(db)
    db.dispose()


def test_sqlite_pre_migration_schema_is_adopted_and_upgraded(tmp_path):
    """A database the node made before migrations existed (revision 0001's tables, no
    alembic_version) is stamped 0001 and upgraded; old rows get their source address."""
    from alembic import command
    from sqlalchemy import text

    from dicom_node.migrate import alembic_config

    db = Database(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    with db.engine.connect() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text(
            "INSERT INTO series (series_uid, study_uid, modality, description, calling_ae, "
            "called_ae, body_part, instance_count, last_received_at, assoc_key, "
            "association_released, state, version) VALUES ('1.2', '1.3', 'CT', '', 'A', 'B', "
            "'', 1, '2026-01-01 00:00:00', '10.0.0.7/abcd', 0, 'receiving', 1)"))
        conn.commit()
    _check(db)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT source_address FROM series")).scalar() == "10.0.0.7"
    db.dispose()


@pytest.mark.postgres
def test_postgres_fresh_to_head(pg_url):
    db = Database(pg_url)
    _check(db)
    db.dispose()
