"""Which channels each superior gets: all of them, or the ones an admin listed.

Stored in ``cascade_upstreams`` / ``cascade_channels`` (storage.cascade_models); no row for
a superior means every channel.  Classified channels are left out elsewhere, whatever
the selection says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage.cascade_models import CascadeChannel, CascadeUpstream


@dataclass(frozen=True)
class Selection:
    upstream_id: str
    all_channels: bool = True
    channel_ids: frozenset[str] = field(default_factory=frozenset)

    def allows(self, channel_id: str) -> bool:
        return self.all_channels or channel_id in self.channel_ids


def selection_of(session: Session, upstream_id: str) -> Selection:
    row = session.get(CascadeUpstream, upstream_id)
    if row is None or row.all_channels:
        return Selection(upstream_id)
    ids = session.scalars(
        select(CascadeChannel.channel_id).where(CascadeChannel.upstream_id == upstream_id)
    )
    return Selection(upstream_id, False, frozenset(ids))


def set_selection(
    session: Session, upstream_id: str, all_channels: bool, channel_ids: list[str]
) -> Selection:
    """Replace a superior's selection (the listed channels are kept even while ``all``)."""
    row = session.get(CascadeUpstream, upstream_id)
    if row is None:
        row = CascadeUpstream(upstream_id=upstream_id)
        session.add(row)
    row.all_channels = all_channels
    session.execute(delete(CascadeChannel).where(CascadeChannel.upstream_id == upstream_id))
    for channel_id in sorted(set(channel_ids)):
        session.add(CascadeChannel(upstream_id=upstream_id, channel_id=channel_id))
    session.flush()
    return Selection(upstream_id, all_channels, frozenset(channel_ids))
