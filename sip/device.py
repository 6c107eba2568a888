"""A simulated GB28181 NVR: registers with digest, keeps alive, answers queries, streams on INVITE.

It behaves like the recorders in the field: Catalog and RecordInfo answers split over
several GB2312 MESSAGEs, PTZ commands remembered (for tests), MediaStatus 121 when a
playback or download ends.  Used by ``vms demo``, ``vms sim-device`` and the tests.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from . import device_content as content
from . import manscdp
from .auth import authorization_header, parse_digest
from .device_media import DeviceMedia
from .manscdp import CONTENT_TYPE, CatalogItem, el
from .message import SipRequest, SipResponse, new_call_id, new_tag
from .transaction import Endpoint, ServerTransaction, TransactionTimeout
from .transport import Peer

log = structlog.get_logger("sip.device")


@dataclass
class NvrConfig:
    device_id: str
    server_id: str
    server_domain: str
    server_host: str
    server_port: int
    password: str
    transport: str = "udp"  # how SIP reaches the server: udp / tcp
    channels: int = 4
    channel_ids: list[str] | None = None  # default: <device id prefix>1310<serial>
    expires_s: int = 3600
    keepalive_interval_s: float = 60.0
    local_host: str = "127.0.0.1"
    name: str = "模拟NVR"
    manufacturer: str = "VMS-Sim"
    model: str = "SIM-NVR-64"
    firmware: str = "V1.0.0"
    charset: str = "GB2312"
    media_payload: str = "ps"  # "ps": MPEG-PS on PT 96; "h264": raw RFC 6184 H.264 on PT 98
    catalog_per_message: int = 4
    record_per_message: int = 4
    record_hours: float = 6.0
    timezone: str = "Asia/Shanghai"
    video: Path | None = None
    t1: float = 0.5

    def channel_list(self) -> list[str]:
        if self.channel_ids:
            return list(self.channel_ids)
        prefix = self.device_id[:10]
        return [f"{prefix}1310{n:06d}" for n in range(1, self.channels + 1)]


@dataclass
class DeviceState:
    registered: asyncio.Event = field(default_factory=asyncio.Event)
    register_status: int | None = None
    ptz_commands: list[tuple[str, str]] = field(default_factory=list)
    controls: list[tuple[str, str, str]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    invites: deque[SipRequest] = field(default_factory=lambda: deque(maxlen=256))  # for tests
    keepalives_sent: int = 0
    keepalive_failures: int = 0


class SimulatedNvr:
    def __init__(self, config: NvrConfig) -> None:
        self.config = config
        self.tz = ZoneInfo(config.timezone)
        self.endpoint = Endpoint(self._on_request, self._on_ack, t1=config.t1, user_agent="sim-nvr")
        self.endpoint.local_tag = new_tag()
        self.state = DeviceState()
        self.channels = config.channel_list()
        self.media = DeviceMedia(self)
        self._peer: Peer | None = None
        self._call_id = new_call_id(config.local_host)
        self._from_tag = new_tag()
        self._cseq = itertools.count(1)
        self._sn = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self.keepalive_enabled = True

    # --- lifecycle ---------------------------------------------------------------

    async def start(self, wait: bool = False, timeout: float = 10.0) -> None:
        c = self.config
        await self.endpoint.listen(
            c.local_host, 0, ("udp",) if c.transport == "udp" else ("udp", "tcp")
        )
        self._runner = asyncio.create_task(self._run(), name=f"nvr-{c.device_id}")
        if wait:
            await asyncio.wait_for(self.state.registered.wait(), timeout)

    async def stop(self, unregister: bool = True) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if unregister and self.state.registered.is_set():
            try:
                await asyncio.wait_for(self.register(expires=0), 2)
            except (TimeoutError, TransactionTimeout, OSError):
                pass
        await self.media.stop_all()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.endpoint.close()

    def spawn(self, coro: Any, name: str = "nvr") -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def peer(self) -> Peer:
        c = self.config
        p = self._peer
        if p is None or (p.transport == "TCP" and (p.conn is None or not p.conn.is_open)):
            if c.transport == "tcp":
                p = await self.endpoint.transport.connect(c.server_host, c.server_port)
            else:
                p = Peer("UDP", c.server_host, c.server_port)
            self._peer = p
        return p

    async def _run(self) -> None:
        """Register, keep alive, re-register before expiry or after the server forgot us."""
        c = self.config
        while True:
            try:
                status = await self.register()
            except (TransactionTimeout, OSError, TimeoutError) as exc:
                log.info("register failed", device_id=c.device_id, error=repr(exc))
                status = None
            if status != 200:
                await asyncio.sleep(min(5.0, c.keepalive_interval_s))
                continue
            loop = asyncio.get_running_loop()
            refresh_at = loop.time() + c.expires_s * 0.8
            while loop.time() < refresh_at:
                await asyncio.sleep(c.keepalive_interval_s)
                if not self.keepalive_enabled:
                    continue
                code = await self.keepalive()
                if code in (404, 403):
                    break  # the server lost us: register again

    # --- REGISTER / keepalive ----------------------------------------------------

    def _register_request(self, expires: int, peer: Peer) -> SipRequest:
        c = self.config
        req = SipRequest(method="REGISTER", uri=f"sip:{c.server_id}@{c.server_domain}")
        req.add("From", f"<sip:{c.device_id}@{c.server_domain}>;tag={self._from_tag}")
        req.add("To", f"<sip:{c.device_id}@{c.server_domain}>")
        req.add("Call-ID", self._call_id)
        req.add("CSeq", f"{next(self._cseq)} REGISTER")
        req.add("Contact", f"<sip:{c.device_id}@{self.endpoint.host}:{self.endpoint.port}>")
        req.add("Expires", str(expires))
        return req

    async def register(self, expires: int | None = None, password: str | None = None) -> int:
        """One REGISTER exchange (answering a 401 once); returns the final status."""
        c = self.config
        exp = c.expires_s if expires is None else expires
        peer = await self.peer()
        req = self._register_request(exp, peer)
        resp = await self.endpoint.request(req, peer)
        if resp.status == 401:
            challenge = parse_digest(resp.get("WWW-Authenticate") or "")
            req = self._register_request(exp, peer)
            req.add(
                "Authorization",
                authorization_header(
                    c.device_id, password or c.password, "REGISTER", req.uri, challenge
                ),
            )
            resp = await self.endpoint.request(req, peer)
        self.state.register_status = resp.status
        if resp.status == 200 and exp > 0:
            self.state.registered.set()
        elif exp == 0 or resp.status != 200:
            self.state.registered.clear()
        return resp.status

    async def keepalive(self) -> int | None:
        body = manscdp.encode(
            "Notify",
            "Keepalive",
            next(self._sn),
            self.config.device_id,
            el("Status", "OK"),
            self.config.charset,
        )
        self.state.keepalives_sent += 1
        try:
            resp = await self.send_message(body)
        except (TransactionTimeout, OSError) as exc:
            self.state.keepalive_failures += 1
            log.debug("keepalive failed", error=repr(exc))
            return None
        return resp.status

    async def send_message(self, body: bytes, call_id: str | None = None) -> SipResponse:
        c = self.config
        peer = await self.peer()
        req = SipRequest(method="MESSAGE", uri=f"sip:{c.server_id}@{c.server_domain}")
        req.add("From", f"<sip:{c.device_id}@{c.server_domain}>;tag={new_tag()}")
        req.add("To", f"<sip:{c.server_id}@{c.server_domain}>")
        req.add("Call-ID", call_id or new_call_id(c.local_host))
        req.add("CSeq", f"{next(self._cseq)} MESSAGE")
        req.add("Content-Type", CONTENT_TYPE)
        req.body = body
        return await self.endpoint.request(req, peer, timeout=10)

    async def send_alarm(
        self,
        channel_id: str | None = None,
        priority: int = 1,
        method: int = 5,
        alarm_type: int = 2,
        description: str = "移动侦测",
    ) -> int:
        inner = (
            el("AlarmPriority", priority)
            + el("AlarmMethod", method)
            + el("AlarmTime", manscdp.fmt_time(datetime.now(self.tz)))
            + el("AlarmDescription", description)
            + el("Longitude", 0)
            + el("Latitude", 0)
            + f"<Info>\r\n{el('AlarmType', alarm_type)}</Info>\r\n"
        )
        target = channel_id or self.config.device_id
        body = manscdp.encode("Notify", "Alarm", next(self._sn), target, inner, self.config.charset)
        return (await self.send_message(body)).status

    # --- requests from the platform ------------------------------------------------

    def _on_ack(self, req: SipRequest, peer: Peer) -> None:
        self.media.on_ack(req.call_id)

    def _on_request(self, stx: ServerTransaction) -> None:
        req = stx.request
        if req.method == "MESSAGE":
            try:
                doc = manscdp.decode(req.body)
            except manscdp.ManscdpError:
                stx.reply(400)
                return
            stx.reply(200)
            self.spawn(self._answer(doc), "nvr-answer")
        elif req.method == "INVITE":
            self.spawn(self.media.on_invite(stx), "nvr-invite")
        elif req.method == "BYE":
            stx.reply(200 if self.media.on_bye(req.call_id) else 481)
        elif req.method == "INFO":
            self.media.on_info(req.call_id, req.body.decode("utf-8", "replace"))
            stx.reply(200)
        elif req.method == "CANCEL":
            stx.reply(200)
            self.media.on_cancel(req.call_id)
        else:
            stx.reply(405)

    async def _answer(self, doc: manscdp.Manscdp) -> None:
        self.state.queries.append(doc.cmd_type)
        cmd = doc.cmd_type
        try:
            if doc.root == "Query" and cmd == "Catalog":
                await self._send_list(
                    "Catalog",
                    doc.sn,
                    self.config.device_id,
                    "DeviceList",
                    [i.to_xml() for i in self.catalog_items()],
                    self.config.catalog_per_message,
                )
            elif doc.root == "Query" and cmd == "DeviceInfo":
                await self._respond(doc, self._device_info())
            elif doc.root == "Query" and cmd == "DeviceStatus":
                await self._respond(doc, self._device_status())
            elif doc.root == "Query" and cmd == "RecordInfo":
                await self._record_info(doc)
            elif doc.root == "Control" and cmd == "DeviceControl":
                await self._control(doc)
        except (TransactionTimeout, OSError) as exc:
            log.info("answer not delivered", cmd=cmd, error=repr(exc))

    async def _respond(
        self, doc: manscdp.Manscdp, inner: str, device_id: str | None = None
    ) -> None:
        body = manscdp.encode(
            "Response", doc.cmd_type, doc.sn, device_id or doc.device_id, inner, self.config.charset
        )
        await self.send_message(body)

    def catalog_items(self) -> list[CatalogItem]:
        return content.catalog_items(self.config, self.channels)

    async def _send_list(
        self,
        cmd: str,
        sn: int,
        device_id: str,
        list_name: str,
        items: list[str],
        per: int,
        head: str = "",
    ) -> None:
        total = len(items)
        chunks = [items[i : i + per] for i in range(0, total, per)] or [[]]
        for chunk in chunks:
            inner = (
                head
                + el("SumNum", total)
                + f'<{list_name} Num="{len(chunk)}">\r\n'
                + "".join(chunk)
                + f"</{list_name}>\r\n"
            )
            body = manscdp.encode("Response", cmd, sn, device_id, inner, self.config.charset)
            await self.send_message(body)

    def _device_info(self) -> str:
        return content.device_info_xml(self.config, len(self.channels))

    def _device_status(self) -> str:
        return content.device_status_xml(self.tz)

    async def _record_info(self, doc: manscdp.Manscdp) -> None:
        start = manscdp.parse_time(doc.text("StartTime"), self.tz)
        end = manscdp.parse_time(doc.text("EndTime"), self.tz)
        ch = doc.device_id
        items = []
        if start and end and ch in self.channels:
            ranges = content.recordings(self.config.record_hours, self.tz, start, end)
            items = content.record_items_xml(ch, ranges)
        await self._send_list(
            "RecordInfo",
            doc.sn,
            ch,
            "RecordList",
            items,
            self.config.record_per_message,
            el("Name", ch),
        )

    async def _control(self, doc: manscdp.Manscdp) -> None:
        ptz = doc.text("PTZCmd")
        if ptz:
            self.state.ptz_commands.append((doc.device_id, ptz.upper()))
        for name in ("RecordCmd", "GuardCmd", "TeleBoot", "AlarmCmd", "IFameCmd"):
            value = doc.text(name)
            if value:
                self.state.controls.append((doc.device_id, name, value))
        await self._respond(doc, el("Result", "OK"))

    async def media_status_121(self, call_id: str, channel_id: str) -> None:
        body = manscdp.encode(
            "Notify",
            "MediaStatus",
            next(self._sn),
            channel_id,
            el("NotifyType", 121),
            self.config.charset,
        )
        try:
            await self.send_message(body, call_id=call_id)
        except (TransactionTimeout, OSError) as exc:
            log.info("MediaStatus not delivered", error=repr(exc))
