"""The ``vms`` console script as a real process: start-up errors, serve, signals, admin, demo."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

VMS = str(Path(sys.executable).with_name("vms"))
START_TIMEOUT_S = 60.0  # the acceptance: /healthz and /docs within a minute of start
STOP_TIMEOUT_S = 30.0
FAIL_TIMEOUT_S = 20.0  # a refused start-up must end within this (bounded DB/S3 timeouts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vms_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no developer VMS_* variables, data in tmp, no fixed ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMS_")}
    rtp = random.randrange(40000, 60000, 100)
    env.update(
        VMS_CONFIG=str(tmp_path / "absent.toml"),
        VMS_SERVER__DATA_DIR=str(tmp_path / "data"),
        VMS_SERVER__PORT=str(free_port()),
        VMS_SIP__PORT="0",
        VMS_MEDIA__RTP_PORT_MIN=str(rtp),
        VMS_MEDIA__RTP_PORT_MAX=str(rtp + 99),
    )
    env.update(extra)
    return env


def run_vms(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VMS, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=FAIL_TIMEOUT_S
    )


class Server:
    """A ``vms serve``/``vms demo`` child process; output goes to files, not pipes."""

    def __init__(self, command: str, env: dict[str, str], cwd: Path) -> None:
        self.base = f"http://127.0.0.1:{env['VMS_SERVER__PORT']}"
        self.err_path = cwd / f"{command}-{time.monotonic_ns()}.err"
        self._err = self.err_path.open("wb")
        self.proc = subprocess.Popen(
            [VMS, command], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=self._err
        )

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}: {self.stderr[-2000:]}")
            try:
                resp = httpx.get(self.base + "/healthz", timeout=2)
                if resp.status_code == 200:
                    return resp
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"/healthz not 200 within {timeout:.0f} s: {self.stderr[-2000:]}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                pytest.fail(f"no exit within {STOP_TIMEOUT_S:.0f} s of {sig.name}")
        self._err.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._err.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test started; any still running at the end are killed."""
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


def login(base: str, username: str, password: str) -> dict[str, str]:
    resp = httpx.post(
        base + "/api/auth/login", json={"username": username, "password": password}, timeout=10
    )
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- start-up refused -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("VMS_SIP__SERVER_ID", "123", "sip.server_id [VMS_SIP__SERVER_ID]"),
        ("VMS_SERVER__PORT", "abc", "server.port [VMS_SERVER__PORT]"),
        ("VMS_SIP__TRANSPORTS", "udp", "VMS_SIP__TRANSPORTS"),
        ("toml", "[sip]\nprot = 5060\n", "sip.prot"),
        ("toml", "[sip\nport = 5060\n", "VMS_CONFIG"),
    ],
)
def test_invalid_config_stops_start_up_with_one_line(
    tmp_path: Path, setting: str, value: str, named: str
) -> None:
    env = vms_env(tmp_path)
    if setting == "toml":
        config = tmp_path / "vms.toml"
        config.write_text(value)
        env["VMS_CONFIG"] = str(config)
    else:
        env[setting] = value
    result = run_vms(["serve"], env, tmp_path)
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert line.startswith("vms: ") and named in line
    assert not (tmp_path / "data").exists()  # refused before touching anything


