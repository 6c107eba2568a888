"""Engine, sessions and schema migration.

The server uses the synchronous SQLAlchemy API: FastAPI runs ``def`` handlers
in its thread pool, and asyncio components call :func:`Database.run` so the
event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class DatabaseUnavailable(Exception):
    """The database cannot be reached or opened; the message says which and why."""


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url


@dataclass(frozen=True)
class PoolLimits:
    """Connections the pool keeps, may add under load, and how long a checkout may wait.

    The API's concurrency limits are sized under ``size + overflow`` (``api.limits``), so
    the pool is never what requests queue on; a checkout that still times out is a 503.
    """

    size: int = 20
    overflow: int = 20
    timeout_s: float = 10.0


def make_engine(
    url: str,
    connect_timeout_s: float = 5.0,
    echo: bool = False,
    pool: PoolLimits | None = None,
) -> Engine:
    pool = pool or PoolLimits()
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    pooled = {"pool_size": pool.size, "max_overflow": pool.overflow, "pool_timeout": pool.timeout_s}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        path = make_url(url).database  # None or "" for an in-memory database
        if path and path != ":memory:" and not path.startswith("file:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs.update(pooled)  # a file: a queue pool (in-memory ones keep their own)
    elif url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": max(1, int(connect_timeout_s))}
        kwargs["pool_pre_ping"] = True
        kwargs.update(pooled)
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    return engine


def check_connection(engine: Engine) -> None:
    """Fail fast, with one clear line, when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (OperationalError, SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise DatabaseUnavailable(
            f"database unreachable at {_redact(str(engine.url))}: {reason}"
        ) from None


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())


class Database:
    """The node's database: engine, session factory and helpers."""

    def __init__(
        self,
        url: str,
        connect_timeout_s: float = 5.0,
        echo: bool = False,
        pool: PoolLimits | None = None,
    ) -> None:
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self.engine = make_engine(url, connect_timeout_s, echo, pool)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._health: Engine | None = None
        self._health_lock = threading.Lock()

    def open(self, run_migrations: bool = True) -> None:
        check_connection(self.engine)
        if run_migrations:
            migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()
        if self._health is not None:
            self._health.dispose()
            self._health = None

    def ping(self) -> None:
        """``SELECT 1`` on a connection of its own: a health probe never queues on the pool."""
        with self._health_lock:
            if self._health is None:
                self._health = make_engine(
                    self.url, self.connect_timeout_s, pool=PoolLimits(1, 0, self.connect_timeout_s)
                )
            with self._health.connect() as conn:
                conn.execute(text("SELECT 1"))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        with self.sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in a worker thread inside one transaction."""

        def call() -> T:
            with self.session() as s:
                return fn(s)

        return await asyncio.to_thread(call)
