"""The review desk: a user's interface language, a case's decision time (undo window), inspection
visits with an assignee, result, note and photo, and the unreviewed cases beside each hotspot.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 11:30:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locale", sa.String(length=16), nullable=True))
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("inspections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignee", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("result", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("photo_sha256", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_inspections_photo_sha256"), ["photo_sha256"], unique=False)
    with op.batch_alter_table("hotspots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unreviewed_count", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("hotspots", schema=None) as batch_op:
        batch_op.drop_column("unreviewed_count")
    with op.batch_alter_table("inspections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inspections_photo_sha256"))
        for column in ("photo_sha256", "note", "result", "assignee"):
            batch_op.drop_column(column)
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("decided_at")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("locale")
