"""Durable outbox rows: enqueue, pick due work in order per camera, record outcomes.

All state lives in the ``outbox`` table, so a restarted process resumes exactly where the
killed one stopped (an item posted but not yet marked sent is posted again: at-least-once,
with the same ALARM_ID, which the receiver treats as idempotent).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from storage.models import OutboxItem, OutboxState


def now_utc() -> datetime:
    return datetime.now(UTC)


def enqueue(
    session: Session,
    receivers: Iterable[str],
    table: str,
    ordering_key: str,
    payload: dict[str, str],
    image_key: str = "",
) -> list[OutboxItem]:
    """One pending row per receiver, in the caller's transaction."""
    items = [
        OutboxItem(
            receiver=name,
            table=table,
            ordering_key=ordering_key,
            payload=payload,
            image_key=image_key,
            state=OutboxState.pending,
        )
        for name in receivers
    ]
    session.add_all(items)
    return items


def due_batches(
    session: Session, receiver: str, now: datetime, keys_limit: int, per_key: int
) -> dict[str, list[OutboxItem]]:
    """For each ordering key whose oldest pending item is due, its first ``per_key`` items.

    Only the head of a key decides: a later item never overtakes an earlier one that is
    still waiting for its retry time.
    """
    heads = (
        select(func.min(OutboxItem.id))
        .where(OutboxItem.state == OutboxState.pending, OutboxItem.receiver == receiver)
        .group_by(OutboxItem.ordering_key)
    )
    due_heads = session.scalars(
        select(OutboxItem)
        .where(OutboxItem.id.in_(heads), OutboxItem.next_attempt_at <= now)
        .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
        .limit(keys_limit)
    ).all()
    batches: dict[str, list[OutboxItem]] = {}
    for head in due_heads:
        rows = session.scalars(
            select(OutboxItem)
            .where(
                OutboxItem.state == OutboxState.pending,
                OutboxItem.receiver == receiver,
                OutboxItem.ordering_key == head.ordering_key,
            )
            .order_by(OutboxItem.id)
            .limit(per_key)
        ).all()
        batches[head.ordering_key] = list(rows)
    return batches


def next_due(session: Session, receiver: str) -> datetime | None:
    """The earliest retry time among the heads (for the sender's sleep)."""
    heads = (
        select(func.min(OutboxItem.id))
        .where(OutboxItem.state == OutboxState.pending, OutboxItem.receiver == receiver)
        .group_by(OutboxItem.ordering_key)
    )
    return session.scalar(
        select(func.min(OutboxItem.next_attempt_at)).where(OutboxItem.id.in_(heads))
    )


def mark_sent(session: Session, item_id: int, at: datetime) -> None:
    session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(
            state=OutboxState.sent,
            sent_at=at,
            attempts=OutboxItem.attempts + 1,
            last_error="",
        )
    )


def backoff_s(
    attempts: int, base_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Exponential back-off with "equal jitter": half fixed, half random, capped at ``max_s``."""
    exp = min(max_s, base_s * (2 ** max(0, attempts - 1)))
    r = (rng or random).random()
    return exp / 2 + r * exp / 2


def mark_failed(
    session: Session,
    item_id: int,
    error: str,
    at: datetime,
    base_s: float,
    max_s: float,
    dead_after_s: float,
    count_attempt: bool = True,
) -> OutboxState:
    """Schedule the retry, or make the item a dead letter once it is older than allowed."""
    item = session.get(OutboxItem, item_id)
    if item is None or item.state != OutboxState.pending:
        return item.state if item is not None else OutboxState.dead
    if count_attempt:
        item.attempts += 1
    item.last_error = error[:1000]
    born = item.requeued_at or item.created_at
    if at - born > timedelta(seconds=dead_after_s):
        item.state = OutboxState.dead
        item.dead_at = at
    else:
        item.next_attempt_at = at + timedelta(seconds=backoff_s(item.attempts, base_s, max_s))
    return item.state


def counts(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(
        select(OutboxItem.receiver, OutboxItem.table, OutboxItem.state, func.count())
        .group_by(OutboxItem.receiver, OutboxItem.table, OutboxItem.state)
        .order_by(OutboxItem.receiver, OutboxItem.table, OutboxItem.state)
    ).all()
    return [{"receiver": r, "table": t, "state": s.value, "count": n} for r, t, s, n in rows]


def resend(session: Session, ids: list[int] | None, receiver: str | None, at: datetime) -> int:
    """Dead letters back to pending, due now, with their age restarted."""
    stmt = update(OutboxItem).where(OutboxItem.state == OutboxState.dead)
    if ids is not None:
        stmt = stmt.where(OutboxItem.id.in_(ids))
    if receiver is not None:
        stmt = stmt.where(OutboxItem.receiver == receiver)
    result = session.execute(
        stmt.values(
            state=OutboxState.pending, attempts=0, next_attempt_at=at, requeued_at=at, dead_at=None
        )
    )
    return int(result.rowcount or 0)


def purge_sent(session: Session, before: datetime) -> int:
    """Forget delivered rows older than ``before`` (the table would grow forever otherwise)."""
    result = session.execute(
        delete(OutboxItem).where(OutboxItem.state == OutboxState.sent, OutboxItem.sent_at < before)
    )
    return int(result.rowcount or 0)
