"""How many trickling clients it takes to stop the served API, measured.

    .venv/bin/python bench/trickle.py [--threads 4] [--every 2] [--counts 2,3,4,6]

Starts `osmanthus serve`'s set-up as bench/attack.py does (one worker, `--threads` threads,
`OSMANTHUS_READ_TIMEOUT` 10 s), then for each count N opens N connections that each send one
byte of a never-ending header every `--every` seconds (under the read timeout, so no silence is
long enough to cut them off), and asks `/healthz` five times with a 3 s timeout. Prints, per N,
how many of those answered and how fast. The expected bound: `workers × threads` tricklers take
every thread, for as long as gunicorn's header limits let them go on (50 fields of 8,190 bytes:
hours at a byte every few seconds); fewer leave the rest serving.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attack import Server  # noqa: E402
from common import machine  # noqa: E402


def trickle(port: int, every: float, stop: threading.Event) -> None:
    """One client: a request line, then a header one byte at a time, forever."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            while not stop.wait(every):
                client.sendall(b"a")
    except OSError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--counts", default="2,3,4,6")
    args = parser.parse_args()
    print(machine())
    root = Path(tempfile.mkdtemp(prefix="osmanthus-trickle-"))
    server = Server(root, {"OSMANTHUS_HTTP_THREADS": str(args.threads),
                           "OSMANTHUS_READ_TIMEOUT": "10"})
    print(f"gunicorn: 1 worker × {args.threads} threads, read timeout 10 s; each trickler "
          f"sends a header byte every {args.every:g} s\n")
    print("tricklers | /healthz answered (of 5, 3 s timeout) | slowest answer")
    try:
        for count in (int(n) for n in args.counts.split(",")):
            stop = threading.Event()
            clients = [threading.Thread(target=trickle, args=(server.port, args.every, stop),
                                        daemon=True) for _ in range(count)]
            for client in clients:
                client.start()
            time.sleep(args.every * 1.5)  # every trickler has sent a byte: each holds a thread
            answered, slowest = 0, 0.0
            for _ in range(5):
                started = time.monotonic()
                try:
                    if server.request("GET", "/healthz", timeout=3)[0] == 200:
                        answered += 1
                        slowest = max(slowest, time.monotonic() - started)
                except OSError:
                    slowest = max(slowest, time.monotonic() - started)
            print(f"{count:9d} | {answered:37d} | {slowest:.3f} s", flush=True)
            stop.set()
            for client in clients:
                client.join(timeout=5)
            time.sleep(1)  # the server closes the stopped ones
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
