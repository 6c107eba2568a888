"""Named live walls, saved per user on the server so an operator finds them on any browser.

A wall is a layout (1/4/9/16/25 tiles), the cameras on it in tile order (one page after
another when there are more than the layout shows, for the auto tour) and the tour period.
Cameras are stored as their keys ``device/channel`` ("" for an empty tile); who may see them
is checked when a wall is saved and again when it is read (scopes change).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow


class Wall(Base):
    __tablename__ = "walls"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    layout: Mapped[int] = mapped_column(Integer, default=4)
    channels: Mapped[list[Any]] = mapped_column(default=list)  # ["device/channel" | "", ...]
    tour_s: Mapped[int] = mapped_column(Integer, default=0)  # 0: no auto tour
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
