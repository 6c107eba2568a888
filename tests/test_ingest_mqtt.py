"""MQTT collector: payload parsing, then a real mosquitto (anonymous and with a password
file) started by the test; JSON rows, bound topics, bad payloads, a broker restart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from storage.db import Database
from vms.ingest.collectors.mqtt_payload import Binding, parse_message

from .ingest_support import Broker, Site, add_gateway, add_sensor, mosquitto_binary, running_ingest
from .ingest_support import wait_until as wait

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="Debian's mosquitto is needed")

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
BINDINGS = [
    Binding("LT-B", "plant/tank/LT-B"),
    Binding("PT-J", "plant/pt/+", "v"),
    Binding("ES-B", "plant/rack/grounding"),
]


# --- payloads -------------------------------------------------------------------------------


def test_rows_with_and_without_time() -> None:
    payload = json.dumps(
        [
            {"tag": "TT-1", "value": 21.5, "at": "2026-03-01T16:00:00+08:00"},
            {"tag": "TT-2", "value": 3, "at": 1772352000},  # unix seconds
            {"tag": "TT-3", "value": True, "at": 1772352000500},  # unix ms
            {"tag": "TT-4", "value": 1.0},  # no time: now
        ]
    ).encode()
    parsed = parse_message("plant/rows", payload, BINDINGS, NOW)
    assert parsed.errors == []
    got = {s.tag: (s.at, s.value) for s in parsed.samples}
    assert got["TT-1"] == (datetime(2026, 3, 1, 8, 0, tzinfo=UTC), 21.5)
    assert got["TT-2"][0] == datetime.fromtimestamp(1772352000, UTC)
    assert got["TT-3"] == (datetime.fromtimestamp(1772352000.5, UTC), 1.0)
    assert got["TT-4"] == (NOW, 1.0)
    single = parse_message("x", b'{"tag": "PT-9", "value": 0.5, "quality": 2}', BINDINGS, NOW)
    assert [(s.tag, s.value, s.quality) for s in single.samples] == [("PT-9", 0.5, 2)]


def test_bound_topics() -> None:
    assert [s.value for s in parse_message("plant/tank/LT-B", b"12.5", BINDINGS, NOW).samples] == [
        12.5
    ]
    assert [s.value for s in parse_message("plant/tank/LT-B", b" +3 ", BINDINGS, NOW).samples] == [
        3.0
    ]
    assert [
        s.value for s in parse_message("plant/rack/grounding", b"true", BINDINGS, NOW).samples
    ] == [1.0]
    parsed = parse_message("plant/pt/7", b'{"v": 0.8, "at": 1772352000}', BINDINGS, NOW)
    assert [(s.tag, s.value, s.at) for s in parsed.samples] == [
        ("PT-J", 0.8, datetime.fromtimestamp(1772352000, UTC))
    ]


@pytest.mark.parametrize(
    ("topic", "payload", "error"),
    [
        ("plant/rows", b"\xff\xfe", "not UTF-8"),
        ("plant/rows", b"{not json", "neither JSON nor a number"),
        ("plant/rows", b'{"value": 1}', "tag is missing"),
        ("plant/rows", b'[{"tag": "A", "value": 1, "at": "yesterday"}]', "bad time"),
        ("plant/rows", b'[{"tag": "A", "value": 1, "at": "2026-03-01T08:00:00"}]', "UTC offset"),
        ("plant/rows", b'"hello"', "bound to no point"),
        ("plant/tank/LT-B", b'"high"', "is not a number"),
        ("plant/pt/1", b'{"value": 1}', "no 'v'"),
    ],
)
def test_bad_payloads_are_named(topic: str, payload: bytes, error: str) -> None:
    parsed = parse_message(topic, payload, BINDINGS, NOW)
    assert parsed.samples == [] and len(parsed.errors) == 1
    assert error in parsed.errors[0] and parsed.errors[0].startswith(topic)


def test_one_bad_row_leaves_the_others() -> None:
    payload = b'[{"tag": "A", "value": 1}, {"value": 2}, {"tag": "C", "value": 3}]'
    parsed = parse_message("plant/rows", payload, BINDINGS, NOW)
    assert [s.tag for s in parsed.samples] == ["A", "C"]
    assert len(parsed.errors) == 1 and "row 1" in parsed.errors[0]


# --- a real broker --------------------------------------------------------------------------


def seed_mqtt(broker: Broker, **config: Any) -> tuple[list[int], Any]:
    ids: list[int] = []

    def seed(db: Database, site: Site) -> None:
        gw = add_gateway(
            db,
            site.enterprise_id,
            "mqtt",
            {"host": "127.0.0.1", "port": broker.port, "topics": ["plant/rows/#"], **config},
            name="MQTT",
        )
        ids.append(gw)
        for tag in ("TT-1", "HT-1"):
            add_sensor(db, site.enterprise_id, gw, tag, {}, kind="temperature")
        for binding in BINDINGS:
            source = {"topic": binding.topic, "json_key": binding.json_key}
            add_sensor(db, site.enterprise_id, gw, binding.tag, source)

    return ids, seed


async def publish(broker: Broker, *messages: tuple[str, bytes], **auth: Any) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port, **auth) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


async def test_json_rows_bound_topics_and_bad_payloads(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")
    await broker.start()
    ids, seed = seed_mqtt(broker)
    try:
        async with running_ingest(tmp_path, seed=seed) as rig:
            [gw] = ids
            await wait(lambda: rig.gateway(gw).online, 20, "subscribed")
            base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
            rows = [
                {"tag": "TT-1", "value": 20.0 + i, "at": (base + timedelta(seconds=i)).isoformat()}
                for i in range(5)
            ]
            bad = [
                ("plant/rows/a", b"\xff\xfe"),
                ("plant/rows/a", b"{not json"),
                ("plant/rows/a", b'{"value": 1}'),
                ("plant/tank/LT-B", b'"high"'),
            ]
            await publish(
                broker,
                ("plant/rows/a", json.dumps(rows[0]).encode()),
                bad[0],
                ("plant/rows/b", json.dumps(rows[1:]).encode()),
                bad[1],
                (
                    "plant/rows/a",
                    json.dumps(
                        [{"tag": "HT-1", "value": 55.5, "at": int(base.timestamp() * 1000)}]
                    ).encode(),
                ),
                bad[2],
                ("plant/tank/LT-B", b"12.5"),
                bad[3],
                ("plant/pt/7", json.dumps({"v": 0.8}).encode()),
                ("plant/rack/grounding", b"true"),
                ("plant/rows/a", b'[{"tag": "NOT-OURS", "value": 1}]'),  # unknown tag: rejected
            )
            await wait(lambda: len(rig.readings("TT-1")) == 5, 20, "every TT-1 row")
            assert [r[1] for r in rig.readings("TT-1")] == [20.0, 21.0, 22.0, 23.0, 24.0]
            assert rig.readings("TT-1")[0][0].replace(tzinfo=UTC) == base
            await rig.wait_value("HT-1", lambda v: v == 55.5)
            assert rig.readings("HT-1")[0][0].replace(tzinfo=UTC) == base
            await rig.wait_value("LT-B", lambda v: v == 12.5)
            await rig.wait_value("PT-J", lambda v: v == 0.8)
            await rig.wait_value("ES-B", lambda v: v == 1.0)
            status = await wait(
                lambda: rig.collector_status(gw).get("rejected") == 1 and rig.collector_status(gw),
                10,
                "the unknown tag counted",
            )
            assert status["bad_payloads"] == len(bad)
            assert status["messages"] == 11
            assert len(rig.readings("LT-B")) == 1  # the bad payload on its topic stored nothing
    finally:
        await broker.stop()


async def test_broker_restart_goes_offline_and_recovers(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")
    await broker.start()
    ids, seed = seed_mqtt(broker)
    try:
        async with running_ingest(tmp_path, seed=seed) as rig:
            [gw] = ids
            await wait(lambda: rig.gateway(gw).online, 20, "subscribed")
            await publish(broker, ("plant/tank/LT-B", b"1.0"))
            await rig.wait_value("LT-B", lambda v: v == 1.0)
            await broker.stop()  # SIGKILL: the broker dies, it does not say goodbye
            await wait(lambda: not rig.gateway(gw).online, 20, "gateway offline")
            assert rig.gateway(gw).last_error
            await wait(lambda: rig.events("LT-B", "offline"), 10, "point offline")
            await broker.start()
            await wait(lambda: rig.gateway(gw).online, 30, "gateway online again")
            await publish(broker, ("plant/tank/LT-B", b"2.0"))
            await rig.wait_value("LT-B", lambda v: v == 2.0)
            await wait(lambda: rig.sensor("LT-B").online, 10, "point online again")
    finally:
        await broker.stop()


async def test_password_file_broker(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker", users={"gw-user": "gw-pass", "sim": "sim-pass"})
    await broker.start()
    ids, seed = seed_mqtt(broker, username="gw-user", password="gw-pass")
    wrong: list[int] = []

    def seed_both(db: Database, site: Site) -> None:
        seed(db, site)
        config = {"host": "127.0.0.1", "port": broker.port, "username": "gw-user"}
        wrong.append(add_gateway(db, site.enterprise_id, "mqtt", {**config, "password": "nope"}))

    try:
        async with running_ingest(tmp_path, seed=seed_both) as rig:
            [gw] = ids
            await wait(lambda: rig.gateway(gw).online, 20, "subscribed with the password")
            await publish(broker, ("plant/tank/LT-B", b"4.5"), username="sim", password="sim-pass")
            await rig.wait_value("LT-B", lambda v: v == 4.5)
            error = await wait(lambda: rig.gateway(wrong[0]).last_error, 20, "refused login")
            assert "refused" in error and not rig.gateway(wrong[0]).online
    finally:
        await broker.stop()
