"""Bulk insert of readings: PostgreSQL binary ``COPY`` through psycopg, ``executemany`` on SQLite.

The ORM costs tens of microseconds per row; a county sends thousands of readings a second,
so rows go to the driver as plain tuples, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection

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
