"""The cascade's node side: what our superiors see and the streams we send them.

``sip.cascade`` speaks to each superior; this package answers for the node — the
catalog tree (``catalog``), the channels each superior gets (``selection``), RecordInfo
(``records``), and the media: sources (``sources``) sent as PS over RTP (``sender``), all
held by one :class:`~vms.cascade.service.CascadeService`.
"""

from __future__ import annotations

from typing import Any

from vms.services import Services

from .service import CascadeService


def attach(services: Services, server: Any) -> CascadeService:
    """Give the SIP server the node's cascade (before it starts and registers upward)."""
    service = CascadeService(services)
    server.cascade_source = service
    server.cascade_media = service
    services.cascade = service
    return service
