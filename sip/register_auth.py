"""Who may REGISTER: every REGISTER carries the device's own digest, or it is refused.

The order keeps an attacker's cost high and ours low: a locked-out device id is refused
before anything else, a REGISTER without credentials is challenged with a nonce bound to
its address and device id, a nonce that is not ours, stale, from elsewhere or replayed is
challenged again — all without touching the store — and only then is the device's
password looked up.  Wrong credentials (password, realm, username) count towards the
device's lockout.  An unknown device becomes a pending device row only once its digest
verified against the configured ``password`` (and ``auto_create_devices`` is on);
otherwise it is refused and remembered, in a bounded list, for the operator to see.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from .auth import Client, DigestAuthenticator, DigestCheck, DigestResult
from .lockout import AuthLockout
from .registry import Registry
from .settings import ServerSettings
from .store import DeviceRecord, DeviceStore
from .transaction import ServerTransaction
from .transport import Peer

log = structlog.get_logger("sip.register_auth")

MAX_UNKNOWN = 256


def source_of(peer: Peer) -> Client:
    return (peer.transport, peer.host, peer.port)


def sampled(count: int) -> bool:
    """Log the 1st, 2nd, 4th, 8th … of a kind: a flood must not become a flood of log lines."""
    return count & (count - 1) == 0


@dataclass
class UnknownDevice:
    """A device id that proved it can answer a challenge at its address, but is not ours."""

    device_id: str
    source: Client
    first_seen: float
    last_seen: float
    attempts: int = 1


class RegisterAuth:
    def __init__(
        self,
        settings: ServerSettings,
        store: DeviceStore,
        registry: Registry,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.clock = clock
        self.digest = DigestAuthenticator(settings.domain, settings.nonce_ttl_s, clock=clock)
        self.lockout = AuthLockout(
            settings.auth_max_failures,
            settings.auth_lockout_s,
            settings.auth_lockout_max_s,
            clock=clock,
        )
        self.unknown: OrderedDict[str, UnknownDevice] = OrderedDict()
        self.counts = {
            "challenged": 0,
            "auth_failed": 0,  # wrong password, realm or username
            "auth_locked": 0,  # refused while the device id was locked out
            "auth_stale": 0,  # nonce not ours, expired, from elsewhere or replayed
            "unknown_device": 0,
        }

    def _own_registration(self, device_id: str, peer: Peer) -> bool:
        """The device's live registration speaks from ``peer``: a lockout does not apply."""
        reg = self.registry.get(device_id)
        return reg is not None and self.clock() <= reg.expires_at and reg.sent_by(peer)

    def _challenge(self, stx: ServerTransaction, device_id: str, stale: bool) -> None:
        self.counts["auth_stale" if stale else "challenged"] += 1
        header = self.digest.challenge(source_of(stx.peer), device_id, stale=stale)
        stx.reply(401, WWW_Authenticate=header)

    def _failed(self, stx: ServerTransaction, device_id: str, reason: str) -> None:
        self.counts["auth_failed"] += 1
        if self.lockout.failed(device_id):
            log.warning(
                "device locked out after wrong digests",
                device_id=device_id,
                peer=stx.peer.addr,
                seconds=round(self.lockout.locked_for(device_id)),
            )
        elif sampled(self.counts["auth_failed"]):
            log.info(
                "register refused",
                device_id=device_id,
                peer=stx.peer.addr,
                reason=reason,
                refused_so_far=self.counts["auth_failed"],
            )
        stx.reply(403, "Wrong Credentials")

    def _note_unknown(self, device_id: str, peer: Peer) -> None:
        self.counts["unknown_device"] += 1
        now = self.clock()
        entry = self.unknown.pop(device_id, None)
        if entry is None:
            entry = UnknownDevice(device_id, source_of(peer), now, now, 0)
            if sampled(self.counts["unknown_device"]):
                log.info("unknown device refused", device_id=device_id, peer=peer.addr)
        entry.source, entry.last_seen = source_of(peer), now
        entry.attempts += 1
        self.unknown[device_id] = entry
        while len(self.unknown) > MAX_UNKNOWN:
            self.unknown.popitem(last=False)

    def screen(self, stx: ServerTransaction, device_id: str) -> DigestCheck | None:
        """The part that needs no store, run synchronously as the request arrives (a flood
        of junk costs no task): the digest's nonce when it is ours, fresh and unused; else
        the request has been answered (401 or 403) and None is returned."""
        peer = stx.peer
        locked = self.lockout.locked_for(device_id)
        if locked and not self._own_registration(device_id, peer):
            self.counts["auth_locked"] += 1
            stx.reply(403, "Locked Out", Retry_After=str(int(locked) + 1))
            return None
        header = stx.request.get("Authorization")
        if header is None:
            self._challenge(stx, device_id, stale=False)
            return None
        check = self.digest.check_nonce(header, source_of(peer), device_id)
        if isinstance(check, DigestResult):
            if check.guess:
                self._failed(stx, device_id, check.reason)
            else:  # not ours, expired, replayed: a fresh challenge (not logged: floods)
                self._challenge(stx, device_id, stale=True)
            return None
        return check

    async def admit(
        self, stx: ServerTransaction, device_id: str, check: DigestCheck
    ) -> DeviceRecord | None:
        """The device's record when the screened digest verifies with its password; else
        the request has been answered (401 or 403) and None is returned."""
        c = self.settings
        peer = stx.peer
        record = await self.store.get_device(device_id)
        if record is None:
            if not (c.auto_create_devices and c.password):
                self._note_unknown(device_id, peer)
                stx.reply(403, "Unknown Device")
                return None
            password = c.password
        else:
            password = record.password or c.password
            if not password:  # no default password: a device without one cannot register
                stx.reply(403, "No Password")
                return None
        result = self.digest.verify_response(check, "REGISTER", password, device_id)
        if not result.ok:
            if result.guess:
                self._failed(stx, device_id, result.reason)
            else:
                self._challenge(stx, device_id, stale=True)
            return None
        self.lockout.succeeded(device_id)
        if record is None:
            record = await self.store.create_pending(device_id)
            self.unknown.pop(device_id, None)
            log.info("device auto-created as pending", device_id=device_id)
        if not record.enabled:
            stx.reply(403, "Device Disabled")
            return None
        return record
