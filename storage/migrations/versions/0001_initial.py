"""Initial schema.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Until the first release lands this revision creates the tables from the
models; it is regenerated as explicit operations before the schema freezes.
"""

from __future__ import annotations

from alembic import op

from storage.models import Base

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    Base.metadata.create_all(op.get_bind())


def downgrade() -> None:
    Base.metadata.drop_all(op.get_bind())
