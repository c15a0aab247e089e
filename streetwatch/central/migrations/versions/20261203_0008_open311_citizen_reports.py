"""Citizen reports through Open311 POST: a case's source (camera or citizen), the reports with
their reporter's private contact and the reviewer's verification, and the Open311 clients' keys
(hashed, revocable).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 13:40:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=16), nullable=False, server_default="camera"))
    op.create_table(
        "open311_clients",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_open311_clients")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_open311_clients_key_hash")),
    )
    op.create_table(
        "citizen_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("service_code", sa.String(length=32), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("address_string", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("media_sha256", sa.String(length=64), nullable=True),
        sa.Column("media_url", sa.String(length=2000), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("device_id", sa.String(length=100), nullable=False),
        sa.Column("account_id", sa.String(length=100), nullable=False),
        sa.Column("reporter_key", sa.String(length=64), nullable=True),
        sa.Column("joined_existing", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_citizen_reports_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["client_id"], ["open311_clients.id"], name=op.f("fk_citizen_reports_client_id_open311_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_citizen_reports")),
        sa.UniqueConstraint("token", name=op.f("uq_citizen_reports_token")),
    )
    op.create_index(op.f("ix_citizen_reports_case_id"), "citizen_reports", ["case_id"], unique=False)
    op.create_index(op.f("ix_citizen_reports_reporter_key"), "citizen_reports", ["reporter_key"], unique=False)
    op.create_index(
        "ix_citizen_reports_client_created", "citizen_reports", ["client_id", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_citizen_reports_client_created", table_name="citizen_reports")
    op.drop_index(op.f("ix_citizen_reports_reporter_key"), table_name="citizen_reports")
    op.drop_index(op.f("ix_citizen_reports_case_id"), table_name="citizen_reports")
    op.drop_table("citizen_reports")
    op.drop_table("open311_clients")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("source")
