"""SQLAlchemy models of the cascade: which of our channels each superior platform gets.

A superior (``sip.upstreams``, by its 20-digit id) gets every channel until an admin
chooses: then a :class:`CascadeUpstream` row says "only the listed ones" and
:class:`CascadeChannel` rows list them.  Classified channels (``Channel.secrecy``) never go
up, whatever the selection says.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow


class CascadeUpstream(Base):
    """A superior whose channel selection an admin set (no row: it gets every channel)."""

    __tablename__ = "cascade_upstreams"

    upstream_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    all_channels: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CascadeChannel(Base):
    """One channel a superior gets while its ``all_channels`` is off."""

    __tablename__ = "cascade_channels"
    __table_args__ = (UniqueConstraint("upstream_id", "channel_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    upstream_id: Mapped[str] = mapped_column(String(20), index=True)
    channel_id: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
