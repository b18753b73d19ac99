"""The public face of the audit log (issue 15): signed tree heads, consistency proofs and the
keys that verify heads — what an outside auditor needs, and nothing personal.

`GET /v1/transparency/tree-head` (latest, or `?tree_size=N`), `GET /v1/transparency/consistency
?first=M&second=N`, `GET /.well-known/osmanthus-audit-keys.json`. No credential; rate-limited
per client address like every unauthenticated caller (`service/api/limits.py`, the partner
limit); answers may be cached briefly (`Cache-Control: public, max-age=…`; a head never changes
once signed, only a newer one appears, so a stale latest head is merely late, never wrong).
`osmanthus audit verify-remote` is the auditor's side of these endpoints.
"""

from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint

from service.api.schemas import ErrorEnvelopeSchema
from service.api.transparency_schemas import (
    AuditKeysSchema,
    ConsistencyQuerySchema,
    ConsistencySchema,
    TreeHeadQuerySchema,
    TreeHeadSchema,
)
from service.base.errors import ApiError

blp = Blueprint("transparency", __name__,
                description="The signed audit log, for anyone to check (hashes only)")

HEAD_MAX_AGE = 1  # seconds: about one seal interval, so a cached latest head is barely late
FIXED_MAX_AGE = 3600  # a past head and a proof between two sizes never change


def _engine():
    return current_app.extensions["osmanthus.engine"]


def _cached(body: dict, seconds: int) -> tuple[dict, int, dict]:
    return body, 200, {"Cache-Control": f"public, max-age={seconds}"}


def head_json(head) -> dict:
    """A `service.rights.transparency.TreeHead` as the API shows it (hex root, base64url
    signature; `TreeHeadSchema`)."""
    return head.as_json()


@blp.route("/v1/transparency/tree-head")
@blp.arguments(TreeHeadQuerySchema, location="query")
@blp.response(200, TreeHeadSchema, headers={"Cache-Control": {
    "description": "public, max-age: 1 s for the latest head, an hour for a past one",
    "schema": {"type": "string"}}})
@blp.alt_response(404, schema=ErrorEnvelopeSchema,
                  description="No head yet, or none signed at exactly that size")
@blp.alt_response(422, schema=ErrorEnvelopeSchema, description="Invalid input")
def tree_head(query: dict):
    """The latest signed tree head, or with `tree_size` the one signed at that size (every seal
    that added entries signed one)."""
    from service.rights import transparency

    size = query["tree_size"]
    head = (transparency.latest_head(_engine()) if size is None
            else transparency.head_of_size(_engine(), size))
    if head is None:
        raise ApiError(404, "no signed tree head yet" if size is None
                       else f"no tree head was signed at size {size}")
    return _cached(head_json(head), HEAD_MAX_AGE if size is None else FIXED_MAX_AGE)


@blp.route("/v1/transparency/consistency")
@blp.arguments(ConsistencyQuerySchema, location="query")
@blp.response(200, ConsistencySchema)
@blp.alt_response(422, schema=ErrorEnvelopeSchema,
                  description="first > second, or second beyond the latest signed head")
def consistency(query: dict):
    """The proof that the log at size `second` extends the log at size `first` (both sizes of
    signed heads, or any sizes up to the latest head's)."""
    from service.rights import transparency

    first, second = query["first"], query["second"]
    latest = transparency.latest_head(_engine())
    if second > (latest.tree_size if latest else 0):
        raise ApiError(422, "second is beyond the latest signed head", errors={
            "second": [f"must be at most {latest.tree_size if latest else 0}, the latest signed "
                       "head's size"]})
    proof = transparency.consistency_proof(_engine(), first, second)
    return _cached({"first": first, "second": second, "proof": [h.hex() for h in proof]},
                   FIXED_MAX_AGE)


@blp.route("/.well-known/osmanthus-audit-keys.json")
@blp.response(200, AuditKeysSchema)
def audit_keys():
    """The tree heads' public keys, for citizens' browsers and outside auditors."""
    from service.base.keys import audit_keys_of

    return _cached(audit_keys_of(current_app.extensions["osmanthus.config"]).jwks(), 300)
