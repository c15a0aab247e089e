"""Pending sightings: alerts.case_id may be NULL (a moving camera's unconfirmed sighting).

A patrol pass reports a `sighting`; central opens a case only when another pass confirms the
spot, so until then the stored alert has no case. An index serves the pending-sighting lookup
(violation, state, observed_at).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 00:40:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column("case_id", existing_type=sa.Integer(), nullable=True)
        batch_op.create_index("ix_alerts_pending", ["violation", "state", "observed_at"], unique=False)


def downgrade() -> None:
    # Pending sightings have no case to keep them by: they go with the constraint.
    op.execute("DELETE FROM alerts WHERE case_id IS NULL")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_pending")
        batch_op.alter_column("case_id", existing_type=sa.Integer(), nullable=False)
