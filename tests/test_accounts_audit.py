"""Identification and the audit trail (issue 17, GB/T 22239 level 3), on SQLite and PostgreSQL.

Account lockout across clients and restarts, the password policy, the forced change of a
password someone else set (bootstrap, an admin's reset) or one too old, token revocation
(one sign-out, every token on a role/organisation/password change or a disable), and the
audit trail: what is recorded, who may read it, its export, and a hash chain that names
the entry an edit or a deletion broke.
"""

from __future__ import annotations

import csv
import functools
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from api.routers import events_ws
from storage.audit_models import AuditEntry, AuditRecord, append, verify
from storage.db import Database
from storage.models import Organisation, OrgKind, Role, User
from storage.objects import LocalObjectStore
from storage.org_tree import create_org
from storage.passwords import hash_password
from vms.config import load_settings
from vms.services import Services

PASSWORD = "Correct-horse-7"
NEW_PASSWORD = "Battery-staple-42"


@functools.cache
def _hash() -> str:
    return hash_password(PASSWORD)  # Argon2 is slow on purpose: once per run


@dataclass
class Node:
    client: TestClient
    services: Services
    orgs: dict[str, Organisation] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)

    def login(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        resp = self.client.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
        assert resp.status_code == 200, resp.text
        return {"Authorization": f"Bearer {resp.json()['access_token']}"}

    def audit(self, headers: dict[str, str], **params: str) -> list[dict]:
        resp = self.client.get("/api/audit", params={"limit": 1000, **params}, headers=headers)
        assert resp.status_code == 200, resp.text
        return resp.json()


@pytest.fixture
def node(db_url: str, tmp_path: Path) -> Iterator[Node]:
    settings = load_settings(
        server={"data_dir": tmp_path / "data"},
        database={"url": db_url},
        sip={"host": "127.0.0.1", "port": 0, "password": "test-device-pass"},
        auth={
            "jwt_secret": "test-secret-not-for-production-0123456789",
            "lockout_failures": 3,
            "lockout_s": 600,
        },
    )
    settings.server.data_dir.mkdir(parents=True)
    db = Database(settings.database_url)
    db.open()
    services = Services(settings=settings, db=db, objects=LocalObjectStore(settings.objects_path))
    n = Node(TestClient(create_app(services)), services)
    with db.session() as s:
        province = create_org(s, "省", OrgKind.province, None, "37")
        city = create_org(s, "市", OrgKind.city, province, "3701")
        county_a = create_org(s, "县A", OrgKind.county, city, "370102")
        county_b = create_org(s, "县B", OrgKind.county, city, "370103")
        ent_a = create_org(s, "企业A", OrgKind.enterprise, county_a, "913701020")
        ent_b = create_org(s, "企业B", OrgKind.enterprise, county_b, "913701030")
        s.flush()
        n.orgs = {"county_a": county_a, "county_b": county_b, "ent_a": ent_a, "ent_b": ent_b}
        for name, role, org in (
            ("root", Role.admin, None),
            ("admin_a", Role.admin, county_a),
            ("op_a", Role.operator, county_a),
            ("ent_a", Role.enterprise, ent_a),
            ("ent_b", Role.enterprise, ent_b),
            ("auditor", Role.auditor, None),
            ("auditor_a", Role.auditor, county_a),
        ):
            user = User(username=name, password_hash=_hash(), role=role, org_id=org and org.id)
            s.add(user)
            s.flush()
            n.users[name] = user.id
        for org in n.orgs.values():
            s.expunge(org)
    with n.client:
        yield n
    db.close()


# --- lockout --------------------------------------------------------------------------------


def test_account_locks_after_consecutive_failures_and_an_admin_unlocks_it(node: Node) -> None:
    c = node.client
    bad = {"username": "op_a", "password": "Wrong-guess-1"}
    good = {"username": "op_a", "password": PASSWORD}
    for _round in range(2):  # a success in between resets the count
        for _ in range(2):
            assert c.post("/api/auth/login", json=bad).status_code == 401
        assert c.post("/api/auth/login", json=good).status_code == 200
    for _ in range(3):
        assert c.post("/api/auth/login", json=bad).status_code == 401
    locked = c.post("/api/auth/login", json=good)
    assert locked.status_code == 423 and "locked" in locked.json()["detail"]
    assert 590 < int(locked.headers["Retry-After"]) <= 601
    # Kept in the database: a restarted node (a new app, a fresh rate limiter) keeps the lock.
    with TestClient(create_app(node.services)) as again:
        assert again.post("/api/auth/login", json=good).status_code == 423
    user_row = c.get("/api/users", headers=node.login("root")).json()
    (op,) = [u for u in user_row if u["username"] == "op_a"]
    assert op["locked_until"] is not None
    resp = c.patch(f"/api/users/{op['id']}", json={"unlock": True}, headers=node.login("admin_a"))
    assert resp.status_code == 200 and resp.json()["locked_until"] is None
    assert c.post("/api/auth/login", json=good).status_code == 200


def test_a_lock_runs_out(node: Node) -> None:
    for _ in range(3):
        node.client.post("/api/auth/login", json={"username": "ent_a", "password": "x"})
    assert (
        node.client.post(
            "/api/auth/login", json={"username": "ent_a", "password": PASSWORD}
        ).status_code
        == 423
    )
    with node.services.db.session() as s:
        past = datetime.now(UTC) - timedelta(seconds=1)
        s.execute(update(User).where(User.username == "ent_a").values(locked_until=past))
    node.login("ent_a")


# --- password policy and forced change ------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("Short-1", "at least 10 characters"),
        ("alllowercaseletters", "at least three of"),
        ("newbie-Password-1", "must not contain the username"),
    ],
)
def test_password_policy(node: Node, password: str, why: str) -> None:
    body = {"username": "newbie", "password": password, "role": "operator"}
    body["org_id"] = node.orgs["county_a"].id
    resp = node.client.post("/api/users", json=body, headers=node.login("root"))
    assert resp.status_code == 422 and why in resp.json()["detail"]


