"""Redis killed and started again while citizens and partners are being served.

A private `redis-server` (never the shared one) backs the cache and the rate limits of an app
served by a real threaded HTTP server on 127.0.0.1; a bounded pool of threads asks for citizens'
score pages and partners' eligibility while the test kills Redis (SIGKILL) and starts it again.
With the default configuration (rate limits fail open) no answer is a 5xx, `/readyz` goes
`ready` → `degraded` → `ready`, every decision a partner received is in the audit log and the
chain holds, and the cache and the limiter go back to Redis. Failing closed
(`OSMANTHUS_RATE_LIMIT_FAIL_OPEN=0`) refuses partners with 503 + Retry-After during the outage
only, while citizens are still served.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from tests.service.test_faults_servers import need, private_redis

pytestmark = pytest.mark.integration  # private redis-server / PostgreSQL servers

THREADS, MAX_REQUESTS, MAX_SECONDS = 4, 20_000, 40.0  # the load's bounds, whatever happens
PERK = "bike-deposit-free"


@dataclass
class Bureau:
    """What a load needs: citizens' headers, a partner's key and consent tokens."""

    citizens: list[dict[str, str]]
    partner: dict[str, str]
    consents: list[str]


def seed_bureau(app, person_keys: list[str]) -> Bureau:
    """A partner with a key, and a consent to it asking about the bike perk for each person
    (their records and scores must already be stored)."""
    from service.base import clock
    from service.rights.consents import grant
    from tests.service.conftest import Auth

    auth = Auth(app)
    partner = auth.partner("city-bikes")
    engine, config = app.extensions["osmanthus.engine"], app.extensions["osmanthus.config"]
    perks, until = app.extensions["osmanthus.perks"], clock.today(app) + dt.timedelta(days=30)
    tokens = [grant(engine, config, perks, key, "city-bikes", [PERK], until)["token"]
              for key in person_keys]
    return Bureau([auth.citizen(key) for key in person_keys], partner, tokens)


@contextmanager
def served(app) -> Iterator[str]:
    """The app behind a threaded HTTP server on a free loopback port; its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def call(url: str, headers: dict, body: dict | None = None) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of one request; a dead connection is status 0."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={
        **headers, **({"Content-Type": "application/json"} if data else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), dict(error.headers)
    except OSError:
        return 0, {}, {}


@dataclass
class Load:
    """A bounded load: THREADS threads alternating a citizen's page and a partner's check."""

    base: str
    bureau: Bureau
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[tuple[float, str, int, dict, dict]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, n: int) -> None:
        deadline, i = time.monotonic() + MAX_SECONDS, n
        while not self.stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if len(self.answers) >= MAX_REQUESTS:
                    return
            who = i % len(self.bureau.citizens)
            if i % 2:
                kind, answer = "partner", call(
                    f"{self.base}/v1/partner/eligibility", self.bureau.partner,
                    {"consent_token": self.bureau.consents[who], "perk_id": PERK})
            else:
                kind, answer = "citizen", call(f"{self.base}/v1/me/score",
                                               self.bureau.citizens[who])
            with self._lock:
                self.answers.append((time.monotonic(), kind, *answer))
            i += THREADS

    @contextmanager
    def running(self) -> Iterator[Load]:
        threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                   for n in range(THREADS)]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(MAX_SECONDS)


def wait_for(base: str, status: str, seconds: float = 10.0) -> float:
    """Poll /readyz until it says `status`; the seconds it took (fails past `seconds`)."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if call(f"{base}/readyz", {})[1].get("status") == status:
            return time.monotonic() - began
        time.sleep(0.05)
    raise AssertionError(f"/readyz never said {status!r} within {seconds} s")


@pytest.fixture
def redis_server():
    import shutil

    need(shutil.which("redis-server") is not None, "redis-server")
    with private_redis() as server:
        yield server


@pytest.fixture
def make_app(served_apps, people_keys):
    """An app on the test database and the world's champion, with 12 residents scored."""
    return lambda **settings: served_apps(keys=people_keys[:12], **settings)


def _outage(redis_server, base: str, load: Load) -> tuple[float, float, float]:
    """Warm up, kill Redis, keep serving, start it again; (killed, restarted, ready again)."""
    time.sleep(0.5)
    killed = time.monotonic()
    redis_server.kill()
    wait_for(base, "degraded", 5)
    time.sleep(1.0)
    restarted = time.monotonic()
    redis_server.start()
    wait_for(base, "ready", 10)
    ready = time.monotonic()
    time.sleep(1.0)
    return killed, restarted, ready


