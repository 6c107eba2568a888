"""Delivers queued ``Notification`` rows: e-mail (SMTP), SMS (an HTTP gateway), webhooks.

Each row is one message to one address over one channel (``vms.warning.notices`` writes them
in the transaction of their cause).  A failed attempt is retried with exponential back-off
(``warning.notify_retry_base_s`` doubling up to ``notify_retry_max_s``); a row still failing
``notify_dead_after_s`` after it was queued becomes a dead letter.  A channel that is not
configured (no ``smtp_host``, no ``sms_url``) turns its rows into dead letters at once, with
that reason, rather than holding them forever.  Rows are independent: no ordering between them.

Channels sit behind one small interface (:class:`Channel`), so another SMS vendor is one
class with a ``send``.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.db import Database
from storage.models import OutboxState
from storage.sensor_models import Notification
from vms.config import WarningSettings
from vms.logging import get_logger
from vms.tasks import cancel_task

log = get_logger("vms.warning.notifier")

BATCH = 100  # rows taken per round
PARALLEL = 8  # deliveries in flight
POLL_S = 2.0  # rows queued by others (supervision) are picked up at least this often
SMS_MAX_CHARS = 300


class DeliveryError(Exception):
    """One attempt failed; the message says why (kept in ``last_error``)."""


class NotConfigured(DeliveryError):
    """The channel has no settings on this node: the row cannot ever be delivered here."""


@dataclass(frozen=True)
class Message:
    """What a channel needs of a row (a plain copy: delivery runs outside the session)."""

    id: int
    channel: str
    target: str
    subject: str
    body: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


class Channel(Protocol):
    name: str

    async def send(self, message: Message) -> None: ...

    async def aclose(self) -> None: ...


class EmailChannel:
    """SMTP with the stdlib client in a worker thread (STARTTLS and login when set)."""

    name = "email"

    def __init__(self, settings: WarningSettings) -> None:
        self.s = settings

    def _send(self, message: Message) -> None:
        s = self.s
        mail = EmailMessage()
        mail["From"] = s.smtp_from
        mail["To"] = message.target
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain=s.smtp_from.rpartition("@")[2] or "localhost")
        mail.set_content(message.body)
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_s) as smtp:
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_user:
                smtp.login(s.smtp_user, s.smtp_password)
            smtp.send_message(mail)

    async def send(self, message: Message) -> None:
        if not self.s.smtp_host:
            raise NotConfigured("e-mail is not configured (warning.smtp_host is empty)")
        try:
            await asyncio.to_thread(self._send, message)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self.s.smtp_host}:{self.s.smtp_port}: {exc}") from None

    async def aclose(self) -> None:
        return None


async def _post(client: httpx.AsyncClient, url: str, body: dict[str, Any], **kw: Any) -> None:
    try:
        resp = await client.post(url, json=body, **kw)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{url}: {exc.__class__.__name__}: {exc}") from None
    if not 200 <= resp.status_code < 300:
        raise DeliveryError(f"{url}: HTTP {resp.status_code} {resp.text[:200]}")


class WebhookChannel:
    """JSON POST of the row's payload; ``warning.webhook_token`` goes to the global webhooks."""

    name = "webhook"

    def __init__(self, settings: WarningSettings, timeout_s: float = 10.0) -> None:
        self.token_urls = set(settings.webhooks)
        self.token = settings.webhook_token
        self.client = httpx.AsyncClient(timeout=timeout_s)

    async def send(self, message: Message) -> None:
        headers = {}
        if self.token and message.target in self.token_urls:
            headers["Authorization"] = f"Bearer {self.token}"
        body = {
            **message.payload,
            "notification_id": message.id,
            "subject": message.subject,
            "text": message.body,
        }
        await _post(self.client, message.target, body, headers=headers)

    async def aclose(self) -> None:
        await self.client.aclose()


class HttpSmsGateway:
    """An SMS gateway that takes ``POST {"to": phone, "text": ...}`` (bearer token when set)."""

    name = "sms"

    def __init__(self, url: str, token: str = "", timeout_s: float = 10.0) -> None:
        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.AsyncClient(timeout=timeout_s, headers=headers)

    async def send(self, message: Message) -> None:
        if not self.url:
            raise NotConfigured("SMS is not configured (warning.sms_url is empty)")
        text = message.subject[:SMS_MAX_CHARS]
        await _post(self.client, self.url, {"to": message.target, "text": text})

    async def aclose(self) -> None:
        await self.client.aclose()


