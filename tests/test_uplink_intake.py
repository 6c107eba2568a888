"""The node as a receiver (issue 17): a city node takes Tables 2/3/4 from the counties below
it with a strict receiver's checks, stores each record once with its picture, shows them
within each user's scope, and relays them to the province — end to end over real HTTP:
county sender → city intake → city outbox → province receiver, through an outage above."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from api.app import create_app
from api.security import create_token
from storage.audit_models import AuditEntry
from storage.db import Database
from storage.intake_models import IntakeRecord
from storage.models import Organisation, OrgKind, OutboxItem, OutboxState, Role, User
from storage.objects import LocalObjectStore
from storage.org_tree import create_org
from vms.services import Services
from vms.uplink import outbox, tables
from vms.uplink.receiver import Receiver
from vms.uplink.sender import UplinkSender

from .alarms_support import make_settings, small_jpeg
from .api_limits_support import served
from .sip_support import wait_until

T0 = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)
COUNTY_A, COUNTY_B = "370102", "370103"
ENT_A = "913701021"  # an enterprise of county A, as its cameras' codes start


def video_code(serial: int, enterprise: str = ENT_A) -> str:
    return f"{enterprise}0132{serial:07d}"


def t4(
    status: int = 1, alarm_id: str | None = None, serial: int = 1, device: str = "AI-A-1"
) -> dict[str, str]:
    return tables.table4(
        alarm_id or str(uuid.uuid4()),
        "2",
        status,
        T0,
        "Asia/Shanghai",
        device,
        video_code(serial),
    )


def multipart(fields: dict[str, str], image: bytes | None) -> dict[str, object]:
    files: list[tuple[str, tuple[str | None, bytes | str, str | None]]] = [
        (k, (None, v, None)) for k, v in fields.items()
    ]
    if image is not None:
        files.append((tables.ALARM_IMAGE, ("a.jpg", image, "image/jpeg")))
    return {"files": files}


@dataclass
class City:
    client: TestClient
    services: Services
    users: dict[str, int] = field(default_factory=dict)
    orgs: dict[str, int] = field(default_factory=dict)

    def bearer(self, name: str, ttl: int = 3600) -> dict[str, str]:
        secret = self.client.app.state.jwt_secret  # type: ignore[attr-defined]
        role = Role.uplink if name.startswith("uplink") else Role.operator
        if name == "root":
            role = Role.admin
        return {"Authorization": f"Bearer {create_token(secret, self.users[name], role, ttl)}"}


def seed_city(db: Database) -> tuple[dict[str, int], dict[str, int]]:
    with db.session() as s:
        province = create_org(s, "省", OrgKind.province, None, "370000")
        city = create_org(s, "济南市", OrgKind.city, province, "370100")
        county_a = create_org(s, "历下区", OrgKind.county, city, COUNTY_A)
        county_b = create_org(s, "市中区", OrgKind.county, city, COUNTY_B)
        s.flush()
        orgs = {"city": city.id, "county_a": county_a.id, "county_b": county_b.id}
        users: dict[str, int] = {}
        for name, role, org in (
            ("root", Role.admin, None),
            ("uplink_a", Role.uplink, county_a),
            ("uplink_b", Role.uplink, county_b),
            ("uplink_nowhere", Role.uplink, None),
            ("op_a", Role.operator, county_a),
            ("op_city", Role.operator, city),
        ):
            user = User(username=name, password_hash="x", role=role, org_id=org and org.id)
            s.add(user)
            s.flush()
            users[name] = user.id
    return users, orgs


@pytest.fixture
def city(db_url: str, tmp_path: Path) -> Iterator[City]:
    settings = make_settings(tmp_path, db_url=db_url)
    settings.server.data_dir.mkdir(parents=True)
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    users, orgs = seed_city(db)
    with TestClient(create_app(services)) as client:
        yield City(client, services, users, orgs)
    db.close()


def test_machine_tokens_only_for_uplink_users_with_an_organisation(city: City) -> None:
    c, root = city.client, city.bearer("root")
    resp = c.post(
        f"/api/users/{city.users['uplink_a']}/token", json={"ttl_days": 365}, headers=root
    )
    assert resp.status_code == 200 and resp.json()["expires_in"] == 365 * 86400
    token = {"Authorization": f"Bearer {resp.json()['access_token']}"}
    assert (
        c.post("/api/intake/table4", **multipart(t4(), small_jpeg()), headers=token).status_code
        == 200
    )
    for name, why in (("op_a", "uplink users only"), ("uplink_nowhere", "organisation")):
        bad = c.post(f"/api/users/{city.users[name]}/token", json={}, headers=root)
        assert bad.status_code == 422 and why in bad.json()["detail"]
    # Issuing one is audited; the token itself is not in the trail.
    with city.services.db.session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action.contains("/token"))).first()
        assert entry is not None and entry.actor == "root"
        assert resp.json()["access_token"] not in str(entry.detail)
    # Revoked with the user's other tokens.
    assert c.post(f"/api/users/{city.users['uplink_a']}/revoke", headers=root).status_code == 204
    assert (
        c.post("/api/intake/table4", **multipart(t4(), small_jpeg()), headers=token).status_code
        == 401
    )


def test_a_strict_receiver_stores_each_record_once(city: City) -> None:
    c, h = city.client, city.bearer("uplink_a")
    alarm = t4()
    first = c.post("/api/intake/table4", **multipart(alarm, small_jpeg()), headers=h)
    assert first.status_code == 200 and first.json()["duplicate"] is False
    again = c.post("/api/intake/table4", **multipart(alarm, small_jpeg()), headers=h)
    assert again.json() == {"ok": True, "id": first.json()["id"], "duplicate": True}
    clear = {**alarm, tables.ALARM_STATUS: "0"}  # the clear is a record of its own
    assert (
        c.post("/api/intake/table4", **multipart(clear, small_jpeg()), headers=h).json()[
            "duplicate"
        ]
        is False
    )
    png = cv2.imencode(".png", np.full((40, 60, 3), 90, np.uint8))[1].tobytes()
    body = {**t4(serial=2), tables.ALARM_IMAGE: base64.b64encode(png).decode()}
    as_json = c.post("/api/intake/table4", json=body, headers=h)
    assert as_json.status_code == 200
    t2 = {
        tables.DEVICE_ID: str(uuid.uuid4()),
        tables.DEVICE_CODE: "AI-A-1",
        tables.COMPANY_CODE: ENT_A,
        tables.DEVICE_NAME: "分析服务器",
        tables.DEVICE_DESC: "",
    }
    assert c.post("/api/intake/table2", **multipart(t2, None), headers=h).status_code == 200
    t3 = tables.table3("AI-A-1", T0, "Asia/Shanghai", True)
    assert c.post("/api/intake/table3", json=t3, headers=h).status_code == 200
    with city.services.db.session() as s:
        assert s.scalar(select(func.count()).select_from(IntakeRecord)) == 5
        stored = s.get(IntakeRecord, as_json.json()["id"])
        assert stored.image_key.endswith(".png") and stored.video_code == video_code(2)
        assert city.services.objects.get(stored.image_key) == png


@pytest.mark.parametrize(
    ("table", "fields", "image", "errors"),
    [
        ("table4", {**t4(), tables.VIDEO_CODE: "123"}, None, ["VIDEO_CODE", "ALARM_IMAGE missing"]),
        (
            "table4",
            {**t4(), tables.ALARM_TYPE: "99"},
            b"\xff\xd8\xffnot a jpeg",
            ["ALARM_TYPE", "does not decode"],
        ),
        (
            "table4",
            {**t4(), tables.ALARM_TIME: "2026/12/01 08:00"},
            b"GIF89a...",
            ["ALARM_TIME", "not PNG, JPEG or BMP"],
        ),
        (
            "table4",
            {**t4(), tables.ALARM_ID: "x", tables.ALARM_STATUS: "2"},
            None,
            ["ALARM_ID", "ALARM_STATUS"],
        ),
        (
            "table3",
            {tables.DEVICE_CODE: "AI", tables.DATE_TIME: "now", tables.RUN_STATUS: "2"},
            None,
            ["DATE_TIME", "RUN_STATUS"],
        ),
        (
            "table2",
            {tables.DEVICE_ID: "abc", tables.DEVICE_CODE: "x" * 37},
            None,
            ["DEVICE_ID", "DEVICE_CODE longer", "COMPANY_CODE missing", "DEVICE_NAME missing"],
        ),
    ],
)
def test_every_broken_rule_is_named(
    city: City, table: str, fields: dict[str, str], image: bytes | None, errors: list[str]
) -> None:
    resp = city.client.post(
        f"/api/intake/{table}", **multipart(fields, image), headers=city.bearer("uplink_a")
    )
    assert resp.status_code == 400
    got = resp.json()["errors"]
    for expected in errors:
        assert any(expected in e for e in got), (expected, got)
    with city.services.db.session() as s:
        assert s.scalar(select(func.count()).select_from(IntakeRecord)) == 0


def test_a_client_reports_only_for_its_own_sites(city: City) -> None:
    """County A's client cannot file alarms of county B's cameras, nor B's analysis device."""
    with city.services.db.session() as s:
        county_b = s.get(Organisation, city.orgs["county_b"])
        create_org(s, "B化工", OrgKind.enterprise, county_b, "913701039")
    c, a, b = city.client, city.bearer("uplink_a"), city.bearer("uplink_b")
    of_b = {**t4(device="AI-B-9"), tables.VIDEO_CODE: video_code(5, "913701039")}
    refused = c.post("/api/intake/table4", **multipart(of_b, small_jpeg()), headers=a)
    assert refused.status_code == 400 and "outside 370102" in refused.json()["errors"][0]
    accepted = c.post("/api/intake/table4", **multipart(of_b, small_jpeg()), headers=b)
    assert accepted.status_code == 200
    t2 = {
        tables.DEVICE_ID: str(uuid.uuid4()),
        tables.DEVICE_CODE: "AI-B-9",
        tables.COMPANY_CODE: "913701039",
        tables.DEVICE_NAME: "B",
    }
    assert c.post("/api/intake/table2", json=t2, headers=a).status_code == 400
    assert c.post("/api/intake/table2", json=t2, headers=b).status_code == 200
    t3 = tables.table3("AI-B-9", T0, "Asia/Shanghai", False)
    taken = c.post("/api/intake/table3", json=t3, headers=a)
    assert taken.status_code == 400 and "another organisation" in taken.json()["errors"][0]
    with city.services.db.session() as s:
        assert {r.source_org_id for r in s.scalars(select(IntakeRecord))} == {city.orgs["county_b"]}


