"""A bounded flood on loopback (issue 19): while an attacker process sends junk REGISTERs as
fast as the platform answers, guesses the passwords of real NVRs and holds idle TCP
connections open, 100 simulated NVRs (80 over UDP, 20 over TCP) keep their keepalives —
none goes offline, none loses its registration or its TCP connection, no junk creates a
row, and a probe NVR's keepalive round trip stays short."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from simdevice.nvr import SimulatedNvr
from sip.server import SipServer
from storage.models import Device, DeviceEvent
from vms.services import Services
from vms.sip_store import DbDeviceStore

from .sip_support import nvr_config, nvr_id, server_config, wait_until

ROOT = Path(__file__).resolve().parents[1]
NVRS, TCP_NVRS = 100, 20
FLOOD_S = 6.0
TCP_CAP = 150
RATE, RATE_S = 5000.0, 5.0  # issue 17's offered load, for a short while


@dataclass
class FloodNode:
    services: Services
    server: SipServer
    nvrs: list[SimulatedNvr]
    passwords: dict[str, str]
    online_min: list[int] = field(default_factory=lambda: [NVRS])


@asynccontextmanager
async def flood_node(services: Services) -> AsyncIterator[FloodNode]:
    """The SIP service on the real database with 100 registered NVRs keeping alive each 1 s."""
    passwords = {nvr_id(n): secrets.token_urlsafe(9) for n in range(1, NVRS + 2)}
    with services.db.session() as s:
        s.add_all(Device(device_id=d, sip_password=p) for d, p in passwords.items())
    config = server_config(
        password="global-flood-1",  # unknown ids with it would become pending: the junk has not
        keepalive_interval_s=2.0,
        keepalive_misses=3,  # offline after 6 s of silence
        tcp_idle_s=1.0,
        max_tcp_connections=TCP_CAP,
    )
    server = SipServer(config, DbDeviceStore(services))
    await server.start()
    nvrs = [
        SimulatedNvr(
            nvr_config(
                server,
                n=n,
                password=passwords[nvr_id(n)],
                transport="tcp" if n <= TCP_NVRS else "udp",
                keepalive_interval_s=1.0,
                channels=1,
            )
        )
        for n in range(1, NVRS + 1)
    ]
    try:
        await asyncio.gather(*(nvr.start(wait=True, timeout=30) for nvr in nvrs))
        yield FloodNode(services, server, nvrs, passwords)
    finally:
        await asyncio.gather(*(nvr.stop() for nvr in nvrs), return_exceptions=True)
        await server.close()


async def _attacker(
    port: int, guess_ids: list[str], seconds: float = FLOOD_S, tcp: int = 300, rate: float = 0
) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.flood_attacker",
        "--port",
        str(port),
        "--seconds",
        str(seconds),
        "--tcp",
        str(tcp),
        "--guess-ids",
        ",".join(guess_ids),
        "--rate",
        str(rate),
        "--sockets",
        "1" if rate else "2",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), seconds + 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return json.loads(out.decode().strip().splitlines()[-1])


async def _watch(node: FloodNode, stop: asyncio.Event) -> None:
    while not stop.is_set():
        regs = node.server.registrations
        online = sum(1 for n in node.nvrs if (r := regs.get(n.config.device_id)) and r.online)
        node.online_min[0] = min(node.online_min[0], online)
        await asyncio.sleep(0.2)


async def _probe(nvr: SimulatedNvr, stop: asyncio.Event, latencies: list[float]) -> None:
    """One more NVR's keepalive round trips, every 0.1 s through the flood."""
    while not stop.is_set():
        t0 = time.perf_counter()
        assert await nvr.keepalive() == 200
        latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(0.1)