def default_channels(settings: WarningSettings) -> dict[str, Channel]:
    return {
        "email": EmailChannel(settings),
        "webhook": WebhookChannel(settings),
        "sms": HttpSmsGateway(settings.sms_url, settings.sms_token),
    }


class Notifier:
    """The delivery loop; :meth:`deliver_due` is one round (tests call it directly)."""

    name = "warning-notifier"

    def __init__(
        self,
        settings: WarningSettings,
        db: Database,
        channels: dict[str, Channel] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.db = db
        self.channels = channels if channels is not None else default_channels(settings)
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.counters = {"sent": 0, "failed": 0, "dead": 0}

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="warning-notifier")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        for channel in self.channels.values():
            await channel.aclose()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                if await self.deliver_due() == BATCH:
                    continue  # more waiting
                wait = await self.db.run(self._next_due_in)
            except Exception as exc:  # noqa: BLE001 - database down: try again shortly
                log.warning("notifier round failed", error=str(exc).splitlines()[0])
                wait = POLL_S
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.05, min(wait, POLL_S)))
            except TimeoutError:
                pass

    def _next_due_in(self, s: Session) -> float:
        due = s.scalar(
            select(func.min(Notification.next_attempt_at)).where(
                Notification.state == OutboxState.pending
            )
        )
        if due is None:
            return POLL_S
        return (due - datetime.fromtimestamp(self.clock(), UTC)).total_seconds()

    async def deliver_due(self, now: float | None = None) -> int:
        """Attempt every due row once; how many were attempted."""
        at = datetime.fromtimestamp(self.clock() if now is None else now, UTC)
        messages = await self.db.run(lambda s: _due(s, at))
        if not messages:
            return 0
        gate = asyncio.Semaphore(PARALLEL)

        async def attempt(m: Message) -> tuple[Message, str | None, bool]:
            async with gate:
                channel = self.channels.get(m.channel)
                try:
                    if channel is None:
                        raise NotConfigured(f"no {m.channel!r} channel on this node")
                    await channel.send(m)
                except NotConfigured as exc:
                    return m, str(exc), True
                except DeliveryError as exc:
                    return m, str(exc), False
                except Exception as exc:  # noqa: BLE001 - a channel bug must not stop the loop
                    return m, f"{exc.__class__.__name__}: {exc}", False
                return m, None, False

        results = await asyncio.gather(*(attempt(m) for m in messages))
        done = datetime.fromtimestamp(self.clock(), UTC)
        await self.db.run(lambda s: self._record(s, results, done))
        return len(messages)

    def _record(
        self, s: Session, results: list[tuple[Message, str | None, bool]], now: datetime
    ) -> None:
        st = self.settings
        for m, error, hopeless in results:
            row = s.get(Notification, m.id)
            if row is None:
                continue
            row.attempts = m.attempts + 1
            if error is None:
                row.state, row.sent_at, row.last_error = OutboxState.sent, now, ""
                self.counters["sent"] += 1
                continue
            row.last_error = error[:2000]
            self.counters["failed"] += 1
            age = (now - m.created_at).total_seconds()
            if hopeless or age >= st.notify_dead_after_s:
                row.state = OutboxState.dead
                self.counters["dead"] += 1
                log.warning("notice is a dead letter", id=m.id, channel=m.channel, error=error)
                continue
            delay = min(st.notify_retry_base_s * 2 ** (row.attempts - 1), st.notify_retry_max_s)
            row.next_attempt_at = now + timedelta(seconds=delay)
            log.info(
                "notice attempt failed", id=m.id, channel=m.channel, retry_s=delay, error=error
            )


def _due(s: Session, now: datetime) -> list[Message]:
    rows = s.scalars(
        select(Notification)
        .where(Notification.state == OutboxState.pending, Notification.next_attempt_at <= now)
        .order_by(Notification.next_attempt_at, Notification.id)
        .limit(BATCH)
    ).all()
    return [
        Message(
            r.id,
            r.channel,
            r.target,
            r.subject,
            r.body,
            dict(r.payload or {}),
            r.attempts,
            r.created_at,
        )
        for r in rows
    ]
