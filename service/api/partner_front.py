"""A single partner decision answered in front of Flask (issue 15).

`POST /v1/partner/eligibility` is the partner path's hot request; under Flask a decision paid
for the request context, the app's hooks one by one, flask-smorest's and webargs' wrappers and
the error-handler lookup around a few statements of its own. `DecisionsInFront`, a WSGI layer
the partner blueprint installs on its app (as `api.me.CachedScorePages` does for the cached
score page), does the same steps in the same order, with the same functions:

1. the body's size (`max_body_bytes`), its JSON refused by the same guard (`guard.safe_json`),
   then read by the same schema (`EligibilityRequestSchema.load`);
2. the API key (`auth.partner_of`, looked up through the module so one spy sees both paths:
   401 without one, or with one that is not valid), on the request's one autocommit
   connection (PostgreSQL), as the blueprint's hook takes it;
3. the rate limit, in Flask-Limiter's bucket through its own strategy
   (`api.limits.InFrontCount`: 429 with `Retry-After`); when that count is not plainly healthy
   (Flask-Limiter on its in-memory fallback, a storage error) the request goes to Flask, still
   before any side effect, and Flask-Limiter counts it, failing open or closed;
4. `eligibility.decide`, its refusal raised as the route raises it, the answer dumped with
   `EligibilitySchema`; every error answered with the one envelope (`errors.error_response`,
   `errors.unexpected_response`).

Whatever it does not take on — another method or path, a query string, a body that is not
`application/json` of a declared length within the limit, JSON the guard refuses, a body the
schema refuses — goes to Flask unchanged, before any side effect (nothing counted, nothing
audited), and Flask answers it as it always has: the 400s, 413s and 422s stay Flask's alone.
The OpenAPI document is the route's and does not change. `SafeHeaders`, outside both, adds
the same headers to either answer; tests/service/test_partner_front.py holds the two to the
same status, body and headers.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

from flask import Flask, Response
from marshmallow import ValidationError

from service.api.guard import safe_json
from service.api.limits import bucket_of
from service.api.partner_schemas import EligibilityRequestSchema, EligibilitySchema
from service.base.errors import ApiError, error_response, unexpected_response
from service.rights import audit, auth
from service.rights.eligibility import Refusal, decide

PATH = "/v1/partner/eligibility"
SCOPE = "partner"  # the blueprint whose limit a decision counts against
_REQUEST, _ANSWER = EligibilityRequestSchema(), EligibilitySchema()


class DecisionsInFront:
    """WSGI: a well-formed single decision → answered here; anything else → `wrapped`."""

    def __init__(self, app: Flask, wrapped: Callable) -> None:
        self.app, self.wrapped = app, wrapped

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        question = None
        if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "POST":
            question = self._question(environ)
        answer = None if question is None else self._answer(environ, question)
        if answer is None:
            return self.wrapped(environ, start_response)
        return answer(environ, start_response)

    def _question(self, environ: dict) -> dict | None:
        """The question in the body, or None for Flask to answer (its body put back)."""
        if environ.get("QUERY_STRING") or not _is_json(environ.get("CONTENT_TYPE") or ""):
            return None
        length = environ.get("CONTENT_LENGTH") or ""
        if not (length.isascii() and length.isdigit()) or not 0 < int(length) <= \
                self.app.extensions["osmanthus.config"].max_body_bytes:
            return None
        try:
            body = environ["wsgi.input"].read(int(length))
        except Exception:  # noqa: BLE001 - the client went away: Flask says so
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)  # Flask can read it again
        if len(body) != int(length):
            return None  # a short body: Flask answers it as it would have
        try:
            value = safe_json(body.decode("utf-8"))
            return _REQUEST.load(value) if isinstance(value, dict) else None
        except (ValueError, ValidationError):  # the guard's refusals (InputRefused) included
            return None

    def _answer(self, environ: dict, question: dict) -> Response | None:
        """The route's answer to `question`: the key, the limit, the decision, its dump; or
        None when the limit could not plainly be counted here (Flask answers, and counts)."""
        extensions = self.app.extensions
        engine, connection = extensions["osmanthus.engine"], None
        try:
            if engine.dialect.name == "postgresql":  # one connection for it all, as the route
                connection = audit.autocommit(engine).connect()
            partner = auth.partner_of(self.app, environ.get("HTTP_X_API_KEY"), connection)
            if not extensions["osmanthus.front_count"].hit(SCOPE, bucket_of(
                    environ.get("HTTP_X_API_KEY"), environ.get("REMOTE_ADDR"))):
                return None  # nothing counted nor audited yet: Flask-Limiter's turn
            result = decide(self.app, partner,
                            [(question["consent_token"], question["perk_id"])],
                            connection=connection)[0]
            if isinstance(result, Refusal):
                raise result.as_error()
            return self.app.json.response(_ANSWER.dump(result))
        except ApiError as error:
            return error_response(error, self.app)
        except Exception as error:  # noqa: BLE001 - answered as Flask's handler answers it
            return unexpected_response(error, self.app)
        finally:
            if connection is not None:
                connection.close()


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"

