"""A real PostgreSQL server for tests: initdb + pg_ctl in a temp dir, 127.0.0.1, free port.

Why: the several-machines path (FOR UPDATE SKIP LOCKED, advisory-locked migrations) must be
tested against the real thing. As root (CI containers) the server runs as the `postgres`
user, since postgres refuses to run as root. Without the binaries the tests skip, but under
CI=true they fail (CI installs postgresql).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, free_port


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    if user is None:
        return cmd
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", user, "--", *cmd]


class PgServer:
    """One server; `new_database()` gives each test an empty database URL."""

    def __init__(self, bindir: Path, base: Path, user: str | None) -> None:
        self.bindir, self.base, self.user = bindir, base, user
        self.data = base / "data"
        self.port = free_port()

    def start(self) -> None:
        subprocess.run(_as_user([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "vpet",
                                 "-A", "trust", "-E", "UTF8", "--no-sync"], self.user),
                       check=True, capture_output=True, timeout=120)
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories="
                f"{self.base} -c fsync=off -c max_connections=50")
        subprocess.run(_as_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                                 "-l", str(self.base / "log"), "-w", "-t", "60", "start"],
                                self.user), check=True, capture_output=True, timeout=90)

    def stop(self) -> None:
        subprocess.run(_as_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                                 "-w", "stop"], self.user), check=False, capture_output=True,
                       timeout=60)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://vpet@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg2

        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="vpet", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        conn.close()
        return self.url(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = _bindir()
    if bindir is None:
        if IN_CI:
            pytest.fail("PostgreSQL (initdb) is required under CI but not installed")
        pytest.skip("PostgreSQL server binaries not installed")
    user = None
    base = Path(tempfile.mkdtemp(prefix="vpet-pg-"))
    if os.geteuid() == 0:  # postgres refuses root: run it as the postgres user
        user = "postgres"
        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            pytest.fail("running as root but there is no 'postgres' user to run the server")
        os.chown(base, uid, -1)
    server = PgServer(bindir, base, user)
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        log = (base / "log").read_text() if (base / "log").exists() else ""
        pytest.fail(f"cannot start PostgreSQL: {exc.stderr!r} {log[-2000:]}")
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """URL of a fresh, empty database on the test server."""
    return pg_server.new_database()
