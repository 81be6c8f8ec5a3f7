"""Alembic environment: runs against the connection handed over by `dicom_node.migrate`.

Why: the node migrates its own database at start-up with no alembic.ini on disk; the engine
(with its SQLite pragmas) is the one the node uses, passed via `config.attributes`.
"""

from __future__ import annotations

from alembic import context

from dicom_node.db import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # `alembic -x url=...` from a shell
        from sqlalchemy import create_engine

        url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
            "sqlalchemy.url")
        with create_engine(url).connect() as conn:
            _run(conn)
        return
    _run(connection)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
