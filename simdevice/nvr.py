"""A simulated GB28181 NVR: registers with digest, keeps alive, answers queries, streams on INVITE.

It behaves like the recorders in the field: Catalog and RecordInfo answers split over
several GB2312 MESSAGEs, PTZ commands remembered (for tests), MediaStatus 121 when a
playback or download ends.  The SIP is :class:`sip.user_agent.DeviceUserAgent`'s; this
class is the device behind it (a ``DeviceRole``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog

from sip import ids, manscdp
from sip.manscdp import CatalogItem, DeviceInfo, DeviceStatusInfo, Manscdp, RecordItem, el
from sip.message import SipRequest
from sip.subscribers import Subscribers
from sip.transaction import ServerTransaction, TransactionTimeout
from sip.transport import Peer
from sip.user_agent import AgentState, DeviceUserAgent

from . import content
from .device_settings import DeviceSettings
from .events import DeviceEvents
from .media import DeviceMedia

log = structlog.get_logger("simdevice.nvr")

CONTROL_FIELDS = ("RecordCmd", "GuardCmd", "TeleBoot", "AlarmCmd", "IFameCmd", "IFrameCmd")


@dataclass
class NvrConfig:
    """The NVR's identity, its platform and its behaviour (a ``sip.settings.AgentSettings``)."""

    device_id: str
    server_id: str
    server_domain: str
    server_host: str
    server_port: int
    password: str
    transport: str = "udp"  # how SIP reaches the server: udp / tcp / tls
    tls_ca_file: str = ""  # over TLS: the CA that signed the server's certificate ("" → system)
    channels: int = 4
    channel_ids: list[str] | None = None  # default: <device id prefix>1310<serial>
    expires_s: int = 3600
    keepalive_interval_s: float = 60.0
    keepalive_misses: int = 3  # unanswered keepalives before registering again
    retry_s: float = 5.0  # after a failed REGISTER (at most the keepalive interval)
    local_host: str = "127.0.0.1"
    name: str = "模拟NVR"
    manufacturer: str = "VMS-Sim"
    model: str = "SIM-NVR-64"
    firmware: str = "V1.0.0"
    charset: str = "GB2312"
    # "ps": MPEG-PS on PT 96; "h264": raw RFC 6184 H.264 on PT 98; "h265": raw H.265 on PT 100
    media_payload: str = "ps"
    codec: str = "h264"  # video in the PS: h264 (stream type 0x1B) or h265 (0x24)
    audio: str = ""  # audio in the PS: "" none, pcma (0x90), pcmu (0x91) or aac (0x0F)
    gb_2022: bool = True  # answer the GB/T 28181-2022 queries (a 2016 recorder ignores them)
    catalog_per_message: int = 4
    record_per_message: int = 4
    record_hours: float = 6.0
    timezone: str = "Asia/Shanghai"
    video: Path | None = None
    t1: float = 0.5

    def video_codec(self) -> str:
        """What the clip is encoded as: raw H.265 RTP needs H.265, else ``codec``."""
        return "h265" if self.media_payload == "h265" else self.codec

    def channel_list(self) -> list[str]:
        if self.channel_ids:
            return list(self.channel_ids)
        prefix = self.device_id[: ids.DOMAIN_LENGTH]
        return [str(ids.GbId.build(prefix, ids.CAMERA, n)) for n in range(1, self.channels + 1)]


@dataclass
class DeviceState(AgentState):
    ptz_commands: list[tuple[str, str]] = field(default_factory=list)
    controls: list[tuple[str, str, str]] = field(default_factory=list)
    invites: deque[SipRequest] = field(default_factory=lambda: deque(maxlen=256))  # for tests
    alarm_responses: list[int] = field(default_factory=list)  # SNs the platform acknowledged
    alarm_resets: list[tuple[str, str, str]] = field(default_factory=list)  # target, method, type


