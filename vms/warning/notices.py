"""Queue notices as durable ``Notification`` rows: one per recipient address and channel.

Callers (warning escalation, offline supervision) write the rows in their own transaction;
``vms.warning.notifier`` delivers them (e-mail, SMS gateway, webhook) with retries, so a
notice survives a restart or a mail server that is down.  The WebSocket push to the UI is
not queued here: it is live-only and goes through the event bus.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from storage.sensor_models import Notification

from .recipients import Recipient


def queue_notices(
    session: Session,
    recipients: list[Recipient],
    subject: str,
    body: str,
    payload: dict[str, Any] | None = None,
    warning_pk: int | None = None,
    webhooks: list[str] | None = None,
    org_id: int | None = None,
) -> list[Notification]:
    """Rows for every address of every recipient, plus the global ``webhooks``.

    ``org_id`` is the organisation the notice is about (a warning's enterprise): it scopes
    ``GET /api/notifications``; without it only global administrators see the row.
    """
    rows: list[Notification] = []
    seen: set[tuple[str, str]] = set()

    def add(channel: str, target: str, extra: dict[str, Any]) -> None:
        if not target or (channel, target) in seen:
            return
        seen.add((channel, target))
        rows.append(
            Notification(
                channel=channel,
                target=target,
                subject=subject[:255],
                body=body,
                payload={**(payload or {}), **extra},
                warning_pk=warning_pk,
                org_id=org_id,
            )
        )

    for r in recipients:
        who = r.as_dict()
        add("email", r.email, {"recipient": who})
        add("sms", r.phone, {"recipient": who})
        add("webhook", r.webhook_url, {"recipient": who})
    for url in webhooks or []:
        add("webhook", url, {})
    session.add_all(rows)
    return rows