def test_bad_bodies_and_callers_are_refused(city: City) -> None:
    c, h = city.client, city.bearer("uplink_a")
    raw = c.post(
        "/api/intake/table4", content=b"ALARM_ID=1", headers={**h, "Content-Type": "text/plain"}
    )
    assert raw.status_code == 400 and "unparsable" in raw.json()["errors"][0]
    broken = c.post(
        "/api/intake/table4", content=b"{", headers={**h, "Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    assert c.post("/api/intake/table4", json=t4()).status_code == 401
    assert c.post("/api/intake/table4", json=t4(), headers=city.bearer("op_a")).status_code == 403
    assert c.post("/api/intake/table5", json=t4(), headers=h).status_code == 422
    nowhere = city.bearer("uplink_nowhere")
    assert (
        c.post("/api/intake/table4", **multipart(t4(), small_jpeg()), headers=nowhere).status_code
        == 403
    )


def test_records_are_shown_within_scope_with_their_pictures(city: City) -> None:
    c = city.client
    image_a, image_b = small_jpeg(120), small_jpeg(200)
    a = c.post(
        "/api/intake/table4", **multipart(t4(), image_a), headers=city.bearer("uplink_a")
    ).json()
    b = c.post(
        "/api/intake/table4",
        **multipart(t4(serial=9, device="AI-B-1"), image_b),
        headers=city.bearer("uplink_b"),
    ).json()
    op_a, op_city = city.bearer("op_a"), city.bearer("op_city")
    mine = c.get("/api/intake", headers=op_a)
    assert [r["id"] for r in mine.json()] == [a["id"]] and mine.headers["X-Total-Count"] == "1"
    assert {r["id"] for r in c.get("/api/intake", headers=op_city).json()} == {a["id"], b["id"]}
    only_b = c.get("/api/intake", params={"org_id": city.orgs["county_b"]}, headers=op_city).json()
    assert [r["id"] for r in only_b] == [b["id"]]
    assert (
        c.get("/api/intake", params={"org_id": city.orgs["county_b"]}, headers=op_a).status_code
        == 404
    )
    assert c.get(f"/api/intake/{b['id']}", headers=op_a).status_code == 404
    assert c.get(f"/api/intake/{b['id']}/image", headers=op_a).status_code == 404
    record = c.get(f"/api/intake/{a['id']}", headers=op_a).json()
    assert record["fields"][tables.VIDEO_CODE] == video_code(1) and record["alarm_status"] == "1"
    picture = c.get(record["image_url"], headers=op_a)
    assert picture.status_code == 200 and picture.content == image_a
    assert picture.headers["content-type"] == "image/jpeg"
    assert c.get("/api/intake", headers=city.bearer("uplink_a")).status_code == 403


# --- county → city → province over real HTTP ----------------------------------------------


@contextlib.asynccontextmanager
async def serve(services: Services) -> AsyncIterator[str]:
    services.settings.server.host, services.settings.server.port = "127.0.0.1", 0
    async with served(create_app(services), services.settings.server) as config:
        yield f"http://127.0.0.1:{config.port}"


def _node(tmp_path: Path, name: str, receivers: list[dict]) -> Services:
    settings = make_settings(tmp_path / name, receivers)
    settings.server.data_dir.mkdir(parents=True)
    db = Database(settings.database_url)
    db.open()
    return Services(settings, db, LocalObjectStore(settings.objects_path))


async def test_county_to_city_to_province_through_an_outage(tmp_path: Path) -> None:
    province = Receiver().start()
    province.set_mode("error")  # the province is down while the county reports
    city = _node(
        tmp_path,
        "city",
        [
            {
                "name": "province",
                **{
                    t: province.url(t.removesuffix("_url"))
                    for t in ("table2_url", "table3_url", "table4_url")
                },
            }
        ],
    )
    users, _orgs = seed_city(city.db)
    secret = "test-secret-not-for-production-0123456789"
    machine = create_token(secret, users["uplink_a"], "uplink", 365 * 86400)
    async with serve(city) as city_url:
        county = _node(
            tmp_path,
            "county",
            [
                {
                    "name": "city",
                    "table4_url": f"{city_url}/api/intake/table4",
                    "token": f"Bearer {machine}",
                }
            ],
        )
        planned: list[tuple[dict[str, str], bytes]] = []
        with county.db.session() as s:
            for i in range(12):
                aid, cam = str(uuid.uuid4()), 1 + i % 3
                for status in (1, 0):
                    payload = tables.table4(
                        aid,
                        "2",
                        status,
                        T0 + timedelta(seconds=2 * i + status),
                        "Asia/Shanghai",
                        "AI-A-1",
                        video_code(cam),
                    )
                    image = small_jpeg(100 + 10 * i + status)
                    key = f"alarms/{aid}-{status}.jpg"
                    county.objects.put(key, image, "image/jpeg")
                    outbox.enqueue(s, ["city"], "table4", video_code(cam), payload, key)
                    planned.append((payload, image))
        county_sender, city_sender = UplinkSender(county), UplinkSender(city)
        await county_sender.start()
        await city_sender.start()
        try:
            await wait_until(
                lambda: _count(city.db, IntakeRecord) == 24, 20, "24 records at the city"
            )
            await wait_until(
                lambda: city_sender.stats()["province"]["failures"] >= 2, 10, "province down"
            )
            assert province.snapshot() == []
            province.set_mode("ok")
            await wait_until(lambda: len(province.snapshot()) == 24, 20, "relayed to the province")
            got = province.snapshot()
            assert all(r.errors == [] for r in got), [r.errors for r in got if r.errors]
            by_key = {(r.fields[tables.ALARM_ID], r.fields[tables.ALARM_STATUS]): r for r in got}
            for payload, image in planned:
                r = by_key[(payload[tables.ALARM_ID], payload[tables.ALARM_STATUS])]
                assert r.fields == payload and r.image == image
            for cam in (1, 2, 3):  # in order per camera, each alarm before its clear
                seen = [r.fields for r in got if r.fields[tables.VIDEO_CODE] == video_code(cam)]
                expected = [p for p, _ in planned if p[tables.VIDEO_CODE] == video_code(cam)]
                assert seen == expected
            # The county's sender retries an item the city already has: stored once, relayed once.
            with county.db.session() as s:
                s.execute(
                    update(OutboxItem)
                    .where(OutboxItem.id == 1)
                    .values(state=OutboxState.pending, next_attempt_at=outbox.now_utc())
                )
            county_sender.wake()
            await wait_until(lambda: _sent(county.db) == 24, 10, "the retry answered")
            await asyncio.sleep(0.5)
            assert _count(city.db, IntakeRecord) == 24 and len(province.snapshot()) == 24
        finally:
            await county_sender.stop()
            await city_sender.stop()
            county.db.close()
    city.db.close()
    province.stop()


def _count(db: Database, model: type) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def _sent(db: Database) -> int:
    with db.session() as s:
        return (
            s.scalar(
                select(func.count())
                .select_from(OutboxItem)
                .where(OutboxItem.state == OutboxState.sent)
            )
            or 0
        )