def test_a_password_set_by_an_admin_must_be_changed_before_anything_else(node: Node) -> None:
    c, root = node.client, node.login("root")
    body = {"username": "newbie", "password": "Given-by-admin-1", "role": "operator"}
    created = c.post("/api/users", json={**body, "org_id": node.orgs["county_a"].id}, headers=root)
    assert created.status_code == 201 and created.json()["must_change_password"] is True
    resp = c.post("/api/auth/login", json={"username": "newbie", "password": "Given-by-admin-1"})
    assert resp.json()["password_change_required"] is True
    h = {"Authorization": f"Bearer {resp.json()['access_token']}"}
    refused = c.get("/api/devices", headers=h)
    assert refused.status_code == 403 and "password change required" in refused.json()["detail"]
    assert c.get("/api/auth/me", headers=h).json()["password_change_required"] is True

    def change(current: str, new: str) -> object:
        return c.post(
            "/api/auth/password",
            json={"current_password": current, "new_password": new},
            headers=h,
        )

    assert change("not-it", NEW_PASSWORD).status_code == 403
    assert change("Given-by-admin-1", "Given-by-admin-1").status_code == 422
    assert change("Given-by-admin-1", "weak").status_code == 422
    changed = change("Given-by-admin-1", NEW_PASSWORD)
    assert changed.status_code == 200 and changed.json()["password_change_required"] is False
    assert c.get("/api/auth/me", headers=h).status_code == 401  # the old token is revoked
    fresh = {"Authorization": f"Bearer {changed.json()['access_token']}"}
    assert c.get("/api/devices", headers=fresh).status_code == 200
    # An admin's reset is again someone else's password.
    newbie_id = created.json()["id"]
    reset = c.patch(f"/api/users/{newbie_id}", json={"password": "Reset-by-admin-2"}, headers=root)
    assert reset.status_code == 200 and reset.json()["must_change_password"] is True
    assert c.get("/api/devices", headers=fresh).status_code == 401


def test_an_old_password_must_be_changed(node: Node) -> None:
    with node.services.db.session() as s:
        old = datetime.now(UTC) - timedelta(days=91)
        s.execute(update(User).where(User.username == "op_a").values(password_changed_at=old))
    h = node.login("op_a")
    assert node.client.get("/api/alarms", headers=h).status_code == 403
    node.services.settings.auth.password_max_age_days = 0  # 0: passwords never expire
    assert node.client.get("/api/alarms", headers=h).status_code == 200


def test_the_bootstrap_admin_must_set_its_own_password(tmp_path: Path) -> None:
    from vms.app import open_services

    settings = load_settings(
        server={"data_dir": tmp_path / "data"},
        auth={"admin_username": "boot", "admin_password": "Boot-password-1"},
    )
    services = open_services(settings)
    with TestClient(create_app(services)) as c:
        resp = c.post("/api/auth/login", json={"username": "boot", "password": "Boot-password-1"})
        assert resp.json()["password_change_required"] is True
    services.db.close()


# --- revocation -----------------------------------------------------------------------------


