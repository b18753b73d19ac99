"""Schemas of the citizen API (`/v1/me/...`): what a citizen sends and what they get back.

No schema here has a person key or an ID number: a citizen's token says who they are.
"""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from features.records import Source


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be blank")


def _plain_text(value: str) -> None:
    """No control characters but line breaks and tabs (a NUL cannot even be stored)."""
    if any(ord(c) < 32 and c not in "\n\r\t" or ord(c) == 127 for c in value):
        raise ValidationError("must not contain control characters")


def _token(value: str) -> None:
    """An identifier: printable, no spaces."""
    if not value.isprintable() or any(c.isspace() for c in value):
        raise ValidationError("must be printable characters without spaces")


class LanguageHeaderSchema(Schema):
    """`Accept-Language`: `zh` (the default) or `en`, with q-values (e.g. `en;q=0.8, zh;q=0.5`).
    It chooses each `text` and `reason`; both languages are always present as well."""

    class Meta:
        unknown = "exclude"

    accept_language = fields.String(data_key="Accept-Language",
                                    metadata={"example": "zh-CN,zh;q=0.9,en;q=0.8"})


class TrendPointSchema(Schema):
    """One past score: the latest of its as-of date."""

    as_of = fields.Date(required=True)
    score = fields.Integer(required=True, metadata={"description": "whole: cut, never rounded "
                                                    "up"})
    band = fields.String(required=True)
    band_zh = fields.String(required=True)
    model_version = fields.String(required=True)


class ScoreBriefSchema(Schema):
    """A score, its band in English and Chinese, the model that gave it and its as-of date."""

    score = fields.Integer(required=True, metadata={
        "description": "0–1000, whole: the exact score cut, never rounded up (599.6 is 599, "
                       "fair), so it and the band and every perk answer agree"})
    band = fields.String(required=True, metadata={
        "description": "needs improvement (<550), fair, good, very good, excellent (≥750)"})
    band_zh = fields.String(required=True, metadata={"example": "良好"})
    model_version = fields.String(required=True)
    as_of = fields.Date(required=True)


class ScorePageSchema(ScoreBriefSchema):
    """The citizen's score, its trend (oldest first) and `today`: the service's one clock, in
    the city's calendar (UTC+8), which dates everything the API gives."""

    trend = fields.List(fields.Nested(TrendPointSchema), required=True)
    today = fields.Date(required=True)


class ReasonSchema(Schema):
    """One reason: a feature's points (whole; the exact value beside them), the person's
    value, and its text in both languages (`text` is the one `Accept-Language` chose)."""

    feature = fields.String(required=True)
    points = fields.Integer(required=True, metadata={
        "description": "whole points, negative: lowered the score; the exact points rounded "
                       "down or up (largest remainder) so that the page adds up"})
    points_exact = fields.Float(required=True, metadata={"description": "for modellers"})
    value = fields.Raw(allow_none=True)
    text = fields.String(required=True, allow_none=True)
    text_zh = fields.String(required=True, allow_none=True)
    text_en = fields.String(required=True, allow_none=True)
    under_dispute = fields.Boolean(metadata={
        "description": "a record behind this reason is under dispute (it still counts)"})


class DisputedRecordSchema(Schema):
    """A record under dispute: labelled, still counting until its due date."""

    source = fields.String(required=True)
    record_id = fields.String(required=True)
    due_on = fields.Date(allow_none=True)
    counts = fields.Boolean(required=True)
    label = fields.String(required=True)


