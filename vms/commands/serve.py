"""``vms serve`` and ``vms demo``."""

from __future__ import annotations

import argparse
import os
import sys

from storage.db import DatabaseUnavailable
from storage.objects import ObjectStoreError
from vms.app import Application, ComponentFactory, StartupError, open_services
from vms.components import ROLES
from vms.config import load_settings
from vms.logging import get_logger, setup_logging
from vms.runtime import run

log = get_logger("vms.serve")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run SIP + media + API in one process (or one role)")
    p.add_argument(
        "--role",
        choices=ROLES,
        default=None,
        help="which part of a scaled-out installation this node runs (default: "
        "cluster.role, i.e. all); see README, Scale-out",
    )
    p.set_defaults(func=cmd_serve)
    d = sub.add_parser("demo", help="serve with simulated NVRs and a seeded demo organisation")
    d.set_defaults(func=cmd_demo)


def _serve(extra: list[ComponentFactory], seed: bool, role: str | None = None) -> int:
    if role is not None:
        os.environ["VMS_CLUSTER__ROLE"] = role  # over the file, like any VMS_ variable
    settings = load_settings()
    setup_logging(settings.server.log_level, settings.server.log_json)
    try:
        services = open_services(settings)
    except (DatabaseUnavailable, ObjectStoreError) as exc:
        print(f"vms: cannot start: {exc}", file=sys.stderr)
        return 3
    if seed:
        from vms.demo import seed_demo

        seed_demo(services)
    try:
        run(Application(services, extra, role=settings.cluster.role).run())
    except StartupError as exc:
        print(f"vms: cannot start: {exc}", file=sys.stderr)
        return 3
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    return _serve([], seed=False, role=args.role)


def cmd_demo(args: argparse.Namespace) -> int:
    from vms.demo import demo_components

    return _serve(demo_components(), seed=True)
