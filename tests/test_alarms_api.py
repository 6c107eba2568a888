"""Acceptance 4: closed loop, scoping, filters/paging, CSV, statistics, images, live push,
webhooks and the uplink outbox API, through the real FastAPI app."""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
from vms.alarm_component import AlarmComponent
from vms.services import Services
from vms.uplink.receiver import Receiver, free_port

from .alarms_support import Site, bus_jpeg, event, make_settings, seed_site, wait_until


@dataclass
class Node:
    services: Services
    site: Site
    component: AlarmComponent
    client: httpx.AsyncClient
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def _users(db: Database, site: Site, secret: str) -> dict[str, str]:
    tokens = {}
    with db.session() as s:
        for name, role, org in (
            ("admin", Role.admin, None),
            ("ent", Role.enterprise, site.enterprise_id),
            ("other", Role.enterprise, site.other_enterprise_id),
            ("county", Role.operator, site.county_id),
        ):
            user = User(username=name, password_hash=hash_password("x" * 12), role=role, org_id=org)
            s.add(user)
            s.flush()
            tokens[name] = create_token(secret, user.id, role.value, 3600)
    return tokens


async def _node(tmp_path: Path, **uplink) -> AsyncIterator[Node]:
    settings = make_settings(tmp_path, **uplink)
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    component = AlarmComponent(services, spool_retry_s=0.2)
    await component.start()
    site = seed_site(db)
    app = create_app(services)
    tokens = _users(db, site, app.state.jwt_secret)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    try:
        yield Node(services, site, component, client, tokens)
    finally:
        await client.aclose()
        await component.stop()
        db.close()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async for n in _node(tmp_path):
        yield n


async def test_closed_loop_transitions(node: Node) -> None:
    ev = event(node.site.cameras[0])
    await node.services.alarms.handle(ev)
    url = f"/api/alarms/{ev.alarm_id}/actions"
    h = node.auth("ent")

    async def act(action: str, note: str = "") -> httpx.Response:
        return await node.client.post(url, json={"action": action, "note": note}, headers=h)

    assert (await act("close")).status_code == 409  # not handled yet
    r = await act("acknowledge", "on it")
    assert r.status_code == 200 and r.json()["handling"] == "acknowledged"
    assert r.json()["acknowledged_at"] is not None
    r = await act("acknowledge")
    assert r.status_code == 409 and "acknowledged" in r.json()["detail"]
    assert (await act("comment", "called the shift lead")).status_code == 200
    assert (await act("handle", "helmet handed out")).status_code == 200
    await node.services.alarms.handle(event(node.site.cameras[0], 0, ev.alarm_id))  # rule over
    assert (await act("false_alarm", "it was a cap")).json()["false_alarm"] is True
    assert (await act("false_alarm")).status_code == 409
    r = await act("close", "done")
    assert r.status_code == 200 and r.json()["handling"] == "closed" and r.json()["closed_at"]
    assert (await act("handle")).status_code == 409
    assert (await act("reopen")).status_code == 422
    detail = (await node.client.get(f"/api/alarms/{ev.alarm_id}", headers=h)).json()
    assert [a["action"] for a in detail["actions"]] == [
        "acknowledge", "comment", "handle", "false_alarm", "close"
    ]  # fmt: skip
    assert detail["actions"][0]["note"] == "on it" and detail["actions"][0]["user_id"]


async def _act(node: Node, alarm_id: str, action: str, note: str = "", **kw) -> httpx.Response:
    body = {"action": action, "note": note, **kw}
    return await node.client.post(
        f"/api/alarms/{alarm_id}/actions", json=body, headers=node.auth("ent")
    )


