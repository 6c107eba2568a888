"""One camera's rules and alarm states: frames in, alarm/clear transitions out.

The camera's profile picks the code table; a rule whose behaviour has no code in that table is
refused when the config is applied, so no alarm can go out with another profile's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .catalog import UNCODED_RULES, UnknownAlarm, alarm_type
from .config import AnalysisConfig, RuleBase
from .rules import FrameView, Outcome, Rule, make_rule
from .state import AlarmState, Transition


class ConfigRejected(ValueError):
    """The config cannot run on this camera (e.g. a rule without a code in its profile)."""


@dataclass(frozen=True)
class Fired:
    rule: str  # rule type, e.g. "intrusion"
    key: str  # rule name within the camera
    alarm_type: str
    transition: Transition
    outcome: Outcome


@dataclass(frozen=True)
class ActiveAlarm:
    """An alarm still active in the database (raised before a restart or a new config)."""

    alarm_id: str
    channel_id: str
    profile: str
    rule: str  # rule type (Alarm.rule)
    key: str  # rule name within the camera (Alarm.detail["rule_name"]); "" if unknown
    alarm_type: str
    raised_at: datetime
    image_key: str = ""
    device_id: str = ""  # the camera's device ("" once the camera is gone)


def code_for(profile: str, cfg: RuleBase) -> str:
    rule_type: str = cfg.type  # type: ignore[attr-defined]
    if rule_type in UNCODED_RULES:
        if not cfg.alarm_type:
            raise ConfigRejected(f"rule {cfg.key!r}: no alarm code in the tables; set alarm_type")
        return cfg.alarm_type
    try:
        code = alarm_type(profile, rule_type).code
    except UnknownAlarm as exc:
        raise ConfigRejected(f"rule {cfg.key!r}: {exc}") from None
    if cfg.alarm_type and cfg.alarm_type != code:
        raise ConfigRejected(
            f"rule {cfg.key!r}: alarm_type {cfg.alarm_type} is not the {profile} code ({code})"
        )
    return code


def check_config(profile: str, config: AnalysisConfig) -> None:
    for cfg in config.rules:
        if cfg.enabled:
            code_for(profile, cfg)


class CameraEngine:
    def __init__(self, channel_id: str, profile: str, config: AnalysisConfig) -> None:
        check_config(profile, config)
        self.channel_id = channel_id
        self.profile = profile
        self.config = config
        self.rules: list[tuple[RuleBase, Rule, AlarmState, str]] = [
            (
                cfg,
                make_rule(cfg, config),
                AlarmState(cfg.confirm_s, cfg.clear_s, cfg.cooldown_s),
                code_for(profile, cfg),
            )
            for cfg in config.rules
            if cfg.enabled
        ]

    def process(self, frame: FrameView) -> list[Fired]:
        fired = []
        for cfg, rule, state, code in self.rules:
            outcome = rule(frame)
            tr = state.update(outcome.active, frame.t)
            if tr is not None:
                fired.append(Fired(cfg.type, cfg.key, code, tr, outcome))  # type: ignore[attr-defined]
        return fired

    def resume(self, alarms: list[ActiveAlarm]) -> list[ActiveAlarm]:
        """Seed the rules' states with still-active alarms; return those no rule takes.

        A rule takes the newest alarm of its own name (or, for old rows without one, of its
        type) with its own code; older duplicates and alarms of removed rules are returned
        for the caller to clear.
        """
        left: list[ActiveAlarm] = []
        for alarm in sorted(alarms, key=lambda a: a.raised_at, reverse=True):
            for cfg, _rule, state, code in self.rules:
                same_rule = alarm.key == cfg.key if alarm.key else alarm.rule == cfg.type  # type: ignore[attr-defined]
                if same_rule and alarm.alarm_type == code and state.alarm_id is None:
                    state.resume(alarm.alarm_id)
                    break
            else:
                left.append(alarm)
        return left

    def active_ids(self) -> set[str]:
        return {state.alarm_id for _c, _r, state, _code in self.rules if state.alarm_id}

    def close(self, t: float) -> list[Fired]:
        """Clear every active alarm (the camera stops or gets a new config)."""
        out = []
        for cfg, _rule, state, code in self.rules:
            tr = state.force_clear(t)
            if tr is not None:
                out.append(Fired(cfg.type, cfg.key, code, tr, Outcome(False, note="stopped")))  # type: ignore[attr-defined]
        return out
