"""MANSCDP queries and controls sent by the platform, and the matching of their answers.

A query gets 200 to its MESSAGE at once; the data follows in separate ``<Response>``
MESSAGEs carrying the same SN.  Our SNs are unique per server, so answers are matched
by SN (and CmdType) even when a device puts the NVR id where the channel id belongs.
Multi-part answers (Catalog, RecordInfo) are collected up to SumNum, or until a
timeout, keeping what arrived.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from . import manscdp, ptz
from .manscdp import CatalogItem, DeviceInfo, DeviceStatusInfo, Manscdp, RecordItem, el

if TYPE_CHECKING:
    from .server import SipServer


@dataclass
class Collector:
    cmd_type: str
    list_name: str | None
    docs: list[Manscdp] = field(default_factory=list)
    items: list[ET.Element] = field(default_factory=list)
    sum_num: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, doc: Manscdp) -> None:
        self.docs.append(doc)
        if self.list_name is None:
            self.done.set()
            return
        n = manscdp.sum_num(doc)
        if n is not None:
            self.sum_num = n
        self.items.extend(manscdp.list_items(doc, self.list_name))
        if self.sum_num is not None and len(self.items) >= self.sum_num:
            self.done.set()


@dataclass
class CatalogResult:
    device_id: str
    items: list[CatalogItem]
    sum_num: int | None
    complete: bool


@dataclass
class RecordInfoResult:
    channel_id: str
    items: list[RecordItem]
    sum_num: int | None
    complete: bool

    @property
    def ranges(self) -> list[tuple[datetime, datetime]]:
        return manscdp.merge_ranges(self.items)


class QueryError(Exception):
    """The device gave no usable answer."""


class QueryMixin:
    """Part of :class:`sip.server.SipServer`: queries and DeviceControl."""

    def _init_queries(self: SipServer) -> None:
        self._sn = itertools.count(random.randint(1, 100_000))
        self._pending: dict[int, Collector] = {}

    def _fail_pending(self: SipServer) -> None:
        for col in self._pending.values():
            col.done.set()
        self._pending.clear()

    def deliver_response(self: SipServer, doc: Manscdp) -> None:
        col = self._pending.get(doc.sn)
        if col is not None and col.cmd_type.lower() == doc.cmd_type.lower():
            col.add(doc)

    def charset_of(self: SipServer, device_id: str) -> str:
        reg = self.registrations.get(device_id)
        return (
            reg.charset
            if reg and reg.charset in ("UTF-8", "GB2312", "GBK", "GB18030")
            else "GB2312"
        )

    async def _query(
        self: SipServer,
        device_id: str,
        cmd: str,
        target_id: str | None = None,
        inner: str = "",
        list_name: str | None = None,
        timeout: float | None = None,
    ) -> Collector:
        sn = next(self._sn)
        col = Collector(cmd, list_name)
        self._pending[sn] = col
        body = manscdp.encode(
            "Query", cmd, sn, target_id or device_id, inner, self.charset_of(device_id)
        )
        try:
            await self.send_manscdp(device_id, body)
            try:
                await asyncio.wait_for(col.done.wait(), timeout or self.config.query_timeout_s)
            except TimeoutError:
                pass
        finally:
            self._pending.pop(sn, None)
        return col

    async def catalog(
        self: SipServer, device_id: str, timeout: float | None = None
    ) -> CatalogResult:
        """Query the catalog, store what arrived (even partial) and return it."""
        col = await self._query(
            device_id,
            "Catalog",
            list_name="DeviceList",
            timeout=timeout or self.config.catalog_timeout_s,
        )
        if not col.docs:
            raise QueryError(f"device {device_id} sent no Catalog response")
        seen: dict[str, CatalogItem] = {}
        for e in col.items:
            item = CatalogItem.from_element(e)
            if item.device_id:
                seen[item.device_id] = item
        items = list(seen.values())
        complete = col.done.is_set() and col.sum_num is not None
        await self.store.save_catalog(device_id, items, complete)
        return CatalogResult(device_id, items, col.sum_num, complete)

    async def device_info(self: SipServer, device_id: str) -> DeviceInfo:
        col = await self._query(device_id, "DeviceInfo")
        if not col.docs:
            raise QueryError(f"device {device_id} sent no DeviceInfo")
        info = DeviceInfo.from_doc(col.docs[0])
        await self.save_info(device_id, info)
        return info

    async def device_status(self: SipServer, device_id: str) -> DeviceStatusInfo:
        col = await self._query(device_id, "DeviceStatus")
        if not col.docs:
            raise QueryError(f"device {device_id} sent no DeviceStatus")
        status = DeviceStatusInfo.from_doc(col.docs[0])
        await self.save_status(device_id, status)
        return status

    async def record_info(
        self: SipServer,
        device_id: str,
        channel_id: str,
        start: datetime,
        end: datetime,
        record_type: str = "all",
        timeout: float | None = None,
    ) -> RecordInfoResult:
        inner = (
            el("StartTime", manscdp.fmt_time(start, self.tz))
            + el("EndTime", manscdp.fmt_time(end, self.tz))
            + el("Secrecy", 0)
            + el("Type", record_type)
        )
        col = await self._query(
            device_id,
            "RecordInfo",
            channel_id,
            inner,
            "RecordList",
            timeout or self.config.catalog_timeout_s,
        )
        if not col.docs:
            raise QueryError(f"device {device_id} sent no RecordInfo for {channel_id}")
        items = [r for e in col.items if (r := RecordItem.from_element(e, self.tz)) is not None]
        complete = col.done.is_set() and col.sum_num is not None
        return RecordInfoResult(channel_id, items, col.sum_num, complete)

    async def device_control(self: SipServer, device_id: str, target_id: str, inner: str) -> None:
        """A DeviceControl command; done when the device answered 200 to the MESSAGE."""
        sn = next(self._sn)
        body = manscdp.encode(
            "Control", "DeviceControl", sn, target_id, inner, self.charset_of(device_id)
        )
        await self.send_manscdp(device_id, body)

    async def ptz(self: SipServer, device_id: str, channel_id: str, command: str) -> None:
        ptz.parse(command)  # refuse a malformed command before it reaches a camera
        inner = el("PTZCmd", command) + "<Info>\r\n" + el("ControlPriority", 5) + "</Info>\r\n"
        await self.device_control(device_id, channel_id, inner)

    async def record_control(self: SipServer, device_id: str, channel_id: str, start: bool) -> None:
        await self.device_control(
            device_id, channel_id, el("RecordCmd", "Record" if start else "StopRecord")
        )

    async def guard_control(self: SipServer, device_id: str, arm: bool) -> None:
        await self.device_control(
            device_id, device_id, el("GuardCmd", "SetGuard" if arm else "ResetGuard")
        )

    async def reset_alarm(self: SipServer, device_id: str) -> None:
        await self.device_control(device_id, device_id, el("AlarmCmd", "ResetAlarm"))

    async def reboot(self: SipServer, device_id: str) -> None:
        await self.device_control(device_id, device_id, el("TeleBoot", "Boot"))
