"""The citizen page in a real browser: Debian's chromium and chromium-driver, driven by selenium.

The browser is part of the test set-up: when `/usr/bin/chromium` or `/usr/bin/chromedriver` is
missing and we are root, it is installed with apt (never a browser download by selenium or
anyone else), with a CJK font so that the screenshots show Chinese (the page itself uses the
system's fonts and fetches none); otherwise the test skips — and in CI
(`OSMANTHUS_REQUIRE_SERVICES=1`) a missing browser is a failure, like a missing PostgreSQL.

The app is served for the browser by werkzeug on 127.0.0.1 on a free port, in a thread, on
SQLite only: this test is about the page and the way it uses the `/v1/me` API; the API's
behaviour on PostgreSQL is what the service tests check on both engines, and a second engine
would double the slowest test for nothing the page could tell apart.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")  # fonts-noto-cjk
INSTALL = ("apt-get update -qq && "
           "apt-get install -y -qq chromium chromium-driver fonts-noto-cjk")
INSTALL_TIMEOUT = 900  # seconds
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DEMO_TODAY = dt.date(2026, 1, 1)  # the world's "now" (as in tests/service/conftest.py)
PAST = (dt.date(2025, 1, 1), dt.date(2025, 7, 1))  # earlier scores, so the page has a trend


def _missing() -> list[str]:
    return [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]


def ensure_browser() -> None:
    """Install Debian's chromium and its driver if they are missing and we may; else skip/fail."""
    if (_missing() or not CJK_FONT.exists()) and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with contextlib.suppress(subprocess.TimeoutExpired):  # then: skip, or fail in CI
            subprocess.run(["sh", "-c", INSTALL], env=env, timeout=INSTALL_TIMEOUT, check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if missing := _missing():
        skip_or_fail(f"no headless browser: {', '.join(missing)} missing "
                     f"(as root: {INSTALL})")


@pytest.fixture(scope="session")
def browser_ready() -> None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        skip_or_fail("selenium is not installed (pip install -e '.[test]')")
    ensure_browser()


@dataclass
class Live:
    app: object
    url: str
    people: list[str]

    def citizen_token(self, person_key: str) -> str:
        from service.rights.auth import issue_token

        return issue_token(self.app.extensions["osmanthus.config"], "citizen", person_key)


@pytest.fixture
def live_settings() -> dict:
    """Settings of the live app beyond the test's own (a test module may override it)."""
    return {}


@pytest.fixture
def live_app(browser_ready, world, tmp_path, live_settings):
    """The app on a free port of 127.0.0.1, with 40 residents stored and scored three times."""
    from werkzeug.serving import make_server

    from service.app import create_app
    from service.base.config import Config
    from service.rights.partners import add_partner
    from service.scoring.score import score_people
    from service.store.bulk import write_records

    config = Config(env="test", database_url=f"sqlite:///{tmp_path / 'osmanthus.db'}",
                    registry_dir=world.registry, as_of=DEMO_TODAY, **live_settings)
    app = create_app(config)
    engine, serving = app.extensions["osmanthus.engine"], app.extensions["osmanthus.model"]
    people = world.people()["person_key"].head(40).to_list()
    write_records(engine, world.records.filter_persons(people))
    for as_of in (*PAST, DEMO_TODAY):  # the latest score is the one of DEMO_TODAY
        score_people(engine, serving, people, as_of)
    for partner_id, name in (("city-bikes", "Public bicycle company"),
                             ("city-library", "City library")):
        add_partner(engine, partner_id, name)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Live(app, f"http://127.0.0.1:{server.server_port}", people)
    server.shutdown()
    thread.join(timeout=10)
    engine.dispose()


@pytest.fixture
def browser(browser_ready, tmp_path):
    """Headless chromium through chromedriver, with a fresh profile and no background traffic."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-extensions",
                 "--disable-default-apps", "--hide-scrollbars", "--lang=zh-CN",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, CSP
    # a driver path given: selenium never runs Selenium Manager, so it never downloads anything
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)),
                              options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