class SimulatedNvr:
    def __init__(self, config: NvrConfig) -> None:
        self.config = config
        self.tz = ZoneInfo(config.timezone)
        self.state = DeviceState()
        self.channels = config.channel_list()
        self.agent = DeviceUserAgent(
            config,
            self,
            contact_host=config.local_host,
            t1=config.t1,
            user_agent="sim-nvr",
            state=self.state,
            tz=self.tz,
        )
        self.endpoint = self.agent.endpoint
        self.media = DeviceMedia(
            config, self.agent, self.state, lambda: self.channels, self.media_status_121
        )
        self.channel_overrides: dict[str, dict[str, object]] = {}  # name, status set by tests
        self.events = DeviceEvents(self)  # subscriptions, catalog changes, alarms, positions
        self.subscribers: Subscribers = self.events.subscribers
        self.settings = DeviceSettings(self)  # ConfigDownload, presets, 2022 PTZ state, SD cards

    @property
    def keepalive_enabled(self) -> bool:
        return self.agent.keepalive_enabled

    @keepalive_enabled.setter
    def keepalive_enabled(self, value: bool) -> None:
        self.agent.keepalive_enabled = value  # False: the NVR goes silent

    # --- lifecycle ---------------------------------------------------------------

    async def start(self, wait: bool = False, timeout: float = 10.0) -> None:
        c = self.config
        if c.transport == "tls":  # the server's certificate is verified, as a device does
            self.endpoint.transport.client_tls = ssl.create_default_context(
                cafile=c.tls_ca_file or None
            )
        await self.endpoint.listen(
            c.local_host, 0, ("udp",) if c.transport == "udp" else ("udp", "tcp")
        )
        self.agent.start()
        if wait:
            await asyncio.wait_for(self.state.registered.wait(), timeout)

    async def stop(self, unregister: bool = True) -> None:
        await self.events.close()
        await self.agent.stop_registering(unregister)
        await self.media.stop_all()
        await self.agent.close()

    async def peer(self) -> Peer:
        return await self.agent.peer()

    async def register(self, expires: int | None = None, password: str | None = None) -> int:
        return await self.agent.register(expires, password)

    async def keepalive(self) -> int | None:
        return await self.agent.keepalive()

    async def send_alarm(
        self,
        channel_id: str | None = None,
        priority: int = 1,
        method: int = 5,
        alarm_type: int = 2,
        description: str = "移动侦测",
        via: str = "auto",
    ) -> int:
        """An alarm: NOTIFY to the alarm subscribers when there are some (``via="auto"``),
        else a MESSAGE; the platform's answer status (200 when one subscriber took it)."""
        inner = (
            el("AlarmPriority", priority)
            + el("AlarmMethod", method)
            + el("AlarmTime", manscdp.fmt_time(datetime.now(self.tz)))
            + el("AlarmDescription", description)
            + el("Longitude", 0)
            + el("Latitude", 0)
            + f"<Info>\r\n{el('AlarmType', alarm_type)}</Info>\r\n"
        )
        return await self.events.alarm(channel_id or self.config.device_id, inner, via)

    async def media_status_121(self, call_id: str, channel_id: str) -> None:
        try:
            await self.agent.notify("MediaStatus", channel_id, el("NotifyType", 121), call_id)
        except (TransactionTimeout, OSError) as exc:
            log.info("MediaStatus not delivered", error=repr(exc))

    # --- DeviceRole: answers -------------------------------------------------------

    def catalog_items(self) -> list[CatalogItem]:
        items = content.catalog_items(self.config, self.channels)
        return [content.overridden(i, self.channel_overrides.get(i.device_id)) for i in items]

    async def catalog(self) -> list[CatalogItem]:
        return self.catalog_items()

    async def device_info(self) -> DeviceInfo:
        return content.device_info(self.config, len(self.channels))

    async def device_status(self) -> DeviceStatusInfo:
        return content.device_status(self.config.device_id, self.tz)

    async def record_info(self, query: Manscdp) -> list[RecordItem] | None:
        start = manscdp.parse_time(query.text("StartTime"), self.tz)
        end = manscdp.parse_time(query.text("EndTime"), self.tz)
        channel = query.device_id
        if not (start and end and channel in self.channels):
            return []
        ranges = content.recordings(self.config.record_hours, self.tz, start, end)
        return content.record_items(channel, ranges)

    async def device_control(self, control: Manscdp) -> bool:
        if control.cmd_type != "DeviceControl":
            return False
        ptz = control.text("PTZCmd")
        if ptz:
            self.state.ptz_commands.append((control.device_id, ptz.upper()))
        for name in CONTROL_FIELDS:
            value = control.text(name)
            if value:
                self.state.controls.append((control.device_id, name, value))
        self.settings.apply(control)
        if control.text("AlarmCmd") == "ResetAlarm":
            info = (control.text("Info/AlarmMethod"), control.text("Info/AlarmType"))
            self.state.alarm_resets.append((control.device_id, *info))
        return True

    # --- DeviceRole: dialogs (the media part streams) ----------------------------------

    async def on_invite(self, stx: ServerTransaction) -> None:
        await self.media.on_invite(stx)

    def on_ack(self, call_id: str) -> None:
        self.media.on_ack(call_id)

    def on_bye(self, call_id: str) -> bool:
        return self.media.on_bye(call_id)

    def on_info(self, call_id: str, body: str) -> None:
        self.media.on_info(call_id, body)

    def on_cancel(self, call_id: str) -> None:
        self.media.on_cancel(call_id)
