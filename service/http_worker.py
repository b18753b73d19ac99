"""How gunicorn serves the API (`osmanthus serve`, the container): slow and idle clients cannot
hold it, its own errors are the JSON envelope, and its access log carries no path.

`Worker` is gunicorn's threaded worker (gthread) with two changes:
- A new connection waits in the worker's poller, not in a thread, until its client sends a
  byte (gunicorn's own gthread gives it a thread for up to 5 s first): any number of idle,
  half-open connections costs file descriptors, never threads. Idle ones are closed after the
  keep-alive time (`--keep-alive`, 5 s here).
- Every read and write on a client's socket has a timeout (`OSMANTHUS_READ_TIMEOUT`, default
  10 s): a client that starts its headers or body and goes silent frees its thread then.

So a few slow clients cannot stop the API: one that trickles its headers holds at most one
thread, each for at most the timeout per silence. Many deliberately slow clients can still
use up `workers × threads`; a deployment facing the open internet puts a buffering proxy in
front (README, "Security"), which is the sound answer to slowloris at any scale.

gunicorn answers requests it cannot parse (400), over-long request lines (414) and header
fields (431) itself, as HTML naming what it read; here they are the envelope, and say nothing
of what was sent. gunicorn's error log names such a request by the kind of error only
(`Worker.handle_error`): its own line quotes what it read ("Invalid request from ip=…: Invalid
HTTP Version: 'HTTP/9.1101…'"), which may carry an ID number. `RouteLogger` logs the route
template (`/v1/admin/reviews/<person_key>`), never the path or query string, which may carry an
ID typed into a URL.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import selectors
import socket
import time
from functools import partial

from gunicorn import glogging, util
from gunicorn.workers import gthread

from service.base.errors import CODES

READ_TIMEOUT = float(os.environ.get("OSMANTHUS_READ_TIMEOUT", "10"))
MESSAGES = {
    400: "the request could not be read",
    403: "the request is forbidden",
    414: "the request line is too long",
    417: "the expectation cannot be met",
    431: "the request's header fields are too large",
    500: "internal error",
    501: "the transfer coding is not supported",
}


class _TimedSocket(socket.socket):
    """A client socket whose blocking mode is "blocking, up to READ_TIMEOUT" (gunicorn
    switches sockets to blocking before it reads a request)."""

    __slots__ = ()

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(READ_TIMEOUT)
        else:
            super().setblocking(False)


class Worker(gthread.ThreadWorker):
    """gthread, with new connections parked in the poller until they speak."""

    def accept(self, listener) -> None:
        try:
            client, address = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        client.__class__ = _TimedSocket
        conn = gthread.TConn(self.cfg, client, address, listener.getsockname())
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)  # closed by murder_pending if it never speaks
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self.on_pending_socket_readable, conn))

    def handle_error(self, req, client, addr, exc) -> None:
        """gunicorn's handling (status, access log, error page), with nothing the client sent
        in its log lines: the error reads as its kind, the request's URI as `-`."""
        if req is not None and hasattr(req, "uri"):
            req.uri = "-"
        super().handle_error(req, client, addr, _unquoted(exc))


@functools.cache
def _unquoting(kind: type) -> type:
    """`kind`, with a text that is its name only (isinstance checks still see `kind`)."""
    return type(kind.__name__, (kind,), {"__str__": lambda self: f"{kind.__name__} (what was "
                                                                 "sent is not logged)"})


def _unquoted(error: BaseException) -> BaseException:
    try:
        error.__class__ = _unquoting(type(error))
    except TypeError:  # a built-in exception whose layout forbids it: say its kind alone
        return type(error)(type(error).__name__) if isinstance(error, OSError) else error
    error.args = ()
    return error


def write_error(sock, status_int: int, reason: str, _mesg: str) -> None:
    """gunicorn's own error answers, in the envelope (its message is never quoted: it may
    hold the request line)."""
    body = json.dumps({"code": CODES.get(status_int, "error"), "status": status_int,
                       "message": MESSAGES.get(status_int, reason.lower()), "errors": {}},
                      sort_keys=True, separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


util.write_error = write_error  # the workers' error page (gunicorn.workers.base calls it)


class RouteLogger(glogging.Logger):
    """The access log with the route template in place of the path, and no query string or
    referrer (service/api/guard.py puts the template into the WSGI environ)."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        route = environ.get("osmanthus.route") or "-"
        atoms.update({
            "r": f"{environ.get('REQUEST_METHOD', '-')} {route} "
                 f"{environ.get('SERVER_PROTOCOL', '-')}",
            "U": route, "q": "", "f": "-",
        })
        return atoms


def gunicorn_arguments(http_threads: int) -> list[str]:
    """The serving set-up `osmanthus serve` passes to gunicorn (before the app)."""
    return ["--worker-class", "service.http_worker.Worker", "--threads", str(http_threads),
            "--keep-alive", "5", "--logger-class", "service.http_worker.RouteLogger",
            "--limit-request-line", "4094", "--limit-request-fields", "50",
            "--limit-request-field_size", "8190"]
