"""MQTT: subscribe to the gateway's topics and to the points' own topics; messages → samples.

The session is persistent (``clean_session`` off, a stable client id), so QoS 1 messages
published while we reconnect wait at the broker instead of being lost.  A bad payload is
counted and logged (at most once a minute), and the rest of the stream goes on.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiomqtt

from vms.config import IngestSettings
from vms.ingest.gateway_config import MqttConfig
from vms.ingest.samples import ReadingSink

from .base import Collector, ConnectionLost, GatewaySpec
from .mqtt_payload import Binding, parse_message

KEEPALIVE_S = 30  # the broker and we notice a dead link within 1.5 × this
MAX_QUEUED = 10_000  # messages received but not yet handled (bounded, as everything here)


def forget_disconnect_error(client: aiomqtt.Client) -> None:
    """Mark the client's "unexpected disconnection" as seen.

    aiomqtt stores it on a future that only its message iterator reads; when the link drops
    while we are elsewhere (publishing, sleeping, waiting for the ingest queue), asyncio
    later logs "Future exception was never retrieved" for it.  We handle the loss ourselves.
    """
    future = getattr(client, "_disconnected", None)
    if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
        future.exception()


class MqttCollector(Collector):
    connection_errors = (ConnectionLost, OSError, TimeoutError, aiomqtt.MqttError)

    def __init__(self, spec: GatewaySpec, sink: ReadingSink, settings: IngestSettings) -> None:
        super().__init__(spec, sink, settings)
        self.config = MqttConfig(**spec.config)
        self.bindings: list[Binding] = []
        for point in self.points:
            topic = point.source.get("topic", "")
            if not topic:
                continue
            try:
                aiomqtt.Topic("a").matches(topic)
            except ValueError as exc:
                self.point_error(point.tag, f"bad topic {topic!r}: {exc}")
                continue
            self.bindings.append(Binding(point.tag, topic, point.source.get("json_key", "value")))
        self.subscriptions = list(
            dict.fromkeys([*self.config.topics, *(b.topic for b in self.bindings)])
        )
        self.counters["messages"] = 0
        self.counters["bad_payloads"] = 0

    async def session(self) -> None:
        c = self.config
        client = aiomqtt.Client(
            c.host,
            c.port,
            username=c.username or None,
            password=c.password or None,
            identifier=c.client_id or f"vms-gateway-{self.spec.id}",
            clean_session=False,
            keepalive=KEEPALIVE_S,
            timeout=self.settings.poll_timeout_s,
            tls_params=aiomqtt.TLSParameters() if c.tls else None,
            max_queued_incoming_messages=MAX_QUEUED,
        )
        try:
            async with client:
                for topic in self.subscriptions:
                    await client.subscribe(topic, qos=c.qos)
                self.set_online(True)
                async for message in client.messages:
                    await self._handle(message)
        except aiomqtt.MqttCodeError as exc:  # the broker's refusal: bad login, not authorised
            raise ConnectionLost(f"broker {c.host}:{c.port} refused us: {exc}") from exc
        finally:
            forget_disconnect_error(client)

    async def _handle(self, message: aiomqtt.Message) -> None:
        self.counters["messages"] += 1
        payload = message.payload
        if isinstance(payload, str):
            data = payload.encode()
        elif isinstance(payload, bytes | bytearray):
            data = bytes(payload)
        else:
            data = str(payload if payload is not None else "").encode()
        parsed = parse_message(str(message.topic), data, self.bindings, datetime.now(UTC))
        if parsed.errors:
            self.counters["bad_payloads"] += 1
            self.limited.warning(
                "payload",
                "bad MQTT payload",
                gateway=self.spec.label,
                error=parsed.errors[0],
                count=self.counters["bad_payloads"],
            )
        await self.submit(parsed.samples)
        self.alive()
