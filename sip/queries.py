"""MANSCDP queries and controls sent by the platform, and the matching of their answers.

A query gets 200 to its MESSAGE at once; the data follows in separate ``<Response>``
MESSAGEs carrying the same SN.  Our SNs are unique per server, so answers are matched
by SN (and CmdType) even when a device puts the NVR id where the channel id belongs —
but only from the device asked: another device cannot answer for it.  Catalog items
whose id is neither a 20-digit GB id nor a region's civil code are dropped.
Multi-part answers (Catalog, RecordInfo) are collected up to SumNum, or until a
timeout, keeping what arrived.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Protocol

import structlog

from . import manscdp, ptz
from .ids import is_catalog_id
from .manscdp import CatalogItem, DeviceInfo, DeviceStatusInfo, Manscdp, RecordItem, el
from .notify import reset_alarm_xml
from .settings import ServerSettings
from .store import DeviceStore

log = structlog.get_logger("sip.server")


@dataclass
class Collector:
    device_id: str  # who was asked: only its answers count
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


class ManscdpSender(Protocol):
    """Delivers a MANSCDP body to a registered device (``sip.outgoing.Outgoing``)."""

    def charset_of(self, device_id: str) -> str: ...

    async def send_manscdp(
        self, device_id: str, body: bytes, timeout: float | None = None
    ) -> None: ...


class Queries:
    """Queries and DeviceControl to devices; their answers are stored as they arrive."""

    def __init__(
        self, sender: ManscdpSender, store: DeviceStore, settings: ServerSettings, tz: tzinfo
    ) -> None:
        self.sender = sender
        self.store = store
        self.settings = settings
        self.tz = tz
        self._sn = itertools.count(random.randint(1, 100_000))
        self.pending: dict[int, Collector] = {}  # by SN: the queries waiting for answers

    def close(self) -> None:
        """Release every waiting query (with what arrived so far)."""
        for col in self.pending.values():
            col.done.set()
        self.pending.clear()

    def deliver_response(self, sender: str, doc: Manscdp) -> None:
        """A ``<Response>`` MESSAGE from device ``sender``: to its query with this SN, if any."""
        col = self.pending.get(doc.sn)
        if col is None or col.cmd_type.lower() != doc.cmd_type.lower():
            return
        if col.device_id != sender:
            log.info("answer to another device's query ignored", sender=sender, sn=doc.sn)
            return
        col.add(doc)

    async def _query(
        self,
        device_id: str,
        cmd: str,
        target_id: str | None = None,
        inner: str = "",
        list_name: str | None = None,
        timeout: float | None = None,
        root: str = "Query",
    ) -> Collector:
        sn = next(self._sn)
        col = Collector(device_id, cmd, list_name)
        self.pending[sn] = col
        body = manscdp.encode(
            root, cmd, sn, target_id or device_id, inner, self.sender.charset_of(device_id)
        )
        try:
            await self.sender.send_manscdp(device_id, body)
            try:
                await asyncio.wait_for(col.done.wait(), timeout or self.settings.query_timeout_s)
            except TimeoutError:
                pass
        finally:
            self.pending.pop(sn, None)
        return col

    async def ask(
        self,
        device_id: str,
        cmd: str,
        target_id: str | None = None,
        inner: str = "",
        *,
        list_name: str | None = None,
        root: str = "Query",
        timeout: float | None = None,
    ) -> list[Manscdp]:
        """Send a Query (or a Control that is answered, as DeviceConfig) and return the
        ``<Response>`` documents that came (``list_name``: collect them up to SumNum)."""
        col = await self._query(device_id, cmd, target_id, inner, list_name, timeout, root)
        return col.docs

    async def query_connected(self, device_id: str) -> None:
        """DeviceInfo, Catalog, then DeviceStatus of a device that just (re)connected."""
        steps = (
            ("device info", self.device_info),
            ("catalog", self.catalog),
            ("device status", self.device_status),
        )
        for what, query in steps:
            try:
                await query(device_id)
            except Exception as exc:  # noqa: BLE001 - logged; some devices never answer one
                log.info(
                    "query after connect failed", query=what, device_id=device_id, error=repr(exc)
                )

    async def catalog(self, device_id: str, timeout: float | None = None) -> CatalogResult:
        """Query the catalog, store what arrived (even partial) and return it."""
        col = await self._query(
            device_id,
            "Catalog",
            list_name="DeviceList",
            timeout=timeout or self.settings.catalog_timeout_s,
        )
        if not col.docs:
            raise QueryError(f"device {device_id} sent no Catalog response")
        items = valid_items(device_id, [CatalogItem.from_element(e) for e in col.items])
        complete = col.done.is_set() and col.sum_num is not None
        await self.store.save_catalog(device_id, items, complete)
        return CatalogResult(device_id, items, col.sum_num, complete)

    async def device_info(self, device_id: str) -> DeviceInfo:
        col = await self._query(device_id, "DeviceInfo")
        if not col.docs:
            raise QueryError(f"device {device_id} sent no DeviceInfo")
        info = DeviceInfo.from_doc(col.docs[0])
        await self.store.save_device_info(device_id, info)
        return info

    async def device_status(self, device_id: str) -> DeviceStatusInfo:
        col = await self._query(device_id, "DeviceStatus")
        if not col.docs:
            raise QueryError(f"device {device_id} sent no DeviceStatus")
        status = DeviceStatusInfo.from_doc(col.docs[0])
        await self.store.save_device_status(device_id, status)
        return status

    async def record_info(
        self,
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
            timeout or self.settings.catalog_timeout_s,
        )
        if not col.docs:
            raise QueryError(f"device {device_id} sent no RecordInfo for {channel_id}")
        items = [r for e in col.items if (r := RecordItem.from_element(e, self.tz)) is not None]
        complete = col.done.is_set() and col.sum_num is not None
        return RecordInfoResult(channel_id, items, col.sum_num, complete)

    async def device_control(self, device_id: str, target_id: str, inner: str) -> None:
        """A DeviceControl command; done when the device answered 200 to the MESSAGE."""
        sn = next(self._sn)
        body = manscdp.encode(
            "Control", "DeviceControl", sn, target_id, inner, self.sender.charset_of(device_id)
        )
        await self.sender.send_manscdp(device_id, body)

    async def ptz(self, device_id: str, channel_id: str, command: str) -> None:
        ptz.parse(command)  # refuse a malformed command before it reaches a camera
        inner = el("PTZCmd", command) + "<Info>\r\n" + el("ControlPriority", 5) + "</Info>\r\n"
        await self.device_control(device_id, channel_id, inner)

    async def record_control(self, device_id: str, channel_id: str, start: bool) -> None:
        await self.device_control(
            device_id, channel_id, el("RecordCmd", "Record" if start else "StopRecord")
        )

    async def guard_control(self, device_id: str, arm: bool) -> None:
        await self.device_control(
            device_id, device_id, el("GuardCmd", "SetGuard" if arm else "ResetGuard")
        )

    async def reset_alarm(
        self,
        device_id: str,
        target_id: str | None = None,
        alarm_method: int | None = None,
        alarm_type: int | None = None,
    ) -> None:
        """ResetAlarm for the alarm source ``target_id`` (default the device); the ``<Info>``
        names the alarm reset by its AlarmMethod and AlarmType (§A.2.3.1)."""
        await self.device_control(
            device_id, target_id or device_id, reset_alarm_xml(alarm_method, alarm_type)
        )

    async def reboot(self, device_id: str) -> None:
        await self.device_control(device_id, device_id, el("TeleBoot", "Boot"))


def valid_items(device_id: str, items: list[CatalogItem]) -> list[CatalogItem]:
    """Catalog items with a 20-digit GB id (or a region's civil code), the last of each id;
    the others dropped (logged): no id from the wire is used unchecked."""
    seen: dict[str, CatalogItem] = {}
    dropped = 0
    for item in items:
        if is_catalog_id(item.device_id):
            seen[item.device_id] = item
        else:
            dropped += 1
    if dropped:
        log.warning("catalog items with invalid ids dropped", device_id=device_id, count=dropped)
    return list(seen.values())
