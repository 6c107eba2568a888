"""Queries and controls beyond the basic set: device configuration, PTZ state, SD cards.

ConfigDownload / DeviceConfig and PresetQuery are GB/T 28181-2016; HomePositionQuery,
CruiseTrackListQuery, CruiseTrackQuery, PTZPosition, SDCardStatus, PTZPreciseCtrl and
FormatSDCard are 2022.  Each query returns a typed answer (``sip.manscdp_2022``,
``sip.device_config``) or raises :class:`QueryError` when the device sent none in time —
2016 devices usually ignore the 2022 commands, and that is what their callers see.
"""

from __future__ import annotations

from . import manscdp
from . import manscdp_2022 as m22
from .device_config import BasicParam, DeviceConfigInfo, config_types
from .manscdp import Manscdp, el
from .queries import Queries, QueryError


class ExtendedQueries:
    """Built on :class:`Queries` (its SN space, answer matching and timeouts)."""

    def __init__(self, queries: Queries) -> None:
        self.queries = queries

    async def _one(self, device_id: str, cmd: str, target_id: str, inner: str = "") -> Manscdp:
        docs = await self.queries.ask(device_id, cmd, target_id, inner)
        if not docs:
            raise QueryError(f"device {device_id} sent no {cmd} answer for {target_id}")
        return docs[0]

    # --- queries -----------------------------------------------------------------------

    async def config_download(
        self, device_id: str, types: list[str] | tuple[str, ...] = ("BasicParam",)
    ) -> DeviceConfigInfo:
        """ConfigDownload of ``types`` (ValueError for an unknown one)."""
        inner = el("ConfigType", config_types(types))
        return DeviceConfigInfo.from_doc(
            await self._one(device_id, "ConfigDownload", device_id, inner)
        )

    async def presets(self, device_id: str, channel_id: str) -> list[m22.Preset]:
        docs = await self.queries.ask(device_id, "PresetQuery", channel_id, list_name="PresetList")
        if not docs:
            raise QueryError(f"device {device_id} sent no PresetQuery answer for {channel_id}")
        items = [i for d in docs for i in manscdp.list_items(d, "PresetList")]
        return m22.presets(items)

    async def home_position(self, device_id: str, channel_id: str) -> m22.HomePosition:
        return m22.HomePosition.from_doc(
            await self._one(device_id, "HomePositionQuery", channel_id)
        )

    async def cruise_tracks(self, device_id: str, channel_id: str) -> list[m22.CruiseTrack]:
        return m22.cruise_tracks(await self._one(device_id, "CruiseTrackListQuery", channel_id))

    async def cruise_track(
        self, device_id: str, channel_id: str, number: int
    ) -> m22.CruiseTrackDetail:
        doc = await self._one(device_id, "CruiseTrackQuery", channel_id, el("Number", number))
        return m22.CruiseTrackDetail.from_doc(doc, number)

    async def ptz_position(self, device_id: str, channel_id: str) -> m22.PtzPosition:
        return m22.PtzPosition.from_doc(await self._one(device_id, "PTZPosition", channel_id))

    async def sd_cards(self, device_id: str) -> list[m22.SdCard]:
        return m22.sd_cards(await self._one(device_id, "SDCardStatus", device_id))

    # --- controls ----------------------------------------------------------------------

    async def configure_basic(self, device_id: str, basic: BasicParam) -> str:
        """DeviceConfig BasicParam (name, registration lifetime, heartbeat); the device's
        Result ("OK"/"ERROR")."""
        docs = await self.queries.ask(
            device_id, "DeviceConfig", device_id, basic.to_xml(), root="Control"
        )
        if not docs:
            raise QueryError(f"device {device_id} did not answer DeviceConfig")
        return docs[0].text("Result", "OK").upper()

    async def ptz_precise(
        self,
        device_id: str,
        channel_id: str,
        pan: float | None = None,
        tilt: float | None = None,
        zoom: float | None = None,
    ) -> None:
        """Point a PTZ camera at absolute angles (ValueError outside their ranges)."""
        inner = m22.ptz_precise_ctrl(pan, tilt, zoom)
        await self.queries.device_control(device_id, channel_id, inner)

    async def set_home_position(
        self, device_id: str, channel_id: str, home: m22.HomePosition
    ) -> None:
        if home.enabled and (home.preset_index is None or home.reset_time is None):
            raise ValueError("an enabled home position needs a preset and a reset time")
        await self.queries.device_control(device_id, channel_id, home.to_xml())

    async def format_sd_card(self, device_id: str, index: int) -> None:
        await self.queries.device_control(device_id, device_id, m22.format_sd_card(index))
