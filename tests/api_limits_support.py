"""The API limits tests' rig: the real app on the guarded uvicorn listener, two enterprises
with a user each (tokens as login issues them), raw-socket clients for slow and idle peers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from api.security import create_token
from storage.models import OrgKind, Role, User
from storage.org_tree import create_org
from vms.http_server import ConnectionGuard, uvicorn_config
from vms.services import Services


@dataclass
class ApiNode:
    url: str
    port: int
    guard: ConnectionGuard
    app: Any
    tokens: dict[str, str]  # username → bearer token

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    @property
    def limits(self) -> Any:
        """The RequestLimits middleware instance (built by Starlette on first request)."""
        stack = self.app.middleware_stack
        while stack is not None and stack.__class__.__name__ != "RequestLimits":
            stack = getattr(stack, "app", None)
        assert stack is not None, "RequestLimits not in the middleware stack"
        return stack


def seed_users(services: Services, secret: str) -> dict[str, str]:
    """County → enterprises a and b; ``ent_a``, ``ent_b`` (enterprise) and ``op`` (county)."""
    with services.db.session() as s:
        province = create_org(s, "测试省", OrgKind.province, None, "340000")
        city = create_org(s, "测试市", OrgKind.city, province, "340100")
        county = create_org(s, "测试县", OrgKind.county, city, "340102")
        ent_a = create_org(s, "甲化工", OrgKind.enterprise, county, "913400001")
        ent_b = create_org(s, "乙化工", OrgKind.enterprise, county, "913400002")
        users = {
            "ent_a": User(username="ent_a", password_hash="x", role=Role.enterprise, org=ent_a),
            "ent_b": User(username="ent_b", password_hash="x", role=Role.enterprise, org=ent_b),
            "op": User(username="op", password_hash="x", role=Role.operator, org=county),
        }
        s.add_all(users.values())
        s.flush()
        return {name: create_token(secret, u.id, u.role.value, 3600) for name, u in users.items()}


@contextlib.asynccontextmanager
async def served(app: Any, server: Any) -> AsyncIterator[uvicorn.Config]:
    """``app`` on the guarded uvicorn listener as ``vms serve`` runs it; yields its config
    with ``port`` set to the port bound."""
    config = uvicorn_config(app, server)
    srv = uvicorn.Server(config)
    srv.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(srv.serve())
    try:
        async with asyncio.timeout(20):
            while not srv.started:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.02)
        config.port = srv.servers[0].sockets[0].getsockname()[1]
        yield config
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 20)
        app.state.health.close()


@contextlib.asynccontextmanager
async def api_node(services: Services, **server: Any) -> AsyncIterator[ApiNode]:
    """``create_app`` served as ``vms serve`` serves it, with ``server.*`` overrides."""
    settings = services.settings
    for key, value in {"host": "127.0.0.1", "port": 0, **server}.items():
        setattr(settings.server, key, value)
    app = create_app(services)
    tokens = seed_users(services, app.state.jwt_secret)
    async with served(app, settings.server) as config:
        port = config.port
        node = ApiNode(f"http://127.0.0.1:{port}", port, config.guard, app, tokens)  # type: ignore[attr-defined]
        async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
            assert (await client.get("/healthz")).status_code == 200  # builds the stack
        yield node


class SlowBody:
    """A request whose body never finishes: it holds its slot until the server gives up."""

    def __init__(self, port: int, token: str, path: str = "/api/devices") -> None:
        self.port, self.token, self.path = port, token, path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def start(self) -> SlowBody:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        self.writer.write(head.encode())
        await self.writer.drain()
        return self

    async def status(self, timeout: float = 20) -> int:
        """The status the server finally answered (0: it closed without one)."""
        assert self.reader is not None
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        return int(line.split()[1]) if line.startswith(b"HTTP/1.1") else 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> tuple[bool, bytes]:
    """(closed within ``timeout``, what came before the close)."""
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            if not chunk:
                return True, data
            data += chunk
    except TimeoutError:
        return False, data
    except ConnectionError:
        return True, data
    return False, data


async def until(check: Any, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)