def test_unreachable_database_stops_start_up(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = vms_env(tmp_path, VMS_DATABASE__URL=f"postgresql+psycopg://u:pw@127.0.0.1:{port}/x")
    result = run_vms(["serve"], env, tmp_path)  # bounded by FAIL_TIMEOUT_S
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert "database unreachable" in line and f"127.0.0.1:{port}/x" in line
    assert ":pw@" not in line  # the password is not printed


def test_unreachable_object_store_stops_start_up(tmp_path: Path) -> None:
    port = free_port()
    env = vms_env(tmp_path, VMS_OBJECTS__BACKEND="s3", VMS_OBJECTS__ENDPOINT=f"127.0.0.1:{port}")
    result = run_vms(["serve"], env, tmp_path)
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert "object store" in line and f"127.0.0.1:{port}" in line


@pytest.mark.parametrize("busy", ["http", "sip"])
def test_busy_port_stops_start_up_with_a_clear_line(tmp_path: Path, busy: str) -> None:
    kind = socket.SOCK_STREAM if busy == "http" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind(("127.0.0.1", 0))
        if busy == "http":
            taken.listen()
        port = str(taken.getsockname()[1])
        env = vms_env(tmp_path, VMS_SIP__TRANSPORTS='["udp"]')
        env["VMS_SERVER__PORT" if busy == "http" else "VMS_SIP__PORT"] = port
        result = run_vms(["serve"], env, tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("vms: cannot start: "), result.stderr[-2000:]
    if busy == "http":
        assert f"HTTP cannot listen on 127.0.0.1:{port}" in last
        assert "component started" not in result.stderr  # refused before anything ran
    else:
        assert "sip could not start" in last


# --- admin ----------------------------------------------------------------------------------


def test_admin_create_user_refuses_bad_input(tmp_path: Path) -> None:
    env = vms_env(tmp_path, SHORT_PW="short")
    result = run_vms(["admin", "create-user", "bob", "--password-env", "SHORT_PW"], env, tmp_path)
    assert result.returncode != 0 and "at least 10 characters" in one_line(result.stderr)
    env["WEAK_PW"] = "onlylowercaseletters"
    result = run_vms(["admin", "create-user", "bob", "--password-env", "WEAK_PW"], env, tmp_path)
    assert result.returncode != 0 and "at least three of" in one_line(result.stderr)
    env["GOOD_PW"] = "Long-enough-pw1"
    result = run_vms(
        ["admin", "create-user", "bob", "--password-env", "GOOD_PW", "--org", "999"], env, tmp_path
    )
    assert result.returncode != 0 and "organisation 999 does not exist" in result.stderr
    result = run_vms(["admin", "create-user", "bob", "--role", "king"], env, tmp_path)
    assert result.returncode != 0 and "invalid choice" in result.stderr
    env["VMS_DATABASE__URL"] = f"postgresql+psycopg://u@127.0.0.1:{free_port()}/x"
    result = run_vms(["admin", "create-user", "bob", "--password-env", "GOOD_PW"], env, tmp_path)
    assert result.returncode != 0 and "database unreachable" in one_line(result.stderr)


def test_admin_verify_audit_checks_the_chain_from_the_console(tmp_path: Path) -> None:
    from sqlalchemy import text

    from storage.audit_models import AuditRecord, append
    from storage.db import Database

    env = vms_env(tmp_path)
    result = run_vms(["admin", "verify-audit"], env, tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout)["entries"] == 0, result.stderr
    db = Database(f"sqlite:///{tmp_path / 'data' / 'vms.db'}")
    db.open()
    for i in range(3):
        with db.session() as s:
            append(s, AuditRecord(action="login", actor=f"u{i}"))
    with db.engine.begin() as conn:  # past the append-only trigger, as an intruder would
        conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(text("UPDATE audit_log SET outcome = 'failed' WHERE id = 2"))
    db.close()
    result = run_vms(["admin", "verify-audit"], env, tmp_path)
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["ok"] is False and report["first_bad_id"] == 2


# --- serve ----------------------------------------------------------------------------------


def test_serve_admin_user_and_clean_exit_on_signals(tmp_path: Path, servers: list[Server]) -> None:
    env = vms_env(tmp_path, OPS_PASSWORD="Watch-floor-123")
    created = run_vms(
        ["admin", "create-user", "ops", "--password-env", "OPS_PASSWORD"], env, tmp_path
    )
    assert created.returncode == 0, created.stderr
    assert "user ops (admin) saved" in created.stdout

    for sig in (signal.SIGTERM, signal.SIGINT):
        server = Server("serve", env, tmp_path)
        servers.append(server)
        health = server.wait_healthy()
        assert health.json()["checks"] == {"database": "ok", "objects": "ok"}
        docs = httpx.get(server.base + "/docs", timeout=10)
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        assert httpx.get(server.base + "/openapi.json", timeout=10).status_code == 200
        headers = login(server.base, "ops", "Watch-floor-123")
        resp = httpx.get(server.base + "/api/devices", headers=headers, timeout=10)
        assert resp.status_code == 200 and resp.json() == []
        bad = httpx.post(
            server.base + "/api/auth/login",
            json={"username": "ops", "password": "nope-nope"},
            timeout=10,
        )
        assert bad.status_code == 401
        assert server.stop(sig) == 0, server.stderr[-2000:]
        assert "Traceback" not in server.stderr, server.stderr[-3000:]
    assert (tmp_path / "data" / "vms.db").exists()


# --- demo -----------------------------------------------------------------------------------


def test_demo_seeds_and_serves(tmp_path: Path, servers: list[Server]) -> None:
    env = vms_env(tmp_path)
    server = Server("demo", env, tmp_path)
    servers.append(server)
    server.wait_healthy(timeout=90)
    credentials = tmp_path / "data" / "demo-admin.txt"
    assert credentials.exists()
    assert credentials.stat().st_mode & 0o077 == 0  # readable by its owner only
    username, password = credentials.read_text().split()
    headers = login(server.base, username, password)
    devices = httpx.get(server.base + "/api/devices", headers=headers, timeout=10).json()
    assert "37010200001180000001" in [d["device_id"] for d in devices]
    orgs = httpx.get(server.base + "/api/orgs", headers=headers, timeout=10).json()
    assert {"山东省", "示例化工有限公司", "示例加油站"} <= {o["name"] for o in orgs}
    assert httpx.get(server.base + "/docs", timeout=10).status_code == 200
    assert server.stop(signal.SIGTERM) == 0, server.stderr[-2000:]
    assert "Traceback" not in server.stderr, server.stderr[-3000:]