async def test_ending_an_alarm_whose_rule_holds_says_so_and_clears_it_once(
    tmp_path: Path,
) -> None:
    """Closed (or marked false) while active only with force and a note; the province then
    gets the Table 4 clear, with a picture, once: the analyzer's later clear is a replay."""
    receiver = Receiver().start()
    receivers = [{"name": "prov", "table4_url": receiver.url("table4"), "timeout_s": 2}]
    try:
        async for node in _node(tmp_path, receivers=receivers):
            cam = node.site.cameras[0]
            ev, wrong = event(cam), event(cam)
            for e in (ev, wrong):
                await node.services.alarms.handle(e)
            act = functools.partial(_act, node)
            for action in ("acknowledge", "handle"):
                assert (await act(ev.alarm_id, action)).status_code == 200
            r = await act(ev.alarm_id, "close", "done")
            assert r.status_code == 409 and "condition still holds" in r.json()["detail"]
            assert "force" in r.json()["detail"]
            assert (await act(ev.alarm_id, "close", " ", force=True)).status_code == 422
            assert (await act(wrong.alarm_id, "false_alarm", "a cap")).status_code == 409
            r = await act(ev.alarm_id, "close", "helmet on, detector lags", force=True)
            assert r.status_code == 200
            closed = r.json()
            assert closed["handling"] == "closed" and not closed["active"]
            assert closed["cleared_at"] and closed["clear_image_url"]
            ended = closed["detail"]["ended_while_active"]
            assert ended["action"] == "close" and ended["note"] == "helmet on, detector lags"
            assert ended["user_id"] == closed["actions"][-1]["user_id"]
            r = await act(wrong.alarm_id, "false_alarm", "a cap, not a bare head", force=True)
            assert r.status_code == 200 and r.json()["false_alarm"] and not r.json()["active"]
            assert r.json()["handling"] == "new"  # handling goes on as usual

            # the analyzer clears later (its rule stopped holding): nothing more goes up
            for e in (ev, wrong):
                late = await node.services.alarms.handle(event(cam, 0, e.alarm_id))
                assert not late.created
            await wait_until(lambda: len(receiver.snapshot()) == 4, 10, "alarms and clears")
            await asyncio.sleep(0.5)
            posts = receiver.snapshot()
            assert sorted((p.fields["ALARM_ID"], p.fields["ALARM_STATUS"]) for p in posts) == (
                sorted((e.alarm_id, st) for e in (ev, wrong) for st in "01")
            )
            assert all(p.image and not p.errors for p in posts)
            # closing a cleared alarm needs nothing more
            later = event(cam)
            await node.services.alarms.handle(later)
            await node.services.alarms.handle(event(cam, 0, later.alarm_id))
            for action in ("acknowledge", "handle", "close"):
                assert (await act(later.alarm_id, action)).status_code == 200
    finally:
        receiver.stop()


async def test_scoping_hides_other_enterprises_alarms(node: Node) -> None:
    mine = event(node.site.cameras[0])
    theirs = event(node.site.other_cameras[0])
    for ev in (mine, theirs):
        await node.services.alarms.handle(ev)
    c, h = node.client, node.auth("ent")
    listed = (await c.get("/api/alarms", headers=h)).json()
    assert [a["alarm_id"] for a in listed] == [mine.alarm_id]
    for path in ("", "/image"):
        r = await c.get(f"/api/alarms/{theirs.alarm_id}{path}", headers=h)
        assert r.status_code == 404
    r = await c.post(
        f"/api/alarms/{theirs.alarm_id}/actions", json={"action": "acknowledge"}, headers=h
    )
    assert r.status_code == 404
    r = await c.get(f"/api/alarms?org_id={node.site.other_enterprise_id}", headers=h)
    assert r.status_code == 404
    county = (await c.get("/api/alarms", headers=node.auth("county"))).json()
    assert {a["alarm_id"] for a in county} == {mine.alarm_id, theirs.alarm_id}
    stats = (await c.get("/api/alarms/stats", headers=h)).json()
    assert stats["total"] == 1
    assert [x["video_code"] for x in stats["by_camera"]] == [mine.channel_id]
    assert [x["org_id"] for x in stats["by_org"]] == [node.site.enterprise_id]
    r = await c.get(f"/api/alarms/stats?org_id={node.site.other_enterprise_id}", headers=h)
    assert r.status_code == 404
    assert (await c.get("/api/alarms/stats?start=yesterday", headers=h)).status_code == 422
    assert (await c.get("/api/alarms")).status_code == 401
    assert (await c.get("/api/uplink/status", headers=h)).status_code == 403