class ExplanationSchema(ScoreBriefSchema):
    """Why the score is what it is, in whole points that add up exactly: `base_points` + each
    reason's `points` + `other_points` ("smaller factors", each listed in `smaller_factors`) +
    `clip_points` (the scale's 0–1000 limit; 0 unless the score left it) = `score`. Every
    whole number is within 1 of its exact value (`*_exact`, `raw_score`), for modellers."""

    language = fields.String(required=True, metadata={"description": "zh or en"})
    score_exact = fields.Float(required=True)
    base_points = fields.Integer(required=True, metadata={"description": "the same for "
                                                          "everyone: floor of the exact"})
    base_points_exact = fields.Float(required=True)
    raw_score = fields.Float(required=True, metadata={"description": "exact, before clipping"})
    other_points = fields.Integer(required=True, metadata={
        "description": "the features not named, added up; never larger in size than the "
                       "smallest named reason"})
    other_points_exact = fields.Float(required=True)
    clip_points = fields.Integer(required=True)
    smaller_factors = fields.List(fields.Nested(ReasonSchema), required=True, metadata={
        "description": "every feature inside other_points (zero-point ones left out), most "
                       "lowering first"})
    no_record = fields.Boolean(required=True,
                               metadata={"description": "no record yet: the base score"})
    reasons = fields.List(fields.Nested(ReasonSchema), required=True,
                          metadata={"description": "most lowering first"})
    under_dispute = fields.List(fields.Nested(DisputedRecordSchema), metadata={
        "description": "your records under dispute now, labelled; they count until due"})


class DisputeBriefSchema(Schema):
    """The latest dispute of a record."""

    dispute_id = fields.String(required=True)
    state = fields.String(required=True, metadata={
        "description": "open, upheld, rejected or withdrawn"})
    due_on = fields.Date(required=True)
    resolution = fields.String(allow_none=True)


class RepairBriefSchema(Schema):
    """A record's latest credit-repair application."""

    repair_id = fields.String(required=True)
    state = fields.String(required=True, metadata={"description": "open, approved or refused"})
    received_on = fields.Date(required=True)
    resolution = fields.String(allow_none=True, metadata={"description": "the admin's reason"})


class RepairTermsSchema(Schema):
    """Credit repair (信用修复) for one record: whether and when it becomes repairable (its
    obligation fulfilled and its minimum publication period passed) and when it stops counting
    by itself (features/repair.py)."""

    adverse = fields.Boolean(required=True)
    repairable = fields.Boolean(required=True, metadata={
        "description": "repair applies to it at all (a court listing closes by fulfilment)"})
    repairable_from = fields.Date(allow_none=True)
    can_apply = fields.Boolean(required=True, metadata={
        "description": "it counts, the date has come and no application is open"})
    expires_on = fields.Date(allow_none=True, metadata={
        "description": "the first day it no longer counts by itself (a monthly record: when it "
                       "leaves the file after 5 years; the score's 12–36-month windows may stop "
                       "charging for it sooner); null: while active"})
    obligation = fields.String(allow_none=True)
    obligation_zh = fields.String(allow_none=True)
    obligation_en = fields.String(allow_none=True)
    application = fields.Nested(RepairBriefSchema, allow_none=True)


class RecordSchema(Schema):
    """One record of one source: whether it counts today, and if not, why in plain words."""

    source = fields.String(required=True, validate=validate.OneOf([s.value for s in Source]))
    record_id = fields.String(required=True, metadata={"description": "what a dispute names"})
    date = fields.Date(required=True, metadata={"description": "the record's own date "
                                                "(a month's records: its first day)"})
    counts = fields.Boolean(required=True)
    reason = fields.String(allow_none=True, required=True,
                           metadata={"description": "why it does not count; null when it does"})
    reason_zh = fields.String(allow_none=True, required=True)
    reason_en = fields.String(allow_none=True, required=True)
    repaired_on = fields.Date(allow_none=True)
    under_dispute = fields.Boolean(required=True, metadata={
        "description": "a dispute of it is open: it is labelled, and still counts until its "
                       "due date"})
    label = fields.String(allow_none=True, metadata={
        "description": "'under dispute' in the page's language while a dispute is open"})
    label_zh = fields.String(allow_none=True)
    label_en = fields.String(allow_none=True)
    dispute_state = fields.String(required=True, metadata={
        "description": "none, open, upheld, rejected or withdrawn (the latest dispute)"})
    dispute = fields.Nested(DisputeBriefSchema, allow_none=True)
    can_dispute = fields.Boolean(required=True, metadata={
        "description": "it counts and has no open dispute"})
    details = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True),
                          required=True, metadata={"description": "the source's own columns"})
    repair = fields.Nested(RepairTermsSchema)


