"""The audit trail: who did what, when, from where — append-only and hash-chained.

GB/T 22239 level 3 asks that audit records be protected against unexpected deletion,
modification or overwriting.  Two layers do that here: the table refuses UPDATE and DELETE
(triggers from migration 0007), and every entry carries the SHA-256 of its own content and
of the entry before it, so an edit that gets past the triggers (a superuser, a restored
backup, a file edited by hand) breaks the chain at that entry and ``verify`` names it.

Entries are numbered without gaps (the id is assigned under a lock, not by a sequence that
a rolled-back transaction would skip), so a deleted entry is found as well as an edited one.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, func, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage.models import Base, utcnow

GENESIS = "0" * 64
# pg_advisory_xact_lock key: one chain per database, whichever node writes to it.
_PG_LOCK_KEY = 0x6175646974  # "audit"
_lock = threading.Lock()  # one writer at a time inside this process (SQLite has no advisory lock)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(Integer)  # no FK: a user may be removed
    actor: Mapped[str] = mapped_column(String(64), default="")  # username (as typed, at login)
    role: Mapped[str] = mapped_column(String(16), default="")
    org_id: Mapped[int | None] = mapped_column(Integer, index=True)  # the actor's organisation
    client: Mapped[str] = mapped_column(String(64), default="")  # address the request came from
    action: Mapped[str] = mapped_column(String(96), index=True)  # e.g. "login", "PATCH /api/…"
    target: Mapped[str] = mapped_column(String(255), default="")  # the path acted on
    outcome: Mapped[str] = mapped_column(String(16), default="ok")  # ok, failed, denied, error
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True)
class AuditRecord:
    """What a caller hands to ``append``; the id, time and hashes are filled in there."""

    action: str
    actor: str = ""
    actor_id: int | None = None
    role: str = ""
    org_id: int | None = None
    client: str = ""
    target: str = ""
    outcome: str = "ok"
    detail: dict[str, Any] | None = None


def entry_hash(e: AuditEntry) -> str:
    """SHA-256 over the previous hash and a canonical JSON of every other column."""
    body = {
        "id": e.id,
        "at": e.at.isoformat(timespec="microseconds"),
        "actor_id": e.actor_id,
        "actor": e.actor,
        "role": e.role,
        "org_id": e.org_id,
        "client": e.client,
        "action": e.action,
        "target": e.target,
        "outcome": e.outcome,
        "detail": e.detail,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((e.prev_hash + canonical).encode()).hexdigest()


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def append(session: Session, record: AuditRecord) -> AuditEntry:
    """Add one entry at the end of the chain and commit it (its own transaction).

    Serialised: a thread lock within the process and, on PostgreSQL, a transaction-scoped
    advisory lock across processes, so two writers never chain onto the same entry.
    """
    with _lock:
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        last = session.execute(
            select(AuditEntry.id, AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)
        ).first()
        entry = AuditEntry(
            id=(last.id + 1) if last else 1,
            at=utcnow(),
            actor_id=record.actor_id,
            actor=_clip(record.actor, 64),
            role=record.role,
            org_id=record.org_id,
            client=_clip(record.client, 64),
            action=_clip(record.action, 96),
            target=_clip(record.target, 255),
            outcome=record.outcome,
            detail=record.detail or {},
            prev_hash=last.hash if last else GENESIS,
        )
        entry.hash = entry_hash(entry)
        session.add(entry)
        session.commit()
        return entry


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    first_bad_id: int | None = None
    reason: str = ""
    last_hash: str = GENESIS

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_bad_id": self.first_bad_id,
            "reason": self.reason,
            "last_hash": self.last_hash,
        }


def iter_entries(session: Session, batch: int = 1000) -> Iterator[AuditEntry]:
    """Every entry in chain order, a batch at a time (the trail grows without bound)."""
    after = 0
    while True:
        rows = list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.id > after).order_by(AuditEntry.id).limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        after = rows[-1].id
        session.expunge_all()


def verify(session: Session) -> ChainReport:
    """Recompute the chain from the first entry; the first entry that does not fit is named."""
    prev_id, prev_hash, count = 0, GENESIS, 0
    for e in iter_entries(session):
        count += 1
        if e.id != prev_id + 1:
            return ChainReport(False, count, prev_id + 1, "entry missing", prev_hash)
        if e.prev_hash != prev_hash:
            return ChainReport(
                False, count, e.id, "does not chain onto the entry before", prev_hash
            )
        if entry_hash(e) != e.hash:
            return ChainReport(
                False, count, e.id, "content changed after it was written", prev_hash
            )
        prev_id, prev_hash = e.id, e.hash
    return ChainReport(True, count, None, "", prev_hash)


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEntry)) or 0
