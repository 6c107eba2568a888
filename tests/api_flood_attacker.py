"""An HTTP flooder in its own process (``python -m tests.api_flood_attacker``), for the flood
test: ``--concurrency`` requests always in flight from one user's token, connections that
never send a byte, and slowloris connections trickling their headers.  It prints one JSON
line of what it sent and what came back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time
from collections import Counter
from typing import Any

import httpx

NO_TLS = ssl.create_default_context()  # one for all clients: each would load the CA store


async def hammer(port: int, token: str, path: str, until: float, statuses: Counter) -> None:
    """One connection, one request after the other on it: one of the requests in flight."""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {token}"},
        limits=httpx.Limits(max_connections=1),
        timeout=30,
        verify=NO_TLS,
    ) as client:
        while time.monotonic() < until:
            try:
                resp = await client.get(path)
                statuses[str(resp.status_code)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
                await asyncio.sleep(0.01)


async def open_idle(port: int, count: int) -> list[tuple[asyncio.StreamReader, Any]]:
    """Connections that will never speak."""
    conns = []
    for _ in range(count):
        try:
            conns.append(await asyncio.open_connection("127.0.0.1", port))
        except OSError:
            pass
    return conns


async def idle(conns: list[tuple[asyncio.StreamReader, Any]], until: float) -> int:
    """How many of ``conns`` the server closed by ``until``."""

    async def closed(reader: asyncio.StreamReader) -> bool:
        try:
            data = await asyncio.wait_for(reader.read(1), max(0.05, until - time.monotonic()))
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return data == b""

    results = await asyncio.gather(*(closed(reader) for reader, _ in conns))
    for _, writer in conns:
        writer.close()
    return sum(results)


async def slowloris(port: int, until: float) -> str:
    """Headers one byte every 0.5 s: how the server ended it ("408", "closed" or "open")."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/devices HTTP/1.1\r\nHost: x\r\n")
        while time.monotonic() < until:
            writer.write(b"X")
            await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(64), 0.5)
            except TimeoutError:
                continue
            writer.close()
            return "408" if data.startswith(b"HTTP/1.1 408") else "closed"
        writer.close()
        return "open"
    except ConnectionError:
        return "closed"


async def main(args: argparse.Namespace) -> dict[str, object]:
    until = time.monotonic() + args.seconds
    statuses: Counter[str] = Counter()
    t0 = time.monotonic()
    conns = await open_idle(args.port, args.idle)  # first: they must all end within the flood
    results = await asyncio.gather(
        idle(conns, until + args.grace),
        *(slowloris(args.port, until) for _ in range(args.slowloris)),
        *(
            hammer(args.port, args.token, args.path, until, statuses)
            for _ in range(args.concurrency)
        ),
    )
    opened, closed = len(conns), results[0]
    lorises = Counter(results[1 : 1 + args.slowloris])
    return {
        "seconds": round(time.monotonic() - t0, 2),
        "requests": sum(statuses.values()),
        "statuses": dict(statuses),
        "idle_opened": opened,
        "idle_closed": closed,
        "slowloris": dict(lorises),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--path", default="/api/devices")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--idle", type=int, default=300)
    p.add_argument("--slowloris", type=int, default=20)
    p.add_argument("--grace", type=float, default=3.0)  # for the idle ones to be closed
    print(json.dumps(asyncio.run(main(p.parse_args()))), flush=True)
