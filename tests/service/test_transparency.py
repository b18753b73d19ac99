"""The public side of the Merkle audit log (issue 15): signed tree heads, consistency proofs,
the audit keys, the citizen's access log with inclusion proofs, and `osmanthus audit
verify-remote` against the app over (test-client) HTTP.

Every proof the API gives is compared with the one an independent implementation computes here
from the RFC 6962 §2.1 recursive definitions (MTH, PATH, SUBPROOF) over the entries' own
`leaf_data`, and every signature is checked with `cryptography` against the published JWK — not
with the service's own verifiers."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from sqlalchemy import select, update

from service.rights import audit, sequencer
from service.rights.auth import issue_token

PERSON = "ab" * 32


# --- RFC 6962 §2.1, straight from the definitions ---------------------------------------------
def _k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _k(len(leaves))
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = _k(n)
    if m <= k:
        return subproof(m, leaves[:k], whole) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


# --- helpers ------------------------------------------------------------------------------------
def _append(app, count: int, start: int = 0) -> None:
    with app.extensions["osmanthus.engine"].begin() as connection:
        for n in range(start, start + count):
            audit.append(connection, actor="partner:city-bikes", action="eligibility",
                         person_key=PERSON, detail={"perk_id": "bike-deposit-free",
                                                    "eligible": "yes", "n": n})


def _all_leaves(app) -> list[bytes]:
    """Every sealed entry's leaf data in tree order, rebuilt from its row (the citizen sees only
    their own; the tree holds everyone's, e.g. the migration's own entry)."""
    from sqlalchemy import select

    from service.store.tables import audit_entries as t
    from service.store.tables import audit_leaves as leaves

    with app.extensions["osmanthus.engine"].connect() as connection:
        rows = connection.execute(select(t, leaves.c.leaf_index).select_from(
            leaves.join(t, t.c.id == leaves.c.entry_id)).order_by(leaves.c.leaf_index)).all()
    assert [row.leaf_index for row in rows] == list(range(len(rows)))
    return [_leaf_text(row).encode() for row in rows]


def _leaf_text(row) -> str:
    """The leaf data as the README defines it, restated here (not the service's code):
    canonical JSON of [UTC time, actor, hex SHA-256(nonce bytes ‖ person key), action,
    detail, nonce]."""
    import datetime as dt

    at = row.at.replace(tzinfo=dt.UTC) if row.at.tzinfo is None else row.at.astimezone(dt.UTC)
    person = (None if row.person_key is None else
              hashlib.sha256(bytes.fromhex(row.nonce) + row.person_key.encode()).hexdigest())
    return json.dumps([at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), row.actor, person, row.action,
                       row.detail, row.nonce], sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))


def _seal(app):
    from service.base.keys import audit_keys_of

    return sequencer.seal(app.extensions["osmanthus.engine"],
                          audit_keys_of(app.extensions["osmanthus.config"]))


def _log(app, client) -> dict:
    token = issue_token(app.extensions["osmanthus.config"], "citizen", PERSON)
    answer = client.get("/v1/me/access-log", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.get_json()
    assert answer.headers["Cache-Control"] == "no-store"  # personal: never cached
    return answer.get_json()


def _signature_ok(head: dict, jwks: dict) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    jwk = next(k for k in jwks["keys"] if k["kid"] == head["key_id"])
    assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
    key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(jwk["x"] + "=="))
    message = (f"osmanthus-audit-tree-head:v1\n{head['tree_size']}\n{head['root_hash']}\n"
               f"{head['timestamp']}\n").encode()
    try:
        key.verify(base64.urlsafe_b64decode(head["signature"] + "=="), message)
    except InvalidSignature:
        return False
    return True


# --- the endpoints ------------------------------------------------------------------------------
def test_heads_proofs_and_keys_match_an_independent_rfc6962(app, client):
    assert client.get("/v1/transparency/tree-head").status_code == 404
    empty = client.get("/v1/transparency/consistency", query_string={"first": 0, "second": 1})
    assert empty.status_code == 422 and "second" in empty.get_json()["errors"]

    _seal(app)  # whatever a new store holds already (the migration's entry)
    base = len(_all_leaves(app))
    _append(app, 5)
    assert _seal(app).tree_size == base + 5
    _append(app, 6, start=5)
    assert _seal(app).tree_size == base + 11
    _append(app, 1, start=11)  # appended, not sealed
    small, size = base + 5, base + 11

    jwks = client.get("/.well-known/osmanthus-audit-keys.json").get_json()
    head = client.get("/v1/transparency/tree-head")
    assert head.status_code == 200 and head.headers["Cache-Control"].startswith("public")
    head = head.get_json()
    old = client.get("/v1/transparency/tree-head", query_string={"tree_size": small}).get_json()
    assert head["tree_size"] == size and old["tree_size"] == small
    assert _signature_ok(head, jwks) and _signature_ok(old, jwks)
    forged = {**head, "root_hash": old["root_hash"]}
    assert not _signature_ok(forged, jwks)
    missing = client.get("/v1/transparency/tree-head", query_string={"tree_size": small + 2})
    assert missing.status_code == 404 and missing.get_json()["code"] == "not_found"

    log = _log(app, client)
    assert log["tree_head"] == head
    entries = list(reversed(log["entries"]))  # oldest first
    assert [e["sealed"] for e in entries] == [True] * 11 + [False]
    assert "proof" not in entries[-1] and entries[-1]["leaf_index"] is None
    leaves = _all_leaves(app)
    assert len(leaves) == size
    assert [e["leaf_index"] for e in entries[:11]] == list(range(base, size))  # appended in order
    assert PERSON not in json.dumps(log)  # no answer names the person …
    mine = [e["leaf_data"] for e in entries]  # hashed as served: nothing to put back
    assert [m.encode() for m in mine[:11]] == leaves[base:]
    assert mth(leaves).hex() == head["root_hash"] and mth(leaves[:small]).hex() == old["root_hash"]
    for entry in entries[:11]:
        assert entry["proof"] == [h.hex() for h in path(entry["leaf_index"], leaves)]
    first_leaf = json.loads(mine[0])
    assert first_leaf[3:5] == ["eligibility", entries[0]["detail"]]
    # the person is a salted commitment, SHA-256(nonce bytes ‖ key), different in every entry
    commitments = [json.loads(m)[2] for m in mine]
    assert commitments[0] == hashlib.sha256(bytes.fromhex(first_leaf[5])
                                            + PERSON.encode()).hexdigest()
    assert len(set(commitments)) == len(commitments)

    for first, second in ((small, size), (0, size), (1, size), (8, size), (size, size),
                          (3, small), (small, small + 3)):
        answer = client.get("/v1/transparency/consistency",
                            query_string={"first": first, "second": second})
        assert answer.status_code == 200, (first, second, answer.get_json())
        expected = [] if first in (0, second) else subproof(first, leaves[:second], True)
        assert answer.get_json() == {"first": first, "second": second,
                                     "proof": [h.hex() for h in expected]}
    for query, field in (({"first": 6, "second": 5}, "first"),
                         ({"first": 1, "second": size + 1}, "second"),
                         ({"first": "x", "second": 5}, "first"), ({"second": 5}, "first"),
                         ({"first": -1, "second": 5}, "first")):
        bad = client.get("/v1/transparency/consistency", query_string=query)
        assert bad.status_code == 422 and field in bad.get_json()["errors"], query


def test_the_transparency_endpoints_are_public_and_documented(app, client):
    spec = client.get("/openapi.json").get_json()
    for route in ("/v1/transparency/tree-head", "/v1/transparency/consistency",
                  "/.well-known/osmanthus-audit-keys.json"):
        operation = spec["paths"][route]["get"]
        assert operation["security"] == [] and operation["summary"]
    assert "proof" in spec["components"]["schemas"]["AccessEntry"]["properties"]
    assert "tree_head" in spec["components"]["schemas"]["AccessLog"]["properties"]
    keys = client.get("/.well-known/osmanthus-audit-keys.json")
    assert keys.status_code == 200 and keys.get_json()["keys"]
    assert "d" not in keys.get_json()["keys"][0]  # never the private part


# --- the outside auditor --------------------------------------------------------------------
def _auditor(client):
    from service.cli.audit_remote import Auditor

    def fetch(url: str, headers: dict) -> tuple[int, dict]:
        answer = client.get(url.removeprefix("http://osmanthus.test"), headers=headers)
        return answer.status_code, answer.get_json()

    return Auditor("http://osmanthus.test", fetch)


def test_verify_remote_keeps_heads_and_catches_a_rewrite(app, client, tmp_path):
    from service.cli.audit_remote import Problem, check_signature
    from service.store.tables import audit_entries, audit_leaves, audit_tree

    kept = tmp_path / "heads.json"
    token = issue_token(app.extensions["osmanthus.config"], "citizen", PERSON)
    with pytest.raises(Problem, match="no tree head"):
        _auditor(client).run(kept, None)
    _append(app, 5)
    five = _seal(app).tree_size
    first = _auditor(client).run(kept, token)
    assert "signature valid" in first[0] and "5 entries included" in first[-1]
    assert json.loads(kept.read_text())["http://osmanthus.test"][-1]["tree_size"] == five

    _append(app, 4, start=5)
    nine = _seal(app).tree_size
    second = _auditor(client).run(kept, token)
    assert any(line.startswith(f"consistent: size {five} ") and f"→ {nine}" in line
               for line in second), second
    assert [h["tree_size"] for h in json.loads(kept.read_text())["http://osmanthus.test"]] == [
        five, nine]

    # a leaf of the tree rewritten (leaf 2, ours, in the proof of leaf 3, ours; level 0 is the
    # entry's stored leaf hash): the citizen's proof no longer reaches the signed root
    engine = app.extensions["osmanthus.engine"]
    assert five - 5 <= 2  # leaves 2 and 3 are the citizen's entries
    with engine.begin() as connection:
        connection.execute(update(audit_entries).where(audit_entries.c.id == select(
            audit_leaves.c.entry_id).where(audit_leaves.c.leaf_index == 2).scalar_subquery())
                           .values(leaf_hash=b"\x00" * 32))
    with pytest.raises(Problem, match="inclusion proof does not verify"):
        _auditor(client).run(None, token)
    # the old tree rewritten (the node of leaves 0-3): the latest head no longer extends the
    # first one an auditor kept
    heads = json.loads(kept.read_text())
    kept.write_text(json.dumps({"http://osmanthus.test": heads["http://osmanthus.test"][:1]}))
    assert _auditor(client).run(kept, None)  # before: consistent
    kept.write_text(json.dumps({"http://osmanthus.test": heads["http://osmanthus.test"][:1]}))
    with engine.begin() as connection:
        connection.execute(update(audit_tree).where(audit_tree.c.level == 2,
                                                    audit_tree.c.idx == 0)
                           .values(hash=b"\x11" * 32))
    with pytest.raises(Problem, match="rewritten"):
        _auditor(client).run(kept, None)
    # a kept head the service no longer signs the same way: a fork
    heads = json.loads(kept.read_text())
    heads["http://osmanthus.test"][-1]["root_hash"] = "00" * 32
    kept.write_text(json.dumps(heads))
    with pytest.raises(Problem, match="fork"):
        _auditor(client).run(kept, None)
    # a kept head larger than the service's latest: the log was rolled back
    heads["http://osmanthus.test"][-1]["tree_size"] = nine + 1
    kept.write_text(json.dumps(heads))
    with pytest.raises(Problem, match="rollback"):
        _auditor(client).run(kept, None)
    # a head whose signature is not the published key's
    forged = {**heads["http://osmanthus.test"][0], "signature": "A" * 86}
    with pytest.raises(Problem, match="signature does not verify"):
        check_signature(forged, _auditor(client).keys(), "a kept head")


def test_verify_remote_command_exits_1_naming_the_problem(app, client, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from service.cli import audit_remote
    from service.cli.main import main

    auditor = _auditor(client)
    monkeypatch.setattr(audit_remote, "http_get", auditor.fetch)
    runner = CliRunner()
    args = ["audit", "verify-remote", "--url", "http://osmanthus.test"]
    none = runner.invoke(main, args)
    assert none.exit_code == 1 and "no tree head" in none.output
    _append(app, 3)
    size = _seal(app).tree_size
    good = runner.invoke(main, [*args, "--keep-heads", str(tmp_path / "kept.json")])
    assert good.exit_code == 0, good.output
    assert "audit log verifies" in good.output and f"size {size}," in good.output


def test_the_public_endpoints_are_rate_limited_per_address(database_url, tmp_path):
    from service.app import create_app
    from service.base.config import Config

    app = create_app(Config(env="test", database_url=database_url,
                            registry_dir=tmp_path / "registry", partner_rate_limit="3/minute"))
    try:
        client = app.test_client()
        paths = ["/.well-known/osmanthus-audit-keys.json", "/v1/transparency/tree-head",
                 "/v1/transparency/consistency?first=0&second=0"]
        assert [client.get(p).status_code for p in paths] == [200, 404, 200]  # one bucket
        limited = client.get(paths[0])
        assert limited.status_code == 429 and limited.get_json()["code"] == "rate_limited"
        assert limited.headers["Retry-After"]
        other = client.get(paths[0], environ_base={"REMOTE_ADDR": "10.0.0.2"})
        assert other.status_code == 200  # another address, another bucket
    finally:
        app.extensions["osmanthus.engine"].dispose()
