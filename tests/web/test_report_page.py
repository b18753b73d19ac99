"""The model report on a phone, in a real browser: nothing wider than the screen."""

from __future__ import annotations

import pytest

from model.bundle import load_model
from model.report import Model, build_report
from tests.model.test_bundle import people_for
from tests.model.test_report import AS_OF, PERKS, bundles  # noqa: F401 - the fixture
from tests.web.test_page import PHONE, _screenshot

pytestmark = [pytest.mark.slow, pytest.mark.integration]  # a real browser


def test_the_report_fits_a_phone(bundles, browser, artifacts, tmp_path):  # noqa: F811
    strong, weak, train, valid, vy = bundles
    path = build_report(Model("strong", load_model(strong)), valid, vy, tmp_path / "report",
                        champion=Model("weak", load_model(weak)), people=people_for(valid, 3),
                        thresholds=PERKS, train_frame=train, as_of=AS_OF, sample=300)
    browser.set_window_size(*PHONE)
    browser.get(path.as_uri())
    widths = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    widest = browser.execute_script(
        "return [...document.querySelectorAll('*')].filter(e => e.getBoundingClientRect()"
        ".right > 392 || e.scrollWidth > 392).slice(0, 5)"
        ".map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect()"
        ".right) + ' ' + (e.textContent || '').slice(0, 40))")
    assert widths[0] <= widths[1], (f"the report is {widths[0]} px wide on a {widths[1]} px "
                                    f"phone: {widest}")
    _screenshot(browser, artifacts / "report-phone.png", PHONE)
