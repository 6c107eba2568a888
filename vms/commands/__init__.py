"""Subcommands of ``vms``: each module has ``register(subparsers)``."""

COMMAND_MODULES = [
    "vms.commands.serve",
    "vms.commands.admin",
    "vms.commands.models",
    "vms.commands.eval",
    "vms.commands.sim_device",
    "vms.commands.sim_sensors",
    "vms.commands.cluster",
]
