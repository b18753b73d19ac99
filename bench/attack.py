"""Replay every probe of issue 14 against a served app and print each as held / FAILED.

    .venv/bin/python bench/attack.py [--keep]

Starts `osmanthus serve`'s gunicorn set-up (one worker, 4 threads: the smallest deployment)
on a free loopback port, in development mode on a private SQLite file with its own generated
secrets, registers two partners and a citizen through the CLI, then probes it from outside.
Some probes also read the server's database and log afterwards (caller text kept out). A small
OpenID Connect provider (tests/service/oidc_provider.py) runs beside it, and the server signs
citizens and admins in through it too: the OIDC probes come last.
Exit status 1 if any probe failed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.identity import make_resident_id  # noqa: E402
from service.cli.service import gunicorn_command  # noqa: E402
from tests.service.oidc_provider import AUDIENCE, Provider  # noqa: E402

ID = make_resident_id(110101, __import__("datetime").date(1990, 3, 7), 777)
WIDE_ID = ID.translate(str.maketrans("0123456789X", "０１２３４５６７８９Ｘ"))
PERSON = "ab" * 32
OSMANTHUS = str(Path(sys.executable).parent / "osmanthus")
results: list[tuple[str, bool, str]] = []


def probe(name: str):
    def run(check):
        try:
            held, detail = check()
        except Exception as error:  # noqa: BLE001 - a probe that crashes has failed
            held, detail = False, f"{type(error).__name__}: {error}"[:160]
        results.append((name, held, detail))
        print(f"{'held  ' if held else 'FAILED'}  {name}  ({detail})", flush=True)
    return run


class Server:
    def __init__(self, root: Path, settings: dict[str, str] | None = None) -> None:
        self.root, self.port = root, _free_port()
        argv, env = gunicorn_command("127.0.0.1", self.port, 1, None, 30)
        env = {k: v for k, v in env.items() if not k.startswith(("OSMANTHUS_", "DATABASE_"))}
        self.env = {**env, "DATABASE_URL": f"sqlite:///{root / 'osmanthus.db'}",
                    "OSMANTHUS_REGISTRY": str(root / "registry"),
                    "OSMANTHUS_SECRETS_FILE": str(root / "secrets.json"),
                    "OSMANTHUS_HTTP_THREADS": "4", "OSMANTHUS_READ_TIMEOUT": "3",
                    **(settings or {})}
        self.log = root / "server.log"
        self.process = subprocess.Popen(argv, env=self.env, cwd=root, stdout=self.log.open("wb"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/healthz", timeout=1)[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("the server did not start:\n" + self.log.read_text())

    def cli(self, *args: str) -> str:
        done = subprocess.run([OSMANTHUS, *args], env=self.env, cwd=self.root,
                              capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict | None = None, timeout: float = 10):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = body.encode() if isinstance(body, str) else body
            connection.request(method, path, body=data, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            connection.close()

    def raw(self, data: bytes) -> tuple[int, bytes]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as client:
            client.sendall(data)
            received = b""
            while chunk := client.recv(65536):
                received += chunk
        return int(received.split()[1]), received.partition(b"\r\n\r\n")[2]

    def declared(self, path: str, headers: dict, length: int, first: bytes) -> tuple[int, bytes]:
        """Declare a body of `length` bytes, send only its start, and read the answer: a server
        that refuses on the declared length answers without waiting for the rest."""
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as client:
            client.sendall(head.encode() + first)
            received = b""
            try:
                while chunk := client.recv(65536):
                    received += chunk
                    if b"\r\n\r\n" in received and _complete(received):
                        break
            except ConnectionResetError:
                pass
        return int(received.split()[1]), received.partition(b"\r\n\r\n")[2]

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _json(headers: dict) -> dict:
    return {**headers, "Content-Type": "application/json"}


def _enveloped(status: int, body: bytes) -> bool:
    try:
        return json.loads(body).get("status") == status
    except ValueError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the server's folder")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="osmanthus-attack-"))
    provider = Provider()
    server = Server(root, {"OSMANTHUS_OIDC_ISSUER": provider.issuer,
                           "OSMANTHUS_OIDC_AUDIENCE": AUDIENCE})
    try:
        attack(server)
        attack_oidc(server, provider)
    finally:
        server.stop()
        provider.stop()
    failed = [name for name, held, _ in results if not held]
    print(f"\n{len(results) - len(failed)} of {len(results)} probes held"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if args.keep:
        print(f"server folder: {root}")
    return 1 if failed else 0


def attack(s: Server) -> None:  # noqa: C901 - one probe after another, in the issue's order
    admin = {"Authorization": "Bearer " + s.cli("token", "admin", "ops")}
    citizen = {"Authorization": "Bearer " + s.cli("token", "citizen", PERSON)}
    bikes = {"X-API-Key": s.cli("partners", "add", "city-bikes", "--name", "Bikes")}
    s.cli("partners", "add", "city-library", "--name", "Library")

    @probe("idle and half-open connections do not stop the API")
    def _():
        idle = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(40)]
        half = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(3)]
        for client in half:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        time.sleep(0.5)
        try:
            started = time.monotonic()
            status = s.request("GET", "/healthz", timeout=1)[0]
            return status == 200, f"/healthz {status} in {time.monotonic() - started:.3f} s " \
                                  "with 40 idle and 3 half-open connections"
        finally:
            for client in idle + half:
                client.close()

    @probe("clients trickling their headers (more than the threads) do not stop the API")
    def _():
        import threading

        stop = threading.Event()

        def trickle() -> None:
            try:
                with socket.create_connection(("127.0.0.1", s.port), timeout=30) as client:
                    client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    while not stop.wait(0.5):
                        client.sendall(b"a")
            except OSError:
                pass

        clients = [threading.Thread(target=trickle, daemon=True) for _ in range(12)]
        for client in clients:
            client.start()
        try:
            time.sleep(1.2)  # each has sent a byte since connecting
            started = time.monotonic()
            status = s.request("GET", "/healthz", timeout=1)[0]
            return status == 200, f"/healthz {status} in {time.monotonic() - started:.3f} s " \
                                  "with 12 clients sending a header byte every 0.5 s"
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=5)

    @probe("the old public development secret signs nothing")
    def _():
        import jwt

        now = int(time.time())
        forged = jwt.encode({"sub": "ops", "role": "admin", "iss": "osmanthus", "iat": now,
                             "exp": now + 600, "aud": "osmanthus-admin"},
                            "osmanthus-development-jwt-secret-not-for-production", "HS256",
                            headers={"kid": "1"})
        status = s.request("GET", "/v1/admin/models",
                           headers={"Authorization": f"Bearer {forged}"})[0]
        return status == 401, f"forged admin token → {status}"

    @probe("a citizen token is not an admin token, and the public key mints nothing")
    def _():
        import base64
        import hashlib
        import hmac

        as_admin = s.request("GET", "/v1/admin/models", headers=citizen)[0]
        jwk = json.loads(s.request("GET", "/.well-known/jwks.json")[1])["keys"][0]
        public = base64.urlsafe_b64decode(jwk["x"] + "==")

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        head = b64(json.dumps({"alg": "HS256", "kid": jwk["kid"]}).encode())
        body = b64(json.dumps({"sub": uuid.uuid4().hex, "role": "consent", "partner":
                               "city-bikes", "perks": ["bike-deposit-free"],
                               "aud": "osmanthus-consent", "iss": "osmanthus",
                               "exp": int(time.time()) + 600}).encode())
        mac = b64(hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest())
        status, answer, _ = s.request("POST", "/v1/partner/eligibility", json.dumps(
            {"consent_token": f"{head}.{body}.{mac}", "perk_id": "bike-deposit-free"}),
            _json(bikes))
        code = json.loads(answer).get("code")
        return as_admin == 403 and code == "consent_invalid", \
            f"citizen on admin → {as_admin}; HS256 with the JWKS key → {status} {code}"

    @probe("a 20 MB review reason is refused before parsing")
    def _():
        started = time.monotonic()
        status, answer = s.declared("/v1/me/review", _json(citizen), 20 << 20,
                                    b'{"reason": "' + b"x" * 65536)
        return status == 413 and _enveloped(413, answer), \
            f"{status} in {time.monotonic() - started:.3f} s, after 64 KiB of 20 MiB"

    @probe("a 35 MB anonymous partner batch is refused before the key or the body")
    def _():
        status, answer = s.declared("/v1/partner/eligibility/batch",
                                    {"Content-Type": "application/json"}, 35 << 20,
                                    b'{"requests": [' + b'{"consent_token": "x"},' * 2000)
        return status == 413 and _enveloped(413, answer), f"35 MiB declared → {status}"

    bodies = {
        "/v1/me/review": ("reason", citizen), "/v1/me/disputes": ("statement", citizen),
        "/v1/me/consents": ("partner_id", citizen),
        "/v1/partner/eligibility": ("perk_id", bikes),
        "/v1/admin/rescore": ("person_key", admin),
    }
    for kind, raw in (("100k-deep nesting", "[" * 100_000 + "]" * 100_000),
                      ("4,300+ digit integers", "9" * 5000), ("NaN", "NaN"),
                      ("a lone surrogate", '"\\ud800"'), ("NUL", '"a\\u0000b"')):
        @probe(f"{kind} on every JSON endpoint is a 4xx")
        def _(raw=raw):
            seen = []
            for path, (field, who) in bodies.items():
                status, answer, _ = s.request("POST", path, f'{{"{field}": {raw}}}', _json(who))
                seen.append(status)
                if not (400 <= status < 500 and _enveloped(status, answer)):
                    return False, f"{path} → {status}"
            return True, f"{sorted(set(seen))}"

    @probe("a lone surrogate in a consent token is a 4xx")
    def _():
        status, answer, _ = s.request("POST", "/v1/partner/eligibility",
                                      '{"consent_token": "ab\\ud800", "perk_id": "x"}',
                                      _json(bikes))
        return 400 <= status < 500 and _enveloped(status, answer), f"{status}"

    @probe("an admin token whose sub is over 96 characters is a 401")
    def _():
        from service.base.config import Config
        from service.rights.auth import issue_token

        config = Config.from_env(s.env)
        token = issue_token(config, "admin", "a" * 97)
        status = s.request("GET", "/v1/admin/models",
                           headers={"Authorization": f"Bearer {token}"})[0]
        return status == 401, f"{status}"

    @probe("unpaid_fees=1e308 and month 0001-01 are quarantined, not stored")
    def _():
        rows = (f"resident_id,month,rides,bike_rides,overdue_returns,unpaid_fees,fare_evasions,"
                f"damage_incidents\n{ID},2025-06,1,0,0,1e308,0,0\n{ID},0001-01,1,0,0,0,0,0\n")
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"source\"\r\n\r\n"
                f"transit\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"t.csv\"\r\nContent-Type: text/csv\r\n\r\n{rows}\r\n--{boundary}--\r\n")
        status, answer, _ = s.request("POST", "/v1/admin/feeds", body, {
            **admin, "Content-Type": f"multipart/form-data; boundary={boundary}"})
        result = json.loads(answer)
        return result.get("rows_stored") == 0 and result.get("rows_quarantined") == 2, \
            f"{status}: stored {result.get('rows_stored')}, quarantined " \
            f"{result.get('rows_quarantined')}"

    @probe("an admin correction of nan is never a 500 nor echoed (with a real dispute: "
           "tests/service/test_disputes.py)")
    def _():
        status, answer, _ = s.request("POST", f"/v1/admin/disputes/{'0' * 32}/resolution",
                                      json.dumps({"outcome": "upheld",
                                                  "correction": {"unpaid_fees": "nan"}}),
                                      _json(admin))
        return status != 500 and _enveloped(status, answer) and b"nan" not in answer, \
            f"{status} (no model here: 503 before anything is stored)"

    @probe("a perk id typed by a partner is never stored; flooding is summarised")
    def _():
        until = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 20 * 86400))
        status, answer, _ = s.request("POST", "/v1/me/consents", json.dumps(
            {"partner_id": "city-library", "perks": ["library-deposit-free"], "until": until}),
            _json(citizen))
        if status != 201:
            return False, f"consent not granted: {status} {answer[:120]!r}"
        library_token = json.loads(answer)["token"]
        answers = [s.request("POST", "/v1/partner/eligibility", json.dumps(
            {"consent_token": library_token, "perk_id": perk}), _json(bikes))[0]
            for perk in [ID, WIDE_ID] + ["bike-deposit-free"] * 20]
        log = json.loads(s.request("GET", "/v1/me/access-log", headers=citizen)[1])
        entries = log if isinstance(log, list) else log.get("entries", [])
        refused = [e for e in entries if e.get("partner_id") == "city-bikes"]
        return len(refused) <= 4 and 429 in answers, \
            f"22 refused questions → {len(refused)} entries in the citizen's log; " \
            f"answers {sorted(set(answers))}"

    @probe("gunicorn's own 400/414/431 are the envelope")
    def _():
        seen = []
        for data, want in ((b"NOT HTTP\r\n\r\n", 400),
                           (b"GET /" + b"x" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
                           (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 9000 + b"\r\n\r\n", 431)):
            status, body = s.raw(data)
            seen.append(status)
            if status != want or not _enveloped(status, body):
                return False, f"{want} → {status} {body[:60]!r}"
        return True, f"{seen}"

    @probe("//v1/... is not a 308, a 405 names Allow, and both are the envelope")
    def _():
        doubled, body, headers = s.request("GET", "//v1/me/score", headers=citizen)
        wrong, body2, headers2 = s.request("DELETE", "/v1/me/score", headers=citizen)
        return (doubled != 308 and _enveloped(doubled, body) and wrong == 405
                and "Allow" in headers2 and _enveloped(405, body2)), \
            f"//v1 → {doubled}; DELETE → {wrong} Allow: {headers2.get('Allow')}"

    @probe("personal answers carry no-store and nosniff")
    def _():
        _, _, headers = s.request("GET", "/v1/me/consents", headers=citizen)
        return (headers.get("Cache-Control") == "no-store"
                and headers.get("X-Content-Type-Options") == "nosniff"), \
            f"{headers.get('Cache-Control')}, {headers.get('X-Content-Type-Options')}"

    @probe("no ID number (ASCII or full-width) in the database or the server's log")
    def _():
        s.request("GET", f"/v1/admin/reviews/{ID}?q={ID}", headers=admin)
        time.sleep(0.5)
        with sqlite3.connect(s.root / "osmanthus.db") as db:
            dump = "\n".join(db.iterdump())
        text = s.log.read_text(errors="replace")
        found = [where for where, content in (("database", dump), ("log", text))
                 if ID in content or WIDE_ID in content]
        return not found, "found in " + ", ".join(found) if found else "none found"



def _hs256(payload: dict, header: dict, key: bytes) -> str:
    """A token signed HS256 by hand (PyJWT refuses a PEM as an HMAC key, attackers do not)."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def attack_oidc(s: Server, p: Provider) -> None:
    """The city's OpenID Connect provider: what it signs works, nothing else does."""
    import jwt

    from service.rights.oidc import REFETCH_COOLDOWN

    def bearer(token: str) -> dict:
        return {"Authorization": f"Bearer {token}"}

    def claims(**changes) -> dict:
        now = int(time.time())
        return {"iss": p.issuer, "aud": AUDIENCE, "sub": "u1", "iat": now, "exp": now + 300,
                "resident_id": ID, **changes}

    @probe("OIDC: the provider's citizen reads their page, its admin reaches admin endpoints")
    def _():
        citizen = s.request("GET", "/v1/me/records", headers=bearer(p.token(resident_id=ID)))[0]
        admin = s.request("GET", "/v1/admin/models", headers=bearer(p.token(
            "RS256", sub="ops.lin", groups=["osmanthus-admin"])))[0]
        return (citizen, admin) == (200, 200), f"citizen → {citizen}, admin → {admin}"

    @probe("OIDC: forged, expired, misdirected and malformed provider tokens are 401")
    def _():
        header, _, signature = p.token(resident_id=ID).split(".")
        import base64

        tampered = ".".join([header, base64.urlsafe_b64encode(json.dumps(claims(
            resident_id=make_resident_id(110101, __import__("datetime").date(1970, 1, 1), 5)
        )).encode()).rstrip(b"=").decode(), signature])
        unknown = p.add_key("ES256")
        unknown_token = p.token(kid=unknown, resident_id=ID)
        del p.keys[unknown]
        rsa = p.kid("RS256")
        cases = {
            "wrong issuer": p.token(resident_id=ID, iss="https://evil.example"),
            "wrong audience": p.token(resident_id=ID, aud="someone-else"),
            "expired": p.token(resident_id=ID, exp=int(time.time()) - 120),
            "not yet valid": p.token(resident_id=ID, nbf=int(time.time()) + 600),
            "alg none": jwt.encode(claims(), None, algorithm="none", headers={"kid": rsa}),
            "HS256 with the public key": _hs256(claims(), {"alg": "HS256", "kid": rsa},
                                                p.public_pem(rsa)),
            "unknown kid": unknown_token,
            "tampered payload": tampered,
            "missing sub": p.token(resident_id=ID, drop=("sub",)),
            "invalid ID number": p.token(resident_id=ID[:-1] + ("1" if ID[-1] != "1" else "2")),
        }
        wrong = {}
        for name, token in cases.items():
            status, body, _ = s.request("GET", "/v1/me/records", headers=bearer(token))
            if status != 401 or not _enveloped(401, body):
                wrong[name] = status
        return not wrong, f"{len(cases) - len(wrong)} of {len(cases)} → 401 in the envelope" + (
            f"; not: {wrong}" if wrong else "")

    @probe("OIDC: a provider token without the admin role is 403 on admin endpoints")
    def _():
        status, body, _ = s.request("GET", "/v1/admin/models", headers=bearer(p.token(
            resident_id=ID, groups=["staff"])))
        return status == 403 and _enveloped(403, body), f"→ {status}"

    @probe("OIDC: the provider rotating its key (new kid) is picked up")
    def _():
        time.sleep(REFETCH_COOLDOWN + 0.5)  # an unknown kid refetches at most this often
        before = p.jwks_fetches
        new = p.rotate("ES256")
        status = s.request("GET", "/v1/me/records", headers=bearer(p.token(
            kid=new, resident_id=ID)))[0]
        return status == 200 and p.jwks_fetches == before + 1, \
            f"new kid → {status} after {p.jwks_fetches - before} refetch"

    @probe("OIDC: a provider that hangs is a 503 within the timeout, then at once; no hang")
    def _():
        time.sleep(REFETCH_COOLDOWN + 0.5)
        unknown = p.token(kid=p.add_key("ES256"), resident_id=ID)  # forces a fetch
        p.hang = True
        try:
            started = time.monotonic()
            first, body, headers = s.request("GET", "/v1/me/records", headers=bearer(unknown))
            waited = time.monotonic() - started
            started = time.monotonic()
            again = s.request("GET", "/v1/me/records", headers=bearer(unknown))[0]
            at_once = time.monotonic() - started
            health = s.request("GET", "/healthz", timeout=1)[0]
        finally:
            p.hang = False
        held = (first == again == 503 and _enveloped(503, body) and "Retry-After" in headers
                and health == 200)
        return held, f"{first} in {waited:.2f} s (timeout 3 s), then {again} in {at_once:.3f} s;" \
                     f" /healthz {health}"

    @probe("OIDC: no ID number from a provider's token in the database or the server's log")
    def _():
        time.sleep(0.5)
        with sqlite3.connect(s.root / "osmanthus.db") as db:
            dump = "\n".join(db.iterdump())
        text = s.log.read_text(errors="replace")
        found = [where for where, content in (("database", dump), ("log", text)) if ID in content]
        return not found, "found in " + ", ".join(found) if found else "none found"


if __name__ == "__main__":
    raise SystemExit(main())
