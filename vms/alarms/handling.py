"""Closed-loop handling (spec/alarms.md §5.6): new → acknowledged → handled → closed.

Every step is an ``AlarmAction`` row with who, when and the note.  ``false_alarm`` marks
the alarm as a false positive (allowed until it is closed) and ``comment`` adds a note in
any state; any other move is an invalid transition.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from storage.models import Alarm, AlarmAction, HandlingState

ACKNOWLEDGE = "acknowledge"
HANDLE = "handle"
CLOSE = "close"
FALSE_ALARM = "false_alarm"
COMMENT = "comment"

ACTIONS = (ACKNOWLEDGE, HANDLE, CLOSE, FALSE_ALARM, COMMENT)

TRANSITIONS: dict[str, tuple[HandlingState, HandlingState]] = {
    ACKNOWLEDGE: (HandlingState.new, HandlingState.acknowledged),
    HANDLE: (HandlingState.acknowledged, HandlingState.handled),
    CLOSE: (HandlingState.handled, HandlingState.closed),
}


class InvalidTransition(Exception):
    """The action is not allowed in the alarm's current state."""


def apply_action(
    session: Session, alarm: Alarm, action: str, user_id: int | None, note: str, at: datetime
) -> AlarmAction:
    if action not in ACTIONS:
        raise InvalidTransition(f"unknown action {action!r}")
    if action in TRANSITIONS:
        source, target = TRANSITIONS[action]
        if alarm.handling != source:
            raise InvalidTransition(
                f"cannot {action} an alarm that is {alarm.handling.value} "
                f"(only from {source.value})"
            )
        alarm.handling = target
        if target == HandlingState.acknowledged:
            alarm.acknowledged_at = at
        elif target == HandlingState.closed:
            alarm.closed_at = at
    elif action == FALSE_ALARM:
        if alarm.handling == HandlingState.closed:
            raise InvalidTransition("a closed alarm cannot be marked as false alarm")
        if alarm.false_alarm:
            raise InvalidTransition("already marked as false alarm")
        alarm.false_alarm = True
    record = AlarmAction(alarm_pk=alarm.id, user_id=user_id, action=action, note=note, at=at)
    session.add(record)
    session.flush()
    return record
