"""``vms cluster status``: the nodes of a scaled-out installation and what each holds."""

from __future__ import annotations

import argparse
import json
import sys

from storage.db import Database, DatabaseUnavailable
from vms.config import load_settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cluster", help="scale-out: nodes, roles, cameras per node")
    csub = p.add_subparsers(dest="cluster_command", required=True)
    st = csub.add_parser("status", help="nodes, load, cameras per node, unplaced cameras")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from vms.cluster.status import cluster_status, format_status

    settings = load_settings()
    db = Database(settings.database_url, settings.database.connect_timeout_s)
    try:
        db.open()
        with db.session() as s:
            status = cluster_status(s, settings.cluster.lease_ttl_s)
    except DatabaseUnavailable as exc:
        print(f"vms: {exc}", file=sys.stderr)
        return 3
    finally:
        db.close()
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0
