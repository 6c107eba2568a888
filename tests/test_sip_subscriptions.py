"""Subscriptions both ways, against real exchanges on loopback.

Platform side: our server subscribes to the simulated NVR (Catalog, Alarm, MobilePosition)
when it connects, applies the catalog ``<Event>``s it notifies, refreshes before expiry,
subscribes again after the NVR restarts, and lets a subscription to a vanished NVR run out
cleanly.  Device side: a second server of ours plays the superior and subscribes to our
cascade; catalog changes, alarms and positions under us reach it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from simdevice.nvr import SimulatedNvr
from sip import manscdp
from sip.manscdp import CONTENT_TYPE, CatalogItem
from sip.message import SipRequest, new_call_id
from sip.notify import (
    ADD,
    ALARM,
    CATALOG,
    DEL,
    MOBILE_POSITION,
    OFF,
    ON,
    UPDATE,
    AlarmNotify,
    CatalogEvent,
    MobilePosition,
    catalog_events,
    diff_catalog,
    reset_alarm_xml,
)
from sip.server import SipServer
from sip.settings import UpstreamConfig
from sip.store import MemoryDeviceStore
from sip.transaction import ServerTransaction

from .sip_support import nvr_config, running_nvr, running_server, wait_until

ALL = ("catalog", "alarm", "mobile_position")
SUPERIOR_ID = "44010000002000000001"
SUPERIOR_DOMAIN = "4401000000"
OUR_ID = "34020000002000000001"


def _doc(body: str) -> manscdp.Manscdp:
    return manscdp.decode(f'<?xml version="1.0" encoding="GB2312"?>\r\n{body}'.encode("gb18030"))


def _active(server: SipServer, device_id: str) -> set[str]:
    return {s["kind"] for s in server.subscriptions.snapshot(device_id) if s["state"] == "active"}


def _count_subscribes(nvr: SimulatedNvr) -> list[str]:
    """Call-IDs of every SUBSCRIBE the NVR is sent (wrapping its handler)."""
    seen: list[str] = []
    handler = nvr.agent.extra_methods["SUBSCRIBE"]

    def counting(stx: ServerTransaction) -> None:
        seen.append(stx.request.call_id)
        handler(stx)

    nvr.agent.extra_methods["SUBSCRIBE"] = counting
    return seen


# --- the bodies, no I/O -------------------------------------------------------------------


def test_catalog_events_read_as_devices_send_them() -> None:
    doc = _doc(
        "<Notify><CmdType>Catalog</CmdType><SN>9</SN><DeviceID>34020000001180000001</DeviceID>"
        '<SumNum>4</SumNum><DeviceList Num="4">'
        "<Item><DeviceID>34020000001310000007</DeviceID><Name>新</Name><Event>add</Event></Item>"
        "<Item><DeviceID>34020000001310000002</DeviceID><Event>VLOST</Event></Item>"
        "<Item><DeviceID>34020000001310000003</DeviceID><Name>无事件</Name></Item>"
        "<Item><DeviceID>34020000001310000004</DeviceID><Event>EXPLODE</Event></Item>"
        "</DeviceList></Notify>"
    )
    events = catalog_events(doc)
    assert [(e.event, e.item.device_id, e.item.status) for e in events] == [
        (ADD, "34020000001310000007", "ON"),
        ("VLOST", "34020000001310000002", "OFF"),  # video lost counts as off
        (ADD, "34020000001310000003", "ON"),  # no <Event>: an ADD, as WVP reads it
    ]  # an unknown event is skipped, not guessed
    assert events[0].item.name == "新"


def test_diff_and_event_items() -> None:
    a = CatalogItem("34020000001310000001", name="A", status="ON")
    b = CatalogItem("34020000001310000002", name="B", status="ON")
    c = CatalogItem("34020000001310000003", name="C")
    after = [CatalogItem(a.device_id, name="A", status="OFF"), CatalogItem(b.device_id, "B2"), c]
    events = diff_catalog([a, b], after)
    assert [(e.event, e.item.device_id) for e in events] == [
        (ADD, c.device_id),
        (OFF, a.device_id),
        (UPDATE, b.device_id),
    ]
    assert [e.event for e in diff_catalog(after, [a])] == [ON, DEL, DEL]
    xml = CatalogEvent(DEL, a).to_xml()
    assert "<Event>DEL</Event>" in xml and "<Name>" not in xml
    full = CatalogEvent(ADD, c).to_xml()
    assert full.index("<Name>C</Name>") < full.index("<Event>ADD</Event>") < full.index("</Item>")


def test_alarm_and_position_bodies_round_trip() -> None:
    doc = _doc(
        "<Notify><CmdType>Alarm</CmdType><SN>77</SN><DeviceID>34020000001340000001</DeviceID>"
        "<AlarmPriority>2</AlarmPriority><AlarmMethod>5</AlarmMethod>"
        "<AlarmTime>2026-11-23T10:12:30</AlarmTime><AlarmDescription>越界&报警</AlarmDescription>"
        "<Longitude>0</Longitude><Latitude>0</Latitude>"
        "<Info><AlarmType>6</AlarmType><AlarmTypeParam><EventType>1</EventType></AlarmTypeParam>"
        "</Info></Notify>"
    )
    alarm = AlarmNotify.from_doc(doc)
    assert (alarm.priority, alarm.method, alarm.alarm_type, alarm.sn) == (2, 5, 6, 77)
    assert alarm.extra == {"EventType": "1"} and alarm.description == "越界报警"
    assert alarm.longitude is None and alarm.latitude is None  # 0 / 0: no position known
    assert "<AlarmType>6</AlarmType>" in alarm.raw
    again = AlarmNotify.from_doc(
        _doc(
            "<Notify><CmdType>Alarm</CmdType><SN>1</SN>"
            f"<DeviceID>{alarm.device_id}</DeviceID>{alarm.to_xml()}</Notify>"
        )
    )
    assert (again.priority, again.method, again.alarm_type, again.time, again.extra) == (
        2,
        5,
        6,
        "2026-11-23T10:12:30",
        {"EventType": "1"},
    )
    assert reset_alarm_xml(5, 2) == (
        "<AlarmCmd>ResetAlarm</AlarmCmd>\r\n<Info>\r\n<AlarmMethod>5</AlarmMethod>\r\n"
        "<AlarmType>2</AlarmType>\r\n</Info>\r\n"
    )
    assert reset_alarm_xml() == "<AlarmCmd>ResetAlarm</AlarmCmd>\r\n"
    pos = _doc(
        "<Notify><CmdType>MobilePosition</CmdType><SN>3</SN><DeviceID>34020000001380000001"
        "</DeviceID><Time>2026-11-23T10:00:00</Time><Longitude>117.1</Longitude>"
        "<Latitude>36.6</Latitude><Speed>40.5</Speed><Direction>270</Direction></Notify>"
    )
    p = MobilePosition.from_doc(pos)
    assert p is not None and (p.longitude, p.latitude, p.speed, p.altitude) == (
        117.1,
        36.6,
        40.5,
        None,
    )
    off_globe = _doc(
        "<Notify><CmdType>MobilePosition</CmdType><SN>3</SN><DeviceID>x</DeviceID>"
        "<Longitude>517</Longitude><Latitude>36.6</Latitude></Notify>"
    )
    assert MobilePosition.from_doc(off_globe) is None


# --- platform side: we subscribe to the simulated NVR ------------------------------------


async def test_subscribed_on_connect_and_catalog_events_applied() -> None:
    store = MemoryDeviceStore()
    async with (
        running_server(store, subscribe=ALL, subscribe_expires_s=60) as server,
        running_nvr(nvr_config(server, channels=3)) as nvr,
    ):
        dev = nvr.config.device_id
        await server.catalog(dev)
        await wait_until(lambda: _active(server, dev) == {CATALOG, ALARM, MOBILE_POSITION}, 5)
        assert {s.kind for s in nvr.subscribers.by_call_id.values()} == {
            CATALOG,
            ALARM,
            MOBILE_POSITION,
        }
        channels = store.devices[dev].channels
        new = await nvr.events.add_channel(name="新增球机")
        await wait_until(lambda: new in channels, 5, "ADD applied")
        assert channels[new].name == "新增球机" and channels[new].status == "ON"
        await nvr.events.update_channel(new, name="改名球机")
        await wait_until(lambda: channels[new].name == "改名球机", 5, "UPDATE applied")
        await nvr.events.set_status(nvr.channels[0], OFF)
        await wait_until(lambda: channels[nvr.channels[0]].status == "OFF", 5, "OFF applied")
        await nvr.events.set_status(nvr.channels[0], ON)
        await wait_until(lambda: channels[nvr.channels[0]].status == "ON", 5, "ON applied")
        await nvr.events.set_status(nvr.channels[1], "DEFECT")
        await wait_until(lambda: channels[nvr.channels[1]].status == "OFF", 5, "DEFECT = off")
        await nvr.events.remove_channel(new)
        await wait_until(lambda: new not in channels, 5, "DEL applied")
        catalog = next(s for s in server.subscriptions.snapshot(dev) if s["kind"] == CATALOG)
        assert catalog["notifies"] == 6 and catalog["expires_in_s"] > 50


async def test_alarms_by_message_and_by_notify_stored_acknowledged_and_reset() -> None:
    store = MemoryDeviceStore()
    async with (
        running_server(store, subscribe=("alarm",), subscribe_expires_s=60) as server,
        running_nvr(nvr_config(server)) as nvr,
    ):
        dev, ch = nvr.config.device_id, nvr.channels[0]
        await wait_until(lambda: _active(server, dev) == {ALARM}, 5)
        assert await nvr.send_alarm(ch, priority=1, method=5, alarm_type=2) == 200  # NOTIFY
        await wait_until(lambda: len(store.devices[dev].alarms) == 1, 5, "alarm by NOTIFY")
        assert store.devices[dev].alarms[0].via == "notify"
        assert await nvr.send_alarm(ch, priority=3, method=2, alarm_type=1, via="message") == 200
        await wait_until(lambda: len(store.devices[dev].alarms) == 2, 5, "alarm by MESSAGE")
        by_message = store.devices[dev].alarms[1]
        assert (by_message.via, by_message.priority, by_message.method) == ("message", 3, 2)
        # a MESSAGE alarm gets its <Response> Result OK with the same SN; a NOTIFY's 200 is all
        await wait_until(lambda: nvr.state.alarm_responses == [by_message.sn], 5, "alarm ack")
        await server.reset_alarm(dev, ch, by_message.method, by_message.alarm_type)
        await wait_until(lambda: nvr.state.alarm_resets, 5, "ResetAlarm")
        assert nvr.state.alarm_resets == [(ch, "2", "1")]  # with its <Info>
        assert (ch, "AlarmCmd", "ResetAlarm") in nvr.state.controls


async def test_mobile_position_reported_at_the_interval() -> None:
    store = MemoryDeviceStore()
    async with (
        running_server(
            store, subscribe=("mobile_position",), mobile_position_interval_s=1
        ) as server,
        running_nvr(nvr_config(server)) as nvr,
    ):
        dev, ch = nvr.config.device_id, nvr.channels[1]
        await server.catalog(dev)
        await wait_until(lambda: nvr.subscribers.has(MOBILE_POSITION), 5)
        assert nvr.subscribers.active(MOBILE_POSITION)[0].interval_s == 1
        nvr.events.move(ch, 117.25, 36.65)
        await wait_until(lambda: len(store.devices[dev].positions) >= 2, 6, "two reports")
        assert {(p.device_id, p.longitude, p.latitude) for p in store.devices[dev].positions} == {
            (ch, 117.25, 36.65)
        }
        assert (
            store.devices[dev].channels[ch].longitude,
            store.devices[dev].channels[ch].latitude,
        ) == (
            117.25,
            36.65,
        )


async def test_refreshed_in_its_dialog_before_expiry() -> None:
    async with (
        running_server(subscribe=("catalog",), subscribe_expires_s=2) as server,
        running_nvr(nvr_config(server)) as nvr,
    ):
        dev = nvr.config.device_id
        seen = _count_subscribes(nvr)
        await wait_until(lambda: _active(server, dev) == {CATALOG}, 5)
        first = server.subscriptions.subs[(dev, CATALOG)]
        # refreshed at 80 % of 2 s, twice within 4.5 s: same dialog, never lapsing at the NVR
        await wait_until(lambda: len(seen) >= 2, 6, "two refreshes")
        assert len(set(seen)) == 1 and seen[0] == first.call_id
        assert server.subscriptions.subs[(dev, CATALOG)] is first and first.state == "active"
        assert nvr.subscribers.has(CATALOG)
        assert first.cseq >= 3


async def test_subscribed_again_after_the_device_restarts() -> None:
    store = MemoryDeviceStore()
    async with running_server(store, subscribe=("catalog", "alarm")) as server:
        cfg = nvr_config(server)
        dev = cfg.device_id
        async with running_nvr(cfg) as nvr:
            await wait_until(lambda: _active(server, dev) == {CATALOG, ALARM}, 5)
            before = {k: s.call_id for (d, k), s in server.subscriptions.subs.items()}
            await nvr.stop(unregister=False)  # a power cut: no un-REGISTER, no un-SUBSCRIBE
        rebooted = SimulatedNvr(cfg)  # a new Call-ID: a reconnection for the registrar
        await rebooted.start(wait=True)
        try:
            await wait_until(lambda: rebooted.subscribers.has(CATALOG), 5, "subscribed again")
            await wait_until(lambda: rebooted.subscribers.has(ALARM), 5)
            after = {k: s.call_id for (d, k), s in server.subscriptions.subs.items()}
            assert set(after) == set(before) and all(after[k] != before[k] for k in after)
            await server.catalog(dev)
            new = await rebooted.events.add_channel()
            await wait_until(lambda: new in store.devices[dev].channels, 5, "events after reboot")
        finally:
            await rebooted.stop()


async def test_subscription_to_a_vanished_device_expires_cleanly() -> None:
    async with running_server(
        subscribe=("catalog",), subscribe_expires_s=2, keepalive_interval_s=0.2, keepalive_misses=2
    ) as server:
        nvr = SimulatedNvr(nvr_config(server, keepalive_interval_s=0.1))
        await nvr.start(wait=True)
        dev = nvr.config.device_id
        seen = _count_subscribes(nvr)
        await wait_until(lambda: _active(server, dev) == {CATALOG}, 5)
        sub = server.subscriptions.subs[(dev, CATALOG)]
        await nvr.stop(unregister=False)  # gone without a word
        await wait_until(lambda: server.registry.online(dev) is None, 5, "offline")
        await wait_until(lambda: sub.state == "expired", 6, "expired")
        assert sub.timer is None and sub.call_id not in server.subscriptions.by_call_id
        assert seen == []  # no refresh was sent to a device that was gone
        assert server.subscriptions.snapshot(dev)[0]["state"] == "expired"
        await asyncio.sleep(0.5)
        assert not [t for t in asyncio.all_tasks() if "subscription" in t.get_name()]


async def test_device_side_refuses_what_it_cannot_serve_and_expires_unrefreshed() -> None:
    async with running_server() as server, running_nvr(nvr_config(server)) as nvr:
        dev = nvr.config.device_id
        _, peer = await server.outgoing.route(dev)

        async def subscribe(body: bytes, expires: str = "1", to_tag: str = "") -> Any:
            req = server.outgoing.new_request("SUBSCRIBE", dev, peer)
            if to_tag:
                req.set("To", f"{req.get('To')};tag={to_tag}")
            req.set("Event", "presence")
            req.set("Expires", expires)
            req.set("Contact", f"<{server.contact()}>")
            req.set("Content-Type", CONTENT_TYPE)
            req.body = body
            return await server.endpoint.request(req, peer, timeout=5)

        def query(cmd: str) -> bytes:
            return manscdp.encode("Query", cmd, 5, dev)

        assert (await subscribe(b"not xml")).status == 400
        assert (await subscribe(query("DeviceInfo"))).status == 489
        assert (await subscribe(query("Catalog"), to_tag="gone")).status == 481
        assert (await subscribe(query("Alarm"), expires="soon")).status == 400
        ok = await subscribe(query("Alarm"))
        assert ok.status == 200 and ok.get("Expires") == "1"
        answer = manscdp.decode(ok.body)
        assert (answer.root, answer.cmd_type, answer.text("Result")) == ("Response", "Alarm", "OK")
        assert nvr.subscribers.has(ALARM)
        # never refreshed: gone at its expiry, with a final NOTIFY terminated;reason=timeout
        await wait_until(lambda: not nvr.subscribers.by_call_id, 4, "expired at the NVR")
        await wait_until(lambda: server.notifications.counts["notify"] >= 1, 4, "final NOTIFY")


# --- device side: a superior subscribes to our cascade ------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_superior_hears_our_catalog_changes_alarms_and_positions(transport: str) -> None:
    superior_store = MemoryDeviceStore({OUR_ID: "cascade-secret"})
    our_store = MemoryDeviceStore()
    async with (
        running_server(
            superior_store,
            server_id=SUPERIOR_ID,
            domain=SUPERIOR_DOMAIN,
            auto_create_devices=False,
            subscribe=ALL,
            mobile_position_interval_s=1,
        ) as superior,
        running_server(our_store, subscribe=ALL, mobile_position_interval_s=1) as ours,
        running_nvr(nvr_config(ours, channels=2)) as nvr,
    ):
        await ours.catalog(nvr.config.device_id)
        up = ours.add_upstream(
            UpstreamConfig(
                server_id=SUPERIOR_ID,
                domain=SUPERIOR_DOMAIN,
                host="127.0.0.1",
                port=superior.port,
                password="cascade-secret",
                transport=transport,
                catalog_group=2,
            )
        )
        await up.start()
        try:
            subs = ours.relay.subscribers_of(up)
            assert subs is not None
            await wait_until(lambda: all(subs.has(k) for k in (CATALOG, ALARM)), 5, "subscribed")
            await superior.catalog(OUR_ID)
            seen_up = superior_store.devices[OUR_ID].channels
            assert set(nvr.channels) <= set(seen_up)
            await asyncio.sleep(0.2)  # the baseline of what the superior knows is taken

            new = await nvr.events.add_channel(name="新增枪机")
            await wait_until(lambda: new in seen_up, 5, "ADD reached the superior")
            assert seen_up[new].name == "新增枪机" and seen_up[new].parent_id == OUR_ID
            await nvr.events.set_status(nvr.channels[0], OFF)
            await wait_until(lambda: seen_up[nvr.channels[0]].status == "OFF", 5, "OFF upward")
            await nvr.events.remove_channel(new)
            await wait_until(lambda: new not in seen_up, 5, "DEL reached the superior")

            assert await nvr.send_alarm(nvr.channels[1], priority=2, alarm_type=6) == 200
            alarms = superior_store.devices[OUR_ID].alarms
            await wait_until(lambda: alarms, 5, "alarm reached the superior")
            assert (alarms[0].device_id, alarms[0].priority, alarms[0].alarm_type) == (
                nvr.channels[1],
                2,
                6,
            )
            assert alarms[0].via == "notify"  # in the superior's Alarm subscription
            assert our_store.devices[nvr.config.device_id].alarms  # and kept here too

            await wait_until(lambda: subs.has(MOBILE_POSITION), 5)
            nvr.events.move(nvr.channels[1], 116.4, 39.9)
            positions = superior_store.devices[OUR_ID].positions
            await wait_until(lambda: positions, 6, "position reached the superior")
            assert (positions[0].device_id, positions[0].longitude) == (nvr.channels[1], 116.4)
        finally:
            await up.stop()


async def test_superior_without_alarm_subscription_gets_alarms_by_message() -> None:
    superior_store = MemoryDeviceStore({OUR_ID: "cascade-secret"})
    async with (
        running_server(
            superior_store, server_id=SUPERIOR_ID, domain=SUPERIOR_DOMAIN, auto_create_devices=False
        ) as superior,
        running_server() as ours,
        running_nvr(nvr_config(ours, channels=1)) as nvr,
    ):
        await ours.catalog(nvr.config.device_id)
        up = ours.add_upstream(
            UpstreamConfig(
                SUPERIOR_ID, SUPERIOR_DOMAIN, "127.0.0.1", superior.port, "cascade-secret"
            )
        )
        await up.start()
        try:
            await wait_until(lambda: up.registered.is_set(), 5, "registered upward")
            assert await nvr.send_alarm(nvr.channels[0]) == 200
            alarms = superior_store.devices[OUR_ID].alarms
            await wait_until(lambda: alarms, 5, "alarm by MESSAGE upward")
            assert alarms[0].via == "message" and alarms[0].device_id == nvr.channels[0]
            # an alarm from a source the superior may not see is not passed on
            await nvr.send_alarm("34020000001349999999")
            await asyncio.sleep(0.5)
            assert len(alarms) == 1
        finally:
            await up.stop()


async def test_notifies_outside_a_subscription_and_bad_ones() -> None:
    store = MemoryDeviceStore()
    async with running_server(store) as server, running_nvr(nvr_config(server)) as nvr:
        dev = nvr.config.device_id

        async def notify(body: bytes, sender: str = dev) -> int:
            c = server.config
            req = SipRequest(method="NOTIFY", uri=f"sip:{c.server_id}@{c.domain}")
            req.add("From", f"<sip:{sender}@{c.domain}>;tag=t1")
            req.add("To", f"<sip:{c.server_id}@{c.domain}>")
            req.add("Call-ID", new_call_id("127.0.0.1"))
            req.add("CSeq", "1 NOTIFY")
            req.add("Event", "presence")
            req.add("Subscription-State", "active;expires=60")
            req.add("Content-Type", CONTENT_TYPE)
            req.body = body
            peer = await nvr.agent.peer()
            return (await nvr.agent.endpoint.request(req, peer, timeout=5)).status

        alarm = manscdp.encode(
            "Notify", "Alarm", 8, nvr.channels[0], "<AlarmPriority>4</AlarmPriority>\r\n"
        )
        assert await notify(b"<Notify><CmdType>Alarm") == 400
        assert await notify(b"\xff\xfe" * 40) == 400
        assert await notify(alarm, sender="34020000001189999999") == 403  # not registered
        assert store.devices[dev].alarms == []
        # none of our subscriptions: 481 tells the device so, but the alarm is not thrown away
        assert await notify(alarm) == 481
        await wait_until(lambda: store.devices[dev].alarms, 5, "alarm kept")
        assert store.devices[dev].alarms[0].priority == 4
