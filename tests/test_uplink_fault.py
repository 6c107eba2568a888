"""Acceptance 2: the receiver is down (refusing, then timing out, then answering 500) while
1,000 alarms and their clears are produced over several cameras, and the node is killed
with SIGKILL and restarted in the middle.  When the receiver comes back it must hold every
ALARM_ID/status pair at least once, in order per camera, each with a picture that decodes.

The node is this module run as a child process (``python -m tests.test_uplink_fault child``):
an AlarmService + uplink sender on the same SQLite file and object-store folder.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from storage.db import Database
from storage.models import Alarm, OutboxItem, OutboxState
from vms.uplink.receiver import Receiver, free_port

from .alarms_support import make_settings, seed_site, small_jpeg

REPO = Path(__file__).resolve().parent.parent
ALARMS = 1000
CAMERAS = 5
CLEAR_LAG = 3  # alarm i is cleared right after alarm i + CLEAR_LAG is raised
NS = uuid.UUID("6f1c2a4e-0d7b-4e55-9a53-3b1c1f0e9a10")
BASE = datetime(2026, 11, 25, 1, 0, 0, tzinfo=UTC)


def planned_events(cameras: list[str], n: int) -> list[tuple[str, int, str, datetime]]:
    """(alarm_id, status, camera, at) in production order; the same in every process."""
    out: list[tuple[str, int, str, datetime]] = []

    def alarm(i: int) -> tuple[str, str]:
        return str(uuid.uuid5(NS, f"alarm-{i}")), cameras[i % len(cameras)]

    for i in range(n + CLEAR_LAG):
        if i < n:
            aid, cam = alarm(i)
            out.append((aid, 1, cam, BASE + timedelta(seconds=2 * i)))
        j = i - CLEAR_LAG
        if j >= 0:
            aid, cam = alarm(j)
            out.append((aid, 0, cam, BASE + timedelta(seconds=2 * i + 1)))
    return out


# --- the child node -------------------------------------------------------------------


async def child_main(args: argparse.Namespace) -> None:
    from analyzers.events import AlarmEvent, AlarmStatus
    from storage.objects import LocalObjectStore
    from vms.alarm_component import AlarmComponent
    from vms.services import Services

    settings = make_settings(
        Path(args.tmp),
        [{"name": "province", "table4_url": args.url, "timeout_s": 0.3}],
    )
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    component = AlarmComponent(services, spool_retry_s=0.2)
    await component.start()
    image = Path(args.image).read_bytes()
    cameras = args.cameras.split(",")

    with db.session() as s:
        done = {a: active for a, active in s.execute(select(Alarm.alarm_id, Alarm.active))}
    per_camera: dict[str, list[AlarmEvent]] = defaultdict(list)
    for aid, st, cam, at in planned_events(cameras, args.n):
        if (st == 1 and aid in done) or (st == 0 and done.get(aid) is False):
            continue  # committed before the kill
        per_camera[cam].append(
            AlarmEvent(aid, AlarmStatus(st), cam, "enterprise", "no_helmet", "9", at, image)
        )

    async def produce(events: list[AlarmEvent]) -> None:
        for ev in events:
            await services.alarms.handle(ev)

    await asyncio.gather(*(produce(evs) for evs in per_camera.values()))
    (Path(args.tmp) / f"produced-{os.getpid()}").write_text("done")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await component.stop()
    db.close()


# --- the test ---------------------------------------------------------------------------


def _spawn(tmp: Path, url: str, image: Path, cameras: list[str], log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tests.test_uplink_fault", "child", "--tmp", str(tmp)]
    cmd += ["--url", url, "--image", str(image), "--cameras", ",".join(cameras)]
    cmd += ["--n", str(ALARMS)]
    return subprocess.Popen(
        cmd, cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _committed(db: Database) -> int:
    with db.session() as s:
        raised = s.scalar(select(func.count()).select_from(Alarm)) or 0
        cleared = s.scalar(select(func.count()).where(Alarm.active.is_(False))) or 0
    return raised + cleared


def _wait(pred, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"node exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_outage_and_sigkill_lose_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.open()
    cameras = seed_site(db, cameras=CAMERAS).cameras
    image = tmp_path / "snapshot.jpg"
    image.write_bytes(small_jpeg())
    receiver = Receiver(port=free_port())  # not started: connections are refused
    url = receiver.url("table4")
    log = tmp_path / "node.log"
    total = 2 * ALARMS
    procs: list[subprocess.Popen] = []
    try:
        # phase 1: receiver refusing; kill the node with SIGKILL mid-production
        first = _spawn(tmp_path, url, image, cameras, log)
        procs.append(first)
        _wait(lambda: _committed(db) >= total * 0.35, 40, "35% committed", first)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        at_kill = _committed(db)
        assert at_kill < total, "the kill must land mid-production"

        # phase 2: receiver accepts but never answers (client timeouts); node restarted
        receiver.set_mode("hang")
        receiver.start()
        second = _spawn(tmp_path, url, image, cameras, log)
        procs.append(second)
        _wait(lambda: (tmp_path / f"produced-{second.pid}").exists(), 60, "production", second)
        _wait(lambda: receiver.hung > 0, 10, "a timed-out post", second)

        # phase 3: receiver answers 500
        receiver.set_mode("error")
        _wait(lambda: receiver.rejected > 0, 10, "a 500 answer", second)
        time.sleep(0.5)

        # phase 4: receiver back
        receiver.set_mode("ok")

        def pairs() -> set[tuple[str, str]]:
            return {(r.fields["ALARM_ID"], r.fields["ALARM_STATUS"]) for r in receiver.snapshot()}

        _wait(lambda: len(pairs()) >= total, 60, "every alarm and clear delivered", second)
        received = receiver.snapshot()
        dupes = len(received) - len(pairs())
        print(
            f"\nuplink fault test: produced {total} records ({ALARMS} alarms + {ALARMS} clears) "
            f"on {CAMERAS} cameras; committed {at_kill} before SIGKILL; receiver refused, "
            f"timed out {receiver.hung}x, answered 500 {receiver.rejected}x; delivered "
            f"{len(pairs())} distinct ALARM_ID/status pairs in {len(received)} posts "
            f"({dupes} duplicates)"
        )
        expected = planned_events(cameras, ALARMS)
        assert pairs() == {(a, str(st)) for a, st, _, _ in expected}
        assert all(r.errors == [] for r in received), [r.errors for r in received if r.errors][:3]
        assert all(r.image for r in received)
        counts = Counter(r.fields["ALARM_STATUS"] for r in received)
        assert counts["1"] >= ALARMS and counts["0"] >= ALARMS
        for cam in cameras:
            want = [(a, str(st)) for a, st, c, _ in expected if c == cam]
            seen: list[tuple[str, str]] = []
            for r in received:
                pair = (r.fields["ALARM_ID"], r.fields["ALARM_STATUS"])
                if r.fields["VIDEO_CODE"] == cam and pair not in seen:
                    seen.append(pair)
            assert seen == want, f"camera {cam} out of order"

        def settled() -> bool:
            with db.session() as s:
                rows = s.execute(
                    select(OutboxItem.state, func.count()).group_by(OutboxItem.state)
                ).all()
            return dict(rows) == {OutboxState.sent: total}

        _wait(settled, 10, "outbox fully sent", second)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        receiver.stop()
        db.close()
    if second.returncode not in (0, -signal.SIGTERM):
        raise AssertionError(f"node exit {second.returncode}: {log.read_text()[-2000:]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["child"])
    parser.add_argument("--tmp", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--cameras", required=True)
    parser.add_argument("--n", type=int, default=ALARMS)
    asyncio.run(child_main(parser.parse_args()))
