"""Issue 19, HTTP edge: each attack against the real listener (guarded uvicorn + the app),
refused, while another user and ``/healthz`` are served as usual."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from storage.db import Database, PoolLimits
from vms.config import ConfigError, load_settings
from vms.services import Services

from .api_limits_support import SlowBody, api_node, closed_by_server, until


async def test_one_user_cannot_take_every_request_slot(services: Services) -> None:
    """The attack: one enterprise user's requests pile up; the next is 429, others are served."""
    async with api_node(
        services, max_requests_per_user=3, max_requests=6, body_timeout_s=2.0
    ) as node:
        slow = [await SlowBody(node.port, node.tokens["ent_a"]).start() for _ in range(3)]
        try:
            await until(lambda: node.limits.in_flight.get(_user_key(node, "ent_a")) == 3)
            async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
                refused = await client.get("/api/devices", headers=node.auth("ent_a"))
                assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
                other = await client.get("/api/devices", headers=node.auth("ent_b"))
                assert other.status_code == 200
                health = await client.get("/healthz")
                assert health.status_code == 200
                # the held bodies never complete: 408 once body_timeout_s is over, slots freed
                assert [await s.status() for s in slow] == [408, 408, 408]
                assert (
                    await client.get("/api/devices", headers=node.auth("ent_a"))
                ).status_code == 200
        finally:
            for s in slow:
                s.close()
        assert node.limits.stats.too_many_per_user == 1 and node.limits.stats.body_timeouts == 3


async def test_the_node_limit_answers_503_and_health_still_answers(services: Services) -> None:
    async with api_node(
        services, max_requests_per_user=2, max_requests=4, body_timeout_s=3.0
    ) as node:
        slow = [
            await SlowBody(node.port, node.tokens[user]).start()
            for user in ("ent_a", "ent_a", "ent_b", "ent_b")
        ]
        try:
            await until(lambda: node.limits.total == 4)
            async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
                busy = await client.get("/api/devices", headers=node.auth("op"))
                assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
                assert (await client.get("/healthz")).status_code == 200
                assert (await client.get("/static/js/api.js")).status_code == 200
        finally:
            for s in slow:
                s.close()
        await until(lambda: node.limits.total == 0)


