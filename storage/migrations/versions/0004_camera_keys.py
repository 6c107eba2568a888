"""Cameras keyed by (device ID, channel ID) (issue 19): recordings name their device.

Recording segments were indexed by the 20-digit channel ID alone, so a second device
listing the same ID shared the first one's history.  Each row now carries its device's
ID, filled from the channel rows: where several devices list the same channel ID, the
oldest channel row (the lowest id: the camera as first catalogued, before any copy) owns
the history.  Rows of channels no longer known keep an empty device ID: only a global
administrator reaches them.  Download jobs of our own recordings get their device too.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The device of the oldest channel row with a table's channel_id ('' when none): the same
# correlated subquery on SQLite and PostgreSQL.
OWNER = """
    COALESCE((
        SELECT d.device_id FROM channels c JOIN devices d ON d.id = c.device_pk
        WHERE c.channel_id = {table}.channel_id ORDER BY c.id LIMIT 1
    ), '')
"""


def upgrade() -> None:
    with op.batch_alter_table("recording_segments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "device_id", sa.String(length=20), nullable=False, server_default=sa.text("''")
            )
        )
        batch_op.drop_index("ix_recording_channel_start")
        batch_op.create_index(
            "ix_recording_camera_start", ["device_id", "channel_id", "start"], unique=False
        )
    op.execute(
        f"UPDATE recording_segments SET device_id = {OWNER.format(table='recording_segments')}"
    )
    op.execute(
        f"UPDATE download_jobs SET device_id = {OWNER.format(table='download_jobs')} "
        "WHERE device_id = ''"
    )


def downgrade() -> None:
    with op.batch_alter_table("recording_segments", schema=None) as batch_op:
        batch_op.drop_index("ix_recording_camera_start")
        batch_op.create_index("ix_recording_channel_start", ["channel_id", "start"], unique=False)
        batch_op.drop_column("device_id")
