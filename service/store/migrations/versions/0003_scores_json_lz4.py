"""scores: compress the JSON columns with lz4 on PostgreSQL

A score row is about 4 KB, almost all of it `points` and `reasons`, so PostgreSQL compresses
every row it stores (TOAST). Its default, pglz, made a batch's bulk write of score rows about
1.7× slower than lz4 did (bench/batch.py), for 10% less space. lz4 needs PostgreSQL 14 built
with it (Debian's is); elsewhere, and on SQLite, nothing changes. Only the storage parameter
changes: the columns' types and values are the same.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 14:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

COLUMNS = ("points", "reasons")


def _lz4_available(bind) -> bool:
    """PostgreSQL 14+ lists lz4 among the settings' values only when it was built with it."""
    return bool(bind.execute(sa.text(
        "SELECT coalesce('lz4' = ANY(enumvals), false) FROM pg_settings "
        "WHERE name = 'default_toast_compression'")).scalar())


def _set(compression: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or not _lz4_available(bind):
        return
    op.execute("ALTER TABLE scores " + ", ".join(
        f"ALTER COLUMN {column} SET COMPRESSION {compression}" for column in COLUMNS))


def upgrade() -> None:
    _set("lz4")


def downgrade() -> None:
    _set("pglz")
