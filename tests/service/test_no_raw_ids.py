"""No raw resident ID number in any table, log line or answer, after feeding them in everywhere.

Raw IDs — valid ones (residents of the world, newcomers, a lower-case check `x`, padded with
spaces) and malformed ones (a wrong check digit, 17 or 19 characters, an impossible or future
birth date, full-width digits) — come in through every edge: an admin's feed upload (good,
quarantined and unreadable files), `osmanthus ingest`, `osmanthus token citizen`, and bad
input on the API's own routes. The stored people are then used through the API as citizens,
a partner and an operator. Afterwards every row of every table, every log record captured at
DEBUG (SQL statements and their parameters included), every command's output and every
response body is searched for each raw string, and for anything shaped like a valid ID.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import polars as pl
from click.testing import CliRunner
from sqlalchemy import MetaData, Table, inspect, select

from features.identity import check_digit, id_problem, make_resident_id, person_key
from features.records import Source
from service.cli.main import main
from service.rights.auth import issue_token
from tests.service.conftest import DEMO_TODAY, Auth

ID_SHAPED = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
PENALTY_HEADER = "decision_no,resident_id,decided_on,category,severity,fine,window_months," \
                 "repaired_on"
COURT_HEADER = "case_no,resident_id,filed_on,amount,status,closed_on"


def valid_ids_in(text: str) -> set[str]:
    """Every substring that is a well-formed resident ID (check digit and birth date hold)."""
    return {m for m in ID_SHAPED.findall(text) if id_problem(m.upper()) is None}


def with_check_x(region: int, born: dt.date) -> str:
    """A valid ID whose check character is X."""
    return next(rid for n in range(1000)
                if (rid := make_resident_id(region, born, n)).endswith("X"))


def spoiled(rid: str) -> str:
    """The same ID with a wrong check digit."""
    return rid[:17] + next(c for c in "0123456789X" if c != rid[17])


@dataclass
class Edges:
    """Everything that came back from the service, to be searched afterwards."""

    texts: list[tuple[str, str]] = field(default_factory=list)  # (request, answer)

    def keep(self, response, *statuses: int):
        assert response.status_code in statuses, (statuses, response.get_data(as_text=True))
        asked = f"{response.request.method} {response.request.path} → {response.status_code}"
        self.texts.append((asked, response.get_data(as_text=True)))
        self.texts.append((asked, json.dumps(dict(response.headers))))
        return response.get_json(silent=True)


def table_rows(engine) -> Iterator[tuple[str, int, str]]:
    """(table, rows, every value of every row as text) for each table of the database."""
    metadata = MetaData()
    with engine.connect() as connection:
        for name in inspect(connection).get_table_names():
            table = Table(name, metadata, autoload_with=connection)
            rows = connection.execute(select(table)).all()
            text = "\n".join(json.dumps(list(row), default=str, ensure_ascii=False)
                             for row in rows)
            yield name, len(rows), text


def feed_csv(header: str, rows: list[str]) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def test_the_scanner_finds_what_it_looks_for():
    """The pattern catches a valid ID (with X or x) and ignores hex digests and near misses."""
    rid, xid = make_resident_id(330106, dt.date(1988, 3, 9), 7), with_check_x(110101, DEMO_TODAY)
    text = f"a {rid}, b:{xid.lower()} c {spoiled(rid)} {'1' * 18} 9f{rid}ab {rid[:17]}"
    assert valid_ids_in(text) == {rid, xid.lower()}


def test_no_raw_id_reaches_a_table_a_log_or_an_answer(
        served_app, world, people_keys, database_url, tmp_path, monkeypatch, caplog):
    capture_logs(caplog)
    client, auth, edges = served_app.test_client(), Auth(served_app), Edges()
    engine = served_app.extensions["osmanthus.engine"]
    known = {person_key(rid): rid for rid in pl.read_parquet(
        world.feed(Source.PENALTY))["resident_id"].unique().to_list() if id_problem(rid) is None}
    resident = next(known[k] for k in people_keys if k in known)  # stored, with records
    newcomer = make_resident_id(330106, dt.date(1988, 3, 9), 7)
    lower_x = with_check_x(330102, dt.date(1979, 12, 31)).lower()
    padded = make_resident_id(110105, dt.date(2001, 2, 28), 44)
    cli_newcomer = make_resident_id(440305, dt.date(1965, 7, 1), 313)
    valid = [resident, newcomer, lower_x, padded, cli_newcomer]
    future = f"110101{DEMO_TODAY.year + 1}0101001"
    impossible = "11010119901332001"
    malformed = [spoiled(resident), spoiled(newcomer), newcomer[:17], newcomer + "7",
                 future + check_digit(future), impossible + check_digit(impossible),
                 "".join(chr(ord(c) + 0xFEE0) for c in newcomer)]
    raw_ids = valid + malformed
    admin = auth.admin()

    # --- an admin's feed uploads: good, quarantined and unreadable --------------------------
    def upload(content: bytes, name: str, source: str = "penalty", *statuses: int):
        return edges.keep(client.post(
            "/v1/admin/feeds", headers=admin, content_type="multipart/form-data",
            data={"source": source, "file": (io.BytesIO(content), name)}), *statuses)

    penalties = feed_csv(PENALTY_HEADER, [
        f"RAW-{n},{rid},2025-06-01,traffic,serious,500,," for n, rid in enumerate(
            [resident, newcomer, lower_x, f"  {padded} ", *malformed])])
    stored = upload(penalties, "penalties.csv", "penalty", 201)
    assert (stored["rows_stored"], stored["rows_quarantined"]) == (4, len(malformed))
    headerless = feed_csv(f"RAW-0,{newcomer},2025-06-01,traffic,serious,500,,", [
        f"RAW-1,{resident},2025-06-01,traffic,serious,500,,"])
    ragged = feed_csv(PENALTY_HEADER, [f"RAW-9,{newcomer},2025-06-01,traffic,serious,500,,,"
                                       f"{resident},{lower_x}"])
    not_text = b"\xff\xfe" + feed_csv(PENALTY_HEADER, [f"RAW-8,{newcomer},2025-06-01"]) + b"\xc3"
    for content in (headerless, ragged, not_text):
        upload(content, "broken.csv", "penalty", 201, 422)
    upload(b"PAR1" + newcomer.encode() + b"PAR1", "broken.parquet", "penalty", 422)

    # --- `osmanthus ingest` ------------------------------------------------------------------
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("OSMANTHUS_REGISTRY", str(world.registry))
    monkeypatch.setenv("OSMANTHUS_AS_OF", DEMO_TODAY.isoformat())
    monkeypatch.delenv("OSMANTHUS_ENV", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    court = tmp_path / "court.csv"
    court.write_bytes(feed_csv(COURT_HEADER, [
        f"(2025)RAW{n},{rid},2025-03-01,9000,active," for n, rid in enumerate(
            [cli_newcomer, resident, *malformed])]))
    outputs = []

    def run(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        outputs.append(result.output)
        return result.stdout

    first = run("ingest", str(court), "--source", "court")
    assert "quarantined: 7" in first and "records changed: 2" in first
    again = run("ingest", str(court), "--source", "court")
    assert "quarantined: 7" in again and "records changed: 0" in again

    # --- `osmanthus token citizen <raw id>`, then the API as those citizens -------------------
    tokens = {rid: run("token", "citizen", rid).strip() for rid in (resident, newcomer, lower_x,
                                                                    cli_newcomer)}
    for rid in malformed[:4]:
        run("token", "citizen", rid, code=2)
    bikes = auth.partner("city-bikes")
    until = (DEMO_TODAY + dt.timedelta(days=30)).isoformat()
    review_ids: list[str] = []
    for rid, token in tokens.items():
        citizen = {"Authorization": f"Bearer {token}"}
        for page in ("score", "explanation", "records", "perks", "disputes", "review",
                     "consents", "access-log"):
            edges.keep(client.get(f"/v1/me/{page}", headers=citizen), 200)
        consent = edges.keep(client.post("/v1/me/consents", headers=citizen, json={
            "partner_id": "city-bikes", "perks": ["bike-deposit-free"], "until": until}), 201)
        edges.keep(client.post("/v1/partner/eligibility", headers=bikes, json={
            "consent_token": consent["token"], "perk_id": "bike-deposit-free"}), 200)
        asked = edges.keep(client.post("/v1/me/review", headers=citizen, json={
            "perk_id": "bike-deposit-free", "reason": "please have a person check"}), 201)
        review_ids.append(asked["review_id"])
        # bad input carrying the raw ID on a citizen's routes
        edges.keep(client.get(f"/v1/me/disputes/{rid}", headers=citizen), 404)
        edges.keep(client.delete(f"/v1/me/consents/{rid}", headers=citizen), 404)
        edges.keep(client.post("/v1/me/disputes", headers=citizen, json={
            "source": "penalty", "record_id": rid, "statement": rid}), 404, 422)
        for partner_id, last_day in ((rid, rid), ("city-bikes", until)):
            edges.keep(client.post("/v1/me/consents", headers=citizen, json={
                "partner_id": partner_id, "perks": [rid], "until": last_day}), 422)
        edges.keep(client.post("/v1/partner/eligibility", headers=bikes, json={
            "consent_token": rid, "perk_id": rid}), 403)
    newcomer_headers = {"Authorization": f"Bearer {tokens[newcomer]}"}
    counting = [r for r in edges.keep(client.get("/v1/me/records", headers=newcomer_headers),
                                      200)["records"] if r["can_dispute"]]
    assert counting, "the newcomer's serious penalty counts"
    dispute = edges.keep(client.post("/v1/me/disputes", headers=newcomer_headers, json={
        "source": counting[0]["source"], "record_id": counting[0]["record_id"],
        "statement": "not mine"}), 201)["dispute"]

    # --- the operator's routes, with and without raw IDs -------------------------------------
    for path in ("/v1/admin/feeds", "/v1/admin/disputes?state=all", "/v1/admin/reviews",
                 f"/v1/admin/disputes/{dispute['dispute_id']}", "/v1/admin/models",
                 f"/v1/admin/feeds/{stored['feed_id']}/quarantine"):
        edges.keep(client.get(path, headers=admin), 200)
    for review_id in review_ids:
        edges.keep(client.get(f"/v1/admin/reviews/{review_id}", headers=admin), 200)
        edges.keep(client.post(f"/v1/admin/reviews/{review_id}/decision", headers=admin,
                               json={"outcome": "eligible", "reason": "checked"}), 200)
    for key in (person_key(newcomer), person_key(cli_newcomer)):
        edges.keep(client.post("/v1/admin/rescore", headers=admin, json={"person_key": key}), 200)
    edges.keep(client.post(f"/v1/admin/disputes/{dispute['dispute_id']}/resolution",
                           headers=admin, json={"outcome": "rejected", "note": "it is right"}),
               200)
    for rid in (newcomer, lower_x, malformed[0]):
        edges.keep(client.post("/v1/admin/rescore", headers=admin, json={"person_key": rid}), 422)
        for path in (f"/v1/admin/reviews/{rid}", f"/v1/admin/disputes/{rid}",
                     f"/v1/admin/feeds/{rid}/quarantine", f"/v1/me/{rid}"):
            edges.keep(client.get(path, headers=admin), 403, 404)
        edges.keep(client.post(f"/v1/admin/reviews/{rid}/decision", headers=admin,
                               json={"outcome": rid}), 404, 422)
        edges.keep(client.get(f"/v1/admin/feeds?limit={rid}", headers=admin), 422)
        edges.keep(client.post("/v1/admin/feeds", headers=admin,
                               content_type="multipart/form-data", data={
                                   "source": rid, "file": (io.BytesIO(penalties), "p.csv")}), 422)
    edges.keep(client.post("/v1/admin/rescore-all", headers=admin), 202)

    # --- the search ----------------------------------------------------------------------------
    tables = database_leaks(engine, raw_ids, stored=valid)
    assert tables == {}  # stored as person keys only
    assert any(r.name == "service.store.ingest" for r in caplog.records), "the logs were not captured"
    assert log_leaks(caplog, raw_ids) == []
    assert [leaks(out, raw_ids) for out in outputs if leaks(out, raw_ids)] == []
    assert [(asked, text) for asked, text in edges.texts if leaks(text, raw_ids)] == []


def leaks(text: str, raw_ids: list[str]) -> set[str]:
    """The raw IDs in a text (in any case), and anything else shaped like a valid ID."""
    folded = text.upper()
    return {rid for rid in raw_ids if rid.upper() in folded} | valid_ids_in(text)


def database_leaks(engine, raw_ids: list[str], stored: list[str]) -> dict[str, set[str]]:
    """Table → the raw IDs found in it; the people in `stored` must be there as person keys."""
    tables = {name: (count, text) for name, count, text in table_rows(engine)}
    assert sum(count for count, _ in tables.values()) > 1_000 and len(tables) >= 10
    everything = "\n".join(text for _, text in tables.values())
    for rid in stored:  # the scan sees what was stored
        assert person_key(rid.strip().upper()) in everything
    found = {name: leaks(text, raw_ids) for name, (_, text) in tables.items()}
    return {name: ids for name, ids in found.items() if ids}


def capture_logs(caplog, sql: bool = False) -> None:
    """Every logger at DEBUG; with `sql`, every SQL statement with its parameters too (what the
    database was sent, even if it never kept it)."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):  # another library's logging set-up may
        if name.split(".")[0] in ("service", "features", "model", "sqlalchemy"):  # have disabled
            logging.getLogger(name).disabled = False  # loggers created before it ran
    if sql:
        caplog.set_level(logging.INFO, logger="sqlalchemy.engine")


