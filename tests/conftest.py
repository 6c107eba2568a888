"""Shared fixtures: settings in a temp folder, databases (SQLite and PostgreSQL), an API client."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.db import Database
from storage.objects import LocalObjectStore
from vms.config import Settings, load_settings
from vms.services import Services

from .pg import PrivatePostgres

_db_counter = itertools.count(1)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's vms.toml or VMS_* variables."""
    for key in list(os.environ):
        if key.startswith("VMS_") and key != "VMS_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("VMS_CONFIG", str(tmp_path / "absent.toml"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PrivatePostgres | str]:
    url = os.environ.get("VMS_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    pg = PrivatePostgres()
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def postgres_url(postgres_server: PrivatePostgres | str) -> str:
    if isinstance(postgres_server, str):
        return postgres_server
    return postgres_server.create_database(f"vms_test_{os.getpid()}_{next(_db_counter)}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a storage test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        server={"data_dir": tmp_path / "data"},
        sip={"host": "127.0.0.1", "port": 0, "password": "test-device-pass"},  # no default one
        auth={"jwt_secret": "test-secret-not-for-production-0123456789"},
    )


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.open()
    yield db
    db.close()


@pytest.fixture
def services(settings: Settings, database: Database) -> Services:
    return Services(settings=settings, db=database, objects=LocalObjectStore(settings.objects_path))
