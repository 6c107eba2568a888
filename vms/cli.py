"""``vms`` command line: serve, demo, admin, sim-device, models, eval."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from vms.commands import COMMAND_MODULES
from vms.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vms", description="GB28181 VMS and AI analytics server")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"vms: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
