"""Each enterprise or gas station reports upward as its own analysis device (issue 17).

A county node analyses many sites; Tables 2-4 carried one DEVICE_CODE (and the first
enterprise's COMPANY_CODE) for all of them.  A site may now be given the DEVICE_CODE the
province knows its analysis device by; empty, one is derived (``vms.uplink.identity``).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "uplink_device_code",
                sa.String(length=36),
                nullable=False,
                server_default=sa.text("''"),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_column("uplink_device_code")
