"""Helpers for the SIP tests: a server on a free port, simulated NVRs, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from simdevice.nvr import NvrConfig, SimulatedNvr
from sip.server import SipServer
from sip.settings import ServerConfig
from sip.store import MemoryDeviceStore

SERVER_ID = "34020000002000000001"
DOMAIN = "3402000000"
PASSWORD = "test-pass-1"


def nvr_id(n: int) -> str:
    return f"3402000000118{n:07d}"


def server_config(**kw: Any) -> ServerConfig:
    base: dict[str, Any] = dict(
        server_id=SERVER_ID,
        domain=DOMAIN,
        port=0,
        password=PASSWORD,
        catalog_on_register=False,
        query_timeout_s=5.0,
        catalog_timeout_s=5.0,
        invite_timeout_s=5.0,
    )
    base.update(kw)
    return ServerConfig(**base)


def nvr_config(server: SipServer, n: int = 1, **kw: Any) -> NvrConfig:
    base: dict[str, Any] = dict(
        device_id=nvr_id(n),
        server_id=server.config.server_id,
        server_domain=server.config.domain,
        server_host="127.0.0.1",
        server_port=server.port,
        password=PASSWORD,
        channels=4,
    )
    base.update(kw)
    return NvrConfig(**base)


@asynccontextmanager
async def running_server(
    store: MemoryDeviceStore | None = None, **kw: Any
) -> AsyncIterator[SipServer]:
    server = SipServer(server_config(**kw), store or MemoryDeviceStore())
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def running_nvr(config: NvrConfig, wait: bool = True) -> AsyncIterator[SimulatedNvr]:
    nvr = SimulatedNvr(config)
    await nvr.start(wait=wait)
    try:
        yield nvr
    finally:
        await nvr.stop()


async def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)
