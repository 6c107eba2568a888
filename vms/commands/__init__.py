"""Subcommands of ``vms``: each module has ``register(subparsers)``."""

COMMAND_MODULES = [
    "vms.commands.serve",
    "vms.commands.admin",
]
