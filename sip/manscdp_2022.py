"""MANSCDP bodies a platform needs beyond Catalog/Info/Status/Record, most new in 2022.

GB/T 28181-2022 §A.2.4 adds the queries HomePositionQuery, CruiseTrackListQuery,
CruiseTrackQuery, PTZPosition and SDCardStatus to the 2016 PresetQuery, and DeviceControl
commands (PTZPreciseCtrl, FormatSDCard, ...); its new config types are in
:mod:`sip.device_config`.  Each answer type reads a ``<Response>`` (``from_doc``) and
writes one (``to_xml``), so the simulated NVR answers with the code the platform parses.
Element names follow the 2022 text as implemented in public code
(chengxiaosheng/libgb28181).  No I/O.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from .manscdp import Manscdp, el, find, find_text

SD_CARD_STATES = ("ok", "formatting", "unformatted", "idle", "error")


def children(node: ET.Element | None, name: str) -> list[ET.Element]:
    low = name.lower()
    return [] if node is None else [c for c in node if str(c.tag).lower() == low]


def int_at(node: ET.Element | None, path: str) -> int | None:
    text = find_text(node, path) if node is not None else ""
    try:
        return int(text)
    except ValueError:
        return None


def float_at(node: ET.Element | None, path: str) -> float | None:
    text = find_text(node, path) if node is not None else ""
    try:
        return float(text)
    except ValueError:
        return None


def element_dict(node: ET.Element) -> Any:
    """An element as plain data: text for a leaf, a dict of children (lists when repeated)."""
    children = [c for c in node if isinstance(c.tag, str)]
    if not children:
        return (node.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        value = element_dict(child)
        if child.tag in out:
            if not isinstance(out[child.tag], list):
                out[child.tag] = [out[child.tag]]
            out[child.tag].append(value)
        else:
            out[child.tag] = value
    return out


def block(name: str, inner: str) -> str:
    return f"<{name}>\r\n{inner}</{name}>\r\n"


# --- presets, home position, cruise tracks, PTZ position --------------------------------------


@dataclass
class Preset:
    preset_id: str
    name: str = ""

    def to_xml(self) -> str:
        return block("Item", el("PresetID", self.preset_id) + el("PresetName", self.name))


def presets(items: list[ET.Element]) -> list[Preset]:
    """The ``<Item>``s of PresetQuery answers (PresetList), in order, duplicates dropped."""
    seen: dict[str, Preset] = {}
    for item in items:
        pid = find_text(item, "PresetID")
        if pid:
            seen.setdefault(pid, Preset(pid, find_text(item, "PresetName")))
    return list(seen.values())


@dataclass
class HomePosition:
    """看守位: the preset a camera returns to after ``reset_time`` seconds idle."""

    enabled: bool = False
    preset_index: int | None = None
    reset_time: int | None = None

    @classmethod
    def from_doc(cls, doc: Manscdp) -> HomePosition:
        node = find(doc.element, "HomePosition")
        if node is None:
            return cls()
        return cls(
            int_at(node, "Enabled") == 1, int_at(node, "PresetIndex"), int_at(node, "ResetTime")
        )

    def to_xml(self) -> str:
        inner = el("Enabled", int(self.enabled))
        if self.enabled:
            inner += el("ResetTime", self.reset_time) + el("PresetIndex", self.preset_index)
        return block("HomePosition", inner)


@dataclass
class CruiseTrack:
    number: int
    name: str = ""


@dataclass
class CruisePoint:
    preset_index: int
    stay_time: int = 0  # s
    speed: int = 0


@dataclass
class CruiseTrackDetail:
    number: int
    name: str = ""
    points: list[CruisePoint] = field(default_factory=list)

    @classmethod
    def from_doc(cls, doc: Manscdp, number: int) -> CruiseTrackDetail:
        points = [
            CruisePoint(
                int_at(p, "PresetIndex") or 0, int_at(p, "StayTime") or 0, int_at(p, "Speed") or 0
            )
            for p in children(find(doc.element, "CruisePointList"), "CruisePoint")
        ]
        return cls(number, doc.text("Name"), points)

    def to_xml(self) -> str:
        points = "".join(
            block(
                "CruisePoint",
                el("PresetIndex", p.preset_index)
                + el("StayTime", p.stay_time)
                + el("Speed", p.speed),
            )
            for p in self.points
        )
        return (
            el("Result", "OK")
            + el("Name", self.name)
            + el("SumNum", len(self.points))
            + f'<CruisePointList Num="{len(self.points)}">\r\n{points}</CruisePointList>\r\n'
        )


def cruise_tracks(doc: Manscdp) -> list[CruiseTrack]:
    nodes = children(find(doc.element, "CruiseTrackList"), "CruiseTrack")
    return [CruiseTrack(int_at(n, "Number") or 0, find_text(n, "Name")) for n in nodes]


def cruise_tracks_xml(tracks: list[CruiseTrack]) -> str:
    items = "".join(
        block("CruiseTrack", el("Number", t.number) + el("Name", t.name)) for t in tracks
    )
    return (
        el("Result", "OK")
        + el("SumNum", len(tracks))
        + f'<CruiseTrackList Num="{len(tracks)}">\r\n{items}</CruiseTrackList>\r\n'
    )


PTZ_FIELDS = (
    "Pan",
    "Tilt",
    "Zoom",
    "HorizontalFieldAngle",
    "VerticalFieldAngle",
    "MaxViewDistance",
)


@dataclass
class PtzPosition:
    """Where a PTZ camera points (degrees), its zoom and field of view (PTZPosition, 2022)."""

    pan: float | None = None
    tilt: float | None = None
    zoom: float | None = None
    horizontal_field_angle: float | None = None
    vertical_field_angle: float | None = None
    max_view_distance: float | None = None

    @classmethod
    def from_doc(cls, doc: Manscdp) -> PtzPosition:
        node = find(doc.element, "PTZPosition")  # some devices nest it; libgb28181 does not
        base = node if node is not None and len(node) else doc.element
        return cls(*(float_at(base, name) for name in PTZ_FIELDS))

    def to_xml(self) -> str:
        values = zip(PTZ_FIELDS, self.__dict__.values(), strict=True)
        return el("Result", "OK") + "".join(el(k, f"{v:.2f}") for k, v in values if v is not None)


@dataclass
class SdCard:
    id: int
    name: str = ""
    status: str = "ok"  # ok, formatting, unformatted, idle, error
    format_progress: int = 0  # %
    capacity_mb: int = 0
    free_mb: int = 0

    def to_xml(self) -> str:
        return block(
            "Item",
            el("ID", self.id)
            + el("HddName", self.name)
            + el("Status", self.status)
            + el("FormatProgress", self.format_progress)
            + el("Capacity", self.capacity_mb)
            + el("FreeSpace", self.free_mb),
        )


def sd_cards(doc: Manscdp) -> list[SdCard]:
    return [
        SdCard(
            int_at(i, "ID") or 0,
            find_text(i, "HddName"),
            find_text(i, "Status").lower(),
            int_at(i, "FormatProgress") or 0,
            int_at(i, "Capacity") or 0,
            int_at(i, "FreeSpace") or 0,
        )
        for i in children(find(doc.element, "SDCardStatusInfo"), "Item")
    ]


def sd_cards_xml(cards: list[SdCard]) -> str:
    items = "".join(c.to_xml() for c in cards)
    return (
        el("Result", "OK")
        + el("SumNum", len(cards))
        + f'<SDCardStatusInfo Num="{len(cards)}">\r\n{items}</SDCardStatusInfo>\r\n'
    )


# --- DeviceControl of 2022 ------------------------------------------------------------------


def ptz_precise_ctrl(pan: float | None, tilt: float | None, zoom: float | None) -> str:
    """PTZPreciseCtrl: pan 0–360°, tilt −90–90°, zoom ≥ 1 (ValueError outside)."""
    if pan is None and tilt is None and zoom is None:
        raise ValueError("PTZPreciseCtrl needs pan, tilt or zoom")
    if pan is not None and not 0 <= pan <= 360:
        raise ValueError(f"pan {pan} is not within 0-360 degrees")
    if tilt is not None and not -90 <= tilt <= 90:
        raise ValueError(f"tilt {tilt} is not within -90-90 degrees")
    if zoom is not None and zoom < 1:
        raise ValueError(f"zoom {zoom} is below 1")
    parts = (("Pan", pan), ("Tilt", tilt), ("Zoom", zoom))
    return block("PTZPreciseCtrl", "".join(el(k, f"{v:.2f}") for k, v in parts if v is not None))


def format_sd_card(index: int) -> str:
    if index < 0:
        raise ValueError(f"SD card index {index} must be 0 or more")
    return el("FormatSDCard", index)
