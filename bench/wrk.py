"""Drive an HTTP app with `wrk` under gunicorn, for bounded load runs on 127.0.0.1 only.

A small, stable API that the API benchmark (`bench/api.py`) and the fault-injection script
share:

- `ensure_wrk()` finds Debian's `wrk`, installing it with `apt-get install -y wrk` when it is
  missing (root on this machine), or raises `WrkMissing` naming the fix.
- `serve(app_spec, env)` starts gunicorn on 127.0.0.1 (2 sync workers unless told otherwise),
  waits until it answers HTTP, yields its base URL and terminates it afterwards.
- `run_wrk(url, connections=…, seconds=…)` runs one bounded wrk run (`-d` seconds plus a hard
  subprocess timeout) and returns a `WrkResult`: requests, requests/s, latency percentiles,
  non-2xx and socket-error counts and the count of each HTTP status.

The figures come from a Lua `done()` hook that prints one JSON line (exact percentiles from
wrk's own histogram, not parsed from its human text), and the status counts from a Lua
`response()` hook in each thread. That hook costs wrk a little CPU per response; every run of
this module uses it, so ratios between runs (the floor included) stay fair.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["WrkMissing", "WrkResult", "ensure_wrk", "free_port", "run_wrk", "serve"]


class WrkMissing(RuntimeError):
    """wrk is not installed and could not be installed here."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run. Latencies are in milliseconds; `statuses` maps HTTP status to count."""

    url: str
    connections: int
    threads: int
    seconds: float
    requests: int
    duration_s: float
    requests_per_s: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    latency_mean_ms: float
    non_2xx: int
    socket_errors: int
    errors: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    bytes_read: int = 0

    def line(self) -> str:
        """A one-line summary for a benchmark's printout."""
        return (f"{self.requests_per_s:9.0f} req/s  p50 {self.latency_p50_ms:6.2f} ms  "
                f"p99 {self.latency_p99_ms:6.2f} ms  non-2xx {self.non_2xx}  "
                f"socket errors {self.socket_errors}  ({self.requests} in "
                f"{self.duration_s:.1f} s, {self.connections} conn)")


def ensure_wrk() -> str:
    """The path of `wrk`; installs Debian's package when missing, else raises `WrkMissing`."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise WrkMissing("wrk is not installed; install Debian's package: apt-get install -y wrk")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log: list[str] = []
    for command in ([apt, "install", "-y", "wrk"], [apt, "update"], [apt, "install", "-y", "wrk"]):
        if command[1] == "update" and shutil.which("wrk"):
            break
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise WrkMissing(f"{' '.join(command)} timed out after 600 s") from None
        log.append(done.stdout[-400:] + done.stderr[-400:])
        if done.returncode == 0 and shutil.which("wrk"):
            break
    found = shutil.which("wrk")
    if not found:
        raise WrkMissing("wrk could not be installed with apt-get install -y wrk:\n"
                         + "\n".join(log))
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer (404, 401 …) means the server is up
    except (OSError, ValueError):
        return False


@contextmanager
def serve(app_spec: str, env: Mapping[str, str] | None = None, *, workers: int = 2,
          port: int | None = None, worker_class: str = "sync", threads: int = 1,
          ready_path: str = "/", start_timeout: float = 90.0,
          extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Run `gunicorn app_spec` on 127.0.0.1 and yield its base URL (`http://127.0.0.1:PORT`).

    `env` is added to this process's environment. Waits until `ready_path` answers with any
    HTTP status (or raises with gunicorn's log if it exits or `start_timeout` passes), and
    always terminates gunicorn (TERM, then KILL after 10 s) on the way out."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "gunicorn", app_spec, "--bind", f"127.0.0.1:{port}",
               "--workers", str(workers), "--worker-class", worker_class,
               "--threads", str(threads), "--log-level", "warning", "--timeout", "60",
               *extra_args]
    full_env = dict(os.environ)
    full_env.update(env or {})
    with tempfile.TemporaryFile(prefix="gunicorn-", suffix=".log") as log:
        process = subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + start_timeout
            while not _answers(base + ready_path):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-3000:]
                    why = "exited" if process.poll() is not None else "did not answer in time"
                    raise RuntimeError(f"gunicorn {app_spec} {why}:\n{tail}")
                time.sleep(0.2)
            yield base
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)


def _lua_string(text: str) -> str:
    """A Lua string literal for any text (every awkward byte as a decimal escape)."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if 32 <= byte < 127 and char not in '"\\':
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


_RESERVED = ("function setup", "function response", "function done",
             "setup =", "response =", "done =")

