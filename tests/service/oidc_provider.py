"""A tiny OpenID Connect provider for tests and bench/attack.py: discovery and JWKS over HTTP.

A WSGI app served in a thread on a free port of 127.0.0.1. It makes its own keys (ES256 and
RS256), signs whatever claims a test asks for, rotates its key (a new `kid`), counts the fetches
of its key set, and can be stopped (refusing connections) or made to hang (never answering).
For the browser it also signs `user` in by authorization code with PKCE (S256 only): `/authorize`
approves at once and sends the browser back with a one-time code, `/token` trades the code and
its verifier for an ID token (and lets any page's script read the answer, as CORS allows).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
import uuid
from urllib.parse import parse_qs, urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "osmanthus-web"


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # noqa: ANN002 - the tests' output stays clean
        pass


class _Threaded(WSGIServer):
    """One thread per request, so a hanging answer does not hold the others."""

    daemon_threads = True

    def process_request(self, request, client_address) -> None:
        threading.Thread(target=self._one, args=(request, client_address), daemon=True).start()

    def _one(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)


class Provider:
    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, object]] = {}  # kid -> (alg, private key)
        self.algorithms = ["RS256", "ES256"]
        self.jwks_fetches = 0
        self.hang = False  # answer nothing (until stopped) instead of answering
        self.discovery_issuer: str | None = None  # a lying discovery document, when set
        self.user: dict = {}  # the claims of whoever signs in at /authorize
        self.codes: dict[str, dict] = {}  # one-time authorization codes
        self.add_key("ES256")
        self.add_key("RS256")
        self._server = make_server("127.0.0.1", 0, self._app, server_class=_Threaded,
                                   handler_class=_Quiet)
        self.port = self._server.server_port
        self.issuer = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # --- keys and tokens ----------------------------------------------------------------------
    def add_key(self, alg: str = "ES256") -> str:
        kid = uuid.uuid4().hex[:12]
        private = (ec.generate_private_key(ec.SECP256R1()) if alg == "ES256"
                   else rsa.generate_private_key(public_exponent=65537, key_size=2048))
        self.keys[kid] = (alg, private)
        return kid

    def rotate(self, alg: str = "ES256") -> str:
        """A new key replaces every old one (the old `kid`s leave the key set)."""
        kid = self.add_key(alg)
        self.keys = {kid: self.keys[kid]}
        return kid

    def kid(self, alg: str = "ES256") -> str:
        return next(kid for kid, (a, _) in self.keys.items() if a == alg)

    def public_pem(self, kid: str) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.keys[kid][1].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def token(self, alg: str = "ES256", kid: str | None = None, *, drop: tuple[str, ...] = (),
              **claims) -> str:
        """A token signed by this provider's key of `alg` (or `kid`), with sound defaults for
        every required claim; `drop` leaves claims out, keyword arguments override."""
        kid = kid or self.kid(alg)
        alg, private = self.keys[kid]
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": AUDIENCE, "sub": "user-" + uuid.uuid4().hex[:8],
                   "iat": now, "exp": now + 300, **claims}
        for name in drop:
            payload.pop(name, None)
        return jwt.encode(payload, private, algorithm=alg, headers={"kid": kid})

    # --- HTTP ---------------------------------------------------------------------------------
    def jwks(self) -> dict:
        keys = []
        for kid, (alg, private) in self.keys.items():
            algorithm = ECAlgorithm if alg == "ES256" else RSAAlgorithm
            jwk = algorithm.to_jwk(private.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": keys}

    def _app(self, environ, start_response):
        if self.hang:
            while self.hang:
                time.sleep(0.05)
        path = environ.get("PATH_INFO")
        if path == "/.well-known/openid-configuration":
            body = {"issuer": self.discovery_issuer or self.issuer,
                    "jwks_uri": f"{self.issuer}/jwks",
                    "authorization_endpoint": f"{self.issuer}/authorize",
                    "token_endpoint": f"{self.issuer}/token",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": self.algorithms}
        elif path == "/jwks":
            self.jwks_fetches += 1
            body = self.jwks()
        elif path == "/authorize":
            return self._authorize(environ, start_response)
        elif path == "/token":
            return self._token(environ, start_response)
        else:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b"{}"]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    def _authorize(self, environ, start_response):
        """Approve `user` at once; back to the client with a code bound to its challenge."""
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if (query.get("response_type") != "code" or query.get("code_challenge_method") != "S256"
                or not query.get("code_challenge") or not query.get("redirect_uri")):
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"bad authorization request"]
        code = uuid.uuid4().hex
        self.codes[code] = query
        back = query["redirect_uri"] + "?" + urlencode({"code": code,
                                                        "state": query.get("state", "")})
        start_response("302 Found", [("Location", back)])
        return [b""]

    def _token(self, environ, start_response):
        cors = [("Access-Control-Allow-Origin", "*"), ("Content-Type", "application/json")]
        if environ["REQUEST_METHOD"] == "OPTIONS":
            start_response("204 No Content", [*cors, ("Access-Control-Allow-Headers",
                                                      "Content-Type")])
            return [b""]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = {k: v[0] for k, v in parse_qs(environ["wsgi.input"].read(length).decode()).items()}
        asked = self.codes.pop(form.get("code", ""), None)  # one use only
        verifier = form.get("code_verifier", "").encode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if (asked is None or form.get("grant_type") != "authorization_code"
                or form.get("redirect_uri") != asked["redirect_uri"]
                or form.get("client_id") != asked.get("client_id")
                or challenge.decode() != asked["code_challenge"]):
            start_response("400 Bad Request", cors)
            return [b'{"error": "invalid_grant"}']
        claims = {**self.user, "aud": asked["client_id"]}
        if asked.get("nonce"):
            claims["nonce"] = asked["nonce"]
        start_response("200 OK", cors)
        return [json.dumps({"id_token": self.token(**claims), "token_type": "Bearer",
                            "expires_in": 300}).encode()]

    def stop(self) -> None:
        self.hang = False
        self._server.shutdown()
        self._server.server_close()


def silent_issuer() -> tuple[str, socket.socket]:
    """An issuer URL whose server accepts connections and never answers (and its socket)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    return f"http://127.0.0.1:{listener.getsockname()[1]}", listener
