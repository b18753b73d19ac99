"""Every request checked at the door, before anything parses it.

1. Size: a body larger than the endpoint's limit is a 413 in the envelope, decided on
   `Content-Length` before a byte is read (and enforced while reading a chunked body, by
   Flask's `max_content_length`). JSON endpoints take `max_body_bytes` (default 1 MiB: a
   1,000-question partner batch is ~0.5 MB); only the feed upload takes `max_feed_bytes`.
2. JSON that no schema should have to survive is refused as 422 before a schema sees it:
   nesting deeper than `MAX_DEPTH`, integers beyond a 64-bit column (`MAX_INT`, so never the
   4,300-digit ones that make Python's `int()` raise), non-finite numbers (`NaN`, `Infinity`,
   `1e999`), and text holding NUL or a lone surrogate (`\\ud800`): PostgreSQL refuses both,
   and neither can be written as UTF-8. Malformed JSON is a 400.
3. The same text rule for query strings, form fields and path values.

A value that passes still meets its schema's own bounds; this is the floor under all of them,
so that no endpoint, present or future, can be made to answer 500 by the shape of its input.
"""

from __future__ import annotations

import json
import math

from flask import Flask, request

from service.base.config import Config
from service.base.errors import ApiError

MAX_DEPTH = 32  # the deepest body any schema here takes is 4
MAX_INT = 2**63 - 1  # a PostgreSQL bigint
LARGE_BODY_ENDPOINTS = frozenset({"admin.upload_feed"})  # endpoints that take a file


class InputRefused(ValueError):
    """A JSON body refused for its shape; `reason` is safe to return (it never quotes it);
    `field` is the top-level field it was found in ("json" when not known)."""

    def __init__(self, reason: str, field: str = "json") -> None:
        super().__init__(reason)
        self.reason, self.field = reason, field


def text_problem(value: str) -> str | None:
    """Why text cannot be stored, or None: NUL characters, lone surrogates."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must not contain lone surrogates (not valid Unicode text)"
    return None


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise InputRefused("an integer is too large")
    value = int(text)
    if not -MAX_INT - 1 <= value <= MAX_INT:
        raise InputRefused("an integer is too large")
    return value


def _float(text: str) -> float:
    if len(text) > 64:
        raise InputRefused("a number is written with too many digits")
    value = float(text)
    if not math.isfinite(value):
        raise InputRefused("numbers must be finite")
    return value


def _constant(_name: str) -> float:
    raise InputRefused("numbers must be finite (NaN and Infinity are not JSON)")


def safe_json(data: bytes | str) -> object:
    """The parsed body, or `InputRefused` (422) / `ValueError` (400, not JSON at all)."""
    try:
        value = json.loads(data, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise InputRefused(f"nested more than {MAX_DEPTH} levels deep") from None
    check_tree(value)
    return value


def check_tree(value: object) -> None:
    """Depth and text of a parsed body, without recursion; a refusal names the top-level
    field it is under (a field name that is itself bad is never quoted)."""
    stack: list[tuple[object, int, str]] = [(value, 1, "json")]
    while stack:
        item, depth, field = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                raise InputRefused(f"nested more than {MAX_DEPTH} levels deep", field)
            for key, inner in item.items():
                problem = text_problem(key)
                if problem:
                    raise InputRefused(f"a field name {problem}", field)
                stack.append((inner, depth + 1, key if depth == 1 else field))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                raise InputRefused(f"nested more than {MAX_DEPTH} levels deep", field)
            stack.extend((inner, depth + 1, field) for inner in item)
        elif isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise InputRefused(problem, field)


def _limit() -> int:
    from flask import current_app

    config: Config = current_app.extensions["osmanthus.config"]
    return config.max_feed_bytes if request.endpoint in LARGE_BODY_ENDPOINTS \
        else config.max_body_bytes


def check_size() -> None:
    """413 before reading: the declared length against this endpoint's limit."""
    limit = _limit()
    request.max_content_length = limit  # a chunked body is cut off at the limit too
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(413, f"the request body is larger than {limit:,} bytes")


