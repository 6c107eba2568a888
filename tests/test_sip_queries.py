"""MANSCDP queries against the simulated NVR: Catalog, DeviceInfo/Status, RecordInfo, PTZ, Alarm."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sip import manscdp
from sip.queries import QueryError
from sip.server import SipError
from sip.store import MemoryDeviceStore

from .sip_support import nvr_config, nvr_id, running_nvr, running_server, wait_until


def _watch_messages(nvr, sent: list[bytes]) -> None:
    original = nvr.agent.send_message

    async def spy(body: bytes, call_id: str | None = None):
        sent.append(body)
        return await original(body, call_id)

    nvr.agent.send_message = spy


async def test_catalog_of_64_channels_over_several_gb2312_messages() -> None:
    store = MemoryDeviceStore()
    async with running_server(store) as server:
        cfg = nvr_config(server, channels=64, catalog_per_message=5)
        async with running_nvr(cfg) as nvr:
            sent: list[bytes] = []
            _watch_messages(nvr, sent)
            result = await server.catalog(nvr_id(1))
            assert result.complete and result.sum_num == 64
            assert sorted(i.device_id for i in result.items) == sorted(nvr.channels)
            catalog_msgs = [b for b in sent if b"<CmdType>Catalog</CmdType>" in b]
            assert len(catalog_msgs) == 13  # ceil(64 / 5)
            assert all(
                b.startswith(b'<?xml version="1.0" encoding="GB2312"?>') for b in catalog_msgs
            )
            assert "北门枪机".encode("gb2312") in catalog_msgs[0]
            stored = store.devices[nvr_id(1)].channels
            assert len(stored) == 64
            assert stored[nvr.channels[0]].name == "通道1-北门枪机"


async def test_catalog_timeout_keeps_partial_results() -> None:
    store = MemoryDeviceStore()
    async with running_server(store, catalog_timeout_s=0.5) as server:
        async with running_nvr(nvr_config(server, channels=8, catalog_per_message=2)) as nvr:
            original = nvr.agent.send_message
            count = 0

            async def lossy(body: bytes, call_id: str | None = None):
                nonlocal count
                if b"<CmdType>Catalog</CmdType>" in body:
                    count += 1
                    if count == 2:  # the second part never arrives
                        return await original(body.replace(b"Catalog", b"Cat"), call_id)
                return await original(body, call_id)

            nvr.agent.send_message = lossy
            result = await server.catalog(nvr_id(1))
            assert not result.complete and result.sum_num == 8
            assert len(result.items) == 6
            assert len(store.devices[nvr_id(1)].channels) == 6


async def test_device_info_status_and_record_info() -> None:
    async with running_server() as server:
        cfg = nvr_config(server, record_hours=6, record_per_message=2)
        async with running_nvr(cfg) as nvr:
            info = await server.device_info(nvr_id(1))
            assert (info.name, info.manufacturer, info.channels) == ("模拟NVR", "VMS-Sim", 4)
            status = await server.device_status(nvr_id(1))
            assert (status.online, status.record, status.result) == ("ONLINE", "ON", "OK")
            now = datetime.now(UTC)
            start = now - timedelta(hours=4, minutes=30)
            res = await server.record_info(nvr_id(1), nvr.channels[1], start, now)
            assert res.complete and res.sum_num == len(res.items) >= 4
            ranges = res.ranges
            assert len(ranges) == 1  # hourly files touch: one merged range
            assert abs((ranges[0][0] - start).total_seconds()) <= 1
            assert (now - ranges[0][1]).total_seconds() <= 2
            assert [r.start for r in res.items] != sorted(r.start for r in res.items)  # unsorted
            empty = await server.record_info(
                nvr_id(1), nvr.channels[1], now - timedelta(days=3), now - timedelta(days=2)
            )
            assert empty.complete and empty.items == [] and empty.sum_num == 0


async def test_ptz_and_controls_reach_the_device_as_standard_bytes() -> None:
    from sip import ptz

    async with running_server() as server:
        async with running_nvr(nvr_config(server)) as nvr:
            ch = nvr.channels[0]
            for cmd in (
                ptz.move("up", 0x40),
                ptz.zoom("in", 1),
                ptz.preset("call", 3),
                ptz.move("stop"),
            ):
                await server.ptz(nvr_id(1), ch, cmd)
            await server.record_control(nvr_id(1), ch, True)
            await server.guard_control(nvr_id(1), True)
            assert nvr.state.ptz_commands == [
                (ch, "A50F01084040003D"),
                (ch, "A50F0110000010D5"),
                (ch, "A50F01820003003A"),
                (ch, "A50F0100000000B5"),
            ]
            assert (ch, "RecordCmd", "Record") in nvr.state.controls
            assert (nvr_id(1), "GuardCmd", "SetGuard") in nvr.state.controls
            with pytest.raises(ValueError):
                await server.ptz(nvr_id(1), ch, "A50F01084040003E")  # bad checksum never sent


async def test_alarm_notify_is_stored() -> None:
    store = MemoryDeviceStore()
    async with running_server(store) as server:
        async with running_nvr(nvr_config(server)) as nvr:
            assert await nvr.send_alarm(nvr.channels[2], priority=1, method=5, alarm_type=2) == 200
            await wait_until(lambda: store.devices[nvr_id(1)].alarms, what="alarm stored")
            alarm = store.devices[nvr_id(1)].alarms[0]
            assert (alarm.device_id, alarm.priority, alarm.method, alarm.alarm_type) == (
                nvr.channels[2],
                1,
                5,
                2,
            )
            assert alarm.description == "移动侦测"


async def test_queries_to_offline_or_silent_devices_fail_clearly() -> None:
    async with running_server(query_timeout_s=0.3) as server:
        with pytest.raises(SipError) as err:
            await server.device_info(nvr_id(9))
        assert err.value.status == 404
        async with running_nvr(nvr_config(server)) as nvr:
            nvr.agent.answer = _silent  # type: ignore[method-assign]
            with pytest.raises(QueryError):
                await server.device_info(nvr_id(1))
            assert not server.queries.pending  # nothing left waiting


async def _silent(doc: manscdp.Manscdp) -> None:
    return None


async def test_catalog_on_register_fills_the_store() -> None:
    store = MemoryDeviceStore()
    async with running_server(store, catalog_on_register=True) as server:
        async with running_nvr(nvr_config(server, channels=6)):
            await wait_until(lambda: len(store.devices[nvr_id(1)].channels) == 6, what="catalog")
