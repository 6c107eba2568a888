"""Bulk insert of readings: PostgreSQL binary ``COPY`` through psycopg, ``executemany`` on SQLite.

The ORM costs tens of microseconds per row; a county sends thousands of readings a second,
so rows go to the driver as plain tuples, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, select

from storage.sensor_models import Reading

ReadingRow = tuple[int, datetime, float, int]  # sensor_pk, at (UTC, aware), value, quality

COLUMNS = "sensor_pk, at, value, quality"
SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # what SQLAlchemy's SQLite DateTime stores


def write_readings(conn: Connection, rows: Sequence[ReadingRow]) -> None:
    """Append ``rows`` to ``readings`` in the connection's open transaction."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        _copy_postgres(conn, rows)
    else:
        conn.exec_driver_sql(
            f"INSERT INTO readings ({COLUMNS}) VALUES (?, ?, ?, ?)",
            [(pk, _sqlite_time(at), value, quality) for pk, at, value, quality in rows],
        )


def write_readings_if_absent(conn: Connection, rows: Sequence[ReadingRow]) -> list[ReadingRow]:
    """Append the rows whose (point, time) is not stored yet; the ones appended.

    For rows not newer than their point's latest reading (late data, or a batch resent
    after a restart, when the in-memory duplicate check is empty): rare, so one indexed
    lookup each is cheap, and a resent batch never doubles the history.
    """
    table = Reading.__table__
    fresh = [
        row
        for row in rows
        if conn.execute(
            select(1).where(table.c.sensor_pk == row[0], table.c.at == row[1]).limit(1)
        ).first()
        is None
    ]
    write_readings(conn, fresh)
    return fresh


def _sqlite_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime(SQLITE_FORMAT)


def _copy_postgres(conn: Connection, rows: Sequence[ReadingRow]) -> None:
    raw = conn.connection.driver_connection  # the psycopg connection, same transaction
    with (
        raw.cursor() as cur,  # type: ignore[union-attr]
        cur.copy(f"COPY readings ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(["int4", "timestamptz", "float8", "int2"])
        for row in rows:
            copy.write_row(row)
