"""What a cascade offers its superior, as protocols the application implements.

:class:`CascadeSource` is this node's channels, recordings and state as one superior may
see them (``vms.cascade`` builds the catalog tree, applies the per-superior selection and
leaves out classified channels); :class:`CascadeMedia` sends a channel to the superior as
PS over RTP.  :class:`StoreSource` is the bare server's source, straight from the device
store (every channel, the platform as their parent), for tests and standalone use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from importlib import metadata
from typing import Protocol

from . import sdp as sdplib
from .manscdp import CatalogItem, DeviceInfo, DeviceStatusInfo, RecordItem, fmt_time
from .mansrtsp import RtspCommand
from .settings import UpstreamSettings
from .store import DeviceStore

MANUFACTURER = "vms-gb28181"
MODEL = "platform"


def firmware_version() -> str:
    try:
        return metadata.version("vms-gb28181")
    except metadata.PackageNotFoundError:
        return "dev"


class CascadeSource(Protocol):
    """Our channels, records and state as one superior sees them."""

    async def catalog(self, upstream: UpstreamSettings, local_id: str) -> list[CatalogItem]: ...

    async def owner(self, upstream: UpstreamSettings, channel_id: str) -> str | None:
        """The device holding a channel this superior may use (None: unknown or not shared)."""
        ...

    async def record_info(
        self, upstream: UpstreamSettings, channel_id: str, start: datetime, end: datetime
    ) -> list[RecordItem]: ...

    async def device_info(self, upstream: UpstreamSettings, local_id: str) -> DeviceInfo: ...

    async def device_status(
        self, upstream: UpstreamSettings, local_id: str
    ) -> DeviceStatusInfo: ...


@dataclass(frozen=True)
class SendRequest:
    """A superior's INVITE for one of our channels, once checked."""

    call_id: str
    upstream_id: str  # the superior's server id
    channel_id: str
    device_id: str  # the device holding the channel
    offer: sdplib.Sdp  # s= Play / Playback / Download, t=, a=downloadspeed, y=, transport
    payload_type: int  # the offer's PS payload type (96 as a rule)
    media_ip: str = ""  # the upstream's media_ip: our address for its c= ("" → the node's)


@dataclass(frozen=True)
class SendAnswer:
    """Where we send from (UDP, TCP active) or listen (TCP passive), for the SDP answer."""

    ip: str
    port: int
    file_size: int | None = None  # Download: a=filesize


SendEnded = Callable[[str], Awaitable[None]]  # (call-id): the range was sent to its end


class CascadeMedia(Protocol):
    """Sends one of our channels to the superior (PS over RTP); wired by the application."""

    async def start_send(self, request: SendRequest, ended: SendEnded) -> SendAnswer: ...

    def begin(self, call_id: str) -> None: ...  # the ACK came: start sending

    async def control(self, call_id: str, command: RtspCommand) -> None: ...

    async def stop_send(self, call_id: str) -> None: ...


class RecordQueries(Protocol):
    """The devices' own record search (``sip.queries.Queries.record_info``)."""

    async def record_info(
        self, device_id: str, channel_id: str, start: datetime, end: datetime
    ) -> object: ...


class StoreSource:
    """Every stored channel, flat under the platform; records from the devices themselves."""

    def __init__(self, store: DeviceStore, queries: RecordQueries, tz: tzinfo) -> None:
        self.store = store
        self.queries = queries
        self.tz = tz

    async def catalog(self, upstream: UpstreamSettings, local_id: str) -> list[CatalogItem]:
        return [replace(i, parent_id=local_id) for i in await self.store.list_channels()]

    async def owner(self, upstream: UpstreamSettings, channel_id: str) -> str | None:
        for item in await self.store.list_channels():
            if item.device_id == channel_id:
                return item.parent_id
        return None

    async def record_info(
        self, upstream: UpstreamSettings, channel_id: str, start: datetime, end: datetime
    ) -> list[RecordItem]:
        device_id = await self.owner(upstream, channel_id)
        if device_id is None:
            return []
        result = await self.queries.record_info(device_id, channel_id, start, end)
        return list(getattr(result, "items", []))

    async def device_info(self, upstream: UpstreamSettings, local_id: str) -> DeviceInfo:
        n = len(await self.store.list_channels())
        return DeviceInfo(local_id, "VMS platform", MANUFACTURER, MODEL, firmware_version(), n)

    async def device_status(self, upstream: UpstreamSettings, local_id: str) -> DeviceStatusInfo:
        now = fmt_time(datetime.now(self.tz))
        return DeviceStatusInfo(local_id, "ONLINE", "OK", "ON", "OFF", now)
