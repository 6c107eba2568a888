"""Benchmark: junk REGISTERs at a fixed rate against the whole node while NVRs keep alive.

Issue 17's bounded load test on loopback: the node (``vms serve``'s ``Application``: SIP,
media hub, HTTP API on uvloop, SQLite) runs in its own process so its CPU time is measurable;
100 simulated NVRs (a fifth over TCP) register with their own passwords and keep alive every
second from this process; sender processes (``tests/flood_attacker.py --rate``) send junk
REGISTERs (random unknown ids, half with a junk ``Authorization``), built before the flood,
at a fixed rate whatever the node answers.  Throughout, ``/healthz`` is asked every 100 ms and
one more NVR sends a keepalive every 100 ms.  The reference is the same figures with no flood,
measured first in the same run, so the ratio is the flood's cost.

    .venv/bin/python bench/sip_flood.py                  # 5,000/s for 30 s, 100 NVRs
    .venv/bin/python bench/sip_flood.py --rate 5000 --duration 30 --nvrs 100 --senders 1
    .venv/bin/python bench/sip_flood.py --quick          # 5 s of flood

Bounded: every child is killed and the run ends within duration + reference + 25 s, even on
failure; traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from simdevice.nvr import NvrConfig, SimulatedNvr  # noqa: E402

GLOBAL_PASSWORD = (
    "bench-flood-global-1"  # set, so the auto-create path is live: junk never verifies
)
PROBE_EVERY_S = 0.1
LEAD_S = 3.0  # sender processes start, build their datagrams, then all begin together
SETTLE_S = 3.0  # after a window: keepalives sent in it are answered or given up
SLACK_S = 25.0  # start-up, lead, settle and shut-down, within the hard limit


def device_id(n: int) -> str:
    return f"3402000000118{n:07d}"


# --- the node, in its own process ------------------------------------------------------


def serve(data_dir: Path) -> None:
    """The node with the seeded NVRs; answers ``mark`` / ``report`` lines on stdin with JSON."""
    from sqlalchemy import func, select

    from storage.models import Device, DeviceEvent
    from tests.test_flood_api import NodeThread, configure
    from vms.app import open_services
    from vms.config import load_settings
    from vms.logging import setup_logging

    setup_logging("info")  # as `vms serve` logs (stderr, kept in a file by the parent)
    settings = load_settings(
        server={"data_dir": data_dir, "host": "127.0.0.1", "port": 0},
        sip={"host": "127.0.0.1", "port": 0, "password": GLOBAL_PASSWORD},
        auth={"jwt_secret": secrets.token_hex(24)},
    )
    services = open_services(settings)
    configure(services)  # the API flood test's node: no recording, analyzers, live, ingest
    passwords: dict[str, str] = json.loads((data_dir / "devices.json").read_text())
    with services.db.session() as s:
        s.add_all(Device(device_id=d, sip_password=p) for d, p in passwords.items())
    node = NodeThread(services)
    node.start()
    sip, loop = services.sip, node.loop
    assert sip is not None and loop is not None
    watched = [d for d in passwords if d != max(passwords)]  # the probe NVR is not counted
    online_min = [len(watched)]

    def online() -> int:
        regs = sip.registrations
        return sum(1 for d in watched if (r := regs.get(d)) and r.online)

    async def watch() -> None:
        while True:
            online_min[0] = min(online_min[0], online())
            await asyncio.sleep(0.2)

    async def on_loop(cmd: str) -> dict[str, Any]:
        if cmd == "start":
            asyncio.get_running_loop().create_task(watch())
        if cmd in ("start", "mark"):
            online_min[0] = online()
        return {"online": online(), "online_min": online_min[0], "stats": sip.stats}

    def rows() -> dict[str, int]:
        with services.db.session() as s:
            offline = select(func.count()).where(DeviceEvent.kind == "offline")
            return {
                "devices": s.scalar(select(func.count()).select_from(Device)) or 0,
                "offline_events": s.scalar(offline.select_from(DeviceEvent)) or 0,
            }

    hello = {"sip_port": sip.port, "http_port": node.http_port}
    c = sip.config
    hello |= {"server_id": c.server_id, "domain": c.domain}
    hello |= {"offline_after_s": c.keepalive_interval_s * c.keepalive_misses}
    print(json.dumps(hello))
    sys.stdout.flush()
    try:
        for line in sys.stdin:  # until the parent closes our stdin
            reply = asyncio.run_coroutine_threadsafe(on_loop(line.strip()), loop).result(10)
            print(json.dumps(reply | rows()), flush=True)
    finally:
        node.stop()


# --- the measuring side ------------------------------------------------------------


@dataclass
class Samples:
    """Probe results as (monotonic start, latency s, status): a window picks its own."""

    health: list[tuple[float, float, int]] = field(default_factory=list)
    keepalive: list[tuple[float, float, int]] = field(default_factory=list)

    def between(self, which: str, t0: float, t1: float) -> list[tuple[float, int]]:
        return [(lat, st) for t, lat, st in getattr(self, which) if t0 <= t < t1]


async def probe_health(url: str, stop: asyncio.Event, out: list) -> None:
    async with httpx.AsyncClient(timeout=2.0) as client:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                status = (await client.get(url)).status_code
            except httpx.HTTPError:
                status = 0
            out.append((t0, time.monotonic() - t0, status))
            await asyncio.sleep(PROBE_EVERY_S)


async def probe_keepalive(nvr: SimulatedNvr, stop: asyncio.Event, out: list) -> None:
    while not stop.is_set():
        t0 = time.monotonic()
        status = await nvr.keepalive()  # None: no answer within the MESSAGE timeout
        out.append((t0, time.monotonic() - t0, status or 0))
        await asyncio.sleep(PROBE_EVERY_S)


class Node:
    """The node's process: its ports, its control lines, its CPU time."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc, self.log = proc, log
        self.ps = psutil.Process(proc.pid)

    @classmethod
    async def start(cls, data_dir: Path) -> tuple[Node, dict[str, Any]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VMS_")}
        env |= {"VMS_CONFIG": str(data_dir / "absent.toml"), "PYTHONPATH": str(ROOT)}
        log = data_dir / "node.log"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--serve",
            str(data_dir),
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log.open("wb"),
        )
        node = cls(proc, log)
        line = await asyncio.wait_for(proc.stdout.readline(), 60)  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"node did not start:\n{node.log_tail()}")
        return node, json.loads(line)

    async def ask(self, cmd: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd.encode() + b"\n")
        await self.proc.stdin.drain()
        return json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 15))

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped at the node's SIP socket (its receive buffer was full)."""
    want = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[1] == want:
            return int(cols[-1])
    return 0


