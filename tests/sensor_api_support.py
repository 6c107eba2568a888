"""The rig of the sensor API tests: the real app served by uvicorn on 127.0.0.1, a real
ingest component on the test database, a seeded site and a token per role."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import text

from api.app import create_app
from api.security import create_token
from storage.db import Database
from storage.models import Channel, Device, Role, User
from storage.objects import LocalObjectStore
from storage.passwords import hash_password
from vms.config import load_settings
from vms.ingest.component import IngestComponent
from vms.ingest.service import IngestService
from vms.services import Services

from .alarms_support import Site, camera_code, seed_site, wait_until

COUNTY_CAMERA = camera_code("370102000", 1)  # a county-owned camera above the enterprises


@dataclass
class ApiNode:
    services: Services
    site: Site
    client: httpx.AsyncClient
    tokens: dict[str, str]

    @property
    def ingest(self) -> IngestService:
        return self.services.ingest

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def call(self, method: str, path: str, who: str = "ent", **kw: Any) -> httpx.Response:
        return await self.client.request(method, path, headers=self.auth(who), **kw)

    async def ok(self, method: str, path: str, who: str = "ent", **kw: Any) -> Any:
        r = await self.call(method, path, who, **kw)
        assert r.status_code < 300, (r.status_code, r.text)
        return r.json() if r.content else None


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
        device = Device(device_id="37010200001180000009", name="county NVR", org_id=site.county_id)
        s.add(device)
        s.flush()
        s.add(Channel(device_pk=device.id, channel_id=COUNTY_CAMERA, name="county cam"))
    return tokens


@asynccontextmanager
async def api_node(tmp_path: Path, db_url: str = "", **ingest: Any) -> AsyncIterator[ApiNode]:
    settings = load_settings(
        server={"data_dir": tmp_path / "data"},
        database={"url": db_url},
        auth={"jwt_secret": "test-secret-not-for-production-0123456789"},
        ingest={"flush_interval_s": 0.05, **ingest},
    )
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    site = seed_site(db)
    component = IngestComponent(services)
    await component.start()
    app = create_app(services)
    tokens = _users(db, site, app.state.jwt_secret)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    )
    task = asyncio.create_task(server.serve())
    client = None
    try:
        await wait_until(lambda: server.started or task.done(), 20, "uvicorn")
        port = server.servers[0].sockets[0].getsockname()[1]
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60)
        yield ApiNode(services, site, client, tokens)
    finally:
        if client is not None:
            await client.aclose()
        server.should_exit = True
        await asyncio.wait_for(task, 20)
        await component.stop()
        db.close()


def count_rows(db: Database, table: str, where: str = "", **params: Any) -> int:
    sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
    with db.engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


@asynccontextmanager
async def readings_table_gone(db: Database) -> AsyncIterator[None]:
    """A real write failure of the readings path: the table is renamed away, then back."""
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE readings RENAME TO readings_away"))
    try:
        yield
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE readings_away RENAME TO readings"))
