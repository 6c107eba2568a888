"""Closed-loop handling of a sensor warning (spec/sensors.md §7): verify → handle → report → close.

``acknowledge`` (the enterprise verified it) new → acknowledged; ``handle`` (with a note:
what was done) acknowledged → handled; ``feedback`` (the handling report, 反馈) while
handled; ``close`` (报警销账) handled → closed, once a report is in.  ``comment`` adds a note
in any state.  Closing a warning whose condition still holds is refused unless the request
says so explicitly (``force`` with a note): the episode is then closed and no longer
followed, so if the condition persists the next reading opens a fresh warning — closing
cannot silence a live condition.  Each step is a ``WarningEvent`` with the user.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from storage.models import HandlingState
from storage.sensor_models import SensorWarning, WarningEvent

ACKNOWLEDGE = "acknowledge"
HANDLE = "handle"
FEEDBACK = "feedback"
CLOSE = "close"
COMMENT = "comment"
ACTIONS = (ACKNOWLEDGE, HANDLE, FEEDBACK, CLOSE, COMMENT)
NEEDS_NOTE = frozenset({HANDLE, FEEDBACK, COMMENT})

TRANSITIONS: dict[str, tuple[HandlingState, HandlingState]] = {
    ACKNOWLEDGE: (HandlingState.new, HandlingState.acknowledged),
    HANDLE: (HandlingState.acknowledged, HandlingState.handled),
    CLOSE: (HandlingState.handled, HandlingState.closed),
}


class InvalidTransition(Exception):
    """Not allowed in the warning's current state (HTTP 409)."""


class MissingNote(ValueError):
    """The step needs text (HTTP 422)."""


def apply_action(
    session: Session,
    warning: SensorWarning,
    action: str,
    user_id: int | None,
    note: str,
    at: datetime,
    force: bool = False,
) -> WarningEvent:
    """Apply one step; returns its history event.  The caller commits."""
    note = note.strip()
    if action not in ACTIONS:
        raise InvalidTransition(f"unknown action {action!r}")
    if action in NEEDS_NOTE and not note:
        raise MissingNote(f"{action} needs a note")
    detail: dict[str, object] = {}
    if action == FEEDBACK:
        if warning.handling != HandlingState.handled:
            raise InvalidTransition(
                f"the handling report comes after handling (warning is {warning.handling.value})"
            )
        warning.feedback = note
    elif action in TRANSITIONS:
        source, target = TRANSITIONS[action]
        if warning.handling != source:
            raise InvalidTransition(
                f"cannot {action} a warning that is {warning.handling.value} "
                f"(only from {source.value})"
            )
        if action == CLOSE:
            _check_close(warning, note, force)
            if warning.active:
                detail = {"forced": True, "condition_held": True, "level": warning.level.value}
                warning.active = False  # no longer followed: a persisting condition re-opens
            warning.closed_at = at
        elif action == ACKNOWLEDGE:
            warning.acknowledged_at = at
        elif action == HANDLE:
            warning.handled_at = at
        warning.handling = target
    event = WarningEvent(
        warning_pk=warning.id,
        at=at,
        kind=action,
        level=warning.level.value,
        user_id=user_id,
        note=note,
        detail=detail,
    )
    session.add(event)
    session.flush()
    return event


def _check_close(warning: SensorWarning, note: str, force: bool) -> None:
    if not warning.feedback:
        raise InvalidTransition("close needs the handling report first (action feedback)")
    if warning.active:
        if not force:
            raise InvalidTransition(
                f"the condition still holds ({warning.level.value}, not cleared): "
                "close with force=true and a note to close it anyway"
            )
        if not note:
            raise MissingNote("closing a warning whose condition holds needs a note")
