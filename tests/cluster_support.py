"""Real peers for the cluster tests: a nats-server with JetStream, and `vms serve --role` nodes.

Each node is its own process (so a test can SIGKILL it), configured by environment variables
like any deployment, logging to a file the test shows when something fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from .s3server import free_port

ROOT = Path(__file__).resolve().parents[1]


class NatsServer:
    """One nats-server (Debian package) on loopback, JetStream on a temporary folder."""

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="vms-nats-"))
        self._log = open(self.dir / "nats.log", "wb")  # closed in stop()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        binary = shutil.which("nats-server")
        if binary is None:
            raise RuntimeError("nats-server is not installed (Debian package 'nats-server')")
        self.port = free_port()
        conf = self.dir / "nats.conf"
        # 2.9's command line has no --max_payload: a config file sets it
        conf.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            "max_payload: 8MB\n"
            f'jetstream {{ store_dir: "{self.dir / "js"}" }}\n'
        )
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not listen: {self.log_tail()}")

    def log_tail(self, size: int = 1500) -> str:
        self._log.flush()
        return (self.dir / "nats.log").read_text(errors="replace")[-size:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Node:
    """``python -m vms serve --role ROLE`` with its own data folder and HTTP port."""

    def __init__(self, name: str, role: str, data_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.role = role
        self.data_dir = data_dir
        self.http_port = free_port()
        self.log_path = data_dir / f"{name}.log"
        self.env = {
            **os.environ,
            **env,
            "VMS_CONFIG": str(data_dir / "none.toml"),
            "VMS_SERVER__DATA_DIR": str(data_dir),
            "VMS_SERVER__HOST": "127.0.0.1",
            "VMS_SERVER__PORT": str(self.http_port),
            "VMS_SERVER__LOG_JSON": "true",
            "VMS_CLUSTER__ROLE": role,
            "VMS_CLUSTER__NODE_NAME": name,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # the child holds it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vms", "serve", "--role", self.role],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready in {timeout:g} s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no clean stop, its leases are left to run out."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""
