"""The warnings, contacts and notifications API through a real uvicorn server: scoping, the
closed loop with its 409s, history, filters, CSV, WebSocket push."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets

from api.app import create_app
from api.security import create_token
from storage.db import Database
from storage.models import Role, User
from storage.objects import LocalObjectStore
from storage.passwords import hash_password
from vms.ingest.points import Point, load_points
from vms.services import Services
from vms.warning.component import WarningComponent

from .alarms_support import wait_until
from .warning_support import SimClock, Tree, add_sensor, seed_tree, warning_settings


@dataclass
class Api:
    services: Services
    tree: Tree
    component: WarningComponent
    client: httpx.AsyncClient
    tokens: dict[str, str]
    points: dict[str, Point]
    port: int
    clock: SimClock

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def reading(self, tag: str, value: float, advance_s: float = 10.0) -> None:
        self.clock.t += advance_s
        self.component.engine.observe(self.points[tag], self.clock.at(), value)
        assert await self.component.engine.drain()

    async def warning_of(self, tag: str) -> dict[str, Any]:
        r = await self.client.get("/api/warnings", headers=self.h("admin"))
        return next(w for w in r.json() if w["tag"] == tag)


def _users(db: Database, tree: Tree, secret: str) -> dict[str, str]:
    tokens = {}
    with db.session() as s:
        for name, role, org in (
            ("admin", Role.admin, None),
            ("ent", Role.enterprise, tree.enterprise_id),
            ("other", Role.enterprise, tree.other_id),
            ("county", Role.operator, tree.county_id),
        ):
            user = User(username=name, password_hash=hash_password("x" * 12), role=role, org_id=org)
            s.add(user)
            s.flush()
            tokens[name] = create_token(secret, user.id, role.value, 3600)
    return tokens


@pytest.fixture
async def api(tmp_path: Path, db_url: str) -> AsyncIterator[Api]:
    settings = warning_settings(tmp_path, db_url, downgrade_hold_s=0)
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.open()
    tree = seed_tree(db)
    add_sensor(db, tree.enterprise_id, "PT-1")
    add_sensor(db, tree.enterprise_id, "PT-2")
    add_sensor(db, tree.other_id, "PT-X")
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    component = WarningComponent(services)
    await component.start()
    with db.session() as s:
        points = {p.tag: p for p in load_points(s)}
    app = create_app(services)
    tokens = _users(db, tree, app.state.jwt_secret)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    )
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, 20, "uvicorn")
    port = server.servers[0].sockets[0].getsockname()[1]
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20)
    try:
        yield Api(services, tree, component, client, tokens, points, port, SimClock(time.time()))
    finally:
        await client.aclose()
        server.should_exit = True
        await asyncio.wait_for(task, 20)
        await component.stop()
        db.close()


async def test_closed_loop_with_history(api: Api) -> None:
    await api.reading("PT-1", 7.0)  # yellow
    w = await api.warning_of("PT-1")
    assert w["level"] == "yellow" and w["tracker"] == "safety_dept" and w["active"]
    assert w["next_notice_at"] is not None and w["onsite_due_at"] is not None
    url = f"/api/warnings/{w['warning_id']}/actions"
    h = api.h("ent")

    async def act(action: str, note: str = "", **kw: Any) -> httpx.Response:
        return await api.client.post(url, json={"action": action, "note": note, **kw}, headers=h)

    assert (await act("close", "x")).status_code == 409  # not even verified
    r = await act("acknowledge", "verified on site: real leak")
    assert r.status_code == 200 and r.json()["handling"] == "acknowledged"
    assert (await act("acknowledge")).status_code == 409
    assert (await act("feedback", "too early")).status_code == 409
    assert (await act("handle")).status_code == 422  # a note is required
    assert (await act("handle", "valve closed, area ventilated")).json()["handling"] == "handled"
    assert (await act("comment", "shift lead informed")).status_code == 200
    r = await act("close", "done")
    assert r.status_code == 409 and "report" in r.json()["detail"]
    r = await act("feedback", "处置报告: leak at flange F-3, gasket replaced")
    assert r.status_code == 200 and r.json()["feedback"].startswith("处置报告")
    r = await act("close", "done")
    assert r.status_code == 409 and "condition still holds" in r.json()["detail"]
    assert (await act("close", "", force=True)).status_code == 422
    await api.reading("PT-1", 2.0)  # back to normal: cleared after handling = 处置降级
    r = await act("close", "verified normal")
    assert r.status_code == 200 and r.json()["handling"] == "closed" and r.json()["closed_at"]
    assert (await act("handle", "again")).status_code == 409
    assert (await act("reopen")).status_code == 422
    assert (await act("comment", "archived")).status_code == 200  # comments any time
    detail = (await api.client.get(f"/api/warnings/{w['warning_id']}", headers=h)).json()
    kinds = [e["kind"] for e in detail["events"]]
    assert kinds == [
        "opened", "acknowledge", "handle", "comment", "feedback", "cleared", "close", "comment"
    ]  # fmt: skip
    cleared = detail["events"][kinds.index("cleared")]
    assert cleared["note"] == "处置降级 handled and downgraded"
    assert cleared["detail"]["after_handling"] == "handled"
    assert all(e["user_id"] for e in detail["events"] if e["kind"] not in ("opened", "cleared"))
    assert {r["duty"] for r in detail["recipients"]} == {"enterprise", "safety_dept", "hq"}
    assert detail["next_notice_at"] is None  # cleared: no clock


async def test_forced_close_of_a_live_condition(api: Api) -> None:
    await api.reading("PT-2", 9.0)  # orange
    w = await api.warning_of("PT-2")
    url = f"/api/warnings/{w['warning_id']}/actions"
    h = api.h("county")
    for action, note in (("acknowledge", ""), ("handle", "sensor under repair"), ("feedback", "r")):
        assert (
            await api.client.post(url, json={"action": action, "note": note}, headers=h)
        ).is_success
    body = {"action": "close", "note": "sensor known faulty, replaced tomorrow", "force": True}
    r = await api.client.post(url, json=body, headers=h)
    assert r.status_code == 200 and not r.json()["active"] and r.json()["handling"] == "closed"
    assert r.json()["events"][-1]["detail"]["forced"] is True
    assert api.component.engine.open_warnings() == {}
    await api.reading("PT-2", 9.1)  # the condition persists: a fresh warning, not silence
    r = await api.client.get("/api/warnings", params={"sensor_id": w["sensor_id"]}, headers=h)
    assert [x["active"] for x in r.json()] == [True, False]


async def test_scoping_filters_paging_and_csv(api: Api) -> None:
    await api.reading("PT-1", 7.0)
    await api.reading("PT-2", 9.0)
    await api.reading("PT-X", 9.5)
    c = api.client
    mine = (await c.get("/api/warnings", headers=api.h("ent"))).json()
    assert sorted(w["tag"] for w in mine) == ["PT-1", "PT-2"]
    theirs = await api.warning_of("PT-X")
    wid = theirs["warning_id"]
    for path in ("", "/snapshots/1"):
        assert (await c.get(f"/api/warnings/{wid}{path}", headers=api.h("ent"))).status_code == 404
    r = await c.post(
        f"/api/warnings/{wid}/actions", json={"action": "acknowledge"}, headers=api.h("ent")
    )
    assert r.status_code == 404
    r = await c.get("/api/warnings", params={"org_id": api.tree.other_id}, headers=api.h("ent"))
    assert r.status_code == 404
    county = await c.get("/api/warnings", params={"limit": 2, "offset": 1}, headers=api.h("county"))
    assert county.headers["X-Total-Count"] == "3" and len(county.json()) == 2
    assert county.json()[0]["tag"] == "PT-2"  # newest first
    r = await c.get("/api/warnings", params={"level": "orange"}, headers=api.h("county"))
    assert sorted(w["tag"] for w in r.json()) == ["PT-2", "PT-X"]
    r = await c.get("/api/warnings", params={"active": "false"}, headers=api.h("county"))
    assert r.json() == []
    r = await c.get(
        "/api/warnings",
        params={"handling": "new", "org_id": api.tree.enterprise_id},
        headers=api.h("county"),
    )
    assert r.headers["X-Total-Count"] == "2"
    start = mine[0]["raised_at"]  # PT-2, the later one
    r = await c.get("/api/warnings", params={"start": start}, headers=api.h("county"))
    assert sorted(w["tag"] for w in r.json()) == ["PT-2", "PT-X"]
    r = await c.get("/api/warnings", params={"end": start}, headers=api.h("county"))
    assert [w["tag"] for w in r.json()] == ["PT-1"]
    r = await c.get("/api/warnings/export.csv", headers=api.h("ent"))
    assert r.status_code == 200 and r.text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert [(x["tag"], x["level"], x["handling"]) for x in rows] == [
        ("PT-1", "yellow", "new"),
        ("PT-2", "orange", "new"),
    ]
    assert (await c.get("/api/warnings")).status_code == 401
    table = (await c.get("/api/warnings/escalation", headers=api.h("ent"))).json()
    assert [(t["level"], t["notice_after_s"], t["onsite_after_s"]) for t in table] == [
        ("blue", None, None),
        ("yellow", 3600, 86400),
        ("orange", 3600, 43200),
        ("red", 1800, 7200),
    ]


async def test_contacts_crud_and_rules(api: Api) -> None:
    c, t = api.client, api.tree
    body = {"org_id": t.county_id, "duty": "industry_regulator", "name": "王", "email": "w@x.cn"}
    r = await c.post("/api/contacts", json=body, headers=api.h("admin"))
    assert r.status_code == 201 and r.json()["duty"] == "industry_regulator"
    assert (await c.post("/api/contacts", json=body, headers=api.h("county"))).status_code == 403
    assert (await c.post("/api/contacts", json=body, headers=api.h("ent"))).status_code == 404
    own = {"org_id": t.enterprise_id, "duty": "safety_dept", "phone": "+86 138 0000 1111"}
    r = await c.post("/api/contacts", json=own, headers=api.h("ent"))
    assert r.status_code == 201
    cid = r.json()["id"]
    wrong_place = {**own, "duty": "monitoring_center"}
    r = await c.post("/api/contacts", json=wrong_place, headers=api.h("ent"))
    assert r.status_code == 422 and "city" in r.json()["detail"]
    for bad in ({"email": "not-an-address"}, {"phone": "call me"}, {"webhook_url": "ftp://x"}):
        r = await c.post("/api/contacts", json={**own, **bad}, headers=api.h("ent"))
        assert r.status_code == 422, bad
    other = {"org_id": t.other_id, "duty": "hq", "email": "hq@other.cn"}
    assert (await c.post("/api/contacts", json=other, headers=api.h("ent"))).status_code == 404
    r = await c.patch(
        f"/api/contacts/{cid}", json={"name": "安全部", "enabled": False}, headers=api.h("ent")
    )
    assert r.status_code == 200 and r.json()["name"] == "安全部" and not r.json()["enabled"]
    r = await c.patch(f"/api/contacts/{cid}", json={"duty": "industry_dept"}, headers=api.h("ent"))
    assert r.status_code == 422
    listed = (await c.get("/api/contacts", headers=api.h("ent"))).json()
    assert {x["org_id"] for x in listed} == {t.enterprise_id}
    county = (
        await c.get("/api/contacts", params={"duty": "safety_dept"}, headers=api.h("county"))
    ).json()
    assert {x["org_id"] for x in county} == {t.enterprise_id, t.other_id}
    assert (await c.get(f"/api/contacts/{cid}", headers=api.h("other"))).status_code == 404
    assert (await c.delete(f"/api/contacts/{cid}", headers=api.h("county"))).status_code == 403
    assert (await c.delete(f"/api/contacts/{cid}", headers=api.h("ent"))).status_code == 204
    assert (await c.get(f"/api/contacts/{cid}", headers=api.h("ent"))).status_code == 404


async def test_notifications_listing_is_scoped(api: Api) -> None:
    await api.reading("PT-1", 7.0)
    await api.reading("PT-X", 7.0)
    w = await api.warning_of("PT-1")
    c = api.client
    assert (await c.get("/api/notifications", headers=api.h("ent"))).status_code == 403
    r = await c.get(
        "/api/notifications", params={"warning_id": w["warning_id"]}, headers=api.h("county")
    )
    rows = r.json()
    assert rows and {x["warning_id"] for x in rows} == {w["warning_id"]}
    assert {x["event"] for x in rows} == {"opened"}
    assert {x["channel"] for x in rows} == {"email", "sms"}
    # no SMTP server or SMS gateway is configured here: the running notifier makes them dead
    # letters at once, with the reason, and the API reports that delivery state
    params = {"warning_id": w["warning_id"], "state": "dead"}
    for _ in range(200):
        dead = (await c.get("/api/notifications", params=params, headers=api.h("county"))).json()
        if len(dead) == len(rows):
            break
        await asyncio.sleep(0.05)
    assert len(dead) == len(rows) and all("not configured" in x["last_error"] for x in dead)
    everyone = (await c.get("/api/notifications", headers=api.h("county"))).json()
    assert {x["org_id"] for x in everyone} == {api.tree.enterprise_id, api.tree.other_id}
    admin = await c.get("/api/notifications", params={"channel": "sms"}, headers=api.h("admin"))
    assert admin.json() and all(x["channel"] == "sms" for x in admin.json())


async def test_websocket_pushes_warnings_in_scope(api: Api) -> None:
    base = f"ws://127.0.0.1:{api.port}/api/events/ws"
    async with websockets.connect(f"{base}?token={api.tokens['ent']}", open_timeout=10) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["kind"] == "hello"
        await api.reading("PT-X", 9.0)  # another enterprise: not pushed to ent
        await api.reading("PT-1", 9.0)
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert msg["kind"] == "warning.opened" and msg["data"]["tag"] == "PT-1"
        assert msg["data"]["level"] == "orange"
        assert {r["duty"] for r in msg["data"]["recipients"]} == {
            "enterprise", "industry_regulator", "safety_dept", "hq"
        }  # fmt: skip
        r = await api.client.post(
            f"/api/warnings/{msg['data']['warning_id']}/actions",
            json={"action": "acknowledge"},
            headers=api.h("ent"),
        )
        assert r.status_code == 200
        upd = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert upd["kind"] == "warning.updated" and upd["data"]["action"] == "acknowledge"
        assert upd["data"]["handling"] == "acknowledged"
