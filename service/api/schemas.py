"""Schemas shared by every blueprint: the one error envelope, and how callers authenticate.

`ErrorEnvelopeSchema` documents what `service/base/errors.py` sends for every error, so that
flask-smorest's own default (`code` an integer, `status` a name) never appears in
`/openapi.json`; `app.py` makes it the API's `ERROR_SCHEMA` and blueprints name it in their
error responses. `SECURITY_SCHEMES` and `BLUEPRINT_SECURITY` declare, once, which credential
each blueprint needs; `DocsPlugin` writes that onto every operation of the blueprint, and makes
each schema's docstring its description in `/openapi.json` (the docstrings are the API's text).
"""

from __future__ import annotations

import inspect
from typing import Any

from apispec import BasePlugin
from marshmallow import Schema, fields
from marshmallow.schema import SchemaMeta

from service.base.errors import CODES


class ErrorEnvelopeSchema(Schema):
    """The one error envelope of every error answer: `code` a stable machine word (e.g.
    `invalid_input`, `consent_revoked`), `status` the HTTP status again, `message` a sentence
    for people, `errors` field-level detail for bad input (`{field: [messages]}`, nested for
    nested fields), empty otherwise."""

    code = fields.String(required=True, metadata={
        "example": "invalid_input",
        "description": "A stable machine word; by status: " + ", ".join(
            f"{status} {code}" for status, code in sorted(CODES.items()))
        + ", or a more precise one (e.g. `consent_revoked`)."})
    status = fields.Integer(required=True, metadata={"example": 422})
    message = fields.String(required=True, metadata={"example": "some fields are invalid"})
    errors = fields.Dict(keys=fields.String(), required=True, metadata={
        "description": "Field-level detail for bad input; empty otherwise."})


SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "citizenToken": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A citizen's token (role `citizen`; its subject is the person key).",
    },
    "adminToken": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A modeller's or operator's token (role `admin`).",
    },
    "partnerKey": {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "A partner's API key (stored hashed; rate-limited per key).",
    },
}

# blueprint name -> the security requirement of each of its operations ([] = none needed)
BLUEPRINT_SECURITY: dict[str, list[dict[str, list]]] = {
    "health": [],
    "me": [{"citizenToken": []}],
    "partner": [{"partnerKey": []}],
    "admin": [{"adminToken": []}],
    "transparency": [],
}


class DocsPlugin(BasePlugin):
    """apispec plugin: each operation gets its blueprint's security requirement (flask-smorest
    tags every operation with its blueprint's name) unless it sets its own, and each schema
    component its class docstring as `description`."""

    def init_spec(self, spec) -> None:
        super().init_spec(spec)
        for name, scheme in SECURITY_SCHEMES.items():
            spec.components.security_scheme(name, scheme)

    def operation_helper(self, path: str | None = None, operations: dict | None = None,
                         **kwargs: Any) -> None:
        for operation in (operations or {}).values():
            if not isinstance(operation, dict):
                continue
            for tag in operation.get("tags") or ():
                if tag in BLUEPRINT_SECURITY:
                    operation.setdefault("security", BLUEPRINT_SECURITY[tag])
                    break

    def schema_helper(self, name: str, definition: dict, schema: Any = None,
                      **kwargs: Any) -> dict | None:
        schema_class = schema if isinstance(schema, SchemaMeta) else type(schema)
        doc = schema_class.__dict__.get("__doc__") if schema is not None else None
        if not doc or "description" in definition:
            return None
        return {"description": inspect.cleandoc(doc)}
