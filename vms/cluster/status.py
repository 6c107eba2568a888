"""What ``vms cluster status`` and ``GET /api/cluster`` show: nodes, load, cameras per node.

Read from the database alone, so it works from any host that reaches PostgreSQL, whether or
not the bus is up.  A camera that should be pulled or analysed but has no valid lease is
"unplaced": a role with no live node, or a failover still under way.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.cluster_models import CameraLease
from vms.cluster.registry import db_now, list_nodes


def cluster_status(s: Session, ttl_s: float) -> dict[str, Any]:
    now = db_now(s)
    nodes = list_nodes(s, timedelta(seconds=ttl_s))
    counts: dict[tuple[str, str], int] = {}
    valid: dict[str, set[tuple[str, str]]] = {}
    live = {n.name for n in nodes if n.alive}
    for kind, device_id, channel_id, node in s.execute(
        select(CameraLease.kind, CameraLease.device_id, CameraLease.channel_id, CameraLease.node)
    ):
        if node in live:
            counts[(node, kind)] = counts.get((node, kind), 0) + 1
            valid.setdefault(kind, set()).add((device_id, channel_id))
    from vms.cluster.component import analysis_wanted, media_wanted

    unplaced = {
        "media": sum(
            1 for c in media_wanted(s) if (c.device_id, c.channel_id) not in valid.get("media", ())
        ),
        "analysis": sum(
            1
            for c in analysis_wanted(s)
            if (c.device_id, c.channel_id) not in valid.get("analysis", ())
        ),
    }
    out_nodes = []
    for n in nodes:
        row = n.as_dict()
        row["age_s"] = round((now - n.heartbeat_at) / timedelta(seconds=1), 1)
        row["cameras"] = {
            kind: counts.get((n.name, kind), 0)
            for kind in ("media", "analysis")
            if (n.name, kind) in counts
        }
        out_nodes.append(row)
    return {"at": now.isoformat(), "nodes": out_nodes, "unplaced": unplaced}


def format_status(status: dict[str, Any]) -> str:
    lines = [f"{'node':32} {'role':9} {'alive':5} {'age_s':>6} {'media':>6} {'analysis':>8}  host"]
    for n in status["nodes"]:
        cams = n["cameras"]
        lines.append(
            f"{n['name'][:32]:32} {n['role']:9} {'yes' if n['alive'] else 'NO':5} "
            f"{n['age_s']:>6} {cams.get('media', 0):>6} {cams.get('analysis', 0):>8}  {n['host']}"
        )
    u = status["unplaced"]
    lines.append(f"unplaced cameras: media {u['media']}, analysis {u['analysis']}")
    return "\n".join(lines)


def analysis_running(s: Session, ttl_s: float, devices: set[str] | None = None) -> bool:
    """Table 3's RUN_STATUS on a control node, whose analyzers run on other hosts: an analyzer
    host is alive, and every analysed camera (of ``devices``, when given) is held by a live
    analyzer host and pulled by a live media node."""
    from vms.cluster.component import analysis_wanted

    live = {n.name: n.role for n in list_nodes(s, timedelta(seconds=ttl_s)) if n.alive}
    if "analyzer" not in live.values():
        return False
    lease = CameraLease
    rows = s.execute(select(lease.kind, lease.device_id, lease.channel_id, lease.node))
    holder = {(kind, d, c): node for kind, d, c, node in rows}
    for cam in analysis_wanted(s):
        if devices is not None and cam.device_id not in devices:
            continue
        for kind, role in (("analysis", "analyzer"), ("media", "media")):
            if live.get(holder.get((kind, cam.device_id, cam.channel_id), "")) != role:
                return False
    return True
