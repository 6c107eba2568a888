"""The API part of issue 19's bounded flood on loopback: the whole node (``Application``: SIP,
media hub, HTTP) in its own thread, 100 simulated NVRs keeping alive every second, and an
attacker process holding 200 requests in flight from one enterprise user, 300 idle
connections and 20 slowloris ones.  Throughout, ``/healthz`` answers, another enterprise's
user is served, every NVR stays online, and the flood gets 429s — never a 500."""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from simdevice.nvr import NvrConfig, SimulatedNvr
from storage.models import Device, Organisation, OrgKind
from vms import runtime
from vms.app import Application
from vms.services import Services

from .api_limits_support import seed_users

ROOT = Path(__file__).resolve().parents[1]
NVRS = 100
FLOOD_S = 6.0
CONCURRENCY = 200


class NodeThread:
    """``vms serve`` in a thread with its own event loop, as in production one process."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.app: Application | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="flood-node", daemon=True)

    def _run(self) -> None:
        try:
            runtime.run(self._main())  # uvloop, as `vms serve` runs
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.app = Application(self.services)
        await self.app.start()
        try:
            self.ready.set()
            await self._stop.wait()
        finally:
            await self.app.stop()

    def start(self) -> None:
        self._thread.start()
        if not self.ready.wait(60) or self.error is not None:
            raise RuntimeError(f"node did not start: {self.error!r}")

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    @property
    def http_port(self) -> int:
        assert self.app is not None and self.app._server is not None
        return int(self.app._server.servers[0].sockets[0].getsockname()[1])


def configure(services: Services) -> None:
    s = services.settings
    s.server.host, s.server.port = "127.0.0.1", 0
    s.server.header_timeout_s = 2.0  # idle and slowloris connections end within the flood
    s.analyzers.enabled = s.recording.enabled = s.live.enabled = False
    s.ingest.enabled = False
    s.sip.keepalive_interval_s, s.sip.keepalive_misses = 2.0, 3  # offline after 6 s silent
    s.sip.catalog_on_register = False


def seed_devices(services: Services) -> dict[str, str]:
    """100 NVRs, each with its own password, half in each enterprise (the API lists them)."""
    passwords = {f"3402000000118{n:07d}": secrets.token_urlsafe(9) for n in range(1, NVRS + 1)}
    with services.db.session() as s:
        orgs = list(
            s.scalars(select(Organisation.id).where(Organisation.kind == OrgKind.enterprise))
        )
        s.add_all(
            Device(device_id=d, sip_password=p, org_id=orgs[i % len(orgs)], name=f"NVR {i}")
            for i, (d, p) in enumerate(passwords.items())
        )
    return passwords


async def attacker(port: int, token: str) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.api_flood_attacker",
        "--port",
        str(port),
        "--token",
        token,
        "--seconds",
        str(FLOOD_S),
        "--concurrency",
        str(CONCURRENCY),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), FLOOD_S + 90)
    assert proc.returncode == 0, err.decode()[-2000:]
    return json.loads(out.decode().strip().splitlines()[-1])


async def probe(url: str, stop: asyncio.Event, headers: dict[str, str], out: list) -> None:
    """One request every 50 ms: (latency s, status); a request that times out is status 0."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                status = (await client.get(url, headers=headers)).status_code
            except httpx.HTTPError:
                status = 0
            out.append((time.perf_counter() - t0, status))
            await asyncio.sleep(0.05)


async def test_api_flood_from_one_user_starves_nobody(services: Services) -> None:
    configure(services)
    tokens = seed_users(services, services.settings.auth.jwt_secret)
    passwords = seed_devices(services)
    node = NodeThread(services)
    node.start()
    nvrs: list[SimulatedNvr] = []
    try:
        sip = services.sip
        assert sip is not None
        nvrs = [
            SimulatedNvr(
                NvrConfig(
                    device_id=dev,
                    server_id=services.settings.sip.server_id,
                    server_domain=services.settings.sip.domain,
                    server_host="127.0.0.1",
                    server_port=sip.port,
                    password=pw,
                    channels=1,
                    keepalive_interval_s=1.0,
                )
            )
            for dev, pw in passwords.items()
        ]
        await asyncio.gather(*(n.start(wait=True, timeout=30) for n in nvrs))
        base = f"http://127.0.0.1:{node.http_port}"
        async with httpx.AsyncClient(timeout=10) as warm:  # the first check opens its threads
            assert (await warm.get(f"{base}/healthz")).status_code == 200
        stop = asyncio.Event()
        health: list[tuple[float, int]] = []
        other: list[tuple[float, int]] = []
        online_min = [NVRS]

        async def watch() -> None:
            while not stop.is_set():
                regs = sip.registrations
                up = sum(1 for n in nvrs if (r := regs.get(n.config.device_id)) and r.online)
                online_min[0] = min(online_min[0], up)
                await asyncio.sleep(0.2)

        before = [n.state.keepalives_sent for n in nvrs]
        tasks = [
            asyncio.create_task(probe(f"{base}/healthz", stop, {}, health)),
            asyncio.create_task(
                probe(
                    f"{base}/api/devices",
                    stop,
                    {"Authorization": f"Bearer {tokens['ent_b']}"},
                    other,
                )
            ),
            asyncio.create_task(watch()),
        ]
        try:
            flood = await attacker(node.http_port, tokens["ent_a"])
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        # the flood: refused with 429 (its own limit), never a 5xx or a dropped connection
        statuses = flood["statuses"]
        assert set(statuses) <= {"200", "429"}, statuses
        assert statuses.get("429", 0) > 0 and statuses.get("200", 0) > 0
        assert flood["idle_closed"] == flood["idle_opened"] == 300
        assert set(flood["slowloris"]) <= {"408", "closed"}
        # everybody else: served throughout
        assert health and all(status == 200 for _, status in health)
        assert other and all(status == 200 for _, status in other)
        assert online_min[0] == NVRS
        assert [n.state.keepalive_failures for n in nvrs] == [0] * NVRS
        assert [n.state.losses for n in nvrs] == [0] * NVRS
        sent = [n.state.keepalives_sent - b for n, b in zip(nvrs, before, strict=True)]
        assert min(sent) >= FLOOD_S * 0.5
        lat = sorted(t * 1000 for t, _ in health)
        p50 = statistics.median(lat)
        p95 = lat[int(len(lat) * 0.95)]
        p99 = lat[int(len(lat) * 0.99)]
        # served, not starved: the attacker shares this machine's cores (and CI's runs share
        # them with more), so the bound is a generous one on the 95th percentile; latency
        # goals are the benchmarks' business (bench/sip_flood.py: p95 < 200 ms)
        assert p95 < 1000, f"/healthz p95 {p95:.0f} ms under the flood (p50 {p50:.0f} ms)"
        print(
            f"\napi flood: {flood['requests']} requests in {flood['seconds']} s from one user "
            f"({CONCURRENCY} in flight): {statuses}; idle {flood['idle_opened']} closed "
            f"{flood['idle_closed']}; slowloris {flood['slowloris']}; /healthz p50 {p50:.0f} "
            f"ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms, max {lat[-1]:.0f} ms over {len(lat)}; "
            f"other user {len(other)} × 200, max {max(t for t, _ in other) * 1000:.0f} ms; "
            f"{NVRS} NVRs online throughout"
        )
    finally:
        await asyncio.gather(*(n.stop() for n in nvrs), return_exceptions=True)
        node.stop()
