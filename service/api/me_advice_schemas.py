"""Schemas of /v1/me/advice (service/advice.py)."""

from __future__ import annotations

from marshmallow import Schema, fields


class AdviceActionSchema(Schema):
    """One thing the citizen can do about a record."""

    action = fields.String(required=True, metadata={
        "description": "fulfil, apply_for_repair or dispute_if_wrong"})
    text = fields.String(required=True)
    text_zh = fields.String(required=True)
    text_en = fields.String(required=True)
    # "from" is a Python keyword: the field is named in data_key
    from_ = fields.Date(data_key="from", attribute="from", allow_none=True)


class RecordAdviceSchema(Schema):
    """An adverse counting record: what to do, the exact points clearing it restores (the
    person re-scored without it), and when it stops counting by itself."""

    source = fields.String(required=True)
    record_id = fields.String(required=True)
    date = fields.Date(required=True)
    points_restored = fields.Float(required=True)
    stops_by_itself_on = fields.Date(allow_none=True, metadata={
        "description": "the day it stops counting by itself (as `expires_on` on the records "
                       "page: for a monthly record the end of its five years on file, while "
                       "the score's 12–36-month windows may stop charging for it sooner); "
                       "null: it counts until its obligation is fulfilled"})
    repairable_from = fields.Date(allow_none=True)
    actions = fields.List(fields.Nested(AdviceActionSchema), required=True)


class PerkAdviceSchema(Schema):
    """A locked perk: whether it is within reach this year and when it would unlock by itself."""

    perk_id = fields.String(required=True)
    points_needed = fields.Float(required=True)
    reachable_this_year = fields.Boolean(required=True)
    score_if_all_cleared = fields.Float(required=True)
    unlocks_by_itself_on = fields.Date(allow_none=True)
    failed_conditions = fields.List(fields.String(), required=True)
    text = fields.String(required=True)
    text_zh = fields.String(required=True)
    text_en = fields.String(required=True)


class AdvicePageSchema(Schema):
    """Advice that helps: every adverse record and every locked perk."""

    as_of = fields.Date(required=True)
    score = fields.Float(required=True)
    records = fields.List(fields.Nested(RecordAdviceSchema), required=True,
                          metadata={"description": "most points restored first"})
    perks = fields.List(fields.Nested(PerkAdviceSchema), required=True)
