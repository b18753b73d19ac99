"""Private Redis and PostgreSQL servers that fault tests (and `bench/faults.py`) may kill.

The shared servers on 6379 and 5432 are never touched: each private server runs as a child
process of this one, on a free loopback port, with its data in a temporary folder, and is
stopped and deleted when its `with` block ends, whatever happened inside. Every wait is
bounded. PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres`
user. Missing binaries skip the test, or fail it in CI (`OSMANTHUS_REQUIRE_SERVICES=1`).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # private redis-server / PostgreSQL servers

START_SECONDS = 30.0  # the longest a server may take to answer after starting
STOP_SECONDS = 15.0  # the longest a server may take to exit before it is killed


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop(process: subprocess.Popen | None, how: int = signal.SIGTERM) -> None:
    """Signal a child and reap it, killing it if it outstays `STOP_SECONDS`."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(how)
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_SECONDS)


class PrivateRedis:
    """A throw-away `redis-server` on 127.0.0.1 that a test may kill and start again."""

    def __init__(self, port: int | None = None) -> None:
        self.binary = shutil.which("redis-server")
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.binary is None:
            raise FileNotFoundError("redis-server")
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_up()

    def _wait_up(self) -> None:
        import redis

        deadline = time.monotonic() + START_SECONDS
        # from_url: one attempt per call (redis-py 8's Redis() retries 10 times, ~4 s, on refusal)
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                if client.ping():
                    client.close()
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server on {self.port} did not answer in {START_SECONDS} s")

    def kill(self) -> None:
        """As a crash would: SIGKILL, no goodbye to clients."""
        _stop(self.process, signal.SIGKILL)

    def close(self) -> None:
        _stop(self.process)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.close()


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries installed, if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (trust auth, no fsync: a test bed, not a
    database), owned by `postgres` when we are root. `restart()` is a fast shutdown and start,
    as `pg_ctl restart -m fast` or a fail-over would do it: clients are cut off mid-statement."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="osm-pg-"))
        self.data, self.sockets = self.root / "data", self.root / "sockets"
        self.process: subprocess.Popen | None = None
        self._as = {}
        if os.geteuid() == 0:
            self._as = {"user": "postgres", "group": "postgres"}

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        if self.bin is None:
            raise FileNotFoundError("initdb")
        self.sockets.mkdir()
        if self._as:
            import pwd

            owner = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
                        "postgres", "-E", "UTF8", "--no-sync", "--no-instructions"],
                       check=True, capture_output=True, timeout=120, cwd=self.root, **self._as)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.sockets), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
             "-c", "max_connections=40", "-c", "shared_buffers=32MB"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.root, **self._as)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}")
            if _listening(self.port) and self._accepts():
                return
            time.sleep(0.05)
        raise TimeoutError(f"postgres on {self.port} did not answer in {START_SECONDS} s")

    def _accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                                 dbname="postgres", connect_timeout=1):
                return True
        except psycopg.Error:  # "the database system is starting up"
            return False

    def stop(self, how: int = signal.SIGINT) -> None:
        """SIGINT: fast shutdown (clients cut off, clean). SIGQUIT: immediate (as a crash)."""
        _stop(self.process, how)

    def restart(self) -> float:
        """Fast shutdown, then start; the seconds the server was away."""
        began = time.monotonic()
        self.stop()
        self.start()
        return time.monotonic() - began

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.close()


def need(binary_found: bool, what: str) -> None:
    """Skip (or fail in CI) when a server's binaries are not installed."""
    if not binary_found:
        from tests.conftest import skip_or_fail

        skip_or_fail(f"{what} binaries not installed")


# --- the servers themselves ------------------------------------------------------------------
def test_a_private_redis_can_be_killed_and_started_again_and_is_gone_afterwards():
    import redis

    need(shutil.which("redis-server") is not None, "redis-server")
    with private_redis() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        assert client.set("k", "v") and client.get("k") == b"v"
        server.kill()
        assert not _listening(server.port)
        server.start()
        assert client.get("k") is None  # nothing saved: a restart loses the cache, by design
    assert server.process.poll() is not None and not _listening(server.port)


def test_a_private_postgres_survives_a_restart_and_is_deleted_afterwards():
    import psycopg

    need(postgres_bin() is not None, "PostgreSQL")
    with private_postgres() as server:
        with psycopg.connect(host="127.0.0.1", port=server.port, user="postgres",
                             dbname="postgres", autocommit=True) as connection:
            connection.execute("CREATE TABLE t (x int)")
            connection.execute("INSERT INTO t VALUES (1)")
        assert server.restart() < START_SECONDS
        with psycopg.connect(host="127.0.0.1", port=server.port, user="postgres",
                             dbname="postgres") as connection:
            assert connection.execute("SELECT x FROM t").fetchall() == [(1,)]
        root = server.root
    assert server.process.poll() is not None and not root.exists()
    assert not _listening(server.port)
