"""ConfigDownload and DeviceConfig bodies (GB/T 28181-2016 §A.2.4.7, §A.2.3.2; 2022 types).

2016 has BasicParam, VideoParamOpt and the SVAC encode/decode configs; 2022 adds
VideoParamAttribute, VideoRecordPlan, VideoAlarmRecord, PictureMask, FrameMirror,
AlarmReport, OSDConfig and SnapShotConfig.  The blocks a platform acts on are typed;
the rest come back as plain data.  No I/O.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from .manscdp import Manscdp, el, find_text
from .manscdp_2022 import block, children, element_dict, int_at

CONFIG_TYPES_2016 = ("BasicParam", "VideoParamOpt", "SVACEncodeConfig", "SVACDecodeConfig")
CONFIG_TYPES = (
    *CONFIG_TYPES_2016,
    "VideoParamAttribute",
    "VideoRecordPlan",
    "VideoAlarmRecord",
    "PictureMask",
    "FrameMirror",
    "AlarmReport",
    "OSDConfig",
    "SnapShotConfig",
)
FRAME_MIRRORS = ("Horizontal", "Vertical", "Centre")


@dataclass
class BasicParam:
    name: str = ""
    expiration: int | None = None  # registration lifetime, s
    heartbeat_interval: int | None = None  # s
    heartbeat_count: int | None = None  # missed keepalives before offline

    @classmethod
    def from_element(cls, node: ET.Element) -> BasicParam:
        return cls(
            find_text(node, "Name"),
            int_at(node, "Expiration"),
            int_at(node, "HeartBeatInterval"),
            int_at(node, "HeartBeatCount"),
        )

    def to_xml(self) -> str:
        return block(
            "BasicParam",
            (el("Name", self.name) if self.name else "")
            + el("Expiration", self.expiration)
            + el("HeartBeatInterval", self.heartbeat_interval)
            + el("HeartBeatCount", self.heartbeat_count),
        )


@dataclass
class VideoParamOpt:
    download_speed: str = ""  # "1/2/4": the download speeds the device offers
    resolution: str = ""  # Annex G codes, "/"-separated

    @classmethod
    def from_element(cls, node: ET.Element) -> VideoParamOpt:
        return cls(find_text(node, "DownloadSpeed"), find_text(node, "Resolution"))

    def to_xml(self) -> str:
        inner = el("DownloadSpeed", self.download_speed) + el("Resolution", self.resolution)
        return block("VideoParamOpt", inner)


@dataclass
class VideoStreamParam:
    """One stream of VideoParamAttribute (2022): stream 0 main, 1 sub stream 1, ..."""

    stream_number: int = 0
    video_format: str = ""  # Annex G f= codes: 2 H.264, 5 H.265 (2022)
    resolution: str = ""
    frame_rate: str = ""
    bit_rate_type: str = ""  # 1 CBR, 2 VBR
    video_bit_rate: str = ""  # kbit/s

    @classmethod
    def from_element(cls, node: ET.Element) -> VideoStreamParam:
        return cls(
            int_at(node, "StreamNumber") or 0,
            find_text(node, "VideoFormat"),
            find_text(node, "Resolution"),
            find_text(node, "FrameRate"),
            find_text(node, "BitRateType"),
            find_text(node, "VideoBitRate"),
        )

    def to_xml(self) -> str:
        return block(
            "Item",
            el("StreamNumber", self.stream_number)
            + el("VideoFormat", self.video_format)
            + el("Resolution", self.resolution)
            + el("FrameRate", self.frame_rate)
            + el("BitRateType", self.bit_rate_type)
            + el("VideoBitRate", self.video_bit_rate),
        )


@dataclass
class RecordPlanDay:
    week_day: int  # 1 Monday … 7 Sunday
    segments: list[tuple[str, str]] = field(default_factory=list)  # ("HH:MM:SS", "HH:MM:SS")

    @classmethod
    def from_element(cls, node: ET.Element) -> RecordPlanDay:
        def hms(prefix: str, seg: ET.Element) -> str:
            parts = [int_at(seg, f"{prefix}{unit}") or 0 for unit in ("Hour", "Min", "Sec")]
            return "{:02d}:{:02d}:{:02d}".format(*parts)

        segments = [(hms("Start", s), hms("Stop", s)) for s in children(node, "TimeSegment")]
        return cls(int_at(node, "WeekDayNum") or 0, segments)

    def to_xml(self) -> str:
        inner = el("WeekDayNum", self.week_day) + el("TimeSegmentSumNum", len(self.segments))
        for start, stop in self.segments:
            (h1, m1, s1), (h2, m2, s2) = (t.split(":") for t in (start, stop))
            values = ("StartHour", h1), ("StartMin", m1), ("StartSec", s1)
            values += ("StopHour", h2), ("StopMin", m2), ("StopSec", s2)
            inner += block("TimeSegment", "".join(el(k, int(v)) for k, v in values))
        return block("RecordSchedule", inner)


@dataclass
class VideoRecordPlan:
    record_enable: bool = False
    stream_number: int = 0
    days: list[RecordPlanDay] = field(default_factory=list)

    @classmethod
    def from_element(cls, node: ET.Element) -> VideoRecordPlan:
        days = [RecordPlanDay.from_element(d) for d in children(node, "RecordSchedule")]
        return cls(int_at(node, "RecordEnable") == 1, int_at(node, "StreamNumber") or 0, days)

    def to_xml(self) -> str:
        inner = (
            el("RecordEnable", int(self.record_enable))
            + el("StreamNumber", self.stream_number)
            + el("RecordScheduleSumNum", len(self.days))
            + "".join(d.to_xml() for d in self.days)
        )
        return block("VideoRecordPlan", inner)


@dataclass
class AlarmReport:
    motion_detection: bool = False
    field_detection: bool = False

    @classmethod
    def from_element(cls, node: ET.Element) -> AlarmReport:
        return cls(int_at(node, "MotionDetection") == 1, int_at(node, "FieldDetection") == 1)

    def to_xml(self) -> str:
        inner = el("MotionDetection", int(self.motion_detection))
        inner += el("FieldDetection", int(self.field_detection))
        return block("AlarmReport", inner)


@dataclass
class DeviceConfigInfo:
    """A ConfigDownload answer: the blocks asked for, typed where a platform acts on them,
    every other block (SVAC, PictureMask, OSDConfig, SnapShotConfig...) as plain data."""

    device_id: str
    result: str = "OK"
    basic_param: BasicParam | None = None
    video_param_opt: VideoParamOpt | None = None
    video_params: list[VideoStreamParam] | None = None  # VideoParamAttribute
    record_plan: VideoRecordPlan | None = None
    alarm_report: AlarmReport | None = None
    frame_mirror: str | None = None
    other: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, doc: Manscdp) -> DeviceConfigInfo:
        info = cls(doc.device_id, doc.text("Result", "OK"))
        for node in doc.element:
            tag = str(node.tag)
            if tag == "BasicParam":
                info.basic_param = BasicParam.from_element(node)
            elif tag == "VideoParamOpt":
                info.video_param_opt = VideoParamOpt.from_element(node)
            elif tag == "VideoParamAttribute":
                items = children(node, "Item")
                info.video_params = [VideoStreamParam.from_element(i) for i in items]
            elif tag == "VideoRecordPlan":
                info.record_plan = VideoRecordPlan.from_element(node)
            elif tag == "AlarmReport":
                info.alarm_report = AlarmReport.from_element(node)
            elif tag == "FrameMirror":
                info.frame_mirror = find_text(node, "FrameMirror") or (node.text or "").strip()
            elif tag in CONFIG_TYPES:
                info.other[tag] = element_dict(node)
        return info

    def to_xml(self) -> str:
        out = el("Result", self.result)
        for part in (self.basic_param, self.video_param_opt, self.record_plan, self.alarm_report):
            out += part.to_xml() if part is not None else ""
        if self.video_params is not None:
            items = "".join(p.to_xml() for p in self.video_params)
            out += f'<VideoParamAttribute Num="{len(self.video_params)}">\r\n{items}'
            out += "</VideoParamAttribute>\r\n"
        if self.frame_mirror is not None:
            out += block("FrameMirror", el("FrameMirror", self.frame_mirror))
        return out


def config_types(types: list[str] | tuple[str, ...]) -> str:
    """The ``<ConfigType>`` value ("BasicParam/VideoParamOpt"); ValueError on an unknown type."""
    unknown = [t for t in types if t not in CONFIG_TYPES]
    if unknown or not types:
        raise ValueError(f"unknown ConfigType {unknown or types!r}: use {', '.join(CONFIG_TYPES)}")
    return "/".join(dict.fromkeys(types))
