"""Request and response schemas of /v1/admin/... (modellers and operators)."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from features.records import Source
from service.rights.perks import CONDITIONS


def _no_nul(value: object) -> bool:
    """PostgreSQL text cannot hold NUL; such input is refused as invalid, never a 500."""
    if isinstance(value, str) and "\x00" in value:
        raise ValidationError("must not contain NUL characters")
    return True


def _is_file(value: object) -> bool:
    from werkzeug.datastructures import FileStorage

    if not isinstance(value, FileStorage):
        raise ValidationError("must be a file part of the form")
    return True


PERSON_KEY = validate.Regexp(r"^[0-9a-f]{64}$", error="not a person key (64 hex digits)")


# --- feeds ----------------------------------------------------------------------------------
class FeedUploadSchema(Schema):
    """A feed (a .csv or .parquet file) and the record source it holds (one per file)."""

    source = fields.String(required=True, validate=validate.OneOf([s.value for s in Source]))
    file = fields.Raw(required=True, validate=_is_file, metadata={
        "type": "string", "format": "binary",
        "description": "The feed; its filename must end in .csv, .parquet or .pq."})


class IngestResultSchema(Schema):
    """What an upload did: rows stored and quarantined, and people re-scored because their
    records changed."""

    feed_id = fields.String(required=True, metadata={"description": "SHA-256 of the file"})
    source = fields.String(required=True)
    rows_read = fields.Integer(required=True)
    rows_stored = fields.Integer(required=True)
    rows_quarantined = fields.Integer(required=True)
    people_changed = fields.Integer(required=True)
    people_rescored = fields.Integer(required=True)
    model_version = fields.String(required=True, allow_none=True,
                                  metadata={"description": "null: no model, nobody re-scored"})


class FeedSchema(Schema):
    """A feed received; `status` is `receiving` while it is being stored."""

    feed_id = fields.String(required=True)
    source = fields.String(required=True)
    filename = fields.String(required=True)
    received_at = fields.DateTime(required=True)
    rows_read = fields.Integer(required=True)
    rows_stored = fields.Integer(required=True)
    rows_quarantined = fields.Integer(required=True)
    status = fields.String(required=True)


class FeedListSchema(Schema):
    """Feeds, newest first."""

    feeds = fields.List(fields.Nested(FeedSchema), required=True)


class PageArgsSchema(Schema):
    """Paging."""

    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10_000_000))


class QuarantineRowSchema(Schema):
    """A row refused by validation: where and why (never the row's values)."""

    row_number = fields.Integer(required=True)
    field = fields.String(required=True)
    reason = fields.String(required=True)


class QuarantinePageSchema(Schema):
    """A feed's quarantined rows, by row number."""

    feed_id = fields.String(required=True)
    total = fields.Integer(required=True)
    rows = fields.List(fields.Nested(QuarantineRowSchema), required=True)


# --- disputes and human review --------------------------------------------------------------
class DisputeQuerySchema(PageArgsSchema):
    """Which disputes: open ones (the default) are listed oldest due first."""

    state = fields.String(load_default="open",
                          validate=validate.OneOf(["open", "upheld", "rejected", "all"]))


class AdminDisputeSchema(Schema):
    """A dispute in the queue (the citizen's statement is in its audited detail)."""

    dispute_id = fields.String(required=True)
    person_key = fields.String(required=True)
    source = fields.String(required=True)
    record_id = fields.String(required=True)
    state = fields.String(required=True, metadata={"description": "open, upheld or rejected"})
    received_on = fields.Date(required=True)
    due_on = fields.Date(required=True)
    overdue = fields.Boolean(required=True)
    resolved_at = fields.DateTime(allow_none=True)


class AdminDisputeListSchema(Schema):
    """The dispute queue, oldest due first."""

    disputes = fields.List(fields.Nested(AdminDisputeSchema), required=True)


class AdminDisputeDetailSchema(AdminDisputeSchema):
    """A dispute with the citizen's statement and the disputed record as stored (or null when
    an upheld dispute removed it)."""

    statement = fields.String(required=True)
    resolution = fields.String(allow_none=True)
    record = fields.Dict(required=True, allow_none=True)


class ResolutionInSchema(Schema):
    """Resolve a dispute. upheld: the record is removed, or corrected with `correction`
    (column → value); rejected: it counts again, and `note` is shown to the citizen."""

    outcome = fields.String(required=True, validate=validate.OneOf(["upheld", "rejected"]))
    note = fields.String(load_default="", validate=[validate.Length(max=2000), _no_nul])
    correction = fields.Dict(keys=fields.String(validate=_no_nul), load_default=None,
                             allow_none=True)

    @validates_schema
    def _correction_values(self, data: dict, **_kwargs) -> None:
        for name, value in (data.get("correction") or {}).items():
            if isinstance(value, str) and "\x00" in value:
                raise ValidationError({"correction": {name: ["must not contain NUL characters"]}})


class AdminScoreSchema(Schema):
    """A stored score."""

    score = fields.Float(required=True)
    band = fields.String(required=True)
    model_version = fields.String(required=True)
    as_of = fields.Date(required=True)


class ResolvedDisputeSchema(Schema):
    """A resolved dispute as its citizen now sees it."""

    dispute_id = fields.String(required=True)
    source = fields.String(required=True)
    record_id = fields.String(required=True)
    state = fields.String(required=True)
    received_on = fields.Date(required=True)
    due_on = fields.Date(required=True)
    overdue = fields.Boolean(required=True)
    resolution = fields.String(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)


class ResolutionSchema(Schema):
    """The resolved dispute and the person's new score."""

    dispute = fields.Nested(ResolvedDisputeSchema, required=True)
    score = fields.Nested(AdminScoreSchema, required=True)


class ReviewQuerySchema(PageArgsSchema):
    """Which review requests: pending ones (the default) are listed oldest first."""

    state = fields.String(load_default="pending",
                          validate=validate.OneOf(["pending", "decided", "withdrawn", "all"]))


class AdminReviewSchema(Schema):
    """A request for human review of one perk's decision (PIPL Art. 24)."""

    review_id = fields.String(required=True)
    person_key = fields.String(required=True)
    perk_id = fields.String(required=True)
    decision_id = fields.String(allow_none=True)
    state = fields.String(required=True, metadata={
        "description": "pending, decided or withdrawn"})
    requested_at = fields.DateTime(allow_none=True)
    outcome = fields.String(allow_none=True, metadata={"description": "eligible or not_eligible"})
    outcome_reason = fields.String(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)


class AdminReviewListSchema(Schema):
    """Requests for human review, oldest first."""

    reviews = fields.List(fields.Nested(AdminReviewSchema), required=True)


class AdminReviewDetailSchema(AdminReviewSchema):
    """What a reviewer reads: the request and its reason, the latest score and its points."""

    reason = fields.String(required=True)
    score = fields.Nested(AdminScoreSchema, allow_none=True, required=True)
    base_points = fields.Float(allow_none=True)
    points = fields.Dict(keys=fields.String(), values=fields.Float(), required=True)


class DecisionInSchema(Schema):
    """The reviewer's decision and its reason; partners get it for that perk instead of
    `pending`, and the citizen reads the reason."""

    outcome = fields.String(required=True,
                            validate=validate.OneOf(["eligible", "not_eligible"]))
    reason = fields.String(load_default="", validate=[validate.Length(max=2000), _no_nul],
                           metadata={"description": "required: the citizen reads it"})


class ReviewStateSchema(AdminReviewSchema):
    """The review after the decision: partners now get `outcome` for its perk."""


# --- re-scoring -----------------------------------------------------------------------------
class RescoreInSchema(Schema):
    """Whom to re-score: a person key (64 hex digits), never an ID number."""

    person_key = fields.String(required=True, validate=PERSON_KEY)


class RescoredSchema(AdminScoreSchema):
    """The person's new score."""

    person_key = fields.String(required=True)


class RescoreStartedSchema(Schema):
    """A batch run over everyone, started (`osmanthus batch --run-id` resumes it)."""

    run_id = fields.String(required=True)
    as_of = fields.Date(required=True)
    model_version = fields.String(required=True)
    people = fields.Integer(required=True, metadata={"description": "people in the store"})


class RescoreProgressSchema(Schema):
    """How far a run over everyone got, read from the scores it has written."""

    run_id = fields.String(required=True)
    people = fields.Integer(required=True)
    scored = fields.Integer(required=True)
    done = fields.Boolean(required=True)


# --- models ---------------------------------------------------------------------------------
class ModelVersionSchema(Schema):
    """A registered model version."""

    version = fields.String(required=True)
    champion = fields.Boolean(required=True)
    serving = fields.Boolean(required=True, metadata={"description": "this instance serves it"})
    registered_at = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    by = fields.String(allow_none=True)
    why = fields.String(allow_none=True)
    auc = fields.Float(allow_none=True, metadata={"description": "validation AUC at training"})
    promotions = fields.Integer(required=True)
    forced = fields.Integer(required=True, metadata={"description": "promotions that were forced"})


class ModelsSchema(Schema):
    """The registry and what this instance serves (they differ only briefly after a change,
    or when the champion is refused and an earlier one serves)."""

    champion = fields.String(required=True, allow_none=True)
    serving = fields.String(required=True, allow_none=True)
    problem = fields.String(allow_none=True)
    versions = fields.List(fields.Nested(ModelVersionSchema), required=True)


class PromoteInSchema(Schema):
    """Promote through the gates on the configured validation snapshot; `force` promotes
    despite failed gates and needs `why` (both recorded in the registry)."""

    force = fields.Boolean(load_default=False)
    why = fields.String(load_default=None, allow_none=True,
                        validate=[validate.Length(max=500), _no_nul])


class PromotionSchema(Schema):
    """A promotion: `reasons` are the gates a forced promotion overrode."""

    version = fields.String(required=True)
    previous = fields.String(required=True, allow_none=True)
    forced = fields.Boolean(required=True)
    reasons = fields.List(fields.String(), required=True)
    auc = fields.Float(allow_none=True)
    serving = fields.String(required=True, allow_none=True)


class RollbackInSchema(Schema):
    """Why the previous champion comes back (recorded in the registry)."""

    why = fields.String(load_default="", validate=[validate.Length(max=500), _no_nul])


class RollbackSchema(Schema):
    """The champion after a rollback, and the one it replaced."""

    champion = fields.String(required=True)
    previous = fields.String(required=True, allow_none=True)
    serving = fields.String(required=True, allow_none=True)


# --- perks ----------------------------------------------------------------------------------
class PerkSchema(Schema):
    """One policy version of a perk; `active` marks the version in force."""

    perk_id = fields.String(required=True)
    policy_version = fields.Integer(required=True)
    partner_id = fields.String(required=True)
    name_zh = fields.String(required=True)
    name_en = fields.String(required=True)
    min_score = fields.Float(required=True)
    conditions = fields.List(fields.String(), required=True)
    active = fields.Boolean(required=True)
    created_at = fields.DateTime(required=True)


class PerkQuerySchema(Schema):
    """Which perk policy versions: those in force, or with `history` every one."""

    history = fields.Boolean(load_default=False,
                             metadata={"description": "include superseded versions"})


class PerkListSchema(Schema):
    """Perk policy versions, by perk and version."""

    perks = fields.List(fields.Nested(PerkSchema), required=True)


class PerkUpdateSchema(Schema):
    """A new policy version of a perk: its minimum score and extra conditions. The old
    version is kept, unchanged, for the record."""

    min_score = fields.Float(required=True, validate=validate.Range(min=0, max=1000))
    conditions = fields.List(fields.String(validate=validate.OneOf(sorted(CONDITIONS))),
                             required=True, validate=validate.Length(max=len(CONDITIONS)))
