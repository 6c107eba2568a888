"""``vms sim-sensors``: a simulated enterprise sensor gateway with a scripted gas leak.

It serves its tank-area points over Modbus TCP, publishes its warehouse points to an MQTT
broker and pushes its loading-rack points, sealed with the issued key, to
``POST /api/ingest/push`` — each part only when asked for.  ``--print-points`` lists the
points with their sources, to configure the matching gateway and sensors.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

from vms.config import load_settings
from vms.logging import get_logger, setup_logging
from vms.runtime import run

if TYPE_CHECKING:  # the simulator's imports (pymodbus, httpx) load only when it runs
    from vms.ingest.sim.gateway import SimOptions

log = get_logger("vms.sim_sensors")

IDENT_ENV = "SIM_SENSORS_IDENT"
KEY_ENV = "SIM_SENSORS_KEY"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "sim-sensors",
        help="run a simulated sensor gateway (Modbus TCP server, MQTT publisher, HTTP pusher)",
    )
    m = p.add_argument_group("Modbus TCP server (tank area)")
    m.add_argument("--modbus-host", default="127.0.0.1")
    m.add_argument("--modbus-port", type=int, default=5020, help="0: any free port; -1: off")
    m.add_argument("--unit-id", type=int, default=0, help="slave id answered (0: any)")
    q = p.add_argument_group("MQTT publisher (warehouse)")
    q.add_argument("--mqtt-host", default="", help="broker address (default: no MQTT)")
    q.add_argument("--mqtt-port", type=int, default=1883)
    q.add_argument("--mqtt-user", default="")
    q.add_argument("--mqtt-password-env", default="", help="variable holding the password")
    q.add_argument("--mqtt-topic", default="plant/demo", help="topic prefix")
    q.add_argument("--mqtt-period", type=float, default=5.0, help="seconds between publishes")
    h = p.add_argument_group("HTTP pusher (loading rack)")
    h.add_argument("--push-url", default="", help="e.g. http://127.0.0.1:8000/api/ingest/push")
    h.add_argument("--ident", default=None, help=f"identification code (default: ${IDENT_ENV})")
    h.add_argument(
        "--key-env", default=KEY_ENV, help=f"variable holding the base64 key (default: {KEY_ENV})"
    )
    h.add_argument("--push-period", type=float, default=5.0, help="seconds between pushes")
    g = p.add_argument_group("scripted gas leak (on GT-101)")
    g.add_argument("--leak-start", type=float, default=60.0, help="seconds after start")
    g.add_argument("--leak-rise", type=float, default=180.0, help="seconds from 0 to the peak")
    g.add_argument("--leak-hold", type=float, default=180.0, help="seconds at the peak")
    g.add_argument("--leak-fall", type=float, default=180.0, help="seconds back to 0")
    g.add_argument("--leak-peak", type=float, default=65.0, help="%%LEL added at the peak")
    g.add_argument("--leak-repeat", type=float, default=0.0, help="start again every N s (0: once)")
    p.add_argument("--tick", type=float, default=1.0, help="seconds between value updates")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--print-points", action="store_true", help="print the points as JSON, exit")
    p.set_defaults(func=cmd_sim_sensors)


def _options(args: argparse.Namespace, timezone: str) -> SimOptions:
    from vms.ingest.sim.gateway import SimOptions
    from vms.ingest.sim.values import LeakRamp

    leak = LeakRamp(
        args.leak_start,
        args.leak_rise,
        args.leak_hold,
        args.leak_fall,
        args.leak_peak,
        args.leak_repeat,
    )
    ident = args.ident if args.ident is not None else os.environ.get(IDENT_ENV, "")
    key = os.environ.get(args.key_env, "") if args.key_env else ""
    if args.push_url:
        if not ident or not key:
            raise ValueError(
                f"--push-url needs --ident (or ${IDENT_ENV}) and the key in ${args.key_env}"
            )
        try:
            if len(base64.b64decode(key, validate=True)) != 32:
                raise ValueError
        except (binascii.Error, ValueError):
            raise ValueError(f"${args.key_env} must be a base64 256-bit key") from None
    if not 0 <= args.unit_id <= 255:
        raise ValueError("--unit-id must be 0..255")
    return SimOptions(
        modbus_host=args.modbus_host,
        modbus_port=None if args.modbus_port < 0 else args.modbus_port,
        unit_id=args.unit_id,
        mqtt_host=args.mqtt_host,
        mqtt_port=args.mqtt_port,
        mqtt_username=args.mqtt_user,
        mqtt_password=os.environ.get(args.mqtt_password_env, "") if args.mqtt_password_env else "",
        mqtt_topic=args.mqtt_topic.rstrip("/"),
        mqtt_period_s=args.mqtt_period,
        push_url=args.push_url,
        push_ident=ident,
        push_key=key,
        push_period_s=args.push_period,
        tick_s=args.tick,
        leak=leak,
        seed=args.seed,
        timezone=timezone,
    )


def points_json(options: SimOptions) -> str:
    from vms.ingest.sim.plant import plant_points

    rows = [
        {
            "tag": p.tag,
            "name": p.name,
            "kind": p.kind,
            "unit": p.unit,
            "range": [p.low, p.high],
            "thresholds": p.thresholds,
            "installation": p.installation,
            "transport": p.transport,
            "source": p.source,
        }
        for p in plant_points(options.leak, mqtt_prefix=options.mqtt_topic)
    ]
    return json.dumps(rows, ensure_ascii=False, indent=2)


async def _run(options: SimOptions) -> None:
    from vms.ingest.sim.gateway import SimulatedGateway

    gateway = SimulatedGateway(options)
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await gateway.stop()


def cmd_sim_sensors(args: argparse.Namespace) -> int:
    settings = load_settings()
    setup_logging(settings.server.log_level, settings.server.log_json)
    try:
        options = _options(args, settings.server.timezone)
    except ValueError as exc:
        print(f"vms sim-sensors: {exc}", file=sys.stderr)
        return 2
    if args.print_points:
        print(points_json(options))
        return 0
    try:
        run(_run(options))
    except OSError as exc:  # the Modbus port is taken, the address is not ours
        print(f"vms sim-sensors: cannot start: {exc}", file=sys.stderr)
        return 3
    return 0
