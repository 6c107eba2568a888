"""The pieces behind the SIP edge's trust, without I/O: address-bound nonces, nonce counts,
realm and username checks, and the per-device lockout with its back-off."""

from __future__ import annotations

import pytest

from sip.auth import DigestAuthenticator, DigestCheck, authorization_header, parse_digest
from sip.lockout import AuthLockout
from vms.config import ConfigError, load_settings

DEV, OTHER = "34020000001180000001", "34020000001180000002"
HERE = ("UDP", "10.0.0.7", 5060)
URI = "sip:34020000002000000001@3402000000"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _auth(clock: Clock | None = None, ttl: float = 300.0) -> DigestAuthenticator:
    return DigestAuthenticator("3402000000", nonce_ttl_s=ttl, clock=clock or Clock())


def _header(auth: DigestAuthenticator, nc: int = 1, password: str = "pw", **kw: str) -> str:
    challenge = parse_digest(auth.challenge(HERE, DEV))
    challenge.update(kw)
    return authorization_header(kw.get("username", DEV), password, "REGISTER", URI, challenge, nc)


def test_a_nonce_works_only_for_the_address_and_device_it_was_issued_to() -> None:
    auth = _auth()
    header = _header(auth)
    for client, device in (
        (("UDP", "10.0.0.7", 5062), DEV),  # another port
        (("TCP", "10.0.0.7", 5060), DEV),  # another transport
        (("UDP", "10.0.0.8", 5060), DEV),  # another host
        (HERE, OTHER),  # another device id
    ):
        result = auth.verify(header, "REGISTER", "pw", client, device)
        assert not result.ok and result.stale and not result.guess
    assert auth.verify(header, "REGISTER", "pw", HERE, DEV).ok
    # nonces of another server (another key) are not ours either
    assert auth.verify(header, "REGISTER", "pw", HERE, DEV).stale
    assert _auth().verify(_header(_auth()), "REGISTER", "pw", HERE, DEV).stale


def test_nonce_counts_must_grow_and_nonces_expire() -> None:
    clock = Clock()
    auth = _auth(clock, ttl=60)
    challenge = parse_digest(auth.challenge(HERE, DEV))

    def use(nc: int) -> bool:
        header = authorization_header(DEV, "pw", "REGISTER", URI, challenge, nc)
        return auth.verify(header, "REGISTER", "pw", HERE, DEV).ok

    assert use(1) and use(2) and use(5)  # a refresh may reuse the nonce with a higher nc
    assert not use(5) and not use(3)  # never the same or a lower one
    clock.now += 61
    result = auth.verify(
        authorization_header(DEV, "pw", "REGISTER", URI, challenge, 6),
        "REGISTER",
        "pw",
        HERE,
        DEV,
    )
    assert result.stale and result.reason == "nonce expired"


def test_wrong_checks_happen_before_the_count_is_taken() -> None:
    auth = _auth()
    header = _header(auth, password="guess")
    check = auth.check_nonce(header, HERE, DEV)
    assert isinstance(check, DigestCheck)
    assert auth.verify_response(check, "REGISTER", "pw", DEV).guess
    assert auth.used_nonces == 0  # a wrong guess leaves no state behind
    for kw in ({"realm": "9999999999"}, {"username": OTHER}):
        result = auth.verify(_header(auth, **kw), "REGISTER", "pw", HERE, DEV)
        assert not result.ok and result.guess, kw
    bad_nc = _header(auth).replace("nc=00000001", "nc=zz")
    assert auth.verify(bad_nc, "REGISTER", "pw", HERE, DEV).guess


def test_lockout_backs_off_doubling_and_is_bounded() -> None:
    clock = Clock()
    lock = AuthLockout(max_failures=3, first_s=10, max_s=35, max_entries=100, clock=clock)
    assert [lock.failed(DEV) for _ in range(3)] == [False, False, True]
    assert lock.locked_for(DEV) == 10
    clock.now += 10.5
    assert lock.locked_for(DEV) == 0
    lock.succeeded(DEV)  # the device's own success does not reset the back-off level
    assert [lock.failed(DEV) for _ in range(3)] == [False, False, True]
    assert lock.locked_for(DEV) == 20
    clock.now += 21
    for _ in range(3):
        lock.failed(DEV)
    assert lock.locked_for(DEV) == 35  # capped at max_s
    clock.now += 36 + 36  # a quiet spell longer than max_s forgives
    lock.failed(DEV)
    assert lock.locked_for(DEV) == 0
    for n in range(500):  # guessing against random ids cannot grow the table
        lock.failed(f"3402000000118{n:07d}")
    assert len(lock) == 100


def test_no_default_device_password_and_no_vendor_default() -> None:
    assert load_settings().sip.password == ""
    for weak in ("12345678", "short", "Password"):
        with pytest.raises(ConfigError, match="sip.password"):
            load_settings(sip={"password": weak})
    assert load_settings(sip={"password": "a-real-secret"}).sip.password == "a-real-secret"