async def test_nvrs_keep_alive_through_a_register_and_tcp_flood(services: Services) -> None:
    async with flood_node(services) as node:
        server = node.server
        tcp_conns = {
            n.config.device_id: server.registrations[n.config.device_id].peer.conn
            for n in node.nvrs[:TCP_NVRS]
        }
        before = {n.config.device_id: n.state.keepalives_sent for n in node.nvrs}
        probe_id = nvr_id(NVRS + 1)
        probe = SimulatedNvr(nvr_config(server, n=NVRS + 1, password=node.passwords[probe_id]))
        await probe.start(wait=True)
        probe.keepalive_enabled = False  # the test drives its keepalives
        stop, latencies = asyncio.Event(), []
        watchers = [
            asyncio.create_task(_watch(node, stop)),
            asyncio.create_task(_probe(probe, stop, latencies)),
        ]
        try:
            # guesses against real NVRs: their ids get locked out, the NVRs themselves do not
            flood = await _attacker(server.port, [nvr_id(n) for n in (1, 25, 50)])
        finally:
            stop.set()
            await asyncio.gather(*watchers)
            await probe.stop(unregister=False)
        # the NVRs: all stayed online, none lost its registration or missed a keepalive
        assert node.online_min[0] == NVRS
        assert [n.state.losses for n in node.nvrs] == [0] * NVRS
        assert [n.state.keepalive_failures for n in node.nvrs] == [0] * NVRS
        sent = [n.state.keepalives_sent - before[n.config.device_id] for n in node.nvrs]
        assert min(sent) >= FLOOD_S * 0.5  # ≈ one a second each, through the flood
        for dev, conn in tcp_conns.items():
            assert server.registrations[dev].peer.conn is conn and conn.is_open
        # the junk: challenged or refused, never a row, never an offline event
        statuses = flood["register_statuses"]
        assert flood["register_sent"] >= 1000 and set(statuses) <= {"401", "0"}
        assert statuses.get("401", 0) >= 0.95 * flood["register_sent"]
        assert set(flood["guess_statuses"]) == {"403"}
        assert server.stats["auth_locked"] >= 3 and server.registrar.auth.lockout.lockouts == 3
        with services.db.session() as s:
            assert s.scalar(select(func.count()).select_from(Device)) == NVRS + 1
            offline = (
                select(func.count()).select_from(DeviceEvent).where(DeviceEvent.kind == "offline")
            )
            assert s.scalar(offline) == 0
        # the idle TCP connections: all closed by the platform, never more than the cap
        assert flood["tcp_closed"] == flood["tcp_opened"] >= 250
        await wait_until(lambda: server.stats["tcp_open"] <= TCP_NVRS, 5, "idle TCP closed")
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99)] * 1000
        rate = flood["register_sent"] / flood["seconds"]
        stats = server.stats
        print(
            f"\nflood: {flood['register_sent']} junk REGISTERs in {flood['seconds']} s "
            f"({rate:.0f}/s), {flood['tcp_opened']} idle TCP (evicted {stats['tcp_evicted']}, "
            f"idle-closed {stats['tcp_idle_closed']}); {NVRS} NVRs online throughout; probe "
            f"keepalive p99 {p99:.0f} ms, max {latencies[-1] * 1000:.0f} ms over {len(latencies)}"
        )


async def test_nvrs_keep_alive_through_a_fixed_rate_flood_past_capacity(services: Services) -> None:
    """5,000 junk REGISTERs/s (issue 17's load; ``bench/sip_flood.py`` runs it for 30 s), more
    than one core answers on a small machine: the UDP socket overflows and NVRs' keepalives
    are dropped with the junk, yet their retransmissions get through — none goes offline or
    re-registers, and no junk makes a row."""
    async with flood_node(services) as node:
        server = node.server
        probe_id = nvr_id(NVRS + 1)
        probe = SimulatedNvr(nvr_config(server, n=NVRS + 1, password=node.passwords[probe_id]))
        await probe.start(wait=True)
        probe.keepalive_enabled = False
        stop, latencies = asyncio.Event(), []
        watchers = [
            asyncio.create_task(_watch(node, stop)),
            asyncio.create_task(_probe(probe, stop, latencies)),
        ]
        try:
            flood = await _attacker(server.port, [], seconds=RATE_S, tcp=0, rate=RATE)
        finally:
            stop.set()
            await asyncio.gather(*watchers)
            await probe.stop(unregister=False)
        assert flood["register_sent"] >= 0.9 * RATE * RATE_S, flood  # the load was offered
        assert set(flood["register_statuses"]) <= {"401"} and flood["register_answered"] > 0
        assert node.online_min[0] == NVRS
        assert [n.state.losses for n in node.nvrs] == [0] * NVRS
        assert [n.state.keepalive_failures for n in node.nvrs] == [0] * NVRS
        with services.db.session() as s:
            assert s.scalar(select(func.count()).select_from(Device)) == NVRS + 1
        latencies.sort()
        print(
            f"\nfixed-rate flood: {flood['register_sent']} junk REGISTERs in {flood['send_s']} s "
            f"({flood['register_sent'] / flood['send_s']:.0f}/s), answered "
            f"{flood['register_answered']}; {NVRS} NVRs online throughout; probe keepalive "
            f"p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
        )
