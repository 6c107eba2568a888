"""Closed-loop handling (spec/alarms.md §5.6): new → acknowledged → handled → closed.

Every step is an ``AlarmAction`` row with who, when and the note.  ``false_alarm`` marks
the alarm as a false positive (allowed until it is closed) and ``comment`` adds a note in
any state; any other move is an invalid transition.  ``system_clear`` is written by the node
itself (no user) when it clears an alarm whose analysis stopped; users cannot post it.

Closing an alarm, or marking it false, while it is still active (its rule still holds: the
analyzer has not cleared it) is refused unless the request says so (``force`` with a note):
the alarm is then cleared by hand first (``AlarmService.end_by_hand``: the province gets its
one Table 4 clear), and ``detail.ended_while_active`` records who ended it, when and why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Alarm, AlarmAction, HandlingState

ACKNOWLEDGE = "acknowledge"
HANDLE = "handle"
CLOSE = "close"
FALSE_ALARM = "false_alarm"
COMMENT = "comment"
SYSTEM_CLEAR = "system_clear"
ENDS_ALARM = frozenset({"close", "false_alarm"})  # an active alarm needs force + note for these
UPDATED = "alarm.updated"  # event-bus kind after any handling action

ACTIONS = (ACKNOWLEDGE, HANDLE, CLOSE, FALSE_ALARM, COMMENT)

TRANSITIONS: dict[str, tuple[HandlingState, HandlingState]] = {
    ACKNOWLEDGE: (HandlingState.new, HandlingState.acknowledged),
    HANDLE: (HandlingState.acknowledged, HandlingState.handled),
    CLOSE: (HandlingState.handled, HandlingState.closed),
}


class InvalidTransition(Exception):
    """The action is not allowed in the alarm's current state."""


class MissingNote(ValueError):
    """The action needs a note saying why (HTTP 422)."""


def check_action(alarm: Alarm, action: str, note: str = "", force: bool = False) -> bool:
    """Raise if ``action`` is not allowed now; True when it ends an alarm whose rule still
    holds (allowed with ``force`` and a note), so the caller clears it first."""
    if action not in ACTIONS:
        raise InvalidTransition(f"unknown action {action!r}")
    if action in TRANSITIONS:
        source, _ = TRANSITIONS[action]
        if alarm.handling != source:
            raise InvalidTransition(
                f"cannot {action} an alarm that is {alarm.handling.value} "
                f"(only from {source.value})"
            )
    elif action == FALSE_ALARM:
        if alarm.handling == HandlingState.closed:
            raise InvalidTransition("a closed alarm cannot be marked as false alarm")
        if alarm.false_alarm:
            raise InvalidTransition("already marked as false alarm")
    if action not in ENDS_ALARM or not alarm.active:
        return False
    if not force:
        raise InvalidTransition(
            "the alarm's condition still holds (the analyzer has not cleared it): "
            f"{action} with force=true and a note saying why to end it anyway"
        )
    if not note.strip():
        raise MissingNote(f"ending an alarm whose condition still holds ({action}) needs a note")
    return True


def apply_action(
    session: Session,
    alarm: Alarm,
    action: str,
    user_id: int | None,
    note: str,
    at: datetime,
    force: bool = False,
    ended_while_active: bool = False,
) -> AlarmAction:
    """Apply one step (checked by :func:`check_action`); the caller commits.
    ``ended_while_active``: the caller cleared the alarm by hand for this action."""
    check_action(alarm, action, note, force)
    if ended_while_active:
        detail = dict(alarm.detail or {})
        detail["ended_while_active"] = {
            "action": action,
            "user_id": user_id,
            "at": at.isoformat(),
            "note": note.strip(),
        }
        alarm.detail = detail
    if action in TRANSITIONS:
        _, target = TRANSITIONS[action]
        alarm.handling = target
        if target == HandlingState.acknowledged:
            alarm.acknowledged_at = at
        elif target == HandlingState.closed:
            alarm.closed_at = at
    elif action == FALSE_ALARM:
        alarm.false_alarm = True
    record = AlarmAction(alarm_pk=alarm.id, user_id=user_id, action=action, note=note, at=at)
    session.add(record)
    session.flush()
    return record


def system_note(session: Session, alarm_id: str, note: str) -> AlarmAction | None:
    """Record why the node cleared an alarm by itself (no user); None if the alarm is gone."""
    alarm = session.scalar(select(Alarm).where(Alarm.alarm_id == alarm_id))
    if alarm is None:
        return None
    record = AlarmAction(alarm_pk=alarm.id, user_id=None, action=SYSTEM_CLEAR, note=note)
    session.add(record)
    session.flush()
    return record


def updated_data(alarm: Alarm, org_path: str | None, action: AlarmAction) -> dict[str, Any]:
    """Payload of ``alarm.updated``: the new handling state, scoped by ``org_path``."""
    return {
        "alarm_id": alarm.alarm_id,
        "action": action.action,
        "note": action.note,
        "user_id": action.user_id,
        "handling": alarm.handling.value,
        "false_alarm": alarm.false_alarm,
        "active": alarm.active,
        "acknowledged_at": alarm.acknowledged_at.isoformat() if alarm.acknowledged_at else None,
        "closed_at": alarm.closed_at.isoformat() if alarm.closed_at else None,
        "video_code": alarm.video_code,
        "org_id": alarm.org_id,
        "org_path": org_path,
        "at": action.at.isoformat(),
    }
