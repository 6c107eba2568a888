"""API foundation: login and tokens, the rate limit, roles, organisation scoping, bad input,
docs and health."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.app import create_app
from api.security import LoginLimiter, create_token
from storage.db import Database
from storage.models import Alarm, Channel, Device, Organisation, OrgKind, Profile, Role, User
from storage.objects import LocalObjectStore
from storage.org_tree import create_org
from storage.passwords import hash_password
from vms.config import Settings
from vms.services import Services

PASSWORD = "correct-horse-battery"


def _client(services: Services) -> TestClient:
    return TestClient(create_app(services), raise_server_exceptions=True)


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)  # Argon2 is slow on purpose: hash once per test run


def _add_user(db: Database, username: str, role: Role, org: Organisation | None = None) -> int:
    with db.session() as s:
        user = User(
            username=username,
            password_hash=_password_hash(),
            role=role,
            org_id=org.id if org else None,
        )
        s.add(user)
        s.flush()
        return user.id


def _login(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    resp = client.post("/api/auth/login", json={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def _token(client: TestClient, user_id: int, role: Role) -> dict[str, str]:
    """A token as login issues it (login itself is tested below; Argon2 is slow)."""
    secret = client.app.state.jwt_secret  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {create_token(secret, user_id, role.value, 600)}"}


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    _add_user(services.db, "root", Role.admin)
    with _client(services) as c:
        yield c


# --- login and tokens -----------------------------------------------------------------------


def test_login_gives_a_jwt_that_authenticates(client: TestClient, settings: Settings) -> None:
    resp = client.post("/api/auth/login", json={"username": "root", "password": PASSWORD})
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == settings.auth.token_ttl_s
    assert body["access_token"].count(".") == 2  # header.claims.signature
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json()["username"] == "root"
    assert me.json()["role"] == "admin"


@pytest.mark.parametrize("username", ["root", "nobody"])
def test_bad_password_is_401(client: TestClient, username: str) -> None:
    resp = client.post("/api/auth/login", json={"username": username, "password": "wrong-one"})
    assert resp.status_code == 401
    assert resp.json()["detail"] == "wrong username or password"  # same for both: no user probe


def _small_limit(client: TestClient, max_failures: int = 2) -> int:
    """Fewer failures before the lock: each one costs an Argon2 verify."""
    client.app.state.login_limiter = LoginLimiter(max_failures, 300)  # type: ignore[attr-defined]
    return max_failures


def test_failed_logins_are_rate_limited(client: TestClient) -> None:
    limit = _small_limit(client)
    bad = {"username": "root", "password": "guess"}
    for _ in range(limit):
        assert client.post("/api/auth/login", json=bad).status_code == 401
    resp = client.post("/api/auth/login", json=bad)
    assert resp.status_code == 429
    assert 0 < int(resp.headers["Retry-After"]) <= 301
    # Even the right password waits: the limit protects the account, not the guess.
    good = {"username": "root", "password": PASSWORD}
    assert client.post("/api/auth/login", json=good).status_code == 429
    # Another account from the same client is not locked.
    other = {"username": "someone-else", "password": "x"}
    assert client.post("/api/auth/login", json=other).status_code == 401


def test_successful_login_resets_the_failure_count(client: TestClient) -> None:
    limit = _small_limit(client)
    bad = {"username": "root", "password": "guess"}
    for _round in range(2):
        for _ in range(limit - 1):
            assert client.post("/api/auth/login", json=bad).status_code == 401
        _login(client, "root")
    assert client.post("/api/auth/login", json=bad).status_code == 401


def test_bad_tokens_are_401(client: TestClient, services: Services) -> None:
    secret = client.app.state.jwt_secret  # type: ignore[attr-defined]
    with services.db.session() as s:
        root_id = s.query(User.id).filter(User.username == "root").scalar()
    cases = {
        "missing": {},
        "garbage": {"Authorization": "Bearer not.a.token"},
        "expired": {"Authorization": f"Bearer {create_token(secret, root_id, 'admin', -5)}"},
        "foreign": {"Authorization": f"Bearer {create_token('x' * 40, root_id, 'admin', 60)}"},
        "no user": {"Authorization": f"Bearer {create_token(secret, 99999, 'admin', 60)}"},
    }
    for name, headers in cases.items():
        resp = client.get("/api/devices", headers=headers)
        assert resp.status_code == 401, name
    assert client.get("/api/devices").headers["WWW-Authenticate"] == "Bearer"
    # A disabled user's still-valid token stops working at once.
    headers = _login(client, "root")
    with services.db.session() as s:
        s.query(User).filter(User.username == "root").update({"is_active": False})
    assert client.get("/api/devices", headers=headers).status_code == 401


# --- roles ----------------------------------------------------------------------------------


def test_roles(client: TestClient, services: Services) -> None:
    with services.db.session() as s:
        county = create_org(s, "县", OrgKind.county, None)
        ent = create_org(s, "企业", OrgKind.enterprise, county)
    op, ent_h, machine = (
        _token(client, _add_user(services.db, name, role, org), role)
        for name, role, org in [
            ("op", Role.operator, county),
            ("ent", Role.enterprise, ent),
            ("machine", Role.uplink, None),
        ]
    )
    new_user = {"username": "x", "password": "Long-enough1", "role": "enterprise", "org_id": ent.id}
    assert client.post("/api/users", json=new_user, headers=op).status_code == 403
    assert client.get("/api/users", headers=ent_h).status_code == 403
    assert client.get("/api/users", headers=op).status_code == 403
    org = {"name": "n", "kind": "enterprise", "parent_id": county.id}
    assert client.post("/api/orgs", json=org, headers=op).status_code == 403
    device = {"device_id": "37010200001180000009", "org_id": ent.id}
    assert client.post("/api/devices", json=device, headers=op).status_code == 403
    assert client.get("/api/devices", headers=machine).status_code == 403
    root = _login(client, "root")
    resp = client.post("/api/users", json=new_user, headers=root)
    assert resp.status_code == 201 and resp.json()["role"] == "enterprise"
    assert client.post("/api/users", json=new_user, headers=root).status_code == 409
    assert _login(client, "x", "Long-enough1")


# --- organisation scoping (both databases) --------------------------------------------------


@dataclass
class Site:
    client: TestClient
    services: Services
    orgs: dict[str, Organisation] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)  # enterprise key → device GB id
    channels: dict[str, str] = field(default_factory=dict)
    alarms: dict[str, str] = field(default_factory=dict)
    users: dict[str, tuple[int, Role]] = field(default_factory=dict)

    def headers(self, username: str) -> dict[str, str]:
        return _token(self.client, *self.users[username])


@pytest.fixture
def site(db_url: str, settings: Settings) -> Iterator[Site]:
    """province → city → county A (enterprises a1, a2) and county B (enterprise b1)."""
    db = Database(db_url)
    db.open()
    services = Services(settings=settings, db=db, objects=LocalObjectStore(settings.objects_path))
    orgs: dict[str, Organisation] = {}
    devices: dict[str, str] = {}
    channels: dict[str, str] = {}
    alarms: dict[str, str] = {}
    with db.session() as s:
        orgs["province"] = create_org(s, "省", OrgKind.province, None, "370000")
        orgs["city"] = create_org(s, "市", OrgKind.city, orgs["province"], "370100")
        orgs["county_a"] = create_org(s, "甲县", OrgKind.county, orgs["city"], "370102")
        orgs["county_b"] = create_org(s, "乙县", OrgKind.county, orgs["city"], "370103")
        orgs["a1"] = create_org(s, "甲一厂", OrgKind.enterprise, orgs["county_a"], "370102001")
        orgs["a2"] = create_org(s, "甲二站", OrgKind.gas_station, orgs["county_a"], "370102002")
        orgs["b1"] = create_org(s, "乙一厂", OrgKind.enterprise, orgs["county_b"], "370103001")
        for n, key in enumerate(["a1", "a2", "b1"], start=1):
            device_id = f"3701020000118{n:07d}"
            channel_id = f"{orgs[key].code}0132{n:07d}"
            device = Device(device_id=device_id, name=key, org_id=orgs[key].id)
            device.channels.append(Channel(channel_id=channel_id, name=f"cam-{key}"))
            s.add(device)
            s.flush()
            alarm = Alarm(
                channel_pk=device.channels[0].id,
                org_id=orgs[key].id,
                profile=Profile.enterprise,
                alarm_type="01",
                video_code=channel_id,
            )
            s.add(alarm)
            s.flush()
            devices[key], channels[key], alarms[key] = device_id, channel_id, alarm.alarm_id
    users: dict[str, tuple[int, Role]] = {}
    for username, role, org in [
        ("root", Role.admin, None),
        ("ent_a1", Role.enterprise, orgs["a1"]),
        ("op_a1", Role.operator, orgs["a1"]),
        ("op_county_a", Role.operator, orgs["county_a"]),
        ("admin_county_a", Role.admin, orgs["county_a"]),
    ]:
        users[username] = (_add_user(db, username, role, org), role)
    with _client(services) as client:
        yield Site(client, services, orgs, devices, channels, alarms, users)
    db.close()


def test_enterprise_user_sees_only_its_own(site: Site) -> None:
    c, h = site.client, site.headers("ent_a1")
    own, other = site.devices["a1"], site.devices["b1"]
    assert [d["device_id"] for d in c.get("/api/devices", headers=h).json()] == [own]
    assert c.get(f"/api/devices/{own}", headers=h).status_code == 200
    channels = c.get(f"/api/devices/{own}/channels", headers=h).json()
    assert [ch["channel_id"] for ch in channels] == [site.channels["a1"]]
    assert [a["alarm_id"] for a in c.get("/api/alarms", headers=h).json()] == [site.alarms["a1"]]
    assert c.get(f"/api/alarms/{site.alarms['a1']}", headers=h).status_code == 200
    for key in ("a2", "b1"):  # a sibling in the same county and one in another county
        dev, alarm = site.devices[key], site.alarms[key]
        for path in (f"/api/devices/{dev}", f"/api/devices/{dev}/channels", f"/api/alarms/{alarm}"):
            resp = c.get(path, headers=h)
            assert resp.status_code == 404, path
        resp = c.patch(
            f"/api/devices/{dev}/channels/{site.channels[key]}", json={"name": "x"}, headers=h
        )
        assert resp.status_code == 404
    assert c.get(f"/api/devices/{other}", headers=h).json()["detail"] == f"device {other} not found"
    orgs = c.get("/api/orgs", headers=h).json()
    assert [o["name"] for o in orgs] == ["甲一厂"]


def test_county_operator_sees_its_county(site: Site) -> None:
    c, h = site.client, site.headers("op_county_a")
    listed = sorted(d["device_id"] for d in c.get("/api/devices", headers=h).json())
    assert listed == sorted([site.devices["a1"], site.devices["a2"]])
    alarms = sorted(a["alarm_id"] for a in c.get("/api/alarms", headers=h).json())
    assert alarms == sorted([site.alarms["a1"], site.alarms["a2"]])
    assert c.get(f"/api/devices/{site.devices['b1']}", headers=h).status_code == 404
    assert c.get(f"/api/alarms/{site.alarms['b1']}", headers=h).status_code == 404
    names = {o["name"] for o in c.get("/api/orgs", headers=h).json()}
    assert names == {"甲县", "甲一厂", "甲二站"}


def test_global_admin_sees_everything(site: Site) -> None:
    c, h = site.client, site.headers("root")
    assert len(c.get("/api/devices", headers=h).json()) == 3
    assert len(c.get("/api/alarms", headers=h).json()) == 3
    assert len(c.get("/api/orgs", headers=h).json()) == 7
    assert c.get(f"/api/alarms/{site.alarms['b1']}", headers=h).status_code == 200


def test_patch_outside_scope_is_404(site: Site) -> None:
    c = site.client
    op = site.headers("op_a1")  # an operator of enterprise a1
    resp = c.patch(f"/api/devices/{site.devices['a2']}", json={"name": "stolen"}, headers=op)
    assert resp.status_code == 404
    resp = c.patch(f"/api/devices/{site.devices['a1']}", json={"name": "renamed"}, headers=op)
    assert resp.status_code == 200 and resp.json()["name"] == "renamed"
    county_op = site.headers("op_county_a")
    dev_a1 = f"/api/devices/{site.devices['a1']}"
    # Moving a device into, or out of, an organisation the caller cannot see is refused.
    resp = c.patch(dev_a1, json={"org_id": site.orgs["b1"].id}, headers=county_op)
    assert resp.status_code == 404
    assert c.patch(dev_a1, json={"org_id": None}, headers=county_op).status_code == 403
    resp = c.patch(dev_a1, json={"org_id": site.orgs["a2"].id}, headers=county_op)
    assert resp.status_code == 200 and resp.json()["org_id"] == site.orgs["a2"].id
    root = site.headers("root")
    resp = c.get(f"/api/devices/{site.devices['a1']}", headers=root)
    assert resp.json()["name"] == "renamed"
    resp = c.get(f"/api/devices/{site.devices['a2']}", headers=root)
    assert resp.json()["name"] == "a2"


def test_a_site_gets_the_device_code_the_province_knows_it_by(site: Site) -> None:
    """PATCH /api/orgs: DEVICE_CODE checked here (length, characters), never at send time."""
    c = site.client
    root, county_admin = site.headers("root"), site.headers("admin_county_a")
    a1 = f"/api/orgs/{site.orgs['a1'].id}"
    r = c.patch(a1, json={"uplink_device_code": "AI-CHEM-07"}, headers=county_admin)
    assert r.status_code == 200 and r.json()["uplink_device_code"] == "AI-CHEM-07"
    assert c.get("/api/orgs", headers=root).json()  # listed with it
    for bad in ("x" * 37, "has space", "中文"):
        assert c.patch(a1, json={"uplink_device_code": bad}, headers=root).status_code == 422
    assert c.patch(a1, json={"bogus": 1}, headers=root).status_code == 422
    b1 = f"/api/orgs/{site.orgs['b1'].id}"
    assert c.patch(b1, json={"name": "x"}, headers=county_admin).status_code == 404
    assert c.patch(a1, json={"name": "x"}, headers=site.headers("op_a1")).status_code == 403
    made = c.post(
        "/api/orgs",
        json={"name": "新站", "kind": "gas_station", "parent_id": site.orgs["county_a"].id,
              "code": "370102099", "uplink_device_code": "JYZ-99"},
        headers=county_admin,
    )  # fmt: skip
    assert made.status_code == 201 and made.json()["uplink_device_code"] == "JYZ-99"


def test_scoped_admin_cannot_create_outside_its_subtree(site: Site) -> None:
    c, h = site.client, site.headers("admin_county_a")
    outside = {"name": "新厂", "kind": "enterprise", "parent_id": site.orgs["county_b"].id}
    assert c.post("/api/orgs", json=outside, headers=h).status_code == 404
    top = {"name": "新省", "kind": "province"}
    assert c.post("/api/orgs", json=top, headers=h).status_code == 403
    inside = {"name": "新厂", "kind": "enterprise", "parent_id": site.orgs["county_a"].id}
    resp = c.post("/api/orgs", json=inside, headers=h)
    assert resp.status_code == 201
    assert resp.json()["path"] == site.orgs["county_a"].path + f"{resp.json()['id']}/"
    wrong_kind = {"name": "x", "kind": "city", "parent_id": site.orgs["county_a"].id}
    resp = c.post("/api/orgs", json=wrong_kind, headers=h)
    assert resp.status_code == 422 and "city cannot be placed under county" in resp.text
    user = {"username": "b", "password": "Long-enough-1", "role": "enterprise"}
    resp = c.post("/api/users", json={**user, "org_id": site.orgs["b1"].id}, headers=h)
    assert resp.status_code == 404
    resp = c.post("/api/users", json={**user, "org_id": site.orgs["a1"].id}, headers=h)
    assert resp.status_code == 201
    device = {"device_id": "37010300001180000099", "org_id": site.orgs["b1"].id}
    assert c.post("/api/devices", json=device, headers=h).status_code == 404
    names = {u["username"] for u in c.get("/api/users", headers=h).json()}
    assert names == {"ent_a1", "op_a1", "op_county_a", "admin_county_a", "b"}


def test_deleting_a_device_keeps_its_alarms(site: Site) -> None:
    c, root = site.client, site.headers("root")
    assert c.delete(f"/api/devices/{site.devices['b1']}", headers=root).status_code == 204
    assert c.get(f"/api/devices/{site.devices['b1']}", headers=root).status_code == 404
    resp = c.get(f"/api/alarms/{site.alarms['b1']}", headers=root)
    assert resp.status_code == 200 and resp.json()["video_code"] == site.channels["b1"]


# --- bad input, docs, health ----------------------------------------------------------------


def test_bad_requests_are_422_with_a_clear_body(client: TestClient) -> None:
    h = _login(client, "root")
    cases = [
        ({"device_id": "1234"}, "body.device_id"),
        ({"device_id": "3701020000118000000A"}, "body.device_id"),
        ({"device_id": "37010200001180000001", "org_id": "abc"}, "body.org_id"),
        ({"device_id": "37010200001180000001", "sip_pasword": "x"}, "body.sip_pasword"),
        ({"device_id": "37010200001180000001", "status": "sleeping"}, "body.status"),
    ]
    for body, where in cases:
        resp = client.post("/api/devices", json=body, headers=h)
        assert resp.status_code == 422, body
        payload = resp.json()
        assert payload["detail"] == "invalid request"
        assert where in [e["field"] for e in payload["errors"]], payload
        assert all(e["error"] for e in payload["errors"])
    resp = client.post(
        "/api/devices", content=b"{not json", headers={**h, "Content-Type": "application/json"}
    )
    assert resp.status_code == 422 and resp.json()["detail"] == "invalid request"
    resp = client.get("/api/devices?limit=0", headers=h)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "query.limit"
    resp = client.post("/api/auth/login", json={"username": "root"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "body.password"
    assert client.get("/api/devices", headers=h).json() == []  # nothing was half-created


def test_docs_and_openapi(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in ("/api/auth/login", "/api/devices", "/api/orgs", "/api/users", "/healthz"):
        assert path in paths
    assert client.get("/").status_code == 200  # the web UI


def test_healthz_ok(client: TestClient) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"
    assert resp.json()["checks"] == {"database": "ok", "objects": "ok"}


def test_healthz_503_when_objects_unwritable(client: TestClient, services: Services) -> None:
    root = Path(services.objects.root)  # type: ignore[attr-defined]
    for child in root.iterdir():
        child.unlink()
    root.rmdir()
    root.write_text("not a folder")
    resp = client.get("/healthz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "degraded" and body["checks"]["database"] == "ok"
    assert body["checks"]["objects"].startswith("error")


@pytest.mark.postgres
def test_healthz_503_when_the_database_is_gone(postgres_url: str, settings: Settings) -> None:
    db = Database(postgres_url, connect_timeout_s=2)
    db.open()
    services = Services(settings=settings, db=db, objects=LocalObjectStore(settings.objects_path))
    try:
        with _client(services) as client:
            assert client.get("/healthz").status_code == 200
            url = make_url(postgres_url)
            admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{url.database}" WITH (FORCE)'))
            admin.dispose()
            resp = client.get("/healthz")
            assert resp.status_code == 503
            assert resp.json()["checks"]["database"].startswith("error")
            assert resp.json()["checks"]["objects"] == "ok"
    finally:
        db.close()


# --- bootstrap admin and the token secret ---------------------------------------------------


def test_bootstrap_admin_from_settings(tmp_path: Path) -> None:
    from vms.app import open_services
    from vms.config import load_settings

    settings = load_settings(
        server={"data_dir": tmp_path / "data"},
        auth={"admin_username": "boot", "admin_password": "boot-password-1"},
    )
    for _start in range(2):  # a restart neither duplicates nor fails
        services = open_services(settings)
        with _client(services) as client:
            headers = _login(client, "boot", "boot-password-1")
            assert client.get("/api/auth/me", headers=headers).json()["role"] == "admin"
        with services.db.session() as s:
            assert s.query(User).filter(User.username == "boot").count() == 1
        services.db.close()


def test_generated_token_secret_survives_a_restart(tmp_path: Path, services: Services) -> None:
    from vms.config import load_settings

    settings = load_settings(server={"data_dir": tmp_path / "node"})  # no jwt_secret set
    services = Services(settings=settings, db=services.db, objects=services.objects)
    first = create_app(services).state.jwt_secret
    secret_file = tmp_path / "node" / "jwt.secret"
    assert secret_file.read_text() == first and len(first) >= 32
    assert secret_file.stat().st_mode & 0o077 == 0
    assert create_app(services).state.jwt_secret == first


def test_a_failed_commit_is_never_reported_as_success(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.orm import Session

    h = _login(client, "root")
    device = {"device_id": "37010200001180000007", "name": "before"}
    assert client.post("/api/devices", json=device, headers=h).status_code == 201

    def failing_commit(self: Session) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(Session, "commit", failing_commit)
    with TestClient(client.app, raise_server_exceptions=False) as c:
        resp = c.patch(f"/api/devices/{device['device_id']}", json={"name": "after"}, headers=h)
    assert resp.status_code == 500
    monkeypatch.undo()
    resp = client.get(f"/api/devices/{device['device_id']}", headers=h)
    assert resp.json()["name"] == "before"
