"""The segment index and retention on both databases (SQLite and PostgreSQL): timezone-aware
times, window queries, gap rows, deletion of rows and objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sip.channel_ref import ChannelRef
from storage.db import Database
from storage.objects import LocalObjectStore
from vms.recording.index import rows_between, store_gap, store_segment
from vms.recording.retention import prune
from vms.recording.writer import ChannelWriter, GapInfo

from .recording_support import encode_clip

CH = "34010000001320000041"
CAM = ChannelRef("34010000001180000041", CH)


def test_index_and_retention(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url)
    db.open()
    objects = LocalObjectStore(tmp_path / "objects")
    try:
        t0 = datetime(2026, 11, 25, 0, 0, tzinfo=UTC).timestamp()
        writer = ChannelWriter(
            CAM,
            tmp_path / "spool",
            2.0,
            5.0,
            lambda info: store_segment(db, objects, info),
            lambda gap: store_gap(db, gap),
        )
        units = encode_clip().access_units(CH, t0)
        for unit in units[:100]:
            writer.handle(unit)
        writer.close()
        store_gap(db, GapInfo(CAM, t0 + 4, t0 + 9, "stream-lost"))
        writer2 = ChannelWriter(
            CAM,
            tmp_path / "spool",
            2.0,
            5.0,
            lambda info: store_segment(db, objects, info),
            lambda gap: store_gap(db, gap),
        )
        for unit in encode_clip().access_units(CH, t0 + 9)[:50]:
            writer2.handle(unit)
        writer2.close()

        base = datetime.fromtimestamp(t0, UTC)
        with db.session() as s:
            rows = rows_between(s, CAM, base, base + timedelta(seconds=60))
            assert [(r.start - base).total_seconds() for r in rows] == [0, 2, 4, 9]
            assert [r.is_gap for r in rows] == [False, False, True, False]
            assert all(r.start.tzinfo is not None for r in rows)
            assert rows_between(s, CAM, base + timedelta(seconds=3), base + timedelta(seconds=5))[
                0
            ].start == base + timedelta(seconds=2)
            assert (
                rows_between(
                    s,
                    ChannelRef(CAM.device_id, "34010000001320000042"),
                    base,
                    base + timedelta(hours=1),
                )
                == []
            )
            # the same channel id under another device is another camera: none of these rows
            other = ChannelRef("34010000001180000042", CH)
            assert rows_between(s, other, base, base + timedelta(hours=1)) == []
            keys = [r.object_key for r in rows if not r.is_gap]
        assert all(objects.exists(k) for k in keys)

        result = prune(db, objects, base + timedelta(hours=1, seconds=5), 1.0)
        assert (result.expired, result.gaps) == (2, 1)
        with db.session() as s:
            left = rows_between(s, CAM, base, base + timedelta(seconds=60))
        assert [(r.start - base).total_seconds() for r in left] == [9]
        assert [objects.exists(k) for k in keys] == [False, False, True]
    finally:
        db.close()
