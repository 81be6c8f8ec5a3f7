"""Series.source_address: the sending peer's IP, which routing rules match on.

Revision ID: 0002
Revises: 0001

Why: the address travelled inside assoc_key (`<address>/<random>`); a column of its own is
what an admin's SQL and `vpet jobs show` expect. Existing rows get it from assoc_key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("series") as batch:
        batch.add_column(sa.Column("source_address", sa.String(64), nullable=False,
                                   server_default=""))
    series = sa.table("series", sa.column("assoc_key", sa.String),
                      sa.column("source_address", sa.String))
    bind = op.get_bind()
    rows = bind.execute(sa.select(series.c.assoc_key).distinct()).fetchall()
    for (key,) in rows:
        if key and "/" in key:
            bind.execute(series.update().where(series.c.assoc_key == key)
                         .values(source_address=key.split("/", 1)[0]))


def downgrade() -> None:
    with op.batch_alter_table("series") as batch:
        batch.drop_column("source_address")
