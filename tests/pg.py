"""A private PostgreSQL server on 127.0.0.1 for the test session.

Uses Debian's binaries (package ``postgresql``).  Runs as the ``postgres``
system user when the tests run as root, since PostgreSQL refuses root.
``VMS_TEST_POSTGRES_URL`` points the tests at an existing server instead.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL is not installed (Debian package 'postgresql'); run make test"
            )
        self.bindir = bindir
        self.port = _free_port()
        self.user: str | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="vms-pg-"))
        if os.geteuid() == 0:
            self.user = "postgres"
            self._runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            if self._run("test", "-w", str(self.dir), check=False).returncode != 0:
                # TMPDIR is somewhere postgres cannot reach (e.g. under /root): use /tmp.
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = Path(tempfile.mkdtemp(prefix="vms-pg-", dir="/tmp"))
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.user:
            cmd = [self._runuser, "-u", self.user, "--", *cmd]
        try:
            return subprocess.run(
                cmd, check=check, capture_output=True, text=True, timeout=120, cwd=self.dir
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({exc.returncode}): {(exc.stderr or exc.stdout).strip()}"
            ) from None

    def start(self) -> str:
        data = self.dir / "data"
        self._run(
            str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "vms", "-E", "UTF8"
        )
        for attempt in range(3):  # the free port may be taken between the probe and the bind
            started = self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(self.dir / "log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.dir} -F",
                "start",
                check=attempt == 2,
            )
            if started.returncode == 0:
                break
            self.port = _free_port()
        url = f"postgresql+psycopg://vms@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return url
            time.sleep(0.2)
        raise RuntimeError("private PostgreSQL did not start")

    def create_database(self, name: str) -> str:
        self._run(
            str(self.bindir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "vms",
            name,
        )
        return f"postgresql+psycopg://vms@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.dir / "data"),
            "-m",
            "immediate",
            "stop",
            check=False,
        )
        shutil.rmtree(self.dir, ignore_errors=True)
