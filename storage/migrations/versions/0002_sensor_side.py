"""Sensor side: gateways, installations, points, readings and aggregates, warning episodes
with their history, contacts, notifications, offline supervision, recording bookmarks.

The 0001 placeholders ``sensors``, ``readings`` and ``warnings`` were never written by any
release, so they are dropped and made anew rather than altered column by column.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 08:26:01.925023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _drop_placeholders() -> None:
    with op.batch_alter_table("warnings", schema=None) as batch_op:
        batch_op.drop_index("ix_warnings_sensor_pk")
        batch_op.drop_index("ix_warnings_org_id")
    op.drop_table("warnings")
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_index("ix_readings_sensor_at")
    op.drop_table("readings")
    with op.batch_alter_table("sensors", schema=None) as batch_op:
        batch_op.drop_index("ix_sensors_org_id")
    op.drop_table("sensors")


def _create_placeholders() -> None:
    utc = storage.models.UtcDateTime(timezone=True)
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
        sa.Column("last_reading_at", utc, nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    with op.batch_alter_table("sensors", schema=None) as batch_op:
        batch_op.create_index("ix_sensors_org_id", ["org_id"], unique=False)
    op.create_table(
        "readings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sensor_pk", sa.Integer(), nullable=False),
        sa.Column("at", utc, nullable=False),
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
        sa.Column("raised_at", utc, nullable=False),
        sa.Column("escalated_at", utc, nullable=True),
        sa.Column("cleared_at", utc, nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"]),
        sa.ForeignKeyConstraint(["sensor_pk"], ["sensors.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("warnings", schema=None) as batch_op:
        batch_op.create_index("ix_warnings_org_id", ["org_id"], unique=False)
        batch_op.create_index("ix_warnings_sensor_pk", ["sensor_pk"], unique=False)


def upgrade() -> None:
    _drop_placeholders()
    op.create_table(
        "recording_bookmarks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=20), nullable=False),
        sa.Column("channel_id", sa.String(length=20), nullable=False),
        sa.Column("at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("ref", sa.String(length=36), nullable=False),
        sa.Column("snapshot_key", sa.String(length=255), nullable=False),
        sa.Column("created_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("recording_bookmarks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_bookmarks_camera_at", ["device_id", "channel_id", "at"], unique=False
        )

    op.create_table(
        "supervision_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("generated_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "period_start"),
    )
    op.create_table(
        "installations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "tank_area",
                "warehouse",
                "process_unit",
                "loading_rack",
                "pipeline",
                "other",
                name="installationkind",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("process", sa.String(length=32), nullable=False),
        sa.Column("major_hazard", sa.Boolean(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("created_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_installations_org_id"), ["org_id"], unique=False)

    op.create_table(
        "offline_daily",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("subject", sa.String(length=8), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("offline_s", sa.Float(), nullable=False),
        sa.Column("longest_offline_s", sa.Float(), nullable=False),
        sa.Column("monitored_s", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("day", "subject", "subject_id"),
    )
    with op.batch_alter_table("offline_daily", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_offline_daily_day"), ["day"], unique=False)
        batch_op.create_index(batch_op.f("ix_offline_daily_org_id"), ["org_id"], unique=False)

    op.create_table(
        "org_contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column(
            "duty",
            sa.Enum(
                "safety_dept",
                "hq",
                "industry_regulator",
                "emergency_bureau",
                "industry_dept",
                "monitoring_center",
                name="duty",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("webhook_url", sa.String(length=500), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("org_contacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_org_contacts_org_id"), ["org_id"], unique=False)

    op.create_table(
        "sensor_gateways",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "protocol",
            sa.Enum(
                "modbus_tcp",
                "modbus_rtu",
                "opcua",
                "mqtt",
                "http_push",
                name="gatewayprotocol",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("ident_code", sa.String(length=32), nullable=True),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_seen_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ident_code"),
    )
    with op.batch_alter_table("sensor_gateways", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sensor_gateways_org_id"), ["org_id"], unique=False)

    op.create_table(
        "sensors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("installation_id", sa.Integer(), nullable=True),
        sa.Column("gateway_id", sa.Integer(), nullable=True),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("range_min", sa.Float(), nullable=True),
        sa.Column("range_max", sa.Float(), nullable=True),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("levels", sa.JSON(), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_reading_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("fault", sa.String(length=32), nullable=False),
        sa.Column("slow", sa.Boolean(), nullable=False),
        sa.Column("slow_count", sa.Integer(), nullable=False),
        sa.Column("created_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["gateway_id"], ["sensor_gateways.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["installation_id"], ["installations.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "tag"),
    )
    with op.batch_alter_table("sensors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sensors_gateway_id"), ["gateway_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sensors_installation_id"), ["installation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sensors_org_id"), ["org_id"], unique=False)

    op.create_table(
        "reading_aggregates",
        sa.Column("sensor_pk", sa.Integer(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("bucket", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("last", sa.Float(), nullable=False),
        sa.Column("last_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["sensor_pk"], ["sensors.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sensor_pk", "period", "bucket"),
    )
    op.create_table(
        "readings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sensor_pk", sa.Integer(), nullable=False),
        sa.Column("at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("quality", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(["sensor_pk"], ["sensors.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.create_index("ix_readings_at", ["at"], unique=False, postgresql_using="brin")
        batch_op.create_index("ix_readings_sensor_at", ["sensor_pk", "at"], unique=False)

    op.create_table(
        "sensor_cameras",
        sa.Column("sensor_pk", sa.Integer(), nullable=False),
        sa.Column("channel_pk", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["channel_pk"], ["channels.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sensor_pk"], ["sensors.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sensor_pk", "channel_pk"),
    )
    op.create_table(
        "sensor_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sensor_pk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["sensor_pk"], ["sensors.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sensor_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sensor_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_sensor_events_sensor_pk"), ["sensor_pk"], unique=False)

    op.create_table(
        "warnings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("warning_id", sa.String(length=36), nullable=False),
        sa.Column("sensor_pk", sa.Integer(), nullable=True),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column(
            "level",
            sa.Enum(
                "red", "orange", "yellow", "blue", name="warninglevel", native_enum=False, length=8
            ),
            nullable=False,
        ),
        sa.Column(
            "peak_level",
            sa.Enum(
                "red", "orange", "yellow", "blue", name="warninglevel", native_enum=False, length=8
            ),
            nullable=False,
        ),
        sa.Column("cause", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("raised_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("level_since", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("escalated_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("notice_count", sa.Integer(), nullable=False),
        sa.Column("last_notice_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("onsite_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("relayed_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("cleared_at", storage.models.UtcDateTime(timezone=True), nullable=True),
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
        sa.Column("acknowledged_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("handled_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("feedback", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
        ),
        sa.ForeignKeyConstraint(["sensor_pk"], ["sensors.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("warning_id"),
    )
    with op.batch_alter_table("warnings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_warnings_active"), ["active"], unique=False)
        batch_op.create_index(batch_op.f("ix_warnings_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_warnings_raised_at"), ["raised_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_warnings_sensor_pk"), ["sensor_pk"], unique=False)

    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("warning_pk", sa.Integer(), nullable=True),
        sa.Column("org_id", sa.Integer(), nullable=True),
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
        sa.ForeignKeyConstraint(["warning_pk"], ["warnings.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index("ix_notifications_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_notifications_org_id"), ["org_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_notifications_warning_pk"), ["warning_pk"], unique=False
        )

    op.create_table(
        "warning_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("warning_pk", sa.Integer(), nullable=False),
        sa.Column("at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(["warning_pk"], ["warnings.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("warning_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_warning_events_warning_pk"), ["warning_pk"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("warning_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_warning_events_warning_pk"))

    op.drop_table("warning_events")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_warning_pk"))
        batch_op.drop_index(batch_op.f("ix_notifications_org_id"))
        batch_op.drop_index("ix_notifications_due")

    op.drop_table("notifications")
    with op.batch_alter_table("warnings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_warnings_sensor_pk"))
        batch_op.drop_index(batch_op.f("ix_warnings_raised_at"))
        batch_op.drop_index(batch_op.f("ix_warnings_org_id"))
        batch_op.drop_index(batch_op.f("ix_warnings_active"))

    op.drop_table("warnings")
    with op.batch_alter_table("sensor_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sensor_events_sensor_pk"))
        batch_op.drop_index(batch_op.f("ix_sensor_events_at"))

    op.drop_table("sensor_events")
    op.drop_table("sensor_cameras")
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_index("ix_readings_sensor_at")
        batch_op.drop_index("ix_readings_at", postgresql_using="brin")

    op.drop_table("readings")
    op.drop_table("reading_aggregates")
    with op.batch_alter_table("sensors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sensors_org_id"))
        batch_op.drop_index(batch_op.f("ix_sensors_installation_id"))
        batch_op.drop_index(batch_op.f("ix_sensors_gateway_id"))

    op.drop_table("sensors")
    with op.batch_alter_table("sensor_gateways", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sensor_gateways_org_id"))

    op.drop_table("sensor_gateways")
    with op.batch_alter_table("org_contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_org_contacts_org_id"))

    op.drop_table("org_contacts")
    with op.batch_alter_table("offline_daily", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_offline_daily_org_id"))
        batch_op.drop_index(batch_op.f("ix_offline_daily_day"))

    op.drop_table("offline_daily")
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_installations_org_id"))

    op.drop_table("installations")
    op.drop_table("supervision_reports")
    with op.batch_alter_table("recording_bookmarks", schema=None) as batch_op:
        batch_op.drop_index("ix_bookmarks_camera_at")

    op.drop_table("recording_bookmarks")
    _create_placeholders()
