"""Modellers and operators: /v1/admin/... with an admin token.

Feeds (upload, list, quarantine), the dispute and human-review queues, re-scoring one person
or everyone. Models and perk configuration are in `admin_models.py`, on this same blueprint.
Every read of one person's data here (a dispute's detail, a review, a re-score) is written to
the audit log as `admin:<name>`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import polars as pl
from flask import current_app, g
from sqlalchemy import func, select
from werkzeug.utils import secure_filename

from service.api.admin_blueprint import blp, errors, utc
from service.api.admin_schemas import (
    AdminDisputeDetailSchema,
    AdminDisputeListSchema,
    AdminReviewDetailSchema,
    AdminReviewListSchema,
    DecisionInSchema,
    DisputeQuerySchema,
    FeedListSchema,
    FeedUploadSchema,
    IngestResultSchema,
    PageArgsSchema,
    QuarantinePageSchema,
    RescoredSchema,
    RescoreInSchema,
    RescoreProgressSchema,
    RescoreStartedSchema,
    ResolutionInSchema,
    ResolutionSchema,
    ReviewQuerySchema,
    ReviewStateSchema,
)
from service.base import clock
from service.base.errors import ApiError
from service.rights import audit
from service.scoring.score import ensure_people, latest, today
from service.store.tables import (
    RECORD_TABLES,
    disputes,
    feeds,
    is_hex_id,
    people,
    quarantine,
    reviews,
)

log = logging.getLogger(__name__)


def _known_shape(value: str, length: int, what: str) -> None:
    """Refuse an id that cannot exist before it reaches a query (`store.tables.is_hex_id`)."""
    if not is_hex_id(value, length):
        raise ApiError(404, f"no such {what}")


def _engine():
    return current_app.extensions["osmanthus.engine"]


def _audit_read(person_key: str, action: str, detail: dict) -> None:
    with _engine().begin() as connection:
        audit.append(connection, actor=g.admin_actor, action=action, person_key=person_key,
                     detail=detail, at=clock.now(current_app))


def _brief(row: dict | None) -> dict | None:
    if row is None:
        return None
    return {k: row[k] for k in ("score", "band", "model_version", "as_of")}


def rescore_changed(app, keys: set[str]) -> int:
    """Re-score people whose records changed (when a model serves); returns how many."""
    from service.scoring.rescore import rescore_many

    serving = app.extensions["osmanthus.model"]
    if not keys:
        return 0
    if not serving.ready:
        with app.extensions["osmanthus.engine"].begin() as connection:
            ensure_people(connection, sorted(keys))  # so that a later rescore-all finds them
        return 0
    run = rescore_many(app.extensions["osmanthus.engine"], serving, sorted(keys),
                       today(app.extensions["osmanthus.config"]),
                       cache=app.extensions["osmanthus.cache"])
    return run.scored


# --- feeds ----------------------------------------------------------------------------------
UPLOAD_RETRY_SECONDS = 5.0  # an HTTP client should not wait out a long outage; it retries
@blp.route("/feeds", methods=["POST"])
@blp.arguments(FeedUploadSchema, location="multipart")
@blp.response(201, IngestResultSchema)
@errors(422, 503)
def upload_feed(upload: dict):
    """Validate a feed and store its good rows; bad rows are quarantined with their reasons.
    Everyone whose records changed is re-scored as of today. Sending a feed again changes
    nothing. If the database is lost mid-feed for more than a few seconds the answer is 503
    with Retry-After: what was stored stays, and sending the feed again finishes it."""
    from features.validate import FeedError
    from service.store.ingest import IngestError, ingest_feed

    storage = upload["file"]
    name = secure_filename(storage.filename or "") or "feed"
    if Path(name).suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise ApiError(422, "some fields are invalid",
                       errors={"file": ["expected a .csv or .parquet file"]})
    with tempfile.TemporaryDirectory(prefix="osmanthus-feed-") as folder:
        path = Path(folder) / name
        storage.save(path)
        try:
            summary = ingest_feed(_engine(), path, upload["source"],
                                  retry_seconds=UPLOAD_RETRY_SECONDS)
        except IngestError:
            log.warning("feed %s interrupted: the database was unreachable", name)
            raise ApiError(503, "the store is unreachable; send the feed again shortly",
                           headers={"Retry-After": "30"}) from None
        except FeedError as error:
            raise ApiError(422, "the feed was refused", errors={"file": [str(error)]}) from None
        except (pl.exceptions.PolarsError, ValueError, UnicodeError):
            log.warning("feed %s refused: unreadable", name, exc_info=True)
            raise ApiError(422, "the feed was refused",
                           errors={"file": ["the file cannot be read as this source's feed"]}) from None
    rescored = rescore_changed(current_app, summary.changed_persons)
    serving = current_app.extensions["osmanthus.model"]
    return {"feed_id": summary.feed_id, "source": summary.source,
            "rows_read": summary.rows_read, "rows_stored": summary.rows_stored,
            "rows_quarantined": summary.rows_quarantined,
            "people_changed": len(summary.changed_persons), "people_rescored": rescored,
            "model_version": serving.version if serving.ready else None}


@blp.route("/feeds", methods=["GET"])
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, FeedListSchema)
@errors(422)
def list_feeds(page: dict):
    """Feeds received, newest first."""
    with _engine().connect() as connection:
        rows = connection.execute(
            select(feeds).order_by(feeds.c.received_at.desc(), feeds.c.feed_id)
            .limit(page["limit"]).offset(page["offset"])).all()
    return {"feeds": [utc(row) for row in rows]}


@blp.route("/feeds/<string:feed_id>/quarantine")
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, QuarantinePageSchema)
@errors(404, 422)
def feed_quarantine(page: dict, feed_id: str):
    """A feed's quarantined rows: row number, field and reason — never the row's values."""
    _known_shape(feed_id, 64, "feed")
    with _engine().connect() as connection:
        if connection.execute(select(feeds.c.feed_id).where(feeds.c.feed_id == feed_id)).first() is None:
            raise ApiError(404, "no such feed")
        total = connection.execute(select(func.count()).select_from(quarantine)
                                   .where(quarantine.c.feed_id == feed_id)).scalar_one()
        rows = connection.execute(
            select(quarantine.c.row_number, quarantine.c.field, quarantine.c.reason)
            .where(quarantine.c.feed_id == feed_id).order_by(quarantine.c.row_number)
            .limit(page["limit"]).offset(page["offset"])).all()
    return {"feed_id": feed_id, "total": total, "rows": [dict(r._mapping) for r in rows]}


# --- disputes -------------------------------------------------------------------------------
def _dispute_row(row, as_of) -> dict:
    data = utc(row)
    data["overdue"] = data["state"] == "open" and as_of > data["due_on"]
    return data


def _queue(table, names, order, query: dict) -> list:
    """One page of a queue (disputes, reviews, repair applications): these columns, in this
    order, in the state asked for (`all`: every state), `limit` rows from `offset`."""
    statement = select(*[table.c[name] for name in names])
    if query["state"] != "all":
        statement = statement.where(table.c.state == query["state"])
    statement = statement.order_by(*order).limit(query["limit"]).offset(query["offset"])
    with _engine().connect() as connection:
        return connection.execute(statement).all()


@blp.route("/disputes")
@blp.arguments(DisputeQuerySchema, location="query")
@blp.response(200, AdminDisputeListSchema)
@errors(422)
def list_disputes(query: dict):
    """The dispute queue, oldest due first (the statements are in each dispute's detail)."""
    rows = _queue(disputes, ("dispute_id", "person_key", "source", "record_id", "state",
                             "received_on", "due_on", "resolved_at"),
                  (disputes.c.due_on, disputes.c.dispute_id), query)
    as_of = clock.today(current_app)
    return {"disputes": [_dispute_row(row, as_of) for row in rows]}


@blp.route("/disputes/<string:dispute_id>")
@blp.response(200, AdminDisputeDetailSchema)
@errors(404)
def get_dispute(dispute_id: str):
    """One dispute with the citizen's statement and the disputed record (audited)."""
    _known_shape(dispute_id, 32, "dispute")
    with _engine().connect() as connection:
        row = connection.execute(select(disputes).where(disputes.c.dispute_id == dispute_id)).first()
        if row is None:
            raise ApiError(404, "no such dispute")
        table = RECORD_TABLES[next(s for s in RECORD_TABLES if s.value == row.source)]
        record = connection.execute(select(table).where(table.c.record_id == row.record_id)).first()
    data = _dispute_row(row, clock.today(current_app))
    data["record"] = None
    if record is not None:
        data["record"] = {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                          for k, v in record._mapping.items() if k not in ("person_key", "feed_id")}
    _audit_read(row.person_key, "admin_read_dispute", {"dispute_id": dispute_id})
    return data


@blp.route("/disputes/<string:dispute_id>/resolution", methods=["POST"])
@blp.arguments(ResolutionInSchema)
@blp.response(200, ResolutionSchema)
@errors(404, 409, 422, 503)
def resolve(body: dict, dispute_id: str):
    """Resolve an open dispute and re-score the person. upheld: the record is removed, or
    corrected with `correction`; rejected: it counts again and `note` tells the citizen why."""
    from service.rights.disputes import resolve_dispute

    _known_shape(dispute_id, 32, "dispute")
    if not current_app.extensions["osmanthus.model"].ready:
        raise ApiError(503, "no model is loaded, so the person cannot be re-scored now")
    result = resolve_dispute(_engine(), current_app, dispute_id, body["outcome"], body["note"],
                             by=g.admin_actor, correction=body["correction"])
    return {"dispute": result["dispute"], "score": _brief(result["score"])}


# --- human review ---------------------------------------------------------------------------
@blp.route("/reviews")
@blp.arguments(ReviewQuerySchema, location="query")
@blp.response(200, AdminReviewListSchema)
@errors(422)
def list_reviews(query: dict):
    """Requests for human review of one perk's decision (PIPL Art. 24), oldest first; pending
    ones by default (the citizens' reasons are in each request's detail)."""
    rows = _queue(reviews, ("review_id", "person_key", "perk_id", "decision_id", "state",
                            "requested_at", "outcome", "outcome_reason", "decided_at"),
                  (reviews.c.requested_at, reviews.c.review_id), query)
    return {"reviews": [utc(row) for row in rows]}


@blp.route("/reviews/<string:review_id>")
@blp.response(200, AdminReviewDetailSchema)
@errors(404)
def get_review(review_id: str):
    """What a reviewer reads: the request, the latest score and its points (audited)."""
    from service.rights.review import get_review as one_review

    _known_shape(review_id, 32, "review")
    found = one_review(_engine(), review_id)
    row = latest(_engine(), found["person_key"])
    _audit_read(found["person_key"], "admin_read_review", {"review_id": review_id,
                                                           "perk_id": found["perk_id"]})
    return {**found, "score": _brief(row), "base_points": row["base_points"] if row else None,
            "points": row["points"] if row else {}}


@blp.route("/reviews/<string:review_id>/decision", methods=["POST"])
@blp.arguments(DecisionInSchema)
@blp.response(200, ReviewStateSchema)
@errors(404, 409, 422)
def decide(body: dict, review_id: str):
    """Decide a pending review with a reason; partners then get the decision for its perk."""
    from service.rights.review import decide_review

    _known_shape(review_id, 32, "review")
    return decide_review(_engine(), review_id, body["outcome"], body["reason"],
                         by=g.admin_actor, now=clock.now(current_app))


# --- re-scoring -----------------------------------------------------------------------------
@blp.route("/rescore", methods=["POST"])
@blp.arguments(RescoreInSchema)
@blp.response(200, RescoredSchema)
@errors(404, 422, 503)
def rescore_one(body: dict):
    """Re-score one person now, as of today (audited)."""
    from service.scoring.score import rescore

    key = body["person_key"]
    with _engine().connect() as connection:
        if connection.execute(select(people.c.person_key)
                              .where(people.c.person_key == key)).first() is None:
            raise ApiError(404, "no such person")
    if not current_app.extensions["osmanthus.model"].ready:
        raise ApiError(503, "no model is loaded")
    row = rescore(current_app, key)
    _audit_read(key, "admin_rescore", {"score": row["score"], "model_version": row["model_version"]})
    return {"person_key": key, **_brief(row)}


@blp.route("/rescore-all", methods=["POST"])
@blp.response(202, RescoreStartedSchema)
@errors(503)
def rescore_all():
    """Start re-scoring everyone as of today: the sharded batch (`osmanthus batch`), in a
    process of its own. Answers at once with the run id; `GET /rescore-all/{run_id}` says how
    far it got."""
    from service.scoring.batch import BatchError
    from service.scoring.everyone import start_everyone

    if not current_app.extensions["osmanthus.model"].ready:
        raise ApiError(503, "no model is loaded")
    try:
        run = start_everyone(current_app.extensions["osmanthus.config"], _engine())
    except BatchError as error:
        raise ApiError(503, str(error)) from None
    with _engine().begin() as connection:
        audit.append(connection, actor=g.admin_actor, action="admin_rescore_all",
                     detail={"run_id": run.run_id, "people": run.people},
                     at=clock.now(current_app))
    return vars(run)


@blp.route("/rescore-all/<run_id>")
@blp.response(200, RescoreProgressSchema)
@errors(404)
def rescore_all_progress(run_id: str):
    """How far a run over everyone got: people covered, people scored, done."""
    from service.scoring.batch import RUN_ID
    from service.scoring.everyone import progress

    if not RUN_ID.fullmatch(run_id):
        raise ApiError(404, "no such run")
    return progress(_engine(), run_id)
