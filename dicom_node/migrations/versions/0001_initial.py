"""Initial schema: instance, series, job, delivery, event.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("sop_class", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("calling_ae", sa.String(16), nullable=False),
        sa.Column("series_version", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instance"),
        sa.UniqueConstraint("sop_instance_uid", name="uq_instance_sop_instance_uid"),
    )
    op.create_index("ix_instance_series_uid", "instance", ["series_uid"])
    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("calling_ae", sa.String(16), nullable=False),
        sa.Column("called_ae", sa.String(16), nullable=False),
        sa.Column("body_part", sa.String(64), nullable=False),
        sa.Column("instance_count", sa.Integer(), nullable=False),
        sa.Column("last_received_at", sa.DateTime(), nullable=False),
        sa.Column("assoc_key", sa.String(64), nullable=False),
        sa.Column("association_released", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_series"),
        sa.UniqueConstraint("series_uid", name="uq_series_series_uid"),
    )
    op.create_index("ix_series_assoc_key", "series", ["assoc_key"])
    op.create_index("ix_series_state", "series", ["state"])
    op.create_table(
        "job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("series_version", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("recipe", sa.String(128), nullable=False),
        sa.Column("destinations", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job"),
    )
    op.create_index("ix_job_series_uid", "job", ["series_uid"])
    op.create_index("ix_job_state", "job", ["state"])
    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(128), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_delivery"),
        sa.UniqueConstraint("job_id", "destination", "sop_instance_uid",
                            name="uq_delivery_job_id"),
    )
    op.create_index("ix_delivery_job_id", "delivery", ["job_id"])
    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=True),
        sa.Column("peer", sa.String(128), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_event"),
    )
    op.create_index("ix_event_kind", "event", ["kind"])


def downgrade() -> None:
    for table in ("event", "delivery", "job", "series", "instance"):
        op.drop_table(table)