async def test_bodies_over_the_cap_are_refused_before_they_are_read(services: Services) -> None:
    async with api_node(services, max_body_bytes=4096) as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(
            b"POST /api/devices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + node.tokens["op"].encode() + b"\r\n"
            b"Content-Length: 100000000\r\n\r\n"
        )
        await writer.drain()  # not one body byte sent: the answer comes at once
        line = await asyncio.wait_for(reader.readline(), 5)
        assert line.startswith(b"HTTP/1.1 413")
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(  # no Content-Length: the body is counted as it streams
            b"POST /api/devices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + node.tokens["op"].encode() + b"\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"3e8\r\n" + b"x" * 1000 + b"\r\n"
        )
        for _ in range(10):
            writer.write(b"3e8\r\n" + b"x" * 1000 + b"\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
        assert line.startswith(b"HTTP/1.1 413")
        writer.close()
        async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
            assert (await client.get("/api/devices", headers=node.auth("op"))).status_code == 200
        assert node.limits.stats.body_too_large == 2


async def test_slow_and_silent_clients_are_cut(services: Services) -> None:
    """Slowloris: headers a byte at a time; and a connection that never says anything."""
    async with api_node(services, header_timeout_s=1.0) as node:
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", node.port)
        slow_r, slow_w = await asyncio.open_connection("127.0.0.1", node.port)
        t0 = time.monotonic()
        slow_w.write(b"GET /api/devices HTTP/1.1\r\nHost: x\r\n")

        async def trickle() -> None:
            with_close = False
            for _ in range(40):
                try:
                    slow_w.write(b"X")
                    await slow_w.drain()
                except ConnectionError:
                    with_close = True
                    break
                await asyncio.sleep(0.25)
            assert with_close or slow_w.is_closing()

        trickling = asyncio.create_task(trickle())
        closed, data = await closed_by_server(slow_r, 8)
        assert closed and data.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - t0 < 8  # it was not kept for the 10 s the byte trickle lasts
        await asyncio.gather(trickling, return_exceptions=True)
        closed, data = await closed_by_server(silent_r, 5)
        assert closed and data == b""
        async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
            assert (await client.get("/api/devices", headers=node.auth("op"))).status_code == 200
        assert node.guard.header_timeouts == 2
        silent_w.close()
        slow_w.close()


async def test_an_idle_connection_flood_cannot_lock_users_out(services: Services) -> None:
    """The attack: 1,100 connections that never speak took the API down at 1,024 fds.

    With the cap, the listener never holds more than ``max_connections``: a newcomer evicts
    the longest-idle one, so a user still gets through while the flood goes on."""
    async with api_node(services, max_connections=64, header_timeout_s=30.0) as node:
        idle = []
        for _ in range(300):
            idle.append(await asyncio.open_connection("127.0.0.1", node.port))
        await until(lambda: len(node.guard.open) <= 64, 10, "the cap")
        async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
            for _ in range(5):
                resp = await client.get("/api/devices", headers=node.auth("op"))
                assert resp.status_code == 200
        assert len(node.guard.open) <= 64 and node.guard.evicted >= 300 - 64
        closed = 0
        for reader, writer in idle:
            shut, _ = await closed_by_server(reader, 0.01)
            closed += shut
            writer.close()
        assert closed >= 300 - 64


async def test_oversized_headers_are_431(services: Services) -> None:
    async with api_node(services) as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        with pytest.raises(ConnectionError):
            for _ in range(200):  # 200 KB of headers, the server stops at 64 KB
                writer.write(b"X-Pad: " + b"a" * 1000 + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0)
            raise ConnectionResetError  # the server may also have answered without a reset
        closed, data = await closed_by_server(reader, 5)
        assert closed and (data == b"" or data.startswith(b"HTTP/1.1 431"))
        writer.close()
        assert node.guard.header_too_large == 1


async def test_a_client_that_stops_reading_is_dropped(services: Services) -> None:
    """A client that asks for a large file and reads none of it is dropped after
    ``send_timeout_s`` (its buffers full, the response waited forever before)."""
    async with api_node(services, send_timeout_s=1.0) as node:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", node.port))
        try:
            for _ in range(4):  # four requests pipelined: more than the buffers hold
                await loop.sock_sendall(
                    sock, b"GET /static/vendor/echarts.min.js HTTP/1.1\r\nHost: x\r\n\r\n"
                )
            await until(lambda: node.guard.send_timeouts == 1, 15, "the send timeout")
            await until(lambda: not node.guard.open, 5, "the connection closed")
        finally:
            sock.close()
        async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
            assert (await client.get("/healthz")).status_code == 200


async def test_an_exhausted_pool_is_503_and_health_does_not_wait(
    services: Services, settings
) -> None:
    """Whatever holds the pool (here: the test), requests get 503 after pool_timeout_s, not
    a 500 after 30 s; /healthz answers from a connection of its own."""
    db = Database(settings.database_url, pool=PoolLimits(2, 0, 0.5))
    services.db = db
    try:
        async with api_node(services, max_requests=1, max_requests_per_user=1) as node:
            held = [db.engine.connect() for _ in range(2)]
            try:
                async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
                    t0 = time.monotonic()
                    resp = await client.get("/api/devices", headers=node.auth("op"))
                    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
                    assert time.monotonic() - t0 < 5
                    health = await client.get("/healthz")
                    assert health.status_code == 200
                    assert health.json()["checks"]["database"] == "ok"
            finally:
                for conn in held:
                    conn.close()
            async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
                assert (
                    await client.get("/api/devices", headers=node.auth("op"))
                ).status_code == 200
    finally:
        db.close()


def test_request_limits_must_leave_pool_connections_to_the_components() -> None:
    with pytest.raises(ConfigError, match="server.max_requests .* must be below"):
        load_settings(server={"max_requests": 40}, database={"pool_size": 20, "max_overflow": 20})
    with pytest.raises(ConfigError, match="max_requests_per_user"):
        load_settings(server={"max_requests": 8, "max_requests_per_user": 9})


def _user_key(node, user: str) -> str:
    from api.security import decode_token

    return f"user:{decode_token(node.app.state.jwt_secret, node.tokens[user])['sub']}"
