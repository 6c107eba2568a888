"""``vms sim-device``: run simulated GB28181 NVRs against a SIP server (ours or another)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from sip import ids
from vms.config import load_settings
from vms.logging import get_logger, setup_logging
from vms.runtime import run

log = get_logger("vms.sim_device")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sim-device", help="run simulated NVRs that register with a SIP server")
    p.add_argument("--count", type=int, default=1, help="number of NVRs")
    p.add_argument("--channels", type=int, default=4, help="channels per NVR")
    p.add_argument("--server-host", default=None, help="default: sip.host")
    p.add_argument("--server-port", type=int, default=None, help="default: sip.port")
    p.add_argument("--server-id", default=None, help="default: sip.server_id")
    p.add_argument("--domain", default=None, help="default: sip.domain")
    p.add_argument("--password", default=None, help="digest password (default: sip.password)")
    p.add_argument(
        "--password-env",
        default="",
        help="read the password from this environment variable (not shown in ps)",
    )
    p.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    p.add_argument("--first-id", default="34020000001180000001", help="id of the first NVR")
    p.add_argument("--keepalive", type=float, default=60.0, help="keepalive interval, seconds")
    p.add_argument("--expires", type=int, default=3600)
    p.add_argument("--video", type=Path, default=None, help="H.264 (or any) video file to stream")
    p.add_argument("--codec", choices=["h264", "h265"], default="h264", help="video in the PS")
    p.add_argument(
        "--audio", choices=["", "pcma", "pcmu", "aac"], default="", help="audio in the PS (a tone)"
    )
    p.add_argument("--local-host", default="127.0.0.1", help="address the NVRs bind to")
    p.set_defaults(func=cmd_sim_device)


def device_ids(first: str, count: int) -> list[str]:
    try:
        gb = ids.GbId(first)
    except ids.InvalidGbId:
        raise ValueError("--first-id must be 20 digits") from None
    serial = int(gb.serial)
    if serial + count > 10**7:
        raise ValueError(f"--first-id serial {gb.serial} + --count {count} runs past 7 digits")
    return [str(ids.GbId.build(gb.domain, gb.type_code, serial + i)) for i in range(count)]


async def _run(args: argparse.Namespace) -> None:
    from simdevice.nvr import NvrConfig, SimulatedNvr

    nvrs = [
        SimulatedNvr(
            NvrConfig(
                device_id=dev,
                server_id=args.server_id,
                server_domain=args.domain,
                server_host=args.server_host,
                server_port=args.server_port,
                password=args.password,
                transport=args.transport,
                channels=args.channels,
                keepalive_interval_s=args.keepalive,
                expires_s=args.expires,
                video=args.video,
                codec=args.codec,
                audio=args.audio,
                local_host=args.local_host,
            )
        )
        for dev in device_ids(args.first_id, args.count)
    ]
    for nvr in nvrs:
        await nvr.start()
    log.info(
        "simulated NVRs running", count=len(nvrs), server=f"{args.server_host}:{args.server_port}"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await asyncio.gather(*(n.stop() for n in nvrs), return_exceptions=True)


def cmd_sim_device(args: argparse.Namespace) -> int:
    settings = load_settings()
    setup_logging(settings.server.log_level, settings.server.log_json)
    sip = settings.sip
    if args.server_host is None:
        args.server_host = sip.host if sip.host not in ("0.0.0.0", "") else "127.0.0.1"
    args.server_port = args.server_port or sip.port
    args.server_id = args.server_id or sip.server_id
    args.domain = args.domain or sip.domain
    if args.password_env:
        args.password = os.environ.get(args.password_env, "")
    elif args.password is None:
        args.password = sip.password
    if not args.password:  # there is no default device password
        print("vms sim-device: no password: give --password(-env) or set sip.password")
        return 2
    try:
        device_ids(args.first_id, args.count)
    except ValueError as exc:
        print(f"vms sim-device: {exc}")
        return 2
    run(_run(args))
    return 0
