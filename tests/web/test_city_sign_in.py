"""Signing in on the citizen page with the city's ID (OpenID Connect, authorization code with
PKCE, service/web/static/signin.js), in headless chromium, against the provider the tests start
(tests/service/oidc_provider.py)."""

from __future__ import annotations

import math

import pytest

from features.identity import id_problem, person_key
from tests.service.oidc_provider import AUDIENCE, Provider
from tests.web.test_page import _api, _wait

pytestmark = [pytest.mark.slow, pytest.mark.integration]  # a real browser


@pytest.fixture
def provider():
    made = Provider()
    yield made
    made.stop()


@pytest.fixture
def live_settings(provider) -> dict:
    return {"oidc_issuer": provider.issuer, "oidc_audience": AUDIENCE}


def _resident(world, people: list[str]) -> str:
    """An ID number of the world whose person key is one of the live app's residents."""
    import polars as pl

    from features.records import Source

    ids = pl.read_parquet(world.feed(Source.SOCIAL_SECURITY), columns=["resident_id"])
    wanted = set(people)
    return next(value for value in ids["resident_id"].unique().sort().to_list()
                if id_problem(value) is None and person_key(value) in wanted)


def test_a_citizen_signs_in_with_the_citys_id(live_app, browser, provider, world):
    from selenium.webdriver.common.by import By

    live, driver = live_app, browser
    css = lambda selector: driver.find_element(By.CSS_SELECTOR, selector)  # noqa: E731
    resident = _resident(world, live.people)
    provider.user = {"sub": "citizen-42", "resident_id": resident}
    expected = _api(live, person_key(resident), "/score")

    driver.get(f"{live.url}/app")
    _wait(driver, lambda d: css("#city-sign-in").is_displayed(), "no city sign-in offered")
    assert css("#city-sign-in-button").text == "用城市身份登录"
    css("#city-sign-in-button").click()  # to the provider and back with a code
    _wait(driver, lambda d: css("#score-value").get_attribute("textContent"), "no score shown")
    assert css("#score-value").get_attribute("textContent") == str(math.floor(expected["score"]))
    assert driver.current_url == f"{live.url}/app"  # the code left the address bar
    assert driver.execute_script("return sessionStorage.getItem('osmanthus.pkce')") is None
    assert not provider.codes  # the code was used, once
    problems = [entry["message"] for entry in driver.get_log("browser")
                if entry["level"] == "SEVERE"]
    assert not problems, problems  # no CSP refusal of the token endpoint, no script error

    # a return that this tab did not start (a forged or replayed code) signs nobody in
    css("#sign-out").click()
    driver.get(f"{live.url}/app?code=stolen&state=guessed")
    _wait(driver, lambda d: css("#alert").text, "no message")
    assert css("#alert").text == "登录未完成，请重新登录。"
    assert css("#sign-in").is_displayed() and not css("#signed-in").is_displayed()

