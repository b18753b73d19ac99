"""paid_early on records_transit and records_social_security: whether a month's transit bill,
or a paid month's contribution, was settled before its due date

Issue 11: a spotless file said nothing more than "no lapse", so residents with clean files
tied at one score and the top band stayed empty. The transit feed now may send, per month, 1
when the month's fares and fees were settled before their due date (auto-debit or paid
ahead) and 0 otherwise, and so may the social-security feed for a month in good standing (a
second source of the same habit, so that no one feature carries it all and residents without a transit
account have evidence too; `features.records`). The columns are optional in the feeds and
nullable here: months stored before them, and agencies that do not send them, keep NULL,
which the features `tr_paid_early_share_24m` and `ss_paid_early_share_24m` read as no
evidence (features/catalog.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 05:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


TABLES = ("records_transit", "records_social_security")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("paid_early", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("paid_early")
