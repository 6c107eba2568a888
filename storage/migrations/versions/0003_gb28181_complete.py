"""GB28181 completion (issue 13): tables of cascade, subscriptions, device alarms and
playback/download jobs.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


# --- download jobs (playback control and download) -------------------------------------


def _create_download_jobs() -> None:
    utc = storage.models.UtcDateTime(timezone=True)
    op.create_table(
        "download_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=20), nullable=False),
        sa.Column("device_id", sa.String(length=20), nullable=False),
        sa.Column(
            "source",
            sa.Enum("device", "recording", name="downloadsource", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("start", utc, nullable=False),
        sa.Column("end", utc, nullable=False),
        sa.Column("speed", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "queued",
                "running",
                "done",
                "failed",
                "cancelled",
                "expired",
                name="downloadstate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("bytes_received", sa.BigInteger(), nullable=False),
        sa.Column("reached", utc, nullable=True),
        sa.Column("file_size", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("gaps", sa.Integer(), nullable=False),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("object_key", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("updated_at", utc, nullable=False),
        sa.Column("finished_at", utc, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("download_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_download_jobs_state", ["state"], unique=False)
        batch_op.create_index(
            "ix_download_jobs_channel_created", ["channel_id", "created_at"], unique=False
        )


def _drop_download_jobs() -> None:
    with op.batch_alter_table("download_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_download_jobs_channel_created")
        batch_op.drop_index("ix_download_jobs_state")
    op.drop_table("download_jobs")


# --- cascade (channels per superior, classified channels) ----------------------------------


def _create_cascade() -> None:
    utc = storage.models.UtcDateTime(timezone=True)
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secrecy", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "cascade_upstreams",
        sa.Column("upstream_id", sa.String(length=20), nullable=False),
        sa.Column("all_channels", sa.Boolean(), nullable=False),
        sa.Column("updated_at", utc, nullable=False),
        sa.PrimaryKeyConstraint("upstream_id"),
    )
    op.create_table(
        "cascade_channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("upstream_id", sa.String(length=20), nullable=False),
        sa.Column("channel_id", sa.String(length=20), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("upstream_id", "channel_id"),
    )
    with op.batch_alter_table("cascade_channels", schema=None) as batch_op:
        batch_op.create_index("ix_cascade_channels_upstream_id", ["upstream_id"], unique=False)


def _drop_cascade() -> None:
    with op.batch_alter_table("cascade_channels", schema=None) as batch_op:
        batch_op.drop_index("ix_cascade_channels_upstream_id")
    op.drop_table("cascade_channels")
    op.drop_table("cascade_upstreams")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("secrecy")


# --- device alarms and mobile positions (subscriptions, device alarms) ---------------------


def _create_device_alarms() -> None:
    utc = storage.models.UtcDateTime(timezone=True)
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "device_alarms",
        sa.Column("id", big_id, nullable=False),
        sa.Column("device_pk", sa.Integer(), nullable=True),
        sa.Column("device_id", sa.String(length=20), nullable=False),
        sa.Column("source_id", sa.String(length=20), nullable=False),
        sa.Column("channel_pk", sa.Integer(), nullable=True),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("method", sa.Integer(), nullable=False),
        sa.Column("alarm_type", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("alarm_time", utc, nullable=True),
        sa.Column("alarm_time_text", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("received_at", utc, nullable=False),
        sa.Column("reset_at", utc, nullable=True),
        sa.Column("reset_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["channel_pk"], ["channels.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["device_pk"], ["devices.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"]),
        sa.ForeignKeyConstraint(["reset_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("device_alarms", schema=None) as batch_op:
        batch_op.create_index("ix_device_alarms_device_pk", ["device_pk"], unique=False)
        batch_op.create_index(
            "ix_device_alarms_org_received", ["org_id", "received_at"], unique=False
        )
        batch_op.create_index(
            "ix_device_alarms_source_received", ["source_id", "received_at"], unique=False
        )
    op.create_table(
        "device_positions",
        sa.Column("id", big_id, nullable=False),
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.String(length=20), nullable=False),
        sa.Column("at", utc, nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("speed", sa.Float(), nullable=True),
        sa.Column("direction", sa.Float(), nullable=True),
        sa.Column("altitude", sa.Float(), nullable=True),
        sa.Column("received_at", utc, nullable=False),
        sa.ForeignKeyConstraint(["device_pk"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("device_positions", schema=None) as batch_op:
        batch_op.create_index("ix_device_positions_device_pk", ["device_pk"], unique=False)
        batch_op.create_index("ix_device_positions_target_at", ["target_id", "at"], unique=False)


def _drop_device_alarms() -> None:
    with op.batch_alter_table("device_positions", schema=None) as batch_op:
        batch_op.drop_index("ix_device_positions_target_at")
        batch_op.drop_index("ix_device_positions_device_pk")
    op.drop_table("device_positions")
    with op.batch_alter_table("device_alarms", schema=None) as batch_op:
        batch_op.drop_index("ix_device_alarms_source_received")
        batch_op.drop_index("ix_device_alarms_org_received")
        batch_op.drop_index("ix_device_alarms_device_pk")
    op.drop_table("device_alarms")


# --- audio in recordings ---------------------------------------------------------------------


def _add_recording_audio() -> None:
    with op.batch_alter_table("recording_segments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "audio_codec", sa.String(length=8), nullable=False, server_default=sa.text("''")
            )
        )


def _drop_recording_audio() -> None:
    with op.batch_alter_table("recording_segments", schema=None) as batch_op:
        batch_op.drop_column("audio_codec")


def upgrade() -> None:
    _create_download_jobs()
    _create_cascade()
    _create_device_alarms()
    _add_recording_audio()


def downgrade() -> None:
    _drop_recording_audio()
    _drop_device_alarms()
    _drop_cascade()
    _drop_download_jobs()
