"""The supervision component in the node: its loop brings the figures up to date and makes
due reports at start, a catalog update on the bus dates a channel going OFF at once, and it
stops cleanly; disabled by settings, it is not started."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from storage.models import Channel, DeviceEvent
from storage.objects import LocalObjectStore
from storage.sensor_models import OfflineDaily, SupervisionReport
from vms.app import component_factories
from vms.services import Services
from vms.supervision.channels import CHANNEL_OFF
from vms.supervision.component import SupervisionComponent, supervision_factory

from .supervision_support import make_settings, open_db, seed_tree


async def _until(
    predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_component_runs_the_job_and_follows_catalog_updates(
    tmp_path: Path, db_url: str
) -> None:
    settings = make_settings(tmp_path, db_url, interval_s=3600)
    db = open_db(settings)
    tree = seed_tree(db)
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    component = supervision_factory(services)
    assert isinstance(component, SupervisionComponent)
    assert services.supervision is component.service
    await component.start()
    try:

        def count(model: type) -> int:
            with db.session() as s:
                return len(s.scalars(select(model.id)).all())

        # the first run: figures, then the newest weekly and monthly reports already due
        await _until(lambda: count(SupervisionReport) == 2, what="the first run's reports")
        assert count(OfflineDaily) > 0 and services.supervision.figures_at is not None
        with db.session() as s:
            ch = s.get(Channel, tree.channel_pks[tree.cameras["e3"][0]])
            assert ch is not None
            ch.status = "OFF"
        before = datetime.now(UTC)
        services.events.publish("catalog.updated", device_id="x", org_id=tree.e3, channels=1)

        def off_events() -> list[DeviceEvent]:
            with db.session() as s:
                return list(s.scalars(select(DeviceEvent).where(DeviceEvent.kind == CHANNEL_OFF)))

        await _until(lambda: off_events(), what="channel.off event")
        (event,) = off_events()
        assert event.detail["channel_id"] == tree.cameras["e3"][0]
        assert abs(event.at - before) < timedelta(minutes=1)  # dated by the row's updated_at
    finally:
        await component.stop()
        db.close()
    assert component.service._tasks == []


def test_disabled_supervision_is_not_started(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, enabled=False)
    services = Services(settings, None, None)  # type: ignore[arg-type]
    assert supervision_factory(services) is None
    assert supervision_factory in component_factories()
