"""Robustness: thousands of malformed and truncated SIP messages and MANSCDP bodies over real
UDP and TCP sockets.  The server answers 400 wherever the addressing headers survive, never
answers 5xx, leaks no task, and keeps a valid NVR registered and keeping alive meanwhile."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simdevice.nvr import SimulatedNvr
from sip import manscdp
from sip.message import SipParseError, parse_datagram
from sip.server import SipServer
from sip.store import MemoryDeviceStore

from .sip_support import nvr_config, nvr_id, server_config

STRANGER = "34020000001180009999"


class LoopThread:
    """A server and a valid NVR on their own event loop, so hypothesis can drive plain sockets."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 20) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def rig() -> Iterator[dict[str, Any]]:
    lt = LoopThread()
    store = MemoryDeviceStore()

    async def setup() -> dict[str, Any]:
        # a generous offline threshold (3 s): the fuzzer in the main thread competes for the GIL
        server = SipServer(server_config(keepalive_interval_s=1.0, keepalive_misses=3), store)
        await server.start()
        nvr = SimulatedNvr(nvr_config(server, keepalive_interval_s=0.05))
        await nvr.start(wait=True)
        await asyncio.sleep(0.2)
        return {"server": server, "nvr": nvr, "tasks": len(asyncio.all_tasks())}

    state = lt.run(setup())
    state.update(loop=lt, store=store)
    yield state

    async def teardown() -> None:
        await state["nvr"].stop()
        await state["server"].close()

    lt.run(teardown())
    lt.close()


def request(method: str, body: bytes = b"", *, cseq: str | None = None, extra: str = "") -> bytes:
    head = (
        f"{method} sip:34020000002000000001@3402000000 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK{time.monotonic_ns()}\r\n"
        f"From: <sip:{STRANGER}@3402000000>;tag=fz\r\n"
        f"To: <sip:34020000002000000001@3402000000>\r\n"
        f"Call-ID: fuzz-{time.monotonic_ns()}\r\n"
        f"CSeq: {cseq or '1 ' + method}\r\n"
        f"Content-Type: Application/MANSCDP+xml\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def udp_exchange(sock: socket.socket, port: int, data: bytes, expect: bool) -> bytes | None:
    sock.sendto(data, ("127.0.0.1", port))
    sock.settimeout(2.0 if expect else 0.01)
    try:
        reply, _ = sock.recvfrom(65535)
        while True:  # keep only the latest (a retransmit answer may follow)
            sock.settimeout(0.0)
            try:
                reply, _ = sock.recvfrom(65535)
            except (BlockingIOError, TimeoutError):
                return reply
    except TimeoutError:
        return None


def status_of(reply: bytes) -> int:
    """Status code from the status line (the echoed headers may be as broken as the request)."""
    line = reply.split(b"\r\n", 1)[0].split()
    assert line[0] == b"SIP/2.0", reply[:80]
    return int(line[1])


VALID_BODY = (
    '<?xml version="1.0" encoding="GB2312"?>\r\n<Notify><CmdType>Keepalive</CmdType><SN>1</SN>'
    f"<DeviceID>{STRANGER}</DeviceID><Status>OK</Status></Notify>"
).encode()
xml_fragments = st.sampled_from(
    [
        b"<Query>",
        b"</Query>",
        b"<CmdType>",
        b"Catalog",
        b"<SN>",
        b"12",
        b"</SN>",
        b"&",
        b"&amp;",
        b"<!DOCTYPE x [<!ENTITY a 'b'>]>",
        b"\xff\xfe",
        b"\xb1\xb1",
        b"<Item>",
        b"<?xml ?>",
        b"<",
    ]
)
bodies = st.one_of(
    st.binary(max_size=600),
    st.lists(xml_fragments, max_size=30).map(b"".join),
    st.integers(0, len(VALID_BODY) - 1).map(lambda n: VALID_BODY[:n]),
)


@settings(max_examples=1200, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_bad_manscdp_bodies_get_400_over_udp(rig: dict[str, Any], body: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        reply = udp_exchange(sock, rig["server"].port, request("MESSAGE", body), expect=True)
    assert reply is not None
    try:
        manscdp.decode(body)
        decodable = True
    except manscdp.ManscdpError:
        decodable = False
    status = status_of(reply)
    assert status < 500
    if not decodable:
        assert status == 400


header_noise = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=80
)


@settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    kind=st.sampled_from(["cseq", "length", "line", "via-param", "truncate", "garbage"]),
    noise=header_noise,
    cut=st.integers(0, 400),
    raw=st.binary(max_size=400),
)
def test_malformed_sip_over_udp(
    rig: dict[str, Any], kind: str, noise: str, cut: int, raw: bytes
) -> None:
    expect = True
    if kind == "cseq":
        data = request("MESSAGE", VALID_BODY, cseq=f"x{noise}")
    elif kind == "length":
        data = request("MESSAGE", VALID_BODY).replace(
            f"Content-Length: {len(VALID_BODY)}".encode(), f"Content-Length: -{noise}".encode()
        )
    elif kind == "line":
        data = request("REGISTER", extra=f"{noise.replace(':', '')}\r\n")
        expect = not noise.strip() == ""  # an empty line ends the head: then it may parse
    elif kind == "via-param":
        data = request("MESSAGE", VALID_BODY, extra=f"Expires: {noise}\r\n")
    elif kind == "truncate":
        data = request("REGISTER")[:cut]
        expect = False
    else:
        data = raw
        expect = False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        reply = udp_exchange(sock, rig["server"].port, data, expect)
    try:
        parse_datagram(data)
        parses = True
    except SipParseError:
        parses = False
    if reply is not None:
        assert status_of(reply) < 500
    if expect and not parses:
        assert reply is not None and status_of(reply) == 400


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.just(request("MESSAGE", VALID_BODY)),
            st.just(request("MESSAGE", b"<Query>")),
        ),
        max_size=6,
    )
)
def test_garbage_and_valid_mixed_over_tcp(rig: dict[str, Any], chunks: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", rig["server"].port), timeout=2) as sock:
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:
                break  # the server dropped a connection it could not frame: allowed
        sock.settimeout(0.02)
        data = b""
        try:
            while True:
                part = sock.recv(65535)
                if not part:
                    break
                data += part
        except (TimeoutError, OSError):
            pass
    for line in data.split(b"\r\n"):
        if line.startswith(b"SIP/2.0 "):
            assert int(line.split()[1]) < 500


def test_server_survived_the_fuzzing(rig: dict[str, Any]) -> None:
    """Runs after the fuzz tests (file order): the NVR kept alive, tasks back to baseline."""
    server, nvr = rig["server"], rig["nvr"]

    async def check() -> tuple[int, int, bool, int]:
        deadline = time.monotonic() + 3
        while nvr.state.keepalives_sent <= 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        while len(asyncio.all_tasks()) > rig["tasks"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        status = await nvr.register()
        return (
            len(asyncio.all_tasks()),
            nvr.state.keepalive_failures,
            server.registrations[nvr_id(1)].online,
            status,
        )

    tasks, failures, online, status = rig["loop"].run(check())
    assert tasks <= rig["tasks"]
    assert failures == 0 and online and status == 200
    assert nvr.state.keepalives_sent > 20
    assert rig["store"].devices[nvr_id(1)].history == [
        ("online", rig["store"].devices[nvr_id(1)].history[0][1], "register")
    ]
    assert server.endpoint.bad_messages > 100
