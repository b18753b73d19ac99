"""One JSON error envelope for every error: `{code, status, message, errors}`.

`code` is a stable machine word, `message` a sentence for people, `errors` field-level detail
for bad input. Nothing internal (tracebacks, SQL, file paths, ID numbers) ever reaches it: an
unexpected exception is logged with its traceback and answered with a plain 500.
"""

from __future__ import annotations

import logging
import uuid

from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
    422: "invalid_input", 429: "rate_limited", 500: "internal_error", 503: "unavailable",
}


class ApiError(Exception):
    """An error the API means to return, with its status and a safe message."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 errors: dict | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code or CODES.get(status, "error")
        self.errors = errors or {}
        self.headers = headers or {}


def _field_errors(errors: object) -> object:
    """Field-level detail with every key a string: marshmallow keys a list item's errors by
    its index and an unnamed form part's by None, and JSON (sorted) needs one kind of key."""
    if isinstance(errors, dict):
        return {str(key): _field_errors(value) for key, value in errors.items()}
    if isinstance(errors, list | tuple):
        return [_field_errors(value) for value in errors]
    return errors


def envelope(status: int, message: str, code: str | None = None, errors: dict | None = None,
             app: Flask | None = None) -> tuple[Response, int]:
    """The envelope as a JSON response and its status (`app`: when there is no app context)."""
    body = {"code": code or CODES.get(status, "error"), "status": status, "message": message,
            "errors": _field_errors(errors or {})}
    return (app or current_app).json.response(body), status


def error_response(error: ApiError, app: Flask | None = None) -> Response:
    """An `ApiError` answered: its envelope, status and headers. The single partner decision
    answered in front of Flask (`api.partner_front`) answers its errors with it too."""
    response, status = envelope(error.status, error.message, error.code, error.errors, app)
    response.status_code = status
    response.headers.update(error.headers)
    return response


def unexpected_response(error: BaseException, app: Flask | None = None) -> Response:
    """An error nobody meant: logged with its traceback under an incident id, answered with a
    plain 500 that names the id and nothing else."""
    incident = uuid.uuid4().hex[:12]
    log.error("unexpected error, incident %s", incident, exc_info=error)
    response, status = envelope(500, f"internal error (incident {incident})", app=app)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        status = error.code or 500
        errors = {}
        data = getattr(error, "data", None) or {}
        if isinstance(data.get("messages"), dict):  # webargs/marshmallow: {location: {field: [..]}}
            for fields in data["messages"].values():
                errors.update(fields if isinstance(fields, dict) else {"_": fields})
        message = "some fields are invalid" if errors else (error.description or error.name)
        response, status = envelope(status, message, None, errors)
        valid_methods = getattr(error, "valid_methods", None)
        if status == 405 and valid_methods:  # RFC 9110 §15.5.6: a 405 names what is allowed
            response.headers["Allow"] = ", ".join(valid_methods)
        for name, value in (data.get("headers") or {}).items():
            response.headers[name] = value
        if status == 429 and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = "1"
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        return unexpected_response(error)
