"""/v1/admin/repairs: the credit-repair (信用修复) queue and its decisions, on the admin blueprint.

Reading an application (it holds the citizen's statement) is audited as `admin:<name>`, as a
dispute's detail is; the decision is audited by `service.repair`.
"""

from __future__ import annotations

from flask import current_app, g
from marshmallow import Schema, fields, validate

from service.api.admin import (
    _audit_read,
    _brief,
    _engine,
    _known_shape,
    _queue,
    blp,
    errors,
    utc,
)
from service.api.admin_schemas import AdminScoreSchema, PageArgsSchema
from service.rights.repair import decide_repair, get_repair
from service.store.tables import repairs


class RepairQuerySchema(PageArgsSchema):
    """Which applications: open ones (the default) are listed oldest first."""

    state = fields.String(load_default="open",
                          validate=validate.OneOf(["open", "approved", "refused", "all"]))


class AdminRepairSchema(Schema):
    """A credit-repair application."""

    repair_id = fields.String(required=True)
    person_key = fields.String(required=True)
    source = fields.String(required=True)
    record_id = fields.String(required=True)
    received_on = fields.Date(required=True)
    state = fields.String(required=True)
    resolution = fields.String(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    resolved_by = fields.String(allow_none=True)


class AdminRepairListSchema(Schema):
    """Credit-repair applications, oldest first."""

    repairs = fields.List(fields.Nested(AdminRepairSchema), required=True)


class AdminRepairDetailSchema(AdminRepairSchema):
    """An application with the citizen's statement (what was paid or corrected, and when)."""

    statement = fields.String(required=True)


class RepairDecisionInSchema(Schema):
    """Approve (the record stops counting today; re-scored) or refuse, with a reason."""

    outcome = fields.String(required=True, validate=validate.OneOf(["approved", "refused"]))
    reason = fields.String(load_default="", validate=validate.Length(max=2000),
                           metadata={"description": "required: the citizen reads it"})


class RepairDecidedSchema(Schema):
    """The decided application, and the new score when it was approved."""

    repair = fields.Nested(AdminRepairDetailSchema, required=True)
    score = fields.Nested(AdminScoreSchema, allow_none=True, required=True)


@blp.route("/repairs")
@blp.arguments(RepairQuerySchema, location="query")
@blp.response(200, AdminRepairListSchema)
@errors(422)
def list_repairs(query: dict):
    """Credit-repair applications, oldest first; open ones by default."""
    rows = _queue(repairs, AdminRepairSchema().fields,
                  (repairs.c.received_on, repairs.c.repair_id), query)
    return {"repairs": [utc(row) for row in rows]}


@blp.route("/repairs/<string:repair_id>")
@blp.response(200, AdminRepairDetailSchema)
@errors(404)
def get_one_repair(repair_id: str):
    """One application with the citizen's statement (audited)."""
    _known_shape(repair_id, 32, "repair application")
    found = get_repair(_engine(), repair_id)
    _audit_read(found["person_key"], "admin_read_repair", {"repair_id": repair_id})
    return found


@blp.route("/repairs/<string:repair_id>/decision", methods=["POST"])
@blp.arguments(RepairDecisionInSchema)
@blp.response(200, RepairDecidedSchema)
@errors(404, 409, 422, 503)
def decide(body: dict, repair_id: str):
    """Approve or refuse an open application with a reason the citizen reads; approval stops
    the record counting today and re-scores the person."""
    _known_shape(repair_id, 32, "repair application")
    result = decide_repair(current_app, repair_id, body["outcome"], body["reason"],
                           by=g.admin_actor)
    return {"repair": result["repair"],
            "score": _brief(result["score"]) if result["score"] else None}
