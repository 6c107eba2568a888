"""What devices tell without being asked (GB/T 28181-2016 §9.4, §9.11, §9.13, Annex A), no I/O.

An ``Alarm`` (MESSAGE or, once subscribed, NOTIFY), a ``MobilePosition`` and the catalog
changes of a ``Catalog`` NOTIFY, each item carrying its ``<Event>``: decoded into value
classes, encoded again for our superiors.  Also the bodies we send about them: the
acknowledgement of an alarm, ResetAlarm with its ``<Info>``, and the subscription queries.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace

from .ids import is_catalog_id
from .manscdp import CatalogItem, Manscdp, el, find_text, list_items

# Catalog <Event> values (§A.2.5 "目录通知"): a channel came, went, changed, went on/off line,
# lost its video or failed
ADD, DEL, UPDATE, ON, OFF, VLOST, DEFECT = "ADD", "DEL", "UPDATE", "ON", "OFF", "VLOST", "DEFECT"
CATALOG_EVENTS = (ADD, DEL, UPDATE, ON, OFF, VLOST, DEFECT)
STATUS_OF_EVENT = {ON: "ON", OFF: "OFF", VLOST: "OFF", DEFECT: "OFF"}  # as WVP applies them

# Subscription kinds: the body's CmdType, and the Event header devices expect (WVP)
CATALOG, ALARM, MOBILE_POSITION = "Catalog", "Alarm", "MobilePosition"
SUBSCRIBE_EVENT = {CATALOG: "Catalog", ALARM: "presence", MOBILE_POSITION: "presence"}
SETTING_NAMES = {"catalog": CATALOG, "alarm": ALARM, "mobile_position": MOBILE_POSITION}

MAX_DESCRIPTION = 500
MAX_RAW = 8000


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) < 1e9 else None  # NaN and junk are "absent"


def _int(text: str) -> int:
    t = text.strip()
    return int(t) if t.isdigit() and len(t) < 10 else 0


def _coord(value: float | None) -> float | None:
    """A longitude/latitude; devices without GPS send 0 (or nothing): both mean unknown."""
    return None if value is None or value == 0 else value


@dataclass
class AlarmNotify:
    """One device alarm: ``device_id`` is its source (a channel, an alarm input, the device)."""

    device_id: str
    priority: int = 0  # 1 (first level, highest) … 4
    method: int = 0  # 1 telephone, 2 device, 3 SMS, 4 GPS, 5 video, 6 device fault, 7 other
    alarm_type: int = 0  # per method, under <Info>
    time: str = ""  # AlarmTime as sent (device local time)
    description: str = ""
    longitude: float | None = None
    latitude: float | None = None
    extra: dict[str, str] = field(default_factory=dict)  # EventType and the like
    sn: int = 0
    via: str = "message"  # how it came: a MESSAGE, or a NOTIFY of an Alarm subscription
    raw: str = field(default="", repr=False)  # the body as received (kept with the alarm)

    @classmethod
    def from_doc(cls, doc: Manscdp) -> AlarmNotify:
        extra = {}
        event_type = doc.text("Info/AlarmTypeParam/EventType") or doc.text("EventType")
        if event_type:
            extra["EventType"] = event_type[:16]
        return cls(
            doc.device_id,
            _int(doc.text("AlarmPriority")),
            _int(doc.text("AlarmMethod")),
            _int(doc.text("Info/AlarmType") or doc.text("AlarmType")),
            doc.text("AlarmTime")[:32],
            doc.text("AlarmDescription")[:MAX_DESCRIPTION],
            _coord(_float(doc.text("Longitude"))),
            _coord(_float(doc.text("Latitude"))),
            extra,
            doc.sn,
            raw=ET.tostring(doc.element, encoding="unicode")[:MAX_RAW],
        )

    def to_xml(self) -> str:
        """The inner part of a ``<Notify>`` Alarm, as we pass it on to a superior."""
        info = el("AlarmType", self.alarm_type) if self.alarm_type else ""
        if self.extra.get("EventType"):
            info += f"<AlarmTypeParam>\r\n{el('EventType', self.extra['EventType'])}"
            info += "</AlarmTypeParam>\r\n"
        return (
            el("AlarmPriority", self.priority)
            + el("AlarmMethod", self.method)
            + el("AlarmTime", self.time)
            + (el("AlarmDescription", self.description) if self.description else "")
            + (el("Longitude", self.longitude) if self.longitude is not None else "")
            + (el("Latitude", self.latitude) if self.latitude is not None else "")
            + (f"<Info>\r\n{info}</Info>\r\n" if info else "")
        )


def alarm_ack_xml() -> str:
    """The inner part of the ``<Response>`` Alarm a platform sends back (§9.4.2)."""
    return el("Result", "OK")


def reset_alarm_xml(alarm_method: int | None = None, alarm_type: int | None = None) -> str:
    """DeviceControl ResetAlarm; the ``<Info>`` names which alarm (§A.2.3.1, 报警复位)."""
    info = ""
    if alarm_method:
        info += el("AlarmMethod", alarm_method)
    if alarm_type:
        info += el("AlarmType", alarm_type)
    return el("AlarmCmd", "ResetAlarm") + (f"<Info>\r\n{info}</Info>\r\n" if info else "")


@dataclass
class MobilePosition:
    """Where a mobile device (or a channel of one) is: §A.2.5 移动设备位置数据通知."""

    device_id: str
    time: str
    longitude: float
    latitude: float
    speed: float | None = None  # km/h
    direction: float | None = None  # degrees clockwise from north
    altitude: float | None = None  # metres

    @classmethod
    def from_doc(cls, doc: Manscdp) -> MobilePosition | None:
        """None when the position is missing or off the globe (nothing to store)."""
        lon, lat = _float(doc.text("Longitude")), _float(doc.text("Latitude"))
        if lon is None or lat is None or not (-180 <= lon <= 180 and -90 <= lat <= 90):
            return None
        return cls(
            doc.device_id,
            doc.text("Time")[:32],
            lon,
            lat,
            _float(doc.text("Speed")),
            _float(doc.text("Direction")),
            _float(doc.text("Altitude")),
        )

    def to_xml(self) -> str:
        optional = (
            ("Speed", self.speed),
            ("Direction", self.direction),
            ("Altitude", self.altitude),
        )
        return (
            el("Time", self.time)
            + el("Longitude", self.longitude)
            + el("Latitude", self.latitude)
            + "".join(el(n, v) for n, v in optional if v is not None)
        )


@dataclass
class CatalogEvent:
    """One item of a Catalog NOTIFY: what happened (``event``) to which channel (``item``)."""

    event: str
    item: CatalogItem

    def to_xml(self) -> str:
        """An ``<Item>``: the whole item for ADD/UPDATE, the id and event otherwise (WVP)."""
        if self.event in (ADD, UPDATE):
            inner = self.item.to_xml()
            return inner.replace("</Item>", f"{el('Event', self.event)}</Item>", 1)
        head = el("DeviceID", self.item.device_id)
        return f"<Item>\r\n{head}{el('Event', self.event)}</Item>\r\n"


def catalog_events(doc: Manscdp) -> list[CatalogEvent]:
    """The items of a Catalog NOTIFY; an item without ``<Event>`` is an ADD (as WVP reads it),
    one with an unknown event or without a valid DeviceID (20 digits or a civil code) is
    skipped."""
    out = []
    for node in list_items(doc, "DeviceList"):
        event = (find_text(node, "Event") or ADD).upper()
        item = CatalogItem.from_element(node)
        if event not in CATALOG_EVENTS or not is_catalog_id(item.device_id):
            continue
        if event in STATUS_OF_EVENT:
            item = replace(item, status=STATUS_OF_EVENT[event])
        out.append(CatalogEvent(event, item))
    return out


def has_events(doc: Manscdp) -> bool:
    """A Catalog body whose items say what happened (a change), not a plain listing."""
    return any(find_text(n, "Event") for n in list_items(doc, "DeviceList"))


def subscription_query_xml(kind: str, position_interval_s: int = 5) -> str:
    """What a SUBSCRIBE's ``<Query>`` carries besides CmdType, SN and DeviceID."""
    if kind == ALARM:  # every priority and method (§A.2.4.4 报警订阅)
        return (
            el("StartAlarmPriority", 1)
            + el("EndAlarmPriority", 4)
            + el("AlarmMethod", 0)
            + el("AlarmType", 0)
        )
    if kind == MOBILE_POSITION:
        return el("Interval", max(1, position_interval_s))
    return ""


def subscription_kind(doc: Manscdp) -> str | None:
    """The kind a SUBSCRIBE's body asks for, or None when it is none we serve."""
    cmd = doc.cmd_type.lower()
    for kind in (CATALOG, ALARM, MOBILE_POSITION):
        if cmd == kind.lower():
            return kind
    return None


def diff_catalog(before: list[CatalogItem], after: list[CatalogItem]) -> list[CatalogEvent]:
    """Changes between two views of a catalog, as the events a subscriber would have heard:
    new ids ADD, gone ones DEL, a status flip ON/OFF, any other field UPDATE."""
    old = {i.device_id: i for i in before}
    new = {i.device_id: i for i in after}
    out = [CatalogEvent(ADD, i) for cid, i in new.items() if cid not in old]
    for cid, item in new.items():
        prev = old.get(cid)
        if prev is None or prev == item:
            continue
        if replace(prev, status=item.status) == item:
            out.append(CatalogEvent(ON if item.status == "ON" else OFF, item))
        else:
            out.append(CatalogEvent(UPDATE, item))
    out += [CatalogEvent(DEL, i) for cid, i in old.items() if cid not in new]
    return out
