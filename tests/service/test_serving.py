"""The served set-up (`osmanthus serve`: gunicorn, service/http_worker.py), from outside:
idle and half-open connections cannot stop the API, gunicorn's own errors are the envelope,
and the access log names routes, never paths."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from service.cli.service import gunicorn_command

pytestmark = pytest.mark.slow
ID_IN_URL = "110101199003077777"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One worker with 4 threads (the fewest a deployment runs), in development mode on a
    SQLite file; its output (the access log) is collected in a file."""
    root = tmp_path_factory.mktemp("served")
    port = _free_port()
    argv, env = gunicorn_command("127.0.0.1", port, 1, None, 30)
    env = {k: v for k, v in env.items() if not k.startswith(("OSMANTHUS_ENV", "DATABASE_"))}
    env.update({"DATABASE_URL": f"sqlite:///{root / 'osmanthus.db'}",
                "OSMANTHUS_REGISTRY": str(root / "registry"),
                "OSMANTHUS_SECRETS_FILE": str(root / "secrets.json"),
                "OSMANTHUS_HTTP_THREADS": "4", "OSMANTHUS_READ_TIMEOUT": "2"})
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(argv, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if _get(port, "/healthz", timeout=1)[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("the server did not start:\n" + (root / "server.log").read_text())
    yield port, root / "server.log"
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)
    log.close()


def _get(port: int, path: str, timeout: float, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


def _raw(port: int, data: bytes) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(data)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_idle_and_half_open_connections_do_not_stop_the_api(server):
    """40 connections that send nothing and 3 that stop half-way through their headers (one
    worker, 4 threads): /healthz still answers, well within a second."""
    port, _ = server
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    half = []
    for _ in range(3):
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        half.append(client)
    try:
        time.sleep(0.5)  # let the server take them all
        for _ in range(5):
            status, body, _ = _get(port, "/healthz", timeout=1.0)  # a timeout fails the test
            assert status == 200 and json.loads(body) == {"status": "ok"}
    finally:
        for client in idle + half:
            client.close()


def test_a_client_silent_mid_headers_is_cut_off(server):
    """OSMANTHUS_READ_TIMEOUT (2 s here) frees the thread of a client that goes silent."""
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert client.recv(65536) == b""  # closed by the server, not by our 30 s timeout


@pytest.mark.parametrize("request_bytes,status", [
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
    (b"GET /" + ID_IN_URL.encode() + b"x" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 60 + b"\r\n", 431),
])
def test_the_servers_own_errors_are_the_envelope(server, request_bytes, status):
    port, _ = server
    answered, headers, body = _raw(port, request_bytes)
    envelope = json.loads(body)
    assert answered == status and headers["Content-Type"] == "application/json"
    assert set(envelope) == {"code", "status", "message", "errors"} and envelope["status"] == status
    assert ID_IN_URL.encode() not in body


def test_the_access_log_names_the_route_not_the_path(server):
    port, log = server
    review = "f" * 32
    _get(port, f"/v1/admin/reviews/{review}?note={ID_IN_URL}", timeout=5)
    _get(port, f"/v1/me/{ID_IN_URL}", timeout=5)
    _get(port, "//v1/me/score", timeout=5)
    time.sleep(0.5)
    text = Path(log).read_text()
    assert "/v1/admin/reviews/<string:review_id>" in text
    assert review not in text and ID_IN_URL not in text


@pytest.mark.parametrize("request_bytes", [
    b"GET /" + ID_IN_URL.encode() + b" HTTP/1.1 extra\r\nHost: x\r\n\r\n",  # request line
    b"GET /" + ID_IN_URL.encode() + b"\r\n\r\n",
    b"GET /" + ID_IN_URL.encode() + b" HTTP/9." + ID_IN_URL.encode() + b"\r\n\r\n",  # version
    b"G\x01T /" + ID_IN_URL.encode() + b" HTTP/1.1\r\n\r\n",  # method
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-" + ID_IN_URL.encode() + b"(: v\r\n\r\n",  # name
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Id: " + ID_IN_URL.encode() + b"\x00\r\n\r\n",
])
def test_the_servers_error_log_never_quotes_what_was_sent(server, request_bytes):
    """gunicorn logs a request it cannot parse as "Invalid request from ip=…: <what it read>";
    here the line names the kind of error only (what was sent may hold an ID number)."""
    port, log = server
    before = Path(log).read_text()
    answered, _, body = _raw(port, request_bytes)
    assert 400 <= answered < 500 and ID_IN_URL.encode() not in body
    time.sleep(0.3)
    added = Path(log).read_text()[len(before):]
    assert "Invalid request from ip=" in added  # the refusal is still logged
    assert ID_IN_URL not in added


def _trickle(port: int, stop, every: float = 0.2) -> None:
    """A client that sends its headers a byte at a time, never finishing them."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            while not stop.wait(every):
                client.sendall(b"a")
    except OSError:
        pass


def test_clients_trickling_their_headers_hold_no_thread(server):
    """Six clients sending a header byte every 0.2 s (more than the worker's 4 threads, each
    byte well inside the read timeout): /healthz still answers, each time within a second."""
    import threading

    port, _ = server
    stop = threading.Event()
    clients = [threading.Thread(target=_trickle, args=(port, stop), daemon=True)
               for _ in range(6)]
    for client in clients:
        client.start()
    try:
        time.sleep(0.5)  # each has sent bytes since: gthread alone gave each a thread
        for _ in range(3):
            status, _, _ = _get(port, "/healthz", timeout=1.0)  # a timeout fails the test
            assert status == 200
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=5)


def test_a_head_still_trickling_after_the_read_timeout_is_closed(server):
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        client.settimeout(0.3)
        closed = False
        for _ in range(100):  # 30 s at most; the server's read timeout is 2 s
            try:
                client.sendall(b"X")
                closed = client.recv(65536) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
            if closed:
                break
        assert closed


def test_kept_alive_connections_and_bodies_still_work(server):
    """The head is read by the poller, the body by the thread: both for a new connection and
    for the next requests on a kept-alive one."""
    port, _ = server
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        for _ in range(3):
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read()) == {"status": "ok"}
        body = json.dumps({"partner_id": "x", "perks": ["y"]}).encode()
        connection.request("POST", "/v1/me/consents", body=body,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 401 and json.loads(response.read())["status"] == 401
    finally:
        connection.close()
