"""The citizen page (/app) in headless chromium, the way a citizen uses it: sign in with a token,
read the score, dispute a record and see the score and records change, grant a consent and see
its QR code, revoke it, see each access-log entry verified in the browser (and one with a
tampered proof not), switch to English. Screenshots at phone and desktop width are kept in
`test-artifacts/`."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import re

import pytest

from tests.web.conftest import DEMO_TODAY

pytestmark = [pytest.mark.slow, pytest.mark.integration]  # a real browser

PHONE, DESKTOP = (390, 844), (1280, 900)
WAIT = 15  # seconds, for any one thing the page does


def _api(live, person_key: str, path: str) -> dict:
    client = live.app.test_client()
    token = live.citizen_token(person_key)
    answer = client.get(f"/v1/me{path}", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def _disputable(live) -> tuple[str, dict, dict]:
    """A resident with a counting record whose clearing alone unlocks a perk (so a dispute
    visibly raises the score) and smaller factors behind one tap (the waterfall's last line),
    that record, and their score page."""
    for person_key in live.people:
        if not _api(live, person_key, "/explanation")["smaller_factors"]:
            continue
        perks = _api(live, person_key, "/perks")
        for perk in perks["perks"]:
            for record in perk["unlocked_by"]:
                if record["score_without"] >= perks["score"] + 1:
                    return person_key, record, _api(live, person_key, "/score")
    pytest.fail("no resident of the test world has smaller factors and a record whose dispute "
                "would unlock a perk")


def _whole(text: str) -> int:
    """The whole number a waterfall line shows ("▼ −12 分 (减分)" → −12, "600 分" → 600)."""
    number = re.search(r"([+−-]?)(\d+)", text)
    assert number, text
    return -int(number[2]) if number[1] in "−-" and number[1] else int(number[2])


def _wait(driver, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(condition, message)


def _screenshot(driver, path, size: tuple[int, int]) -> None:
    """The whole page at this width (chromium's capture beyond the viewport)."""
    driver.set_window_size(*size)
    width = driver.execute_script("return document.documentElement.clientWidth")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": size[0] < 600})
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png",
                                                            "captureBeyondViewport": True})
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 10_000