def check_values() -> None:
    """422 for a JSON body, query string or form field no schema should see; 404 for such a
    path value (no record has that id, and the answer says no more)."""
    for value in (request.view_args or {}).values():
        if isinstance(value, str) and text_problem(value):
            raise ApiError(404, "not found")
    for name, value in request.args.items(multi=True):
        problem = text_problem(name) or text_problem(value)
        if problem:
            raise ApiError(422, "some fields are invalid", errors={"query": [problem]})
    if request.mimetype.endswith("json") and request.content_length != 0:
        data = request.get_data(cache=True)
        if not data:
            return
        try:
            safe_json(data)
        except InputRefused as refused:
            raise ApiError(422, "some fields are invalid",
                           errors={refused.field: [refused.reason]}) from None
        except ValueError:
            raise ApiError(400, "the body is not valid JSON") from None
    elif request.mimetype == "multipart/form-data":
        for name, value in request.form.items(multi=True):
            problem = ((isinstance(name, str) and text_problem(name))
                       or (isinstance(value, str) and text_problem(value)))
            if problem:
                raise ApiError(422, "some fields are invalid", errors={"form": [problem]})


def install(app: Flask) -> None:
    """The size check first, then whatever `between` hooks the app adds (the partner key),
    then the values: call `install` before registering any other `before_request`."""
    app.before_request(check_size)


def install_value_checks(app: Flask) -> None:
    app.before_request(check_values)


PERSONAL_PREFIXES = ("/v1/",)  # every /v1 answer may carry personal data or a decision
PUBLIC_PREFIXES = ("/v1/transparency/",)  # but these: hashes only, and cacheable (issue 15)


class SafeHeaders:
    """WSGI middleware (outermost, so the cached score pages get it too): `nosniff` on every
    answer, and `Cache-Control: no-store` on every /v1 answer, which may carry a person's
    score, records or a decision about them: no shared or browser cache may keep one — except
    `/v1/transparency/`, which carries hashes only and sets its own `Cache-Control`.

    It also names the request's route template in the environ (`osmanthus.route`), for the
    access log (service/http_worker.py: `RouteLogger`), which never logs the path itself."""

    ROUTES_REMEMBERED = 4096  # (method, path) → template; paths with ids make it grow

    def __init__(self, wrapped, url_map=None) -> None:
        self.wrapped, self.url_map = wrapped, url_map
        self._routes: dict[tuple[str, str], str] = {}

    def _route(self, environ) -> str:
        """The route template, remembered per method and path: matching the URL map again
        cost a twentieth of a partner decision (no rule here depends on the host)."""
        if self.url_map is None:
            return "-"
        asked = (environ.get("REQUEST_METHOD") or "", environ.get("PATH_INFO") or "")
        found = self._routes.get(asked)
        if found is None:
            try:
                rule, _ = self.url_map.bind_to_environ(environ).match(return_rule=True)
                found = rule.rule
            except Exception:  # noqa: BLE001 - not found, wrong method: no template to name
                found = "(no route)"
            if len(self._routes) >= self.ROUTES_REMEMBERED:
                self._routes.clear()
            self._routes[asked] = found
        return found

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO") or ""
        personal = path.startswith(PERSONAL_PREFIXES) and not path.startswith(PUBLIC_PREFIXES)
        environ["osmanthus.route"] = self._route(environ)

        def starting(status, headers, exc_info=None):
            names = {name.lower() for name, _ in headers}
            headers = list(headers)
            if "x-content-type-options" not in names:
                headers.append(("X-Content-Type-Options", "nosniff"))
            if personal:
                headers = [(n, v) for n, v in headers if n.lower() != "cache-control"]
                headers.append(("Cache-Control", "no-store"))
            return start_response(status, headers, exc_info)

        return self.wrapped(environ, starting)
