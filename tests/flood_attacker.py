"""A flooding attacker in its own process (``python -m tests.flood_attacker``), for the flood
test: junk REGISTERs over UDP as fast as the platform answers them (or, with ``--rate``, at
a fixed rate whatever it answers, as ``bench/sip_flood.py`` sends them), password guesses
against real device ids, and idle TCP connections held open.  It prints one JSON line of
what it sent and what came back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import time
from collections import Counter

from sip.auth import authorization_header, parse_digest
from sip.message import SipResponse, parse_datagram
from vms import runtime

from .api_flood_attacker import open_idle
from .sip_attack import register
from .sip_support import DOMAIN, SERVER_ID

JUNK_AUTH = 'Digest username="x",realm="3402000000",nonce="00",uri="sip:x",response="0"'


class _Socket(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[int]] = {}

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            msg = parse_datagram(data)
        except ValueError:
            return
        if isinstance(msg, SipResponse) and msg.status >= 200:
            fut = self.waiting.pop(msg.via.branch or "", None)
            if fut is not None and not fut.done():
                fut.set_result(msg.status)
                if msg.status == 401:
                    self.last_challenge = msg.get("WWW-Authenticate") or ""

    last_challenge = ""


async def _ask(proto: _Socket, transport: asyncio.DatagramTransport, req, server, timeout):  # type: ignore[no-untyped-def]
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    proto.waiting[req.via.branch or ""] = fut
    transport.sendto(req.serialise(), server)
    try:
        return await asyncio.wait_for(fut, timeout)
    except TimeoutError:
        return 0
    finally:
        proto.waiting.pop(req.via.branch or "", None)


async def udp_flood(port: int, until: float, window: int, statuses: Counter[int]) -> int:
    loop = asyncio.get_running_loop()
    proto = _Socket()
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024
    )
    me = transport.get_extra_info("sockname")[1]
    server = ("127.0.0.1", port)
    sent = 0
    try:
        while time.monotonic() < until:
            batch = []
            for _ in range(window):
                dev = f"3402000000118{random.randrange(5_000_000, 9_999_999):07d}"
                auth = JUNK_AUTH if random.random() < 0.5 else None
                batch.append(register(dev, me, authorization=auth))
            sent += len(batch)
            for status in await asyncio.gather(
                *(_ask(proto, transport, r, server, 3.0) for r in batch)
            ):
                statuses[status] += 1
    finally:
        transport.close()
    return sent


class _Counter(asyncio.DatagramProtocol):
    """Final statuses of whatever comes back; at a fixed rate nobody waits for an answer."""

    def __init__(self, statuses: Counter[int]) -> None:
        self.statuses = statuses

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        if data.startswith(b"SIP/2.0 ") and data[8:9] != b"1":
            try:
                self.statuses[int(data[8:11])] += 1
            except ValueError:
                pass


def junk_datagrams(count: int, me: int) -> list[bytes]:
    """``count`` distinct junk REGISTERs (each its own branch, Call-ID and random device id;
    half with a junk ``Authorization``) from port ``me``, built before the flood starts so the
    sender only sends."""
    head = f"REGISTER sip:{SERVER_ID}@{DOMAIN} SIP/2.0\r\n"
    via = f"Via: SIP/2.0/UDP 127.0.0.1:{me};rport;branch=z9hG4bKf"
    salt = random.randrange(1 << 30)
    out = []
    for n in range(count):
        dev = f"3402000000118{random.randrange(5_000_000, 9_999_999):07d}"
        auth = f"Authorization: {JUNK_AUTH}\r\n" if n & 1 else ""
        out.append(
            (
                f"{head}{via}{salt}x{n}\r\nFrom: <sip:{dev}@{DOMAIN}>;tag=f{n}\r\n"
                f"To: <sip:{dev}@{DOMAIN}>\r\nCall-ID: f{salt}-{n}@127.0.0.1\r\n"
                f"CSeq: 1 REGISTER\r\nContact: <sip:{dev}@127.0.0.1:{me}>\r\n"
                f"Max-Forwards: 70\r\nExpires: 3600\r\n{auth}Content-Length: 0\r\n\r\n"
            ).encode()
        )
    return out


class RateFlood:
    """Junk REGISTERs at ``rate`` per second from one socket, whatever the platform answers:
    the offered load is fixed, so what it costs the platform can be measured."""

    def __init__(self, port: int, rate: float, seconds: float, statuses: Counter[int]) -> None:
        self.server = ("127.0.0.1", port)
        self.rate, self.seconds, self.statuses = rate, seconds, statuses
        self.transport: asyncio.DatagramTransport | None = None
        self.datagrams: list[bytes] = []
        self.behind = 0  # the most datagrams the sender was ever late by (CPU starvation)
        self.send_s = 0.0

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: _Counter(self.statuses), local_addr=("127.0.0.1", 0)
        )
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        me = self.transport.get_extra_info("sockname")[1]
        self.datagrams = junk_datagrams(int(self.rate * self.seconds) + 1, me)

    async def run(self, start: float, until: float) -> int:
        """Send on schedule from ``start`` (monotonic) to ``until``; how many were sent."""
        assert self.transport is not None
        send, server, total = self.transport.sendto, self.server, len(self.datagrams)
        sent = 0
        try:
            while (now := time.monotonic()) < until and sent < total:
                due = min(total, int((now - start) * self.rate))
                self.behind = max(self.behind, due - sent)
                for data in self.datagrams[sent:due]:
                    send(data, server)
                sent = max(sent, due)
                await asyncio.sleep(0.002)
            self.send_s = time.monotonic() - start
            await asyncio.sleep(1.0)  # the answers still on their way
        finally:
            self.transport.close()
        return sent


async def guesses(port: int, device_ids: list[str], per_id: int, statuses: Counter[int]) -> None:
    """Wrong passwords for real ids, from the attacker's address (they get locked out)."""
    loop = asyncio.get_running_loop()
    proto = _Socket()
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    me = transport.get_extra_info("sockname")[1]
    server = ("127.0.0.1", port)
    uri = f"sip:{SERVER_ID}@{DOMAIN}"
    try:
        for dev in device_ids:
            for n in range(per_id):
                status = await _ask(proto, transport, register(dev, me), server, 3.0)
                if status != 401:
                    statuses[status] += 1
                    continue
                challenge = parse_digest(proto.last_challenge)
                auth = authorization_header(dev, f"guess-{n}", "REGISTER", uri, challenge)
                req = register(dev, me, authorization=auth)
                statuses[await _ask(proto, transport, req, server, 3.0)] += 1
    finally:
        transport.close()


