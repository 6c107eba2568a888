"""The NATS connection every clustered node holds, and the subjects the roles talk on.

Core NATS (at most once) carries what is worth only while fresh: SIP requests of media nodes
(request/reply with a timeout), keyframes for the analyzers, node events.  JetStream carries
what must not be lost: analyzer alarms and clears (``ALARM_STREAM``, a work queue the control
node acknowledges once the alarm is stored).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from vms.logging import get_logger

log = get_logger("vms.cluster.bus")

SIP_PLAY = "vms.sip.play"
SIP_STOP = "vms.sip.stop"
SIP_CONTROL_PLAYBACK = "vms.sip.control_playback"
SIP_DEVICE_CONTROL = "vms.sip.device_control"
SIP_ENDED = "vms.sip.ended"  # a device ended a session: {call_id, reason}
SIP_CONNECTED = "vms.sip.connected"  # a device (re)connected: {device_id, reason}
EVENTS = "vms.events"  # the control node's event bus, for the other roles
ANALYSIS_APPLY = "vms.analysis.apply"  # a camera's analysis config changed: {device, channel}
ALARMS = "vms.alarms"
ALARM_STREAM = "VMS_ALARMS"
ALARM_CONSUMER = "alarm-service"
CONTROL_QUEUE = "control"  # queue group of the control nodes' SIP gateway
MAX_PAYLOAD = 8 * 1024 * 1024  # an alarm with two 4 MB pictures: the server must allow this


def frame_subject(device_id: str, channel_id: str) -> str:
    return f"vms.frames.{device_id}.{channel_id}"


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def loads(data: bytes) -> Any:
    return json.loads(data) if data else None


class Bus:
    """One connection, reconnecting for ever: a NATS restart pauses the cluster, not ends it."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.reconnects = 0

    async def connect(self) -> None:
        async def error(exc: Exception) -> None:
            log.warning("nats error", error=repr(exc))

        async def disconnected() -> None:
            log.warning("nats disconnected", url=self.url)

        async def reconnected() -> None:
            self.reconnects += 1
            log.info("nats reconnected", url=self.url)

        self.nc = await nats.connect(
            self.url,
            name=self.name,
            connect_timeout=5,
            reconnect_time_wait=0.5,
            max_reconnect_attempts=-1,
            allow_reconnect=True,
            error_cb=error,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
        )
        self.js = self.nc.jetstream()
        log.info("nats connected", url=self.url, name=self.name)

    async def ensure_alarm_stream(self) -> None:
        """The alarm work queue, on disk: kept until the control node acknowledges each."""
        assert self.js is not None
        config = StreamConfig(
            name=ALARM_STREAM,
            subjects=[ALARMS],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            max_msg_size=MAX_PAYLOAD,
        )
        try:
            await self.js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await self.js.update_stream(config)  # it exists (another node made it)

    @property
    def client(self) -> Client:
        if self.nc is None:
            raise RuntimeError("bus not connected")
        return self.nc

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        await self.client.publish(subject, payload, headers=headers)

    async def request(self, subject: str, value: Any, timeout: float) -> Any:
        msg = await self.client.request(subject, dumps(value), timeout=timeout)
        return loads(msg.data)

    async def serve(
        self, subject: str, handler: Callable[[Any], Awaitable[Any]], queue: str = ""
    ) -> Subscription:
        """Answer requests on ``subject`` with ``handler(value)``; an exception becomes an
        ``{"error": ..., "status": ...}`` reply, so a requester never waits for a timeout."""

        async def on_msg(msg: Msg) -> None:
            try:
                reply: Any = await handler(loads(msg.data))
            except Exception as exc:  # noqa: BLE001 - the error goes back to the requester
                reply = {
                    "error": f"{type(exc).__name__}: {exc}",
                    "status": getattr(exc, "status", None),
                }
            if msg.reply:
                await msg.respond(dumps(reply))

        sub = await self.client.subscribe(subject, queue=queue, cb=on_msg)
        await self.client.flush()  # the server knows of us before anyone asks
        return sub

    async def listen(
        self, subject: str, handler: Callable[[Any], Awaitable[None] | None]
    ) -> Subscription:
        """Call ``handler(value)`` for each JSON message on ``subject``."""

        async def on_msg(msg: Msg) -> None:
            try:
                result = handler(loads(msg.data))
                if result is not None:
                    await result
            except Exception:
                log.exception("bus message failed", subject=subject)

        return await self.client.subscribe(subject, cb=on_msg)

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception as exc:  # noqa: BLE001 - closing anyway
                log.warning("nats drain failed", error=repr(exc))
                await self.nc.close()
        self.nc = None
        self.js = None
