"""The scaled-out installation as the administrator sees it: nodes, roles, load, cameras.

A single node (role "all") shows itself alone; the figures come from the database
(``vms.cluster.status``), so any node's API answers for the whole cluster.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vms.cluster.status import cluster_status

from ..deps import STAFF, ServicesDep, SessionDep, require_roles

router = APIRouter(prefix="/api/cluster", tags=["cluster"])


@router.get("", dependencies=[require_roles(*STAFF)])
def get_cluster(session: SessionDep, services: ServicesDep) -> dict[str, Any]:
    """Nodes with their role, liveness, heartbeat age, load and cameras held, and the
    cameras that no live node holds."""
    settings = services.settings.cluster
    status = cluster_status(session, settings.lease_ttl_s)
    status["this_node"] = {"role": settings.role}
    if services.cluster is not None:
        status["this_node"] = services.cluster.status()
    return status
