"""SIP over TCP under attack (issue 19): idle connections, a slow trickle that never completes
a message, and more connections than the cap — closed or evicted, while a registered NVR's
connection stays and carries its keepalives and the platform's queries."""

from __future__ import annotations

import asyncio
import resource

from sip.transport import FD_SHARE, fd_cap

from .sip_attack import closed_by_peer
from .sip_support import nvr_config, nvr_id, running_nvr, running_server, wait_until


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def test_idle_and_trickling_connections_are_closed_the_registered_one_stays() -> None:
    async with running_server(tcp_idle_s=0.5) as server:
        async with running_nvr(nvr_config(server, transport="tcp")) as nvr:
            conn = server.registrations[nvr_id(1)].peer.conn
            idle = [await _connect(server.port) for _ in range(10)]
            slow_reader, slow = await _connect(server.port)
            trickled = 0
            try:
                for _ in range(40):  # a header section that never ends, a byte at a time
                    if slow_reader.at_eof():
                        break
                    slow.write(b"R")
                    await slow.drain()
                    trickled += 1
                    await asyncio.sleep(0.1)
            except ConnectionError:
                pass
            assert trickled < 40  # closed while it was still trickling
            assert await closed_by_peer(slow_reader, 3)
            assert all([await closed_by_peer(r, 3) for r, _ in idle])
            assert server.stats["tcp_idle_closed"] >= 11
            assert server.registrations[nvr_id(1)].peer.conn is conn and conn.is_open
            assert await nvr.keepalive() == 200
            assert (await server.device_info(nvr_id(1))).channels == 4
            for _, w in [*idle, (slow_reader, slow)]:
                w.close()


async def test_connection_cap_evicts_the_stalest_unregistered_never_the_nvr() -> None:
    async with running_server(tcp_idle_s=30, max_tcp_connections=20) as server:
        async with running_nvr(nvr_config(server, transport="tcp")) as nvr:
            conn = server.registrations[nvr_id(1)].peer.conn
            flood = [await _connect(server.port) for _ in range(60)]
            await wait_until(lambda: server.stats["tcp_evicted"] >= 41, 5, "evictions")
            assert server.stats["tcp_open"] <= 20
            closed = [await closed_by_peer(r, 0.5) for r, _ in flood]
            assert closed[:41] == [True] * 41  # the oldest went first
            assert not any(closed[-10:])  # the newest are still there
            assert conn.is_open and await nvr.keepalive() == 200
            # a second NVR still gets in (and registers) while the flood holds the cap
            async with running_nvr(nvr_config(server, n=2, transport="tcp")) as other:
                assert await other.keepalive() == 200
            for _, w in flood:
                w.close()


def test_the_connection_cap_stays_well_under_the_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        assert fd_cap(4096) == 1024 // FD_SHARE == 256
        assert fd_cap(100) == 100
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
