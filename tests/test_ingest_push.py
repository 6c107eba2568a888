"""The encrypted HTTP push (spec/sensors.md §2) end to end: sealed batches POSTed to the real
app on uvicorn, stored by the real ingest service, read back through the readings API; every
way a batch can be forged, replayed, malformed or partly wrong."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from api.routers import ingest_push
from vms.ingest.push import new_key, seal

from .alarms_support import wait_until
from .sensor_api_support import ApiNode, api_node, count_rows, readings_table_gone


@dataclass
class Pusher:
    node: ApiNode
    gateway_id: int
    ident: str
    key: str
    points: dict[str, int]

    async def post(self, envelope: Any, **kw: Any) -> Any:
        return await self.node.client.post("/api/ingest/push", json=envelope, **kw)

    async def push(self, readings: list[dict[str, Any]], **kw: Any) -> Any:
        env = seal(self.ident, self.key, {"batch_id": "b1", "readings": readings}, **kw)
        return await self.post(env)

    def stored(self) -> int:
        return count_rows(self.node.services.db, "readings")


async def _pusher(node: ApiNode) -> Pusher:
    gw = await node.ok("POST", "/api/gateways", json={"name": "接口", "protocol": "http_push"})
    points = {}
    for tag, kind in (("GT-1", "gas_combustible"), ("PT-1", "pressure")):
        body = {"tag": tag, "kind": kind, "range_min": 0, "range_max": 100, "gateway_id": gw["id"]}
        points[tag] = (await node.ok("POST", "/api/sensors", json=body))["id"]
    creds = gw["credentials"]
    return Pusher(node, gw["id"], creds["ident_code"], creds["key"], points)


@pytest.fixture
async def pusher(tmp_path: Path, db_url: str) -> AsyncIterator[Pusher]:
    async with api_node(tmp_path, db_url, push_max_rows=500) as node:
        yield await _pusher(node)


def rows(tag: str, n: int, start: datetime, value: float = 10.0) -> list[dict[str, Any]]:
    return [
        {"tag": tag, "at": (start + timedelta(seconds=i)).isoformat(), "value": value + i}
        for i in range(n)
    ]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def test_good_batch_is_stored_and_readable(pusher: Pusher) -> None:
    t0 = _now() - timedelta(minutes=5)
    local = [
        {"tag": "PT-1", "at": (t0 + timedelta(seconds=i)).astimezone().isoformat(), "value": i}
        for i in range(3)
    ]
    unix = [{"tag": "PT-1", "at": (t0 + timedelta(seconds=10)).timestamp(), "value": 9.5}]
    r = await pusher.push(rows("GT-1", 20, t0) + local + unix)
    assert r.status_code == 200, r.text
    assert r.json() == {"batch_id": "b1", "accepted": 24, "duplicates": 0, "late": 0,
                        "out_of_range": [], "rejected": []}  # fmt: skip
    assert pusher.stored() == 24  # answered after the rows were stored
    node = pusher.node
    got = await node.ok(
        "GET", f"/api/sensors/{pusher.points['GT-1']}/readings",
        params={"start": t0.isoformat(), "end": (t0 + timedelta(minutes=1)).isoformat()},
    )  # fmt: skip
    assert got["step"] == 0 and [x["value"] for x in got["rows"]] == [10.0 + i for i in range(20)]
    pt = await node.ok("GET", f"/api/sensors/{pusher.points['PT-1']}")
    assert pt["last_value"] == 9.5 and pt["online"] is True
    await wait_until(lambda: _gateway(node, pusher.gateway_id)["online"], 10, "gateway online")
    gw = _gateway(node, pusher.gateway_id)
    assert gw["last_seen_at"] is not None
    first_seen = gw["last_seen_at"]
    time.sleep(0.01)
    assert (await pusher.push(rows("GT-1", 1, t0 + timedelta(minutes=1)))).status_code == 200
    await wait_until(
        lambda: _gateway(node, pusher.gateway_id)["last_seen_at"] != first_seen, 10, "seen again"
    )


def _gateway(node: ApiNode, gid: int) -> dict[str, Any]:
    from storage.sensor_models import SensorGateway

    with node.services.db.session() as s:
        gw = s.get_one(SensorGateway, gid)
        return {"online": gw.online, "last_seen_at": gw.last_seen_at}


async def test_forged_and_replayed_envelopes(pusher: Pusher) -> None:
    batch = {"readings": rows("GT-1", 5, _now() - timedelta(minutes=1))}
    r = await pusher.post(seal(pusher.ident, new_key(), batch))
    assert r.status_code == 401 and pusher.ident in r.json()["detail"]
    r = await pusher.post(seal("0000000000000000", pusher.key, batch))
    assert r.status_code == 401

    env = seal(pusher.ident, pusher.key, batch)
    data = bytearray(base64.b64decode(env["data"]))
    data[3] ^= 0x01
    r = await pusher.post({**env, "data": base64.b64encode(bytes(data)).decode()})
    assert r.status_code == 401, "tampered ciphertext"
    r = await pusher.post({**env, "ts": env["ts"] + 1})
    assert r.status_code == 401, "tampered ts (associated data)"
    second = await pusher.node.ok(
        "POST", "/api/gateways", json={"name": "p2", "protocol": "http_push"}
    )
    r = await pusher.post({**env, "ident": second["credentials"]["ident_code"]})
    assert r.status_code == 401, "envelope moved to another identification code"
    old = seal(pusher.ident, pusher.key, batch, ts=int(time.time()) - 3600)
    r = await pusher.post(old)
    assert r.status_code == 401 and "clock" in r.json()["detail"]
    assert pusher.stored() == 0

    assert (await pusher.post(env)).status_code == 200
    r = await pusher.post(env)
    assert r.status_code == 409 and "replay" in r.json()["detail"]
    assert pusher.stored() == 5

    # a rotated key: the old one stops at once
    node = pusher.node
    rotated = await node.ok("POST", f"/api/gateways/{pusher.gateway_id}/rotate-key")
    batch2 = {"readings": rows("GT-1", 2, _now())}
    assert (await pusher.post(seal(pusher.ident, pusher.key, batch2))).status_code == 401
    assert (await pusher.post(seal(pusher.ident, rotated["key"], batch2))).status_code == 200
    await node.ok("PATCH", f"/api/gateways/{pusher.gateway_id}", json={"enabled": False})
    batch3 = {"readings": rows("GT-1", 1, _now() + timedelta(seconds=5))}
    r = await pusher.post(seal(pusher.ident, rotated["key"], batch3))
    assert r.status_code == 403 and pusher.stored() == 7


async def test_malformed_requests(pusher: Pusher) -> None:
    c = pusher.node.client
    r = await c.post(
        "/api/ingest/push", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert (await pusher.post([1, 2])).status_code == 400
    env = seal(pusher.ident, pusher.key, {"readings": []})
    for broken in (
        {k: v for k, v in env.items() if k != "nonce"},
        {**env, "ts": "yesterday"},
        {**env, "data": "***"},
        {**env, "nonce": base64.b64encode(b"short").decode()},
    ):
        r = await pusher.post(broken)
        assert r.status_code == 400, (broken, r.text)
    # authenticated, but the plaintext is not a batch
    for plain in (b"not json", b'{"rows": []}'):
        ts = int(time.time())
        nonce = os.urandom(12)
        data = AESGCM(base64.b64decode(pusher.key)).encrypt(
            nonce, plain, f"{pusher.ident}|{ts}".encode()
        )
        r = await pusher.post(
            {"ident": pusher.ident, "ts": ts, "nonce": base64.b64encode(nonce).decode(),
             "data": base64.b64encode(data).decode()}
        )  # fmt: skip
        assert r.status_code == 400, r.text
    big = b"x" * (8 * 1024 * 1024 + 1)
    r = await c.post("/api/ingest/push", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = await pusher.push(rows("GT-1", 501, _now() - timedelta(minutes=10)))
    assert r.status_code == 413 and "500" in r.json()["detail"]
    assert pusher.stored() == 0


async def test_partly_bad_batch_keeps_good_rows(pusher: Pusher) -> None:
    t0 = _now() - timedelta(minutes=2)
    batch = rows("GT-1", 3, t0) + [
        {"tag": "NOPE-9", "at": t0.isoformat(), "value": 1.0},
        {"tag": "PT-1", "at": t0.isoformat(), "value": float("nan")},
        {"tag": "PT-1", "at": "03.12.2026 08:00", "value": 1.0},
        {"tag": "PT-1", "at": (t0 + timedelta(seconds=1)).isoformat(), "value": 250.0},
        {"tag": "PT-1", "at": (_now() + timedelta(hours=1)).isoformat(), "value": 1.0},
        {"tag": "PT-1", "at": (t0 + timedelta(seconds=2)).isoformat(), "value": "high"},
        {"at": t0.isoformat(), "value": 1.0},
        {"tag": "PT-1", "at": (t0 + timedelta(seconds=3)).isoformat(), "value": 42.0},
    ]
    r = await pusher.push(batch)  # json.dumps writes NaN as the bare literal NaN
    assert r.status_code == 422, r.text
    body = r.json()
    rejected = {e["row"]: e for e in body["rejected"]}
    assert sorted(rejected) == [3, 4, 5, 7, 8, 9]
    assert rejected[3]["tag"] == "NOPE-9" and rejected[3]["error"] == "unknown tag"
    assert "finite" in rejected[4]["error"]
    assert "bad time" in rejected[5]["error"]
    assert "future" in rejected[7]["error"]
    assert "number" in rejected[8]["error"]
    assert "tag" in rejected[9]["error"]
    assert body["out_of_range"] == [{"row": 6, "tag": "PT-1", "value": 250.0}]
    assert body["accepted"] == 5  # 3 GT-1 + the out-of-range one (kept as a fault) + 42
    assert pusher.stored() == 5
    node = pusher.node
    pt = await node.ok("GET", f"/api/sensors/{pusher.points['PT-1']}")
    assert pt["fault"] == "" and pt["last_value"] == 42.0  # recovered by the in-range value
    events = await node.ok("GET", f"/api/sensors/{pusher.points['PT-1']}/events")
    assert [e["kind"] for e in events] == ["online", "recovered", "fault"]  # newest first


async def test_duplicate_batch_is_not_stored_twice(pusher: Pusher) -> None:
    batch = rows("GT-1", 50, _now() - timedelta(minutes=3))
    first = (await pusher.push(batch)).json()
    assert first["accepted"] == 50 and pusher.stored() == 50
    again = await pusher.push(batch)  # sealed anew: a resend, not a replay
    assert again.status_code == 200
    assert again.json()["duplicates"] == 50 and again.json()["accepted"] == 0
    assert pusher.stored() == 50


async def test_tags_of_another_gateway_are_refused(pusher: Pusher) -> None:
    node = pusher.node
    dcs = await node.ok(
        "POST", "/api/gateways",
        json={"name": "DCS", "protocol": "modbus_tcp", "config": {"host": "127.0.0.1", "port": 1}},
    )  # fmt: skip
    await node.ok(
        "POST", "/api/sensors",
        json={"tag": "LT-9", "kind": "level", "gateway_id": dcs["id"], "source": {"address": 3}},
    )  # fmt: skip
    await node.ok("POST", "/api/sensors", json={"tag": "LT-0", "kind": "level"})  # no gateway
    t0 = _now() - timedelta(seconds=30)
    r = await pusher.push(rows("LT-9", 1, t0) + rows("LT-0", 1, t0))
    assert r.status_code == 422
    assert [(e["row"], e["tag"]) for e in r.json()["rejected"]] == [(0, "LT-9")]
    assert "another gateway" in r.json()["rejected"][0]["error"]
    assert pusher.stored() == 1


async def test_busy_and_database_outage_answer_503(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_push, "COMMIT_WAIT_S", 1.0)
    async with api_node(tmp_path, db_url, queue_max=100) as node:
        pusher = await _pusher(node)
        db = node.services.db
        t0 = _now() - timedelta(minutes=30)
        async with readings_table_gone(db):
            # the database refuses the rows: they wait in memory, the answer says "not yet"
            r = await pusher.push(rows("GT-1", 60, t0))
            assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
            assert r.json()["accepted"] == 60
            r = await pusher.push(rows("PT-1", 60, t0))
            assert r.status_code == 503 and "retry later" in r.json()["detail"]
            assert int(r.headers["retry-after"]) > 0
        # back: the 60 waiting rows are written; a resend of them counts as duplicates
        await wait_until(lambda: pusher.stored() == 60, 30, "buffered rows written")
        r = await pusher.push(rows("GT-1", 60, t0))
        assert r.status_code == 200 and r.json()["duplicates"] == 60
        r = await pusher.push(rows("PT-1", 60, t0))
        assert r.status_code == 200 and r.json()["accepted"] == 60
        assert pusher.stored() == 120