def log_leaks(caplog, raw_ids: list[str]) -> list[tuple[str, str, set[str]]]:
    """(logger, the start of its message, raw IDs) for each captured record that has any; a
    record is read as formatted, with its traceback."""
    records = caplog.get_records("setup") + caplog.records
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    found = []
    for record in records:
        text = formatter.format(record)
        if ids := leaks(text, raw_ids):
            found.append((record.name, record.getMessage()[:80], ids))
    return found


def test_a_citizen_token_whose_subject_is_a_raw_id_is_refused(served_app, caplog):
    """A token signed with the service's key but naming a raw ID (an identity provider that
    puts the ID number in `sub`) reaches nothing and stores nothing."""
    capture_logs(caplog)
    client, config = served_app.test_client(), served_app.extensions["osmanthus.config"]
    rid = make_resident_id(330106, dt.date(1988, 3, 9), 7)
    forged = {"Authorization": f"Bearer {issue_token(config, 'citizen', rid)}"}
    answers = [client.get("/v1/me/score", headers=forged),
               client.post("/v1/me/review", headers=forged, json={"reason": "x"}),
               client.post("/v1/me/consents", headers=forged, json={
                   "partner_id": "city-bikes", "perks": ["bike-deposit-free"],
                   "until": (DEMO_TODAY + dt.timedelta(days=3)).isoformat()})]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert [leaks(a.get_data(as_text=True), [rid]) for a in answers] == [set(), set(), set()]
    assert database_leaks(served_app.extensions["osmanthus.engine"], [rid], stored=[]) == {}
    assert log_leaks(caplog, [rid]) == []


