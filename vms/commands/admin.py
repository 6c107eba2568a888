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


def cmd_create_user(args: argparse.Namespace) -> int:
    from api.security import hash_password

    settings = load_settings()
    if args.password_env:
        password = os.environ.get(args.password_env, "")
    else:
        password = getpass.getpass("password: ")
    if len(password) < 8:
        print("vms: password must have at least 8 characters", file=sys.stderr)
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
        user.password_hash = hash_password(password)
        user.role = Role(args.role)
        user.org_id = args.org
    print(f"user {args.username} ({args.role}) saved")
    db.close()
    return 0
