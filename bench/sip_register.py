"""Benchmark: N GB28181 devices register (digest) and keep alive against one SIP server process.

The server runs in its own process (uvloop, in-memory store) so its CPU time is measurable;
the devices are a light client in this process (one UDP socket per 1,000 devices, a window of
transactions in flight).  The reference is a raw uvloop UDP echo server in another process,
fed the same number of keepalive-sized datagrams the same way.

    .venv/bin/python bench/sip_register.py            # 1,000 and 10,000 devices
    .venv/bin/python bench/sip_register.py --quick    # 200 and 1,000 devices, < 60 s
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sip.auth import authorization_header, parse_digest  # noqa: E402
from sip.message import SipResponse, parse_datagram  # noqa: E402

SERVER_ID = "34020000002000000001"
DOMAIN = "3402000000"
PASSWORD = "bench-password"
KEEPALIVE_EVERY_S = 60.0
DEVICES_PER_SOCKET = 1000


# --- server processes -------------------------------------------------------------


async def serve_sip() -> None:
    from sip.server import SipServer
    from sip.settings import ServerConfig
    from sip.store import MemoryDeviceStore

    server = SipServer(
        ServerConfig(
            server_id=SERVER_ID,
            domain=DOMAIN,
            port=0,
            password=PASSWORD,
            transports=("udp",),
            catalog_on_register=False,
            keepalive_interval_s=KEEPALIVE_EVERY_S,
        ),
        MemoryDeviceStore(),
    )
    await server.start()
    await _report_and_wait(server.port)
    await server.close()


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


async def serve_echo() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Echo, sock=_udp_socket())
    await _report_and_wait(transport.get_extra_info("sockname")[1])
    transport.close()


async def _report_and_wait(port: int) -> None:
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


def _udp_socket() -> socket.socket:
    """Loopback UDP with the 4 MiB buffer the SIP server also uses (no loss at the window)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    return sock