class RecordsPageSchema(Schema):
    """Every record of all five sources, newest first, as of the scoring date."""

    as_of = fields.Date(required=True)
    counting = fields.Integer(required=True)
    not_counting = fields.Integer(required=True)
    records = fields.List(fields.Nested(RecordSchema), required=True)


class ConditionSchema(Schema):
    """A perk's extra condition and whether the person meets it."""

    condition = fields.String(required=True)
    text_zh = fields.String(required=True)
    text_en = fields.String(required=True)
    met = fields.Boolean(required=True)


class UnlockSchema(Schema):
    """A counting record of the person's own whose clearing alone would unlock the perk."""

    source = fields.String(required=True)
    record_id = fields.String(required=True)
    date = fields.Date(required=True)
    score_without = fields.Integer(required=True, metadata={"description": "the score "
                                                            "without it (whole)"})


class PerkStatusSchema(Schema):
    """One perk: the person's answer (`pending` while a human review is open), and for a
    locked one the points it still needs and which records, if cleared, would unlock it."""

    perk_id = fields.String(required=True)
    policy_version = fields.Integer(required=True)
    name_zh = fields.String(required=True)
    name_en = fields.String(required=True)
    partner_id = fields.String(required=True)
    partner_name = fields.String(allow_none=True)
    min_score = fields.Float(required=True)
    status = fields.String(required=True, metadata={"description": "yes, no or pending"})
    review_state = fields.String(metadata={
        "description": "none, pending or decided: your human review of this perk"})
    locked = fields.Boolean(required=True, metadata={"description": "the score and conditions "
                                                     "alone say no"})
    points_needed = fields.Integer(required=True, metadata={"description": "whole, rounded "
                                                            "up: score + this = minimum"})
    conditions = fields.List(fields.Nested(ConditionSchema), required=True)
    unlocked_by = fields.List(fields.Nested(UnlockSchema), required=True)


class PerksPageSchema(Schema):
    """Every perk the city offers, and where the citizen stands."""

    score = fields.Integer(required=True)
    review_state = fields.String(required=True)
    perks = fields.List(fields.Nested(PerkStatusSchema), required=True)


class DisputeInSchema(Schema):
    """Contest one of your counting records: it is labelled "under dispute" and keeps counting
    until answered; unanswered past its due date, it stops counting until answered."""

    source = fields.String(required=True, validate=validate.OneOf([s.value for s in Source]))
    record_id = fields.String(required=True, validate=validate.Regexp(
        r"^[0-9a-f]{32}$", error="not a record id (32 hexadecimal digits)"))
    statement = fields.String(required=True, validate=[validate.Length(min=1, max=2000),
                                                       _not_blank, _plain_text])
    confirm = fields.Boolean(load_default=False, metadata={
        "description": "required (true) to dispute a record that raises your score: if upheld "
                       "or unanswered, it stops counting and you lose its points"})


class DisputeSchema(Schema):
    """A dispute: due `dispute_due_days` (default 20) after it was received; `resolution` is
    the reviewer's note."""

    dispute_id = fields.String(required=True)
    source = fields.String(required=True)
    record_id = fields.String(required=True)
    statement = fields.String(required=True)
    state = fields.String(required=True, metadata={
        "description": "open, upheld, rejected or withdrawn"})
    received_on = fields.Date(required=True)
    due_on = fields.Date(required=True)
    overdue = fields.Boolean(required=True)
    resolution = fields.String(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)


class DisputeOpenedSchema(Schema):
    """The new dispute and the score it gave, re-computed in the same request."""

    dispute = fields.Nested(DisputeSchema, required=True)
    score = fields.Nested(ScoreBriefSchema, required=True)