async def senders(port: int, rate: float, seconds: float, count: int, start_at: float) -> dict:
    """``count`` sender processes, ``rate / count`` each, all starting at ``start_at``."""

    async def one() -> dict:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.flood_attacker",
            "--port",
            str(port),
            "--rate",
            str(rate / count),
            "--seconds",
            str(seconds),
            "--sockets",
            "1",
            "--tcp",
            "0",
            "--start-at",
            str(start_at),
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), LEAD_S + seconds + 15)
        finally:
            if proc.returncode is None:
                proc.kill()
        if proc.returncode != 0:
            raise RuntimeError(f"sender failed: {err.decode()[-2000:]}")
        return json.loads(out.decode().strip().splitlines()[-1])

    results = await asyncio.gather(*(one() for _ in range(count)))
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in r["register_statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    return {
        "sent": sum(r["register_sent"] for r in results),
        "answered": sum(r["register_answered"] for r in results),
        "statuses": statuses,
        "send_s": max(r["send_s"] for r in results),
        "late_s": max(r["late_s"] for r in results),
        "behind_max": sum(r["behind_max"] for r in results),
        "cpu_s": sum(r["cpu_s"] for r in results),
    }


@dataclass
class Window:
    name: str
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    bench_cpu_s: float = 0.0  # this process: the NVRs and the probes
    report: dict[str, Any] = field(default_factory=dict)
    before: dict[str, Any] = field(default_factory=dict)
    flood: dict[str, Any] | None = None
    drops: int = 0
    keepalives_sent: int = 0
    keepalive_failures: int = 0
    losses: int = 0
    per_nvr_min: int = 0
    health: list[tuple[float, int]] = field(default_factory=list)
    probe: list[tuple[float, int]] = field(default_factory=list)


