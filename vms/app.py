"""Wires the node into one asyncio process: database, object store, SIP, media,
recording, analyzers, uplink and the HTTP API; shuts them down in reverse order
on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
from collections.abc import Callable
from typing import Any, Protocol

import uvicorn
from sqlalchemy import select

from storage.db import Database, PoolLimits
from storage.models import Role, User
from storage.objects import open_store
from vms.config import Settings
from vms.logging import get_logger
from vms.services import Services

log = get_logger("vms.app")


class StartupError(Exception):
    """A component or the HTTP listener could not start; the message is one line."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def bind_http_socket(host: str, port: int) -> socket.socket:
    """Bind the API's socket before anything else starts: a busy port fails fast and clearly."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"HTTP cannot listen on {host}:{port} [VMS_SERVER__HOST/PORT]: {exc.strerror or exc}"
        ) from None
    return sock


class Component(Protocol):
    name: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


ComponentFactory = Callable[[Services], "Component | None"]


def component_factories(role: str = "all") -> list[ComponentFactory]:
    """The role's components in start order (``vms.components``); each factory returns None
    when its component is disabled by settings."""
    from vms.components import for_role

    return [spec.load() for spec in for_role(role)]


def open_services(settings: Settings) -> Services:
    """Open the migrated database and the object store; raise a clear error if either fails."""
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    objects = open_store(settings)
    objects.check()  # before migrating: a refused start-up changes nothing
    d = settings.database
    db = Database(
        settings.database_url,
        d.connect_timeout_s,
        d.echo,
        PoolLimits(d.pool_size, d.max_overflow, d.pool_timeout_s),
    )
    db.open()
    services = Services(settings=settings, db=db, objects=objects)
    bootstrap_admin(services)
    return services


def bootstrap_admin(services: Services) -> None:
    from storage.passwords import hash_password

    auth = services.settings.auth
    if not (auth.admin_username and auth.admin_password):
        return
    with services.db.session() as s:
        if s.scalar(select(User).where(User.username == auth.admin_username)) is None:
            s.add(
                User(
                    username=auth.admin_username,
                    password_hash=hash_password(auth.admin_password),
                    role=Role.admin,
                    # A password kept in a settings file is a bootstrap secret, not the
                    # admin's own: it works once, to set one.
                    must_change_password=True,
                )
            )
            log.info("bootstrap admin created", username=auth.admin_username)


class Application:
    """One node: start everything, wait for a signal, stop everything."""

    def __init__(
        self,
        services: Services,
        extra: list[ComponentFactory] | None = None,
        role: str = "all",
    ) -> None:
        self.services = services
        self.role = role
        self.components: list[Component] = []
        self._factories = component_factories(role) + list(extra or [])
        self._stop = asyncio.Event()
        self._server: uvicorn.Server | None = None
        self._http_socket: socket.socket | None = None
        self.http_guard: Any = None  # the listener's ConnectionGuard (counters), once started

    def request_stop(self) -> None:
        self._stop.set()

    async def start(self) -> None:
        from api.app import create_app
        from vms.http_server import uvicorn_config

        s = self.services.settings.server
        self._http_socket = bind_http_socket(s.host, s.port)
        for factory in self._factories:
            name = getattr(factory, "__name__", repr(factory))
            try:
                component = factory(self.services)
                if component is None:
                    continue
                name = component.name
                await component.start()
            except Exception as exc:
                raise StartupError(f"{name} could not start: {_one_line(exc)}") from exc
            self.components.append(component)
            log.info("component started", component=component.name)
        config = uvicorn_config(create_app(self.services), s)
        self.http_guard = config.guard  # type: ignore[attr-defined]
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._server_task = asyncio.create_task(
            self._server.serve(sockets=[self._http_socket]), name="http"
        )
        while not self._server.started:
            if self._server_task.done():
                self._server_task.result()
                raise StartupError(f"HTTP server could not listen on {s.host}:{s.port}")
            await asyncio.sleep(0.02)
        port = self._http_socket.getsockname()[1]
        scheme = "https" if s.tls_cert_file else "http"
        log.info("http listening", url=f"{scheme}://{s.host}:{port}")
        # What start-up made (modules, routes, schemas, models) lives as long as the process:
        # out of the collector's sight, a full collection walks only what came since, and
        # stops the loop (SIP, RTP, /healthz) for milliseconds instead of hundreds of them.
        gc.collect()
        gc.freeze()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(self._server_task, 10)
            except (TimeoutError, Exception) as exc:  # noqa: BLE001
                log.warning("http stop", error=repr(exc))
        for component in reversed(self.components):
            try:
                await asyncio.wait_for(component.stop(), 15)
                log.info("component stopped", component=component.name)
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                log.error("component stop failed", component=component.name, error=repr(exc))
        self.components.clear()
        if self._http_socket is not None:
            self._http_socket.close()
            self._http_socket = None
        self.services.db.close()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            await self._stop.wait()
            log.info("stopping")
        finally:
            await self.stop()
