"""Uplink pieces on their own: table payloads, back-off, outbox ordering and dead letters,
Tables 2/3 scheduling, the HTTP transport against the reference receiver."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.models import Organisation, OutboxItem, OutboxState
from storage.objects import LocalObjectStore
from vms.alarms import codes
from vms.config import UplinkReceiver
from vms.services import Services
from vms.uplink import outbox, tables
from vms.uplink.receiver import Receiver, parse_body, validate_table4
from vms.uplink.scheduler import UplinkScheduler, device_id, run_status
from vms.uplink.sender import UplinkSender
from vms.uplink.transport import HttpTransport

from .alarms_support import (
    ENTERPRISE_CODE,
    STATION_CODE,
    make_settings,
    seed_site,
    small_jpeg,
    wait_until,
)

T0 = datetime(2026, 11, 25, 15, 59, 59, tzinfo=UTC)


def test_table4_fields_and_time_zone() -> None:
    aid = str(uuid.uuid4())
    p = tables.table4(aid, "13", 1, T0, "Asia/Shanghai", "VMS-AI-0001", "37010200201320000001")
    assert p == {
        "ALARM_ID": aid,
        "ALARM_TYPE": "13",
        "ALARM_STATUS": "1",
        "ALARM_TIME": "2026-11-25 23:59:59",
        "DEVICE_CODE": "VMS-AI-0001",
        "VIDEO_CODE": "37010200201320000001",
    }
    assert (
        tables.table4(aid, "1", 0, T0, "UTC", "d", "1" * 20)["ALARM_TIME"] == "2026-11-25 15:59:59"
    )
    with pytest.raises(ValueError, match="ALARM_TYPE longer than 2"):
        tables.table4(aid, "100", 1, T0, "UTC", "d", "1" * 20)
    with pytest.raises(ValueError, match="naive"):
        tables.format_time(datetime(2026, 1, 1), "UTC")


def test_table2_and_table3_fields() -> None:
    did = str(uuid.uuid4())
    assert tables.table2(did, "AI-1", "370102001", "box", "") == {
        "DEVICE_ID": did,
        "DEVICE_CODE": "AI-1",
        "COMPANY_CODE": "370102001",
        "DEVICE_NAME": "box",
        "DEVICE_DESC": "",
    }
    with pytest.raises(ValueError, match="DEVICE_NAME longer than 100"):
        tables.table2(did, "AI-1", "c", "x" * 101, "")
    assert tables.table3("AI-1", T0, "Asia/Shanghai", False) == {
        "DEVICE_CODE": "AI-1",
        "DATE_TIME": "2026-11-25 23:59:59",
        "RUN_STATUS": "0",
    }


def test_code_tables_keep_profiles_apart() -> None:
    assert codes.is_valid_code("enterprise", "10") and codes.is_valid_code("gas_station", "10")
    assert codes.code_name("enterprise", "10") == "未穿着工作服"
    assert codes.code_name("gas_station", "10") == "明火"
    assert not codes.is_valid_code("gas_station", "1") and not codes.is_valid_code(
        "enterprise", "13"
    )
    assert codes.is_uuid36(str(uuid.uuid4())) and not codes.is_uuid36(uuid.uuid4().hex)


def test_backoff_grows_with_jitter_and_caps() -> None:
    rng = random.Random(7)
    values = [outbox.backoff_s(n, 1.0, 60.0, rng) for n in range(1, 12)]
    for n, v in enumerate(values, start=1):
        cap = min(60.0, 2 ** (n - 1))
        assert cap / 2 <= v <= cap
    assert len({round(v, 6) for v in values}) == len(values)


def test_parse_body_reads_multipart_fields_and_image_part() -> None:
    import httpx

    parts = [
        ("ALARM_ID", (None, "a", None)),
        ("ALARM_IMAGE", ("x.jpg", b"\xff\xd8\xffZ", "image/jpeg")),
    ]
    request = httpx.Request("POST", "http://127.0.0.1/", files=parts)
    fields, image = parse_body(request.headers["content-type"], request.read())
    assert fields == {"ALARM_ID": "a"} and image == b"\xff\xd8\xffZ"


def test_table4_validator_catches_each_rule() -> None:
    good = {
        "ALARM_ID": str(uuid.uuid4()),
        "ALARM_TYPE": "9",
        "ALARM_STATUS": "1",
        "ALARM_TIME": "2026-11-25 08:00:00",
        "DEVICE_CODE": "d",
        "VIDEO_CODE": "37010200101320000001",
    }
    assert validate_table4(good, small_jpeg()) == []
    for field, bad in (
        ("ALARM_ID", "x"),
        ("ALARM_TYPE", "99"),
        ("ALARM_STATUS", "2"),
        ("ALARM_TIME", "2026-11-25T08:00:00"),
        ("VIDEO_CODE", "123"),
    ):
        assert validate_table4({**good, field: bad}, small_jpeg()), field
    assert validate_table4(good, b"\xff\xd8\xffjunk") == ["ALARM_IMAGE does not decode"]


@pytest.fixture
def db(db_url: str):
    """Outbox queries run on SQLite and on PostgreSQL."""
    database = Database(db_url)
    database.open()
    yield database
    database.close()


def test_due_batches_keep_order_per_key_and_block_on_retry(db: Database) -> None:
    now = outbox.now_utc()
    with db.session() as s:
        for i in range(3):
            for key in ("camA", "camB"):
                outbox.enqueue(s, ["p"], "table4", key, {"n": str(i)})
        outbox.enqueue(s, ["other"], "table4", "camA", {"n": "x"})
    with db.session() as s:
        batches = outbox.due_batches(s, "p", now + timedelta(seconds=1), 10, 2)
        assert {k: [i.payload["n"] for i in v] for k, v in batches.items()} == {
            "camA": ["0", "1"],
            "camB": ["0", "1"],
        }
        head = batches["camA"][0]
        outbox.mark_failed(s, head.id, "HTTP 500", now, 10.0, 10.0, 3600)
        outbox.mark_sent(s, batches["camB"][0].id, now)
    with db.session() as s:
        batches = outbox.due_batches(s, "p", now + timedelta(seconds=1), 10, 5)
        # camA is blocked behind its failed head: no later camA item overtakes it
        assert {k: [i.payload["n"] for i in v] for k, v in batches.items()} == {"camB": ["1", "2"]}
        assert outbox.next_due(s, "p") > now


def test_old_failures_become_dead_letters_and_resend_restarts_age(db: Database) -> None:
    with db.session() as s:
        (item,) = outbox.enqueue(s, ["p"], "table4", "cam", {"a": "1"})
    later = outbox.now_utc() + timedelta(seconds=120)
    with db.session() as s:
        assert outbox.mark_failed(s, item.id, "HTTP 404", later, 1, 10, 60) == OutboxState.dead
    with db.session() as s:
        assert outbox.resend(s, None, "p", later) == 1
    with db.session() as s:
        row = s.get(OutboxItem, item.id)
        assert row.state == OutboxState.pending and row.attempts == 0 and row.dead_at is None
        assert outbox.mark_failed(s, item.id, "HTTP 404", later, 1, 10, 60) == OutboxState.pending
        assert outbox.counts(s) == [
            {"receiver": "p", "table": "table4", "state": "pending", "count": 1}
        ]


def test_purge_forgets_only_old_delivered_rows(db: Database) -> None:
    now = outbox.now_utc()
    with db.session() as s:
        old, recent, pending = outbox.enqueue(s, ["p", "q", "r"], "table3", "k", {})
        s.flush()
        outbox.mark_sent(s, old.id, now - timedelta(days=40))
        outbox.mark_sent(s, recent.id, now - timedelta(days=1))
    with db.session() as s:
        assert outbox.purge_sent(s, now - timedelta(days=30)) == 1
        assert {i.receiver for i in s.scalars(select(OutboxItem))} == {"q", "r"}


class _Pool:
    """Shaped like analyzers.pool.AnalyzerPool: stats() keyed by analysed channel."""

    def __init__(self, ok: bool, cameras: tuple[str, ...] = ("a", "b")) -> None:
        self.ok = ok
        self.cameras = cameras

    def healthy(self) -> bool:
        return self.ok

    def stats(self) -> dict:
        return {c: {"fps": 1.0} for c in self.cameras}


class _Hub:
    """Shaped like vms.media.hub.StreamHub: stats(channel) with the stream state."""

    def __init__(self, states: dict[str, str]) -> None:
        self.states = states

    def channels(self) -> list[str]:
        return list(self.states)

    def stats(self, channel_id: str) -> dict | None:
        state = self.states.get(channel_id)
        return None if state is None else {"state": state}


def test_run_status_from_pool_and_streams(tmp_path: Path, db: Database) -> None:
    services = Services(make_settings(tmp_path), db, LocalObjectStore(tmp_path / "o"))
    assert run_status(services) is False  # no analyzer pool → not analysing
    services.analyzers = _Pool(True)
    assert run_status(services) is True
    services.media = _Hub({"a": "receiving", "b": "lost"})
    assert run_status(services) is False
    services.media = _Hub({"a": "receiving"})  # b analysed but has no stream
    assert run_status(services) is False
    services.media = _Hub({"a": "receiving", "b": "inviting", "c": "lost"})  # c not analysed
    assert run_status(services) is True
    services.analyzers = _Pool(False)
    assert run_status(services) is False


async def test_tables_2_and_3_are_scheduled_and_delivered(tmp_path: Path) -> None:
    receiver = Receiver().start()
    rx = {
        "name": "p",
        "table2_url": receiver.url("table2"),
        "table3_url": receiver.url("table3"),
        "format": "json",
    }
    settings = make_settings(tmp_path, [rx], table3_interval_s=0.3)
    db = Database(settings.database_url)
    db.open()
    seed_site(db)
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    services.analyzers = _Pool(True)
    sender = UplinkSender(services)
    scheduler = UplinkScheduler(services, wake=sender.wake)
    await sender.start()
    await scheduler.start()
    try:

        def got(table: str) -> list:
            return [r for r in receiver.snapshot() if r.path == f"/{table}"]

        sites = 3  # the enterprise, the gas station and the other enterprise: each reports
        await wait_until(lambda: len(got("table3")) >= 2 * sites, 10, "two Table 3 rounds")
        t2 = got("table2")
        assert len(t2) == sites  # once per site: unchanged info is not re-sent within the day
        by_company = {r.fields["COMPANY_CODE"]: r.fields for r in t2}
        assert set(by_company) == {ENTERPRISE_CODE, STATION_CODE, "370102003"}
        install = device_id(settings.server.data_dir)
        assert by_company[ENTERPRISE_CODE]["DEVICE_CODE"] == f"AI-{ENTERPRISE_CODE}-{install[:8]}"
        assert len({f["DEVICE_ID"] for f in by_company.values()}) == sites
        assert len({f["DEVICE_CODE"] for f in by_company.values()}) == sites
        assert all(codes.is_uuid36(f["DEVICE_ID"]) for f in by_company.values())
        assert all(r.errors == [] for r in receiver.snapshot())
        t3_codes = {r.fields["DEVICE_CODE"] for r in got("table3")}
        assert t3_codes == {f["DEVICE_CODE"] for f in by_company.values()}
        assert got("table3")[0].fields["RUN_STATUS"] == "1"
        services.analyzers = _Pool(False)
        await wait_until(lambda: got("table3")[-1].fields["RUN_STATUS"] == "0", 10, "status 0")
        settings.uplink.device_desc = "moved to the control room"  # a change → Table 2 again
        await wait_until(lambda: len(got("table2")) == 2 * sites, 10, "Table 2 on change")
        assert got("table2")[-1].fields["DEVICE_DESC"] == "moved to the control room"
        with db.session() as s:  # a site given the code the province knows it by
            org = s.scalars(select(Organisation).where(Organisation.code == STATION_CODE)).one()
            org.uplink_device_code = "JYZ-0001"
        await wait_until(lambda: len(got("table2")) == 2 * sites + 1, 10, "Table 2 on recode")
        assert got("table2")[-1].fields["DEVICE_CODE"] == "JYZ-0001"
        assert got("table2")[-1].fields["COMPANY_CODE"] == STATION_CODE
    finally:
        await scheduler.stop()
        await sender.stop()
        receiver.stop()
        db.close()


async def test_multipart_transport_sends_fields_and_image_part_with_token() -> None:
    receiver = Receiver().start()
    seen: list[str] = []
    receiver.on_receive = lambda r: seen.append(r.content_type)
    rx = UplinkReceiver(name="p", table4_url=receiver.url("table4"), token="Bearer s3cret")
    transport = HttpTransport(rx)
    try:
        payload = tables.table4(str(uuid.uuid4()), "2", 1, T0, "UTC", "d", "37010200101320000003")
        result = await transport.post("table4", payload, small_jpeg())
        assert result.ok and result.status == 200
        got = receiver.snapshot()[0]
        assert got.fields == payload and got.image == small_jpeg()
        assert seen[0].startswith("multipart/form-data; boundary=")
        receiver.set_mode("error")
        failed = await transport.post("table4", payload, small_jpeg())
        assert not failed.ok and failed.status == 500 and "HTTP 500" in failed.error
        missing = await transport.post("table2", {}, None)
        assert not missing.ok and "no table2_url" in missing.error
    finally:
        await transport.aclose()
        receiver.stop()


async def test_sender_survives_a_receiver_answering_4xx(tmp_path: Path) -> None:
    """4xx is a failure that is retried, not a delivery (see vms/uplink/transport.py)."""
    receiver = Receiver().start()
    settings = make_settings(tmp_path, [{"name": "p", "table4_url": receiver.url("table4")}])
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    services.objects.put("img.jpg", small_jpeg())
    bad = {"ALARM_ID": "nope", "ALARM_TYPE": "9", "ALARM_STATUS": "1"}
    with db.session() as s:
        outbox.enqueue(s, ["p"], "table4", "cam", bad, "img.jpg")
    sender = UplinkSender(services)
    await sender.start()
    try:
        await wait_until(lambda: sender.stats()["p"]["failures"] >= 2, 10, "two 400 answers")
        with db.session() as s:
            row = s.scalar(select(OutboxItem))
            assert row.state == OutboxState.pending and "HTTP 400" in row.last_error
    finally:
        await sender.stop()
        db.close()
        receiver.stop()