async def measure(
    name: str,
    seconds: float,
    node: Node,
    ports: dict[str, Any],
    nvrs: list[SimulatedNvr],
    samples: Samples,
    flood: tuple[float, int] | None = None,
) -> Window:
    """One window: with ``flood`` (rate, sender processes) the senders run through it."""
    w = Window(name)
    task = None
    if flood is not None:
        start_at = time.time() + LEAD_S
        rate, count = flood
        task = asyncio.create_task(senders(ports["sip_port"], rate, seconds, count, start_at))
        await asyncio.sleep(max(0.0, start_at - time.time()))
    me = psutil.Process()
    w.before = await node.ask("mark")
    sent0 = [n.state.keepalives_sent for n in nvrs]
    fail0 = sum(n.state.keepalive_failures for n in nvrs)
    loss0 = sum(n.state.losses for n in nvrs)
    drops0, cpu0, mine0 = udp_drops(ports["sip_port"]), node.cpu_s(), sum(me.cpu_times()[:2])
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    t1 = time.monotonic()
    w.seconds = t1 - t0
    w.server_cpu_s = node.cpu_s() - cpu0
    w.bench_cpu_s = sum(me.cpu_times()[:2]) - mine0
    w.drops = udp_drops(ports["sip_port"]) - drops0
    w.report = await node.ask("report")
    w.per_nvr_min = min(n.state.keepalives_sent - s for n, s in zip(nvrs, sent0, strict=True))
    w.keepalives_sent = sum(n.state.keepalives_sent for n in nvrs) - sum(sent0)
    if task is not None:
        w.flood = await task
    # keepalives of the window: answered, or failed by now
    await asyncio.sleep(max(0.0, t1 + SETTLE_S - time.monotonic()))
    w.keepalive_failures = sum(n.state.keepalive_failures for n in nvrs) - fail0
    w.losses = sum(n.state.losses for n in nvrs) - loss0
    w.health = samples.between("health", t0, t1)
    w.probe = samples.between("keepalive", t0, t1)
    return w


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def ms(values: list[tuple[float, int]]) -> list[float]:
    return [lat * 1000 for lat, _ in values]


