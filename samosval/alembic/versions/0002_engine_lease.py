"""The engine lease: one engine in a cluster of processes sharing PostgreSQL (issue 15).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

Once released, never edit this file: add a new revision. Remember HEAD in
samosval/migrations.py and `python -m samosval.migrations schema-sql > schema.sql`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

REAL = sa.Double().with_variant(sa.REAL(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "engine_lease",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", REAL, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("engine_lease")