def test_an_id_number_typed_into_free_text_is_not_stored(served_app, people_keys, caplog):
    """Citizens write their ID number into a dispute's statement or a review request, and
    reviewers into their notes: the service must not keep it."""
    capture_logs(caplog)
    client, auth = served_app.test_client(), Auth(served_app)
    rid, other = (make_resident_id(330106, dt.date(1988, 3, 9), 7),
                  with_check_x(110101, dt.date(1970, 1, 1)))
    citizen = auth.citizen(people_keys[0])
    record = next(r for r in client.get("/v1/me/records", headers=citizen).get_json()["records"]
                  if r["can_dispute"])
    opened = client.post("/v1/me/disputes", headers=citizen, json={
        "source": record["source"], "record_id": record["record_id"],
        "statement": f"不是我的。我的身份证号 {rid}"})
    asked = client.post("/v1/me/review", headers=citizen, json={
        "perk_id": "bike-deposit-free",
        "reason": f"my ID is {other.lower()}, please check by hand"})
    statuses = [opened.status_code, asked.status_code]
    if opened.status_code == 201:
        resolved = client.post(
            f"/v1/admin/disputes/{opened.get_json()['dispute']['dispute_id']}/resolution",
            headers=auth.admin(), json={"outcome": "rejected", "note": f"checked {rid}"})
        statuses.append(resolved.status_code)
    assert set(statuses) <= {200, 201, 422}  # refused, or accepted ...
    assert database_leaks(served_app.extensions["osmanthus.engine"], [rid, other],
                          stored=[]) == {}  # ... but never kept
    assert log_leaks(caplog, [rid, other]) == []


def test_bad_input_never_carries_a_raw_id_to_the_database(served_app, people_keys, caplog):
    """Ids that cannot exist are refused before any query, so the database never sees them."""
    capture_logs(caplog, sql=True)
    client, auth = served_app.test_client(), Auth(served_app)
    rid = make_resident_id(330106, dt.date(1988, 3, 9), 7)
    citizen, admin = auth.citizen(people_keys[0]), auth.admin()
    assert client.get("/v1/admin/feeds", headers=admin).status_code == 200  # logs SQL
    answers = [
        client.post("/v1/me/disputes", headers=citizen,
                    json={"source": "penalty", "record_id": rid, "statement": "not mine"}),
        client.get(f"/v1/admin/reviews/{rid}", headers=admin),
        client.post(f"/v1/admin/reviews/{rid}/decision", headers=admin,
                    json={"outcome": "eligible", "reason": "x"}),
        client.get(f"/v1/admin/disputes/{rid}", headers=admin),
        client.get(f"/v1/admin/feeds/{rid}/quarantine", headers=admin),
    ]
    assert {a.status_code for a in answers} <= {404, 422}
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)
    assert log_leaks(caplog, [rid]) == []