def report(args: argparse.Namespace, ref: Window, fl: Window, seeded: int) -> bool:
    nvrs = args.nvrs
    f = fl.flood or {}
    rows = {w.name: w.report["devices"] - seeded for w in (ref, fl)}
    offline = {w.name: w.report["offline_events"] - w.before["offline_events"] for w in (ref, fl)}
    stats = fl.report["stats"]

    def line(label: str, a: str, b: str) -> None:
        print(f"{label:<34} {a:>24} {b:>32}")

    def lat(w: Window, which: str) -> str:
        v = ms(w.health if which == "health" else w.probe)
        if which == "health":
            return f"{statistics.median(v):.0f}/{pct(v, 0.95):.0f}/{pct(v, 0.99):.0f}/{max(v):.0f}"
        return f"{statistics.median(v):.1f}/{pct(v, 0.99):.1f}/{max(v):.0f}"

    send_rate = f["sent"] / f["send_s"] if f.get("send_s") else 0.0
    answer_rate = f["answered"] / f["send_s"] if f.get("send_s") else 0.0
    cpu = {w.name: w.server_cpu_s / w.seconds * 100 for w in (ref, fl)}
    junk_cpu = fl.server_cpu_s - ref.server_cpu_s / ref.seconds * fl.seconds
    print()
    line("", f"reference (no flood, {ref.seconds:.0f} s)", f"flood ({fl.seconds:.0f} s)")
    line("junk REGISTERs sent", "-", f"{f['sent']} ({send_rate:.0f}/s, target {args.rate:.0f})")
    line(
        "junk REGISTERs answered",
        "-",
        f"{f['answered']} ({answer_rate:.0f}/s, {f['answered'] / max(1, f['sent']):.0%})",
    )
    line("  answers", "-", " ".join(f"{k}:{v}" for k, v in sorted(f["statuses"].items())))
    line("  dropped at the node's UDP socket", str(ref.drops), str(fl.drops))
    line("server CPU (% of one core)", f"{cpu[ref.name]:.1f}", f"{cpu[fl.name]:.1f}")
    line(
        "  per junk REGISTER answered",
        "-",
        f"{junk_cpu / max(1, f['answered']) * 1e6:.0f} us (over the reference)",
    )
    line(
        "load generators' CPU (% of a core)",
        f"{ref.bench_cpu_s / ref.seconds * 100:.0f} (NVRs+probes)",
        f"{fl.bench_cpu_s / fl.seconds * 100:.0f} + senders {f['cpu_s']:.1f} CPU-s",
    )
    line(
        "NVRs online throughout (min)",
        f"{ref.report['online_min']}/{nvrs}",
        f"{fl.report['online_min']}/{nvrs}",
    )
    line(
        "keepalives sent (min per NVR)",
        f"{ref.keepalives_sent} ({ref.per_nvr_min})",
        f"{fl.keepalives_sent} ({fl.per_nvr_min})",
    )
    line(
        "missed keepalives / re-registers",
        f"{ref.keepalive_failures} / {ref.losses}",
        f"{fl.keepalive_failures} / {fl.losses}",
    )
    line("offline events", str(offline[ref.name]), str(offline[fl.name]))
    line("rows created by junk", str(rows[ref.name]), str(rows[fl.name]))
    line("/healthz p50/p95/p99/max ms", lat(ref, "health"), lat(fl, "health"))
    bad = {w.name: sum(1 for _, s in w.health if s != 200) for w in (ref, fl)}
    line("/healthz not 200", str(bad[ref.name]), f"{bad[fl.name]} of {len(fl.health)}")
    line("probe keepalive p50/p99/max ms", lat(ref, "keepalive"), lat(fl, "keepalive"))
    line("sender late / most behind", "-", f"{f['late_s']:.2f} s / {f['behind_max']} datagrams")
    print(
        f"node counters in the flood: challenged {stats['challenged']}, "
        f"auth_stale {stats['auth_stale']}, auth_failed {stats['auth_failed']}, "
        f"unknown_device {stats['unknown_device']}, unstored {stats['unstored']}"
    )
    h_ref, h_fl = ms(ref.health), ms(fl.health)
    k_ref, k_fl = ms(ref.probe), ms(fl.probe)
    print(
        f"ratio flood / reference: server CPU {cpu[fl.name] / max(cpu[ref.name], 0.1):.1f}x, "
        f"/healthz p95 {pct(h_fl, 0.95) / pct(h_ref, 0.95):.1f}x, "
        f"probe keepalive p50 {statistics.median(k_fl) / statistics.median(k_ref):.1f}x, "
        f"p99 {pct(k_fl, 0.99) / pct(k_ref, 0.99):.1f}x"
    )
    checks = {
        f"rate >= 95% of {args.rate:.0f}/s": send_rate >= 0.95 * args.rate,
        f"{nvrs} NVRs online throughout": fl.report["online_min"] == nvrs,
        "no keepalive missed": fl.keepalive_failures == 0 and fl.losses == 0,
        "no row from junk": rows[fl.name] == 0,
        "/healthz all 200, p95 < 200 ms": bad[fl.name] == 0 and pct(h_fl, 0.95) < 200,
    }
    failed = [k for k, ok in checks.items() if not ok]
    print(f"\nresult: {'PASS' if not failed else 'FAIL: ' + '; '.join(failed)}")
    return not failed