async def test_filters_paging_csv_statistics_and_image(node: Node) -> None:
    cams = node.site.cameras
    base = datetime(2026, 11, 24, 16, 30, tzinfo=UTC)  # 00:30 on the 25th in Shanghai
    evs = []
    for i in range(6):
        ev = event(cams[i % 2], alarm_type="9" if i % 3 else "1", at=base + timedelta(hours=i))
        evs.append(ev)
        await node.services.alarms.handle(ev)
    await node.services.alarms.handle(
        event(cams[0], 0, alarm_id=evs[0].alarm_id, alarm_type="1", at=base + timedelta(hours=7))
    )
    c, h = node.client, node.auth("county")
    r = await c.get("/api/alarms?limit=2&offset=1", headers=h)
    assert r.headers["X-Total-Count"] == "6"
    assert [a["alarm_id"] for a in r.json()] == [evs[4].alarm_id, evs[3].alarm_id]
    r = await c.get("/api/alarms", params={"alarm_type": "1"}, headers=h)
    assert {a["alarm_id"] for a in r.json()} == {evs[0].alarm_id, evs[3].alarm_id}
    r = await c.get("/api/alarms", params={"status": "cleared"}, headers=h)
    assert [a["alarm_id"] for a in r.json()] == [evs[0].alarm_id]
    r = await c.get("/api/alarms", params={"video_code": cams[1]}, headers=h)
    assert r.headers["X-Total-Count"] == "3"
    start, end = (base + timedelta(hours=1)).isoformat(), (base + timedelta(hours=3)).isoformat()
    r = await c.get("/api/alarms", params={"start": start, "end": end}, headers=h)
    assert r.headers["X-Total-Count"] == "2"
    r = await c.get(
        "/api/alarms", params={"org_id": node.site.enterprise_id, "handling": "new"}, headers=h
    )
    assert r.headers["X-Total-Count"] == "6"

    await c.post(
        f"/api/alarms/{evs[1].alarm_id}/actions", json={"action": "acknowledge"}, headers=h
    )
    stats = (await c.get("/api/alarms/stats", headers=h)).json()
    assert stats["total"] == 6 and stats["active"] == 5 and stats["acknowledged"] == 1
    assert {(t["alarm_type"], t["count"]) for t in stats["by_type"]} == {("1", 2), ("9", 4)}
    assert stats["by_type"][0]["name"] == "明火"
    assert stats["by_org"] == [{"org_id": node.site.enterprise_id, "name": "示例化工", "count": 6}]
    assert {(x["video_code"], x["count"]) for x in stats["by_camera"]} == {
        (cams[0], 3),
        (cams[1], 3),
    }
    # each camera named for the charts: its device and its channel's name
    assert {(x["device_id"], x["name"]) for x in stats["by_camera"]} == {
        (node.site.devices[cams[0]], "cam 1"),
        (node.site.devices[cams[1]], "cam 2"),
    }
    assert stats["by_day"] == [{"day": "2026-11-25", "count": 6}]
    assert [x["hour"] for x in stats["by_hour"]] == [0, 1, 2, 3, 4, 5]
    assert stats["mean_ack_s"] > 0 and stats["mean_close_s"] is None

    r = await c.get("/api/alarms/export.csv", params={"video_code": cams[0]}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert [row["alarm_id"] for row in rows] == [evs[0].alarm_id, evs[2].alarm_id, evs[4].alarm_id]
    assert rows[0]["type_name"] == "明火" and rows[0]["active"] == "False"
    assert rows[0]["cleared_at"].startswith("2026-11-24T23:30")

    detail = (await c.get(f"/api/alarms/{evs[0].alarm_id}", headers=h)).json()
    assert detail["image_url"] == f"/api/alarms/{evs[0].alarm_id}/image?status=1"
    # clip: 10 s before the alarm to 10 s after its clear, as a recordings export URL
    # of the camera: its device rides along (another device may list the same channel code)
    assert detail["clip_url"] == (
        f"/api/recordings/{cams[0]}/export.mp4?start=2026-11-24T16:29:50Z&end=2026-11-24T23:30:10Z"
        f"&device_id={node.site.devices[cams[0]]}"
    )
    img = await c.get(detail["image_url"], headers=h)
    assert img.status_code == 200 and img.content == bus_jpeg()
    assert img.headers["content-type"] == "image/jpeg"
    clear_img = await c.get(detail["clear_image_url"], headers=h)
    assert clear_img.status_code == 200
    r = await c.get(f"/api/alarms/{evs[1].alarm_id}/image?status=0", headers=h)
    assert r.status_code == 404  # not cleared: no clear picture


async def test_websocket_pushes_new_alarms_and_handling_in_scope(node: Node) -> None:
    app = create_app(node.services)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    )
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started, 10, "uvicorn")
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"ws://127.0.0.1:{port}/api/events/ws"
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(f"{base}?token=bad", open_timeout=5) as ws:
                await asyncio.wait_for(ws.recv(), 5)
        async with websockets.connect(f"{base}?token={node.tokens['ent']}", open_timeout=5) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert hello["kind"] == "hello"
            other = event(node.site.other_cameras[0])
            mine = event(node.site.cameras[0])
            await node.services.alarms.handle(other)  # another enterprise: not pushed
            await node.services.alarms.handle(mine)
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert msg["kind"] == "alarm.raised"
            assert msg["data"]["alarm_id"] == mine.alarm_id
            assert msg["data"]["video_code"] == node.site.cameras[0]
            assert msg["data"]["type_name"] == "未佩戴安全帽"
            # closed-loop steps reach every operator in scope; another site's stay private
            for ev, who in ((other, "other"), (mine, "ent")):
                r = await node.client.post(
                    f"/api/alarms/{ev.alarm_id}/actions",
                    json={"action": "acknowledge", "note": "seen"},
                    headers=node.auth(who),
                )
                assert r.status_code == 200
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert msg["kind"] == "alarm.updated"
            assert msg["data"]["alarm_id"] == mine.alarm_id
            assert msg["data"]["handling"] == "acknowledged"
            assert msg["data"]["action"] == "acknowledge" and msg["data"]["note"] == "seen"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_webhook_receives_alarm(tmp_path: Path) -> None:
    hook = Receiver().start()
    try:
        async for node in _node(tmp_path, webhooks=[hook.url("hook")]):
            ev = event(node.site.cameras[0])
            await node.services.alarms.handle(ev)
            await wait_until(lambda: len(hook.snapshot()) == 1, 10, "webhook post")
            body = hook.snapshot()[0].fields
            assert body["kind"] == "alarm.raised" and body["alarm_id"] == ev.alarm_id
    finally:
        hook.stop()


