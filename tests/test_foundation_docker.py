"""docker/: the compose file's structure and env wiring, and the Dockerfile's promises.

No Docker engine runs in CI, so the files are checked as data: the compose file must
parse, wire every setting the server reads to a real ``VMS_*`` setting that validates, and
take its secrets only from ``docker/.env`` (git-ignored; ``.env.example`` documents it).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vms.config import load_settings

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yml").read_text())


def _env_example() -> dict[str, str]:
    values = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _interpolate(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        assert m.group(1) in env, f"${{{m.group(1)}}} is not in docker/.env.example"
        return env[m.group(1)]

    return VAR.sub(sub, value)


def test_compose_has_server_postgres_and_minio(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"vms", "postgres", "minio"}
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["minio"]["image"].startswith("minio/minio:")
    vms = services["vms"]
    assert (DOCKER / vms["build"]["context"] / vms["build"]["dockerfile"]).resolve() == (
        DOCKER / "Dockerfile"
    )
    for dep in ("postgres", "minio"):
        assert vms["depends_on"][dep]["condition"] == "service_healthy"
        assert services[dep]["healthcheck"]["test"]
    assert set(compose["volumes"]) >= {"vms-data", "pg-data", "minio-data"}


def test_compose_env_is_wired_to_real_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = compose["services"]["vms"]["environment"]
    example = _env_example()
    resolved = {k: _interpolate(str(v), example) for k, v in env.items()}
    assert resolved["VMS_OBJECTS__BACKEND"] == "s3"
    assert resolved["VMS_OBJECTS__ENDPOINT"] == "minio:9000"
    db_url = resolved["VMS_DATABASE__URL"]
    assert db_url.startswith("postgresql+psycopg://vms:") and "@postgres:5432/vms" in db_url
    pg_env = compose["services"]["postgres"]["environment"]
    assert pg_env["POSTGRES_USER"] == "vms" and pg_env["POSTGRES_DB"] == "vms"
    minio_env = compose["services"]["minio"]["environment"]
    assert env["VMS_OBJECTS__ACCESS_KEY"] == minio_env["MINIO_ROOT_USER"]
    assert env["VMS_OBJECTS__SECRET_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]
    # Every variable names a real setting, and the whole set validates.
    for key, value in resolved.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.objects.backend == "s3" and settings.database_url == db_url
    assert settings.media.rtp_port_min == 30000 and settings.media.rtp_port_max == 30099


def test_compose_secrets_come_from_the_env_file(compose: dict[str, Any]) -> None:
    secret_names = ("PASSWORD", "SECRET", "ACCESS_KEY", "ROOT_USER")
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(s in key for s in secret_names):
                assert VAR.search(str(value)), f"{name}.{key} is a literal secret"
    assert _git_ignored("docker/.env"), "docker/.env must be git-ignored"
    assert not _git_ignored("docker/.env.example")


def _git_ignored(path: str) -> bool:
    try:
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, timeout=30)
    except FileNotFoundError:  # no git: read .gitignore ourselves
        result = None
    if result is None or result.returncode not in (0, 1):  # not a git checkout
        patterns = (REPO / ".gitignore").read_text().split()
        return Path(path).name in patterns or path in patterns
    return result.returncode == 0


def test_compose_publishes_the_ports_the_server_uses(compose: dict[str, Any]) -> None:
    ports = compose["services"]["vms"]["ports"]
    for port in ("8000:8000/tcp", "5060:5060/udp", "5060:5060/tcp"):
        assert port in ports
    env = compose["services"]["vms"]["environment"]
    rtp = f"{env['VMS_MEDIA__RTP_PORT_MIN']}-{env['VMS_MEDIA__RTP_PORT_MAX']}"
    assert f"{rtp}:{rtp}/udp" in ports
    assert all(p.startswith("127.0.0.1:") for p in compose["services"]["minio"].get("ports", []))


def test_dockerfile(compose: dict[str, Any]) -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim-bookworm\s*$", text, re.M)
    assert "ffmpeg" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    exposed = " ".join(re.findall(r"^EXPOSE (.+)$", text, re.M)).split()
    env = compose["services"]["vms"]["environment"]
    rtp = f"{env['VMS_MEDIA__RTP_PORT_MIN']}-{env['VMS_MEDIA__RTP_PORT_MAX']}"
    assert {"8000/tcp", "5060/udp", "5060/tcp", f"{rtp}/udp"} <= set(exposed)
    assert '"vms"]' in text and 'CMD ["serve"]' in text
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", "var", ".git"} <= set(ignore)


def test_cluster_compose_runs_each_role_on_the_shared_engines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = yaml.safe_load((DOCKER / "compose.cluster.yml").read_text())
    services = cluster["services"]
    assert {"control", "media-1", "media-2", "analyzer", "nats", "postgres", "minio"} <= set(
        services
    )
    example = _env_example()
    roles = {}
    for name in ("control", "media-1", "media-2", "analyzer"):
        env = {k: _interpolate(str(v), example) for k, v in services[name]["environment"].items()}
        for key in list(os.environ):
            if key.startswith("VMS_"):
                monkeypatch.delenv(key)
        for key, value in env.items():  # every variable a real setting, the set valid
            monkeypatch.setenv(key, value)
        settings = load_settings()
        roles[name] = settings.cluster.role
        assert settings.cluster.nats_url == "nats://nats:4222"
        assert settings.objects.backend == "s3" and "@postgres:5432/vms" in settings.database_url
        for key, value in services[name]["environment"].items():
            if any(s in key for s in ("PASSWORD", "SECRET", "ACCESS_KEY")):
                assert VAR.search(str(value)), f"{name}.{key} is a literal secret"
    assert roles == {
        "control": "control",
        "media-1": "media",
        "media-2": "media",
        "analyzer": "analyzer",
    }
    ranges = [
        (services[m]["environment"]["VMS_MEDIA__RTP_PORT_MIN"], m) for m in ("media-1", "media-2")
    ]
    assert len({r for r, _ in ranges}) == 2  # the media nodes' RTP ranges do not overlap
    conf = (DOCKER / "nats.conf").read_text()
    assert "jetstream" in conf and "max_payload: 8MB" in conf
