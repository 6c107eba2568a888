"""The supervision API through a real uvicorn server on 127.0.0.1 (SQLite and PostgreSQL):
scoping by role and organisation, 404 outside the caller's subtree, live figures, overdue
alarms, report JSON, CSV and the printable page, and making a report on demand."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from api.app import create_app
from api.security import create_token
from storage.db import Database
from storage.models import Alarm, Channel, Profile, Role, User
from storage.objects import LocalObjectStore
from storage.passwords import hash_password
from storage.sensor_models import Notification, Sensor
from vms.services import Services
from vms.supervision.service import Supervision

from .supervision_support import (
    Tree,
    all_online_since,
    device_events,
    heard,
    local,
    make_settings,
    open_db,
    seed_tree,
    sensor_events,
)

NOW = local(2024, 3, 11, 9)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Api:
    client: httpx.AsyncClient
    base: str
    tree: Tree
    db: Database
    services: Services
    tokens: dict[str, str]
    report_id: int

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def get(self, who: str, path: str, **params: object) -> httpx.Response:
        return await self.client.get(path, headers=self.auth(who), params=params)


def _users(db: Database, tree: Tree, secret: str) -> dict[str, str]:
    tokens = {}
    with db.session() as s:
        for name, role, org in (
            ("admin", Role.admin, None),
            ("county", Role.operator, tree.county_a),
            ("e1", Role.enterprise, tree.e1),
            ("e3", Role.enterprise, tree.e3),
        ):
            user = User(username=name, password_hash=hash_password("x" * 12), role=role, org_id=org)
            s.add(user)
            s.flush()
            tokens[name] = create_token(secret, user.id, role.value, 3600)
    return tokens


@pytest.fixture
async def api(tmp_path: Path, db_url: str) -> AsyncIterator[Api]:
    settings = make_settings(tmp_path, db_url)
    db = open_db(settings)
    tree = seed_tree(db)
    all_online_since(db, tree, local(2024, 2, 1))
    # e1: NVR offline 3 days in the week of 03-04 → rate 21 %, notice, interview
    device_events(
        db, tree.devices["e1"], ("offline", local(2024, 3, 5)), ("online", local(2024, 3, 8))
    )
    sensor_events(db, tree.sensors["LT-301"], ("offline", local(2024, 3, 11, 8, 30)))
    heard(db, tree, NOW - timedelta(seconds=20))
    with db.session() as s:
        lt = s.get(Sensor, tree.sensors["LT-301"])
        assert lt is not None
        lt.online, lt.last_reading_at = False, local(2024, 3, 11, 8, 20)
        cam = tree.cameras["e1"][0]
        s.add(
            Alarm(
                channel_pk=tree.channel_pks[cam],
                org_id=tree.e1,
                profile=Profile.enterprise,
                alarm_type="9",
                video_code=cam,
                raised_at=NOW - timedelta(hours=30),
            )
        )
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    clock = Clock()
    services.supervision = Supervision(settings, db, services.events, clock=clock)
    made = await services.supervision.run_due()
    report_id = next(m.report_id for m in made if m.made and m.period.start == date(2024, 3, 4))
    assert report_id is not None
    app = create_app(services)
    tokens = _users(db, tree, app.state.jwt_secret)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield Api(client, base, tree, db, services, tokens, report_id)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        db.close()


def _names(rows: list[dict]) -> list[str]:
    return [r["name"] for r in rows]


async def test_report_rows_are_scoped(api: Api) -> None:
    rid = api.report_id
    everyone = (await api.get("admin", f"/api/supervision/reports/{rid}")).json()
    assert _names(everyone["enterprises"]) == ["示例化工", "示例加油站", "另一化工"]
    county = (await api.get("county", f"/api/supervision/reports/{rid}")).json()
    assert _names(county["enterprises"]) == ["示例化工", "示例加油站"]
    mine = await api.get("e1", f"/api/supervision/reports/{rid}")
    assert mine.status_code == 200
    body = mine.json()
    assert _names(body["enterprises"]) == ["示例化工"]
    row = body["enterprises"][0]
    assert row["warning_notice"] and row["interview"] and row["notices_queued"] == 3
    assert row["offline_rate"] == pytest.approx(6 / 28, abs=1e-6)
    assert body["limits"]["offline_rate_limit"] == 0.05
    assert body["kind"] == "weekly" and body["period_start"] == "2024-03-04"
    assert body["period_end"] == "2024-03-11" and body["id"] == rid
    assert [a["org_name"] for a in body["overdue_alarms"]] == ["示例化工"]
    theirs = (await api.get("e3", f"/api/supervision/reports/{rid}")).json()
    assert _names(theirs["enterprises"]) == ["另一化工"] and theirs["overdue_alarms"] == []
    narrowed = await api.get("county", f"/api/supervision/reports/{rid}", org_id=api.tree.e2)
    assert _names(narrowed.json()["enterprises"]) == ["示例加油站"]


async def test_outside_the_subtree_is_404(api: Api) -> None:
    rid, t = api.report_id, api.tree
    for who, path, params in (
        ("county", f"/api/supervision/reports/{rid}", {"org_id": t.e3}),
        ("e1", f"/api/supervision/reports/{rid}/export.csv", {"org_id": t.e3}),
        ("e1", f"/api/supervision/reports/{rid}/print", {"org_id": t.county_a}),
        ("e1", f"/api/supervision/live/{t.e3}", {}),
        ("county", "/api/supervision/live", {"org_id": t.county_b}),
        ("e3", "/api/supervision/overdue-alarms", {"org_id": t.e1}),
        ("admin", "/api/supervision/reports/99999", {}),
        ("admin", "/api/supervision/live", {"org_id": 99999}),
    ):
        r = await api.get(who, path, **params)
        assert r.status_code == 404, (who, path, params, r.text)
    assert (await api.client.get("/api/supervision/live")).status_code == 401


async def test_report_list_counts_what_the_caller_sees(api: Api) -> None:
    rows = (await api.get("admin", "/api/supervision/reports")).json()
    assert [(r["kind"], r["period_start"]) for r in rows] == [
        ("weekly", "2024-03-04"),
        ("monthly", "2024-02-01"),
    ]
    week = rows[0]
    assert (week["enterprises"], week["warning_notices"], week["interviews"]) == (3, 1, 1)
    assert week["overdue_alarms"] == 1
    e3 = (await api.get("e3", "/api/supervision/reports", kind="weekly")).json()
    assert [(r["enterprises"], r["warning_notices"], r["overdue_alarms"]) for r in e3] == [
        (1, 0, 0)
    ]


async def test_csv_holds_the_callers_rows(api: Api) -> None:
    r = await api.get("county", f"/api/supervision/reports/{api.report_id}/export.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    text = r.content.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert [x["企业 enterprise"] for x in rows] == ["示例化工", "示例加油站"]
    e1 = rows[0]
    assert e1["日均离线率 daily-average offline rate (%)"] == "21.43"
    assert e1["视频离线率 video offline rate (%)"] == "42.86"
    assert e1["预警通知 warning notice"] == "是 yes" and e1["已发通知 notices queued"] == "3"
    assert "e1 cam 1 (3.00 d)" in e1["离线超限 offline over limit"]
    assert rows[1]["预警通知 warning notice"] == "" and rows[1]["代码 code"] == "370102002"
    overdue = await api.get(
        "e1", f"/api/supervision/reports/{api.report_id}/export.csv", section="overdue"
    )
    lines = list(csv.DictReader(io.StringIO(overdue.text.lstrip("\ufeff"))))
    assert [x["企业 enterprise"] for x in lines] == ["示例化工"]


async def test_printable_page_renders_the_rows(api: Api) -> None:
    path = f"/api/supervision/reports/{api.report_id}/print"
    r = await api.client.get(path, params={"token": api.tokens["county"]})  # as a browser link
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "@media print" in html and "<table" in html
    assert "示例化工" in html and "示例加油站" in html and "另一化工" not in html
    assert "21.43" in html and "历下区" in html
    assert "2024-03-04 – 2024-03-10" in html
    assert (await api.client.get(path)).status_code == 401


async def test_live_figures_per_enterprise(api: Api) -> None:
    rows = (await api.get("admin", "/api/supervision/live")).json()
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"示例化工", "示例加油站", "另一化工"}
    e1, e3 = by_name["示例化工"], by_name["另一化工"]
    assert (e1["sensors_online"], e1["sensors_offline"]) == (2, 0)
    assert (e1["cameras_online"], e1["cameras_offline"]) == (2, 0)
    assert (e3["sensors_online"], e3["sensors_offline"], e3["cameras_online"]) == (0, 1, 1)
    # today (03-11, Monday) so far: LT-301 offline since 08:30 of 9 h watched; e3 has 2 subjects
    assert e3["today_rate"] == pytest.approx(0.5 / 9 / 2, abs=1e-6)
    assert e3["week_rate"] == e3["today_rate"]  # Monday: the week so far is today
    assert e1["today_rate"] == 0 and e1["figures_at"] is not None
    one = await api.get("e1", f"/api/supervision/live/{api.tree.e1}")
    assert one.status_code == 200 and one.json()["org_id"] == api.tree.e1
    assert _names((await api.get("e1", "/api/supervision/live")).json()) == ["示例化工"]
    # a camera whose catalog status is OFF is offline now
    with api.db.session() as s:
        ch = s.get(Channel, api.tree.channel_pks[api.tree.cameras["e1"][1]])
        assert ch is not None
        ch.status = "OFF"
    e1 = (await api.get("e1", f"/api/supervision/live/{api.tree.e1}")).json()
    assert (e1["cameras_online"], e1["cameras_offline"]) == (1, 1)


async def test_overdue_alarms_live_list(api: Api) -> None:
    rows = (await api.get("county", "/api/supervision/overdue-alarms")).json()
    assert [(r["source"], r["org_name"], r["open_hours"]) for r in rows] == [
        ("video", "示例化工", 30.0)
    ]
    assert (await api.get("e3", "/api/supervision/overdue-alarms")).json() == []
    tighter = await api.get("admin", "/api/supervision/overdue-alarms", hours=40)
    assert tighter.json() == []


async def test_daily_figures(api: Api) -> None:
    r = await api.get(
        "e1", "/api/supervision/daily", start="2024-03-05", end="2024-03-06", subject="camera"
    )
    rows = r.json()
    assert [(x["subject_id"], x["offline_s"], x["monitored_s"]) for x in rows] == [
        (c, 86400.0, 86400.0) for c in sorted(api.tree.cameras["e1"])
    ]
    other = await api.get("e3", "/api/supervision/daily", start="2024-03-05", end="2024-03-06")
    assert {x["org_id"] for x in other.json()} == {api.tree.e3}
    bad = await api.get("e1", "/api/supervision/daily", start="2024-03-06", end="2024-03-05")
    assert bad.status_code == 422


async def test_making_a_report_on_demand(api: Api) -> None:
    h = api.auth("admin")
    url = "/api/supervision/reports"
    r = await api.client.post(url, json={"kind": "weekly", "period_start": "2024-02-19"}, headers=h)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["period_start"] == "2024-02-19" and made["period_end"] == "2024-02-26"
    assert all(e["offline_rate"] == 0 for e in made["enterprises"])
    again = await api.client.post(
        url, json={"kind": "weekly", "period_start": "2024-02-19"}, headers=h
    )
    assert again.status_code == 200 and again.json()["id"] == made["id"]
    existing = await api.client.post(
        url, json={"kind": "weekly", "period_start": "2024-03-04"}, headers=h
    )
    assert existing.status_code == 200 and existing.json()["id"] == api.report_id
    for payload, code in (
        ({"kind": "weekly", "period_start": "2024-02-20"}, 422),  # a Tuesday
        ({"kind": "monthly", "period_start": "2024-02-02"}, 422),
        ({"kind": "daily", "period_start": "2024-02-19"}, 422),
        ({"kind": "weekly", "period_start": "2024-03-11"}, 409),  # this week is not over
        ({"kind": "monthly", "period_start": "2024-03-01"}, 409),
    ):
        r = await api.client.post(url, json=payload, headers=h)
        assert r.status_code == code, (payload, r.text)
        assert "detail" in r.json()
    denied = await api.client.post(
        url, json={"kind": "weekly", "period_start": "2024-02-12"}, headers=api.auth("county")
    )
    assert denied.status_code == 403
    with api.db.session() as s:
        assert len(s.scalars(select(Notification.id)).all()) == 3  # only the 03-04 week's
