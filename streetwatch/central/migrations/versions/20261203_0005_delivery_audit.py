"""The end-to-end delivery audit: each alert's box numbering, the boxes' status, streams, losses.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 11:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outbox_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_alerts_delivery", ["edge_id", "outbox_id", "seq"], unique=False)
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("edge_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("outbox_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_dead_letters_delivery", ["edge_id", "outbox_id", "seq"], unique=False)
    op.create_table(
        "edge_boxes",
        sa.Column("edge_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("outbox_id", sa.String(length=64), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("edge_id", name=op.f("pk_edge_boxes")),
    )
    op.create_table(
        "delivery_streams",
        sa.Column("edge_id", sa.String(length=64), nullable=False),
        sa.Column("outbox_id", sa.String(length=64), nullable=False),
        sa.Column("contiguous_seq", sa.BigInteger(), nullable=False),
        sa.Column("highest_seq", sa.BigInteger(), nullable=False),
        sa.Column("gap_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("last_alert_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("edge_id", "outbox_id", name=op.f("pk_delivery_streams")),
    )
    op.create_table(
        "delivery_losses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("edge_id", sa.String(length=64), nullable=False),
        sa.Column("outbox_id", sa.String(length=64), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_losses")),
    )
    with op.batch_alter_table("delivery_losses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_losses_edge_id"), ["edge_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery_losses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_losses_edge_id"))
    op.drop_table("delivery_losses")
    op.drop_table("delivery_streams")
    op.drop_table("edge_boxes")
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index("ix_dead_letters_delivery")
        batch_op.drop_column("seq")
        batch_op.drop_column("outbox_id")
        batch_op.drop_column("edge_id")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_delivery")
        batch_op.drop_column("seq")
        batch_op.drop_column("outbox_id")