class ReviewInSchema(Schema):
    """Ask that one perk's decision about you not rest on the score alone (PIPL Art. 24)."""

    perk_id = fields.String(required=True, validate=[validate.Length(min=1, max=64), _token],
                            metadata={"description": "the perk whose decision to review"})
    decision_id = fields.String(load_default=None, allow_none=True, metadata={
        "description": "the partner decision you contest, from your access log (optional)"})
    reason = fields.String(required=True, validate=[validate.Length(min=1, max=2000), _not_blank,
                                                    _plain_text])


class ReviewSchema(Schema):
    """A request for human review of one perk: pending (partners get `pending` for that perk
    only), decided (the reviewer's outcome and reason) or withdrawn."""

    review_id = fields.String(required=True)
    perk_id = fields.String(required=True)
    decision_id = fields.String(allow_none=True)
    reason = fields.String(required=True)
    state = fields.String(required=True)
    requested_at = fields.DateTime(allow_none=True)
    outcome = fields.String(allow_none=True, metadata={"description": "eligible or not_eligible"})
    outcome_reason = fields.String(allow_none=True, metadata={
        "description": "the reviewer's reason, for you to read"})
    decided_at = fields.DateTime(allow_none=True)


class RepairInSchema(Schema):
    """Apply for credit repair of one adverse record: say what you paid or corrected, when."""

    source = fields.String(required=True, validate=validate.OneOf([s.value for s in Source]))
    record_id = fields.String(required=True, validate=validate.Regexp(
        r"^[0-9a-f]{32}$", error="not a record id (32 hexadecimal digits)"))
    statement = fields.String(required=True, validate=[validate.Length(min=1, max=2000),
                                                       _not_blank, _plain_text])


class RepairSchema(Schema):
    """A credit-repair application: open, approved (the record no longer counts) or refused
    (`resolution` says why)."""

    repair_id = fields.String(required=True)
    source = fields.String(required=True)
    record_id = fields.String(required=True)
    statement = fields.String(required=True)
    received_on = fields.Date(required=True)
    state = fields.String(required=True)
    resolution = fields.String(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)


class ConsentInSchema(Schema):
    """Let a partner ask about some of its perks until a date (at most a year on)."""

    partner_id = fields.String(required=True, validate=[validate.Length(min=1, max=64), _token])
    perks = fields.List(fields.String(validate=[validate.Length(min=1, max=64), _token]),
                        required=True,
                        validate=validate.Length(min=1, max=20))
    until = fields.Date(required=True, metadata={"description": "last day, inclusive (UTC+8)"})
    idempotency_key = fields.String(load_default=None, allow_none=True, validate=[
        validate.Length(min=8, max=64), _token], metadata={
        "description": "one per grant (the page makes it): sent again, the same consent and a "
                       "token for it come back, never a second consent"})


class ConsentSchema(Schema):
    """A consent and its state: active, expired or revoked."""

    consent_id = fields.String(required=True)
    partner_id = fields.String(required=True)
    perks = fields.List(fields.String(), required=True)
    granted_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True)
    revoked_at = fields.DateTime(allow_none=True)
    state = fields.String(required=True)


class ConsentGrantedSchema(Schema):
    """The consent, and the token to hand to the partner (e.g. as a QR code); shown once."""

    consent = fields.Nested(ConsentSchema, required=True)
    token = fields.String(required=True)
    qr_svg = fields.String(required=True, metadata={
        "description": "the token as a QR code: an inline SVG (error correction M, 4-module "
                       "quiet zone), drawn by the server"})


class AccessLogQuerySchema(Schema):
    """Paging through the access log, newest first: `before` is the `id` of the oldest entry
    already seen (the `X-Next-Before` header of the previous page)."""

    before = fields.Integer(load_default=None, validate=validate.Range(min=1, max=2**62))
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=200))