async def idle_tcp(port: int, count: int, until: float) -> tuple[int, int]:
    """Open ``count`` connections that never speak; how many opened, how many the platform
    closed before ``until``."""
    conns = await open_idle(port, count)
    await asyncio.sleep(max(0.0, until - time.monotonic()))
    closed = 0
    for reader, writer in conns:
        if reader.at_eof() or writer.is_closing():
            closed += 1
            continue
        try:
            data = await asyncio.wait_for(reader.read(1), 0.01)
            closed += data == b""
        except TimeoutError:
            pass
        except ConnectionError:
            closed += 1
        writer.close()
    return len(conns), closed


async def main(args: argparse.Namespace) -> dict[str, object]:
    statuses: Counter[int] = Counter()
    guessed: Counter[int] = Counter()
    ids = [d for d in args.guess_ids.split(",") if d]
    floods = [
        RateFlood(args.port, args.rate / args.sockets, args.seconds, statuses)
        for _ in range(args.sockets if args.rate > 0 else 0)
    ]
    for flood in floods:
        await flood.open()
    if args.start_at:  # several senders start together, at a wall-clock time
        await asyncio.sleep(max(0.0, args.start_at - time.time()))
    late = time.time() - args.start_at if args.start_at else 0.0
    t0 = time.monotonic()
    until = t0 + args.seconds
    if floods:
        senders = [flood.run(t0, until) for flood in floods]
    else:
        senders = [udp_flood(args.port, until, args.window, statuses) for _ in range(args.sockets)]
    results = await asyncio.gather(
        *senders,
        guesses(args.port, ids, args.guesses, guessed),
        idle_tcp(args.port, args.tcp, until),
    )
    sent = sum(results[: args.sockets])
    opened, closed = results[-1]
    return {
        "seconds": round(time.monotonic() - t0, 2),
        "send_s": round(max((f.send_s for f in floods), default=0.0), 3),
        "late_s": round(late, 3),
        "behind_max": max((f.behind for f in floods), default=0),
        "cpu_s": round(time.process_time(), 2),
        "register_sent": sent,
        "register_answered": sum(v for k, v in statuses.items() if k),
        "register_statuses": {str(k): v for k, v in statuses.items()},
        "guess_statuses": {str(k): v for k, v in guessed.items()},
        "tcp_opened": opened,
        "tcp_closed": closed,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--sockets", type=int, default=2)
    p.add_argument("--window", type=int, default=200)
    p.add_argument("--tcp", type=int, default=300)
    p.add_argument("--guess-ids", default="")
    p.add_argument("--guesses", type=int, default=7)
    p.add_argument("--rate", type=float, default=0.0, help="REGISTERs/s (0: as answered)")
    p.add_argument("--start-at", type=float, default=0.0, help="wall-clock start (time.time)")
    args = p.parse_args()
    # at a fixed rate the sender's own cost must stay small beside the platform's: uvloop
    run = runtime.run if args.rate > 0 else asyncio.run
    print(json.dumps(run(main(args))), flush=True)