def start_server(kind: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, port


def stop_server(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


# --- the device side -------------------------------------------------------------


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[bytes]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        i = data.find(b"branch=")
        if i < 0:
            return
        j = i + 7
        while j < len(data) and data[j] not in b";\r\n,":
            j += 1
        fut = self.waiting.pop(data[i + 7 : j].decode(), None)
        if fut is not None and not fut.done():
            fut.set_result(data)


@dataclass
class Phase:
    name: str
    ops: int = 0
    messages: int = 0  # requests the server handled
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def p99_ms(self) -> float:
        if not self.latencies:
            return 0.0
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000


class Devices:
    def __init__(self, count: int, port: int, window: int) -> None:
        self.count, self.port, self.window = count, port, window
        self.ids = [f"3402000000118{n:07d}" for n in range(1, count + 1)]
        self.clients: list[_Client] = []
        self.seq = 0

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range((self.count + DEVICES_PER_SOCKET - 1) // DEVICES_PER_SOCKET):
            _, proto = await loop.create_datagram_endpoint(_Client, sock=_udp_socket())
            self.clients.append(proto)

    def close(self) -> None:
        for c in self.clients:
            c.transport.close()

    async def _send(self, idx: int, data_fn, timeout: float = 10.0) -> tuple[bytes, float]:
        client = self.clients[idx // DEVICES_PER_SOCKET]
        self.seq += 1
        branch = f"z9hG4bKb{self.seq}"
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        client.waiting[branch] = fut
        port = client.transport.get_extra_info("sockname")[1]
        t0 = time.perf_counter()
        client.transport.sendto(data_fn(branch, port), ("127.0.0.1", self.port))
        reply = await asyncio.wait_for(fut, timeout)
        return reply, time.perf_counter() - t0

    def _register(self, dev: str, cseq: int, auth: str = ""):
        def build(branch: str, port: int) -> bytes:
            return (
                f"REGISTER sip:{SERVER_ID}@{DOMAIN} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch={branch}\r\n"
                f"From: <sip:{dev}@{DOMAIN}>;tag=t{dev[-7:]}\r\nTo: <sip:{dev}@{DOMAIN}>\r\n"
                f"Call-ID: reg-{dev}\r\nCSeq: {cseq} REGISTER\r\n"
                f"Contact: <sip:{dev}@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\nExpires: 3600\r\n"
                f"{auth}Content-Length: 0\r\n\r\n"
            ).encode()

        return build

    async def register_one(self, idx: int, phase: Phase) -> None:
        dev = self.ids[idx]
        reply, lat1 = await self._send(idx, self._register(dev, 1))
        resp = parse_datagram(reply)
        assert isinstance(resp, SipResponse) and resp.status == 401, reply[:60]
        challenge = parse_digest(resp.get("WWW-Authenticate") or "")
        uri = f"sip:{SERVER_ID}@{DOMAIN}"
        auth = authorization_header(dev, PASSWORD, "REGISTER", uri, challenge)
        reply, lat2 = await self._send(idx, self._register(dev, 2, f"Authorization: {auth}\r\n"))
        assert reply.startswith(b"SIP/2.0 200"), reply[:60]
        phase.latencies.append(lat1 + lat2)
        phase.messages += 2

    def _keepalive(self, dev: str, sn: int):
        body = (
            '<?xml version="1.0" encoding="GB2312"?>\r\n<Notify>\r\n'
            "<CmdType>Keepalive</CmdType>\r\n"
            f"<SN>{sn}</SN>\r\n<DeviceID>{dev}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n"
        ).encode()

        def build(branch: str, port: int) -> bytes:
            head = (
                f"MESSAGE sip:{SERVER_ID}@{DOMAIN} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch={branch}\r\n"
                f"From: <sip:{dev}@{DOMAIN}>;tag=k{sn}\r\nTo: <sip:{SERVER_ID}@{DOMAIN}>\r\n"
                f"Call-ID: ka-{dev}-{sn}\r\nCSeq: {sn} MESSAGE\r\nMax-Forwards: 70\r\n"
                f"Content-Type: Application/MANSCDP+xml\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            return head.encode() + body

        return build

    async def keepalive_one(self, idx: int, sn: int, phase: Phase) -> None:
        reply, lat = await self._send(idx, self._keepalive(self.ids[idx], sn))
        assert reply.startswith(b"SIP/2.0 200"), reply[:60]
        phase.latencies.append(lat)
        phase.messages += 1

    async def run(self, phase: Phase, jobs: list, pid: int) -> Phase:
        sem = asyncio.Semaphore(self.window)

        async def one(job) -> None:
            async with sem:
                await job()

        c0, t0 = cpu_s(pid), time.perf_counter()
        await asyncio.gather(*(one(j) for j in jobs))
        phase.wall_s = time.perf_counter() - t0
        phase.server_cpu_s = cpu_s(pid) - c0
        phase.ops = len(jobs)
        return phase


async def echo_reference(messages: int, window: int, payload: int) -> Phase:
    proc, port = start_server("echo")
    try:
        devs = Devices(min(messages, DEVICES_PER_SOCKET * 4), port, window)
        await devs.open()
        phase = Phase("udp echo")
        data = b"x" * payload

        async def echo(i: int) -> None:
            reply, lat = await devs._send(
                i % devs.count, lambda b, p: b"branch=" + b.encode() + b";" + data
            )
            phase.latencies.append(lat)
            phase.messages += 1

        await devs.run(phase, [lambda i=i: echo(i) for i in range(messages)], proc.pid)
        devs.close()
        return phase
    finally:
        stop_server(proc)


async def bench(count: int, rounds: int, window: int) -> tuple[Phase, Phase]:
    proc, port = start_server("sip")
    try:
        devs = Devices(count, port, window)
        await devs.open()
        reg = Phase("register")
        await devs.run(reg, [lambda i=i: devs.register_one(i, reg) for i in range(count)], proc.pid)
        ka = Phase("keepalive")
        jobs = [
            lambda i=i, r=r: devs.keepalive_one(i, r + 2, ka)
            for r in range(rounds)
            for i in range(count)
        ]
        await devs.run(ka, jobs, proc.pid)
        devs.close()
        return reg, ka
    finally:
        stop_server(proc)


def report(count: int, reg: Phase, ka: Phase, echo: Phase) -> bool:
    cpu_reg = reg.server_cpu_s / reg.messages * 1e6
    cpu_ka = ka.server_cpu_s / ka.messages * 1e6
    cpu_echo = echo.server_cpu_s / echo.messages * 1e6
    load = 10000 / KEEPALIVE_EVERY_S * ka.server_cpu_s / ka.messages
    ok = load < 0.05
    print(f"\n== {count} devices ==")
    print(
        f"registrations/s   {reg.ops / reg.wall_s:10.0f}   p99 {reg.p99_ms:7.2f} ms "
        f"(401+200)   server CPU {cpu_reg:6.1f} us/request"
    )
    print(
        f"keepalives/s      {ka.ops / ka.wall_s:10.0f}   p99 {ka.p99_ms:7.2f} ms"
        f"             server CPU {cpu_ka:6.1f} us/keepalive"
    )
    print(
        f"udp echo (ref)    {echo.ops / echo.wall_s:10.0f}   p99 {echo.p99_ms:7.2f} ms"
        f"             server CPU {cpu_echo:6.1f} us/datagram"
    )
    print(f"ratio SIP keepalive / raw echo CPU per message: {cpu_ka / cpu_echo:5.1f}x")
    print(
        f"10,000 devices keeping alive every {KEEPALIVE_EVERY_S:.0f} s at this cost -> "
        f"{load * 100:.3f}% of one core ({'under' if ok else 'OVER'} the 5% goal)"
    )
    return ok


async def main(args: argparse.Namespace) -> int:
    sizes = [200, 1000] if args.quick else [1000, 10000]
    rounds = 2 if args.quick else 3
    print(
        f"SIP register/keepalive benchmark (server: uvloop, separate process; "
        f"window {args.window} transactions in flight)"
    )
    all_ok = True
    for count in sizes:
        # CPU time has 10 ms ticks: enough keepalives and echoes for a stable per-message figure
        reg, ka = await bench(count, max(rounds, -(-8000 // count)), args.window)
        echo = await echo_reference(max(ka.messages, 20000), args.window, 330)
        all_ok &= report(count, reg, ka, echo)
    print(
        f"\nresult: {'PASS' if all_ok else 'FAIL'}: projected 10,000-device keepalive load "
        f"{'under' if all_ok else 'over'} 5% of one core"
    )
    return 0 if all_ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer devices (< 60 s)")
    parser.add_argument("--window", type=int, default=100, help="transactions in flight")
    parser.add_argument("--serve", choices=["sip", "echo"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    if args.serve:  # log warnings only, to stderr: stdout carries the port
        import logging

        import structlog

        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        )
    if args.serve == "sip":
        uvloop.run(serve_sip())
    elif args.serve == "echo":
        uvloop.run(serve_echo())
    else:
        sys.exit(uvloop.run(main(args)))
