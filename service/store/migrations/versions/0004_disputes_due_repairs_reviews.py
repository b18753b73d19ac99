"""disputes keep counting with a due date; credit repair; human review per decision; consent keys

- `records_*.dispute_due_on`: a disputed record keeps counting and stops only when its dispute
  is still unanswered after this date (features/rules.py). Open disputes are given the due date
  their `disputes` row already holds, so none changes meaning.
- `repairs`: applications for credit repair (信用修复), decided by an admin.
- `reviews`: requests for human review of one perk's decision (PIPL Art. 24). A request made
  on the old per-person columns (`people.review_*`, which covered every perk) becomes one
  request per active perk with the same state and outcome, so nobody's answer changes; the old
  columns are no longer read.
- `consents.idempotency_key`: a grant sent twice with the same key is one consent.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 01:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

SOURCES = ("social_security", "transit", "court", "penalty", "positive")


def upgrade() -> None:
    for source in SOURCES:
        with op.batch_alter_table(f"records_{source}") as batch_op:
            batch_op.add_column(sa.Column("dispute_due_on", sa.Date(), nullable=True))
        op.execute(
            f"UPDATE records_{source} SET dispute_due_on = (SELECT max(d.due_on) FROM disputes d "
            f"WHERE d.source = '{source}' AND d.record_id = records_{source}.record_id "
            f"AND d.state = 'open') WHERE dispute_opened_on IS NOT NULL")
    op.create_table(
        "repairs",
        sa.Column("repair_id", sa.String(length=32), nullable=False),
        sa.Column("person_key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.String(length=32), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=96), nullable=True),
        sa.ForeignKeyConstraint(["person_key"], ["people.person_key"]),
        sa.PrimaryKeyConstraint("repair_id"),
    )
    op.create_index("ix_repairs_person_key", "repairs", ["person_key"])
    op.create_table(
        "reviews",
        sa.Column("review_id", sa.String(length=32), nullable=False),
        sa.Column("person_key", sa.String(length=64), nullable=False),
        sa.Column("perk_id", sa.String(length=64), nullable=False),
        sa.Column("decision_id", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("outcome_reason", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=96), nullable=True),
        sa.ForeignKeyConstraint(["person_key"], ["people.person_key"]),
        sa.PrimaryKeyConstraint("review_id"),
    )
    op.create_index("ix_reviews_person_key", "reviews", ["person_key"])
    _carry_over_reviews()
    with op.batch_alter_table("consents") as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_consents_person_idempotency",
                                          ["person_key", "idempotency_key"])


def _carry_over_reviews() -> None:
    import uuid

    bind = op.get_bind()
    asked = bind.execute(sa.text(
        "SELECT person_key, review_state, review_requested_at, review_outcome FROM people "
        "WHERE review_state IN ('pending', 'decided')")).all()
    perk_ids = [row[0] for row in bind.execute(sa.text(
        "SELECT DISTINCT perk_id FROM perks WHERE active ORDER BY perk_id")).all()]
    import datetime as dt

    now = dt.datetime.now(dt.UTC)  # a carried-over decision stands from the migration on
    rows = [{"review_id": uuid.uuid4().hex, "person_key": person, "perk_id": perk,
             "reason": "(asked before reviews were per decision)",
             "requested_at": requested or now, "state": state, "outcome": outcome,
             "decided_at": now if state == "decided" else None}
            for person, state, requested, outcome in asked for perk in perk_ids]
    if rows:
        bind.execute(sa.text(
            "INSERT INTO reviews (review_id, person_key, perk_id, reason, requested_at, state, "
            "outcome, decided_at) VALUES (:review_id, :person_key, :perk_id, :reason, "
            ":requested_at, :state, :outcome, :decided_at)"), rows)


def downgrade() -> None:
    with op.batch_alter_table("consents") as batch_op:
        batch_op.drop_constraint("uq_consents_person_idempotency", type_="unique")
        batch_op.drop_column("idempotency_key")
    op.drop_index("ix_reviews_person_key", table_name="reviews")
    op.drop_table("reviews")
    op.drop_index("ix_repairs_person_key", table_name="repairs")
    op.drop_table("repairs")
    for source in SOURCES:
        with op.batch_alter_table(f"records_{source}") as batch_op:
            batch_op.drop_column("dispute_due_on")
