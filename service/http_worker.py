"""How gunicorn serves the API (`osmanthus serve`, the container): slow and idle clients cannot
hold it, its own errors are the JSON envelope, and its access log carries no path.

`Worker` is gunicorn's threaded worker (gthread) with three changes:
- A request's head (request line and headers) is read by the worker's poller, not by a
  thread: a connection gets a thread only once its whole head has arrived (gunicorn's own
  gthread gives a connection a thread at its first byte, and a client trickling its headers a
  byte every few seconds kept that thread for as long as the header limits allowed; four such
  clients stopped a worker of four threads, `bench/trickle.py`). Any number of idle, half-open
  or trickling connections costs file descriptors and at most 64 KiB each, never threads. A
  connection that sends nothing is closed after the keep-alive time (`--keep-alive`, 5 s
  here); a head not complete `OSMANTHUS_READ_TIMEOUT` (default 10 s) after its first byte is
  closed unanswered.
- Every read and write on a client's socket in a thread has a timeout
  (`OSMANTHUS_READ_TIMEOUT`): a client that goes silent in its body frees its thread then.
- gunicorn's error log never quotes what a client sent (below).

So slow clients cannot stop the API without credentials: a thread is taken by a complete
head, and an anonymous request is refused (401, or 413 on its declared length) before its
body is read, gunicorn draining an unread body for at most 5 s. What remains: a holder of a
valid token or key trickling bodies the app reads (one thread each, up to the timeout per
silence), and `worker_connections` (1,000 per worker) connections at once. A deployment facing
the open internet still puts a buffering proxy in front (README, "Security").

gunicorn answers requests it cannot parse (400), over-long request lines (414) and header
fields (431) itself, as HTML naming what it read; here they are the envelope, and say nothing
of what was sent. gunicorn's error log names such a request by the kind of error only
(`Worker.handle_error`): its own line quotes what it read ("Invalid request from ip=…: Invalid
HTTP Version: 'HTTP/9.1101…'"), which may carry an ID number. `RouteLogger` logs the route
template (`/v1/admin/reviews/<person_key>`), never the path or query string, which may carry an
ID typed into a URL.
"""

from __future__ import annotations

import contextlib
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
HEAD_CHUNK = 16 << 10  # bytes read from a connection per poller event
MAX_HEAD = 64 << 10  # a head this long goes to a thread whole or not (gunicorn refuses it: 431)
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
    """gthread, with connections in the poller until their whole request head has come."""

    def init_process(self) -> None:
        self.heads: dict = {}  # connection -> when its head must be whole (monotonic)
        super().init_process()  # runs the worker

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
        conn.head = None  # the bytes of the request head read so far
        self.pending_conns.append(conn)  # closed by murder_pending if it never speaks
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self.on_pending_socket_readable, conn))

    # --- the request head, read by the poller -------------------------------------------------
    def on_pending_socket_readable(self, conn, client) -> None:
        """A new connection has bytes: read its head here (gthread: hand it to a thread)."""
        self._read_head(conn, self.pending_conns)

    def on_client_socket_readable(self, conn, client) -> None:
        """A kept-alive connection has bytes: the same, for its next request."""
        self._read_head(conn, self.keepalived_conns)

    def _read_head(self, conn, waiting) -> None:
        heads = self.heads
        try:
            chunk = conn.sock.recv(HEAD_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if getattr(conn, "head", None) is None:  # its first bytes: off the idle list
            waiting.remove(conn)
            conn.head = bytearray()
            heads[conn] = time.monotonic() + READ_TIMEOUT
        if not chunk:  # the client went away
            self._drop_head(conn)
            return
        conn.head += chunk
        if b"\r\n\r\n" in conn.head or b"\n\n" in conn.head or len(conn.head) >= MAX_HEAD:
            self.poller.unregister(conn.sock)
            del heads[conn]
            conn.data_ready = True
            self.enqueue_req(conn)

    def _drop_head(self, conn) -> None:
        self.heads.pop(conn, None)
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """gunicorn's sweep of idle connections, and of heads not whole within READ_TIMEOUT."""
        super().murder_pending()
        now = time.monotonic()
        for conn, deadline in list(self.heads.items()):
            if deadline <= now:
                self._drop_head(conn)

    def handle(self, conn):
        """In a thread: the head read by the poller goes back in front of the parser."""
        head = getattr(conn, "head", None)
        conn.head = None
        if head:
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(bytes(head))
        return super().handle(conn)

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
