"""The node's components: what each provides and needs, and which roles run it.

The start order follows from the needs (a component starts after every component of the
same node that provides what it needs), instead of being kept by hand in a comment; the
role (``vms serve --role``) picks which components a node builds.  A need that no component
of the role provides is fine: the component then runs without it (an analyzer host will get
its frames and alarm sink from the message bus instead of the hub and the alarm service).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

ROLES = ("all", "control", "media", "analyzer")
ALL, CONTROL, MEDIA, ANALYZER = ROLES


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    factory: str  # "module:function"; imported only when a role builds the component
    provides: tuple[str, ...] = ()  # Services slots it fills
    needs: tuple[str, ...] = ()  # slots that must be filled before it is built
    roles: tuple[str, ...] = (ALL,)

    def load(self) -> Callable[[Any], Any]:
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


SPECS = (
    ComponentSpec(
        "sip", "vms.sip_component:sip_component", provides=("sip",), roles=(ALL, CONTROL)
    ),
    # a media node's SIP is the control node's, over the bus; an analyzer host's frames and
    # alarm sink are the bus
    ComponentSpec(
        "cluster-media",
        "vms.cluster.component:cluster_factory",
        provides=("sip", "placement"),
        roles=(MEDIA,),
    ),
    ComponentSpec(
        "cluster-analyzer",
        "vms.cluster.component:cluster_factory",
        provides=("frames", "alarm_sink", "placement"),
        roles=(ANALYZER,),
    ),
    # the hub registers its session listener on services.sip
    ComponentSpec(
        "media",
        "vms.media.hub:create_hub",
        provides=("media", "frames"),
        needs=("sip",),
        roles=(ALL, MEDIA),
    ),
    ComponentSpec(
        "alarms",
        "vms.alarm_component:alarm_component",
        provides=("alarms", "alarm_sink", "uplink"),
        roles=(ALL, CONTROL),
    ),
    ComponentSpec(
        "cluster-control",
        "vms.cluster.component:cluster_factory",
        provides=("analysis", "placement"),
        needs=("sip", "alarms"),
        roles=(CONTROL,),
    ),
    ComponentSpec(
        "live",
        "vms.live_component:live_factory",
        provides=("live",),
        needs=("media",),
        roles=(ALL, MEDIA),
    ),
    ComponentSpec(
        "recorder",
        "vms.recording.recorder:create_recorder",
        provides=("recorder",),
        needs=("media", "placement"),
        roles=(ALL, MEDIA),
    ),
    ComponentSpec(
        "playback",
        "vms.recording.playback_sessions:create_playback_sessions",
        provides=("playback",),
        needs=("media",),
        roles=(ALL, MEDIA),
    ),
    ComponentSpec(
        "downloads",
        "vms.recording.downloads:create_downloads",
        provides=("downloads",),
        needs=("media",),
        roles=(ALL, MEDIA),
    ),
    ComponentSpec(
        "analyzers",
        "vms.analyzer_component:analyzer_factory",
        provides=("analyzers", "analysis"),
        needs=("frames", "alarm_sink", "placement"),
        roles=(ALL, ANALYZER),
    ),
    # sensor warnings link to cameras and notify like alarms
    ComponentSpec(
        "ingest",
        "vms.ingest.component:ingest_factory",
        provides=("ingest",),
        needs=("alarms", "media"),
        roles=(ALL, CONTROL),
    ),
    ComponentSpec(
        "warnings",
        "vms.warning.component:warning_factory",
        provides=("warnings",),
        needs=("ingest",),
        roles=(ALL, CONTROL),
    ),
    ComponentSpec(
        "supervision",
        "vms.supervision.component:supervision_factory",
        provides=("supervision",),
        roles=(ALL, CONTROL),
    ),
)


def ordered(specs: Iterable[ComponentSpec]) -> list[ComponentSpec]:
    """Declaration order, except that a component waits for the providers of its needs.

    A cycle is a programming error and raises ``ValueError``.
    """
    pending = list(specs)
    out: list[ComponentSpec] = []
    while pending:
        for spec in pending:
            blocked = [
                other
                for other in pending
                if other is not spec and set(other.provides) & set(spec.needs)
            ]
            if not blocked:
                out.append(spec)
                pending.remove(spec)
                break
        else:
            raise ValueError("components need each other: " + ", ".join(s.name for s in pending))
    return out


def for_role(role: str, specs: Iterable[ComponentSpec] = SPECS) -> list[ComponentSpec]:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    return ordered(s for s in specs if role in s.roles)
