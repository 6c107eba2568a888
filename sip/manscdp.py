"""MANSCDP (``Application/MANSCDP+xml``) bodies of GB/T 28181 §A: decode and encode, no I/O.

Decoding follows what devices really send: the prolog's charset (GB2312/GBK read as
GB18030, their superset), UTF-8 when undeclared, raw ``&`` in names dropped, element
names matched case-insensitively.  defusedxml refuses entity bombs and DTDs.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, tzinfo
from xml.sax.saxutils import escape

from defusedxml import ElementTree as SafeET

from . import ids

CONTENT_TYPE = "Application/MANSCDP+xml"
MAX_BODY = 256 * 1024
ROOTS = ("Query", "Control", "Notify", "Response")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_PROLOG = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9_-]+)[\"'][^>]*\?>", re.I)
_ANY_PROLOG = re.compile(r"^\s*<\?xml[^>]*\?>", re.S)
_STRAY_AMP = re.compile(r"&(?!(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);)")


class ManscdpError(ValueError):
    """A body that is not a usable MANSCDP document."""


def python_charset(declared: str) -> str:
    d = declared.strip().upper().replace("_", "-")
    if d in ("GB2312", "GBK", "GB18030", "GB-2312", "CP936", "EUC-CN"):
        return "gb18030"
    if d in ("UTF-8", "UTF8"):
        return "utf-8"
    return "gb18030"


@dataclass
class Manscdp:
    root: str  # Query / Control / Notify / Response
    cmd_type: str
    sn: int
    device_id: str
    element: ET.Element
    charset: str  # the declared charset, e.g. "GB2312"

    def text(self, path: str, default: str = "") -> str:
        return find_text(self.element, path, default)


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    low = name.lower()
    return [c for c in el if isinstance(c.tag, str) and c.tag.lower() == low]


def find(el: ET.Element, path: str) -> ET.Element | None:
    cur: ET.Element | None = el
    for part in path.split("/"):
        if cur is None:
            return None
        kids = _children(cur, part)
        cur = kids[0] if kids else None
    return cur


def find_text(el: ET.Element, path: str, default: str = "") -> str:
    node = find(el, path)
    if node is None or node.text is None:
        return default
    return node.text.strip()


def decode(data: bytes) -> Manscdp:
    """Parse a MANSCDP body; raises ManscdpError with a one-line reason."""
    if len(data) > MAX_BODY:
        raise ManscdpError("body too large")
    m = _PROLOG.match(data)
    declared = m.group(1).decode("ascii") if m else ""
    if declared:
        text = data.decode(python_charset(declared), errors="replace")
    else:
        try:
            text = data.decode("utf-8")
            declared = "UTF-8"
        except UnicodeDecodeError:
            text = data.decode("gb18030", errors="replace")
            declared = "GB2312"
    text = _ANY_PROLOG.sub("", text, count=1)
    text = _STRAY_AMP.sub("", text).strip().strip("\x00")
    try:
        # No "<!" → no DTD, hence no entity to expand: the C parser is safe and 10x faster.
        # Anything declaring one goes through defusedxml, which refuses it.
        root = SafeET.fromstring(text) if "<!" in text else ET.fromstring(text)
    except Exception as exc:  # noqa: BLE001 - defusedxml raises several unrelated types
        raise ManscdpError(f"bad XML: {exc.__class__.__name__}: {str(exc)[:80]}") from None
    if not isinstance(root.tag, str) or root.tag.capitalize() not in ROOTS:
        raise ManscdpError(f"unexpected root <{root.tag}>")
    cmd = find_text(root, "CmdType")
    sn_text = find_text(root, "SN")
    device_id = find_text(root, "DeviceID")
    if not cmd:
        raise ManscdpError("no CmdType")
    if not sn_text.isdigit() or len(sn_text) > 12:
        raise ManscdpError(f"bad SN {sn_text[:20]!r}")
    return Manscdp(root.tag.capitalize(), cmd, int(sn_text), device_id, root, declared.upper())


def encode(
    root: str, cmd_type: str, sn: int, device_id: str, inner: str = "", charset: str = "GB2312"
) -> bytes:
    """A MANSCDP document; ``inner`` is already-escaped XML built with :func:`el`."""
    xml = (
        f'<?xml version="1.0" encoding="{charset}"?>\r\n<{root}>\r\n'
        f"<CmdType>{escape(cmd_type)}</CmdType>\r\n<SN>{sn}</SN>\r\n"
        f"<DeviceID>{escape(device_id)}</DeviceID>\r\n{inner}</{root}>\r\n"
    )
    return xml.encode(python_charset(charset), errors="replace")


def el(name: str, value: object) -> str:
    if value is None:
        return ""
    return f"<{name}>{escape(str(value))}</{name}>\r\n"


def fmt_time(value: datetime, tz: tzinfo | None = None) -> str:
    if tz is not None and value.tzinfo is not None:
        value = value.astimezone(tz)
    return value.strftime(TIME_FORMAT)


def parse_time(text: str, tz: tzinfo | None = None) -> datetime | None:
    """GB time ``2026-11-23T10:00:00`` (device local time), also with a space or millis."""
    t = text.strip().replace(" ", "T")
    if not t:
        return None
    try:
        value = datetime.fromisoformat(t)
    except ValueError:
        return None
    if value.tzinfo is None and tz is not None:
        value = value.replace(tzinfo=tz)
    return value


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _int(text: str, default: int = 0) -> int:
    t = text.strip()
    return int(t) if t.isdigit() and len(t) < 12 else default


# --- typed views ----------------------------------------------------------------


@dataclass
class CatalogItem:
    device_id: str
    name: str = ""
    manufacturer: str = ""
    model: str = ""
    owner: str = ""
    civil_code: str = ""
    address: str = ""
    parental: int = 0
    parent_id: str = ""
    status: str = "ON"
    longitude: float | None = None
    latitude: float | None = None
    ptz_type: int = 0
    business_group_id: str = ""
    secrecy: int = 0  # 1: classified (涉密), never passed on to a superior

    @classmethod
    def from_element(cls, item: ET.Element) -> CatalogItem:
        return cls(
            device_id=find_text(item, "DeviceID"),
            name=find_text(item, "Name"),
            manufacturer=find_text(item, "Manufacturer"),
            model=find_text(item, "Model"),
            owner=find_text(item, "Owner"),
            civil_code=find_text(item, "CivilCode"),
            address=find_text(item, "Address"),
            parental=_int(find_text(item, "Parental")),
            parent_id=find_text(item, "ParentID"),
            status=(find_text(item, "Status") or "ON").upper(),
            longitude=_float(find_text(item, "Longitude")),
            latitude=_float(find_text(item, "Latitude")),
            ptz_type=_int(find_text(item, "Info/PTZType") or find_text(item, "PTZType")),
            business_group_id=(
                find_text(item, "BusinessGroupID") or find_text(item, "Info/BusinessGroupID")
            ),
            secrecy=1 if find_text(item, "Secrecy") == "1" else 0,
        )

    def to_xml(self) -> str:
        """One ``<Item>``, shaped by what it is (§A.2.6, as WVP sends them): a region
        (civil code, up to 8 digits) is its code and name; a business group (215) and a
        virtual organisation (216) add their place in the tree; a device or channel is full."""
        head = "<Item>\r\n" + el("DeviceID", self.device_id) + el("Name", self.name)
        kind = ids.type_code_of(self.device_id)
        if not ids.is_gb_id(self.device_id) and len(self.device_id) <= 8:
            return head + "</Item>\r\n"
        if kind in (ids.BUSINESS_GROUP, ids.VIRTUAL_ORGANISATION):
            is_org = kind == ids.VIRTUAL_ORGANISATION
            group = el("BusinessGroupID", self.business_group_id) if is_org else ""
            return (
                head
                + (el("CivilCode", self.civil_code) if self.civil_code else "")
                + el("ParentID", self.parent_id)
                + group
                + "</Item>\r\n"
            )
        info = el("PTZType", self.ptz_type)
        if self.business_group_id:
            info += el("BusinessGroupID", self.business_group_id)
        return (
            head
            + el("Manufacturer", self.manufacturer)
            + el("Model", self.model)
            + el("Owner", self.owner or "Owner")
            + el("CivilCode", self.civil_code)
            + el("Address", self.address or "Address")
            + el("Parental", self.parental)
            + el("ParentID", self.parent_id)
            + el("SafetyWay", 0)
            + el("RegisterWay", 1)
            + el("Secrecy", self.secrecy)
            + el("Status", self.status)
            + (el("Longitude", self.longitude) if self.longitude is not None else "")
            + (el("Latitude", self.latitude) if self.latitude is not None else "")
            + f"<Info>\r\n{info}</Info>\r\n"
            + "</Item>\r\n"
        )

    @property
    def is_channel(self) -> bool:
        """Type codes 131-199 are video channels (WVP ``isFrontEnd``)."""
        return ids.type_code_of(self.device_id) in ids.PERIPHERALS


def list_items(doc: Manscdp, list_name: str) -> list[ET.Element]:
    node = find(doc.element, list_name)
    return [] if node is None else _children(node, "Item")


def sum_num(doc: Manscdp) -> int | None:
    text = doc.text("SumNum")
    return int(text) if text.isdigit() and len(text) < 9 else None


@dataclass
class DeviceInfo:
    device_id: str
    name: str = ""
    manufacturer: str = ""
    model: str = ""
    firmware: str = ""
    channels: int = 0
    result: str = "OK"

    @classmethod
    def from_doc(cls, doc: Manscdp) -> DeviceInfo:
        return cls(
            doc.device_id,
            doc.text("DeviceName"),
            doc.text("Manufacturer"),
            doc.text("Model"),
            doc.text("Firmware"),
            _int(doc.text("Channel")),
            doc.text("Result", "OK"),
        )

    def to_xml(self) -> str:
        """The body of a ``<Response>`` DeviceInfo."""
        return (
            el("DeviceName", self.name)
            + el("Manufacturer", self.manufacturer)
            + el("Model", self.model)
            + el("Firmware", self.firmware)
            + el("Channel", self.channels)
            + el("Result", self.result)
        )


@dataclass
class DeviceStatusInfo:
    device_id: str
    online: str = ""
    status: str = ""
    encode: str = ""
    record: str = ""
    device_time: str = ""
    result: str = "OK"

    @classmethod
    def from_doc(cls, doc: Manscdp) -> DeviceStatusInfo:
        return cls(
            doc.device_id,
            doc.text("Online"),
            doc.text("Status"),
            doc.text("Encode"),
            doc.text("Record"),
            doc.text("DeviceTime"),
            doc.text("Result", "OK"),
        )

    def to_xml(self) -> str:
        """The body of a ``<Response>`` DeviceStatus; fields left empty are left out."""
        optional = (
            ("Encode", self.encode),
            ("Record", self.record),
            ("DeviceTime", self.device_time),
        )
        return (
            el("Result", self.result)
            + el("Online", self.online)
            + el("Status", self.status)
            + "".join(el(name, value) for name, value in optional if value)
        )


@dataclass
class RecordItem:
    device_id: str
    name: str
    start: datetime
    end: datetime
    file_path: str = ""
    type: str = "time"
    file_size: int = 0

    @classmethod
    def from_element(cls, item: ET.Element, tz: tzinfo | None) -> RecordItem | None:
        start = parse_time(find_text(item, "StartTime"), tz)
        end = parse_time(find_text(item, "EndTime"), tz)
        if start is None or end is None or end <= start:
            return None
        return cls(
            find_text(item, "DeviceID"),
            find_text(item, "Name"),
            start,
            end,
            find_text(item, "FilePath"),
            find_text(item, "Type", "time"),
            _int(find_text(item, "FileSize")),
        )

    def to_xml(self, tz: tzinfo | None = None) -> str:
        """One ``<Item>`` of a RecordInfo answer, in ``tz`` (device local time)."""
        return (
            "<Item>\r\n"
            + el("DeviceID", self.device_id)
            + el("Name", self.name)
            + el("FilePath", self.file_path)
            + el("Address", "Address")
            + el("StartTime", fmt_time(self.start, tz))
            + el("EndTime", fmt_time(self.end, tz))
            + el("Secrecy", 0)
            + el("Type", self.type)
            + el("RecorderID", self.device_id)
            + el("FileSize", self.file_size)
            + "</Item>\r\n"
        )


def merge_ranges(items: list[RecordItem]) -> list[tuple[datetime, datetime]]:
    """Unsorted, overlapping recordings as sorted disjoint ranges (touching ones joined)."""
    out: list[tuple[datetime, datetime]] = []
    for it in sorted(items, key=lambda r: r.start):
        if out and it.start <= out[-1][1]:
            if it.end > out[-1][1]:
                out[-1] = (out[-1][0], it.end)
        else:
            out.append((it.start, it.end))
    return out
