"""The simulated NVR's configuration and PTZ state, and its answers to the queries about them.

ConfigDownload / DeviceConfig and PresetQuery (GB/T 28181-2016) always; the 2022 ones
(HomePositionQuery, CruiseTrackListQuery, CruiseTrackQuery, PTZPosition, SDCardStatus)
only with ``NvrConfig.gb_2022``, since a 2016 recorder stays silent on them.  The
DeviceControl commands that change this state (PTZPreciseCtrl, HomePosition,
FormatSDCard) are applied by :meth:`DeviceSettings.apply`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sip import manscdp_2022 as m22
from sip.device_config import (
    AlarmReport,
    BasicParam,
    DeviceConfigInfo,
    RecordPlanDay,
    VideoParamOpt,
    VideoRecordPlan,
    VideoStreamParam,
)
from sip.manscdp import Manscdp, el, find

if TYPE_CHECKING:
    from .nvr import SimulatedNvr


class DeviceSettings:
    def __init__(self, nvr: SimulatedNvr) -> None:
        c = nvr.config
        self.nvr = nvr
        self.basic = BasicParam(
            c.name, c.expires_s, int(c.keepalive_interval_s), c.keepalive_misses
        )
        self.video_params = [
            VideoStreamParam(0, "5" if c.video_codec() == "h265" else "2", "6", "25", "1", "2048"),
            VideoStreamParam(1, "2", "5", "15", "2", "512"),
        ]
        self.record_plan = VideoRecordPlan(
            True, 0, [RecordPlanDay(d, [("00:00:00", "23:59:59")]) for d in range(1, 8)]
        )
        self.alarm_report = AlarmReport(True, False)
        self.presets = [m22.Preset("1", "大门"), m22.Preset("2", "罐区"), m22.Preset("3", "装卸台")]
        self.home: dict[str, m22.HomePosition] = {}
        self.positions: dict[str, m22.PtzPosition] = {}
        self.cruise = m22.CruiseTrackDetail(
            1, "巡航1", [m22.CruisePoint(1, 10, 5), m22.CruisePoint(2, 15, 5)]
        )
        self.sd_cards = [m22.SdCard(1, "SD1", "ok", 0, 65536, 40960)]
        answers = {
            "ConfigDownload": self._config_download,
            "DeviceConfig": self._device_config,
            "PresetQuery": self._presets,
        }
        if c.gb_2022:
            answers |= {
                "HomePositionQuery": self._home_position,
                "CruiseTrackListQuery": self._cruise_tracks,
                "CruiseTrackQuery": self._cruise_track,
                "PTZPosition": self._ptz_position,
                "SDCardStatus": self._sd_cards,
            }
        nvr.agent.extra_queries.update(answers)

    def position(self, channel_id: str) -> m22.PtzPosition:
        return self.positions.setdefault(channel_id, m22.PtzPosition(0, 0, 1, 60.0, 34.0, 120.0))

    def _known(self, doc: Manscdp) -> bool:
        return doc.device_id in self.nvr.channels or doc.device_id == self.nvr.config.device_id

    async def _error(self, doc: Manscdp) -> None:
        await self.nvr.agent.respond(doc, el("Result", "ERROR"))

    # --- answers -------------------------------------------------------------------------

    async def _config_download(self, doc: Manscdp) -> None:
        wanted = set(doc.text("ConfigType").split("/"))
        info = DeviceConfigInfo(doc.device_id)
        if "BasicParam" in wanted:
            info.basic_param = self.basic
        if "VideoParamOpt" in wanted:
            info.video_param_opt = VideoParamOpt("1/2/4", "5/6")
        if "VideoParamAttribute" in wanted:
            info.video_params = self.video_params
        if "VideoRecordPlan" in wanted:
            info.record_plan = self.record_plan
        if "AlarmReport" in wanted:
            info.alarm_report = self.alarm_report
        if "FrameMirror" in wanted:
            info.frame_mirror = "Centre"
        await self.nvr.agent.respond(doc, info.to_xml())

    async def _device_config(self, doc: Manscdp) -> None:
        node = find(doc.element, "BasicParam")
        if node is None:
            await self._error(doc)
            return
        new = BasicParam.from_element(node)
        self.basic = BasicParam(
            new.name or self.basic.name,
            new.expiration or self.basic.expiration,
            new.heartbeat_interval or self.basic.heartbeat_interval,
            new.heartbeat_count or self.basic.heartbeat_count,
        )
        await self.nvr.agent.respond(doc, el("Result", "OK"))

    async def _presets(self, doc: Manscdp) -> None:
        if doc.device_id not in self.nvr.channels:
            await self._error(doc)
            return
        items = [p.to_xml() for p in self.presets]
        await self.nvr.agent.send_list(doc, doc.device_id, "PresetList", items, 2)

    async def _home_position(self, doc: Manscdp) -> None:
        home = self.home.get(doc.device_id, m22.HomePosition(True, 1, 300))
        await self.nvr.agent.respond(doc, el("Result", "OK") + home.to_xml())

    async def _cruise_tracks(self, doc: Manscdp) -> None:
        track = m22.CruiseTrack(self.cruise.number, self.cruise.name)
        await self.nvr.agent.respond(doc, m22.cruise_tracks_xml([track]))

    async def _cruise_track(self, doc: Manscdp) -> None:
        if doc.text("Number") != str(self.cruise.number):
            await self._error(doc)
            return
        await self.nvr.agent.respond(doc, self.cruise.to_xml())

    async def _ptz_position(self, doc: Manscdp) -> None:
        if not self._known(doc):
            await self._error(doc)
            return
        await self.nvr.agent.respond(doc, self.position(doc.device_id).to_xml())

    async def _sd_cards(self, doc: Manscdp) -> None:
        await self.nvr.agent.respond(doc, m22.sd_cards_xml(self.sd_cards))

    # --- controls ------------------------------------------------------------------------

    def apply(self, control: Manscdp) -> None:
        """The 2022 DeviceControl commands that change what the queries above answer."""
        precise = find(control.element, "PTZPreciseCtrl")
        if precise is not None:
            now = self.position(control.device_id)
            for name, attr in (("Pan", "pan"), ("Tilt", "tilt"), ("Zoom", "zoom")):
                value = m22.float_at(precise, name)
                if value is not None:
                    setattr(now, attr, value)
        if find(control.element, "HomePosition") is not None:
            self.home[control.device_id] = m22.HomePosition.from_doc(control)
        index = control.text("FormatSDCard")
        if index.isdigit():
            for card in self.sd_cards:
                if card.id == int(index) or int(index) == 0:
                    card.status, card.free_mb = "ok", card.capacity_mb