async def run(args: argparse.Namespace) -> int:
    tcp_nvrs = args.nvrs // 5
    print(
        f"SIP flood benchmark: the node (SIP + HTTP, uvloop, own process, SQLite), {args.nvrs} "
        f"simulated NVRs ({args.nvrs - tcp_nvrs} UDP, {tcp_nvrs} TCP) keeping alive every 1 s; "
        f"junk REGISTERs at {args.rate:.0f}/s for {args.duration:.0f} s from {args.senders} "
        f"sender process(es); /healthz and a probe NVR's keepalive every "
        f"{PROBE_EVERY_S * 1000:.0f} ms; {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory(prefix="sip-flood-") as tmp:
        data_dir = Path(tmp)
        passwords = {device_id(n): secrets.token_urlsafe(9) for n in range(1, args.nvrs + 2)}
        (data_dir / "devices.json").write_text(json.dumps(passwords))
        node, ports = await Node.start(data_dir)
        print(
            f"the node marks a device offline after {ports['offline_after_s']:.0f} s without a "
            f"keepalive (as the flood tests; by default 180 s)"
        )
        nvrs: list[SimulatedNvr] = []
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            await node.ask("start")
            seeded = len(passwords)
            configs = [
                NvrConfig(
                    device_id=dev,
                    server_id=ports["server_id"],
                    server_domain=ports["domain"],
                    server_host="127.0.0.1",
                    server_port=ports["sip_port"],
                    password=pw,
                    transport="tcp" if i < tcp_nvrs else "udp",
                    channels=1,
                    keepalive_interval_s=1.0,
                )
                for i, (dev, pw) in enumerate(passwords.items())
            ]
            nvrs = [SimulatedNvr(c) for c in configs[:-1]]
            probe = SimulatedNvr(configs[-1])
            await asyncio.gather(*(n.start(wait=True, timeout=30) for n in [*nvrs, probe]))
            probe.keepalive_enabled = False  # the bench drives its keepalives
            url = f"http://127.0.0.1:{ports['http_port']}/healthz"
            async with httpx.AsyncClient(timeout=10) as warm:  # the first check opens threads
                assert (await warm.get(url)).status_code == 200
            samples = Samples()
            tasks = [
                asyncio.create_task(probe_health(url, stop, samples.health)),
                asyncio.create_task(probe_keepalive(probe, stop, samples.keepalive)),
            ]
            await asyncio.sleep(1.0)  # every NVR has kept alive once since registering
            ref = await measure("reference", args.reference, node, ports, nvrs, samples)
            fl = await measure(
                "flood", args.duration, node, ports, nvrs, samples, (args.rate, args.senders)
            )
        except BaseException:
            print(f"node log (tail):\n{node.log_tail()}", file=sys.stderr)
            raise
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(n.stop() for n in nvrs), return_exceptions=True)
            await node.stop()
    return 0 if report(args, ref, fl, seeded) else 1


def hard_limit(seconds: float) -> None:
    """Whatever happens, this process and its children end after ``seconds``."""

    def kill() -> None:
        print(f"bench/sip_flood.py: over its {seconds:.0f} s limit, killed", file=sys.stderr)
        for child in psutil.Process().children(recursive=True):
            child.kill()
        os._exit(2)

    timer = threading.Timer(seconds, kill)
    timer.daemon = True
    timer.start()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000, help="junk REGISTERs per second")
    parser.add_argument("--duration", type=float, default=30, help="seconds of flood")
    parser.add_argument("--nvrs", type=int, default=100, help="simulated NVRs keeping alive")
    parser.add_argument("--senders", type=int, default=1, help="sender processes")
    parser.add_argument("--reference", type=float, default=5, help="seconds with no flood")
    parser.add_argument("--quick", action="store_true", help="5 s of flood, 3 s of reference")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        sys.exit(0)
    if args.quick:
        args.duration, args.reference = 5.0, 3.0
    hard_limit(args.duration + args.reference + SLACK_S)
    from vms import runtime
    from vms.logging import setup_logging

    setup_logging("warning")  # the simulated NVRs' info lines would drown the figures

    sys.exit(runtime.run(run(args)))
