"""Initial schema: organisations, users, devices, channels, alarms, recordings, sensors, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 12:31:13.830949
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column(
            "kind",
            sa.Enum(
                "province",
                "city",
                "county",
                "park",
                "enterprise",
                "gas_station",
                name="orgkind",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("code", sa.String(length=36), nullable=False),
        sa.Column("path", sa.String(length=400), nullable=False),
        sa.Column("created_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["organisations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_organisations_path"), ["path"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("receiver", sa.String(length=64), nullable=False),
        sa.Column("table", sa.String(length=8), nullable=False),
        sa.Column("ordering_key", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("image_key", sa.String(length=255), nullable=False),
        sa.Column(
            "state",
            sa.Enum("pending", "sent", "dead", name="outboxstate", native_enum=False, length=8),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("dead_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("requeued_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_due", ["state", "receiver", "next_attempt_at"], unique=False
        )

    op.create_table(
        "recording_segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=20), nullable=False),
        sa.Column("start", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("end", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("object_key", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("container", sa.String(length=8), nullable=False),
        sa.Column("codec", sa.String(length=8), nullable=False),
        sa.Column("is_gap", sa.Boolean(), nullable=False),
        sa.Column("keyframes", sa.JSON(), nullable=False),
        sa.Column("created_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("recording_segments", schema=None) as batch_op:
        batch_op.create_index("ix_recording_channel_start", ["channel_id", "start"], unique=False)

    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "pending", "active", "disabled", name="devicestatus", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("sip_password", sa.String(length=128), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("remote_host", sa.String(length=64), nullable=False),
        sa.Column("remote_port", sa.Integer(), nullable=False),
        sa.Column("expires_s", sa.Integer(), nullable=False),
        sa.Column("charset", sa.String(length=16), nullable=False),
        sa.Column("gb_version", sa.String(length=8), nullable=False),
        sa.Column("manufacturer", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("firmware", sa.String(length=100), nullable=False),
        sa.Column("channel_count", sa.Integer(), nullable=False),
        sa.Column("registered_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("keepalive_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id"),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_org_id"), ["org_id"], unique=False)

    op.create_table(
        "sensors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_reading_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    with op.batch_alter_table("sensors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sensors_org_id"), ["org_id"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "admin",
                "operator",
                "enterprise",
                "uplink",
                name="role",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("manufacturer", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("parent_id", sa.String(length=20), nullable=False),
        sa.Column("civil_code", sa.String(length=20), nullable=False),
        sa.Column("address", sa.String(length=200), nullable=False),
        sa.Column("ptz_type", sa.Integer(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("record_enabled", sa.Boolean(), nullable=False),
        sa.Column("analysis", sa.JSON(), nullable=False),
        sa.Column("record_schedule", sa.JSON(), nullable=False),
        sa.Column("updated_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["device_pk"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_pk", "channel_id"),
    )
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_channels_channel_id"), ["channel_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_channels_device_pk"), ["device_pk"], unique=False)

    op.create_table(
        "device_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["device_pk"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("device_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_device_events_device_pk"), ["device_pk"], unique=False)

    op.create_table(
        "readings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sensor_pk", sa.Integer(), nullable=False),
        sa.Column("at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["sensor_pk"], ["sensors.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.create_index("ix_readings_sensor_at", ["sensor_pk", "at"], unique=False)

    op.create_table(
        "warnings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sensor_pk", sa.Integer(), nullable=True),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column(
            "level",
            sa.Enum(
                "red", "orange", "yellow", "blue", name="warninglevel", native_enum=False, length=8
            ),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("raised_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("escalated_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("cleared_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
        ),
        sa.ForeignKeyConstraint(
            ["sensor_pk"],
            ["sensors.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("warnings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_warnings_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_warnings_sensor_pk"), ["sensor_pk"], unique=False)

    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alarm_id", sa.String(length=36), nullable=False),
        sa.Column("channel_pk", sa.Integer(), nullable=True),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column(
            "profile",
            sa.Enum("enterprise", "gas_station", name="profile", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("alarm_type", sa.String(length=2), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("video_code", sa.String(length=36), nullable=False),
        sa.Column("device_code", sa.String(length=36), nullable=False),
        sa.Column("raised_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("image_key", sa.String(length=255), nullable=False),
        sa.Column("clear_image_key", sa.String(length=255), nullable=False),
        sa.Column("clip_key", sa.String(length=255), nullable=False),
        sa.Column(
            "handling",
            sa.Enum(
                "new",
                "acknowledged",
                "handled",
                "closed",
                name="handlingstate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("false_alarm", sa.Boolean(), nullable=False),
        sa.Column("acknowledged_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_pk"],
            ["channels.id"],
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alarm_id"),
    )
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alarms_channel_pk"), ["channel_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_alarms_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alarms_raised_at"), ["raised_at"], unique=False)

    op.create_table(
        "alarm_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alarm_pk", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["alarm_pk"], ["alarms.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alarm_actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alarm_actions_alarm_pk"), ["alarm_pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alarm_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alarm_actions_alarm_pk"))

    op.drop_table("alarm_actions")
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alarms_raised_at"))
        batch_op.drop_index(batch_op.f("ix_alarms_org_id"))
        batch_op.drop_index(batch_op.f("ix_alarms_channel_pk"))

    op.drop_table("alarms")
    with op.batch_alter_table("warnings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_warnings_sensor_pk"))
        batch_op.drop_index(batch_op.f("ix_warnings_org_id"))

    op.drop_table("warnings")
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_index("ix_readings_sensor_at")

    op.drop_table("readings")
    with op.batch_alter_table("device_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_events_device_pk"))
        batch_op.drop_index(batch_op.f("ix_device_events_at"))

    op.drop_table("device_events")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_channels_device_pk"))
        batch_op.drop_index(batch_op.f("ix_channels_channel_id"))

    op.drop_table("channels")
    op.drop_table("users")
    with op.batch_alter_table("sensors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sensors_org_id"))

    op.drop_table("sensors")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_org_id"))

    op.drop_table("devices")
    with op.batch_alter_table("recording_segments", schema=None) as batch_op:
        batch_op.drop_index("ix_recording_channel_start")

    op.drop_table("recording_segments")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_due")

    op.drop_table("outbox")
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_organisations_path"))

    op.drop_table("organisations")