def _known_vector(driver) -> None:
    """verify.js against merkle.py: the leaf hash, an inclusion proof folded to the root (every
    leaf of a 7-leaf tree, and a tampered proof), and an Ed25519 tree head signed here."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from jwt.algorithms import OKPAlgorithm

    from service.rights import merkle

    nonce = "5e" * 16  # the last leaf as the API serves it: the person as a salted commitment
    person = hashlib.sha256(bytes.fromhex(nonce) + ("c3" * 32).encode()).hexdigest()
    data = [f"leaf {i}" for i in range(6)] + [json.dumps(["t", "citizen", person, "a", {},
                                                          nonce])]
    leaves = [merkle.leaf_hash(d.encode()) for d in data]
    root = merkle.root_of(leaves)

    def subtree(start: int, end: int) -> bytes:
        return merkle.root_of(leaves[start:end])

    proofs = [[h.hex() for h in merkle.inclusion_proof(i, 7, subtree)] for i in range(7)]
    bad = [list(p) for p in proofs]
    bad[5][1] = "00" + bad[5][1][2:]
    key = Ed25519PrivateKey.generate()
    head = {"tree_size": 7, "root_hash": root.hex(), "timestamp": 1767225600123, "key_id": "k1"}
    message = (f"osmanthus-audit-tree-head:v1\n7\n{root.hex()}\n1767225600123\n").encode()
    head["signature"] = base64.urlsafe_b64encode(key.sign(message)).rstrip(b"=").decode()
    jwks = {"keys": [{**OKPAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1"}]}
    out = driver.execute_async_script("""
        const [data, proofs, bad, head, jwks, done] = arguments, V = window.OsmanthusVerify;
        (async () => {
          const leaf = V.bytesHex(await V.leafHash(data[0]));
          const roots = [];
          for (let i = 0; i < data.length; i++) {
            const r = await V.rootFromInclusion(await V.leafHash(data[i]), i, 7, proofs[i]);
            roots.push(r && V.bytesHex(r));
          }
          const tampered = await V.rootFromInclusion(await V.leafHash(data[5]), 5, 7, bad[5]);
          const wrongIndex = await V.rootFromInclusion(await V.leafHash(data[5]), 4, 7, proofs[5]);
          const signed = await V.headSigned(head, jwks);
          const forged = await V.headSigned({ ...head, tree_size: 8 }, jwks);
          const states = await V.checkLog({ tree_head: head, entries: [
            { sealed: true, leaf_index: 3, leaf_data: data[3], proof: proofs[3] },
            { sealed: true, leaf_index: 5, leaf_data: data[5], proof: bad[5] },
            { sealed: true, leaf_index: 2, leaf_data: data[2] + " ", proof: proofs[2] },
            { sealed: false, leaf_index: null, leaf_data: "x" },
            { sealed: true, leaf_index: 6, leaf_data: data[6], proof: proofs[6] }] }, jwks);
          done({ leaf, roots, tampered: tampered && V.bytesHex(tampered),
                 wrongIndex: wrongIndex && V.bytesHex(wrongIndex), signed, forged, states });
        })().catch((e) => done({ error: String(e) }));
    """, data, proofs, bad, head, jwks)
    assert "error" not in out, out
    assert out["leaf"] == leaves[0].hex()
    assert out["roots"] == [root.hex()] * 7
    assert out["tampered"] != root.hex() and out["wrongIndex"] != root.hex()
    assert out["signed"] is True and out["forged"] is False
    # the leaf data hashed exactly as served (nothing put back, whoever signed in)
    assert out["states"] == ["verified", "failed", "failed", "unsealed", "verified"]


def _verified_access_log(live, driver, css, artifacts) -> None:
    """Unsealed entries say so; once sealed, each is verified in the browser; an entry whose
    proof the server serves tampered (a stored node rewritten) says it does not verify."""
    from sqlalchemy import select, update

    from service.base.clock import clock_of
    from service.base.keys import audit_keys_of
    from service.rights import sequencer
    from service.store.tables import audit_entries, audit_leaves

    def states() -> dict[str, str]:
        # read in one script: the page replaces the list when its check ends (no stale nodes)
        return driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('#access-list > li')]"
            ".map((li, n) => [li.dataset.leafIndex || `new-${n}`, li.dataset.verified]));")

    def settled(d) -> dict[str, str] | bool:
        found = states()
        return found if found and "checking" not in found.values() else False

    _wait(driver, settled, "the access log was not checked")
    assert set(states().values()) == {"unsealed"}  # nothing sealed yet in this store
    assert "尚未封存" in css("#access-list").text and "尚未封存" not in css("#access-head").text
    engine = live.app.extensions["osmanthus.engine"]
    config = live.app.extensions["osmanthus.config"]
    head = sequencer.seal(engine, audit_keys_of(config), clock=clock_of(config))
    driver.refresh()  # signs in again from the session: the page loads the log anew
    _wait(driver, lambda d: settled(d) and set(states().values()) == {"verified"},
          f"not every entry verified: {states()}")
    # one clock: the head is dated in the city's time like its entries, not the machine's
    assert clock_of(config).today().isoformat() in css("#access-head").text
    assert "已验证" in css("#access-list").text and str(head.tree_size) in css("#access-head").text
    _screenshot(driver, artifacts / "citizen-phone-zh-verified.png", PHONE)

    index = next(int(i) for i in states() if int(i) ^ 1 < head.tree_size)
    # the sibling leaf's hash (level 0 of the tree is the entry's stored leaf hash) rewritten
    node = audit_entries.c.id == select(audit_leaves.c.entry_id).where(
        audit_leaves.c.leaf_index == index ^ 1).scalar_subquery()
    with engine.begin() as connection:
        original = connection.execute(select(audit_entries.c.leaf_hash).where(node)).scalar_one()
        connection.execute(update(audit_entries).where(node).values(leaf_hash=b"\x00" * 32))
    try:
        driver.refresh()
        _wait(driver, lambda d: settled(d) and states()[str(index)] == "failed",
              f"the tampered proof of leaf {index} was not caught: {states()}")
        assert {i: s for i, s in states().items() if i != str(index)} == {
            i: "verified" for i in states() if i != str(index)}
        assert "无法验证" in css(f"#access-list > li[data-leaf-index='{index}']").text
        css("#access").screenshot(str(artifacts / "citizen-access-log-tampered.png"))
    finally:
        with engine.begin() as connection:
            connection.execute(update(audit_entries).where(node).values(leaf_hash=original))
    driver.refresh()
    _wait(driver, lambda d: settled(d) and set(states().values()) == {"verified"},
          "the restored proof does not verify")
    _known_vector(driver)


def test_citizen_page(live_app, browser, artifacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from service.rights.auth import decode_token

    live, driver = live_app, browser
    person_key, target, before = _disputable(live)
    records_before = _api(live, person_key, "/records")
    css = lambda selector: driver.find_element(By.CSS_SELECTOR, selector)  # noqa: E731

    # sign in, in Chinese, on a phone
    driver.set_window_size(*PHONE)
    driver.get(f"{live.url}/app")
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    assert css("h1").text == "桂花分"
    css("#token").send_keys(live.citizen_token(person_key))
    css("#sign-in-form button[type=submit]").click()
    _wait(driver, lambda d: css("#score-value").get_attribute("textContent"), "no score shown")

    # the score, its band, the trend and the reasons
    assert css("#score-value").get_attribute("textContent") == str(math.floor(before["score"]))
    assert before["band_zh"] in css("#band").text
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.trend circle")) == len(before["trend"]) == 3
    assert driver.find_elements(By.CSS_SELECTOR, "#waterfall li.wf-row.down, #waterfall li.wf-row.up")
    assert css("#records-summary").text == (f"计入 {records_before['counting']} 条，"
                                            f"不计入 {records_before['not_counting']} 条")
    assert "✗ 未解锁" in css("#perks-body").text and "还差" in css("#perks-body").text
    # advice: each locked perk says what it takes (or that it is out of reach this year), and
    # an adverse record how many points clearing it restores
    advised = _api(live, person_key, "/advice")
    shown = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#perks-body .advice")]
    assert shown and len(shown) == len(advised["perks"])
    assert all(text.startswith(("还差", "今年内无法达到")) for text in shown)
    _screenshot(driver, artifacts / "citizen-phone-zh.png", PHONE)

    # the waterfall is whole points that add up to the score; one tap shows every smaller factor
    explanation = _api(live, person_key, "/explanation")
    shown = [_whole(text) for text in driver.execute_script(
        "return [...document.querySelectorAll('#waterfall > li > .wf-text > .wf-value')]"
        ".map(e => e.textContent)")]
    assert sum(shown[:-1]) == shown[-1] == explanation["score"] == math.floor(before["score"])
    smaller = explanation["smaller_factors"]
    assert smaller and not driver.find_elements(By.CSS_SELECTOR, "#smaller-factors")
    assert abs(explanation["other_points"]) <= min(abs(r["points"])
                                                   for r in explanation["reasons"])
    toggle = css("#smaller-toggle")
    assert toggle.get_attribute("aria-expanded") == "false" and f"{len(smaller)}" in toggle.text
    toggle.click()
    _wait(driver, lambda d: css("#smaller-factors").is_displayed(), "the factors are not shown")
    listed = driver.find_elements(By.CSS_SELECTOR, "#smaller-factors > li")
    assert [li.get_attribute("data-feature") for li in listed] == [r["feature"] for r in smaller]
    assert [_whole(li.find_element(By.CSS_SELECTOR, ".wf-value").get_attribute("textContent"))
            for li in listed] == [r["points"] for r in smaller]
    assert sum(r["points"] for r in smaller) == explanation["other_points"]
    assert all(r["text_zh"] in css("#smaller-factors").text for r in smaller)
    assert css("#smaller-toggle").get_attribute("aria-expanded") == "true"
    _screenshot(driver, artifacts / "citizen-phone-zh-factors.png", PHONE)

    # a locked perk names the record that would unlock it; go there and dispute it, by keyboard
    css(f"#perks-body button[data-record-id='{target['record_id']}']").click()
    record = f"#rec-{target['source']}-{target['record_id']}"
    _wait(driver, lambda d: css(record).is_displayed(), "the record is not shown")
    assert "✓" in css(record).text  # it counts, and says so in words as well as colour
    css(f"{record} .dispute-button").send_keys(Keys.ENTER)
    statement = _wait(driver, lambda d: css(f"{record} textarea"), "no statement box")
    assert driver.switch_to.active_element == statement  # focus moved to the statement
    statement.send_keys("这笔费用我已于当月缴清，附收据。")
    css(f"{record} form button[type=submit]").click()
    _wait(driver, lambda d: "答复期限" in css("#status").text, "no dispute confirmation")

    # labelled, not frozen: the score and the record's counting are as before
    after = _api(live, person_key, "/score")
    assert after["score"] == before["score"]
    assert css("#score-value").get_attribute("textContent") == str(math.floor(after["score"]))
    assert "异议处理中" in css(record).text and "✓" in css(record).text
    assert driver.switch_to.active_element.get_attribute("id") == record[1:]  # focus on it
    assert not driver.find_elements(By.CSS_SELECTOR, f"{record} .dispute-button")
    assert css(f"{record} .withdraw-dispute").is_displayed()
    assert css("#records-summary").text.startswith(f"计入 {records_before['counting']} 条")
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.trend circle")) == 3  # same as-of date

    # grant a consent to the bicycle company, see its QR code, then revoke it
    # (double-clicked: one idempotency key per grant, so still one consent)
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).double_click(css("#consent-form button[type=submit]")).perform()
    _wait(driver, lambda d: css("#consent-qr"), "no QR code")
    _wait(driver, lambda d: len(_api(live, person_key, "/consents")) >= 1, "no consent")
    assert len(_api(live, person_key, "/consents")) == 1
    # focus moves to what was made (waited for: it moves once the page has redrawn)
    _wait(driver, lambda d: d.switch_to.active_element == css("#consent-qr"), "focus is not on the code")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#consent-qr")) == 1
    qr = css("#consent-qr")
    modules = int(qr.get_attribute("data-modules"))
    assert 21 <= modules <= 177 and (modules - 17) % 4 == 0
    token = css("#consent-token").get_attribute("value")
    claims = decode_token(live.app.extensions["osmanthus.config"], token, "consent")
    assert claims["partner"] == "city-bikes" and claims["perks"] == ["bike-deposit-free"]
    consent = f"#consent-list li[data-consent-id='{claims['sub']}']"
    assert "有效" in css(consent).text
    # one clock: the score's date, today, the dispute's due date, the consent's dates and the
    # access log are all of the service's clock (frozen at the world's today), none of the
    # browser's or the server's wall clock
    today = DEMO_TODAY.isoformat()
    assert f"评分日期 {today}" in css("#score-dates").text
    assert f"今天 {today}" in css("#score-dates").text
    assert (DEMO_TODAY + dt.timedelta(days=20)).isoformat() in css(record).text  # due date
    until = (DEMO_TODAY + dt.timedelta(days=90)).isoformat()
    assert css("#consent-until").get_attribute("value") == until
    assert f"{today} · " in css(consent).text and until in css(consent).text
    logged = re.findall(r"\d{4}-\d{2}-\d{2}", css("#access-list").text)
    assert logged and set(logged) == {today}
    # a monthly record's five years on file are not shown as when its points end
    listed = next(r for r in _api(live, person_key, "/records")["records"]
                  if r["record_id"] == target["record_id"])
    assert listed["repair"]["adverse"] and listed["repair"]["expires_on"]  # clearing it helps
    if target["source"] in ("transit", "social_security"):
        assert f"保存期满、自动移出于 {listed['repair']['expires_on']}" in css(record).text
        assert "其扣分可能更早消失" in css(record).text
    else:  # a penalty: its disclosure window's end is when it stops costing points
        assert f"自动停止计入于 {listed['repair']['expires_on']}" in css(record).text
    wall = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date().isoformat()
    assert wall == today or wall not in css("body").text
    _screenshot(driver, artifacts / "citizen-phone-zh-consent.png", PHONE)
    css(f"{consent} button.revoke").click()
    _wait(driver, lambda d: "已撤销" in css(consent).text, "the consent is not shown revoked")
    assert not driver.find_elements(By.CSS_SELECTOR, "#consent-qr")
    assert not driver.find_elements(By.CSS_SELECTOR, f"{consent} button.revoke")
    log = css("#access-list").text
    assert "提出异议" in log and "授权" in log and "撤销授权" in log

    # ask for human review of one perk: only that perk waits; then withdraw it
    perks_before = _api(live, person_key, "/perks")["perks"]
    # a reason of spaces passes the browser's check but not the API's: the error is in
    # Chinese, next to the field, and the field has the focus
    css("#review-reason").send_keys("   ")
    css("#review form button[type=submit]").click()
    error = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#review .field-error"),
                  "no error next to the field")[0]
    assert "理由" in error.text and "reason" not in error.text
    assert driver.switch_to.active_element == css("#review-reason")
    assert css("#review-reason").get_attribute("aria-describedby") == error.get_attribute("id")
    css("#review-reason").clear()
    css("#review-reason").send_keys("请人工核实我的交通记录。")
    chosen = css("#review-perk").get_attribute("value")
    css("#review form button[type=submit]").click()
    _wait(driver, lambda d: "复核中" in css("#review-state").text, "no review pending")
    perks_during = _api(live, person_key, "/perks")["perks"]
    assert [p["status"] for p in perks_during] == [
        "pending" if p["perk_id"] == chosen else p["status"] for p in perks_before]
    css("#review button.withdraw-review").click()
    _wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "#review button.withdraw-review"),
          "the review request was not withdrawn")
    assert "已撤回" in css("#review-body").text

    # English
    css("#lang-switch").click()
    _wait(driver, lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en",
          "the page did not switch to English")
    assert css("#score-title").text == "My score"
    assert after["band"] in css("#band").text.lower()
    assert "Under dispute" in css(record).text or "under dispute" in css(record).text
    assert css("#lang-switch").text == "中文"
    # one date format in English too (no "06/12/2026" beside "2026-01-01")
    log_text = css("#access-list").text
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", log_text)
    assert not re.search(r"\d{2}/\d{2}/\d{4}", log_text)
    _screenshot(driver, artifacts / "citizen-phone-en.png", PHONE)
    _screenshot(driver, artifacts / "citizen-desktop-en.png", DESKTOP)
    # on a desktop both columns are used: neither ends far above the other
    driver.set_window_size(*DESKTOP)
    left, right = driver.execute_script(
        "const cards = [...document.querySelectorAll('#signed-in > .card')];"
        "const mid = document.documentElement.clientWidth / 2;"
        "const bottom = (side) => Math.max(0, ...cards.filter((c) => side(c.getBoundingClientRect()"
        ".left < mid)).map((c) => c.getBoundingClientRect().bottom));"
        "return [bottom((l) => l), bottom((l) => !l)];")
    assert left > 0 and right > 0
    assert abs(left - right) < 0.2 * max(left, right), (left, right)
    css("#lang-switch").click()
    _wait(driver, lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN",
          "the page did not switch back to Chinese")
    _screenshot(driver, artifacts / "citizen-desktop-zh.png", DESKTOP)

    # the citizen withdraws the dispute: the label goes, the record is disputable again
    css(f"{record} .withdraw-dispute").click()
    _wait(driver, lambda d: "已撤回异议" in css(record).text, "the dispute was not withdrawn")
    assert css(f"{record} .dispute-button").is_displayed()

    # the access log, checked entry by entry in the browser (reloads the page)
    _verified_access_log(live, driver, css, artifacts)

    # signing out clears everything, the token box too: the next person starts empty
    css("#sign-out").click()
    _wait(driver, lambda d: css("#sign-in").is_displayed(), "not signed out")
    assert css("#token").get_attribute("value") == ""
    assert not css("#signed-in").is_displayed()

    # everything came from the app itself, and nothing broke in the console (e.g. the CSP)
    sources = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert sources and all(s.startswith(live.url) for s in sources), sources
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
              and not (e["source"] == "network" and "/v1/me/review" in e["message"]
                       and "422" in e["message"])]  # the one refused on purpose above
    assert not errors, json.dumps(errors, ensure_ascii=False)
