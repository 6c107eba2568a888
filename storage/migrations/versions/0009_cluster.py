"""Cluster nodes and camera leases (issue 14): which node is alive, which holds which camera.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = storage.models.UtcDateTime(timezone=True)
    op.create_table(
        "cluster_nodes",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("started_at", when, nullable=False),
        sa.Column("heartbeat_at", when, nullable=False),
        sa.Column("load", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_cluster_nodes_heartbeat_at", "cluster_nodes", ["heartbeat_at"])
    op.create_table(
        "camera_leases",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.String(length=20), nullable=False),
        sa.Column("channel_id", sa.String(length=20), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("since", when, nullable=False),
        sa.PrimaryKeyConstraint("kind", "device_id", "channel_id"),
    )
    op.create_index("ix_camera_leases_node", "camera_leases", ["node"])


def downgrade() -> None:
    op.drop_index("ix_camera_leases_node", table_name="camera_leases")
    op.drop_table("camera_leases")
    op.drop_index("ix_cluster_nodes_heartbeat_at", table_name="cluster_nodes")
    op.drop_table("cluster_nodes")