def test_sign_out_and_changes_revoke_tokens(node: Node) -> None:
    c, root = node.client, node.login("root")
    first, second = node.login("op_a"), node.login("op_a")
    assert c.post("/api/auth/logout", headers=first).status_code == 204
    assert c.get("/api/alarms", headers=first).status_code == 401  # this browser only
    assert c.get("/api/alarms", headers=second).status_code == 200
    op_id = node.users["op_a"]
    assert (
        c.patch(f"/api/users/{op_id}", json={"role": "enterprise"}, headers=root).status_code == 200
    )
    assert c.get("/api/alarms", headers=second).status_code == 401  # the role it held is gone
    third = node.login("op_a")
    moved = c.patch(f"/api/users/{op_id}", json={"org_id": node.orgs["county_b"].id}, headers=root)
    assert moved.status_code == 200
    assert c.get("/api/alarms", headers=third).status_code == 401
    fourth = node.login("op_a")
    assert c.post(f"/api/users/{op_id}/revoke", headers=root).status_code == 204
    assert c.get("/api/alarms", headers=fourth).status_code == 401
    fifth = node.login("op_a")
    assert (
        c.patch(f"/api/users/{op_id}", json={"is_active": False}, headers=root).status_code == 200
    )
    assert c.get("/api/alarms", headers=fifth).status_code == 401
    assert (
        c.post("/api/auth/login", json={"username": "op_a", "password": PASSWORD}).status_code
        == 401
    )
    sixth = node.login("ent_a")
    assert c.post("/api/auth/logout", params={"everywhere": True}, headers=sixth).status_code == 204
    with (
        pytest.raises(WebSocketDisconnect),
        c.websocket_connect("/api/events/ws?token=" + sixth["Authorization"].split()[1]) as ws,
    ):
        ws.receive_json()


def test_an_open_event_socket_is_closed_when_its_token_is_revoked(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_ws, "RECHECK_S", 0.2)
    c, root = node.client, node.login("root")
    op = node.login("op_a")
    with c.websocket_connect("/api/events/ws?token=" + op["Authorization"].split()[1]) as ws:
        assert ws.receive_json()["kind"] == "hello"
        revoke = c.post(f"/api/users/{node.users['op_a']}/revoke", headers=root)
        assert revoke.status_code == 204
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()  # no event comes before the close
        assert closed.value.code == 1008 and "revoked" in closed.value.reason


def test_a_scoped_admin_manages_only_its_subtree(node: Node) -> None:
    c, h = node.client, node.login("admin_a")
    ent_b = node.users["ent_b"]
    assert c.patch(f"/api/users/{ent_b}", json={"is_active": False}, headers=h).status_code == 404
    assert c.post(f"/api/users/{ent_b}/revoke", headers=h).status_code == 404
    op_a = node.users["op_a"]
    outside = {"org_id": node.orgs["county_b"].id}
    assert c.patch(f"/api/users/{op_a}", json=outside, headers=h).status_code == 404
    assert c.patch(f"/api/users/{op_a}", json={"move_to_top": True}, headers=h).status_code == 403
    me = node.users["admin_a"]
    assert c.patch(f"/api/users/{me}", json={"is_active": False}, headers=h).status_code == 422


# --- the audit trail ------------------------------------------------------------------------


def test_logins_changes_and_exports_are_recorded(node: Node) -> None:
    c = node.client
    c.post("/api/auth/login", json={"username": "nobody", "password": "guess"})
    c.post("/api/auth/login", json={"username": "op_a", "password": "Wrong-guess-1"})
    root = node.login("root")
    op = node.login("op_a")
    c.patch(f"/api/users/{node.users['ent_a']}", json={"password": "Reset-it-now-3"}, headers=root)
    c.get("/api/alarms/export.csv", headers=op)
    c.get("/api/alarms", headers=op)  # a plain read: not recorded
    c.post(
        "/api/users",
        json={"username": "x", "password": "Xx-password-9", "role": "admin"},
        headers=op,
    )
    c.patch("/api/devices/1", json={"name": "x"})  # unauthenticated: nothing was done

    entries = node.audit(node.login("auditor"))
    by_action = {}
    for e in entries:
        by_action.setdefault(e["action"], []).append(e)
    logins = by_action["login"]
    assert {(e["actor"], e["outcome"]) for e in logins} >= {
        ("nobody", "failed"),
        ("op_a", "failed"),
        ("root", "ok"),
        ("op_a", "ok"),
    }
    assert all(e["client"] == "testclient" for e in logins)
    (reset,) = by_action["PATCH /api/users/{user_id}"]
    assert reset["actor"] == "root" and reset["target"] == f"/api/users/{node.users['ent_a']}"
    assert reset["detail"]["body"] == {"password": "***"}  # what changed, never the secret
    (export,) = by_action["GET /api/alarms/export.csv"]
    assert export["actor"] == "op_a" and export["outcome"] == "ok"
    assert "GET /api/alarms" not in by_action
    (denied,) = by_action["POST /api/users"]
    assert denied["actor"] == "op_a" and denied["outcome"] == "denied"
    assert denied["detail"]["status"] == 403
    assert "PATCH /api/devices/{device_id}" not in by_action
    assert verify_ok(node)