_HOOKS = """
local _osm_threads = {}
function setup(thread)
  table.insert(_osm_threads, thread)
  thread:set("_osm_thread", #_osm_threads)
end
_osm_statuses = {}
function response(status, headers, body)
  _osm_statuses[status] = (_osm_statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local statuses = {}
  for _, thread in ipairs(_osm_threads) do
    local counts = thread:get("_osm_statuses")
    if counts then
      for status, count in pairs(counts) do
        statuses[status] = (statuses[status] or 0) + count
      end
    end
  end
  local parts = {}
  for status, count in pairs(statuses) do
    table.insert(parts, string.format('"%d": %d', status, count))
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"p50": %f, "p90": %f, "p99": %f, "max": %f, "mean": %f, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"statuses": {%s}}\\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ", ")))
end
"""


def _script(threads: int, method: str, body: str | bytes | None, headers: Mapping[str, str] | None,
            lua: str | None) -> str:
    lines = [f"_osm_nthreads = {threads}", f"wrk.method = {_lua_string(method.upper())}"]
    if body is not None:
        text = body.decode() if isinstance(body, bytes) else body
        lines.append(f"wrk.body = {_lua_string(text)}")
    for name, value in (headers or {}).items():
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    if lua:
        compact = " ".join(lua.split())
        if any(word in compact for word in _RESERVED):
            raise ValueError("the lua snippet may define request/init/delay, "
                             "but setup, response and done are run_wrk's own")
        lines.append(lua)
    return "\n".join(lines) + "\n" + _HOOKS


def run_wrk(url: str, *, connections: int, seconds: float, threads: int = 2,
            method: str = "GET", body: str | bytes | None = None,
            headers: Mapping[str, str] | None = None, lua: str | None = None,
            timeout_s: float = 5.0) -> WrkResult:
    """One bounded wrk run against `url` (loopback only) and its figures.

    `lua` may define `request()` (e.g. a different path per request, built with
    `wrk.format`), `init(args)` or `delay()`; `method`, `body` and `headers` are set on `wrk`
    before it runs. In `init`, the globals `_osm_thread` (1-based) and `_osm_nthreads` let
    each thread take its own share of a list (e.g. every n-th line of a file of tokens). A request slower than `timeout_s` counts as a socket timeout."""
    host = url.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]") and not host.startswith("127."):
        raise ValueError(f"wrk runs against loopback addresses only, not {host}")
    threads = max(1, min(threads, connections))
    wrk = ensure_wrk()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(_script(threads, method, body, headers, lua))
        script = handle.name
    command = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
               "--timeout", f"{max(1, round(timeout_s))}s", "-s", script, url]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=seconds + timeout_s + 30)
    finally:
        os.unlink(script)
    found = [line for line in done.stdout.splitlines() if line.startswith("WRKJSON ")]
    if done.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed (exit {done.returncode}):\n{done.stdout[-2000:]}"
                           f"\n{done.stderr[-2000:]}")
    data = json.loads(found[-1][len("WRKJSON "):])
    statuses = {int(status): count for status, count in data["statuses"].items()}
    errors = {name: int(count) for name, count in data["errors"].items()}
    duration = data["duration_us"] / 1e6
    return WrkResult(
        url=url, connections=connections, threads=threads, seconds=seconds,
        requests=data["requests"], duration_s=duration,
        requests_per_s=data["requests"] / duration if duration else 0.0,
        latency_p50_ms=data["p50"] / 1000, latency_p90_ms=data["p90"] / 1000,
        latency_p99_ms=data["p99"] / 1000, latency_max_ms=data["max"] / 1000,
        latency_mean_ms=data["mean"] / 1000,
        non_2xx=sum(count for status, count in statuses.items() if not 200 <= status < 300),
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        errors=errors, statuses=statuses, bytes_read=data["bytes"])


# --- requests that rotate through a file of lines (tokens, bodies) ------------------------
ROTATE = """
local items = {}
local i = 0
function init(args)
  local n = 0
  for line in io.lines(%(file)s) do
    if n %% _osm_nthreads == _osm_thread - 1 then table.insert(items, line) end
    n = n + 1
  end
end
function request()
  i = i %% #items + 1
  %(build)s
end
"""
PAGE_REQUEST = ('return wrk.format("GET", "/v1/me/score", '
                '{["Authorization"] = "Bearer " .. items[i]}, nil)')
POST_REQUEST = ('return wrk.format("POST", %s, '
                '{["X-API-Key"] = %s, ["Content-Type"] = "application/json"}, items[i])')


def rotating(lines: list[str], build: str, directory: Path) -> str:
    """A Lua snippet making each request from the next line of a file (threads share none)."""
    path = directory / f"lines-{uuid.uuid4().hex[:8]}.txt"
    path.write_text("\n".join(lines) + "\n")
    return ROTATE % {"file": json.dumps(str(path)), "build": build}
