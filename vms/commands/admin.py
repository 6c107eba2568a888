"""``vms admin create-user``: users from the command line (the first admin, scripts)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from sqlalchemy import select

from storage.db import Database, DatabaseUnavailable
from storage.models import Organisation, Role, User
from vms.config import load_settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("admin", help="administration")
    asub = p.add_subparsers(dest="admin_command", required=True)
    c = asub.add_parser("create-user", help="create or reset a user")
    c.add_argument("username")
    c.add_argument("--role", choices=[r.value for r in Role], default="admin")
    c.add_argument("--org", type=int, default=None, help="organisation id (scope)")
    c.add_argument(
        "--password-env",
        default="",
        help="read the password from this environment variable (default: prompt)",
    )
    c.set_defaults(func=cmd_create_user)
    v = asub.add_parser(
        "verify-audit", help="recompute the audit trail's hash chain (exit 1 when broken)"
    )
    v.set_defaults(func=cmd_verify_audit)


def _open_db() -> Database | None:
    settings = load_settings()
    db = Database(settings.database_url, settings.database.connect_timeout_s)
    try:
        db.open()
    except DatabaseUnavailable as exc:
        print(f"vms: {exc}", file=sys.stderr)
        return None
    return db


def cmd_verify_audit(args: argparse.Namespace) -> int:
    """At the node's console, for an auditor who trusts neither the API nor its admins."""
    import json

    from storage.audit_models import verify

    db = _open_db()
    if db is None:
        return 3
    with db.session() as s:
        report = verify(s)
    db.close()
    print(json.dumps(report.as_dict()))
    return 0 if report.ok else 1


def cmd_create_user(args: argparse.Namespace) -> int:
    from storage.accounts import set_password, unlock
    from storage.passwords import password_problem

    settings = load_settings()
    if args.password_env:
        password = os.environ.get(args.password_env, "")
    else:
        password = getpass.getpass("password: ")
    problem = password_problem(password, args.username, settings.auth.password_min_length)
    if problem is not None:
        print(f"vms: {problem}", file=sys.stderr)
        return 2
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url, settings.database.connect_timeout_s)
    try:
        db.open()
    except DatabaseUnavailable as exc:
        print(f"vms: {exc}", file=sys.stderr)
        return 3
    with db.session() as s:
        if args.org is not None and s.get(Organisation, args.org) is None:
            print(f"vms: organisation {args.org} does not exist", file=sys.stderr)
            return 2
        user = s.scalar(select(User).where(User.username == args.username))
        if user is None:
            user = User(username=args.username, password_hash="", role=Role(args.role))
            s.add(user)
        # Typed at the node's console by whoever will use it (the first admin, a script's
        # own account): the owner's password, so no forced change; a reset unlocks the
        # account and revokes the tokens it held.
        set_password(user, password, by_owner=True)
        unlock(user)
        user.role = Role(args.role)
        user.org_id = args.org
    print(f"user {args.username} ({args.role}) saved")
    db.close()
    return 0