def verify_ok(node: Node) -> bool:
    report = node.client.get("/api/audit/verify", headers=node.login("auditor")).json()
    return report["ok"] is True and report["entries"] > 0


def test_only_auditors_read_the_trail_within_their_scope(node: Node) -> None:
    c = node.client
    node.login("op_a")
    node.login("ent_b")
    for user in ("root", "admin_a", "op_a", "ent_a"):
        assert c.get("/api/audit", headers=node.login(user)).status_code == 403
    scoped = node.audit(node.login("auditor_a"), action="login")
    assert {e["actor"] for e in scoped} <= {"op_a", "admin_a", "ent_a", "auditor_a"}
    assert "op_a" in {e["actor"] for e in scoped} and "ent_b" not in {e["actor"] for e in scoped}
    everyone = node.audit(node.login("auditor"), action="login")
    assert {"ent_b", "root"} <= {e["actor"] for e in everyone}
    # An auditor reads the trail and no operational data.
    h = node.login("auditor")
    for path in ("/api/alarms", "/api/devices", "/api/users", "/api/orgs"):
        assert c.get(path, headers=h).status_code == 403, path


def test_the_export_holds_the_chain(node: Node) -> None:
    node.login("op_a")
    node.login("ent_a")
    resp = node.client.get("/api/audit/export.csv", headers=node.login("auditor"))
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [int(r["id"]) for r in rows] == list(range(1, len(rows) + 1))
    for before, after in zip(rows, rows[1:], strict=False):
        assert after["prev_hash"] == before["hash"]
    # The export is recorded before its rows are read: its own entry ends it.
    assert rows[-1]["action"] == "GET /api/audit/export.csv" and rows[-1]["actor"] == "auditor"


def _tamper(db: Database, sql: str) -> None:
    """Edit the trail the way an attacker with database rights would: past the triggers."""
    with db.engine.begin() as conn:
        if db.engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
            conn.execute(text(sql))
            conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))
            conn.execute(text(sql))


def test_the_chain_names_an_edited_or_deleted_entry(node: Node) -> None:
    db = node.services.db
    for name in ("op_a", "ent_a", "ent_b", "admin_a"):
        node.login(name)
    with db.session() as s:
        assert verify(s).ok
        with pytest.raises(DBAPIError, match="append-only"):
            s.execute(text("UPDATE audit_log SET actor = 'someone' WHERE id = 2"))
            s.flush()
        s.rollback()
        with pytest.raises(DBAPIError, match="append-only"):
            s.execute(text("DELETE FROM audit_log WHERE id = 3"))
        s.rollback()
    _tamper(db, "UPDATE audit_log SET actor = 'someone' WHERE id = 2")
    with db.session() as s:
        report = verify(s)
    assert not report.ok and report.first_bad_id == 2 and "changed" in report.reason
    answer = node.client.get("/api/audit/verify", headers=node.login("auditor")).json()
    assert answer["ok"] is False and answer["first_bad_id"] == 2


def test_a_deleted_entry_is_found(node: Node) -> None:
    for name in ("op_a", "ent_a", "ent_b"):
        node.login(name)
    _tamper(node.services.db, "DELETE FROM audit_log WHERE id = 2")
    with node.services.db.session() as s:
        report = verify(s)
    assert not report.ok and report.first_bad_id == 2 and report.reason == "entry missing"


def test_concurrent_writers_keep_one_chain(node: Node) -> None:
    """Threads appending at once (and, on PostgreSQL, the advisory lock across connections)."""
    db = node.services.db

    def writer(k: int) -> None:
        for i in range(20):
            with db.session() as s:
                append(s, AuditRecord(action="test", actor=f"w{k}", detail={"i": i}))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with db.session() as s:
        report = verify(s)
        assert report.ok and report.entries == 120, report
        assert s.query(AuditEntry).filter(AuditEntry.action == "test").count() == 120