async def test_dead_letters_listed_and_resent(tmp_path: Path) -> None:
    receiver = Receiver(port=free_port())  # down for now
    receivers = [{"name": "prov", "table4_url": receiver.url("table4"), "timeout_s": 1}]
    try:
        async for node in _node(tmp_path, receivers=receivers, dead_after_s=0.3):
            ev = event(node.site.cameras[0])
            await node.services.alarms.handle(ev)
            c, h = node.client, node.auth("admin")

            async def dead(c: httpx.AsyncClient = c, h: dict = h) -> list[dict]:
                r = await c.get("/api/uplink/outbox", params={"state": "dead"}, headers=h)
                return r.json()

            for _ in range(200):
                if await dead():
                    break
                await asyncio.sleep(0.05)
            letters = await dead()
            assert len(letters) == 1 and letters[0]["payload"]["ALARM_ID"] == ev.alarm_id
            assert letters[0]["attempts"] >= 1 and letters[0]["last_error"]
            status = (await c.get("/api/uplink/status", headers=h)).json()
            assert {"receiver": "prov", "table": "table4", "state": "dead", "count": 1} in status[
                "outbox"
            ]
            assert status["sender"]["prov"]["failures"] >= 1

            receiver.start()
            r = await c.post("/api/uplink/outbox/resend", json={}, headers=h)
            assert r.json() == {"requeued": 1}
            await wait_until(lambda: len(receiver.snapshot()) == 1, 10, "re-sent post")
            assert receiver.snapshot()[0].fields["ALARM_ID"] == ev.alarm_id
    finally:
        receiver.stop()
