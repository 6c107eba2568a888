"""A flooding attacker in its own process (``python -m tests.flood_attacker``), for the flood
test: junk REGISTERs over UDP as fast as the platform answers them, password guesses
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
    until = time.monotonic() + args.seconds
    statuses: Counter[int] = Counter()
    guessed: Counter[int] = Counter()
    ids = [d for d in args.guess_ids.split(",") if d]
    t0 = time.monotonic()
    results = await asyncio.gather(
        *(udp_flood(args.port, until, args.window, statuses) for _ in range(args.sockets)),
        guesses(args.port, ids, args.guesses, guessed),
        idle_tcp(args.port, args.tcp, until),
    )
    sent = sum(results[: args.sockets])
    opened, closed = results[-1]
    return {
        "seconds": round(time.monotonic() - t0, 2),
        "register_sent": sent,
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
    print(json.dumps(asyncio.run(main(p.parse_args()))), flush=True)
