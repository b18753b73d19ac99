"""Schemas of the verifiable access log (issue 15): signed tree heads, proofs, the audit keys,
and the citizen's access log with an inclusion proof per entry.

Everything here but the access log is public: hashes, sizes, times and signatures, never an
entry's content. The docstrings are the OpenAPI text, and say how to check each answer."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from service.api.health import JwkSchema

MAX_SIZE = 2**62
HEX_HASH = validate.Regexp(r"^[0-9a-f]{64}$")


class TreeHeadSchema(Schema):
    """A signed tree head: the audit log's first `tree_size` entries have the Merkle root
    `root_hash` (RFC 9162 §2.1: leaf = SHA-256(0x00 ‖ leaf data), node = SHA-256(0x01 ‖ left ‖
    right)). `signature` is Ed25519, by the key `key_id` of
    `/.well-known/osmanthus-audit-keys.json`, over the UTF-8 bytes of
    `"osmanthus-audit-tree-head:v1\\n{tree_size}\\n{root_hash}\\n{timestamp}\\n"`.
    Keep the heads you see: a later head that does not extend one you kept (a consistency
    proof that fails) means the log was rewritten."""

    tree_size = fields.Integer(required=True, metadata={"example": 1024})
    root_hash = fields.String(required=True, validate=HEX_HASH, metadata={
        "description": "the Merkle root, 64 lower-case hex digits"})
    timestamp = fields.Integer(required=True, metadata={
        "description": "when the head was signed, milliseconds since 1970-01-01 UTC"})
    key_id = fields.String(required=True)
    signature = fields.String(required=True, metadata={
        "description": "Ed25519 signature, base64url without padding"})


class TreeHeadQuerySchema(Schema):
    """Which head: the latest, or the one signed when the log had exactly `tree_size` entries."""

    tree_size = fields.Integer(load_default=None, validate=validate.Range(min=0, max=MAX_SIZE))


class ConsistencyQuerySchema(Schema):
    """Two sizes of the log, `first` ≤ `second` ≤ the latest signed head's size."""

    first = fields.Integer(required=True, validate=validate.Range(min=0, max=MAX_SIZE))
    second = fields.Integer(required=True, validate=validate.Range(min=0, max=MAX_SIZE))

    @validates_schema
    def _ordered(self, data: dict, **_kwargs) -> None:
        if data["first"] > data["second"]:
            raise ValidationError("must not be larger than second", "first")


class ConsistencySchema(Schema):
    """An RFC 9162 §2.1.4 consistency proof: the hashes that show the tree of `second` entries
    extends the tree of `first` entries, i.e. that no entry among the first `first` was changed,
    removed or reordered. Check it (RFC 9162 §2.1.4.2) against the two signed heads' roots."""

    first = fields.Integer(required=True)
    second = fields.Integer(required=True)
    proof = fields.List(fields.String(validate=HEX_HASH), required=True, metadata={
        "description": "hex hashes, in the RFC's order"})


class AuditKeysSchema(Schema):
    """The public keys that verify signed tree heads (current and retired, by `kid`), as a JWK
    set (RFC 7517, OKP/Ed25519). They verify a head; they cannot sign one."""

    keys = fields.List(fields.Nested(JwkSchema), required=True)


class AccessEntrySchema(Schema):
    """One entry of the citizen's access log: who, when, what, the answer if any, and what
    proves it is in the signed log. A sealed entry's `leaf_data` (with your person key put
    back) hashed as a leaf (SHA-256(0x00 ‖ UTF-8 leaf_data)) and folded with `proof` (RFC 9162
    §2.1.3.2, at `leaf_index` in a tree of `tree_head.tree_size`) gives `tree_head.root_hash`."""

    id = fields.Integer(required=True, metadata={
        "description": "the entry's number (append order; a paging cursor)"})
    at = fields.DateTime(required=True)
    actor = fields.String(required=True, metadata={
        "description": "citizen (you), partner:<id> or admin:<name>"})
    action = fields.String(required=True)
    partner_id = fields.String(allow_none=True)
    perk_id = fields.String(allow_none=True)
    answer = fields.String(allow_none=True, metadata={
        "description": "yes, no or pending; null when the question was refused (see detail)"})
    detail = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))
    sealed = fields.Boolean(required=True, metadata={
        "description": "false: appended, not yet in a signed head (the sequencer seals every "
                       "second or so); no proof yet"})
    leaf_index = fields.Integer(allow_none=True, metadata={
        "description": "its place in the Merkle tree (null until sealed)"})
    leaf_data = fields.String(required=True, metadata={
        "description": "the text hashed as the leaf, exactly: canonical JSON of [at, actor, "
                       "person, action, detail, nonce], where person is hex SHA-256(nonce bytes "
                       "‖ your person key), a commitment, never the key; hash it as served "
                       "(SHA-256 of 0x00 ‖ its UTF-8 bytes)"})
    proof = fields.List(fields.String(validate=HEX_HASH), metadata={
        "description": "the inclusion proof against `tree_head` (hex; absent when not sealed)"})


class AccessLogSchema(Schema):
    """The citizen's access log, newest first, and the latest signed tree head that every
    entry's proof is against (null before the first seal)."""

    entries = fields.List(fields.Nested(AccessEntrySchema), required=True)
    tree_head = fields.Nested(TreeHeadSchema, allow_none=True, required=True)
