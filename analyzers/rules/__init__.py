"""Rules, one module per alarm type, behind the :class:`~.base.Rule` interface."""

from __future__ import annotations

from ..config import AnalysisConfig, RuleBase
from .base import FrameView, Outcome, Rule
from .extinguisher import ExtinguisherMissing
from .fence import ClimbingFence
from .gathering import Gathering
from .intrusion import Intrusion
from .off_duty import OffDuty
from .presence import Presence
from .sleeping import Sleeping
from .static_discharge import StaticDischarge

RULES: dict[str, type[Rule]] = {
    "fire": Presence,
    "smoke": Presence,
    "no_helmet": Presence,
    "phone": Presence,
    "smoking": Presence,
    "no_workwear": Presence,
    "intrusion": Intrusion,
    "climbing_fence": ClimbingFence,
    "gathering": Gathering,
    "off_duty": OffDuty,
    "sleeping": Sleeping,
    "extinguisher_missing": ExtinguisherMissing,
    "static_discharge": StaticDischarge,
}


def make_rule(cfg: RuleBase, camera: AnalysisConfig) -> Rule:
    return RULES[cfg.type](cfg, camera)  # type: ignore[attr-defined]


__all__ = ["RULES", "FrameView", "Outcome", "Rule", "make_rule"]
