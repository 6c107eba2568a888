"""``GET /api/uplink/receivers``: the admin panel's per-receiver outbox summary, scoped like
the other uplink routes (a county administrator counts its subtree's rows only; other roles
are refused)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.security import create_token
from storage.models import (
    Alarm,
    Channel,
    Device,
    OrgKind,
    OutboxItem,
    OutboxState,
    Profile,
    Role,
    User,
)
from storage.org_tree import create_org
from vms.config import UplinkReceiver
from vms.services import Services


@pytest.fixture
def walk(services: Services) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    now = datetime.now(UTC)  # ages are asserted against it: taken when the rows are made
    services.settings.uplink.receivers = [
        UplinkReceiver(name="prov", table4_url="http://127.0.0.1:9/t4", format="json")
    ]
    with services.db.session() as s:
        county = create_org(s, "县", OrgKind.county, None, "340102")
        other = create_org(s, "另县", OrgKind.county, None, "340103")
        for i, (name, org) in enumerate((("ent_a", county), ("ent_c", other)), 1):
            site = create_org(s, name, OrgKind.enterprise, org, f"91340000{i}")
            device = Device(device_id=f"3401020011118000000{i}", org_id=site.id)
            device.channels.append(Channel(channel_id=f"3401020011132000000{i}"))
            s.add(device)
            s.flush()
            alarm = Alarm(
                channel_pk=device.channels[0].id,
                org_id=site.id,
                profile=Profile.enterprise,
                alarm_type="1",
                rule="fire",
                video_code=device.channels[0].channel_id,
                device_code="AI",
                raised_at=now,
            )
            s.add(alarm)
            s.flush()

            def row(
                state: OutboxState, age_s: float, error: str = "", alarm: Alarm = alarm, **kw: Any
            ) -> OutboxItem:
                return OutboxItem(
                    receiver="prov",
                    table="table4",
                    ordering_key=alarm.video_code,
                    payload={"ALARM_ID": alarm.alarm_id},
                    state=state,
                    created_at=now - timedelta(seconds=age_s),
                    last_error=error,
                    **kw,
                )

            s.add_all(
                [
                    row(
                        OutboxState.pending,
                        600 if name == "ent_a" else 9000,
                        "HTTP 503",
                        attempts=2,
                    ),
                    row(OutboxState.pending, 60),
                    row(OutboxState.dead, 99999, f"{name} refused", dead_at=now),
                    row(OutboxState.sent, 30, sent_at=now - timedelta(seconds=5)),
                ]
            )
        s.add(  # relayed from below: no site of ours, a global administrator's only
            OutboxItem(
                receiver="gone",
                table="table4",
                ordering_key="relay:x",
                payload={"ALARM_ID": str(uuid.uuid4())},
                state=OutboxState.dead,
                last_error="relay refused",
            )
        )
        users = {
            "root": User(username="root", password_hash="x", role=Role.admin),
            "county_admin": User(
                username="county_admin", password_hash="x", role=Role.admin, org_id=county.id
            ),
            "operator": User(
                username="operator", password_hash="x", role=Role.operator, org_id=county.id
            ),
            "uplink": User(
                username="uplink", password_hash="x", role=Role.uplink, org_id=county.id
            ),
        }
        s.add_all(users.values())
        s.flush()
        secret = services.settings.auth.jwt_secret
        headers = {
            k: {"Authorization": f"Bearer {create_token(secret, u.id, u.role.value, 3600)}"}
            for k, u in users.items()
        }
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        yield client, headers


def _by_name(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in answer["receivers"]}


def test_a_global_admin_sees_every_row_and_the_unconfigured_receiver(walk: Any) -> None:
    client, h = walk
    got = client.get("/api/uplink/receivers", headers=h["root"])
    assert got.status_code == 200, got.text
    rows = _by_name(got.json())
    prov = rows["prov"]
    assert prov["configured"] and prov["tables"] == ["table4"] and prov["format"] == "json"
    assert (prov["pending"], prov["retrying"], prov["dead"], prov["sent"]) == (4, 2, 2, 2)
    assert 8990 <= prov["oldest_pending_age_s"] <= 9100
    assert prov["last_sent_at"] is not None
    errors = {e["error"]: e["count"] for e in prov["errors"]}
    assert errors == {"HTTP 503": 2, "ent_a refused": 1, "ent_c refused": 1}
    assert rows["gone"]["configured"] is False and rows["gone"]["dead"] == 1


def test_a_county_admin_counts_its_subtree_only(walk: Any) -> None:
    client, h = walk
    got = client.get("/api/uplink/receivers", headers=h["county_admin"])
    assert got.status_code == 200, got.text
    assert "ent_c" not in got.text and "relay" not in got.text
    rows = _by_name(got.json())
    assert set(rows) == {"prov"}  # configured; the relayed rows' receiver is not its business
    prov = rows["prov"]
    assert (prov["pending"], prov["retrying"], prov["dead"], prov["sent"]) == (2, 1, 1, 1)
    assert 590 <= prov["oldest_pending_age_s"] <= 700
    assert {e["error"] for e in prov["errors"]} == {"HTTP 503", "ent_a refused"}


@pytest.mark.parametrize("who", ["operator", "uplink"])
def test_other_roles_are_refused(walk: Any, who: str) -> None:
    client, h = walk
    assert client.get("/api/uplink/receivers", headers=h[who]).status_code == 403
    assert client.get("/api/uplink/receivers").status_code == 401
