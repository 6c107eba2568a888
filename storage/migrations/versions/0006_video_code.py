"""A camera's VIDEO_CODE for the provincial uplink (issue 17).

Table 4's VIDEO_CODE must be the code the province knows the camera by (9-digit enterprise
code + 0132 + 7-digit serial); when the NVR's own channel ID is not in that form, the
camera is given the province's code here.  Each alarm keeps the VIDEO_CODE its Table 4
records carry ("" → the camera had none: not reported); alarms from before this revision
were sent with their channel ID.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "uplink_video_code",
                sa.String(length=20),
                nullable=False,
                server_default=sa.text("''"),
            )
        )
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "uplink_video_code",
                sa.String(length=36),
                nullable=False,
                server_default=sa.text("''"),
            )
        )
    op.execute("UPDATE alarms SET uplink_video_code = video_code")


def downgrade() -> None:
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.drop_column("uplink_video_code")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("uplink_video_code")
