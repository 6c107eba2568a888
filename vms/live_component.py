"""Factory for the live-view component, importing aiortc only when the node builds it."""

from __future__ import annotations

from typing import Any

from vms.services import Services


def live_factory(services: Services) -> Any:
    """The live view as ``services.live``; None when ``live.enabled`` is off."""
    if not services.settings.live.enabled:
        return None
    from vms.live.service import create_live

    return create_live(services)
