"""`osmanthus audit verify-remote --url URL [--keep-heads FILE] [--citizen-token T]`: an outside
auditor's check of a running service, over HTTP only (no database, no secret).

1. Fetch the published audit keys (`/.well-known/osmanthus-audit-keys.json`) and the latest
   signed tree head; check its Ed25519 signature.
2. With `--keep-heads`: take the head kept there last time (same service URL), ask the service
   for the head it signed at that size (it must be the very same root: two signed roots at one
   size are a proof the log forked) and for a consistency proof from that size to the latest,
   and check it (RFC 9162 §2.1.4.2). A latest head smaller than the kept one is a rollback.
   Then keep the latest head in the file (atomically) for next time.
3. With `--citizen-token` (a citizen checking their own entries): fetch their access log and
   check every sealed entry's inclusion proof against the head beside it, and that head's
   signature and consistency with the latest head checked above. The leaf data is hashed
   exactly as served (it names the citizen by a salted commitment, not their person key), so
   any citizen token works, ours or one from the city's OpenID Connect provider.

The first problem found is printed and the exit status is 1; all good prints what was checked.
Hashing and proof checks are `service.rights.merkle`'s (the RFC 9162 algorithms, no storage);
whoever prefers not to trust our code can redo them from the README's description.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import click

Fetch = Callable[[str, dict], tuple[int, dict]]
HEAD_PREFIX = "osmanthus-audit-tree-head:v1"
KEPT_MAX = 1000  # heads kept in the file (the newest); only the last one is checked from


class Problem(Exception):
    """What did not verify (the command's message)."""


def http_get(url: str, headers: dict) -> tuple[int, dict]:
    """GET url → (status, JSON body); any JSON error envelope is returned, not raised."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - auditor's URL
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body)
        except ValueError:
            return error.code, {"message": body[:200].decode(errors="replace")}
    except (urllib.error.URLError, OSError) as error:
        raise Problem(f"cannot reach {url}: {error}") from None


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def head_message(head: dict) -> bytes:
    """The bytes a head's signature covers (the README and the service build the same)."""
    return (f"{HEAD_PREFIX}\n{head['tree_size']}\n{head['root_hash']}\n"
            f"{head['timestamp']}\n").encode()


def public_keys(jwks: dict) -> dict:
    """kid → Ed25519 public key, from a JWK set (OKP/Ed25519 keys only)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    out = {}
    for jwk in jwks.get("keys", []):
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519" and "kid" in jwk:
            out[jwk["kid"]] = Ed25519PublicKey.from_public_bytes(_b64url(jwk["x"]))
    return out


def check_signature(head: dict, keys: dict, what: str) -> None:
    from cryptography.exceptions import InvalidSignature

    key = keys.get(head.get("key_id"))
    if key is None:
        raise Problem(f"{what}: signed with key {head.get('key_id')!r}, which is not published")
    try:
        key.verify(_b64url(head["signature"]), head_message(head))
    except (InvalidSignature, ValueError):
        raise Problem(f"{what} (size {head['tree_size']}): the signature does not verify") from None


class Auditor:
    """One service, checked through `fetch` (HTTP in the command, a test client in tests)."""

    def __init__(self, url: str, fetch: Fetch | None = None) -> None:
        self.url, self.fetch = url.rstrip("/"), fetch or http_get
        self.lines: list[str] = []

    def get(self, path: str, query: dict | None = None, headers: dict | None = None,
            allow: tuple[int, ...] = ()) -> tuple[int, dict]:
        target = self.url + path + (("?" + urllib.parse.urlencode(query)) if query else "")
        status, body = self.fetch(target, headers or {})
        if status != 200 and status not in allow:
            raise Problem(f"GET {path}: HTTP {status}: {body.get('message', body)}")
        return status, body

    def keys(self) -> dict:
        keys = public_keys(self.get("/.well-known/osmanthus-audit-keys.json")[1])
        if not keys:
            raise Problem("no Ed25519 key is published at /.well-known/osmanthus-audit-keys.json")
        return keys

    def consistent(self, old: dict, new: dict, keys: dict) -> None:
        """`new` extends `old`: same root at `old`'s size, and a consistency proof that checks."""
        from service.rights import merkle

        first, second = old["tree_size"], new["tree_size"]
        if first > second:
            raise Problem(f"rollback: the latest head has {second} entries, fewer than the "
                          f"{first} of a head kept earlier")
        status, signed = self.get("/v1/transparency/tree-head", {"tree_size": first},
                                  allow=(404,))
        if status == 200:
            check_signature(signed, keys, f"the service's head at size {first}")
            if signed["root_hash"] != old["root_hash"]:
                raise Problem(f"fork: two signed roots at size {first}: {old['root_hash']} "
                              f"(kept) and {signed['root_hash']} (served now)")
        proof = self.get("/v1/transparency/consistency", {"first": first, "second": second})[1]
        ok = merkle.verify_consistency(first, second, bytes.fromhex(old["root_hash"]),
                                       bytes.fromhex(new["root_hash"]),
                                       [bytes.fromhex(h) for h in proof["proof"]])
        if not ok:
            raise Problem(f"the log was rewritten: the consistency proof from size {first} to "
                          f"{second} does not verify against the signed roots")
        self.lines.append(f"consistent: size {first} (root {old['root_hash'][:16]}…) → "
                          f"{second} ({len(proof['proof'])}-hash proof)")

    def entries(self, token: str, latest: dict, keys: dict) -> None:
        """Every sealed entry of a citizen's access log is in their head, which extends to
        (or is) the latest head."""
        from service.rights import merkle

        log = self.get("/v1/me/access-log", headers={"Authorization": f"Bearer {token}"})[1]
        head, checked, unsealed = log.get("tree_head"), 0, 0
        if head is not None:
            check_signature(head, keys, "the access log's tree head")
            if head["tree_size"] != latest["tree_size"]:
                older, newer = sorted((head, latest), key=lambda h: h["tree_size"])
                self.consistent(older, newer, keys)
            elif head["root_hash"] != latest["root_hash"]:
                raise Problem(f"fork: two signed roots at size {head['tree_size']}: "
                              f"{latest['root_hash']} (latest) and {head['root_hash']} (the "
                              "access log's)")
        for entry in log["entries"]:
            if not entry["sealed"]:
                unsealed += 1
                continue
            if head is None:
                raise Problem(f"entry {entry['id']} is called sealed but no head came with it")
            leaf = merkle.leaf_hash(entry["leaf_data"].encode())  # as served: verbatim
            if not merkle.verify_inclusion(leaf, entry["leaf_index"], head["tree_size"],
                                           [bytes.fromhex(h) for h in entry["proof"]],
                                           bytes.fromhex(head["root_hash"])):
                raise Problem(f"entry {entry['id']} (leaf {entry['leaf_index']}) is not in the "
                              f"signed log: its inclusion proof does not verify")
            checked += 1
        self.lines.append(f"access log: {checked} entries included in the signed log, "
                          f"{unsealed} not yet sealed")

    def run(self, kept_file: Path | None, token: str | None) -> list[str]:
        keys = self.keys()
        status, latest = self.get("/v1/transparency/tree-head", allow=(404,))
        if status == 404:
            raise Problem("the service has signed no tree head yet")
        check_signature(latest, keys, "the latest head")
        self.lines.append(f"latest head: size {latest['tree_size']}, root "
                          f"{latest['root_hash']}, key {latest['key_id']}: signature valid")
        kept = read_kept(kept_file, self.url) if kept_file else []
        if kept:
            self.consistent(kept[-1], latest, keys)
        elif kept_file:
            self.lines.append(f"no head kept for {self.url} yet: this one is kept from now on")
        if token:
            self.entries(token, latest, keys)
        if kept_file:
            write_kept(kept_file, self.url, kept, latest)
        return self.lines


def read_kept(path: Path, url: str) -> list[dict]:
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except ValueError as error:
        raise Problem(f"{path} is not the JSON this command writes: {error}") from None
    return list(data.get(url, []))


def write_kept(path: Path, url: str, kept: list[dict], latest: dict) -> None:
    """Append the latest head (unless it is the last kept) and replace the file atomically."""
    data = json.loads(path.read_text()) if path.exists() else {}
    if not kept or kept[-1] != latest:
        kept = [*kept, latest][-KEPT_MAX:]
    data[url] = kept
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(temporary, path)


@click.command("verify-remote")
@click.option("--url", required=True, help="The service's base URL, e.g. https://credit.city.gov")
@click.option("--keep-heads", "keep_heads", type=click.Path(dir_okay=False, path_type=Path),
              help="A JSON file of heads kept from earlier runs: the latest must extend the "
                   "last one kept; the latest is added to it.")
@click.option("--citizen-token", envvar="OSMANTHUS_CITIZEN_TOKEN",
              help="Also check every entry of this citizen's access log (or set "
                   "OSMANTHUS_CITIZEN_TOKEN).")
def verify_remote(url: str, keep_heads: Path | None, citizen_token: str | None) -> None:
    """Check a running service's signed audit log over HTTP: the head's signature, that it
    extends the head kept last time, and optionally a citizen's entries. Exit 1 on the first
    problem."""
    try:
        lines = Auditor(url).run(keep_heads, citizen_token)
    except Problem as problem:
        click.echo(f"audit log does NOT verify: {problem}", err=True)
        raise SystemExit(1) from None
    for line in lines:
        click.echo(line)
    click.echo("audit log verifies")
