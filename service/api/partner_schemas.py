"""What partners send and receive: a consent token and a perk in, yes / no / pending out.

A partner never sees a score, band, reason, record or person key; these schemas are the only
way data leaves the partner API, so nothing else can slip into an answer.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

ANSWERS = ("yes", "no", "pending")
MAX_BATCH = 1000


class EligibilityRequestSchema(Schema):
    """One question: may the person behind this consent have this perk?"""

    consent_token = fields.String(
        required=True, validate=validate.Length(min=1, max=4096),
        metadata={"description": "The token the citizen handed over (e.g. as a QR code)."})
    perk_id = fields.String(
        required=True, validate=validate.Length(min=1, max=64),
        metadata={"description": "One of this partner's perks.", "example": "bike-deposit-free"})


class EligibilitySchema(Schema):
    """The answer, and nothing else. `pending`: the person asked for human review (PIPL Art. 24)
    and no decision may rest on the score until a reviewer decides."""

    eligible = fields.String(required=True, validate=validate.OneOf(ANSWERS),
                             metadata={"enum": list(ANSWERS)})
    decision_id = fields.String(required=True, metadata={
        "description": "Quote it in any dispute; the person's access log shows it too."})
    expires_at = fields.DateTime(required=True, metadata={
        "description": "Ask again after this (24 hours, or the consent's end if sooner)."})


class ItemErrorSchema(Schema):
    """Why one question of a batch was not answered (the single form's 403/503 codes)."""

    code = fields.String(required=True, metadata={"example": "consent_revoked"})
    message = fields.String(required=True)


class BatchRequestSchema(Schema):
    """Up to 1,000 questions at once; each counts against the rate limit."""

    requests = fields.List(fields.Nested(EligibilityRequestSchema), required=True,
                           validate=validate.Length(min=1, max=MAX_BATCH))


class BatchItemSchema(Schema):
    """Either the three answer fields, or `error` alone (one bad token never fails the batch)."""

    eligible = fields.String(validate=validate.OneOf(ANSWERS), metadata={"enum": list(ANSWERS)})
    decision_id = fields.String()
    expires_at = fields.DateTime()
    error = fields.Nested(ItemErrorSchema)


class BatchResponseSchema(Schema):
    """One result per question, in the order asked."""

    results = fields.List(fields.Nested(BatchItemSchema), required=True)

