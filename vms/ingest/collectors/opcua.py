"""OPC UA: one subscription to the points' nodes; data changes become samples.

The server's own clock is trusted for the sample time (source timestamp, else server
timestamp, else ours).  Good values go in as good, Uncertain ones as quality 2, Bad ones
are skipped and named as the point's error.  Connection loss is noticed three ways —
asyncua's watchdog, which reads the server state every ``WATCHDOG_S`` and fires
``connection_lost_callback``; a subscription status change; and the publish loop dying —
after which the gateway goes offline and the collector reconnects and subscribes again.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any

from asyncua import Client, Node, ua

from vms.config import IngestSettings
from vms.ingest.gateway_config import OpcUaConfig
from vms.ingest.samples import ReadingSink, Sample

from .base import Collector, ConnectionLost, GatewaySpec

WATCHDOG_S = 2.0  # how often asyncua checks the server state
QUEUE_SIZE = 32  # changes a monitored item keeps between two publishes (none lost at 10 s)
DISCONNECT_TIMEOUT_S = 3.0
LOGIN_ERRORS = ("BadUserAccessDenied", "BadIdentityTokenInvalid", "BadIdentityTokenRejected")


def quality_of(status: ua.StatusCode | None) -> int | None:
    """0 good, 2 uncertain, None bad (the value is not used)."""
    if status is None or status.is_good():
        return 0
    if status.is_uncertain():
        return 2
    return None


def sample_time(value: ua.DataValue) -> datetime:
    at = value.SourceTimestamp or value.ServerTimestamp
    if at is None:
        return datetime.now(UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


class _Handler:
    """asyncua's subscription callbacks, forwarded to the collector (they are synchronous)."""

    def __init__(self, collector: OpcUaCollector) -> None:
        self.collector = collector

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        self.collector.on_change(node, data.monitored_item.Value)

    def status_change_notification(self, status: Any) -> None:
        self.collector.on_lost(f"subscription status {ua.StatusCode(status.Status).name}")


class OpcUaCollector(Collector):
    connection_errors = (ConnectionLost, OSError, TimeoutError, ConnectionError, ua.UaError)

    def __init__(self, spec: GatewaySpec, sink: ReadingSink, settings: IngestSettings) -> None:
        super().__init__(spec, sink, settings)
        self.config = OpcUaConfig(**spec.config)
        self.timeout = self.config.timeout_s or settings.poll_timeout_s
        self._client: Client | None = None
        self._pending: list[Sample] = []
        self._wake = asyncio.Event()
        self._lost: str = ""
        self._tags: dict[str, list[str]] = {}  # node id string → tags

    # --- callbacks ----------------------------------------------------------------------

    def on_change(self, node: Node, value: ua.DataValue) -> None:
        quality = quality_of(value.StatusCode)
        for tag in self._tags.get(node.nodeid.to_string(), []):
            if quality is None:
                self.point_error(tag, f"server reports {value.StatusCode.name}")
                continue
            number = as_number(value.Value.Value if value.Value is not None else None)
            if number is None:
                shown = value.Value.Value if value.Value is not None else None
                self.point_error(tag, f"value {shown!r} is not a number")
                continue
            self.point_error(tag, "")
            self._pending.append(Sample(tag, sample_time(value), number, quality))
        self._wake.set()

    def on_lost(self, reason: str) -> None:
        if not self._lost:
            self._lost = reason
        self._wake.set()

    async def _connection_lost(self, exc: Exception) -> None:
        self.on_lost(f"connection lost: {self.describe(exc)}")

    # --- the session --------------------------------------------------------------------

    async def session(self) -> None:
        self._lost = ""
        self._pending = []
        client = Client(self.config.endpoint, timeout=self.timeout, watchdog_intervall=WATCHDOG_S)
        if self.config.username:
            client.set_user(self.config.username)
            client.set_password(self.config.password)
        client.connection_lost_callback = self._connection_lost
        self._client = client
        try:
            await client.connect()
        except ua.UaStatusCodeError as exc:
            if type(exc).__name__ in LOGIN_ERRORS:
                raise ConnectionLost(
                    f"login refused for user {self.config.username!r}: {self.describe(exc)}"
                ) from exc
            raise
        subscription = await client.create_subscription(
            self.config.publish_interval_ms, _Handler(self)
        )
        await self._subscribe(client, subscription)
        self.set_online(True)
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                batch, self._pending = self._pending, []
                await self.submit(batch)
                self.alive()
            if self._lost:
                raise ConnectionLost(self._lost)

    async def _subscribe(self, client: Client, subscription: Any) -> None:
        """Monitor every point's node; an unknown or malformed node id is that point's error."""
        self._tags = {}
        nodes: list[Node] = []
        for point in self.points:
            try:
                node = client.get_node(point.source["node_id"])
            except ua.UaError as exc:
                self.point_error(point.tag, f"bad node id {point.source['node_id']!r}: {exc}")
                continue
            key = node.nodeid.to_string()
            if key not in self._tags:
                nodes.append(node)
            self._tags.setdefault(key, []).append(point.tag)
        if not nodes:
            return
        results = await subscription.subscribe_data_change(nodes, queuesize=QUEUE_SIZE)
        for node, result in zip(nodes, results, strict=True):
            if isinstance(result, ua.StatusCode):
                key = node.nodeid.to_string()
                for tag in self._tags.pop(key, []):
                    self.point_error(tag, f"cannot subscribe to {key}: {result.name}")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(client.disconnect(), DISCONNECT_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - the link is already gone; nothing to release
            pass