def test_redis_killed_under_load_no_5xx_degraded_then_ready_and_no_decision_lost(
        redis_server, make_app, people_keys):
    import redis
    from sqlalchemy import select

    from service.store.tables import audit_entries
    from tests.service.conftest import audit_log_verifies

    app = make_app(redis_url=redis_server.url)  # rate limits fail open: the default
    assert app.extensions["osmanthus.config"].rate_limit_fail_open
    bureau = seed_bureau(app, people_keys[:12])
    with served(app) as base:
        assert call(f"{base}/readyz", {})[1]["status"] == "ready"
        with Load(base, bureau).running() as load:
            killed, restarted, _ = _outage(redis_server, base, load)
        answers = load.answers
        during = [a for a in answers if killed <= a[0] < restarted]
        assert [a for a in answers if a[2] >= 500 or a[2] == 0] == [], "no 5xx, no dropped call"
        assert {a[2] for a in answers} == {200}
        assert {a[1] for a in during} == {"citizen", "partner"}, "both served during the outage"

        decisions = {a[3]["decision_id"] for a in answers if a[1] == "partner"}
        engine = app.extensions["osmanthus.engine"]
        with engine.connect() as connection:
            audited = {row.detail["decision_id"] for row in connection.execute(
                select(audit_entries.c.detail).where(audit_entries.c.action == "eligibility"))}
        assert decisions and decisions <= audited, "every decision given is in the audit log"
        assert len(audited) == len(decisions), "and no decision was audited but not given"
        assert audit_log_verifies(engine)

        client = redis.Redis.from_url(redis_server.url, socket_timeout=1)
        call(f"{base}/v1/me/score", bureau.citizens[0])
        assert client.keys("osmanthus:me:*"), "the cache is back on Redis"
        began = time.monotonic()  # the limiter re-checks Redis with a back-off (1, 2, 4 … s)
        while not client.keys("LIMITS*") and time.monotonic() - began < 20:
            call(f"{base}/v1/partner/eligibility", bureau.partner,
                 {"consent_token": bureau.consents[0], "perk_id": PERK})
            time.sleep(0.2)
        assert client.keys("LIMITS*"), "the rate limiter is back on Redis"


def test_failing_closed_refuses_partners_with_503_during_the_outage_only(
        redis_server, make_app, people_keys):
    app = make_app(redis_url=redis_server.url, rate_limit_fail_open=False)
    bureau = seed_bureau(app, people_keys[:12])
    with served(app) as base:
        with Load(base, bureau).running() as load:
            killed, _, ready = _outage(redis_server, base, load)
        answers = load.answers
        refused = [a for a in answers if a[2] != 200]
        assert refused, "partners are refused while their requests cannot be counted"
        assert all(a[1] == "partner" and a[2] == 503 and a[3]["code"] == "unavailable"
                   and a[4].get("Retry-After") for a in refused)
        assert all(killed <= a[0] for a in refused)
        citizens = [a for a in answers if a[1] == "citizen"]
        assert {a[2] for a in citizens} == {200}, "citizens never depend on the limiter"
        assert any(a[2] == 200 and a[0] > ready for a in answers if a[1] == "partner"), \
            "partners are served again once Redis is back"
        status, body, _ = call(f"{base}/v1/partner/eligibility", bureau.partner,
                               {"consent_token": bureau.consents[0], "perk_id": PERK})
        assert status == 200 and body["eligible"] in ("yes", "no", "pending")


def test_no_redis_client_of_the_app_waits_out_a_dead_server(make_app):
    """redis-py 8's `Redis(...)` retries a refused connection 10 times with back-off (~4 s a
    call); the app's clients (cache, rate limits) must make one attempt, so an outage costs a
    request a refused connection, not seconds (`from_url` clients do)."""
    app = make_app(redis_url="redis://127.0.0.1:1/0")
    cache = app.extensions["osmanthus.cache"]._client
    limits = app.extensions["osmanthus.limiter"].storage.storage
    for client in (cache, limits):
        retry = client.get_retry()
        assert retry is None or retry.get_retries() <= 1, retry
